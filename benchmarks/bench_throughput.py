#!/usr/bin/env python3
"""Benchmark throughput with the issue-16 optimisations off and on (same cases, same verdicts?).

Runs the same N BFCL cases (half ``simple_python``, half ``multiple``)
through the real benchmark path -- ``slm-agent bench``: agent node and
benchmark node as separate processes talking RunTask over DDS -- with two
model profiles written next to the output, both from the model's profile
(same prompt layout -- ``shared_prefix`` by default, the fixed part first --
same ``context.prefill_chunk``, same CPU kernels):

* ``off``: ``context.prefix_reuse: false`` (every call prefills its whole
  prompt), ``backend.llama_cpp.grammar_top_k: 0`` (the full-vocabulary
  grammar pass on every rejected token), no prompt lookup;
* ``on``: prefix reuse (the shared part prefilled once per run, reused in
  whole chunks so the result is bit-identical to a cold prefill),
  ``grammar_top_k: 64``, and ``prompt_lookup_tokens: --prompt-lookup``
  (default 0: its verification batch is not guaranteed to round like
  one-token decoding, see the engine's module doc).

The cases run in blocks of ``--block``, off and on alternating (order
flipped every block), each block one ``slm-agent bench`` call resuming its
configuration's run directory, so both see the same machine load.  In a
fresh DDS domain (other sessions' agents on this machine cannot answer).

Printed: per configuration cases per minute (from the benchmark's own
per-case wall time; and end to end including node start-up per block),
harness time per case (case wall time minus the LLM calls' total time),
prompt and cached prompt tokens per case, llama.cpp's prefill and decode
time per case (where the rest of the time goes), tokens accepted per
speculative step, then how many verdicts and parsed calls differ between off
and on, and the cases-per-minute ratio LAST.

Usage:  .venv/bin/python benchmarks/bench_throughput.py [--n 40] [--block 10] [--out /tmp/bench_throughput]
"""
from __future__ import annotations

import argparse
import json
import os
import random
import statistics
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import yaml

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "src"))
sys.path.insert(0, str(Path(__file__).resolve().parent))

from bench_records import counters, parsed_calls, records  # noqa: E402

from slm_agent.bench.suite import get_suite  # noqa: E402
from slm_agent.profiles import DEFAULT_PROFILE, find_profile, load_profile  # noqa: E402

CATEGORIES = ("simple_python", "multiple")


def write_profiles(model: str, out: Path, prompt_lookup: int) -> dict[str, Path]:
    """The off/on variants of ``model``'s profile as YAML files under ``out``."""
    src = find_profile(model)
    base = yaml.safe_load(src.read_text(encoding="utf-8"))
    chat = base.setdefault("chat", {})
    if chat.get("template_file"):  # relative to the profile file: make it absolute
        chat["template_file"] = str((src.parent / chat["template_file"]).resolve())
    paths = {}
    for name in ("off", "on"):
        prof = json.loads(json.dumps(base))
        lc = prof.setdefault("backend", {}).setdefault("llama_cpp", {})
        on = name == "on"
        lc["grammar_top_k"] = 64 if on else 0
        lc["prompt_lookup_tokens"] = prompt_lookup if on else 0
        prof.setdefault("context", {})["prefix_reuse"] = on
        prof["name"] = f"{base.get('name', model)}-throughput-{name}"
        path = out / "profiles" / f"{name}.yaml"
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(yaml.safe_dump(prof, sort_keys=False), encoding="utf-8")
        load_profile(str(path))  # fails here, not in the agent node, if the variant is invalid
        paths[name] = path
    return paths


def run_block(profile: Path, ids: list[str], out_dir: Path, env: dict[str, str], log: Path) -> float:
    """One ``slm-agent bench`` call over ``ids``; its wall time in seconds."""
    cmd = [str(Path(sys.executable).with_name("slm-agent")), "bench", "--model", str(profile),
           "--ids", ",".join(ids), "--output-dir", str(out_dir), "--allow-different-run",
           "--no-record", "--no-telemetry", "--no-report", "--quiet"]
    t0 = time.monotonic()
    with log.open("a", encoding="utf-8") as fh:
        proc = subprocess.run(cmd, env=env, stdout=fh, stderr=subprocess.STDOUT, check=False)
    if proc.returncode != 0:
        raise SystemExit(f"bench_throughput: slm-agent bench failed (exit {proc.returncode}), see {log}")
    return time.monotonic() - t0


def summary(recs: list[dict[str, Any]], e2e_s: float) -> dict[str, float]:
    wall = [r["wall_time_s"] for r in recs]
    llm = [sum(m["total_ms"] for m in r["metrics"]) / 1e3 for r in recs]
    harness = [w - x for w, x in zip(wall, llm)]
    ms = [m for r in recs for m in r["metrics"]]
    c = [counters(m) for m in ms]
    steps = sum(x.get("spec_steps", 0.0) for x in c)
    acc = sum(x.get("spec_accepted_tokens", 0.0) for x in c)
    n = len(recs)
    prefill_ms = sum(x.get("llama_prompt_eval_ms", 0.0) for x in c) / n
    prefill_tok = sum(x.get("llama_prompt_eval_tokens", 0.0) for x in c) / n
    decode_ms = sum(x.get("llama_eval_ms", 0.0) for x in c) / n
    decode_tok = sum(x.get("llama_eval_tokens", 0.0) for x in c) / n
    return {
        "cases": n,
        "prefill_ms_per_case": prefill_ms,
        "prefill_tokens_evaluated_per_case": prefill_tok,
        "prefill_ms_per_token": prefill_ms / prefill_tok if prefill_tok else float("nan"),
        "decode_ms_per_case": decode_ms,
        "decode_ms_per_token": decode_ms / decode_tok if decode_tok else float("nan"),
        "cases_per_min": 60.0 * n / sum(wall),
        "cases_per_min_e2e": 60.0 * n / e2e_s,
        "llm_s_per_case": statistics.mean(llm),
        "harness_ms_mean": 1e3 * statistics.mean(harness),
        "harness_ms_median": 1e3 * statistics.median(harness),
        "prompt_tokens_per_case": sum(m["prompt_tokens"] for m in ms) / n,
        "cached_prompt_tokens_per_case": sum(m["cached_prompt_tokens"] for m in ms) / n,
        "decode_tokens_per_case": sum(m["decode_tokens"] for m in ms) / n,
        "grammar_full_vocab_passes_per_case": sum(x.get("grammar_full_vocab_passes", 0.0) for x in c) / n,
        "spec_steps": steps,
        "accepted_per_spec_step": acc / steps if steps else float("nan"),
        "passed": sum(1 for r in recs if r["passed"]),
    }


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--n", type=int, default=40, help="cases, half per category (>= 2)")
    ap.add_argument("--block", type=int, default=10, help="cases per slm-agent bench call")
    ap.add_argument("--model", default=DEFAULT_PROFILE)
    ap.add_argument("--prompt-lookup", type=int, default=0, help="drafts per step in the 'on' profile (0 = off)")
    ap.add_argument("--out", default="/tmp/bench_throughput", help="output directory (must not exist)")
    args = ap.parse_args()
    if args.n < 2 or args.block < 1:
        ap.error("--n must be >= 2 and --block >= 1")
    out = Path(args.out)
    if out.exists():
        ap.error(f"{out} exists; give a fresh --out")
    out.mkdir(parents=True)
    suite = get_suite("bfcl")
    half = args.n // 2
    ids = [s.case_id for cat, k in zip(CATEGORIES, (half, args.n - half)) for s in suite.select([cat], [], k)]
    profiles = write_profiles(args.model, out, args.prompt_lookup)
    env = dict(os.environ, ROS_DOMAIN_ID=str(random.randint(150, 230)), ROS_AUTOMATIC_DISCOVERY_RANGE="LOCALHOST",
               PYTHONUNBUFFERED="1")
    e2e = {"off": 0.0, "on": 0.0}
    blocks = [ids[i:i + args.block] for i in range(0, len(ids), args.block)]
    for b, block in enumerate(blocks):
        for name in (("off", "on") if b % 2 == 0 else ("on", "off")):
            dt = run_block(profiles[name], block, out / name, env, out / f"{name}.log")
            e2e[name] += dt
            print(f"block {b + 1}/{len(blocks)} {name}: {len(block)} cases in {dt:.1f} s", flush=True)
    recs = {name: records(out / name) for name in ("off", "on")}
    stats = {name: summary([recs[name][i] for i in ids], e2e[name]) for name in ("off", "on")}
    verdicts = sum(1 for i in ids if recs["off"][i]["passed"] != recs["on"][i]["passed"])
    calls = sum(1 for i in ids if parsed_calls(recs["off"][i]) != parsed_calls(recs["on"][i]))
    rows = [("cases", "{:.0f}"), ("passed", "{:.0f}"), ("cases_per_min_e2e", "{:.2f}"), ("llm_s_per_case", "{:.2f}"),
            ("harness_ms_mean", "{:.1f}"), ("harness_ms_median", "{:.1f}"), ("prompt_tokens_per_case", "{:.1f}"),
            ("cached_prompt_tokens_per_case", "{:.1f}"), ("prefill_tokens_evaluated_per_case", "{:.1f}"),
            ("prefill_ms_per_case", "{:.0f}"), ("prefill_ms_per_token", "{:.2f}"), ("decode_tokens_per_case", "{:.1f}"),
            ("decode_ms_per_case", "{:.0f}"), ("decode_ms_per_token", "{:.2f}"),
            ("grammar_full_vocab_passes_per_case", "{:.2f}"), ("spec_steps", "{:.0f}"),
            ("accepted_per_spec_step", "{:.2f}"), ("cases_per_min", "{:.2f}")]
    print(f"\nmodel {args.model}, {args.n} BFCL cases ({half} simple_python, {args.n - half} multiple), "
          f"blocks of {args.block}, concurrency 1, output {out}")
    print(f"{'':36s}{'off':>10s}{'on':>10s}")
    for key, fmt in rows:
        print(f"{key:36s}{fmt.format(stats['off'][key]):>10s}{fmt.format(stats['on'][key]):>10s}")
    print(f"verdicts differing off vs on: {verdicts} of {len(ids)}")
    print(f"parsed calls differing off vs on: {calls} of {len(ids)}")
    (out / "summary.json").write_text(json.dumps({"stats": stats, "verdicts_differ": verdicts,
                                                  "calls_differ": calls, "ids": ids}, indent=1), encoding="utf-8")
    print(f"cases/min off {stats['off']['cases_per_min']:.2f}, on {stats['on']['cases_per_min']:.2f}, "
          f"ratio {stats['on']['cases_per_min'] / stats['off']['cases_per_min']:.2f}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
