"""Kill -9 and rerun: every case ends up in results.jsonl exactly once, none lost.

A gold run of 20 cases (the gold agent sleeps per answer so the run lasts a
few seconds) is killed with SIGKILL once some cases are written; a torn,
half-written line is then appended (what a kill in the middle of a write
leaves); the rerun with the same output_dir skips finished cases, drops the
torn line and runs the rest.  Also: SIGINT stops a run with status 130 and
intact results; a resume with a different model is refused.
"""
from __future__ import annotations

import json
import signal
import sys
from pathlib import Path

import pytest

pytest.importorskip("bfcl_eval", reason="bfcl_eval not installed (pip install --no-deps bfcl-eval==2026.3.23)")
pytest.importorskip("rclpy", reason="rclpy (ROS 2 Python client) not installed")
pytest.importorskip("slm_agent.action", reason="slm_agent interfaces not generated/installed")

sys.path.insert(0, str(Path(__file__).resolve().parent))
from bench_helpers import Proc, bench_params, jsonl_lines, jsonl_records, uid, wait_until  # noqa: E402

CATEGORIES = "simple_python,multiple,parallel,irrelevance"
LIMIT = 5                     # 4 categories x 5 = 20 cases
DELAY_S = 0.25                # per gold answer: ~5 s for the run


def _expected() -> list[str]:
    from slm_agent.bench.runner import select_scenarios

    return [s.case_id for s in select_scenarios("bfcl", CATEGORIES.split(","), (), LIMIT)]


@pytest.fixture()
def gold():
    ns = "/" + uid("resume")
    action = f"{ns}/agent/run_task"
    proc = Proc.node("gold_agent_node", {"action_name": action, "delay_s": DELAY_S,
                                         "metrics_topic": f"{ns}/agent/metrics",
                                         "tool_calls_topic": f"{ns}/agent/tool_calls"})
    try:
        yield ns, action
    finally:
        proc.close()


def _bench(out: Path, ns: str, action: str, **extra) -> Proc:
    return Proc.node("benchmark_node", bench_params(out, action, f"{ns}/bfcl", categories=CATEGORIES,
                                                    limit=LIMIT, **extra), namespace=ns)


def test_kill9_mid_run_then_rerun_records_every_case_once(tmp_path, gold):
    ns, action = gold
    expected = _expected()
    assert len(expected) == 20
    out = tmp_path / "run"
    results = out / "results.jsonl"

    first = _bench(out, ns, action)
    try:
        assert wait_until(lambda: len(jsonl_lines(results)) >= 5, 90.0), first.log()
        first.proc.kill()                      # SIGKILL: no cleanup at all
        first.proc.wait(timeout=10)
        done_before = jsonl_records(results)
    finally:
        first.close()
    assert 5 <= len(done_before) < 20, "the kill must land mid-run"
    run_json = json.loads((out / "run.json").read_text())

    # what a kill in the middle of a write leaves: a line without its end
    torn = json.dumps({"case_id": expected[len(done_before)], "passed": True})[:25]
    with results.open("a", encoding="utf-8") as fh:
        fh.write(torn)

    second = _bench(out, ns, action)
    try:
        assert second.wait(120) == 0, second.log()
        log = second.log(10**6)
    finally:
        second.close()
    records = jsonl_records(results)           # fails on any malformed line (torn line must be gone)
    ids = [r["case_id"] for r in records]
    assert sorted(ids) == sorted(expected), "every case exactly once"
    assert len(ids) == len(set(ids))
    assert ids[: len(done_before)] == [r["case_id"] for r in done_before], "finished cases kept as written"
    assert all(r["passed"] for r in records), [r["case_id"] for r in records if not r["passed"]]
    assert f"{len(done_before)} of 20 cases already done" in log
    assert "torn last line" in log
    # the resumed session keeps the run id and appends a session to run.json
    run_json2 = json.loads((out / "run.json").read_text())
    assert run_json2["run_id"] == run_json["run_id"] == records[0]["run_id"] == records[-1]["run_id"]
    assert len(run_json2["sessions"]) == 2
    assert run_json2["started_at"] == run_json["started_at"]

    # a third run has nothing left to do
    third = _bench(out, ns, action)
    try:
        assert third.wait(60) == 0, third.log()
    finally:
        third.close()
    assert len(jsonl_lines(results)) == 20


def test_sigint_stops_with_130_and_keeps_results(tmp_path, gold):
    ns, action = gold
    out = tmp_path / "run"
    results = out / "results.jsonl"
    bench = _bench(out, ns, action)
    try:
        assert wait_until(lambda: len(jsonl_lines(results)) >= 2, 90.0), bench.log()
        assert bench.terminate(signal.SIGINT) == 130, bench.log()
    finally:
        bench.close()
    records = jsonl_records(results)
    assert 2 <= len(records) < 20
    assert len({r["case_id"] for r in records}) == len(records)


def test_resume_with_another_model_is_refused(tmp_path, gold):
    ns, action = gold
    out = tmp_path / "run"
    bench = _bench(out, ns, action, ids="simple_python_0")
    try:
        assert bench.wait(60) == 0, bench.log()
    finally:
        bench.close()
    other = _bench(out, ns, action, ids="simple_python_0", model="another-model")
    try:
        assert other.wait(60) == 2
        assert "different model" in other.log()
    finally:
        other.close()
    assert len(jsonl_lines(out / "results.jsonl")) == 1


def test_case_timeout_fails_the_case_and_the_run_goes_on(tmp_path):
    ns = "/" + uid("timeout")
    action = f"{ns}/agent/run_task"
    gold = Proc.node("gold_agent_node", {"action_name": action, "delay_s": 2.0,
                                         "metrics_topic": f"{ns}/agent/metrics",
                                         "tool_calls_topic": f"{ns}/agent/tool_calls"})
    out = tmp_path / "run"
    bench = _bench(out, ns, action, ids="simple_python_0,multiple_0", case_timeout_s=0.6)
    try:
        assert bench.wait(60) == 0, bench.log()
    finally:
        bench.close()
        gold.close()
    records = jsonl_records(out / "results.jsonl")
    assert [r["case_id"] for r in records] == ["simple_python_0", "multiple_0"]
    for r in records:
        assert r["valid"] and not r["passed"]
        assert r["error_type"] == "bench:case_timeout"
        assert 0.6 <= r["wall_time_s"] < 2.0
