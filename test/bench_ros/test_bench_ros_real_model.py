"""End to end with the REAL default model: ``slm-agent bench`` with agent_node.

Two cases of each of two categories (simple_python, multiple) on the
package's default model profile (Gemma 3 270M, llama.cpp, CPU): every case
must be *run* (valid), every LLM call measured (TTFT, tokens), the report
must show numbers, not n/a.  Accuracy is the model's business and is not
asserted.  Skipped until ``slm_agent.nodes.agent_node`` exists.
"""
from __future__ import annotations

import importlib.util
import math
import sys
from pathlib import Path

import pytest

pytest.importorskip("bfcl_eval", reason="bfcl_eval not installed (pip install --no-deps bfcl-eval==2026.3.23)")
pytest.importorskip("rclpy", reason="rclpy (ROS 2 Python client) not installed")
pytest.importorskip("slm_agent.action", reason="slm_agent interfaces not generated/installed")
if importlib.util.find_spec("slm_agent.nodes.agent_node") is None:
    pytest.skip("agent_node not built yet (slm_agent.nodes.agent_node does not exist)", allow_module_level=True)
pytest.importorskip("llama_cpp", reason="llama-cpp-python not installed")

sys.path.insert(0, str(Path(__file__).resolve().parent))
from bench_helpers import Proc, jsonl_records  # noqa: E402

MODEL = "gemma3-270m-q4km"


def test_real_model_two_categories(tmp_path):
    from slm_agent.profiles import ProfileError, load_profile

    try:
        load_profile(MODEL).resolved_model_path()
    except (ProfileError, OSError, ImportError) as exc:
        pytest.skip(f"default model {MODEL} not installed: {exc}")
    out = tmp_path / "real"
    proc = Proc([sys.executable, "-m", "slm_agent.cli", "bench", "--model", MODEL,
                 "--categories", "simple_python,multiple", "--limit", "2", "--output-dir", str(out),
                 "--case-timeout", "240"], "cli")
    try:
        code = proc.wait(1500)
        log = proc.log(10**6)
    finally:
        proc.close()
    assert code == 0, log[-6000:]
    records = jsonl_records(out / "results.jsonl")
    assert [r["case_id"] for r in records] == ["simple_python_0", "simple_python_1", "multiple_0", "multiple_1"]
    assert all(r["valid"] for r in records), [(r["case_id"], r["error"]) for r in records if not r["valid"]]
    assert all(r["model"] == MODEL for r in records)
    for r in records:
        assert r["metrics"], f"{r['case_id']}: no LLM call measured"
        for m in r["metrics"]:
            assert math.isfinite(m["ttft_ms"]) and m["ttft_ms"] > 0
            assert m["prompt_tokens"] > 0
    report = (out / "report" / "report.md").read_text()
    row = [line for line in report.split("## Per category")[0].splitlines() if line.startswith(f"| {MODEL} |")]
    assert row and "| n/a |" not in row[0].split("|", 2)[2].rsplit("|", 2)[0], row
    assert (out / "bag" / "metadata.yaml").is_file()
