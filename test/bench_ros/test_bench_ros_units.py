"""Pieces of the benchmark without DDS: results log repair, task ids, step grouping, report maths, bag writer."""
from __future__ import annotations

import json
import math
from pathlib import Path

import pytest

pytest.importorskip("bfcl_eval", reason="bfcl_eval not installed (pip install --no-deps bfcl-eval==2026.3.23)")

from slm_agent.bench import runner  # noqa: E402
from slm_agent.bench.report import aggregate, build_report, percentile, RunData  # noqa: E402
from slm_agent.bench.results import ResultsLog, dumps, num, read_results  # noqa: E402


def _record(case_id: str, passed: bool = True, **more) -> dict:
    """A complete results.jsonl record (results.RECORD_REQUIRED) for ``case_id``."""
    return {"case_id": case_id, "category": "cat", "model": "m", "valid": True, "passed": passed, **more}


def test_results_log_drops_torn_tail_and_never_duplicates(tmp_path):
    path = tmp_path / "results.jsonl"
    log = ResultsLog(path)
    assert log.append(_record("a", energy_j=math.nan))
    assert log.append(_record("b", False))
    assert not log.append({"case_id": "a", "passed": False}), "a case id is written once"
    log.close()
    text = path.read_text()
    assert '"energy_j":null' in text, "NaN is written as strict-JSON null"
    with path.open("a") as fh:
        fh.write('{"case_id": "c", "pas')                  # torn by a kill
    log2 = ResultsLog(path)
    assert log2.repaired_bytes == len('{"case_id": "c", "pas')
    assert log2.done_ids == {"a", "b"}
    assert log2.append(_record("c"))
    log2.close()
    lines = path.read_text().splitlines()
    assert [json.loads(x)["case_id"] for x in lines] == ["a", "b", "c"]
    assert math.isnan(num(read_results(path)[0]["energy_j"]))


def test_results_log_quarantines_a_corrupt_line_and_keeps_everything_after(tmp_path):
    path = tmp_path / "results.jsonl"
    path.write_text(dumps(_record("a")) + "\n" + "garbage\n" + dumps(_record("b")) + "\n")
    log = ResultsLog(path)
    assert log.done_ids == {"a", "b"}
    assert [d.line for d in log.damaged] == [2]
    log.close()
    assert path.read_text() == dumps(_record("a")) + "\n" + dumps(_record("b")) + "\n"
    assert json.loads(log.quarantine_path.read_text())["text"] == "garbage"


def test_task_ids_round_trip():
    assert runner.parse_task_id(runner.task_id("live_simple_3-2-0", 2)) == ("live_simple_3-2-0", 2)
    assert runner.parse_task_id("multi_turn_base_0") == ("multi_turn_base_0", 0)
    assert runner.parse_task_id("x#y") == ("x#y", 0)


def _rec(name: str, step: int) -> dict:
    return {"call": {"name": name, "arguments_json": "{}", "step": step, "id": f"{name}{step}"}}


def test_first_response_and_step_grouping():
    recs = [_rec("b", 1), _rec("a", 0), _rec("c", 0), _rec("d", 3)]
    assert [c["name"] for c in runner.first_response_calls(recs)] == ["a", "c"]
    assert [[c["name"] for c in s] for s in runner.group_steps(recs, turn=2)] == [["a", "c"], ["b"], ["d"]]
    assert all(c["turn"] == 2 for s in runner.group_steps(recs, 2) for c in s)
    assert runner.first_response_calls([]) == []


def test_select_scenarios_limit_is_per_category():
    got = runner.select_scenarios("bfcl", ["simple_python", "multiple"], (), 2)
    assert [s.case_id for s in got] == ["simple_python_0", "simple_python_1", "multiple_0", "multiple_1"]
    got = runner.select_scenarios("bfcl", [], ["multiple_3", "simple_python_2"], 0)
    assert sorted(s.case_id for s in got) == ["multiple_3", "simple_python_2"]
    with pytest.raises(ValueError):
        runner.select_scenarios("tau2", ["x"], (), 1)


def test_scoring_uses_sanitized_names_and_json_text():
    from slm_agent.bench.bfcl.gold import gold_calls
    from slm_agent.bench.bfcl.loader import load_scenario, tools_for
    from slm_agent.bench.bfcl.suite import score_single_turn

    sc = load_scenario("simple_python_0")
    gold = gold_calls(sc, tools_for(sc, 0))
    calls = [{"name": c["name"], "arguments": json.dumps(c["arguments"]), "step": 0} for c in gold]
    assert score_single_turn(sc, calls, "").passed
    assert not score_single_turn(sc, [], "I cannot help").passed


def test_carry_conversation_drops_the_agents_own_system_prompt():
    sent = [{"role": "user", "content": "hi"}]
    transcript = [{"role": "system", "content": "tools: ..."}, *sent, {"role": "assistant", "content": "ok"}]
    assert runner.carry_conversation(sent, transcript) == transcript[1:]
    assert runner.carry_conversation(sent, []) == sent


def test_progress_eta():
    p = runner.Progress(total=10, already_done=4, already_passed=2)
    p.add(True, 2.0)
    p.add(False, 4.0)
    assert p.done == 6 and p.passed == 3
    assert p.eta_s == pytest.approx(4 * 3.0)
    assert "[6/10]" in p.line("x", False) and "50.0%" in p.line("x", False) and "ETA 12s" in p.line("x", False)
    # 4 cases in flight at once: the 4 left take about one mean case time, not four
    p4 = runner.Progress(total=10, already_done=4, already_passed=2, concurrency=4)
    p4.add(True, 2.0)
    p4.add(False, 4.0)
    assert p4.eta_s == pytest.approx(4 * 3.0 / 4) and "ETA 3s" in p4.line("x", False)


def _m(ttft, dec, e=math.nan):
    return {"ttft_ms": ttft, "prefill_tokens_per_s": 100.0, "decode_tokens_per_s": dec, "energy_j": e,
            "prompt_tokens": 10, "decode_tokens": 5}


def test_aggregate_and_percentiles():
    assert percentile([1, 2, 3, 4], 50) == 2.5
    assert percentile([1, 2, 3, 4, 5], 95) == pytest.approx(4.8)
    assert math.isnan(percentile([], 50))
    recs = [
        {"case_id": "a", "model": "m", "category": "c", "passed": True, "valid": True, "wall_time_s": 1.0,
         "energy_j": 2.0, "metrics": [_m(10, 20, 1.0), _m(30, None, 1.0)], "prompt_tokens": 20, "decode_tokens": 10},
        {"case_id": "b", "model": "m", "category": "c", "passed": False, "valid": False, "wall_time_s": 3.0,
         "energy_j": 4.0, "metrics": [_m(50, 40, None)], "prompt_tokens": 10, "decode_tokens": 5},
    ]
    a = aggregate(recs)
    assert a["accuracy"] == 0.5 and a["invalid"] == 1 and a["llm_calls"] == 3
    assert a["ttft_ms_median"] == 30 and a["decode_tps_median"] == 30
    assert a["energy_j_per_call"] == 1.0
    assert a["energy_j_per_correct"] == 6.0          # (2 + 4) J / 1 passed case
    assert a["tokens_per_case"] == 22.5 and a["wall_s_total"] == 4.0
    md = build_report(RunData(recs, "results.jsonl", Path("."))).markdown
    assert "| m | 30.0 | 100.0 | 30.0 | 50.0% (1/2), 1 invalid |" in md
    assert "n/a (power not measured)" not in md
    no_power = [{**r, "energy_j": None, "metrics": [_m(10, 20)]} for r in recs]
    assert "n/a (power not measured)" in build_report(RunData(no_power, "results.jsonl", Path("."))).markdown


def test_bag_writer_refuses_existing_dir_and_unknown_type(tmp_path):
    pytest.importorskip("rosbags", reason="rosbags not installed (pip install rosbags==0.11.9)")
    from slm_agent.bench.bag import BagError, BagWriter

    (tmp_path / "exists").mkdir()
    with pytest.raises(BagError):
        BagWriter(tmp_path / "exists")
    w = BagWriter(tmp_path / "bag")
    with pytest.raises(BagError):
        w.add_topic("/x", "nope_msgs/msg/Nothing")
    w.add_topic("/r", "slm_agent/ScenarioResult")           # short form accepted
    assert w.topics == {"/r": "slm_agent/msg/ScenarioResult"}
    assert not w.flush(), "nothing buffered"
    w.close()
    assert (tmp_path / "bag" / "metadata.yaml").is_file()


def test_action_client_survives_a_goal_answered_before_registration():
    """rclpy 7.1 race (seen with the fast gold agent): the future completes before
    ``send_goal_async`` registers it, and ``remove_future`` used to raise ValueError."""
    rclpy = pytest.importorskip("rclpy", reason="rclpy (ROS 2 Python client) not installed")
    pytest.importorskip("slm_agent.action", reason="slm_agent interfaces not generated/installed")
    from rclpy.action import ActionClient
    from rclpy.task import Future

    from slm_agent.action import RunTask
    from slm_agent.ros.clients import RaceFreeActionClient as _ActionClient
    from slm_agent.ros.runtime import ros_context

    with ros_context([]):
        node = rclpy.create_node("race_probe")
        try:
            plain = ActionClient(node, RunTask, "/race_probe/plain")
            early = Future()
            early.set_result(None)
            with pytest.raises(ValueError):          # the upstream behaviour this class fixes
                plain.remove_future(early)
            fixed = _ActionClient(node, RunTask, "/race_probe/fixed")
            fixed.remove_future(early)               # completed and removed before being added
            pending = Future()
            fixed.add_future(pending)
            assert pending in fixed._futures
            fixed.remove_future(pending)
            assert pending not in fixed._futures
            plain.destroy()
            fixed.destroy()
        finally:
            node.destroy_node()
