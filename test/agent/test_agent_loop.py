"""AgentLoop control flow with a *scripted* engine and in-process tools.

The ScriptedEngine (conftest) replays fixed outputs: these tests check the
loop's control flow (steps, parallel calls, feedback, limits, cancellation,
events, metrics), not any model's ability.
"""
from __future__ import annotations

import json
import math
import threading
import time
from types import SimpleNamespace

import pytest

from slm_agent.agent.loop import AgentEvent, AgentLoop, CallableToolInvoker, EventKind, ToolInvoker
from slm_agent.agent.safety import SafetyEnvelope
from slm_agent.agent.types import Status, ToolCall, ToolSpec
from slm_agent.engines.base import EngineError


def _call(tool, /, **args):
    return json.dumps({"name": tool, "arguments": args})


FINAL = _call("final_answer", text="done")


class Robot:
    """In-process tool implementations that record their calls."""

    def __init__(self) -> None:
        self.calls: list[tuple[str, dict]] = []
        self.lock = threading.Lock()

    def _rec(self, name, args):
        with self.lock:
            self.calls.append((name, args))

    def get_battery(self):
        self._rec("get_battery", {})
        return {"percentage": 50.0, "voltage": 24.0, "charging": False}

    def gripper(self, data):
        self._rec("gripper", {"data": data})
        return {"success": True, "message": "open" if data else "closed"}

    def move_to(self, **kw):
        self._rec("move_to", kw)
        return {"success": True, "message": "ok", "reached": kw["goal"], "duration_s": 1.0}

    def lookup_location(self, name):
        self._rec("lookup_location", {"name": name})
        if name == "crash":
            raise RuntimeError("map server down")
        return {"found": True, "pose": {"x": 4.0, "y": 2.5, "theta": 0.0}, "known_names": []}

    def functions(self):
        return {n: getattr(self, n) for n in ("get_battery", "gripper", "move_to", "lookup_location")}


@pytest.fixture
def robot():
    return Robot()


@pytest.fixture
def make_loop(demo_tool_set, scripted_engine_cls, robot):
    invokers = []

    def make(outputs, **kw):
        engine = scripted_engine_cls(outputs, chunk_delay_s=kw.pop("chunk_delay_s", 0.0))
        invoker = kw.pop("invoker", None) or CallableToolInvoker(robot.functions())
        invokers.append(invoker)
        tools = kw.pop("tools", demo_tool_set.tools)
        return engine, AgentLoop(engine, tools, invoker, **kw)

    yield make
    for inv in invokers:
        if hasattr(inv, "close"):
            inv.close()


def test_invoker_protocol():
    assert isinstance(CallableToolInvoker({}), ToolInvoker)


def test_multi_step_until_final_answer(make_loop, robot):
    engine, loop = make_loop([
        _call("lookup_location", name="kitchen"),
        _call("move_to", goal={"x": 4.0, "y": 2.5}, speed=1.0),
        _call("final_answer", text="In the kitchen."),
    ])
    result = loop.run(prompt="Go to the kitchen.")
    assert result.success and result.error == ""
    assert result.final_text == "In the kitchen." and result.steps == 3
    assert [n for n, _ in robot.calls] == ["lookup_location", "move_to"]
    assert [c.id for c, _ in result.calls] == ["call_0_0", "call_1_0"]
    # results are fed back: step 1's prompt holds step 0's result, step 2's holds both
    assert '"pose":{"x":4.0,"y":2.5' in engine.requests[1].prompt
    assert engine.requests[2].prompt.startswith(engine.requests[1].prompt.rsplit("\nAssistant:", 1)[0])
    # the transcript is OpenAI-style and complete
    roles = [m["role"] for m in result.messages]
    assert roles == ["user", "assistant", "tool", "assistant", "tool", "assistant"]
    assert result.messages[1]["tool_calls"][0]["function"]["name"] == "lookup_location"
    assert result.messages[2]["tool_call_id"] == "call_0_0"
    # one CallMetrics per LLM call, measured
    assert len(result.metrics) == 3 and result.metric_steps == [0, 1, 2]
    assert all(m.decode_tokens > 0 and math.isfinite(m.total_s) for m in result.metrics)


def test_parallel_calls_in_one_turn(make_loop, robot):
    _, loop = make_loop([
        json.dumps([{"name": "get_battery", "arguments": {}}, {"name": "gripper", "arguments": {"data": True}}]),
        FINAL,
    ])
    result = loop.run(prompt="Battery and open gripper.")
    assert result.success
    assert [(c.name, r.status) for c, r in result.calls] == [("get_battery", Status.OK), ("gripper", Status.OK)]
    assert [c.id for c, _ in result.calls] == ["call_0_0", "call_0_1"]
    assert [m["role"] for m in result.messages] == ["user", "assistant", "tool", "tool", "assistant"]


def test_parallel_execution_runs_concurrently(demo_tool_set, scripted_engine_cls):
    barrier = threading.Barrier(2, timeout=2.0)

    def slow(**_):
        barrier.wait()  # only passes if both calls run at the same time
        return {"ok": True}

    specs = [ToolSpec(name="a", timeout_s=3), ToolSpec(name="b", timeout_s=3)]
    engine = scripted_engine_cls([json.dumps([{"name": "a", "arguments": {}}, {"name": "b", "arguments": {}}]),
                                  FINAL])
    inv = CallableToolInvoker({"a": slow, "b": slow})
    result = AgentLoop(engine, specs, inv, parallel_execution=True).run(prompt="both")
    inv.close()
    assert [r.status for _, r in result.calls] == [Status.OK, Status.OK]


def test_max_steps(make_loop):
    alternating = [_call("get_battery"), _call("gripper", data=True), _call("get_battery")]
    _, loop = make_loop(alternating, max_steps=3)
    result = loop.run(prompt="Loop forever.")
    assert not result.success and result.error == "no final answer within max_steps=3"
    assert result.steps == 3 and len(result.calls) == 3 and len(result.metrics) == 3
    _, loop = make_loop(alternating[:2], max_steps=5)
    assert loop.run(prompt="x", max_steps=2).error == "no final answer within max_steps=2"


def test_repeating_the_last_successful_call_ends_the_task(make_loop, robot):
    _, loop = make_loop([_call("gripper", data=True)] * 4, max_steps=4)
    result = loop.run(prompt="Open the gripper.")
    assert result.success and result.stopped_on_repeat and result.error == ""
    assert [n for n, _ in robot.calls] == ["gripper"], "the repeated call must not run again"
    assert len(result.metrics) == 2 and "gripper" in result.final_text


def test_repeating_a_failed_call_is_retried(make_loop, robot):
    bad = _call("move_to", goal={"x": 50.0, "y": 0.0}, speed=1.0)
    _, loop = make_loop([bad, bad, FINAL], max_steps=3)
    result = loop.run(prompt="Drive far.")
    assert not result.stopped_on_repeat
    assert [r.status for _, r in result.calls] == [Status.INVALID_ARGUMENTS] * 2


def test_errors_are_fed_back_and_the_model_recovers(make_loop, robot):
    engine, loop = make_loop([
        _call("move_to", goal={"x": 20, "y": 0}, speed=1.0),    # out of bounds
        _call("teleport", where="mars"),                        # unknown tool
        _call("lookup_location", name="crash"),                 # tool raises
        '{"name": "gripper", "arguments": {"data": tr',          # truncated output
        _call("gripper", data=True),
        FINAL,
    ], max_steps=6)
    result = loop.run(prompt="Do things.")
    assert result.success
    assert [r.status for _, r in result.calls] == [
        Status.INVALID_ARGUMENTS, Status.REFUSED, Status.FAILED, Status.OK]
    assert "goal.x: 20 is above the maximum 10" in engine.requests[1].prompt
    assert "unknown tool 'teleport'" in engine.requests[2].prompt
    assert "RuntimeError: map server down" in engine.requests[3].prompt
    assert "Result: Error: output ends inside an unfinished JSON call" in engine.requests[4].prompt
    assert result.parse_errors and [n for n, _ in robot.calls] == ["lookup_location", "gripper"]


def test_confirmation_flag_is_passed_to_the_envelope(make_loop, robot, demo_tool_set):
    import dataclasses

    tools = [dataclasses.replace(t, requires_confirmation=(t.name == "gripper")) for t in demo_tool_set.tools]
    _, loop = make_loop([_call("gripper", data=True), FINAL], tools=tools)
    r = loop.run(prompt="open")
    assert r.calls[0][1].status == Status.REFUSED and robot.calls == []
    _, loop = make_loop([_call("gripper", data=True), FINAL], tools=tools)
    r = loop.run(prompt="open", allow_confirmation=True)
    assert r.calls[0][1].status == Status.OK and robot.calls == [("gripper", {"data": True})]


def test_rate_limit_across_runs_with_a_shared_envelope(make_loop, robot, demo_tool_set):
    env = SafetyEnvelope(demo_tool_set.tools)  # move_to: max 1 Hz
    move = _call("move_to", goal={"x": 1, "y": 1}, speed=1.0)
    move2 = _call("move_to", goal={"x": 2, "y": 1}, speed=1.0)  # not a repeat: a second real move
    _, loop = make_loop([move, move2, FINAL], envelope=env)
    r = loop.run(prompt="move twice")
    assert [x.status for _, x in r.calls] == [Status.OK, Status.REFUSED]
    assert "rate limit" in r.calls[1][1].error
    assert len(robot.calls) == 1


def test_execute_tools_false_returns_calls_without_invoking(make_loop, robot):
    _, loop = make_loop([_call("gripper", data=True)])
    result = loop.run(prompt="open", execute_tools=False)
    assert result.success and robot.calls == []
    assert [(c.name, r.status) for c, r in result.calls] == [("gripper", Status.REFUSED)]
    assert "not executed" in result.calls[0][1].error and math.isnan(result.calls[0][1].latency_ms)


def test_events_stream_text_calls_and_results(make_loop):
    events: list[AgentEvent] = []
    text = _call("gripper", data=True)
    _, loop = make_loop([text, FINAL])
    loop.run(prompt="open", on_event=events.append)
    kinds = [e.kind for e in events]
    assert kinds.index(EventKind.TOOL_CALL) < kinds.index(EventKind.TOOL_RESULT)
    step0_text = "".join(e.text_delta for e in events if e.kind == EventKind.TEXT and e.step == 0)
    assert step0_text == text
    assert sum(1 for e in events if e.kind == EventKind.TEXT) > 2  # streamed in chunks, not at the end
    result_event = next(e for e in events if e.kind == EventKind.TOOL_RESULT)
    assert result_event.result.status == Status.OK and result_event.call.name == "gripper"


def test_a_broken_event_callback_does_not_stop_the_task(make_loop):
    def boom(_event):
        raise RuntimeError("listener bug")

    _, loop = make_loop([_call("gripper", data=True), FINAL])
    assert loop.run(prompt="open", on_event=boom).success


def test_cancel_stops_generation_between_chunks(make_loop, robot):
    cancel = threading.Event()
    long_text = _call("move_to", goal={"x": 1, "y": 1}, speed=1.0) + " " * 400
    engine, loop = make_loop([long_text, FINAL], chunk_delay_s=0.01)
    seen = []

    def on_event(e):
        seen.append(e)
        if len(seen) == 3:
            cancel.set()

    t0 = time.monotonic()
    result = loop.run(prompt="move", cancel=cancel, on_event=on_event)
    assert time.monotonic() - t0 < 0.5  # ~60 chunks * 10 ms would take 0.6 s
    assert not result.success and result.error == "cancelled"
    assert len(seen) == 3 and robot.calls == [] and result.calls == []
    assert engine.closed_streams == 1  # the generator was closed, i.e. decoding stopped


def test_cancel_before_start_and_between_tool_calls(make_loop, robot):
    cancel = threading.Event()
    cancel.set()
    _, loop = make_loop([FINAL])
    assert loop.run(prompt="x", cancel=cancel).error == "cancelled"

    cancel2 = threading.Event()

    def cancelling_battery():
        cancel2.set()
        return {"percentage": 1.0}

    funcs = robot.functions()
    funcs["get_battery"] = cancelling_battery
    _, loop = make_loop([json.dumps([{"name": "get_battery", "arguments": {}},
                                     {"name": "gripper", "arguments": {"data": True}}]), FINAL],
                        invoker=CallableToolInvoker(funcs))
    result = loop.run(prompt="x", cancel=cancel2)
    assert result.error == "cancelled"
    assert [r.status for _, r in result.calls] == [Status.OK, Status.REFUSED]
    assert "cancelled" in result.calls[1][1].error and robot.calls == []


def test_engine_errors_end_the_run_cleanly(demo_tool_set, scripted_engine_cls, robot):
    class Failing(scripted_engine_cls):
        def stream(self, request):
            yield from ()
            raise EngineError("model file missing")

    inv = CallableToolInvoker(robot.functions())
    result = AgentLoop(Failing([]), demo_tool_set.tools, inv).run(prompt="x")
    inv.close()
    assert not result.success and result.error == "engine error: EngineError: model file missing"


def test_callable_invoker_timeout_and_failures():
    inv = CallableToolInvoker({"sleepy": lambda: time.sleep(1.0), "bad": lambda: 1 / 0, "num": lambda: 42})
    t0 = time.monotonic()
    r = inv.invoke(ToolSpec(name="sleepy", timeout_s=0.1), ToolCall("c", "sleepy"))
    assert r.status == Status.TIMEOUT and time.monotonic() - t0 < 0.3
    r = inv.invoke(ToolSpec(name="bad"), ToolCall("c", "bad"))
    assert r.status == Status.FAILED and "ZeroDivisionError" in r.error
    assert inv.invoke(ToolSpec(name="num"), ToolCall("c", "num")).content == {"result": 42}
    assert inv.invoke(ToolSpec(name="nope"), ToolCall("c", "nope")).status == Status.REFUSED
    inv.close()


def test_messages_input_and_chat_format(make_loop):
    # ChatMessage-like objects (duck-typed, as the node passes RunTask goal messages)
    msgs = [SimpleNamespace(role="system", content="Answer in French.", name="", tool_call_id="", tool_calls=[]),
            SimpleNamespace(role="user", content="Ouvre la pince.", name="", tool_call_id="", tool_calls=[])]
    engine, loop = make_loop([_call("gripper", data=True), _call("final_answer", text="C'est ouvert.")],
                             chat_format="chat", strategy="direct")
    result = loop.run(messages=msgs)
    assert result.success and result.final_text == "C'est ouvert."
    first = engine.requests[0]
    assert first.prompt is None and first.messages[0]["role"] == "system"
    assert "Answer in French." in first.messages[0]["content"]
    assert first.messages[1] == {"role": "user", "content": "Ouvre la pince."}
    assert engine.requests[1].messages[-1]["content"].startswith("Result: {\"status\":\"ok\"")


def test_no_user_message(make_loop):
    _, loop = make_loop([FINAL])
    result = loop.run(messages=[{"role": "system", "content": "hi"}])
    assert not result.success and "no user message" in result.error


def test_constrained_requests_carry_the_schema(make_loop):
    engine, loop = make_loop([FINAL], constrained=True, strategy="reflact")
    loop.run(prompt="x")
    schema = engine.requests[0].json_schema
    assert schema is not None and "reflection" in json.dumps(schema)
