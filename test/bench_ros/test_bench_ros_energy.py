"""Energy per case and per LLM call from a PowerState topic, and the power-mode label.

This machine measures no power, so the test process publishes a constant
10 W PowerState (power_mode "TESTMODE") at 50 Hz on the benchmark's
``power_topic``; the gold agent sleeps 0.3 s inside each answer's reported
LLM-call window.  Energy must come out as 10 W x the window, the label must
be taken from the topic, and the report must show joules instead of
"n/a (power not measured)".
"""
from __future__ import annotations

import math
import sys
import threading
from pathlib import Path

import pytest

pytest.importorskip("bfcl_eval", reason="bfcl_eval not installed (pip install --no-deps bfcl-eval==2026.3.23)")
rclpy = pytest.importorskip("rclpy", reason="rclpy (ROS 2 Python client) not installed")
pytest.importorskip("slm_agent.action", reason="slm_agent interfaces not generated/installed")

sys.path.insert(0, str(Path(__file__).resolve().parent))
from bench_helpers import Proc, bench_params, jsonl_records, uid, wait_until  # noqa: E402

from slm_agent.msg import PowerState  # noqa: E402
from slm_agent.ros.runtime import SpinThread, ros_context  # noqa: E402

POWER_W = 10.0
DELAY_S = 0.3
IDS = ["simple_python_0", "multiple_0", "irrelevance_0"]


def test_energy_integrated_from_power_topic(tmp_path):
    ns = "/" + uid("energy")
    action = f"{ns}/agent/run_task"
    out = tmp_path / "run"
    gold = Proc.node("gold_agent_node", {"action_name": action, "delay_s": DELAY_S,
                                         "metrics_topic": f"{ns}/agent/metrics",
                                         "tool_calls_topic": f"{ns}/agent/tool_calls"})
    bench = None
    stop = threading.Event()
    try:
        with ros_context([]):
            node = rclpy.create_node(uid("power"))
            pub = node.create_publisher(PowerState, f"{ns}/telemetry/power", 10)
            spin = SpinThread(node)

            def publish() -> None:
                while not stop.wait(0.02):
                    msg = PowerState(source="test", total_rail="TEST", total_power_w=POWER_W,
                                     total_available=True, power_mode="TESTMODE")
                    msg.header.stamp = node.get_clock().now().to_msg()
                    pub.publish(msg)

            thread = threading.Thread(target=publish, daemon=True)
            thread.start()
            try:
                bench = Proc.node("benchmark_node", bench_params(
                    out, action, f"{ns}/bfcl", ids=",".join(IDS), power_topic=f"{ns}/telemetry/power",
                    power_wait_s=10.0),
                    namespace=ns)
                assert bench.wait(120) == 0, bench.log()

            finally:
                stop.set()
                thread.join(timeout=2)
                spin.stop()
                node.destroy_node()
    finally:
        gold.close()
        if bench is not None:
            bench.close()

    records = jsonl_records(out / "results.jsonl")
    assert [r["case_id"] for r in records] == IDS
    for r in records:
        assert r["passed"], r
        assert r["power_mode"] == "TESTMODE"
        assert r["energy_j"] is not None, "power was published for the whole case"
        assert r["energy_j"] == pytest.approx(POWER_W * r["wall_time_s"], rel=0.05, abs=0.05)
        assert r["energy_covered_s"] == pytest.approx(r["wall_time_s"], rel=0.05, abs=0.05)
        assert r["wall_time_s"] >= DELAY_S
        for m in r["metrics"]:
            window = (m["end_stamp"]["sec"] + m["end_stamp"]["nanosec"] * 1e-9
                      - m["header"]["stamp"]["sec"] - m["header"]["stamp"]["nanosec"] * 1e-9)
            assert window >= DELAY_S
            assert m["energy_j"] == pytest.approx(POWER_W * window, rel=0.02, abs=0.02)

    from slm_agent.bench.report import make_report

    rep = make_report(out)
    details = rep.markdown.split("## Details")[1]
    assert "n/a (power not measured)" not in details
    row = [line for line in details.splitlines() if line.startswith("| gold | TESTMODE |")][0]
    cells = [c.strip() for c in row.strip("|").split("|")]
    per_call, per_correct = float(cells[6]), float(cells[7])
    assert per_call == pytest.approx(POWER_W * DELAY_S, rel=0.1)
    total = sum(r["energy_j"] for r in records)
    assert per_correct == pytest.approx(total / len(records), rel=0.01)
    assert "| gold | TESTMODE |" in rep.markdown.split("## Per power mode")[1]
    assert not math.isnan(per_call)
