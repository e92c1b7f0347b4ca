"""Two ``slm-agent bench`` runs started side by side on one machine, with no
ROS_DOMAIN_ID set: each gets a DDS domain of its own, so neither benchmark
sends goals to the other's agent, and both finish with exactly their cases."""
from __future__ import annotations

import os
import sys
from pathlib import Path

import pytest

pytest.importorskip("bfcl_eval", reason="bfcl_eval not installed (pip install --no-deps bfcl-eval==2026.3.23)")
pytest.importorskip("rclpy", reason="rclpy (ROS 2 Python client) not installed")
pytest.importorskip("slm_agent.action", reason="slm_agent interfaces not generated/installed")

sys.path.insert(0, str(Path(__file__).resolve().parent))
from bench_helpers import Proc, jsonl_records  # noqa: E402

from slm_agent.isolation import LEASE_DIR_ENV  # noqa: E402

CLI = [sys.executable, "-m", "slm_agent.cli"]


def test_concurrent_runs_get_their_own_domains(tmp_path):
    env = {k: v for k, v in os.environ.items() if k != "ROS_DOMAIN_ID"}
    env[LEASE_DIR_ENV] = str(tmp_path / "leases")  # domains 0 and 1 as far as this test's runs know
    runs = {"a": ("simple_python", ["simple_python_0", "simple_python_1", "simple_python_2"]),
            "b": ("multiple", ["multiple_0", "multiple_1", "multiple_2"])}
    procs = {name: Proc([*CLI, "bench", "--agent", "gold", "--categories", cat, "--limit", "3", "--no-record",
                         "--no-telemetry", "--output-dir", str(tmp_path / name)], f"cli-{name}", env=env)
             for name, (cat, _) in runs.items()}
    try:
        codes = {name: p.wait(240) for name, p in procs.items()}
        logs = {name: p.log(10**6) for name, p in procs.items()}
    finally:
        for p in procs.values():
            p.close()
    assert codes == {"a": 0, "b": 0}, logs
    for name, (_, ids) in runs.items():
        records = jsonl_records(tmp_path / name / "results.jsonl")
        assert [r["case_id"] for r in records] == ids, logs[name]
        assert all(r["passed"] for r in records)
    # exactly one of them was moved off domain 0, and said so
    moved = [name for name, log in logs.items() if "this run uses ROS_DOMAIN_ID=1" in log]
    assert len(moved) == 1, logs
