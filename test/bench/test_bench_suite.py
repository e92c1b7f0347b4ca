"""The suite interface: a toy suite that is not BFCL goes through the same
selection, run-directory, case-playing, results and report path as BFCL, and
that path imports nothing of BFCL."""
from __future__ import annotations

import csv
import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from slm_agent.bench import rundir, runner
from slm_agent.bench.play import AgentUnavailable, play_case
from slm_agent.bench.results import RESULTS_FILE, RUN_FILE, read_json, read_results
from slm_agent.bench.suite import (CaseContext, SuiteError, TurnOutcome, did_you_mean, get_suite, register_suite,
                                   suite_names, unregister_suite)

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))

from toy_suite import ChatEpisode, FakeHost, ToySuite, run_toy  # noqa: E402


@pytest.fixture(autouse=True)
def toy():
    register_suite("toy", ToySuite)
    ChatEpisode.environments.clear()
    yield get_suite("toy")
    unregister_suite("toy")


# --------------------------------------------------------------------------- registry and selection

def test_registry_names_suites_and_refuses_unknown_ones_with_a_suggestion():
    assert {"bfcl", "toy"} <= set(suite_names())
    from slm_agent.settings import choices_of

    assert "toy" in choices_of("suite"), "the suite setting accepts what the registry holds"
    with pytest.raises(SuiteError, match=r"unknown suite 'tyo' \(did you mean 'toy'\?\); valid: .*bfcl.*toy"):
        get_suite("tyo")
    assert did_you_mean("chta", ["single", "chat"]) == " (did you mean 'chat'?)"
    assert did_you_mean("zzz", ["single", "chat"]) == ""


def test_selection_limit_per_category_aliases_ids_and_clear_errors(toy):
    got = runner.select_scenarios("toy", ["s", "chat"], (), 2)
    assert [s.case_id for s in got] == ["single_0", "single_1", "chat_0", "chat_1"]
    assert [s.case_id for s in toy.select([], ["chat_2", "single_1"], 0)] == ["single_1", "chat_2"]
    assert [s.case_id for s in toy.select([], ["chat_2", "chat_1", "single_1"], 1)] == ["single_1", "chat_1"]
    with pytest.raises(SuiteError) as err:
        toy.select(["chta"])
    assert str(err.value) == ("unknown Toy category 'chta' (did you mean 'chat'?); valid categories: single, chat "
                              "(aliases: s=single)")
    with pytest.raises(ValueError, match="unknown Toy case id 'chat_9'"):
        runner.select_scenarios("toy", [], ["chat_9"])
    assert toy.category_problems(["s", "chat", "nope"]) == [
        "unknown Toy category 'nope'; valid categories: single, chat (aliases: s=single)"]


def test_validate_config_and_case_sets_go_through_the_suite():
    cfg = runner.BenchConfig(suite="toy", categories=["s", "chta"], output_dir="x")
    assert [name for name, _ in runner.validate_config(cfg)] == ["categories"]
    assert "did you mean 'chat'" in runner.validate_config(cfg)[0][1]
    base = {"suite": "toy", "model": "m", "strategy": "direct", "serialization": "json", "max_steps": 0,
            "categories": ["s", "chat"], "ids": [], "limit": 1}
    assert rundir.case_set(base) == ("categories", ("chat", "single"), 1)
    assert rundir.run_differences(base, dict(base, categories=["chat", "single"])) == ([], True)


# --------------------------------------------------------------------------- a whole run

def test_a_toy_run_goes_through_session_play_results_and_report(tmp_path):
    out = tmp_path / "run"
    seen = run_toy(out)
    records = read_results(out / RESULTS_FILE)
    assert [r["case_id"] for r in records] == ["single_0", "chat_0"]
    assert all(r["passed"] and r["valid"] and r["suite"] == "toy" for r in records), records
    single, chat = records

    # single-turn: only the first response's calls count, in results.jsonl and for ScenarioResult.calls
    assert [c["name"] for c in single["calls"]] == ["greet"] and single["turns_run"] == single["turns"] == 1
    assert seen["plays"][0].outcomes[0].counted == [0]
    assert not seen["sent"][0].execute_tools and seen["sent"][0].tools[0]["service_name"] == ""

    # multi-turn with a simulated user: the second user turn came from the transcript of the first
    chat_turns = [t for t in seen["sent"] if t.execute_tools]
    assert [t.messages[-1]["content"] for t in chat_turns] == ["add 2", "now add 3 more"]
    assert chat_turns[1].messages[:-1] == seen["plays"][1].outcomes[0].messages, "conversation carried on"
    assert chat_turns[0].tools[0]["service_name"] == "/toy/add"
    assert chat_turns[0].tools[0]["service_type"] == "slm_agent/srv/InvokeTool"
    assert chat_turns[0].tools[0]["timeout_s"] == 3.0
    assert chat["turns"] == chat["turns_run"] == 2
    assert [(c["turn"], json.loads(c["arguments"])) for c in chat["calls"]] == [(0, {"n": 2}), (1, {"n": 3})]
    assert [t.index for t in seen["published"]] == [0, 0, 1], "every goal published first"

    # per-case set-up and teardown: one environment per case, closed, services gone
    (env,) = ChatEpisode.environments
    assert env.counter == 5 and env.closed
    assert seen["host"].served == {} and seen["host"].cleared == 1

    # the suite's own fields are in results.jsonl, after the standard ones, never replacing one
    assert chat["reward"] == 1.0 and chat["reward_components"] == {"state": 1.0, "turns": 2.0}
    assert chat["passed"] is True
    assert "reward" not in single
    assert list(chat)[-2:] == ["reward", "reward_components"]

    # run.json, progress and summary
    info = read_json(out / RUN_FILE)
    assert info["config"]["suite"] == "toy" and info["categories"] == ["chat", "single"]
    assert info["cases_planned"] == 2 and info["power_mode"] == "TOY_MODE" and info["run_id"].startswith("toy-model-")
    assert "bfcl-eval" not in info["versions"], "run.json lists the versions of the suite's own packages"
    assert seen["lines"][-1].startswith("[2/2] chat_0: PASS | accuracy 2/2 = 100.0%")
    assert seen["summary"][-1].split() == ["total", "2", "2", "0", "100.0%"]

    # the report: the suite's column in the per-category table and in report.csv
    from slm_agent.bench.report import make_report

    rep = make_report(out, plots=False)
    md = rep.markdown
    assert "| Model | Category | TTFT ms | Prefill tok/s | Decode tok/s | Accuracy | Mean reward |" in md
    assert "| toy-model | chat | n/a | n/a | n/a | 100.0% (1/1) | 1.00 |" in md
    assert "| toy-model | single | n/a | n/a | n/a | 100.0% (1/1) | n/a |" in md
    with rep.files["csv"].open() as fh:
        rows = list(csv.DictReader(fh))
    assert {r["category"]: r["Mean reward"] for r in rows if r["level"] == "category"} == {"chat": "1.0",
                                                                                          "single": ""}


def test_a_rerun_resumes_and_a_different_run_is_refused(tmp_path):
    out = tmp_path / "run"
    run_toy(out)
    again = run_toy(out)
    assert again["lines"] == [], "both cases were done: nothing runs again"
    with pytest.raises(rundir.RunDirError, match=r"different case set \(categories chat,single limit 1 there"):
        run_toy(out, limit=2)
    assert len(read_results(out / RESULTS_FILE)) == 2


# --------------------------------------------------------------------------- the harness's own verdicts

def _play(toy, send, case="chat_0", log=None):
    (sc,) = toy.select([], [case])
    return play_case(toy, sc, CaseContext(tool_host=FakeHost(), tool_timeout_s=1.0), send, case_timeout_s=7,
                     log_error=log)


def test_timeout_rejection_agent_errors_and_a_broken_suite_are_verdicts_not_crashes(toy):
    timeout = _play(toy, lambda turn: (None, "timeout"))
    assert (timeout.result.passed, timeout.result.valid, timeout.result.error_type) == (False, True,
                                                                                       "bench:case_timeout")
    assert timeout.result.error == "no answer within case_timeout_s=7" and timeout.turns_run == 0
    assert ChatEpisode.environments[-1].closed, "teardown after a timeout too"

    rejected = _play(toy, lambda turn: (None, "goal single_0#0 rejected by the agent"), case="single_0")
    assert (rejected.result.valid, rejected.result.error_type) == (False, "harness:goal_rejected")

    def failing(turn):
        return TurnOutcome(turn.index, False, "model server down", "", list(turn.messages), []), ""

    failed = _play(toy, failing)
    assert failed.agent_errors == ["turn 0: model server down"]
    assert failed.result.error.startswith("agent: turn 0: model server down | counter 0")

    logged = []

    def broken(turn):
        raise KeyError("boom")

    crashed = _play(toy, broken, log=logged.append)
    assert (crashed.result.valid, crashed.result.error_type) == (False, "harness:exception")
    assert "KeyError" in crashed.result.error and "Traceback" in logged[0]
    assert ChatEpisode.environments[-1].closed

    def gone(turn):
        raise AgentUnavailable("action server went away")

    with pytest.raises(AgentUnavailable):
        _play(toy, gone)
    assert ChatEpisode.environments[-1].closed, "teardown when the run stops, too"


# --------------------------------------------------------------------------- nothing of BFCL

def test_the_harness_path_imports_nothing_of_bfcl(tmp_path):
    code = (
        "import sys, json, pathlib\n"
        f"sys.path.insert(0, {str(HERE)!r})\n"
        "from slm_agent.bench.suite import register_suite\n"
        "import toy_suite\n"
        "register_suite('toy', toy_suite.ToySuite)\n"
        f"toy_suite.run_toy(pathlib.Path({str(tmp_path / 'run')!r}))\n"
        "from slm_agent.bench.report import make_report\n"
        f"make_report(pathlib.Path({str(tmp_path / 'run')!r}), plots=False)\n"
        "import slm_agent.bench.session, slm_agent.bench.play, slm_agent.bench.results, slm_agent.bench.runner\n"
        "print(json.dumps(sorted(m for m in sys.modules if 'bfcl' in m)))\n"
    )
    env = dict(os.environ, PYTHONPATH=os.pathsep.join([str(HERE.parents[1] / "src"), os.environ.get("PYTHONPATH", "")]))
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120, env=env)
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert json.loads(proc.stdout.strip().splitlines()[-1]) == []
    assert [r["case_id"] for r in read_results(tmp_path / "run")] == ["single_0", "chat_0"]


def test_bfcl_is_the_first_suite():
    pytest.importorskip("bfcl_eval", reason="bfcl_eval not installed")
    bfcl = get_suite("bfcl")
    assert bfcl.resolve_category("js") == "simple_javascript"
    with pytest.raises(SuiteError, match=r"unknown BFCL category 'simple_pyhton' \(did you mean 'simple_python'"):
        bfcl.select(["simple_pyhton"])
    with pytest.raises(SuiteError, match=r"unknown BFCL case id 'simple_python_9999'; simple_python has 400 cases"):
        bfcl.select([], ["simple_python_9999"])
    with pytest.raises(SuiteError, match=r"unknown BFCL case id 'simple_python_1x' \(did you mean 'simple_python_1'"):
        bfcl.select([], ["simple_python_1x"])
    with pytest.raises(SuiteError, match=r"unknown BFCL case id 'nosuch_7': no BFCL category 'nosuch'"):
        bfcl.select([], ["nosuch_7"])
