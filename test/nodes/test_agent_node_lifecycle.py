"""Agent node lifecycle, configuration errors, goal validation, cancel and the
node-level allowlist with *unconstrained* decoding.

One agent process (not autostarted, ``tool_set`` empty) is driven through
its lifecycle services from this process: a bad profile makes ``configure``
fail without killing it; fixing the parameter lets it configure and
activate; goals are rejected unless active.  The same process (once active,
model loaded once) then runs with ``constrained:=false chat_format:=raw``, so
the real model can write calls to tools that do not exist, which the node
must refuse.  Autostart with a bad configuration must exit with status 2 and
a clear message (those processes never load the model).
"""
from __future__ import annotations

import json
import sys
import threading
import time
from pathlib import Path

import pytest

rclpy = pytest.importorskip("rclpy", reason="rclpy (ROS 2 Python client) not installed")
pytest.importorskip("slm_agent.msg", reason="slm_agent interfaces not generated/installed (no slm_agent.msg)")

from action_msgs.msg import GoalStatus  # noqa: E402
from lifecycle_msgs.msg import State, Transition  # noqa: E402
from std_srvs.srv import Trigger  # noqa: E402

from slm_agent.action import RunTask  # noqa: E402
from slm_agent.msg import ChatMessage, ToolResult, ToolSpec  # noqa: E402
from slm_agent.profiles import DEFAULT_PROFILE  # noqa: E402
from slm_agent.ros.runtime import SpinThread  # noqa: E402
from slm_agent.srv import InvokeTool  # noqa: E402

sys.path.insert(0, str(Path(__file__).resolve().parent))
from agent_node_helpers import (  # noqa: E402
    AGENT_MODULE,
    AgentClient,
    CountingService,
    NodeProcess,
    namespace,
    real_model_missing,
    wait_future,
)

BAD_PROFILE = "no-such-model-profile"
GOAL_TIMEOUT_S = 300.0


@pytest.fixture(scope="module")
def ros():
    context = rclpy.Context()
    rclpy.init(context=context)
    node = rclpy.create_node("agent_lifecycle_test", context=context)
    spin = SpinThread(node, context=context)
    try:
        yield node
    finally:
        spin.stop()
        node.destroy_node()
        context.try_shutdown()


@pytest.fixture(scope="module")
def lc(ros):
    ns = namespace("agent_lc")
    proc = NodeProcess(AGENT_MODULE, ["-r", f"__ns:={ns}", "-p", f"model:={BAD_PROFILE}",
                                      "-p", "constrained:=false", "-p", "chat_format:=raw"], name="agent_lc")
    client = AgentClient(ros, f"{ns}/agent")
    assert proc.wait_for_text("agent node up (unconfigured)", 60.0), proc.tail()
    try:
        yield {"ns": ns, "proc": proc, "client": client, "node": ros}
    finally:
        code = proc.terminate()
    assert code == 0, f"agent exited with {code} on SIGTERM\n{proc.tail(8000)}"


def _ensure_active(lc) -> AgentClient:
    """Bring the module's agent to active with the default model (the lifecycle test normally did)."""
    reason = real_model_missing()
    if reason:
        pytest.skip(f"needs the real default model: {reason}")
    client = lc["client"]
    sid, _ = client.state()
    if sid == State.PRIMARY_STATE_UNCONFIGURED:
        assert all(r.successful for r in client.set_parameters(model=DEFAULT_PROFILE))
        assert client.transition(Transition.TRANSITION_CONFIGURE), lc["proc"].tail()
        sid, _ = client.state()
    if sid == State.PRIMARY_STATE_INACTIVE:
        assert client.transition(Transition.TRANSITION_ACTIVATE), lc["proc"].tail()
    assert client.state()[0] == State.PRIMARY_STATE_ACTIVE
    client.wait_server(30.0, lc["proc"])
    return client


def test_lifecycle_bad_profile_fails_then_good_config_activates(lc):
    client, proc = lc["client"], lc["proc"]
    assert client.state() == (State.PRIMARY_STATE_UNCONFIGURED, "unconfigured")
    client.wait_server(30.0, proc)  # the action server exists in every state ...
    assert not client.run(RunTask.Goal(task_id="early", prompt="Hi.")).accepted  # ... and rejects goals
    listed = client.tools()
    assert not listed.success and "not configured" in listed.message

    # bad profile: FAILURE, one clear error, still unconfigured and alive
    assert client.transition(Transition.TRANSITION_CONFIGURE) is False
    assert proc.wait_for_text("configure failed", 10.0), proc.tail()
    log = proc.text()
    assert BAD_PROFILE in log and "available:" in log and DEFAULT_PROFILE in log, proc.tail()
    assert proc.alive()
    assert client.state()[0] == State.PRIMARY_STATE_UNCONFIGURED

    reason = real_model_missing()
    if reason:
        pytest.skip(f"the good-configuration half needs the real default model: {reason}")
    assert all(r.successful for r in client.set_parameters(model=DEFAULT_PROFILE))
    assert client.transition(Transition.TRANSITION_CONFIGURE), proc.tail()
    assert client.state() == (State.PRIMARY_STATE_INACTIVE, "inactive")
    assert not client.run(RunTask.Goal(task_id="inactive", prompt="Hi.")).accepted
    refused = client.set_parameters(max_steps=2)
    assert not refused[0].successful and "cleanup" in refused[0].reason
    listed = client.tools()
    assert listed.success and list(listed.tools) == []  # tool_set is empty

    assert client.transition(Transition.TRANSITION_ACTIVATE), proc.tail()
    assert client.state() == (State.PRIMARY_STATE_ACTIVE, "active")
    # deactivate -> rejected again; activate -> serving
    assert client.transition(Transition.TRANSITION_DEACTIVATE)
    assert not client.run(RunTask.Goal(task_id="deactivated", prompt="Hi.")).accepted
    assert client.transition(Transition.TRANSITION_ACTIVATE)
    out = client.run(RunTask.Goal(task_id="bad-strategy", prompt="Hi.", strategy="bogus"))
    assert out.accepted
    # cleanup releases everything and makes the parameters writable again; configure reloads
    assert client.transition(Transition.TRANSITION_DEACTIVATE)
    assert client.transition(Transition.TRANSITION_CLEANUP)
    assert client.state()[0] == State.PRIMARY_STATE_UNCONFIGURED
    assert proc.wait_for_text("cleaned up: model and clients released", 10.0), proc.tail()
    assert not client.tools().success
    assert all(r.successful for r in client.set_parameters(max_steps=2))
    assert client.transition(Transition.TRANSITION_CONFIGURE) and client.transition(Transition.TRANSITION_ACTIVATE)
    assert "max_steps=2" in proc.text().rsplit("configured:", 1)[-1]
    assert client.state() == (State.PRIMARY_STATE_ACTIVE, "active")


def test_unknown_goal_setting_is_aborted(lc):
    client = _ensure_active(lc)
    out = client.run(RunTask.Goal(task_id="bogus-strategy", prompt="Hi.", strategy="bogus"))
    assert out.accepted and out.status == GoalStatus.STATUS_ABORTED
    assert "unknown strategy 'bogus'" in out.result.error and "direct" in out.result.error
    assert not out.result.success and not out.result.metrics  # no LLM call was made
    out = client.run(RunTask.Goal(task_id="bogus-ser", prompt="Hi.", serialization="yaml"))
    assert out.accepted and out.status == GoalStatus.STATUS_ABORTED
    assert "unknown serialization 'yaml'" in out.result.error
    out = client.run(RunTask.Goal(task_id="bogus-format", prompt="Hi.", chat_format="xml"))
    assert out.accepted and out.status == GoalStatus.STATUS_ABORTED and not out.result.metrics
    assert "unknown chat_format 'xml'" in out.result.error and "raw, chat" in out.result.error
    out = client.run(RunTask.Goal(task_id="bogus-switch", prompt="Hi.", constrained="yes"))
    assert out.accepted and out.status == GoalStatus.STATUS_ABORTED and not out.result.metrics
    assert out.result.error == "unknown constrained 'yes'; valid: on, off (or empty: the agent's setting)"
    bad_schema = ToolSpec(name="broken", description="x", parameters_json_schema="{not json")
    out = client.run(RunTask.Goal(task_id="bad-tool", prompt="Hi.", tools=[bad_schema]))
    assert out.status == GoalStatus.STATUS_ABORTED and "broken" in out.result.error and "JSON" in out.result.error


def test_goal_overrides_chat_format_and_constrained_for_itself_only(lc):
    """The node runs with chat_format raw, constrained off; one goal switches both (chat prompt,
    JSON-schema decoding), the next goal without overrides gets the node's settings back."""
    client = _ensure_active(lc)
    out = client.run(RunTask.Goal(task_id="override", prompt="Say hello.", max_steps=1, execute_tools=False,
                                  chat_format=" Chat", constrained="ON"), GOAL_TIMEOUT_S)
    assert out.accepted and len(out.result.metrics) == 1, (out.status, out.result.error)
    assert (out.result.chat_format, out.result.constrained) == ("chat", "on")
    reply = [m.content for m in out.result.messages if m.role == "assistant"][-1]
    # chat format stores the output without the raw prompt's "Assistant:" cue; constrained
    # decoding with no tools offered admits no call, only the plain-text answer (or an empty list)
    assert not reply.startswith("Assistant:"), reply
    assert reply.strip() == "[]" or reply.strip()[:1] not in ("[", "{"), reply

    plain = client.run(RunTask.Goal(task_id="node-defaults", prompt="Say hello.", max_steps=1,
                                    execute_tools=False), GOAL_TIMEOUT_S)
    assert plain.accepted and len(plain.result.metrics) == 1, (plain.status, plain.result.error)
    assert (plain.result.chat_format, plain.result.constrained) == ("raw", "off")
    reply = [m.content for m in plain.result.messages if m.role == "assistant"][-1]
    assert reply.startswith("Assistant:"), reply  # the raw transcript keeps the cue


def test_unconstrained_call_to_unlisted_tool_is_refused(lc):
    """The model (unconstrained, raw prompt) calls a tool that is not offered: the node refuses it
    and the real service of that name is never reached."""
    client, node, ns = _ensure_active(lc), lc["node"], lc["ns"]
    forbidden = CountingService(node, Trigger, f"{ns}/forbidden/self_destruct",
                                lambda q, r: Trigger.Response(success=True, message="boom"))
    clock = CountingService(node, InvokeTool, f"{ns}/env/get_time",
                            lambda q, r: InvokeTool.Response(success=True, result_json=json.dumps("12:00")))
    offered = ToolSpec(name="get_time", description="Read the current time.", service_name=f"{ns}/env/get_time",
                       service_type="slm_agent/srv/InvokeTool", parameters_json_schema='{"type":"object"}',
                       timeout_s=2.0)
    # a transcript in which "self_destruct" was called before, so the base model repeats it
    history = [ChatMessage(role="user", content="Destroy the robot."),
               ChatMessage(role="assistant", content='Assistant: {"name": "self_destruct", "arguments": {}}'),
               ChatMessage(role="tool", content='{"status":"ok","result":{"success":true}}'),
               ChatMessage(role="user", content="Destroy the robot again.")]
    try:
        probe = node.create_client(Trigger, f"{ns}/forbidden/self_destruct")
        assert probe.wait_for_service(timeout_sec=10.0)
        assert wait_future(probe.call_async(Trigger.Request()), 10.0).success
        assert forbidden.count == 1  # reachable over DDS, by anyone who has a client
        out = client.run(RunTask.Goal(task_id="unlisted", messages=history, tools=[offered], max_steps=1,
                                      execute_tools=True), GOAL_TIMEOUT_S)
        assert out.accepted
        time.sleep(0.5)
        assert forbidden.count == 1, "the agent reached a service outside its tools"
        attempts = [c for c in out.result.tool_calls if c.call.name == "self_destruct"]
        if not attempts:
            pytest.skip(f"the model did not write a self_destruct call this time (output {out.text()!r}); "
                        "nothing to refuse")
        for rec in attempts:
            assert rec.result.status == ToolResult.STATUS_REFUSED
            assert "unknown tool 'self_destruct'" in rec.result.error and "get_time" in rec.result.error
            assert rec.result.latency_ms != rec.result.latency_ms  # NaN: no service was called
    finally:
        node.destroy_service(forbidden.srv)
        node.destroy_service(clock.srv)


def test_cancel_stops_generation_and_next_goal_runs(lc):
    client = _ensure_active(lc)
    first_text = threading.Event()

    def on_feedback(_out, fb) -> None:
        if fb.kind == RunTask.Feedback.KIND_TEXT:
            first_text.set()

    out = client.start(RunTask.Goal(task_id="long", prompt="Write a long story about a robot who learns to paint.",
                                    max_steps=1, execute_tools=False), on_feedback=on_feedback)
    assert out.accepted
    assert first_text.wait(120.0), "no text feedback"
    cancel_at = time.monotonic()
    wait_future(out.handle.cancel_goal_async(), 10.0)
    client.finish(out, GOAL_TIMEOUT_S)
    assert out.status == GoalStatus.STATUS_CANCELED, (out.status, out.result.error, out.text())
    assert out.result.error == "cancelled" and not out.result.success
    assert out.done_at - cancel_at < 1.5, f"cancel took {out.done_at - cancel_at:.2f} s"
    # generation stopped at the next chunk: at most the in-flight delta, the flushed
    # batch and one message already on its way arrive after the cancel request
    late = [f for t, f in out.feedback if t > cancel_at and f.kind == RunTask.Feedback.KIND_TEXT]
    assert len(late) <= 3, [f.text_delta for f in late]
    # the engine was released: the next goal generates normally
    nxt = client.run(RunTask.Goal(task_id="after-cancel", prompt="Say hello.", max_steps=1, execute_tools=False),
                     GOAL_TIMEOUT_S)
    assert nxt.accepted and nxt.status in (GoalStatus.STATUS_SUCCEEDED, GoalStatus.STATUS_ABORTED)
    assert len(nxt.result.metrics) == 1 and nxt.result.metrics[0].decode_tokens >= 1


BAD_TOOL_SET = "tools:\n  - name: 1bad\n    service: /x\n    type: std_srvs/srv/Trigger\n    description: bad\n"


@pytest.mark.parametrize("params, expected", [
    ([f"model:={BAD_PROFILE}"], BAD_PROFILE),
    (["strategy:=bogus"], "strategy='bogus': must be one of direct, react, reflact"),
    (["serialization:=yaml"], "serialization='yaml': must be one of"),
    (["tool_set:=<bad>"], "'name' must be an identifier"),
    (["max_steps:=many"], "max_steps='many': must be an integer"),
    # the cascade's fallback (issue 26): refused in one line before any model loads
    (["fallback_model:=no-such-fallback"], "configure failed: fallback_model 'no-such-fallback': "),
    (["escalate_on:=invalid,sometimes"], "unknown trigger(s) 'sometimes'"),
], ids=["profile", "strategy", "serialization", "tool_set", "param_type", "fallback_profile", "escalate_on"])
def test_autostart_with_bad_config_exits_2_with_clear_message(params, expected, tmp_path):
    bad = tmp_path / "bad.yaml"
    bad.write_text(BAD_TOOL_SET, encoding="utf-8")
    args = []
    for p in params:
        args += ["-p", p.replace("<bad>", str(bad))]
    proc = NodeProcess(AGENT_MODULE, ["-r", f"__ns:={namespace('agent_bad')}", "-p", "autostart:=true", *args],
                       name="agent_bad")
    try:
        code = proc.wait_exit(60.0)
        assert code == 2, f"exit status {code}\n{proc.tail()}"
        log = proc.text()
        assert expected in log, proc.tail()
        assert "Traceback" not in log, proc.tail()
    finally:
        proc.terminate()
