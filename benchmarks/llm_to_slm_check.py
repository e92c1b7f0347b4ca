#!/usr/bin/env python3
"""Recompute the LLM-to-SLM result from committed per-case records (issue 25).

Layout of the results directory (what ``results/llm-to-slm/`` commits; weights stay out)::

    DIR/
      dataset/train.jsonl [validation.jsonl]   the curated training data (slm-agent dataset);
      [dataset-<variant>/...]                  more datasets (another mix), checked alike
      eval/<cell>/run.json, results.jsonl      evaluation runs on the held-out set, one per
                                               model: the teacher, each student's base and
                                               each student with its LoRA adapter

A cell's role is read from its run.json: ``model_profile.adapter`` present = a LoRA
student (its base profile named by ``model_profile.name`` without the ``-lora`` suffix, or
by ``model_profile.base`` when recorded); the teacher is ``--teacher`` (a profile name,
default qwen2.5-coder-1.5b); every other cell is a student base.

For each student with both a base and a LoRA cell it prints the cases passed by base,
LoRA and teacher on the cases all three ran, seconds per case, McNemar's exact p (LoRA vs
base, the same function ``slm-agent compare`` uses) and how many training examples are in
the held-out set (training/holdout.py: ids and questions); the LAST line is the headline:

    student <name>: base A/N, lora B/N, teacher C/N, McNemar p=<p>, train/eval overlap 0

With several students the headline is the one closest to the goal (LoRA beats base with
p < 0.05 and closes at least half the gap to the teacher): a student meeting it, else the
largest gain over its base, then the lowest p; every student's line is printed, that one last.

``slm-agent finetune ... --eval-categories ... --eval-with TEACHER_RUN`` writes such an eval/
directory (OUTPUT/eval/<profile>, OUTPUT/eval/<profile>-lora and the teacher's copied cell);
``--dataset`` names the dataset directory when it is not DIR/dataset.

Usage: .venv/bin/python benchmarks/llm_to_slm_check.py results/llm-to-slm [--teacher PROFILE] [--dataset DIR]
"""
from __future__ import annotations

import argparse
import json
import statistics
import sys
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "src"))

from slm_agent.bench.compare import mcnemar_exact  # noqa: E402
from slm_agent.bench.results import read_results  # noqa: E402
from slm_agent.training.holdout import STUDY_HOLDOUT, HoldoutSet  # noqa: E402


def load_cells(eval_dir: Path) -> dict[str, dict[str, Any]]:
    """cell name -> {profile, base, adapter, passed: {case: bool}, seconds: [..]}."""
    cells = {}
    for cell in sorted(p for p in eval_dir.iterdir() if (p / "run.json").is_file()):
        run = json.loads((cell / "run.json").read_text(encoding="utf-8"))
        prof = run.get("model_profile") or {}
        name = str(prof.get("name") or run.get("config", {}).get("model") or cell.name)
        adapter = prof.get("adapter")
        base = str(prof.get("base") or (name[: -len("-lora")] if name.endswith("-lora") else name))
        recs = [r for r in read_results(cell / "results.jsonl") if r.get("valid", True)]
        cells[cell.name] = {"profile": name, "base": base, "adapter": adapter,
                            "passed": {r["case_id"]: bool(r["passed"]) for r in recs},
                            "seconds": {r["case_id"]: float(r.get("wall_time_s") or 0.0) for r in recs}}
    return cells


def overlap(dataset_dir: Path, holdout: HoldoutSet) -> tuple[int, int]:
    """(training examples in the held-out set, examples) over the dataset's JSONL files."""
    hits = n = 0
    for name in ("train.jsonl", "validation.jsonl"):
        path = dataset_dir / name
        if not path.is_file():
            continue
        for line in path.read_text(encoding="utf-8").splitlines():
            if line.strip():
                n += 1
                hits += bool(holdout.hits(json.loads(line)))
    return hits, n


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("dir", help="results directory (dataset/ and eval/)")
    ap.add_argument("--teacher", default="qwen2.5-coder-1.5b", help="the teacher's profile name")
    ap.add_argument("--dataset", default="", help="the dataset directory (default DIR/dataset)")
    args = ap.parse_args()
    root = Path(args.dir)
    dataset = Path(args.dataset) if args.dataset else root / "dataset"
    if not (root / "eval").is_dir() or not (dataset / "train.jsonl").is_file():
        ap.error(f"{root}: expected eval/<cell>/ run directories and "
                 f"{dataset / 'train.jsonl' if args.dataset else 'dataset/train.jsonl'}")
    cells = load_cells(root / "eval")
    teacher = [c for c in cells.values() if c["profile"] == args.teacher and not c["adapter"]]
    if len(teacher) != 1:
        ap.error(f"expected one teacher cell (profile {args.teacher}, no adapter), found {len(teacher)}")
    teacher_passed = teacher[0]["passed"]
    holdout = HoldoutSet.load(STUDY_HOLDOUT)
    datasets = [dataset] if args.dataset else \
        [dataset] + sorted(p for p in root.glob("dataset-*") if (p / "train.jsonl").is_file())
    counts = {d: overlap(d, holdout) for d in datasets}
    hits, n_train = sum(h for h, _ in counts.values()), sum(n for _, n in counts.values())
    lines = []
    for name, lora in ((n, c) for n, c in cells.items() if c["adapter"]):
        bases = [c for c in cells.values() if not c["adapter"] and c["profile"] == lora["base"]]
        if len(bases) != 1:
            print(f"student {lora['profile']}: no single base cell (profile {lora['base']}); skipped")
            continue
        base = bases[0]
        shared = sorted(set(base["passed"]) & set(lora["passed"]) & set(teacher_passed))
        if not shared:
            print(f"student {lora['base']}: no case ran in base, LoRA and teacher; skipped")
            continue
        b = {c: base["passed"][c] for c in shared}
        lo = {c: lora["passed"][c] for c in shared}
        t = sum(teacher_passed[c] for c in shared)
        test = mcnemar_exact(b, lo)
        secs = {k: statistics.mean(cell["seconds"][c] for c in shared)
                for k, cell in (("base", base), ("lora", lora), ("teacher", teacher[0]))}
        n_base, n_lora = sum(b.values()), sum(lo.values())
        met = goal_met(n_base, n_lora, t, test["p_value"])
        print(f"student {lora['base']} ({name}): {len(shared)} shared cases; s/case base {secs['base']:.2f}, "
              f"lora {secs['lora']:.2f}, teacher {secs['teacher']:.2f}; only base passed {test['only_a']}, "
              f"only lora passed {test['only_b']}; goal {'met' if met else 'not met'}")
        lines.append(((met, n_lora - n_base, -test["p_value"]),
                      f"student {lora['base']}: base {n_base}/{len(shared)}, lora {n_lora}/"
                      f"{len(shared)}, teacher {t}/{len(shared)}, McNemar p={test['p_value']:.4g}, "
                      f"train/eval overlap {hits}"))
    if not lines:
        print("no student with a base and a LoRA cell", file=sys.stderr)
        return 1
    for d, (h, n) in counts.items():
        print(f"{d.name}: {n} examples, of them in the held-out set ({STUDY_HOLDOUT}): {h}")
    # the student closest to the goal last (the headline)
    for _, line in sorted(lines, key=lambda kl: kl[0]):
        print(line)
    return 0


def goal_met(base: int, lora: int, teacher: int, p_value: float) -> bool:
    """Issue 25's goal: LoRA beats base with p < 0.05 and closes half the gap to the teacher."""
    return lora > base and p_value < 0.05 and (lora - base) >= (teacher - base) / 2


if __name__ == "__main__":
    sys.exit(main())
