"""BFCL runs under BFCL's own protocol (issue 12): real BFCL cases played by
``play_case`` through the real AgentLoop (scripted engine, no model, no ROS),
scored with BFCL's checkers, under ``bfcl`` (the suite's protocol) and ``robot``.

Shown: a first reply that does not parse scores decoder_failed even though a
retry would have parsed; an irrelevance case passes as BFCL passes it; a turn
that needs 6 steps completes; 21 steps with calls force-terminate the case; a
repeated ``cd`` is executed and changes the recorded state; ``math.factorial``
fails where ``math_factorial`` was shown.
"""
from __future__ import annotations

import json
import math
import sys
from pathlib import Path

import pytest

pytest.importorskip("bfcl_eval", reason="bfcl_eval not installed (pip install --no-deps bfcl-eval==2026.3.23)")
pytest.importorskip("mpmath", reason="mpmath (imported by BFCL's MathAPI) not installed")

from slm_agent.agent.protocol import BFCL_MAXIMUM_STEP_LIMIT  # noqa: E402
from slm_agent.bench import rundir, runner  # noqa: E402
from slm_agent.bench.bfcl.checker import check_single_turn  # noqa: E402
from slm_agent.bench.bfcl.loader import load_scenario, tools_for  # noqa: E402
from slm_agent.bench.play import play_case  # noqa: E402
from slm_agent.bench.report import RunData, build_report  # noqa: E402
from slm_agent.bench.suite import CaseContext, get_suite, loop_protocol  # noqa: E402

sys.path.insert(0, str(Path(__file__).resolve().parent))
from loop_agent import FINAL, Host, Script, call, loop_agent  # noqa: E402

BROKEN = '{"name": "math_factorial", "arguments": {"number": 5'    # looks like a call, does not parse


def play(case_id: str, outputs: list[str], protocol: str):
    suite = get_suite("bfcl")
    sc = load_scenario(case_id)
    engine, host, sent = Script(outputs), Host(), []
    ctx = CaseContext(tool_host=host, tool_timeout_s=5.0, protocol=protocol)
    result = play_case(suite, sc, ctx, loop_agent(engine, host, protocol, sent=sent), case_timeout_s=60.0)
    return result, engine, host, sent


def test_the_suite_owns_its_protocol():
    bfcl = get_suite("bfcl")
    assert bfcl.protocol == "bfcl"
    assert loop_protocol(bfcl, "suite") == "bfcl" and loop_protocol(bfcl, "robot") == "robot"


# --------------------------------------------------------------------------- single turn

def test_first_reply_that_does_not_parse_is_decoder_failed_even_if_a_retry_parses():
    script = [BROKEN, call("math_factorial", number=5)]
    p, engine, _, _ = play("simple_python_1", list(script), "bfcl")
    assert len(engine.requests) == 1, "BFCL scores the model's first reply only"
    assert not p.result.passed and p.result.error_type == "ast_decoder:decoder_failed"
    assert p.calls == [] and "does not decode" in p.result.error
    # the robot rules retry and the retry passes: a score BFCL would not give
    p, engine, _, _ = play("simple_python_1", list(script), "robot")
    assert len(engine.requests) == 2 and p.result.passed


def test_irrelevance_passes_as_bfcl_passes_it():
    sc = load_scenario("irrelevance_0")
    shown = tools_for(sc, 0).names[0]
    broken = '{"name": "%s", "arguments": {' % shown
    script = [broken, call(shown)]
    p, engine, _, _ = play("irrelevance_0", list(script), "bfcl")
    assert len(engine.requests) == 1 and p.result.passed, p.result
    p, _, _, _ = play("irrelevance_0", list(script), "robot")
    assert not p.result.passed and p.result.error_type == "irrelevance_error:decoder_success"


def test_an_original_name_the_model_was_not_shown_fails():
    sc = load_scenario("simple_python_1")
    ts = tools_for(sc, 0)
    assert ts.names == ["math_factorial"] and sc.functions[0]["name"] == "math.factorial"
    assert check_single_turn(sc, [{"name": "math_factorial", "arguments": {"number": 5}}]).passed
    res = check_single_turn(sc, [{"name": "math.factorial", "arguments": {"number": 5}}])
    assert not res.passed and res.error_type == "simple_function_checker:wrong_func_name", res
    assert ts.original_name("math_factorial") == "math.factorial"
    assert ts.original_name("math.factorial") != "math.factorial"
    assert ts.original_name("made_up") == "made_up"
    # ... and through the loop: the model writes the dotted name it never saw
    p, _, _, _ = play("simple_python_1", [call("math.factorial", number=5)], "bfcl")
    assert p.result.error_type == "simple_function_checker:wrong_func_name"
    p, _, _, _ = play("simple_python_1", [call("math_factorial", number=5)], "bfcl")
    assert p.result.passed


# --------------------------------------------------------------------------- multi turn
# multi_turn_base_3: alex/projects/photography/{test_image1.jpg, test_document.txt, backup_tests/}
#   turn 0: find(path='.', name='test')
#   turn 1: cd projects, cd photography, cp test_image1.jpg and test_document.txt to backup_tests

TURN_1 = [call("cd", folder="projects"), call("cd", folder="photography"),
          call("cp", source="test_image1.jpg", destination="backup_tests"),
          call("cp", source="test_document.txt", destination="backup_tests"), FINAL]


def test_a_turn_that_needs_six_steps_completes():
    turn_0 = [call("pwd"), call("ls"), call("pwd"), call("ls"), call("pwd"), call("find", path=".", name="test"),
              FINAL]
    p, engine, host, _ = play("multi_turn_base_3", turn_0 + TURN_1, "bfcl")
    assert p.result.passed, p.result
    assert [len(s) for s in p.result.details["decoded"]] == [6, 4]
    assert len(engine.requests) == 7 + 5 and p.turns_run == 2
    # the robot rules stop turn 0 after max_steps (4) without its find; the case fails
    p, _, _, _ = play("multi_turn_base_3", turn_0 + TURN_1, "robot")
    assert p.agent_errors[0] == "turn 0: no final answer within max_steps=4"
    assert not p.result.passed and "find" not in json.dumps(p.result.details["decoded"][0])


def test_twenty_one_steps_force_terminate_the_case():
    steps = [call("pwd")] * (BFCL_MAXIMUM_STEP_LIMIT + 1)
    p, engine, host, _ = play("multi_turn_base_3", steps + [FINAL] + TURN_1, "bfcl")
    assert len(host.log) == BFCL_MAXIMUM_STEP_LIMIT + 1, "the 21st step runs, then BFCL stops"
    assert p.turns_run == 1 and engine.outputs == [FINAL] + TURN_1, "no further turn is played"
    assert p.outcomes[0].force_terminated
    assert not p.result.passed and p.result.error_type == "multi_turn:force_terminated"
    assert "force-terminated" in p.result.error
    # on the last turn BFCL's evaluator sees every turn and scores the case as it stands
    last = [call("find", path=".", name="test"), FINAL] + [call("pwd")] * (BFCL_MAXIMUM_STEP_LIMIT + 1)
    p, _, _, _ = play("multi_turn_base_3", last, "bfcl")
    assert p.turns_run == 2 and p.outcomes[1].force_terminated
    assert p.result.error_type not in ("", "multi_turn:force_terminated") and not p.result.passed
    # 20 steps and an answer: the turn completes, the case goes on
    steps = [call("pwd")] * (BFCL_MAXIMUM_STEP_LIMIT - 1) + [call("find", path=".", name="test")]
    p, _, _, _ = play("multi_turn_base_3", steps + [FINAL] + TURN_1, "bfcl")
    assert p.turns_run == 2 and p.result.passed, p.result


def test_a_repeated_cd_is_executed_and_changes_the_recorded_state():
    turn_0 = [call("cd", folder="projects"), call("cd", folder="photography"), call("cd", folder=".."),
              call("cd", folder=".."), call("pwd"), FINAL]
    script = turn_0 + [FINAL, FINAL]

    def cds_and_pwd(host):
        return ([a["folder"] for name, a, _ in host.log if name == "cd"],
                [json.loads(out)["current_working_directory"] for name, _, out in host.log if name == "pwd"])

    p, _, host, _ = play("multi_turn_base_3", list(script), "bfcl")
    assert cds_and_pwd(host) == (["projects", "photography", "..", ".."], ["/alex"])
    assert p.result.details["decoded"][0] == [["cd(folder='projects')"], ["cd(folder='photography')"],
                                              ["cd(folder='..')"], ["cd(folder='..')"], ["pwd()"]]
    # the robot rules take the repeat for "done": not executed, not recorded; the state differs
    p, _, host, _ = play("multi_turn_base_3", list(script), "robot")
    assert p.outcomes[0].source.stopped_on_repeat
    assert cds_and_pwd(host) == (["projects", "photography", ".."], ["/alex/projects"])   # pwd ran in turn 1
    assert p.result.details["decoded"][0] == [["cd(folder='projects')"], ["cd(folder='photography')"],
                                              ["cd(folder='..')"]]


def test_an_undecodable_reply_ends_the_turn_and_the_next_turn_runs():
    script = [call("find", path=".", name="test"), '{"name": "cd", "arguments": {"folder": '] + TURN_1
    p, engine, _, _ = play("multi_turn_base_3", list(script), "bfcl")
    assert p.turns_run == 2 and p.result.passed, p.result
    assert not any("Error: " in (r.prompt or "") for r in engine.requests)


# --------------------------------------------------------------------------- settings, run.json, report

def test_max_steps_is_refused_with_the_suites_protocol_and_recorded_protocol():
    cfg = runner.BenchConfig(categories="simple_python", max_steps=4, output_dir="x")
    assert cfg.protocol == "suite"
    assert [n for n, _ in runner.validate_config(cfg)] == ["max_steps"]
    assert runner.validate_config(runner.BenchConfig(categories="simple_python", max_steps=4, protocol="robot",
                                                     output_dir="x")) == []
    info = runner.protocol_info(cfg, get_suite("bfcl"))
    assert info["rules"] == "bfcl" and info["comparable_with_suite"]
    robot = runner.protocol_info(runner.BenchConfig(protocol="robot", output_dir="x"), get_suite("bfcl"))
    assert robot["rules"] == "robot" and not robot["comparable_with_suite"]
    with pytest.raises(Exception, match="protocol"):
        runner.BenchConfig(protocol="bfcl", output_dir="x")   # the setting is suite | robot


def test_a_resume_with_another_protocol_is_refused():
    base = {"suite": "bfcl", "model": "m", "strategy": "direct", "serialization": "json", "max_steps": 0,
            "protocol": "suite", "categories": ["simple_python"], "ids": [], "limit": 1}
    diffs, identity_ok = rundir.run_differences(base, dict(base, protocol="robot"))
    assert not identity_ok and diffs == ["protocol ('suite' there, 'robot' now)"]
    legacy = {k: v for k, v in base.items() if k != "protocol"}   # run.json from before protocols: robot rules
    assert rundir.run_differences(legacy, base)[0] == ["protocol ('robot' there, 'suite' now)"]
    assert rundir.run_differences(legacy, dict(base, protocol="robot")) == ([], True)


def test_the_report_says_whether_scores_are_comparable_with_bfcl(tmp_path):
    record = {"case_id": "simple_python_1", "category": "simple_python", "model": "m", "passed": True,
              "valid": True, "metrics": [], "energy_j": math.nan}
    for setting, comparable in (("suite", True), ("robot", False)):
        cfg = runner.BenchConfig(protocol=setting, output_dir=str(tmp_path))
        info = {"config": cfg.to_dict(), "loop_protocol": runner.protocol_info(cfg, get_suite("bfcl"))}
        text = build_report(RunData(path=tmp_path, source="results", records=[record], run_info=info)).markdown
        line = next(ln for ln in text.splitlines() if ln.startswith("Loop protocol"))
        assert ("NOT comparable with BFCL" in line) is not comparable, line
        assert ("the suite's own protocol; scores are comparable with BFCL's own scores" in line) is comparable
