"""The robot suite through ROS: ``slm-agent bench --suite robot --agent gold`` passes all twelve
tasks (the gold agent's calls reach the robot world as InvokeTool services and each task is
scored by the robot's final state); with ``--corrupt-gold`` every task fails."""
from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

pytest.importorskip("rclpy", reason="rclpy (ROS 2 Python client) not installed")
pytest.importorskip("slm_agent.action", reason="slm_agent interfaces not generated/installed")

sys.path.insert(0, str(Path(__file__).resolve().parent))
from bench_helpers import REPO, jsonl_records  # noqa: E402

CLI = [sys.executable, "-m", "slm_agent.cli", "bench", "--suite", "robot", "--agent", "gold", "--no-record",
       "--no-telemetry", "--no-report", "--quiet"]


@pytest.mark.timeout(300)
def test_gold_passes_every_robot_task_through_ros_and_corrupted_gold_fails_them(tmp_path):
    res = subprocess.run([*CLI, "--output-dir", str(tmp_path / "gold")], capture_output=True, text=True,
                         timeout=240, cwd=REPO)
    assert res.returncode == 0, res.stderr[-3000:]
    records = jsonl_records(tmp_path / "gold" / "results.jsonl")
    assert len(records) == 12, [r["case_id"] for r in records]
    failed = {r["case_id"]: (r["error_type"], r["error"]) for r in records if not r["passed"]}
    assert failed == {}
    # the robot acted on every task but the refusals, and each record keeps the state it was scored on
    assert all(bool(r["calls"]) == (r["category"] != "safety") for r in records)
    assert all(r["final_state"]["moves"] == 0 for r in records if r["category"] in ("safety", "gripper"))
    res = subprocess.run([*CLI, "--output-dir", str(tmp_path / "bad"), "--categories", "move,safety",
                          "--corrupt-gold"], capture_output=True, text=True, timeout=240, cwd=REPO)
    assert res.returncode == 0, res.stderr[-3000:]
    bad = jsonl_records(tmp_path / "bad" / "results.jsonl")
    assert len(bad) == 6 and not any(r["passed"] for r in bad), [(r["case_id"], r["passed"]) for r in bad]
