"""``slm-agent bench`` / ``slm-agent report``: the whole pip-route run as a user starts it.

The CLI starts telemetry_node, gold_agent_node, recorder_node and
benchmark_node as subprocesses, waits for the benchmark, stops the others
(the recorder last, with SIGTERM, so the bag is closed) and writes the
report.  Ctrl-C (SIGINT to the CLI) stops everything with status 130 and
leaves valid results and a closed bag; rerunning the same command resumes.
"""
from __future__ import annotations

import signal
import json
import subprocess
import sys
from pathlib import Path

import pytest

pytest.importorskip("bfcl_eval", reason="bfcl_eval not installed (pip install --no-deps bfcl-eval==2026.3.23)")
pytest.importorskip("rclpy", reason="rclpy (ROS 2 Python client) not installed")
pytest.importorskip("slm_agent.action", reason="slm_agent interfaces not generated/installed")
pytest.importorskip("rosbags", reason="rosbags not installed (pip install rosbags==0.11.9)")
pytest.importorskip("matplotlib", reason="matplotlib not installed (pip install matplotlib==3.11.2)")

sys.path.insert(0, str(Path(__file__).resolve().parent))
from bench_helpers import REPO, Proc, jsonl_lines, jsonl_records, wait_until  # noqa: E402

from slm_agent.bench.bag import is_closed_bag, read_messages  # noqa: E402

CLI = [sys.executable, "-m", "slm_agent.cli"]


def test_bench_help_lists_the_options():
    res = subprocess.run([*CLI, "bench", "--help"], capture_output=True, text=True, timeout=60, cwd=REPO)
    assert res.returncode == 0
    for opt in ("--model", "--suite", "--categories", "--limit", "--strategy", "--serialization",
                "--output-dir", "--record", "--no-record", "--agent"):
        assert opt in res.stdout
    res = subprocess.run([*CLI, "report", "--help"], capture_output=True, text=True, timeout=60, cwd=REPO)
    assert res.returncode == 0 and "bag" in res.stdout


def test_cli_gold_run_end_to_end(tmp_path):
    out = tmp_path / "gold"
    proc = Proc([*CLI, "bench", "--agent", "gold", "--categories", "simple_python,multiple,multi_turn_base",
                 "--limit", "2", "--output-dir", str(out)], "cli")
    try:
        assert proc.wait(240) == 0, proc.log()
        log = proc.log(10**6)
    finally:
        proc.close()
    records = jsonl_records(out / "results.jsonl")
    assert [r["case_id"] for r in records] == ["simple_python_0", "simple_python_1", "multiple_0", "multiple_1",
                                              "multi_turn_base_0", "multi_turn_base_1"]
    assert all(r["passed"] for r in records)
    # console: every node streamed, then where things are and the summary table
    for name in ("telemetry |", "recorder |", "agent |", "benchmark |"):
        assert name in log
    assert f"results: {out / 'results.jsonl'}" in log
    assert f"bag:     {out / 'bag'}" in log
    assert "| gold | " in log and "| 100.0% (6/6) |" in log
    # the bag was closed by SIGTERM and holds every result (the benchmark waited for the recorder)
    assert is_closed_bag(out / "bag")
    results = [m.msg for m in read_messages(out / "bag", ["slm_agent/msg/ScenarioResult"])]
    assert sorted(m.case_id for m in results) == sorted(r["case_id"] for r in records)
    metrics = list(read_messages(out / "bag", ["slm_agent/msg/InferenceMetrics"]))
    assert len(metrics) == sum(len(r["metrics"]) for r in records)
    power = list(read_messages(out / "bag", ["slm_agent/msg/PowerState"]))
    assert power, "telemetry_node's power topic was recorded"
    for f in ("report/report.md", "report/report.csv", "report/cases.csv", "report/ttft.png", "run.json",
              "params.yaml", "logs/benchmark.log", "logs/recorder.log", "logs/agent.log", "logs/telemetry.log"):
        assert (out / f).is_file(), f
    # run.json names the llama.cpp build of this environment: the bootstrap's
    # record (variant, flags) and what the library says it was compiled with
    build = json.loads((out / "run.json").read_text())["llama_cpp_build"]
    assert build["llama_cpp_python"] and "AMX_INT8 = 1" not in build["system_info"]
    if build.get("build"):
        assert "-DGGML_NATIVE=OFF" in build["build"]["cmake_args"] and build["build"]["variant"]

    # slm-agent report on the bag alone gives the same accuracy
    res = subprocess.run([*CLI, "report", str(out / "bag"), "--output", str(tmp_path / "rep"), "--no-plots"],
                         capture_output=True, text=True, timeout=120, cwd=REPO)
    assert res.returncode == 0, res.stderr
    assert "| gold | " in res.stdout and "100.0% (6/6)" in res.stdout
    assert (tmp_path / "rep" / "report.md").is_file()
    res = subprocess.run([*CLI, "report", str(tmp_path / "nothing")], capture_output=True, text=True,
                         timeout=60, cwd=REPO)
    assert res.returncode == 2 and "does not exist" in res.stderr


def test_cli_ctrl_c_stops_cleanly_and_rerun_resumes(tmp_path):
    out = tmp_path / "run"
    argv = [*CLI, "bench", "--agent", "gold", "--gold-delay", "0.2", "--categories", "simple_python",
            "--limit", "15", "--output-dir", str(out)]
    first = Proc(argv, "cli")
    try:
        assert wait_until(lambda: len(jsonl_lines(out / "results.jsonl")) >= 2, 120.0), first.log()
        code = first.terminate(signal.SIGINT, timeout_s=60)
        log = first.log(10**6)
    finally:
        first.close()
    assert code == 130, log
    assert "interrupted" in log
    done = jsonl_records(out / "results.jsonl")
    assert 2 <= len(done) < 15
    assert is_closed_bag(out / "bag"), "the recorder got SIGTERM and closed the bag"
    in_bag = {m.msg.case_id for m in read_messages(out / "bag", ["slm_agent/msg/ScenarioResult"])}
    assert {r["case_id"] for r in done} <= in_bag | {done[-1]["case_id"]}

    second = Proc(argv, "cli")
    try:
        assert second.wait(240) == 0, second.log()
        log2 = second.log(10**6)
    finally:
        second.close()
    records = jsonl_records(out / "results.jsonl")
    ids = [r["case_id"] for r in records]
    assert ids == [f"simple_python_{i}" for i in range(15)]
    assert "already done" in log2
    assert (out / "bag_2").is_dir() and is_closed_bag(out / "bag_2"), "a resumed run records a new bag"
