"""Run directory pieces without DDS: results quarantine, the run lock, directory checks,
resume rules and run-parameter validation (real files, real processes, real flock)."""
from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from slm_agent.bench import rundir
from slm_agent.bench.results import QUARANTINE_FILE, ResultsLog, dumps

SRC = str(Path(__file__).resolve().parents[2] / "src")


def _rec(case_id: str, passed: bool = True, **more) -> dict:
    """A complete results.jsonl record (results.RECORD_REQUIRED) for ``case_id``."""
    return {"case_id": case_id, "category": "cat", "model": "m", "valid": True, "passed": passed, **more}


def _write(path: Path, lines: list[str], tail: str = "") -> None:
    path.write_text("".join(line + "\n" for line in lines) + tail, encoding="utf-8")


def _quarantine(path: Path) -> list[dict]:
    q = path.with_name(QUARANTINE_FILE)
    return [json.loads(x) for x in q.read_text().splitlines()] if q.exists() else []


# --------------------------------------------------------------------------- results.jsonl

def test_a_corrupt_middle_line_loses_only_its_case(tmp_path):
    path = tmp_path / "results.jsonl"
    lines = [dumps(_rec(f"c{i}")) for i in range(12)]
    lines[2] = lines[2][:17] + "\x00garbage"            # line 3 of 12 damaged
    _write(path, lines)
    log = ResultsLog(path)
    assert log.done_ids == {f"c{i}" for i in range(12)} - {"c2"}, "every intact line is kept"
    assert [(d.line, d.case_id) for d in log.damaged] == [(3, "c2")]
    assert log.repaired_bytes == 0
    assert log.append(_rec("c2"))
    log.close()
    ids = [json.loads(x)["case_id"] for x in path.read_text().splitlines()]
    assert ids == [f"c{i}" for i in range(12) if i != 2] + ["c2"]
    q = _quarantine(path)
    assert [(e["line"], e["case_id"]) for e in q] == [(3, "c2")]
    assert q[0]["text"].startswith(lines[2][:17]) and "not JSON" in q[0]["reason"]


def test_torn_tail_duplicates_and_glued_records(tmp_path):
    path = tmp_path / "results.jsonl"
    a, b, c = (dumps(_rec(x)) for x in "abc")
    # b twice (two writers), a record glued after a torn write, a torn tail
    _write(path, [a, b, b, "", '{"case_id": "x", "pa' + c, '[1, 2]'], tail='{"case_id": "d", "pas')
    log = ResultsLog(path)
    assert log.done_ids == {"a", "b", "c"}
    reasons = {d.line: d.reason for d in log.damaged}
    assert reasons[3].startswith("duplicate of line 2")
    assert reasons[5].startswith("garbage before a record")
    assert reasons[6].startswith("not a case record")
    assert reasons[7].startswith("torn last line")
    assert log.repaired_bytes == len('{"case_id": "d", "pas')
    log.close()
    assert path.read_text() == a + "\n" + b + "\n" + c + "\n"
    assert len(_quarantine(path)) == 4
    # reopening a clean file changes nothing and quarantines nothing more
    ResultsLog(path).close()
    assert path.read_text() == a + "\n" + b + "\n" + c + "\n" and len(_quarantine(path)) == 4


def test_a_whole_record_missing_only_its_newline_is_kept(tmp_path):
    path = tmp_path / "results.jsonl"
    _write(path, [dumps(_rec("a"))], tail=dumps(_rec("b")))
    log = ResultsLog(path)
    assert log.done_ids == {"a", "b"} and not log.damaged and log.repaired_bytes == 0
    log.append(_rec("c"))
    log.close()
    assert [json.loads(x)["case_id"] for x in path.read_text().splitlines()] == ["a", "b", "c"]


# --------------------------------------------------------------------------- lock

def test_lock_refuses_a_second_writer_and_names_the_holder(tmp_path):
    first = rundir.RunLock(tmp_path).acquire("first")
    with pytest.raises(rundir.RunDirLocked) as err:
        rundir.RunLock(tmp_path).acquire("second")
    assert f"pid {os.getpid()} (first)" in str(err.value)
    assert "\n" not in str(err.value)
    first.release()
    rundir.RunLock(tmp_path).acquire("third").release()


def _holder(tmp_path: Path, extra: str = "") -> subprocess.Popen:
    code = ("import sys, time; from slm_agent.bench import rundir; "
            f"l = rundir.RunLock({str(tmp_path)!r}).acquire('holder'); {extra}"
            "print('locked', flush=True); time.sleep(60)")
    env = dict(os.environ, PYTHONPATH=SRC + os.pathsep + os.environ.get("PYTHONPATH", ""))
    proc = subprocess.Popen([sys.executable, "-c", code], stdout=subprocess.PIPE, text=True, env=env)
    assert proc.stdout.readline().strip() == "locked"
    return proc


def test_a_process_killed_with_sigkill_holds_no_lock(tmp_path):
    proc = _holder(tmp_path)
    try:
        with pytest.raises(rundir.RunDirLocked) as err:
            rundir.RunLock(tmp_path).acquire("me")
        assert f"pid {proc.pid} (holder)" in str(err.value)
    finally:
        proc.send_signal(signal.SIGKILL)
        proc.wait(10)
    rundir.RunLock(tmp_path).acquire("me").release()


def test_an_inherited_lock_is_adopted_and_outlives_its_first_holder(tmp_path):
    parent = rundir.RunLock(tmp_path).acquire("cli")
    code = ("import os, time; from slm_agent.bench import rundir; "
            f"l = rundir.RunLock({str(tmp_path)!r}).acquire_or_adopt('node'); "
            "print('adopted', l.fd, flush=True); time.sleep(60)")
    env = dict(os.environ, PYTHONPATH=SRC + os.pathsep + os.environ.get("PYTHONPATH", ""),
               **{rundir.LOCK_FD_ENV: str(parent.fd)})
    child = subprocess.Popen([sys.executable, "-c", code], stdout=subprocess.PIPE, text=True, env=env,
                             pass_fds=(parent.fd,))
    try:
        assert child.stdout.readline().split()[0] == "adopted"
        parent.release()                                  # the CLI is gone ...
        with pytest.raises(rundir.RunDirLocked) as err:   # ... the node still holds the directory
            rundir.RunLock(tmp_path).acquire("rerun")
        assert f"pid {child.pid} (node)" in str(err.value)
    finally:
        child.send_signal(signal.SIGKILL)
        child.wait(10)
    rundir.RunLock(tmp_path).acquire("rerun").release()


def test_a_node_without_an_inherited_lock_is_refused(tmp_path):
    holder = _holder(tmp_path)
    try:
        with pytest.raises(rundir.RunDirLocked):
            rundir.RunLock(tmp_path).acquire_or_adopt("node", env={rundir.LOCK_FD_ENV: "0"})
    finally:
        holder.kill()
        holder.wait(10)


# --------------------------------------------------------------------------- directory checks

def test_unusable_output_directories_give_one_line(tmp_path):
    a_file = tmp_path / "file"
    a_file.write_text("x")
    with pytest.raises(rundir.RunDirError, match="exists and is not a directory"):
        rundir.prepare_run_dir(a_file)
    with pytest.raises(rundir.RunDirError, match="cannot create output directory .*: Not a directory"):
        rundir.prepare_run_dir(a_file / "sub")
    bad = tmp_path / "run"
    (bad / "results.jsonl").mkdir(parents=True)
    with pytest.raises(rundir.RunDirError, match=r"results.jsonl is a directory"):
        rundir.prepare_run_dir(bad)
    ok = rundir.prepare_run_dir(tmp_path / "new" / "run")
    assert ok.is_dir()


# --------------------------------------------------------------------------- resume rules

def test_run_differences():
    base = {"suite": "bfcl", "model": "m", "strategy": "direct", "serialization": "json", "max_steps": 0,
            "categories": ["simple_python", "multiple"], "ids": [], "limit": 5}
    assert rundir.run_differences(base, dict(base, categories=["multiple", "simple"])) == ([], True)
    diffs, identity_ok = rundir.run_differences(base, dict(base, categories=["parallel"]))
    assert identity_ok and len(diffs) == 1 and "categories multiple,simple_python limit 5 there" in diffs[0]
    diffs, identity_ok = rundir.run_differences(base, dict(base, limit=6))
    assert identity_ok and diffs
    diffs, identity_ok = rundir.run_differences(base, dict(base, strategy="react"))
    assert not identity_ok and diffs == ["strategy ('direct' there, 'react' now)"]
    assert "--allow" not in rundir.refusal(Path("/x"), diffs, identity_ok, "--allow")


def test_a_run_started_with_another_prompt_layout_is_another_run():
    """run.json keeps the profile's chat group; a resume whose profile now shows the model
    other prompts (here the seed's tools_first layout there, the default shared_prefix now)
    is refused even with --allow-different-run."""
    from slm_agent.bench.runner import model_info

    now = model_info("gemma3-270m-q4km")
    assert now["chat"]["prompt_layout"] == "shared_prefix"
    config = {"suite": "bfcl", "model": "gemma3-270m-q4km", "strategy": "direct", "serialization": "json",
              "max_steps": 0, "categories": ["simple_python"], "ids": [], "limit": 5}
    same = {"config": config, "model_profile": now}
    assert rundir.resume_differences(same, config, now) == ([], True)
    before = {"config": config, "model_profile": dict(now, chat=dict(now["chat"], prompt_layout="tools_first"))}
    diffs, identity_ok = rundir.resume_differences(before, dict(config, limit=6), now)
    assert not identity_ok
    assert diffs[0] == "model profile chat.prompt_layout ('tools_first' there, 'shared_prefix' now)"
    assert len(diffs) == 2 and diffs[1].startswith("case set")
    assert "--allow" not in rundir.refusal(Path("/x"), diffs, identity_ok, "--allow")
    # a run.json without the group (a label that is not a profile) is not compared
    assert rundir.resume_differences({"config": config, "model_profile": {"profile": "x"}}, config, now) == ([], True)


# --------------------------------------------------------------------------- validation

def test_bench_config_is_the_declared_settings_and_uses_the_agent_registries():
    pytest.importorskip("bfcl_eval", reason="bfcl_eval not installed")
    from slm_agent.agent import SERIALIZERS, STRATEGIES
    from slm_agent.bench.runner import BenchConfig, validate_config
    from slm_agent.settings import BenchmarkSettings, SettingsError

    default = BenchConfig()
    assert default.to_dict() == {**BenchmarkSettings.defaults(), "categories": ["simple_python"], "ids": []}
    cfg = BenchConfig(strategy=" ReAct ", serialization="TOON")
    assert validate_config(cfg) == [] and (cfg.strategy, cfg.serialization) == ("react", "toon")
    with pytest.raises(SettingsError) as err:
        BenchConfig(strategy="foo", serialization="yaml", limit=-3, max_steps=-1, case_timeout_s=-1.0,
                    agent_wait_s=float("nan"))
    problems = {p.name: p.text for p in err.value.items}
    assert set(problems) == {"strategy", "serialization", "limit", "max_steps", "case_timeout_s", "agent_wait_s"}
    assert all(name in problems["strategy"] for name in STRATEGIES)
    assert all(name in problems["serialization"] for name in SERIALIZERS)
    assert all("\n" not in text for text in err.value.problems)
    # what the declaration cannot know: the suite's categories
    problems = dict(validate_config(BenchConfig(categories=["simple_python", "nope"])))
    assert set(problems) == {"categories"} and "unknown BFCL category 'nope'" in problems["categories"]


def test_the_nodes_of_a_killed_cli_are_waited_for_a_live_cli_is_not(tmp_path):
    dead = subprocess.Popen([sys.executable, "-c", "pass"])
    dead.wait(10)
    node = _holder(tmp_path, extra=(                   # the lock as a node of a dead CLI leaves it
        "import json, os; os.ftruncate(l.fd, 0); os.pwrite(l.fd, json.dumps({'holders': ["
        f"{{'pid': {dead.pid}, 'what': 'slm-agent bench'}}, {{'pid': os.getpid(), 'what': 'benchmark_node'}}]}})"
        ".encode(), 0); "))
    try:
        assert rundir.orphaned(rundir.RunLock(tmp_path).read_holders())
        t0 = time.monotonic()
        with pytest.raises(rundir.RunDirLocked):
            rundir.RunLock(tmp_path).acquire("rerun", orphan_wait_s=0.5)
        assert time.monotonic() - t0 >= 0.5
        killer = subprocess.Popen([sys.executable, "-c", f"import os, time; time.sleep(0.5); os.kill({node.pid}, 9)"])
        rundir.RunLock(tmp_path).acquire("rerun", orphan_wait_s=20).release()   # waits for the node to go
        killer.wait(10)
    finally:
        node.kill()
        node.wait(10)
    live = _holder(tmp_path, extra=(                    # a live CLI's lock is refused at once
        "import json, os; os.ftruncate(l.fd, 0); os.pwrite(l.fd, json.dumps({'holders': ["
        "{'pid': os.getpid(), 'what': 'slm-agent bench'}]}).encode(), 0); "))
    try:
        t0 = time.monotonic()
        with pytest.raises(rundir.RunDirLocked):
            rundir.RunLock(tmp_path).acquire("rerun", orphan_wait_s=20)
        assert time.monotonic() - t0 < 5
    finally:
        live.kill()
        live.wait(10)


def test_a_parseable_stub_is_quarantined_and_its_case_reruns(tmp_path):
    """Issue 23: ``{"case_id": ...}`` alone is not a finished case; a stub before the
    real record does not make the real record the "duplicate"."""
    path = tmp_path / "results.jsonl"
    stub_only = json.dumps({"case_id": "simple_python_2"})
    stub_first = json.dumps({"case_id": "simple_python_0", "passed": False})
    real = dumps(_rec("simple_python_0", True, suite="bfcl"))
    typed_wrong = dumps({**_rec("simple_python_3"), "passed": "yes"})
    _write(path, [stub_first, real, dumps(_rec("simple_python_1")), stub_only, typed_wrong])
    log = ResultsLog(path)
    assert log.done_ids == {"simple_python_0", "simple_python_1"}, "stubs do not count as done"
    kept = {r["case_id"]: r for r in log.records}
    assert kept["simple_python_0"]["passed"] is True, "the complete record wins over the stub"
    reasons = {d.line: d.reason for d in log.damaged}
    assert set(reasons) == {1, 4, 5}
    assert reasons[1].startswith("incomplete case record") and "no model" in reasons[1]
    assert "passed is \"yes\"" in reasons[5]
    log.close()
    q = _quarantine(path)
    assert sorted(e["case_id"] for e in q) == ["simple_python_0", "simple_python_2", "simple_python_3"]
    assert [json.loads(x)["case_id"] for x in path.read_text().splitlines()] == ["simple_python_0", "simple_python_1"]


def test_read_results_checked_counts_every_skipped_line(tmp_path):
    from slm_agent.bench.results import read_results_checked

    path = tmp_path / "results.jsonl"
    _write(path, [dumps(_rec("a")), "garbage", json.dumps({"case_id": "b"}), dumps(_rec("a", False))])
    records, skipped = read_results_checked(path)
    assert [r["case_id"] for r in records] == ["a"]
    assert [d.line for d in skipped] == [2, 3, 4]
    assert path.read_text().count("\n") == 4, "reading moves nothing"
