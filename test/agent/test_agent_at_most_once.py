"""Issue 23 item 1: a robot action runs at most once per goal.

A real service in its own process answers in 4 s; the tool's timeout is 2 s.
The call times out, the (scripted) model asks for the same call again: a tool
not marked idempotent is not executed a second time (the service process
counts what it executed), and the model reads that the outcome is unknown.
A tool marked ``idempotent: true`` is executed again.  Also: a reply longer
than ``max_reply_chars`` reaches the model cut, with a marker.
"""
from __future__ import annotations

import dataclasses
import os
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest

from slm_agent.agent.loop import AgentLoop, CallableToolInvoker, REPLY_CUT_MARKER
from slm_agent.agent.toolset import ToolSetError, load_tool_set_text
from slm_agent.agent.types import Status

HERE = Path(__file__).resolve().parent
SERVICE_DELAY_S = 4.0
TOOL_TIMEOUT_S = 2.0
CALL = 'Thought: open it.\nAction: gripper\nAction Input: {"data": true}'
FINAL = "Thought: I now know the final answer.\nFinal Answer: done."


@pytest.fixture
def slow_service(test_namespace):
    name = f"{test_namespace}/slow_gripper_{os.getpid()}_{time.monotonic_ns() % 100000}"
    proc = subprocess.Popen([sys.executable, str(HERE / "slow_service_proc.py"), name, str(SERVICE_DELAY_S)],
                            stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    lines: list[str] = []
    ready = threading.Event()

    def read() -> None:
        for line in proc.stdout:
            lines.append(line.rstrip())
            if line.startswith("slow ready"):
                ready.set()

    threading.Thread(target=read, daemon=True).start()
    assert ready.wait(30), f"slow service did not start: {lines}"
    yield name, lines
    proc.terminate()
    try:
        proc.wait(10)
    except subprocess.TimeoutExpired:
        proc.kill()


def _executed(lines: list[str]) -> int:
    return sum(1 for line in lines if line.startswith("EXECUTED"))


def _run_twice(ros_env, demo_tool_set, scripted_engine_cls, service: str, idempotent: bool):
    from slm_agent.ros.tool_invoker import RosServiceToolInvoker

    _, node, _ = ros_env
    spec = dataclasses.replace(demo_tool_set.by_name()["gripper"], service_name=service,
                               timeout_s=TOOL_TIMEOUT_S, idempotent=idempotent)
    invoker = RosServiceToolInvoker(node, [spec])
    try:
        assert invoker.wait_ready(15.0), "the slow service did not appear on the graph"
        engine = scripted_engine_cls([CALL, CALL, FINAL])
        result = AgentLoop(engine, [spec], invoker, strategy="react", max_steps=4).run(prompt="Open the gripper.")
    finally:
        invoker.destroy()
    return result, engine


def test_a_timed_out_robot_action_is_executed_exactly_once(ros_env, demo_tool_set, scripted_engine_cls,
                                                          slow_service):
    service, lines = slow_service
    result, engine = _run_twice(ros_env, demo_tool_set, scripted_engine_cls, service, idempotent=False)
    time.sleep(SERVICE_DELAY_S + 1.5)   # a second request, had one been sent, would have started by now
    assert _executed(lines) == 1, f"the robot acted {_executed(lines)} times: {lines}"
    (c1, r1), (c2, r2) = result.calls
    assert r1.status == Status.TIMEOUT and r1.outcome_unknown
    assert "OUTCOME UNKNOWN" in r1.error and "will not be executed again" in r1.error
    assert r2.status == Status.REFUSED and "not executed" in r2.error and c1.id in r2.error
    # the model read both: the unknown outcome, then why the repeat did not run
    assert "OUTCOME UNKNOWN" in engine.requests[1].prompt
    assert "not marked idempotent" in engine.requests[2].prompt
    assert result.success and result.final_text == "done."


def test_an_idempotent_tool_may_run_again_after_a_timeout(ros_env, demo_tool_set, scripted_engine_cls,
                                                         slow_service):
    service, lines = slow_service
    result, engine = _run_twice(ros_env, demo_tool_set, scripted_engine_cls, service, idempotent=True)
    time.sleep(SERVICE_DELAY_S + 1.5)
    assert _executed(lines) == 2, lines
    assert [r.status for _, r in result.calls] == [Status.TIMEOUT, Status.TIMEOUT]
    assert "calling it again is safe" in result.calls[0][1].error


def test_the_demo_robot_declares_which_tools_are_idempotent(demo_tool_set):
    flags = {t.name: t.idempotent for t in demo_tool_set.tools}
    assert flags == {"get_battery": True, "move_to": False, "gripper": False, "lookup_location": True}
    assert all(t.max_reply_chars == 8000 for t in demo_tool_set.tools)


def test_tool_set_keys_are_checked():
    base = ("tools:\n  - name: t\n    service: /t\n    type: std_srvs/srv/Trigger\n    description: d\n")
    assert load_tool_set_text(base).tools[0].idempotent is False
    assert load_tool_set_text(base).max_reply_chars == 8000
    assert load_tool_set_text("max_reply_chars: 50\n" + base).tools[0].max_reply_chars == 50
    with pytest.raises(ToolSetError, match="idempotent"):
        load_tool_set_text(base + "    idempotent: yes please\n")
    with pytest.raises(ToolSetError, match="max_reply_chars"):
        load_tool_set_text("max_reply_chars: -1\n" + base)


def test_a_long_reply_reaches_the_model_cut_with_a_marker(demo_tool_set, scripted_engine_cls):
    spec = dataclasses.replace(demo_tool_set.by_name()["get_battery"], max_reply_chars=100)
    invoker = CallableToolInvoker({"get_battery": lambda: {"log": "x" * 2_000_000}})
    engine = scripted_engine_cls(['Thought: read.\nAction: get_battery\nAction Input: {}', FINAL])
    try:
        result = AgentLoop(engine, [spec], invoker, strategy="react", max_steps=3).run(prompt="Battery?")
    finally:
        invoker.close()
    r = result.calls[0][1]
    assert r.status == Status.OK and isinstance(r.content, str)
    assert r.content.startswith('{"log": "xxx') and len(r.content) < 200
    assert REPLY_CUT_MARKER.split("{")[0] in r.content and "100 of 2000011" in r.content
    assert len(engine.requests[1].prompt) < 10_000, "the 2 MB reply did not reach the prompt"


@pytest.mark.parametrize("idempotent, runs", [(False, 1), (True, 2)])
def test_at_most_once_in_the_plain_python_loop(scripted_engine_cls, idempotent, runs):
    """The same rule with in-process tools (no DDS): counted executions of a slow tool."""
    from slm_agent.agent.types import ToolSpec

    count = []
    spec = ToolSpec(name="gripper", description="Open or close the gripper.", timeout_s=0.3,
                    idempotent=idempotent,
                    parameters={"type": "object", "properties": {"data": {"type": "boolean"}},
                                "required": ["data"], "additionalProperties": False})
    invoker = CallableToolInvoker({"gripper": lambda data: count.append(data) or time.sleep(0.6) or {"ok": True}})
    engine = scripted_engine_cls([CALL, CALL, FINAL])
    try:
        result = AgentLoop(engine, [spec], invoker, strategy="react", max_steps=4).run(prompt="Open it.")
    finally:
        invoker.close()
    time.sleep(0.8)
    assert len(count) == runs
    assert result.calls[0][1].status == Status.TIMEOUT and "OUTCOME UNKNOWN" in result.calls[0][1].error
    assert result.calls[1][1].status == (Status.TIMEOUT if idempotent else Status.REFUSED)
