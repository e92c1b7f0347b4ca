#!/usr/bin/env python3
"""Which confidence signal and threshold should escalate a step? (issue 26: measure, do not guess)

Reads the ``results.jsonl`` of one or more runs of the *primary model alone*
(every call records ``min_logprob`` and ``top_margin`` in its metrics, with or
without a fallback) and, for each threshold of each signal, counts the steps
and the cases that ``escalate_on: low_confidence`` with that
``escalate_signal`` / ``escalate_threshold`` would have escalated:

* true escalations: escalated and wrong (the case failed);
* false escalations: escalated and right (the fallback's time spent for nothing);
* missed: wrong and not escalated.

Steps are labelled by their case's verdict (the checkers score cases; a
single-turn BFCL case is one step); a case is escalated when any of its steps
is.  A step whose call reported no signal (NaN) is never escalated.  The
thresholds are every distinct value seen (escalate when the signal is below
it) and +inf.  The CSV has every row; the table shows ``--rows`` thresholds
per signal and level, evenly spread over them.

It also prints, per signal, the case-level ROC area (how well the signal separates
wrong cases from right ones; 0.5 = chance) and with ``--max-share`` the threshold
that escalates the most wrong-minus-right cases within that share of cases.

With ``--fallback RUN_DIR`` (the fallback alone on the same single-step cases) it prices every
threshold: the accuracy and mean wall seconds per case the cascade would give.

Usage: .venv/bin/python benchmarks/escalation_roc.py RUN_DIR [RUN_DIR...] [--csv PATH] [--rows N]
       [--max-share F] [--fallback RUN_DIR]
(default CSV: escalation_roc.csv in the current directory)
"""
from __future__ import annotations

import argparse
import csv
import math
import sys
from pathlib import Path
from typing import Any, Sequence

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "src"))

from slm_agent.bench.escalation import SIGNALS, best_threshold, predict_cascade, roc_rows, separation_auc  # noqa: E402
from slm_agent.bench.results import RESULTS_FILE, read_results  # noqa: E402
from slm_agent.coerce import num  # noqa: E402

COLUMNS = ["signal", "threshold", "level", "escalated", "true_escalations", "false_escalations", "missed",
           "wrong", "right", "no_signal", "tpr", "fpr"]


def _fmt(v: Any) -> str:
    if isinstance(v, float):
        if math.isinf(v):
            return "inf"
        return "n/a" if math.isnan(v) else f"{v:.4g}"
    return str(v)


def spread(rows: Sequence[dict[str, Any]], n: int) -> list[dict[str, Any]]:
    """At most ``n`` rows, evenly spaced, the first and the last kept."""
    if n <= 0 or len(rows) <= n:
        return list(rows)
    idx = sorted({round(i * (len(rows) - 1) / (n - 1)) for i in range(n)}) if n > 1 else [0]
    return [rows[i] for i in idx]


def main(argv: Sequence[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("runs", nargs="+", type=Path, help="run directories (or results.jsonl files)")
    ap.add_argument("--csv", type=Path, default=Path("escalation_roc.csv"), help="CSV with every row")
    ap.add_argument("--rows", type=int, default=12, help="thresholds shown per signal and level (0 = all)")
    ap.add_argument("--max-share", type=float, default=None, metavar="F",
                    help="also name, per signal, the case-level threshold with the most true minus false "
                         "escalations among those escalating at most this share of cases (a time budget: "
                         "(0.6 * fallback s/case - primary s/case) / fallback s/case for issue 26's goal)")
    ap.add_argument("--fallback", type=Path, default=None, metavar="RUN_DIR",
                    help="a run of the fallback alone on the same cases: also print, per threshold, the "
                         "accuracy and mean wall seconds per case the cascade would give (escalated cases "
                         "take the fallback's verdict and add its time)")
    args = ap.parse_args(argv)
    if args.max_share is not None and not 0.0 <= args.max_share <= 1.0:
        ap.error(f"--max-share must be a share of cases from 0 to 1 (got {args.max_share:g})")
    records: list[dict[str, Any]] = []
    for run in args.runs:
        path = run / RESULTS_FILE if run.is_dir() else run
        if not path.exists():
            print(f"escalation_roc: {path}: no such results file", file=sys.stderr)
            return 2
        records += read_results(path)
    rows = roc_rows(records)
    with args.csv.open("w", newline="", encoding="utf-8") as fh:
        w = csv.DictWriter(fh, fieldnames=COLUMNS)
        w.writeheader()
        for r in rows:
            w.writerow({k: ("" if isinstance(r[k], float) and math.isnan(r[k]) else r[k]) for k in COLUMNS})
    steps = sum(r["wrong"] + r["right"] for r in rows[:1])
    print(f"{len(records)} cases ({sum(1 for r in records if not r.get('passed'))} wrong), {steps} steps "
          f"from {len(args.runs)} run(s); escalate when the signal < threshold")
    print("| " + " | ".join(COLUMNS) + " |")
    print("|" + " --- |" * len(COLUMNS))
    for signal in SIGNALS:
        for level in ("step", "case"):
            part = [r for r in rows if r["signal"] == signal and r["level"] == level]
            for r in spread(part, args.rows):
                print("| " + " | ".join(_fmt(r[k]) for k in COLUMNS) + " |")
    print()
    print("| signal | ROC area (case) | Mann-Whitney p | wrong cases | right cases |")
    print("| --- | --- | --- | --- | --- |")
    for signal in SIGNALS:
        a = separation_auc(records, signal)
        print(f"| {signal} | {_fmt(a['auc'])} | {_fmt(a['p'])} | {a['wrong']} | {a['right']} |")
    if args.max_share is not None:
        print()
        print(f"best case-level threshold escalating at most {args.max_share:.0%} of cases:")
        for signal in SIGNALS:
            b = best_threshold(rows, signal, args.max_share)
            print(f"  {signal}: " + ("none fits" if b is None else
                                      f"< {_fmt(b['threshold'])}: {b['escalated']} cases escalated, "
                                      f"{b['true_escalations']} wrong, {b['false_escalations']} right, "
                                      f"{b['missed']} wrong missed"))
    if args.fallback is not None:
        path = args.fallback / RESULTS_FILE if args.fallback.is_dir() else args.fallback
        if not path.exists():
            print(f"escalation_roc: {path}: no such results file", file=sys.stderr)
            return 2
        fallback = read_results(path)
        print()
        n = len(records)
        alone = sum(1 for r in fallback if r.get("passed"))
        print(f"predicted cascade (low_confidence alone; fallback alone: {alone}/{len(fallback)}, "
              f"{_fmt(sum(num(r.get('wall_time_s')) for r in fallback) / max(1, len(fallback)))} s/case):")
        print("| signal | threshold | escalated cases | accuracy | wall s/case (mean) |")
        print("| --- | --- | --- | --- | --- |")
        for signal in SIGNALS:
            try:
                pred = predict_cascade(records, fallback, signal)
            except ValueError as exc:
                print(f"escalation_roc: {exc}", file=sys.stderr)
                return 2
            for r in spread(pred, args.rows):
                print(f"| {signal} | {_fmt(r['threshold'])} | {r['escalated']} | {r['passed']}/{n} | "
                      f"{_fmt(r['wall_s_per_case'])} |")
    print(f"written: {args.csv} ({len(rows)} rows)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
