"""Cascade figures from results.jsonl records (issue 26): what was escalated, and what would be.

Why here: the report, ``slm-agent compare`` and ``benchmarks/escalation_roc.py``
read the same per-step fields (``steps``: model and trigger per LLM step;
``metrics``: per call, ``min_logprob``/``top_margin``/``escalation``), so the
rules that read them are written once:

* :func:`cascade_summary` -- the share of steps a run escalated, by trigger,
  the calls per model, seconds and tokens per case (a run whose records have
  no ``steps``, i.e. recorded before issue 26 or by the gold agent, has none);
* :func:`roc_rows` -- from a run of the primary alone, for each threshold of
  each confidence signal, how many steps and cases ``low_confidence`` would
  have escalated that were wrong (true escalations) and right (false ones).
  A step is labelled by its case's verdict (the checkers score cases, not
  steps; for single-turn BFCL a case is one step), and a case would be
  escalated when any of its steps would be.  A step without the signal (NaN)
  is never escalated, as in the cascade itself;
* :func:`separation_auc` and :func:`best_threshold` -- which signal separates right from
  wrong (ROC area, Mann-Whitney), and which threshold buys the most under a budget of
  escalated cases;
* :func:`predict_cascade` -- from runs of each model alone, the accuracy and seconds per case
  each threshold would give.

Plain Python.
"""
from __future__ import annotations

import math
import statistics
from typing import Any, Iterable, Optional, Sequence

from slm_agent.coerce import num

SIGNALS: tuple[str, ...] = ("min_logprob", "top_margin")


def _turn(task_id: Any) -> int:
    """``<case_id>#<turn>`` -> turn (0 without a ``#``)."""
    text = str(task_id or "")
    if "#" not in text:
        return 0
    try:
        return int(text.rpartition("#")[2])
    except ValueError:
        return 0


# --------------------------------------------------------------------------- what a run escalated

def cascade_summary(records: Sequence[dict[str, Any]]) -> Optional[dict[str, Any]]:
    """Steps, escalated share, triggers, calls per model, seconds and tokens per case of
    ``records``; None when no record carries per-step data (``steps``)."""
    with_steps = [r for r in records if isinstance(r.get("steps"), list)]
    if not with_steps:
        return None
    steps = [s for r in with_steps for s in r["steps"] if isinstance(s, dict)]
    escalated = [s for s in steps if s.get("trigger")]
    triggers: dict[str, int] = {}
    for s in escalated:
        triggers[str(s["trigger"])] = triggers.get(str(s["trigger"]), 0) + 1
    calls: dict[str, int] = {}
    for r in records:
        for m in r.get("metrics") or []:
            name = str(m.get("model") or "?")
            calls[name] = calls.get(name, 0) + 1
    walls = [w for w in (num(r.get("wall_time_s")) for r in records) if math.isfinite(w)]
    tokens = [int(r.get("prompt_tokens") or 0) + int(r.get("decode_tokens") or 0) for r in records]
    return {
        "cases": len(records),
        "steps": len(steps),
        "steps_escalated": len(escalated),
        "escalated_share": len(escalated) / len(steps) if steps else math.nan,
        "cases_escalated": sum(1 for r in with_steps if any(isinstance(s, dict) and s.get("trigger")
                                                             for s in r["steps"])),
        "triggers": dict(sorted(triggers.items())),
        "calls_by_model": dict(sorted(calls.items())),
        "wall_s_per_case": statistics.fmean(walls) if walls else math.nan,
        "wall_s_median": statistics.median(walls) if walls else math.nan,
        "tokens_per_case": statistics.fmean(tokens) if tokens else math.nan,
    }


def counts_text(counts: dict[str, int]) -> str:
    """``{"invalid": 3, "undecodable": 1}`` -> ``invalid 3, undecodable 1`` (``-`` when empty)."""
    return ", ".join(f"{k} {v}" for k, v in counts.items()) or "-"


# --------------------------------------------------------------------------- what a threshold would escalate

def step_signals(record: dict[str, Any]) -> list[dict[str, Any]]:
    """Per LLM step of a case: ``{"turn", "step", <signal>: value}`` from the primary's call of
    that step (its metrics entry without ``escalation``); NaN where the call reported none."""
    out: dict[tuple[int, int], dict[str, Any]] = {}
    for m in record.get("metrics") or []:
        if not isinstance(m, dict) or m.get("escalation"):
            continue
        key = (_turn(m.get("task_id")), int(num(m.get("step")) if math.isfinite(num(m.get("step"))) else 0))
        if key in out:   # a second primary call of the same step: keep the first
            continue
        out[key] = {"turn": key[0], "step": key[1], **{s: num(m.get(s)) for s in SIGNALS}}
    return [out[k] for k in sorted(out)]


def _thresholds(values: Iterable[float]) -> list[float]:
    """Every distinct finite value, and +inf (escalate whatever has the signal)."""
    return sorted({v for v in values if math.isfinite(v)}) + [math.inf]


def roc_rows(records: Sequence[dict[str, Any]], signals: Sequence[str] = SIGNALS) -> list[dict[str, Any]]:
    """One row per signal x threshold x level (``step``, ``case``): escalating when the signal
    is below ``threshold``, the counts of true escalations (wrong, escalated), false ones
    (right, escalated), missed (wrong, not escalated), and the totals."""
    cases = [(bool(r.get("passed")), step_signals(r)) for r in records]
    rows: list[dict[str, Any]] = []
    for signal in signals:
        values = [st[signal] for _ok, steps in cases for st in steps]
        for t in _thresholds(values):
            for level in ("step", "case"):
                tp = fp = fn = tn = unknown = 0
                units: list[tuple[bool, list[float]]] = []
                for ok, steps in cases:
                    vals = [st[signal] for st in steps]
                    if level == "step":
                        units += [(ok, [v]) for v in vals]
                    else:
                        units.append((ok, vals))
                for ok, vals in units:
                    finite = [v for v in vals if math.isfinite(v)]
                    if not finite:
                        unknown += 1
                    esc = any(v < t for v in finite)
                    if esc and not ok:
                        tp += 1
                    elif esc:
                        fp += 1
                    elif not ok:
                        fn += 1
                    else:
                        tn += 1
                wrong, right = tp + fn, fp + tn
                rows.append({"signal": signal, "threshold": t, "level": level, "escalated": tp + fp,
                             "true_escalations": tp, "false_escalations": fp, "missed": fn,
                             "wrong": wrong, "right": right, "no_signal": unknown,
                             "tpr": tp / wrong if wrong else math.nan, "fpr": fp / right if right else math.nan})
    return rows


def case_signal(record: dict[str, Any], signal: str) -> float:
    """A case's lowest value of ``signal`` over its steps (the one a case-level threshold
    meets first); NaN when no step reported it."""
    finite = [st[signal] for st in step_signals(record) if math.isfinite(st[signal])]
    return min(finite) if finite else math.nan


def separation_auc(records: Sequence[dict[str, Any]], signal: str) -> dict[str, Any]:
    """How well ``signal`` separates wrong cases from right ones: the area under the ROC curve
    of "escalate below t" at the case level, P(a wrong case's signal < a right case's), ties
    half, computed as the Mann-Whitney U statistic (scipy) over the cases with the signal;
    0.5 = no better than chance.  Also the two-sided p-value of that test."""
    from scipy.stats import mannwhitneyu

    wrong = [v for r in records if not r.get("passed") and math.isfinite(v := case_signal(r, signal))]
    right = [v for r in records if r.get("passed") and math.isfinite(v := case_signal(r, signal))]
    if not wrong or not right:
        return {"signal": signal, "auc": math.nan, "p": math.nan, "wrong": len(wrong), "right": len(right)}
    res = mannwhitneyu(right, wrong, alternative="two-sided")   # U of right: pairs where right > wrong
    return {"signal": signal, "auc": float(res.statistic) / (len(wrong) * len(right)), "p": float(res.pvalue),
            "wrong": len(wrong), "right": len(right)}


def best_threshold(rows: Sequence[dict[str, Any]], signal: str, max_share: float,
                   level: str = "case") -> Optional[dict[str, Any]]:
    """The row of ``signal`` at ``level`` that escalates at most ``max_share`` of the units and,
    within that, the most true escalations net of false ones (ties: fewer escalated, then the
    lower threshold).  Why this rule: an escalated case costs the fallback's time whether it was
    wrong or right, and only a wrong one can gain, so under a time budget (``max_share``) the
    best threshold buys the most wrong-minus-right cases.  None when no row fits."""
    fits = [r for r in rows if r["signal"] == signal and r["level"] == level
            and r["escalated"] <= max_share * (r["wrong"] + r["right"])]
    if not fits:
        return None
    return max(fits, key=lambda r: (r["true_escalations"] - r["false_escalations"], -r["escalated"],
                                    -r["threshold"]))


def predict_cascade(primary: Sequence[dict[str, Any]], fallback: Sequence[dict[str, Any]], signal: str,
                    thresholds: Optional[Iterable[float]] = None) -> list[dict[str, Any]]:
    """What ``low_confidence`` alone would give, per threshold, from a run of the primary alone and
    one of the fallback alone on the same cases, without running the cascade: a case whose
    signal is below the threshold takes the fallback's verdict and costs the primary's wall time
    plus the fallback's; every other case keeps the primary's.  Single-step cases only (the
    fallback then sees exactly the conversation it saw alone; a multi-step case is refused),
    cases of both runs matched by id.  Why: the threshold trades accuracy for time, and one run
    of each model prices every point of that trade; a cascade run checks one point."""
    by_id = {r["case_id"]: r for r in fallback}
    missing = [r["case_id"] for r in primary if r["case_id"] not in by_id]
    if missing:
        raise ValueError(f"{len(missing)} case(s) of the primary run are not in the fallback run, "
                         f"e.g. {missing[0]}")
    multi = [r["case_id"] for r in primary if len(step_signals(r)) > 1]
    if multi:
        raise ValueError(f"{len(multi)} case(s) with more than one LLM step (e.g. {multi[0]}): the fallback "
                         f"alone did not see the conversation the cascade would give it")
    values = [case_signal(r, signal) for r in primary]
    ts = sorted(set(thresholds)) if thresholds is not None else _thresholds(values)
    n = len(primary)
    rows = []
    for t in ts:
        passed = escalated = 0
        wall = 0.0
        for r, v in zip(primary, values):
            fb = by_id[r["case_id"]]
            esc = math.isfinite(v) and v < t
            escalated += esc
            passed += bool(fb.get("passed") if esc else r.get("passed"))
            wall += num(r.get("wall_time_s")) + (num(fb.get("wall_time_s")) if esc else 0.0)
        rows.append({"signal": signal, "threshold": t, "cases": n, "escalated": escalated,
                     "passed": passed, "accuracy": passed / n if n else math.nan,
                     "wall_s_per_case": wall / n if n else math.nan})
    return rows


__all__ = ["SIGNALS", "best_threshold", "predict_cascade", "cascade_summary", "case_signal", "counts_text", "roc_rows",
           "separation_auc", "step_signals"]
