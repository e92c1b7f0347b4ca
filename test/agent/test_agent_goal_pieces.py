"""The agent node's plain-Python pieces: feedback batching (agent/feedback.py),
metrics held for their energy (agent/metrics_queue.py) and goal checks
(agent/goal_plan.py). No ROS, no model."""
from __future__ import annotations

import threading
import time

import pytest

from slm_agent.agent.feedback import FeedbackBatcher
from slm_agent.agent.goal_options import GoalOptions
from slm_agent.agent.loop import AgentEvent, EventKind
from slm_agent.agent.metrics_queue import MetricsQueue
from slm_agent.agent.types import Status, ToolCall, ToolResult, ToolSpec


class FakeClock:
    def __init__(self) -> None:
        self.t = 0.0

    def __call__(self) -> float:
        return self.t


def _batcher(batch: int = 3, delay: float = 0.1):
    out: list[tuple] = []
    clock = FakeClock()
    fb = FeedbackBatcher(batch, delay, on_text=lambda s, t: out.append(("text", s, t)),
                         on_call=lambda s, c: out.append(("call", s, c.name)),
                         on_result=lambda s, c, r: out.append(("result", s, c.name, r.status)), clock=clock)
    return fb, out, clock


def _text(step: int, delta: str) -> AgentEvent:
    return AgentEvent(EventKind.TEXT, step, text_delta=delta)


def test_first_delta_of_each_call_goes_out_at_once_then_batches():
    fb, out, _clock = _batcher(batch=3)
    for d in ("a", "b", "c", "d", "e"):
        fb.on_event(_text(0, d))
    assert out == [("text", 0, "a"), ("text", 0, "bcd")]
    fb.on_event(_text(1, "X"))        # a new step flushes the old one's rest, then its own first delta
    assert out[2:] == [("text", 0, "e"), ("text", 1, "X")]
    fb.on_event(_text(1, ""))         # empty deltas are ignored
    fb.flush()
    assert len(out) == 4 and fb.text_messages == 4


def test_delay_flushes_a_short_batch_and_calls_flush_text_first():
    fb, out, clock = _batcher(batch=100, delay=0.1)
    fb.on_event(_text(0, "a"))
    fb.on_event(_text(0, "b"))
    clock.t = 0.2
    fb.on_event(_text(0, "c"))
    assert out == [("text", 0, "a"), ("text", 0, "bc")]
    fb.on_event(_text(0, "d"))
    call = ToolCall("c1", "open_gripper", {})
    fb.on_event(AgentEvent(EventKind.TOOL_CALL, 0, call=call))
    fb.on_event(AgentEvent(EventKind.TOOL_RESULT, 0, call=call, result=ToolResult("c1", "open_gripper", Status.OK)))
    assert out[2:] == [("text", 0, "d"), ("call", 0, "open_gripper"), ("result", 0, "open_gripper", Status.OK)]


def test_metrics_wait_for_energy_then_leave_in_order():
    settled_until = [0.0]
    emitted: list[str] = []
    done = threading.Event()

    def emit(item: str) -> None:
        emitted.append(item)
        if len(emitted) == 3:
            done.set()

    q = MetricsQueue(lambda end_s: end_s <= settled_until[0], emit)
    try:
        q.submit("first", end_s=1.0, wait_s=30.0)
        q.submit("second", end_s=2.0, wait_s=0.0)   # its own deadline passed, but it waits its turn
        time.sleep(0.3)
        assert emitted == []                        # the first call's energy is not known yet
        settled_until[0] = 1.0
        q.poke()
        q.submit("third", end_s=3.0, wait_s=0.2)    # never settles: goes out at its deadline
        assert done.wait(5.0), emitted
        assert emitted == ["first", "second", "third"]
    finally:
        q.stop()


def test_metrics_emit_errors_are_reported_and_do_not_stop_the_queue():
    errors: list[str] = []
    emitted: list[str] = []

    def emit(item: str) -> None:
        if item == "bad":
            raise RuntimeError("publisher gone")
        emitted.append(item)

    q = MetricsQueue(lambda _e: True, emit, errors.append)
    try:
        q.submit("bad", 0.0, 0.0)
        q.submit("good", 0.0, 0.0)
        end = time.monotonic() + 5.0
        while not emitted and time.monotonic() < end:
            time.sleep(0.01)
        assert emitted == ["good"] and errors == ["metrics not published: publisher gone"]
    finally:
        q.stop()


# ------------------------------------------------------------------ goal plans

pytest.importorskip("rosidl_parser", reason="tool sets derive schemas with the ROS IDL parser")

from slm_agent.agent.goal_plan import GoalError, GoalPlanner  # noqa: E402
from slm_agent.profiles import DEFAULT_PROFILE, load_profile  # noqa: E402

PROFILE = load_profile(DEFAULT_PROFILE)


def _spec(name: str, service: str = "") -> ToolSpec:
    return ToolSpec(name=name, description=name, parameters={"type": "object", "properties": {}},
                    service_name=service, service_type="slm_agent/srv/InvokeTool" if service else "")


def _planner() -> GoalPlanner:
    return GoalPlanner(PROFILE, None, GoalOptions("direct", "json", "raw", False), max_steps=4, max_tokens=64)


def test_plan_defaults_and_overrides():
    planner = _planner()
    plan = planner.plan(extras=[_spec("a")])
    assert [t.name for t in plan.tools] == ["a"] and plan.max_steps == 4 and plan.rules.name == "robot"
    assert plan.options == GoalOptions("direct", "json", "raw", False) and plan.strategy.chat_format == "raw"
    plan = planner.plan(extras=[_spec("a")], strategy="react", chat_format="chat", constrained="on", max_steps=2)
    assert (plan.strategy.name, plan.strategy.chat_format, plan.options.constrained, plan.max_steps) == \
        ("react", "chat", True, 2)
    # the same tool list shares one safety envelope (rate limits hold across goals)
    assert planner.plan(extras=[_spec("a")]).envelope is planner.plan(extras=[_spec("a")]).envelope
    assert planner.plan(extras=[_spec("b")]).envelope is not plan.envelope


@pytest.mark.parametrize("fields, needle", [
    ({"protocol": "nope"}, "nope"),
    ({"protocol": "bfcl", "max_steps": 3}, "max_steps must be 0"),
    ({"tool_set": "no_such_set"}, "tool_set 'no_such_set'"),
    ({"extras": [_spec("a"), _spec("a")]}, "goal tools repeat the name(s) a"),
    ({"strategy": "bogus"}, "unknown strategy 'bogus'"),
    ({"serialization": "yaml"}, "unknown serialization 'yaml'"),
    ({"chat_format": "xml"}, "unknown chat_format 'xml'"),
    ({"constrained": "yes"}, "unknown constrained 'yes'"),
])
def test_bad_goal_field_is_one_line(fields, needle):
    with pytest.raises(GoalError) as err:
        _planner().plan(**fields)
    assert needle in str(err.value) and "\n" not in str(err.value)


def test_extra_tools_are_converted_and_a_bad_one_is_named():
    def convert(text: str) -> ToolSpec:
        if text == "broken":
            raise ValueError("tool 'broken': parameters_json_schema is not JSON")
        return _spec(text)

    assert [t.name for t in _planner().plan(extras=["x", "y"], convert=convert).tools] == ["x", "y"]
    with pytest.raises(GoalError, match="tool 'broken'"):
        _planner().plan(extras=["x", "broken"], convert=convert)
