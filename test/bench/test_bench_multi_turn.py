"""Multi-turn: gold trajectories through MultiTurnEnvironment pass BFCL's
state and response checks; corruptions fail with BFCL's error types."""
import copy

import pytest

pytest.importorskip(
    "bfcl_eval", reason="bfcl_eval not installed (pip install --no-deps bfcl-eval==2026.3.23)"
)
pytest.importorskip("mpmath", reason="mpmath (imported by BFCL's MathAPI) not installed")
pytest.importorskip("filelock", reason="filelock (imported by bfcl_eval.utils) not installed")

from bfcl_eval.eval_checker.multi_turn_eval import multi_turn_utils  # noqa: E402

from slm_agent.bench.bfcl.checker import (  # noqa: E402
    check_multi_turn,
    release_instances,
    unique_model_name,
)
from slm_agent.bench.bfcl.environment import MultiTurnEnvironment  # noqa: E402
from slm_agent.bench.bfcl.loader import (  # noqa: E402
    MULTI_TURN_CATEGORIES,
    deterministic_sample,
    load_scenario,
    load_scenarios,
    tools_for,
)
from slm_agent.bench.fidelity import gold_multi_turn  # noqa: E402

BASE_SAMPLE = deterministic_sample(load_scenarios(["multi_turn_base"]), 25)
OTHER_SAMPLE = [
    sc
    for cat in MULTI_TURN_CATEGORIES
    if cat != "multi_turn_base"
    for sc in deterministic_sample(load_scenarios([cat]), 5)
]


def _instances_left() -> list[str]:
    return [k for k in vars(multi_turn_utils) if k.startswith("slm_agent_bench")]


@pytest.mark.parametrize("scenario", BASE_SAMPLE + OTHER_SAMPLE, ids=lambda s: s.case_id)
def test_gold_trajectory_passes_state_and_response_checks(scenario):
    res, trajectory = gold_multi_turn(scenario)
    assert res.valid and res.passed, (res.error_type, res.error)
    assert len(trajectory) == len(scenario.ground_truth)
    assert [len(t) for t in trajectory] == [len(t) for t in scenario.ground_truth]
    assert _instances_left() == []  # environment and checker freed BFCL's globals


@pytest.mark.parametrize("scenario", BASE_SAMPLE[:8], ids=lambda s: s.case_id)
def test_environment_results_are_bfcls_own(scenario):
    """Same text BFCL's inference loop would feed back, call for call."""
    _, trajectory = gold_multi_turn(scenario)
    name = unique_model_name("ref")
    try:
        for turn_calls, gt in zip(trajectory, scenario.ground_truth):
            expected, _ = multi_turn_utils.execute_multi_turn_func_call(
                gt,
                scenario.initial_config,
                scenario.involved_classes,
                name,
                scenario.case_id,
                long_context=scenario.long_context,
            )
            assert [step[0]["result"] for step in turn_calls] == expected
    finally:
        release_instances(name)


def test_state_corruption_fails_with_state_mismatch():
    sc = load_scenario("multi_turn_base_0")
    res, traj = gold_multi_turn(sc)
    assert res.passed
    bad = copy.deepcopy(traj)
    bad[0][2][0]["arguments"]["destination"] = "archive"  # mv to the wrong folder
    res = check_multi_turn(sc, bad)
    assert res.valid and not res.passed
    assert res.error_type == "multi_turn:instance_state_mismatch"


def test_missing_read_call_fails_with_response_mismatch():
    sc = load_scenario("multi_turn_base_0")
    _, traj = gold_multi_turn(sc)
    bad = copy.deepcopy(traj)
    assert bad[1][1][0]["name"] == "grep"
    del bad[1][1]  # cd still happens (same state) but grep's output is missing
    res = check_multi_turn(sc, bad)
    assert res.error_type == "multi_turn:execution_response_mismatch"


def test_empty_turn_and_early_stop():
    sc = load_scenario("multi_turn_base_0")
    _, traj = gold_multi_turn(sc)
    bad = copy.deepcopy(traj)
    bad[1] = [[]]  # the model only talked in turn 1
    assert check_multi_turn(sc, bad).error_type == "multi_turn:empty_turn_model_response"
    assert check_multi_turn(sc, traj[:2]).error_type == "multi_turn:force_terminated"


def test_text_only_and_undecodable_steps_are_ignored_like_bfcl():
    sc = load_scenario("multi_turn_base_0")
    _, traj = gold_multi_turn(sc)
    noisy = copy.deepcopy(traj)
    for turn in noisy:
        turn.insert(0, [])  # a chat-only response
        turn.append([{"name": "ls", "arguments": "{not json"}])  # BFCL skips the step
    assert check_multi_turn(sc, noisy).passed


def test_rescoring_is_independent():
    sc = load_scenario("multi_turn_base_0")
    res1, traj = gold_multi_turn(sc)
    res2 = check_multi_turn(sc, traj)
    res3 = check_multi_turn(sc, traj)
    assert res1.passed and res2.passed and res3.passed
    assert _instances_left() == []


def test_environment_carries_state_and_records_turns_and_steps():
    sc = load_scenario("multi_turn_base_0")
    with MultiTurnEnvironment(sc) as env:
        tools = env.begin_turn(0)
        assert "cd" in tools.names
        env.begin_step()
        assert "document" in env.execute("ls", {})
        env.execute("cd", {"folder": "document"})
        env.begin_turn(1)
        env.begin_step()
        assert "final_report.pdf" in env.execute("ls", {})  # cwd survived the turn
        traj = env.trajectory()
        assert [[len(s) for s in t] for t in traj] == [[2], [1]]
        state = env.state()
        assert set(state) == {"GorillaFileSystem", "TwitterAPI"}
        assert state["TwitterAPI"]["username"] == "analyst_pro"
        # unknown names are answered with BFCL's NameError text, never eval'ed
        assert env.execute("open", {"file": "/tmp/x", "mode": "w"}) == (
            "Error during execution: name 'open' is not defined"
        )
        with pytest.raises(ValueError):
            env.execute("ls", ["not", "an", "object"])
    with pytest.raises(RuntimeError):
        env.execute("ls", {})


def test_miss_func_function_is_hidden_but_executable_like_bfcl():
    sc = load_scenario("multi_turn_miss_func_0")
    with MultiTurnEnvironment(sc) as env:
        tools = env.begin_turn(0)
        assert "sort" not in tools.names
        env.execute("cd", {"folder": "document"})
        # BFCL only withholds the doc; the method exists and runs
        assert "Error" not in env.execute("sort", {"file_name": "final_report.pdf"})
        assert "sort" in env.begin_turn(3).names


def test_long_context_loads_bfcl_long_context_state():
    base = load_scenario("multi_turn_base_0")
    long = load_scenario("multi_turn_long_context_0")
    with MultiTurnEnvironment(base) as a, MultiTurnEnvironment(long) as b:
        assert a.instances["GorillaFileSystem"].long_context is False
        assert b.instances["GorillaFileSystem"].long_context is True
        # BFCL pads the bottom-most directories with many extra files
        a.execute("cd", {"folder": "document"})
        b.execute("cd", {"folder": "document"})
        assert len(b.execute("ls", {})) > len(a.execute("ls", {}))
    # tool specs are the same functions
    assert tools_for(base).names == tools_for(long).names
