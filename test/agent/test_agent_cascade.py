"""Cascade (issue 26): each trigger escalates exactly the steps it names, through the real loop.

Two *scripted* engines (conftest's ScriptedEngine: fixed outputs, real stream
and metrics) stand for the primary and the fallback; the tools are
in-process callables behind the real safety envelope.  What is checked is the
loop's control flow: which steps go to the fallback, what the tool receives,
that the goal continues with the primary, and what each step records.
"""
from __future__ import annotations

import json
import math
import threading
from typing import Iterator, Optional, Sequence

import pytest

from slm_agent.agent.cascade import Cascade, CascadePolicy, confidence, is_tool_error, parse_triggers
from slm_agent.agent.loop import AgentLoop, CallableToolInvoker
from slm_agent.agent.strategies import get_strategy
from slm_agent.agent.types import Status, ToolResult
from slm_agent.engines.base import ChatRequest, StreamChunk


def _calls(*calls: tuple[str, dict]) -> str:
    return json.dumps([{"name": n, "arguments": a} for n, a in calls])


FINAL = "All done."                                  # a plain-text answer (direct strategy)
BROKEN = '[{"name": "gripper", "arguments": {"data": '  # call-like, does not decode
OPEN = _calls(("gripper", {"data": True}))
BAD_TYPE = _calls(("gripper", {"data": "wide"}))     # fails the schema (boolean)
UNKNOWN_TOOL = _calls(("teleport", {"to": "moon"}))  # not in the tool set


class Tools:
    """In-process tools that record what they receive; ``lookup_location('crash')`` fails."""

    def __init__(self) -> None:
        self.calls: list[tuple[str, dict]] = []
        self.lock = threading.Lock()

    def gripper(self, data):
        with self.lock:
            self.calls.append(("gripper", {"data": data}))
        return {"success": True, "message": "open" if data else "closed"}

    def get_battery(self):
        with self.lock:
            self.calls.append(("get_battery", {}))
        return {"percentage": 50.0, "voltage": 24.0, "charging": False}

    def lookup_location(self, name):
        with self.lock:
            self.calls.append(("lookup_location", {"name": name}))
        if name == "crash":
            raise RuntimeError("map server down")
        return {"found": True, "pose": {"x": 1.0, "y": 2.0, "theta": 0.0}, "known_names": []}

    def move_to(self, **kw):
        with self.lock:
            self.calls.append(("move_to", kw))
        return {"success": True, "message": "ok", "reached": kw["goal"], "duration_s": 1.0}

    def functions(self):
        return {n: getattr(self, n) for n in ("gripper", "get_battery", "lookup_location", "move_to")}


def confident(engine_cls, name: str, outputs: Sequence[str], min_logprobs: Optional[Sequence[float]] = None,
              margins: Optional[Sequence[float]] = None):
    """A ScriptedEngine named ``name`` whose calls report the given confidence values
    (as an engine's own stream would, on its final chunk's metrics)."""

    class Confident(engine_cls):
        def __init__(self) -> None:
            super().__init__(outputs)
            self.model = name
            self.lps = list(min_logprobs or [])
            self.margins = list(margins or [])

        def stream(self, request: ChatRequest) -> Iterator[StreamChunk]:
            for chunk in super().stream(request):
                if chunk.metrics is not None:
                    chunk.metrics.model = name
                    chunk.metrics.min_logprob = self.lps.pop(0) if self.lps else math.nan
                    chunk.metrics.top_margin = self.margins.pop(0) if self.margins else math.nan
                yield chunk

    return Confident()


@pytest.fixture
def tools():
    return Tools()


@pytest.fixture
def run(demo_tool_set, scripted_engine_cls, tools):
    """run(primary_outputs, fallback_outputs, escalate_on, ...) -> (result, primary, fallback)."""
    invokers = []

    def go(primary_out, fallback_out, escalate_on, *, primary_lp=None, primary_margin=None, threshold=-2.0,
           signal="min_logprob", max_steps=4, fallback_strategy=None, **run_kw):
        primary = confident(scripted_engine_cls, "small", primary_out, primary_lp, primary_margin)
        fallback = confident(scripted_engine_cls, "large", fallback_out)
        invoker = CallableToolInvoker(tools.functions())
        invokers.append(invoker)
        cascade = None
        if escalate_on is not None:
            policy = CascadePolicy(parse_triggers(escalate_on), threshold, signal)
            cascade = Cascade(fallback, fallback_strategy or get_strategy("direct", chat_format="chat"), policy)
        loop = AgentLoop(primary, demo_tool_set.tools, invoker, max_steps=max_steps, cascade=cascade)
        return loop.run(prompt="Open the gripper.", **run_kw), primary, fallback

    yield go
    for inv in invokers:
        inv.close()


# ----------------------------------------------------------------------------- policy

def test_triggers_parse_in_a_fixed_order_and_refuse_unknown_names():
    assert parse_triggers(" Invalid ,undecodable,invalid") == ("undecodable", "invalid")
    assert parse_triggers("") == ()
    with pytest.raises(ValueError, match=r"'sometimes'.*valid: undecodable, invalid, tool_error, low_confidence"):
        parse_triggers("invalid,sometimes")


def test_confidence_reads_the_signal_and_unknown_is_not_low():
    m = type("M", (), {"min_logprob": -3.0, "top_margin": 0.1})()
    assert confidence(m, "min_logprob") == -3.0 and confidence(m, "top_margin") == 0.1
    p = CascadePolicy(("low_confidence",), -2.0, "min_logprob")
    assert p.before_tools(undecodable=False, invalid=False, metrics=m) == "low_confidence"
    nan = type("M", (), {"min_logprob": math.nan})()
    assert p.before_tools(undecodable=False, invalid=False, metrics=nan) == ""
    assert p.before_tools(undecodable=False, invalid=False, metrics=None) == ""
    with pytest.raises(ValueError, match="unknown confidence signal"):
        CascadePolicy(("low_confidence",), 0.0, "entropy")


def test_tool_error_is_a_failed_answer_not_an_unknown_outcome():
    assert is_tool_error(ToolResult("c", "t", Status.FAILED, error="boom"))
    assert not is_tool_error(ToolResult("c", "t", Status.FAILED, error="gone", outcome_unknown=True))
    assert not is_tool_error(ToolResult("c", "t", Status.TIMEOUT))
    assert not is_tool_error(ToolResult("c", "t", Status.INVALID_ARGUMENTS))


# ----------------------------------------------------------------------------- the loop

def test_no_cascade_records_the_primary_for_every_step(run, tools):
    res, primary, fallback = run([OPEN, FINAL], [], None, primary_lp=[-0.1, -9.0])
    assert res.success and res.final_text == FINAL
    assert res.step_models == ["small", "small"] and res.step_triggers == ["", ""]
    assert [m.escalation for m in res.metrics] == ["", ""]
    assert [m.min_logprob for m in res.metrics] == [-0.1, -9.0]   # recorded even without a fallback
    assert fallback.requests == []


def test_undecodable_escalates_that_step_only_and_the_tool_gets_the_fallbacks_call(run, tools):
    res, primary, fallback = run([BROKEN, FINAL], [OPEN], "undecodable")
    assert res.success and res.final_text == FINAL
    assert tools.calls == [("gripper", {"data": True})]            # the fallback's call, once
    assert res.step_models == ["large", "small"] and res.step_triggers == ["undecodable", ""]
    assert len(fallback.requests) == 1 and len(primary.requests) == 2  # the goal went on with the primary
    # the metrics keep every call, the discarded one too, each with its model and step
    assert [(m.model, m.escalation) for m in res.metrics] == [("small", ""), ("large", "undecodable"), ("small", "")]
    assert res.metric_steps == [0, 0, 1]
    # the transcript holds the fallback's reply, not the primary's
    assistant = [m["content"] for m in res.messages if m["role"] == "assistant"]
    assert assistant[0] == OPEN and len(assistant) == 2
    # the fallback was asked with the same conversation as the primary (its own rendering)
    fb_user = [m["content"] for m in fallback.requests[0].messages if m["role"] == "user"]
    assert fb_user == ["User: Open the gripper."] or fb_user == ["Open the gripper."]
    assert fallback.requests[0].escalation == "undecodable" and fallback.requests[0].step == 0


@pytest.mark.parametrize("reply", [BAD_TYPE, UNKNOWN_TOOL], ids=["schema", "unknown-tool"])
def test_invalid_escalates_a_call_that_fails_the_envelope(run, tools, reply):
    res, primary, fallback = run([reply, FINAL], [OPEN], "invalid")
    assert res.step_triggers == ["invalid", ""] and res.step_models == ["large", "small"]
    assert tools.calls == [("gripper", {"data": True})]


def test_a_trigger_not_listed_does_not_escalate(run, tools):
    # undecodable and invalid replies with only tool_error on: the primary keeps both steps
    res, primary, fallback = run([BROKEN, BAD_TYPE, FINAL], [], "tool_error")
    assert res.step_triggers == ["", "", ""] and fallback.requests == []
    assert tools.calls == []   # the schema failure was refused by the envelope, as without a cascade
    assert res.calls[0][1].status == Status.INVALID_ARGUMENTS


def test_valid_replies_never_escalate_under_every_structural_trigger(run, tools):
    res, primary, fallback = run([OPEN, FINAL], [], "undecodable,invalid,tool_error")
    assert res.step_triggers == ["", ""] and fallback.requests == []


def test_tool_error_sends_the_next_step_to_the_fallback_without_rerunning_the_call(run, tools):
    crash = _calls(("lookup_location", {"name": "crash"}))
    res, primary, fallback = run([crash, FINAL], [_calls(("lookup_location", {"name": "kitchen"}))],
                                 "tool_error")
    # step 0 (primary) failed in the tool; step 1 went to the fallback; step 2 back to the primary
    assert res.step_triggers == ["", "tool_error", ""] and res.step_models == ["small", "large", "small"]
    assert tools.calls == [("lookup_location", {"name": "crash"}), ("lookup_location", {"name": "kitchen"})]
    assert len(primary.requests) == 2 and len(fallback.requests) == 1
    # the fallback saw the failed call and its error (its own rendering of the same conversation)
    seen = json.dumps(fallback.requests[0].messages)
    assert "map server down" in seen
    assert res.success and res.final_text == FINAL


def test_low_confidence_escalates_below_the_threshold_by_the_chosen_signal(run, tools):
    res, _p, fallback = run([OPEN, OPEN, FINAL], [OPEN], "low_confidence", primary_lp=[-0.5, -3.0, -0.1],
                            threshold=-2.0)
    # step 0 confident, step 1 not: only step 1 goes to the fallback (the repeated call ends the goal)
    assert res.step_triggers[:2] == ["", "low_confidence"]
    assert len(fallback.requests) == 1
    res2, _p2, fallback2 = run([OPEN, FINAL], [], "low_confidence", primary_lp=[-9.0, -9.0],
                               primary_margin=[0.9, 0.8], signal="top_margin", threshold=0.5)
    assert res2.step_triggers == ["", ""] and fallback2.requests == []   # margin high: the logprob is not read


def test_first_firing_trigger_names_the_step(run, tools):
    res, _p, _f = run([BAD_TYPE, FINAL], [OPEN], "invalid,low_confidence", primary_lp=[-9.0, -0.1])
    assert res.step_triggers == ["invalid", ""]


def test_the_fallbacks_reply_is_final_even_when_it_is_bad(run, tools):
    res, primary, fallback = run([BROKEN, FINAL], [BROKEN], "undecodable")
    # the fallback's undecodable reply is fed back as an error; the next step is the primary's again
    assert res.step_triggers == ["undecodable", ""] and res.step_models == ["large", "small"]
    assert len(fallback.requests) == 1 and res.success


def test_bfcl_single_turn_scores_the_fallbacks_calls(run, tools):
    res, primary, fallback = run([BAD_TYPE], [OPEN], "invalid", execute_tools=False)
    assert [c.arguments for c, _r in res.calls] == [{"data": True}]
    assert tools.calls == [] and res.step_models == ["large"]


def test_fallback_renders_with_its_own_strategy_instance(run, tools):
    native = get_strategy("react", chat_format="chat")
    res, primary, fallback = run([BROKEN, FINAL], ['{"thought": "open it", "action": "gripper", '
                                                   '"action_input": {"data": true}}'], "undecodable",
                                 fallback_strategy=native)
    assert res.step_models[0] == "large"
    assert fallback.requests[0].prompt is None and fallback.requests[0].messages  # chat, not the primary's raw
    assert primary.requests[0].prompt is not None


# ----------------------------------------------------------------------------- configure

@pytest.mark.parametrize("fallback, needle", [
    ("no-such-fallback-profile", "fallback_model 'no-such-fallback-profile': "),
    ("<missing>", "fallback_model '<missing>': "),
], ids=["unknown-name", "missing-file"])
def test_a_fallback_that_cannot_load_fails_configure_in_one_line(tmp_path, fallback, needle):
    from slm_agent.agent.goal_plan import load_planner
    from slm_agent.settings import AgentSettings

    missing = tmp_path / "missing.yaml"
    missing.write_text("name: missing\nmodel: {name: m, path: /nonexistent/missing.gguf}\n"
                       "backend: {type: llama_cpp}\n", encoding="utf-8")
    value = fallback.replace("<missing>", str(missing))
    with pytest.raises(ValueError) as err:
        load_planner(AgentSettings.parse({"fallback_model": value}))
    text = str(err.value)
    assert text.startswith(needle.replace("<missing>", str(missing))) and "\n" not in text, text
    if fallback == "<missing>":
        assert "/nonexistent/missing.gguf" in text


def test_fallback_plan_renders_the_goal_for_the_fallbacks_profile():
    from slm_agent.agent.goal_plan import load_planner
    from slm_agent.settings import AgentSettings

    planner, _label = load_planner(AgentSettings.parse({"fallback_model": "smollm2-135m-q4_1"}))
    assert planner.fallback is not None and planner.fallback.profile.name == "smollm2-135m-q4_1"
    plan = planner.plan(strategy="react")
    # the primary (Gemma base, raw completion) and the fallback (SmolLM2 instruct, chat template) each
    # render the goal's strategy in their own format
    assert plan.strategy.name == plan.fallback_strategy.name == "react"
    assert plan.strategy.chat_format == "raw" and plan.fallback_strategy.chat_format == "chat"
    assert load_planner(AgentSettings.parse({}))[0].plan().fallback_strategy is None
