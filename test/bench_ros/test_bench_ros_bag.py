"""The recorder's bag: readable by rosbags alone, right values, report from the bag alone, kill -9.

* A gold run (two cases corrupted, so accuracy is 5/7) is recorded by
  ``recorder_node``; SIGTERM closes the bag (status 0).
* The bag is read in a separate ``python -I`` process where importing
  ``slm_agent`` is *blocked*, with ``AnyReader`` and an empty default
  typestore: every type comes from the definitions embedded in the bag.
  ScenarioResult and InferenceMetrics decode to the values in results.jsonl.
* The report rebuilt from a copy of the bag alone (no results.jsonl, no
  run.json) has the summary table with the right accuracy.
* kill -9 of the recorder: rosbags refuses the unclosed bag as is (no
  metadata.yaml, no MCAP footer); ``recover_bag`` salvages every message
  published before the last flush, and the report reads it.
* The definitions the recorder embeds hash (RIHS01) exactly as rosidl
  hashed the installed interfaces.
"""
from __future__ import annotations

import json
import math
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

pytest.importorskip("bfcl_eval", reason="bfcl_eval not installed (pip install --no-deps bfcl-eval==2026.3.23)")
rclpy = pytest.importorskip("rclpy", reason="rclpy (ROS 2 Python client) not installed")
pytest.importorskip("slm_agent.action", reason="slm_agent interfaces not generated/installed")
pytest.importorskip("rosbags", reason="rosbags not installed (pip install rosbags==0.11.9)")
pytest.importorskip("mcap", reason="mcap not installed (comes with mcap-ros2-support==0.6.0)")

sys.path.insert(0, str(Path(__file__).resolve().parent))
from bench_helpers import Proc, bench_params, jsonl_records, uid, wait_until  # noqa: E402

from slm_agent.bench.bag import INTERFACE_PACKAGES, build_typestore, interface_dir, is_closed_bag, recover_bag  # noqa: E402
from slm_agent.bench.report import load_run, make_report  # noqa: E402

IDS = ["simple_python_0", "simple_python_1", "multiple_0", "parallel_0", "irrelevance_0", "irrelevance_1",
       "multi_turn_base_0"]
CORRUPT = ["simple_python_1", "irrelevance_0"]

#: runs in `python -I` (no PYTHONPATH, no user site): slm_agent cannot be imported
READER = r'''
import json, math, sys
class Block:
    def find_spec(self, name, path=None, target=None):
        if name == "slm_agent" or name.startswith("slm_agent."):
            raise ImportError("slm_agent is blocked in this reader")
sys.meta_path.insert(0, Block())
try:
    import slm_agent  # noqa
    print(json.dumps({"error": "slm_agent importable"})); sys.exit(1)
except ImportError:
    pass
from pathlib import Path
from rosbags.highlevel import AnyReader
from rosbags.typesys import Stores, get_typestore
out = {"results": [], "metrics": [], "topics": {}}
def f(x):
    return None if isinstance(x, float) and not math.isfinite(x) else x
with AnyReader([Path(sys.argv[1])], default_typestore=get_typestore(Stores.EMPTY)) as reader:
    out["topics"] = {c.topic: [c.msgtype, c.msgcount] for c in reader.connections}
    for conn, stamp, raw in reader.messages():
        msg = reader.deserialize(raw, conn.msgtype)
        if conn.msgtype == "slm_agent/msg/ScenarioResult":
            out["results"].append({"case_id": msg.case_id, "category": msg.category, "passed": msg.passed,
                                   "valid": msg.valid, "model": msg.model, "error_type": msg.error_type,
                                   "calls": [[c.name, c.arguments_json, c.step] for c in msg.calls],
                                   "ttft": [f(m.ttft_ms) for m in msg.metrics],
                                   "tasks": [m.task_id for m in msg.metrics],
                                   "wall": msg.wall_time_s, "energy": f(msg.energy_j)})
        elif conn.msgtype == "slm_agent/msg/InferenceMetrics":
            out["metrics"].append({"task_id": msg.task_id, "engine": msg.engine, "step": msg.step,
                                   "ttft": f(msg.ttft_ms), "stamp": msg.header.stamp.sec})
print(json.dumps(out))
'''


def _read_isolated(bag: Path) -> dict:
    env = {"PATH": "/usr/bin:/bin", "HOME": str(bag.parent)}
    res = subprocess.run([sys.executable, "-I", "-c", READER, str(bag)], capture_output=True, text=True,
                         timeout=120, env=env)
    assert res.returncode == 0, res.stderr[-3000:] + res.stdout[-2000:]
    return json.loads(res.stdout)


@pytest.fixture(scope="module")
def recorded_run(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("bagrun")
    ns = "/" + uid("bag")
    topics = {"/agent/metrics": f"{ns}/agent/metrics", "/agent/tool_calls": f"{ns}/agent/tool_calls"}
    action = f"{ns}/agent/run_task"
    out = tmp / "run"
    bag = out / "bag"
    out.mkdir()
    rec_topics = [topics["/agent/metrics"], topics["/agent/tool_calls"], f"{ns}/benchmark/scenarios",
                  f"{ns}/benchmark/results"]
    recorder = Proc.node("recorder_node", {"output": str(bag), "topics": ",".join(rec_topics),
                                           "flush_period_s": 0.5})
    gold = Proc.node("gold_agent_node", {"action_name": action, "metrics_topic": topics["/agent/metrics"],
                                         "tool_calls_topic": topics["/agent/tool_calls"],
                                         "corrupt_ids": ",".join(CORRUPT)})
    bench = None
    try:
        # custom topic names are not in the recorder's known-type table: it subscribes once the
        # graph shows their type; wait until it matched the gold agent's publishers
        for t in rec_topics[:2]:
            assert recorder.wait_text(f"matched a publisher on {t}", 60.0), recorder.log()
        bench = Proc.node("benchmark_node", bench_params(out, action, f"{ns}/bfcl", ids=",".join(IDS),
                                                         min_subscribers=1), namespace=ns)
        assert bench.wait(180) == 0, bench.log()
        assert recorder.terminate(signal.SIGTERM) == 0, recorder.log()
        assert "bag closed" in recorder.log()
        yield out, bag, jsonl_records(out / "results.jsonl"), ns
    finally:
        for p in (bench, gold, recorder):
            if p is not None:
                p.close()


def test_bag_is_closed_and_decodes_without_slm_agent(recorded_run):
    out, bag, records, ns = recorded_run
    assert is_closed_bag(bag)
    assert (bag / "metadata.yaml").is_file()
    got = _read_isolated(bag)
    assert got["topics"][f"{ns}/benchmark/results"] == ["slm_agent/msg/ScenarioResult", len(IDS)]
    assert got["topics"][f"{ns}/agent/metrics"][0] == "slm_agent/msg/InferenceMetrics"

    by_id = {r["case_id"]: r for r in records}
    assert sorted(r["case_id"] for r in got["results"]) == sorted(IDS)
    for r in got["results"]:
        rec = by_id[r["case_id"]]
        assert r["passed"] == rec["passed"] == (r["case_id"] not in CORRUPT)
        assert r["valid"] and r["model"] == "gold" and r["category"] == rec["category"]
        assert r["error_type"] == rec["error_type"]
        assert r["ttft"] == [m["ttft_ms"] for m in rec["metrics"]], "metrics decode to the recorded values"
        assert r["tasks"] == [m["task_id"] for m in rec["metrics"]]
        assert r["wall"] == pytest.approx(rec["wall_time_s"], rel=1e-9)
        assert r["energy"] is None and rec["energy_j"] is None       # no power topic in this run: NaN
        assert [[c["name"], c["arguments"], c["step"]] for c in rec["calls"]] == r["calls"]
    # /agent/metrics: one InferenceMetrics per gold response, the same ones the results carry
    from_topic = sorted((m["task_id"], m["step"], m["ttft"]) for m in got["metrics"])
    from_results = sorted((t, m["step"], m["ttft_ms"]) for rec in records for m in rec["metrics"]
                          for t in [m["task_id"]])
    assert from_topic == from_results
    assert all(m["engine"] == "gold" and m["stamp"] > 0 for m in got["metrics"])


def test_report_rebuilt_from_the_bag_alone(recorded_run, tmp_path):
    out, bag, records, _ns = recorded_run
    alone = tmp_path / "only_bag"
    shutil.copytree(bag, alone)
    data = load_run(alone)
    assert data.source == "bag" and not data.run_info
    assert sorted(r["case_id"] for r in data.records) == sorted(IDS)
    rep = make_report(alone, tmp_path / "rep")
    passed = len(IDS) - len(CORRUPT)
    acc = f"{100 * passed / len(IDS):.1f}% ({passed}/{len(IDS)})"
    summary = rep.markdown.split("## Per category")[0]
    assert "| Model | TTFT ms | Prefill tok/s | Decode tok/s | Accuracy |" in summary
    row = [line for line in summary.splitlines() if line.startswith("| gold |")]
    assert row and row[0].endswith(f"| {acc} |"), summary
    assert "| gold | irrelevance | " in rep.markdown and "50.0% (1/2)" in rep.markdown
    assert "n/a (power not measured)" in rep.markdown
    csv_text = (tmp_path / "rep" / "report.csv").read_text()
    model_row = [line for line in csv_text.splitlines() if line.startswith("model,gold,")][0]
    assert f",{len(IDS)},{passed},0,{passed / len(IDS)}" in model_row
    for png in ("ttft.png", "decode_rate.png", "accuracy_vs_latency.png"):
        assert (tmp_path / "rep" / png).read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    # the same table from results.jsonl
    rep2 = make_report(out, tmp_path / "rep2")
    def table(md: str) -> str:
        return md.split("## Summary")[1].split("## Per category")[0]
    assert table(rep2.markdown) == table(rep.markdown)


def test_kill9_recorder_leaves_a_salvageable_bag(tmp_path):
    from rosbags.highlevel import AnyReader
    from rosbags.typesys import Stores, get_typestore

    from slm_agent.msg import InferenceMetrics, ScenarioResult
    from slm_agent.ros.runtime import SpinThread, ros_context

    ns = "/" + uid("kill")
    topic = f"{ns}/benchmark/results"
    bag = tmp_path / "bag"
    recorder = Proc.node("recorder_node", {"output": str(bag), "topics": topic, "flush_period_s": 0.2})
    try:
        assert recorder.wait_text("recording", 30.0), recorder.log()
        with ros_context([]):
            node = rclpy.create_node(uid("pub"))
            spin = SpinThread(node)
            try:
                pub = node.create_publisher(ScenarioResult, topic, 10)
                # the topic's type reaches the recorder through the graph, then it subscribes
                assert wait_until(lambda: pub.get_subscription_count() >= 1, 30.0), recorder.log()
                for i in range(12):
                    pub.publish(ScenarioResult(case_id=f"case_{i}", passed=i % 3 == 0,
                                               metrics=[InferenceMetrics(ttft_ms=float(i))]))
                    time.sleep(0.02)
                time.sleep(1.0)          # several flush periods
            finally:
                spin.stop()
                node.destroy_node()
        recorder.proc.kill()
        recorder.proc.wait(timeout=10)
    finally:
        recorder.close()

    # as left by the kill: no metadata.yaml, no footer -> rosbags refuses it
    assert not (bag / "metadata.yaml").exists()
    assert not is_closed_bag(bag)
    with pytest.raises(Exception):
        with AnyReader([bag], default_typestore=get_typestore(Stores.EMPTY)):
            pass
    rec = recover_bag(bag)
    assert rec.recovered and rec.messages == 12 and rec.topics == {topic: 12}
    assert rec.unclosed is not None and rec.unclosed.is_dir()
    assert is_closed_bag(bag)
    with AnyReader([bag], default_typestore=get_typestore(Stores.EMPTY)) as reader:
        msgs = [reader.deserialize(raw, c.msgtype) for c, _t, raw in reader.messages()]
    assert [m.case_id for m in msgs] == [f"case_{i}" for i in range(12)]
    assert [m.metrics[0].ttft_ms for m in msgs] == [float(i) for i in range(12)]
    assert recover_bag(bag).recovered is False        # idempotent


#: rosbags 0.11.9 reads the ``char`` field type as uint8, so std_msgs/Char (which no
#: recorded type uses) hashes differently from rosidl; every other definition matches.
ROSBAGS_CHAR_QUIRK = {"std_msgs/msg/Char"}


def test_embedded_definitions_hash_like_rosidl():
    store = build_typestore()
    checked = []
    for pkg in INTERFACE_PACKAGES:
        share = interface_dir(pkg)
        assert share is not None, f"{pkg} .msg files not found"
        for js in sorted((share / "msg").glob("*.json")):
            desc = json.loads(js.read_text())
            name = f"{pkg}/msg/{js.stem}"
            if name in ROSBAGS_CHAR_QUIRK:
                continue
            want = next(h["hash_string"] for h in desc["type_hashes"] if h["type_name"] == name)
            assert store.hash_rihs01(name) == want, name
            checked.append(name)
    assert {"slm_agent/msg/ScenarioResult", "slm_agent/msg/PowerState", "std_msgs/msg/Header",
            "builtin_interfaces/msg/Time", "diagnostic_msgs/msg/DiagnosticArray"} <= set(checked)
    for name in ("slm_agent/msg/ScenarioResult", "slm_agent/msg/InferenceMetrics", "slm_agent/msg/PowerState"):
        msgdef, _ = store.generate_msgdef(name, ros_version=2)
        assert "std_msgs/Header" in msgdef or "Header header" in msgdef
        assert not math.isnan(len(msgdef))
