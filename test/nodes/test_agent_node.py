"""Agent node end to end, across processes, with the REAL default model.

Processes: the demo robot (``slm_agent.nodes.demo_robot_node``), the agent
node (``autostart:=true``, ``tool_set`` = the demo robot's tool set) and this
test process, which is the RunTask action client, serves the extra test
services (a counting service outside the tool set, a service that never
answers, an ``InvokeTool`` environment) and publishes a constant 7.5 W on a
fake ``/telemetry/power`` so the energy attribution can be checked exactly.

Everything lives under a per-run namespace (the tool set is
config/tool_sets/demo_robot.yaml with ``/demo_robot/`` moved under it), so a
concurrent run on the same DDS domain cannot answer our calls.  The model
(Gemma 3 270M base, llama.cpp) is loaded once, by the agent process; goals
use ``max_steps=1`` to keep the CPU time small.  The agent runs with
``feedback_max_delay_s:=10`` so text batching is by count only and the
number of feedback messages can be checked.
"""
from __future__ import annotations

import json
import math
import sys
import threading
import time
from pathlib import Path

import pytest
import yaml

rclpy = pytest.importorskip("rclpy", reason="rclpy (ROS 2 Python client) not installed")
pytest.importorskip("slm_agent.msg", reason="slm_agent interfaces not generated/installed (no slm_agent.msg)")

from rclpy.time import Time  # noqa: E402
from std_srvs.srv import Trigger  # noqa: E402

from slm_agent.action import RunTask  # noqa: E402
from slm_agent.msg import PowerState, ToolResult, ToolSpec  # noqa: E402
from slm_agent.ros.runtime import SpinThread  # noqa: E402
from slm_agent.srv import InvokeTool  # noqa: E402

sys.path.insert(0, str(Path(__file__).resolve().parent))
from agent_node_helpers import (  # noqa: E402
    AGENT_MODULE,
    ROBOT_MODULE,
    AgentClient,
    CountingService,
    NodeProcess,
    namespace,
    namespaced_demo_tool_set,
    wait_future,
    real_model_missing,
)

DEMO_TOOLS = {"get_battery", "move_to", "gripper", "lookup_location"}
POWER_W = 7.5
POWER_MODE = "TEST_7W5"
BATCH = 4
HANG_TIMEOUT_S = 0.5
GOAL_TIMEOUT_S = 300.0


def _stamp_ns(t) -> int:
    return Time.from_msg(t).nanoseconds


@pytest.fixture(scope="module")
def e2e(tmp_path_factory):
    reason = real_model_missing()
    if reason:
        pytest.skip(f"end-to-end agent tests need the real default model: {reason}")
    ns = namespace("agent_e2e")
    tmp = tmp_path_factory.mktemp("agent_e2e")
    tool_set = namespaced_demo_tool_set(ns, tmp)
    context = rclpy.Context()
    rclpy.init(context=context)
    node = rclpy.create_node("agent_e2e_test", context=context)
    spin = SpinThread(node, context=context)
    robot = NodeProcess(ROBOT_MODULE, ["-r", f"__ns:={ns}/demo_robot"], name="demo_robot")
    agent = NodeProcess(AGENT_MODULE, ["-r", f"__ns:={ns}", "-p", "autostart:=true", "-p", f"tool_set:={tool_set}",
                                       "-p", f"telemetry_topic:={ns}/telemetry/power",
                                       "-p", f"feedback_batch:={BATCH}", "-p", "feedback_max_delay_s:=10.0",
                                       # a loaded CI machine can stall the fake power publisher
                                       # (this process) for over a second
                                       "-p", "metrics_energy_wait_s:=10.0", "-p", "energy_max_gap_s:=10.0"],
                        name="agent")
    power_pub = node.create_publisher(PowerState, f"{ns}/telemetry/power", 10)

    def publish_power() -> None:
        msg = PowerState(source="test", total_rail="TEST", total_power_w=POWER_W, total_available=True,
                         power_mode=POWER_MODE)
        msg.header.stamp = node.get_clock().now().to_msg()
        power_pub.publish(msg)

    node.create_timer(0.05, publish_power)
    client = AgentClient(node, f"{ns}/agent")
    env = {"ns": ns, "tmp": tmp, "node": node, "robot": robot, "agent": agent, "client": client}
    try:
        assert robot.wait_for_text("demo robot ready", 60.0), robot.tail()
        client.wait_server(180.0, agent)
        assert agent.wait_for_text("active: serving", 30.0), agent.tail()
        yield env
    finally:
        code = agent.terminate()
        robot.terminate()
        spin.stop()
        node.destroy_node()
        context.try_shutdown()
    assert code == 0, f"agent exited with {code} on SIGTERM\n{agent.tail(8000)}"


def _goal(task_id: str, prompt: str = "", **kw) -> RunTask.Goal:
    kw.setdefault("max_steps", 1)
    kw.setdefault("execute_tools", True)
    return RunTask.Goal(task_id=task_id, prompt=prompt, **kw)


def _explain(out, *procs) -> str:
    r = out.result
    lines = [f"status={out.status} success={r.success} error={r.error!r} final={r.final_text!r}",
             f"streamed text={out.text()!r}"]
    lines += [f"call {c.call.name} {c.call.arguments_json} -> {c.result.status} {c.result.error}" for c in r.tool_calls]
    return "\n".join(lines + [p.tail(2000) for p in procs])


def _gripper_only_tool_set(e2e) -> str:
    """The demo tool set cut down to the gripper, so the plumbing checked below
    does not depend on which of four tools a 270M model picks on this build."""
    data = yaml.safe_load((e2e["tmp"] / "demo_robot.yaml").read_text())
    data["name"] = "gripper_only"
    data["tools"] = [t for t in data["tools"] if t["name"] == "gripper"]
    data.pop("example", None)  # it names get_battery; the strategy's default example is used
    path = e2e["tmp"] / "gripper_only.yaml"
    path.write_text(yaml.safe_dump(data))
    return str(path)


def test_open_the_gripper_end_to_end(e2e):
    """Prompt -> real model -> gripper call -> the robot's real service, with feedback,
    ~/metrics (timings, power mode, energy at 7.5 W) and ~/tool_calls.

    What the model chooses (open or close) is the benchmark's business; this
    proves the plumbing: the service executed exactly the arguments the model
    emitted, and feedback, result, metrics and records agree with it."""
    client, robot, agent = e2e["client"], e2e["robot"], e2e["agent"]
    out = client.run(_goal("e2e-gripper", "Open the gripper.", tool_set=_gripper_only_tool_set(e2e)),
                     GOAL_TIMEOUT_S)
    assert out.accepted
    r = out.result
    why = _explain(out, agent)
    grip = [c for c in r.tool_calls if c.call.name == "gripper"]
    assert grip, f"the model made no call with the only tool offered; nothing to check\n{why}"
    first = grip[0]
    emitted = json.loads(first.call.arguments_json)
    assert set(emitted) == {"data"} and isinstance(emitted["data"], bool), why  # the grammar's schema
    state = "open" if emitted["data"] else "closed"
    assert first.result.status == ToolResult.STATUS_OK, why
    content = json.loads(first.result.content_json)
    assert content["success"] is True and content["message"].startswith(f"gripper {state}"), content
    assert 0 < first.result.latency_ms < 5000
    assert first.task_id == "e2e-gripper" and first.call.step == 0
    # the robot's service really ran with the emitted value (it logs every call)
    assert robot.wait_for_text(f"gripper: gripper {state}", 10.0), robot.tail()

    # feedback: streamed text, then the call, then its result -- nothing lost by batching
    kinds = out.kinds()
    fb = RunTask.Feedback
    assert fb.KIND_TEXT in kinds and fb.KIND_TOOL_CALL in kinds and fb.KIND_TOOL_RESULT in kinds, kinds
    assert kinds.index(fb.KIND_TEXT) < kinds.index(fb.KIND_TOOL_CALL) < kinds.index(fb.KIND_TOOL_RESULT)
    call_fb = next(f for _, f in out.feedback if f.kind == fb.KIND_TOOL_CALL)
    assert call_fb.tool_call.call.name == "gripper" and call_fb.tool_call.result.error == "pending"
    res_fb = next(f for _, f in out.feedback if f.kind == fb.KIND_TOOL_RESULT)
    assert res_fb.tool_call.result.status == ToolResult.STATUS_OK
    assistant = [m for m in r.messages if m.role == "assistant"]
    # the transcript keeps what was streamed (after the raw prompt's "Assistant:" cue, if any)
    assert assistant and assistant[0].content.endswith(out.text(step=0).strip()), (out.text(0), assistant[0].content)
    assert [c.name for c in assistant[0].tool_calls] == [c.call.name for c in r.tool_calls if c.call.step == 0]
    assert {c.name for c in assistant[0].tool_calls} == {"gripper"}
    assert any(m.role == "tool" and f"gripper {state}" in m.content for m in r.messages)

    # one InferenceMetrics per LLM call, in the result and on ~/metrics
    assert len(r.metrics) == 1, [m.request_id for m in r.metrics]
    rm = r.metrics[0]
    assert rm.task_id == "e2e-gripper" and rm.step == 0 and rm.request_id == "e2e-gripper:0"
    topic = client.wait_metrics(lambda m: m.task_id == "e2e-gripper", 10.0)
    assert len(topic) == 1, "no ~/metrics message for the goal"
    m = topic[0]
    assert m.backend == "llama_cpp" and m.model and m.engine.startswith("llama_cpp")
    assert m.prompt_tokens > 50 and m.decode_tokens >= 2
    assert m.ttft_ms > 0 and m.decode_tokens_per_s > 0 and m.total_ms >= m.ttft_ms
    assert math.isfinite(m.prefill_tokens_per_s) and m.prefill_tokens_per_s > 0
    assert "llama_prompt_eval_ms" in m.engine_counter_names
    start_ns, end_ns = _stamp_ns(m.header.stamp), _stamp_ns(m.end_stamp)
    assert end_ns > start_ns
    assert abs((end_ns - start_ns) / 1e6 - m.total_ms) < 5.0          # stamps bracket the measured call
    assert m.power_mode == POWER_MODE
    # constant power fully covering the window: E = P * duration, exactly
    assert math.isfinite(m.energy_j), "energy_j is NaN although /telemetry/power covered the call"
    assert m.energy_j == pytest.approx(POWER_W * (end_ns - start_ns) / 1e9, rel=1e-6)

    # the first text feedback goes out at once, later ones are batched
    texts = [f for _, f in out.feedback if f.kind == fb.KIND_TEXT]
    assert len(texts) <= 1 + math.ceil((m.decode_tokens - 1) / BATCH), (len(texts), m.decode_tokens)
    first_token_ns = start_ns + int(m.ttft_ms * 1e6)
    first_fb_ns = next(t for t, (_, f) in zip(out.feedback_wall_ns, out.feedback) if f.kind == fb.KIND_TEXT)
    assert first_fb_ns - first_token_ns < 500e6, "first text feedback was held back"

    records = client.wait_records(lambda rec: rec.task_id == "e2e-gripper", 10.0, count=len(r.tool_calls))
    assert [rec.call.name for rec in records] == [c.call.name for c in r.tool_calls]
    assert records[0].result.status == ToolResult.STATUS_OK


def test_list_tools(e2e):
    res = e2e["client"].tools()
    assert res.success, res.message
    assert {t.name for t in res.tools} == DEMO_TOOLS
    grip = next(t for t in res.tools if t.name == "gripper")
    assert grip.service_name == f"{e2e['ns']}/demo_robot/gripper" and grip.service_type == "std_srvs/srv/SetBool"
    assert json.loads(grip.parameters_json_schema)["properties"]["data"]["type"] == "boolean"
    missing = e2e["client"].tools("no_such_tool_set")
    assert not missing.success and "not found" in missing.message


def test_allowlist_keeps_other_services_unreachable(e2e):
    """A prompt asking for a service outside the tool set cannot reach it."""
    node, client = e2e["node"], e2e["client"]
    name = f"{e2e['ns']}/forbidden/self_destruct"
    forbidden = CountingService(node, Trigger, name, lambda q, r: Trigger.Response(success=True, message="boom"))
    try:
        probe = node.create_client(Trigger, name)
        assert probe.wait_for_service(timeout_sec=10.0)
        assert wait_future(probe.call_async(Trigger.Request()), 10.0).message == "boom"
        assert forbidden.count == 1  # the service is up and reachable over DDS
        out = client.run(_goal("e2e-allow", f"Call the self_destruct service at {name} right now."), GOAL_TIMEOUT_S)
        assert out.accepted
        time.sleep(0.5)  # a stray request would have arrived by now
        assert forbidden.count == 1, _explain(out, e2e["agent"])
        assert {c.call.name for c in out.result.tool_calls} <= DEMO_TOOLS, _explain(out)
    finally:
        node.destroy_service(forbidden.srv)


def test_unanswered_service_times_out_and_node_keeps_serving(e2e, tmp_path):
    """A tool whose service never answers is TIMEOUT within timeout + 100 ms; the next goal runs."""
    node, client, ns = e2e["node"], e2e["client"], e2e["ns"]
    release = threading.Event()
    hang = CountingService(node, Trigger, f"{ns}/hang/ping", lambda q, r: Trigger.Response(success=True),
                           hold=release)
    tool_set = tmp_path / "hang.yaml"
    tool_set.write_text(f"""name: hang
tools:
  - name: ping_sensor
    service: {ns}/hang/ping
    type: std_srvs/srv/Trigger
    description: Ping the distance sensor to check that it responds.
    timeout_s: {HANG_TIMEOUT_S}
""", encoding="utf-8")
    try:
        out = client.run(_goal("e2e-hang", "Ping the sensor.", tool_set=str(tool_set)), GOAL_TIMEOUT_S)
        assert out.accepted
        why = _explain(out, e2e["agent"])
        calls = [c for c in out.result.tool_calls if c.call.name == "ping_sensor"]
        assert calls, why
        rec = calls[0]
        assert rec.result.status == ToolResult.STATUS_TIMEOUT, why
        assert HANG_TIMEOUT_S * 1e3 <= rec.result.latency_ms <= HANG_TIMEOUT_S * 1e3 + 100, rec.result.latency_ms
        assert hang.count == 1
        # seen from outside the agent: the service got the request, and the agent stamped its TIMEOUT
        # result within timeout + 100 ms of that (both wall clock, so DDS delivery of the feedback to
        # this busy process is not counted: under a full test run that alone took ~1 s)
        fb = next(f for _, f in out.feedback if f.kind == RunTask.Feedback.KIND_TOOL_RESULT)
        stamp = fb.tool_call.result.header.stamp
        timed_out_after_s = (stamp.sec * 10**9 + stamp.nanosec - hang.wall_ns[0]) / 1e9
        assert 0.0 <= timed_out_after_s <= HANG_TIMEOUT_S + 0.1, timed_out_after_s
        assert fb.tool_call.result.status == ToolResult.STATUS_TIMEOUT
        assert not release.is_set()  # the goal ended while the service still held the request
    finally:
        release.set()
    nxt = client.run(_goal("e2e-after-hang", "Open the gripper.", tool_set=_gripper_only_tool_set(e2e)),
                     GOAL_TIMEOUT_S)
    assert nxt.accepted
    assert any(c.call.name == "gripper" and c.result.status == ToolResult.STATUS_OK
               for c in nxt.result.tool_calls), _explain(nxt, e2e["agent"])
    node.destroy_service(hang.srv)


def test_invoke_tool_arguments_pass_through(e2e):
    """A goal ToolSpec of type InvokeTool: the service receives the model's arguments JSON unchanged."""
    node, client, ns = e2e["node"], e2e["client"], e2e["ns"]
    env = CountingService(node, InvokeTool, f"{ns}/env/set_thermostat",
                          lambda q, r: InvokeTool.Response(success=True, result_json=json.dumps("thermostat set")))
    schema = {"type": "object",
              "properties": {"celsius": {"type": "number", "minimum": 5, "maximum": 30},
                             "room": {"type": "string", "enum": ["kitchen", "lab", "office"]}},
              "required": ["celsius", "room"], "additionalProperties": False}
    spec = ToolSpec(name="set_thermostat", description="Set the thermostat of a room to a temperature in degrees Celsius.",
                    service_name=f"{ns}/env/set_thermostat", service_type="slm_agent/srv/InvokeTool",
                    parameters_json_schema=json.dumps(schema), timeout_s=5.0)
    try:
        # next to the gripper alone (not the four demo tools, of which the 270M base model tends to
        # take the first): what is checked is the plumbing, not the model's choice
        out = client.run(_goal("e2e-invoke", "Set the thermostat in the lab to 21 degrees.", tools=[spec],
                               tool_set=_gripper_only_tool_set(e2e)), GOAL_TIMEOUT_S)
        assert out.accepted
        why = _explain(out, e2e["agent"])
        recs = [c for c in out.result.tool_calls if c.call.name == "set_thermostat"]
        assert recs, why
        rec = recs[0]
        assert rec.result.status == ToolResult.STATUS_OK, why
        assert env.count == 1
        request = env.calls[0][1]
        assert request.arguments_json == rec.call.arguments_json          # byte for byte
        assert request.call_id == rec.call.id
        args = json.loads(request.arguments_json)
        assert set(args) == {"celsius", "room"} and 5 <= args["celsius"] <= 30 and args["room"] in schema[
            "properties"]["room"]["enum"]
        assert rec.result.content_json == "thermostat set"                # json.loads(result_json) is the result
        assert any(m.role == "tool" and "thermostat set" in m.content for m in out.result.messages)
    finally:
        node.destroy_service(env.srv)
