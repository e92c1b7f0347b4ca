"""Tool-spec tokens per serialization on BFCL's tool specs, counted with each
bundled model's own tokenizer (GGUF, vocab only): median and quartiles per
serialization, and the per-case saving of each serialization over JSON.

Why: TOON's claim is "~40 % fewer tokens than JSON"; what matters to a small
model is the saving measured with *its* tokenizer on the tool specs it is
actually shown (the first-turn specs of each BFCL case, rendered by the same
serializer the agent uses), as a distribution over cases, not one mean.

    .venv/bin/python benchmarks/toolspec_tokens.py
    .venv/bin/python benchmarks/toolspec_tokens.py --categories simple_python --models smollm2-135m-q4_1
"""
from __future__ import annotations

import argparse
import sys

import numpy as np

from slm_agent.bench.compare import model_tokenizer, spec_texts
from slm_agent.bench.runner import select_scenarios

CATEGORIES = "simple_python,multiple,parallel,parallel_multiple,multi_turn_base"
MODELS = "gemma3-270m-q4km,smollm2-135m-q4_1"


def quartiles(values: list[float]) -> str:
    q1, med, q3 = np.percentile(values, [25, 50, 75])
    return f"{med:.1f} [{q1:.1f}, {q3:.1f}]"


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--categories", default=CATEGORIES, help=f"BFCL categories (default {CATEGORIES})")
    ap.add_argument("--models", default=MODELS, help=f"model profiles (default {MODELS})")
    ap.add_argument("--serializations", default="json,toon,natural", help="first one is the baseline")
    args = ap.parse_args(argv)
    ids = [s.case_id for s in select_scenarios("bfcl", args.categories.split(","), (), 0)]
    sers = args.serializations.split(",")
    print(f"{len(ids)} BFCL cases ({args.categories}); tokens: median [Q1, Q3] over cases")
    print("| Model | Serialization | Cases | Tool-spec tokens | Saving vs " + sers[0] + " % |")
    print("|---|---|---|---|---|")
    for model in args.models.split(","):
        tok = model_tokenizer(model)
        if tok is None:
            print(f"{model}: no GGUF tokenizer", file=sys.stderr)
            return 2
        # one case at a time, so the baseline and each serialization are paired by case
        counts = {s: [] for s in sers}
        for cid in ids:
            texts = {s: spec_texts([cid], s) for s in sers}
            if all(texts.values()):
                for s in sers:
                    counts[s].append(tok(texts[s][0]))
        base = counts[sers[0]]
        for s in sers:
            saving = [100.0 * (b - c) / b for b, c in zip(base, counts[s]) if b > 0]
            print(f"| {model} | {s} | {len(counts[s])} | {quartiles(counts[s])} | "
                  + ("-" if s == sers[0] else quartiles(saving)) + " |")
    return 0


if __name__ == "__main__":
    sys.exit(main())
