"""Cascade records (issue 26): per-step model/trigger in case records, the report and compare
sections, and benchmarks/escalation_roc.py on a fixture run (plain Python, no ROS)."""
from __future__ import annotations

import csv
import json
import math
import subprocess
import sys
from pathlib import Path
from types import SimpleNamespace

import pytest

from slm_agent.bench.escalation import (best_threshold, cascade_summary, predict_cascade, roc_rows, separation_auc,
                                       step_signals)
from slm_agent.bench.runner import escalation_totals, step_records

ROOT = Path(__file__).resolve().parents[2]
SCRIPT = ROOT / "benchmarks" / "escalation_roc.py"


def _metric(case: str, step: int, lp: float, margin: float, model: str = "small", escalation: str = "",
            turn: int = 0) -> dict:
    return {"task_id": f"{case}#{turn}", "step": step, "model": model, "escalation": escalation,
            "min_logprob": lp, "top_margin": margin, "prompt_tokens": 100, "decode_tokens": 10}


def _record(case: str, passed: bool, metrics: list, steps=None) -> dict:
    rec = {"case_id": case, "category": "simple_python", "model": "small", "valid": True, "passed": passed,
           "metrics": metrics, "wall_time_s": 2.0, "prompt_tokens": sum(m["prompt_tokens"] for m in metrics),
           "decode_tokens": sum(m["decode_tokens"] for m in metrics), "power_mode": "",
           "strategy": "direct", "serialization": "json"}
    if steps is not None:
        rec["steps"] = steps
    return rec


#: a primary-alone run: a (right, sure), b (wrong, unsure), c (wrong, sure at step 0, unsure at step 1),
#: d (right, no signal: an engine that reports none)
PRIMARY_ALONE = [
    _record("a", True, [_metric("a", 0, -0.1, 0.9)]),
    _record("b", False, [_metric("b", 0, -3.0, 0.1)]),
    _record("c", False, [_metric("c", 0, -0.2, 0.8), _metric("c", 1, -2.5, 0.3)]),
    _record("d", True, [_metric("d", 0, math.nan, math.nan)]),
]


def test_step_records_come_from_the_results_per_turn():
    results = [SimpleNamespace(step_models=["small", "large"], step_escalations=["", "invalid"]),
               SimpleNamespace(step_models=["small"], step_escalations=[""]),
               SimpleNamespace()]   # gold agent / interfaces without the fields: nothing
    steps = step_records(results)
    assert steps == [{"turn": 0, "step": 0, "model": "small", "trigger": ""},
                     {"turn": 0, "step": 1, "model": "large", "trigger": "invalid"},
                     {"turn": 1, "step": 0, "model": "small", "trigger": ""}]
    assert escalation_totals(steps) == {"llm_steps": 3, "steps_escalated": 1}


def test_step_signals_skip_the_fallbacks_calls():
    rec = _record("x", True, [_metric("x", 0, -4.0, 0.1), _metric("x", 0, -0.1, 0.9, "large", "low_confidence"),
                              _metric("x", 0, -0.3, 0.7, turn=1)])
    assert [(s["turn"], s["step"], s["min_logprob"]) for s in step_signals(rec)] == [(0, 0, -4.0), (1, 0, -0.3)]


def test_roc_counts_true_and_false_escalations():
    rows = roc_rows(PRIMARY_ALONE)
    at = {(r["signal"], r["threshold"], r["level"]): r for r in rows}
    # min_logprob < -1: steps b0 (wrong) and c1 (wrong) -> 2 true, 0 false; a0 right not escalated
    r = [r for (s, t, lv), r in at.items() if s == "min_logprob" and lv == "step" and t == -0.2][0]
    assert (r["true_escalations"], r["false_escalations"], r["missed"]) == (2, 0, 1)   # c0 (-0.2) not < -0.2
    assert (r["wrong"], r["right"], r["no_signal"]) == (3, 2, 1)
    r = at[("min_logprob", -0.1, "case")]   # below -0.1: b, c (any step) -> 2 true, 0 false, 0 missed
    assert (r["true_escalations"], r["false_escalations"], r["missed"]) == (2, 0, 0)
    r = at[("min_logprob", math.inf, "case")]   # everything with a signal: d (NaN) never
    assert (r["escalated"], r["true_escalations"], r["false_escalations"]) == (3, 2, 1)
    r = at[("top_margin", 0.8, "step")]    # margins below 0.8: b0 0.1, c1 0.3 -> wrong both
    assert (r["true_escalations"], r["false_escalations"]) == (2, 0)
    lowest = at[("top_margin", 0.1, "step")]
    assert lowest["escalated"] == 0 and lowest["tpr"] == 0.0


def test_separation_auc_is_the_share_of_wrong_right_pairs_ordered():
    both = separation_auc(PRIMARY_ALONE, "min_logprob")   # wrong b -3.0, c -2.5 (its lowest step); right a -0.1
    assert (both["auc"], both["wrong"], both["right"]) == (1.0, 2, 1)   # d: no signal, left out
    mixed = [*PRIMARY_ALONE, _record("e", True, [_metric("e", 0, -2.8, 0.5)])]
    # pairs (wrong < right): -3<-0.1, -3<-2.8, -2.5<-0.1 yes; -2.5<-2.8 no -> 3 of 4
    assert separation_auc(mixed, "min_logprob")["auc"] == pytest.approx(0.75)
    assert 0.0 < separation_auc(mixed, "min_logprob")["p"] <= 1.0
    assert math.isnan(separation_auc(PRIMARY_ALONE[:1], "top_margin")["auc"]), "no wrong case: no area"


def test_best_threshold_buys_the_most_wrong_cases_within_the_budget():
    rows = roc_rows(PRIMARY_ALONE)
    two = best_threshold(rows, "min_logprob", 0.5)    # at most 2 of 4 cases: b and c, below -0.2 (the lower tie)
    assert (two["threshold"], two["true_escalations"], two["false_escalations"]) == (-0.2, 2, 0)
    one = best_threshold(rows, "min_logprob", 0.25)   # one case: b alone (-3.0 < -2.5)
    assert (one["threshold"], one["escalated"], one["true_escalations"]) == (-2.5, 1, 1)
    assert best_threshold(rows, "min_logprob", 0.0)["escalated"] == 0
    assert best_threshold([], "min_logprob", 1.0) is None


#: single-step cases of the primary alone and of the fallback alone (a, b, d as above; e right and unsure)
ONE_STEP = [PRIMARY_ALONE[0], PRIMARY_ALONE[1], PRIMARY_ALONE[3], _record("e", True, [_metric("e", 0, -2.8, 0.5)])]
FALLBACK_ALONE = [{**_record(c, ok, [_metric(c, 0, -0.1, 0.9, "large")]), "wall_time_s": 5.0}
                  for c, ok in (("a", True), ("b", True), ("d", False), ("e", False))]


def test_predict_cascade_takes_the_fallbacks_verdict_and_adds_its_time():
    rows = {r["threshold"]: r for r in predict_cascade(ONE_STEP, FALLBACK_ALONE, "min_logprob")}
    # values: a -0.1 (right), b -3.0 (wrong), d NaN (right, never escalated), e -2.8 (right)
    assert (rows[-3.0]["escalated"], rows[-3.0]["passed"]) == (0, 3)          # the primary alone
    assert (rows[-2.8]["escalated"], rows[-2.8]["passed"]) == (1, 4)          # b -> fallback right
    assert rows[-2.8]["wall_s_per_case"] == pytest.approx((4 * 2.0 + 5.0) / 4)
    assert (rows[-0.1]["escalated"], rows[-0.1]["passed"]) == (2, 3)          # e too -> fallback wrong
    assert (rows[math.inf]["escalated"], rows[math.inf]["passed"]) == (3, 3)  # d (no signal) never
    with pytest.raises(ValueError, match="not in the fallback run"):
        predict_cascade(ONE_STEP, FALLBACK_ALONE[:2], "min_logprob")
    with pytest.raises(ValueError, match="more than one LLM step"):
        predict_cascade(PRIMARY_ALONE, FALLBACK_ALONE + [_record("c", True, [])], "min_logprob")


def test_cascade_summary_shares_and_absence():
    assert cascade_summary(PRIMARY_ALONE) is None   # no per-step data: no cascade figures
    recs = [_record("a", True, [_metric("a", 0, -3.0, 0.1), _metric("a", 0, -0.1, 0.9, "large", "low_confidence")],
                    steps=[{"turn": 0, "step": 0, "model": "large", "trigger": "low_confidence"}]),
            _record("b", True, [_metric("b", 0, -0.1, 0.9), _metric("b", 1, -0.1, 0.9)],
                    steps=[{"turn": 0, "step": 0, "model": "small", "trigger": ""},
                           {"turn": 0, "step": 1, "model": "small", "trigger": ""}])]
    s = cascade_summary(recs)
    assert (s["steps"], s["steps_escalated"], s["cases_escalated"]) == (3, 1, 1)
    assert s["escalated_share"] == pytest.approx(1 / 3)
    assert s["triggers"] == {"low_confidence": 1} and s["calls_by_model"] == {"large": 1, "small": 3}
    assert s["wall_s_per_case"] == 2.0 and s["tokens_per_case"] == 220.0


def _write_run(path: Path, records) -> Path:
    path.mkdir(parents=True)
    (path / "results.jsonl").write_text("".join(json.dumps(r) + "\n" for r in records), encoding="utf-8")
    return path


def test_script_prints_the_table_and_writes_every_row(tmp_path):
    run = _write_run(tmp_path / "run", PRIMARY_ALONE)
    out = tmp_path / "roc.csv"
    res = subprocess.run([sys.executable, str(SCRIPT), str(run), "--csv", str(out), "--rows", "0"],
                         capture_output=True, text=True, timeout=120)
    assert res.returncode == 0, res.stderr
    assert "4 cases (2 wrong), 5 steps" in res.stdout
    assert "| min_logprob | -0.1 | case | 2 | 2 | 0 | 0 |" in res.stdout
    rows = list(csv.DictReader(out.open()))
    assert len(rows) == len(roc_rows(PRIMARY_ALONE)) and rows[0]["signal"] == "min_logprob"
    assert {r["threshold"] for r in rows if r["signal"] == "top_margin"} >= {"0.1", "0.9", "inf"}
    assert "| min_logprob | 1 | " in res.stdout, "the ROC area table"
    budget = subprocess.run([sys.executable, str(SCRIPT), str(run), "--csv", str(out), "--max-share", "0.25"],
                            capture_output=True, text=True, timeout=120)
    assert budget.returncode == 0, budget.stderr
    assert "min_logprob: < -2.5: 1 cases escalated, 1 wrong, 0 right, 1 wrong missed" in budget.stdout
    priced = subprocess.run([sys.executable, str(SCRIPT), str(_write_run(tmp_path / "one", ONE_STEP)), "--csv",
                             str(out), "--fallback", str(_write_run(tmp_path / "fb", FALLBACK_ALONE))],
                            capture_output=True, text=True, timeout=120)
    assert priced.returncode == 0, priced.stderr
    assert "fallback alone: 2/4, 5 s/case" in priced.stdout
    share = subprocess.run([sys.executable, str(SCRIPT), str(run), "--csv", str(out), "--max-share", "10"],
                           capture_output=True, text=True, timeout=120)
    assert share.returncode == 2 and "--max-share must be a share of cases from 0 to 1 (got 10)" in share.stderr
    assert "| min_logprob | -2.8 | 1 | 4/4 | 3.25 |" in priced.stdout
    bad = subprocess.run([sys.executable, str(SCRIPT), str(tmp_path / "nothing"), "--csv", str(out)],
                         capture_output=True, text=True, timeout=120)
    assert bad.returncode == 2 and "no such results file" in bad.stderr


def test_compare_and_report_show_the_cascade_only_where_runs_have_it(tmp_path):
    from slm_agent.bench.compare import compare, write_comparison
    from slm_agent.bench.report import build_report, load_run

    plain = _write_run(tmp_path / "plain", PRIMARY_ALONE)
    cmp = compare([plain], tokens=False)
    assert "Cascade" not in cmp.markdown and cmp.cascade == []
    assert "cascade.csv" not in write_comparison(cmp, tmp_path / "cmp1", plots=False).files
    cascaded = [dict(r, steps=[{"turn": 0, "step": 0, "model": "large" if not r["passed"] else "small",
                                "trigger": "" if r["passed"] else "invalid"}]) for r in PRIMARY_ALONE]
    run = _write_run(tmp_path / "cascade", cascaded)
    cmp = compare([plain, run], tokens=False)
    assert "## Cascade: steps escalated to the fallback model" in cmp.markdown
    section = cmp.markdown.split("## Cascade")[1]
    line = next(ln for ln in section.splitlines() if ln.startswith("| cascade"))
    assert "2 (50.0 %)" in line and "invalid 2" in line and "2/4" in line
    tokens_table = cmp.markdown.split("## Tokens, time and energy per cell")[1].split("## Cascade")[0]
    assert "Escalated steps" in tokens_table and "| 50.0 % |" in tokens_table and "| n/a |" in tokens_table
    assert "Escalated steps" not in compare([plain], tokens=False).markdown
    files = write_comparison(cmp, tmp_path / "cmp2", plots=False).files
    assert "invalid 2" in files["cascade.csv"].read_text()
    report = build_report(load_run(run))
    assert "## Cascade" in report.markdown and "invalid 2" in report.markdown
    assert "## Cascade" not in build_report(load_run(plain)).markdown
