"""Loop rules (agent/protocol.py) with a *scripted* engine: the ``bfcl`` preset
follows bfcl-eval's own inference loop, ``robot`` keeps the agent's rules.

The ScriptedEngine (conftest) replays fixed outputs; these tests check what
ends a goal and what is recorded, not any model's ability.
"""
from __future__ import annotations

import json

import pytest

from slm_agent.agent.loop import AgentLoop, CallableToolInvoker
from slm_agent.agent.protocol import BFCL, BFCL_MAXIMUM_STEP_LIMIT, PRESETS, ROBOT, get_rules, rules_for_goal
from slm_agent.agent.types import ToolSpec


def _call(tool, /, **args):
    return json.dumps({"name": tool, "arguments": args})


FINAL = _call("final_answer", text="done")
BROKEN = '{"name": "step", "arguments": {"n": 1'      # looks like a call, does not parse


class Counter:
    def __init__(self) -> None:
        self.n = 0

    def step(self, n: int = 1):
        self.n += n
        return {"total": self.n}


def _tools() -> list[ToolSpec]:
    return [ToolSpec(name="step", description="add n to the counter",
                     parameters={"type": "object", "properties": {"n": {"type": "integer"}},
                                 "additionalProperties": False})]


@pytest.fixture
def run(scripted_engine_cls):
    made = []

    def run_(outputs, rules, execute_tools=True, max_steps=4):
        counter = Counter()
        engine = scripted_engine_cls(outputs)
        invoker = CallableToolInvoker({"step": counter.step})
        made.append(invoker)
        loop = AgentLoop(engine, _tools(), invoker, max_steps=max_steps, rules=rules)
        result = loop.run(prompt="count", execute_tools=execute_tools)
        return result, engine, counter

    yield run_
    for inv in made:
        inv.close()


def test_presets_and_goal_validation():
    assert set(PRESETS) == {"robot", "bfcl"}
    assert get_rules("") is ROBOT and get_rules(" BFCL ") is BFCL
    assert ROBOT.retry_unparsed and ROBOT.stop_on_repeated_calls and not ROBOT.fixed_steps
    assert not BFCL.retry_unparsed and not BFCL.stop_on_repeated_calls and BFCL.force_terminate_at_limit
    assert BFCL.max_steps == BFCL_MAXIMUM_STEP_LIMIT + 1
    with pytest.raises(ValueError, match=r"unknown protocol 'bfcI'; valid: bfcl, robot \(empty = robot\)"):
        get_rules("bfcI")
    assert rules_for_goal("robot", 7) is ROBOT
    with pytest.raises(ValueError, match="protocol 'bfcl' fixes its own step limit .*max_steps must be 0"):
        rules_for_goal("bfcl", 4)
    with pytest.raises(ValueError, match="unknown protocol"):
        AgentLoop(None, [], CallableToolInvoker({}), rules="nope")  # type: ignore[arg-type]


def test_step_limit_is_bfcl_evals_own():
    pytest.importorskip("bfcl_eval", reason="bfcl-eval not installed")
    from slm_agent.bench.bfcl.compat import ensure_bfcl

    ensure_bfcl()
    from bfcl_eval.constants.default_prompts import MAXIMUM_STEP_LIMIT

    assert BFCL_MAXIMUM_STEP_LIMIT == MAXIMUM_STEP_LIMIT


def test_single_turn_first_reply_only_under_bfcl(run):
    script = [BROKEN, _call("step", n=2)]
    res, engine, _ = run(list(script), "bfcl", execute_tools=False)
    assert len(engine.requests) == 1 and res.steps == 1, "BFCL scores the first reply only"
    assert not res.calls and not res.success and "does not decode" in res.error
    assert res.raw_outputs == [BROKEN] and res.protocol == "bfcl"
    # the robot rules answer "Error: ..." and take the retry's call
    res, engine, _ = run(list(script), "robot", execute_tools=False)
    assert len(engine.requests) == 2 and [c.name for c, _ in res.calls] == ["step"] and res.success
    assert "Error: " in engine.requests[1].prompt


def test_a_turn_that_needs_six_steps_completes_under_bfcl(run):
    script = [_call("step", n=1)] * 6 + [FINAL]
    res, engine, counter = run(list(script), "bfcl")
    assert res.success and not res.force_terminated and res.error == ""
    assert counter.n == 6 and len(res.calls) == 6 and len(engine.requests) == 7
    # robot: max_steps 4, and the first repeat ends the goal unexecuted
    res, _, counter = run(list(script), "robot")
    assert counter.n == 1 and res.stopped_on_repeat


def test_twenty_steps_complete_and_twenty_one_force_terminate(run):
    limit = BFCL_MAXIMUM_STEP_LIMIT
    res, engine, counter = run([_call("step", n=1)] * limit + [FINAL], "bfcl")
    assert res.success and not res.force_terminated and counter.n == limit and len(engine.requests) == limit + 1
    res, engine, counter = run([_call("step", n=1)] * (limit + 1) + [FINAL], "bfcl")
    assert res.force_terminated and not res.success and res.error.startswith("force-terminated")
    assert counter.n == limit + 1 and len(res.calls) == limit + 1, "the 21st step is executed, then the stop"
    assert len(engine.requests) == limit + 1 and engine.outputs == [FINAL]
    # the robot rules never force-terminate: their limit is "no final answer"
    res, _, _ = run([_call("step", n=1), _call("step", n=2)] * 3, "robot", max_steps=4)
    assert not res.force_terminated and res.error == "no final answer within max_steps=4"


def test_repeated_calls_are_executed_and_recorded_under_bfcl(run):
    script = [_call("step", n=5), _call("step", n=5), FINAL]
    res, _, counter = run(list(script), "bfcl")
    assert counter.n == 10 and [c.step for c, _ in res.calls] == [0, 1] and not res.stopped_on_repeat
    assert [r.content for _, r in res.calls] == [{"total": 5}, {"total": 10}]
    res, _, counter = run(list(script), "robot")
    assert counter.n == 5 and res.stopped_on_repeat and len(res.calls) == 1


@pytest.mark.parametrize("reply", [BROKEN, ""])
def test_an_undecodable_or_empty_reply_ends_the_turn_under_bfcl(run, reply):
    script = [_call("step", n=1), reply, _call("step", n=2), FINAL]
    res, engine, counter = run(list(script), "bfcl")
    assert counter.n == 1 and len(engine.requests) == 2, "no retry: the turn ends at that reply"
    assert not any("Error: " in r.prompt for r in engine.requests)
    if reply:
        assert not res.success and "does not decode" in res.error
    else:
        assert res.success and res.final_text == ""
    res, engine, counter = run(list(script), "robot")
    if reply:
        assert counter.n == 3 and "Error: " in engine.requests[2].prompt
