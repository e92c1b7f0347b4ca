"""Tool-set loading errors and the safety envelope (allowlist, validation, confirmation, rate)."""
from __future__ import annotations

import math
import textwrap

import pytest

from slm_agent.agent.safety import SafetyEnvelope, validate_arguments
from slm_agent.agent.toolset import (
    ToolSetError,
    load_tool_set,
    load_tool_set_text,
    resolve_tool_set,
)
from slm_agent.agent.types import Status, ToolCall, ToolSpec


def test_demo_tool_set_loads(demo_tool_set):
    names = [t.name for t in demo_tool_set.tools]
    assert names == ["get_battery", "move_to", "gripper", "lookup_location"]
    by = demo_tool_set.by_name()
    assert by["gripper"].service_type == "std_srvs/srv/SetBool"
    assert by["gripper"].service_name == "/demo_robot/gripper"
    assert "true opens" in by["gripper"].parameters["properties"]["data"]["description"]
    assert by["lookup_location"].parameters["properties"]["name"]["maxLength"] == 64
    assert by["move_to"].max_rate_hz == 1.0 and by["move_to"].timeout_s == 30.0
    assert demo_tool_set.example["call"]["name"] == "get_battery"
    assert resolve_tool_set("demo_robot").name == "demo_robot.yaml"


def _tool_yaml(extra: str = "", **overrides: str) -> str:
    base = {
        "name": "gripper",
        "service": "/r/gripper",
        "type": "std_srvs/srv/SetBool",
        "description": "Open or close.",
    }
    base.update(overrides)
    lines = "\n".join(f"    {k}: {v}" for k, v in base.items() if v is not None)
    return f"tools:\n  - \n{lines}\n{extra}"


@pytest.mark.parametrize(
    "text, message",
    [
        ("tools: []", "'tools' must be a non-empty list"),
        ("nope: 1\ntools: []", "unknown top-level key"),
        (_tool_yaml(colour="red"), r"tools\[0\] \(gripper\): unknown key\(s\) \['colour'\]"),
        (_tool_yaml(name="'bad name'"), "'name' must be an identifier"),
        (_tool_yaml(name="final_answer"), "reserved"),
        (_tool_yaml(service="'not a service'"), "'service' must be a ROS service name"),
        (_tool_yaml(description="''"), "'description' must be a non-empty string"),
        (_tool_yaml(type="std_srvs/srv/Nope"), "has no type 'Nope'"),
        (_tool_yaml(type="std_msgs/msg/String"), "not a service type"),
        (_tool_yaml(timeout_s="-1"), "'timeout_s' must be > 0"),
        (_tool_yaml(timeout_s="soon"), "'timeout_s' must be a number"),
        (_tool_yaml(max_rate_hz="-2"), "'max_rate_hz' must be >= 0"),
        (_tool_yaml(requires_confirmation="'yes'"), "'requires_confirmation' must be true or false"),
        (_tool_yaml(fields="{data: {minimum: 0}}"), "needs a numeric field"),
        (_tool_yaml(fields="{datum: {description: x}}"), "no field 'datum'"),
        ("tools:\n  - {name: a, service: /a, type: std_srvs/srv/Trigger, description: x}\n"
         "  - {name: a, service: /b, type: std_srvs/srv/Trigger, description: y}", "duplicate tool name 'a'"),
        ("tools: [1", "invalid YAML"),
        ("example: {user: hi, call: {name: nope}}\n"
         "tools:\n  - {name: a, service: /a, type: std_srvs/srv/Trigger, description: x}", "example.call"),
    ],
)
def test_tool_set_errors_name_the_key(text, message):
    with pytest.raises(ToolSetError, match=message):
        load_tool_set_text(text, "bad.yaml")


def test_tool_set_error_names_the_file(tmp_path):
    p = tmp_path / "broken.yaml"
    p.write_text(textwrap.dedent(_tool_yaml(timeout_s="0")))
    with pytest.raises(ToolSetError, match=r"broken\.yaml: tools\[0\] \(gripper\): 'timeout_s'"):
        load_tool_set(p)
    with pytest.raises(ToolSetError, match="cannot read"):
        load_tool_set(tmp_path / "missing.yaml")
    with pytest.raises(ToolSetError, match="not found"):
        resolve_tool_set("no_such_tool_set", [tmp_path])


def test_bare_list_and_explicit_parameters():
    ts = load_tool_set_text(
        "- name: add\n  service: /calc/invoke\n  type: slm_agent/srv/InvokeTool\n  description: Add.\n"
        "  parameters: {type: object, properties: {a: {type: integer}}, required: [a]}\n"
    )
    assert ts.tools[0].parameters["required"] == ["a"]


# ----------------------------------------------------------------------------- envelope


def _call(tool: str, /, **arguments) -> ToolCall:
    return ToolCall(id="c1", name=tool, arguments=arguments)


def test_unknown_tool_refused_with_the_valid_names(demo_tool_set):
    env = SafetyEnvelope(demo_tool_set.tools)
    r = env.check(_call("self_destruct"))
    assert r is not None and r.status == Status.REFUSED
    assert "unknown tool 'self_destruct'" in r.error and "gripper" in r.error
    assert math.isnan(r.latency_ms)


@pytest.mark.parametrize(
    "arguments, fragment",
    [
        ({"goal": {"x": 12, "y": 0}, "speed": 1}, "goal.x: 12 is above the maximum 10"),
        ({"goal": {"x": 1, "y": -10.5}, "speed": 1}, "goal.y: -10.5 is below the minimum -10"),
        ({"goal": {"x": 1, "y": 0}, "speed": 0}, "speed: 0 must be greater than 0"),
        ({"goal": {"x": 1, "y": 0}, "speed": 1.51}, "speed: 1.51 is above the maximum 1.5"),
        ({"goal": {"x": 1, "y": 0}, "speed": "fast"}, 'speed: expected a number, got string "fast"'),
        ({"goal": {"x": 1, "y": 0}, "speed": True}, "speed: expected a number, got boolean"),
        ({"goal": {"x": 1, "y": 0}, "speed": 1, "colour": "red"}, "unexpected field 'colour'"),
        ({"goal": {"x": 1, "y": 0, "z": 3}, "speed": 1}, "goal: unexpected field 'z'"),
        ({"speed": 1}, "missing required field 'goal'"),
        ({"goal": {"x": 1}, "speed": 1}, "goal: missing required field 'y'"),
        ({"goal": {"x": 1, "y": 0}, "speed": 1, "mode": 3}, "mode: 3 is not one of [0, 1]"),
        ({"goal": {"x": 1, "y": 0}, "speed": 1, "mode": True}, "mode: expected an integer"),
        ({"goal": {"x": 1, "y": 0}, "speed": 1, "frame_id": "odom"}, 'frame_id: "odom" is not one of ["map"]'),
        ({"goal": {"x": 1, "y": 0}, "speed": 1, "via": [{"x": 0, "y": 0}] * 9}, "via: 9 items exceed maxItems 8"),
        ({"goal": {"x": 1, "y": 0}, "speed": 1, "via": [{"x": 0, "y": 11}]}, "via[0].y: 11 is above"),
        ({"goal": {"x": float("inf"), "y": 0}, "speed": 1}, "goal.x: inf is not a finite number"),
    ],
)
def test_invalid_arguments_messages_are_actionable(demo_tool_set, arguments, fragment):
    env = SafetyEnvelope(demo_tool_set.tools)
    r = env.check(_call("move_to", **arguments))
    assert r is not None and r.status == Status.INVALID_ARGUMENTS
    assert fragment in r.error


def test_valid_arguments_pass(demo_tool_set):
    env = SafetyEnvelope(demo_tool_set.tools)
    assert env.check(_call("move_to", goal={"x": 10, "y": -10}, speed=1.5)) is None
    assert env.check(_call("gripper", data=True)) is None
    assert env.check(_call("get_battery")) is None
    assert env.check(_call("lookup_location", name="k" * 64)) is None
    r = env.check(_call("lookup_location", name="k" * 65))
    assert r is not None and "exceeds maxLength 64" in r.error


def test_non_object_arguments(demo_tool_set):
    spec = demo_tool_set.by_name()["gripper"]
    assert validate_arguments(spec, [True]) == ["arguments must be an object, got array"]


def test_confirmation_required():
    spec = ToolSpec(name="arm", service_name="/r/arm", service_type="std_srvs/srv/Trigger",
                    requires_confirmation=True)
    env = SafetyEnvelope([spec])
    r = env.check(_call("arm"))
    assert r is not None and r.status == Status.REFUSED and "requires confirmation" in r.error
    assert env.check(_call("arm"), allow_confirmation=True) is None


def test_rate_limit_with_injected_clock():
    now = [100.0]
    spec = ToolSpec(name="beep", max_rate_hz=2.0)
    env = SafetyEnvelope([spec], clock=lambda: now[0])
    assert env.check(_call("beep")) is None
    now[0] += 0.2
    r = env.check(_call("beep"))
    assert r is not None and r.status == Status.REFUSED and "rate limit" in r.error and "0.30 s" in r.error
    now[0] += 0.31  # 0.51 s after the accepted call
    assert env.check(_call("beep")) is None
    # a refused-for-arguments call does not consume the rate budget
    now[0] += 1.0
    assert env.check(_call("beep", extra=1)).status == Status.INVALID_ARGUMENTS
    assert env.check(_call("beep")) is None
