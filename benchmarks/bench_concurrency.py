#!/usr/bin/env python3
"""Cases per minute through ``slm-agent bench`` before and after the thread policy, and with
several cases in flight on one local model (issue 21; successor of bench_throughput.py,
which compares the issue-16 switches).

The same N BFCL cases (half ``simple_python``, half ``multiple``) run through the real
benchmark path (agent, benchmark node as separate processes over DDS) in these settings:

* ``before``: the profile with ``cpu.n_threads`` = ``cpu.n_threads_batch`` = every usable
  CPU (the default before the thread policy), concurrency 1;
* ``policy``: the profile as shipped (threads computed by engines/threads.py), concurrency 1;
* ``c2`` / ``c3`` / ``c4``: as shipped, ``--concurrency 2`` / ``3`` / ``4``: the agent runs that
  many cases at once on one llama.cpp context holding that many sequences, decoded together
  (``backend.llama_cpp.parallel: batched``, engines/llama_pool.py);
* ``x2`` / ``x4``: the same with ``parallel: contexts``: that many whole contexts over the
  mmapped weights (outputs as at concurrency 1);
* ``old``: the code of another checkout (``--old-src``, e.g. a ``git worktree`` of the commit
  before issue 21) with that checkout's profile of the model, concurrency 1: "today's" harness.

``--full`` keeps telemetry and the recorder on (what ``slm-agent bench`` runs by default);
without it they are off, which isolates the engine.

The cases run in blocks of ``--block``, the settings in a rotating order each block, each
block one ``slm-agent bench`` call resuming its setting's run directory, so all see the same
machine load.  Throughput is the cases of a block over its busy span (first case started to
last case finished, from results.jsonl; node start-up is left out, the grid pays it once per
cell).  Printed per setting: cases/min, mean case wall time, LLM time per case, llama.cpp's
prefill and decode rates, the threads it loaded with, passed cases; then how many verdicts,
raw outputs and parsed calls differ from the first setting (the reference); LAST the ratios
of every setting's cases/min to the reference's.

Keep other work off the cores while it measures.

Usage:  .venv/bin/python benchmarks/bench_concurrency.py [--n 40] [--block 20] [--model <profile>, default profiles.DEFAULT_PROFILE]
        [--settings before,policy,c2,x2] [--old-src DIR] [--full] [--out /tmp/bench_concurrency] [-- more slm-agent bench flags]
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
from slm_agent.engines.threads import usable_cpus  # noqa: E402
from slm_agent.profiles import DEFAULT_PROFILE, find_profile, load_profile  # noqa: E402

CATEGORIES = ("simple_python", "multiple")
#: setting -> (profile copy, concurrency)
SETTINGS = {"before": ("before", 1), "policy": ("shipped", 1), "c2": ("shipped", 2), "c3": ("shipped", 3),
            "c4": ("shipped", 4), "x2": ("contexts", 2), "x4": ("contexts", 4), "old": ("old", 1)}


def write_profiles(model: str, out: Path) -> dict[str, Path]:
    """``before`` (every CPU for decode and batch), ``shipped`` and ``contexts`` copies of ``model``'s profile."""
    src = find_profile(model)
    base = yaml.safe_load(src.read_text(encoding="utf-8"))
    chat = base.setdefault("chat", {})
    if chat.get("template_file"):  # relative to the profile file: make it absolute
        chat["template_file"] = str((src.parent / chat["template_file"]).resolve())
    model_spec = base.get("model") or {}
    if model_spec.get("path") and not Path(os.path.expandvars(os.path.expanduser(model_spec["path"]))).is_absolute():
        model_spec["path"] = str((src.parent / model_spec["path"]).resolve())
    paths = {}
    for name in ("before", "shipped", "contexts"):
        prof = json.loads(json.dumps(base))
        if name == "before":
            n = usable_cpus()
            prof.setdefault("cpu", {}).update(n_threads=n, n_threads_batch=n)
        if name == "contexts":
            prof.setdefault("backend", {}).setdefault("llama_cpp", {})["parallel"] = "contexts"
        prof["name"] = f"{base.get('name', model)}-{name}"
        path = out / "profiles" / f"{name}.yaml"
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(yaml.safe_dump(prof, sort_keys=False), encoding="utf-8")
        load_profile(str(path))  # fails here, not in the agent node, if the copy is invalid
        paths[name] = path
    return paths


def run_block(profile: Path, ids: list[str], concurrency: int, out_dir: Path, env: dict[str, str], log: Path,
              extra: list[str]) -> None:
    cmd = [sys.executable, "-m", "slm_agent.cli", "bench", "--model", str(profile),
           "--ids", ",".join(ids), "--output-dir", str(out_dir), "--allow-different-run", "--no-report", "--quiet",
           *extra]
    if concurrency > 1:
        cmd += ["--concurrency", str(concurrency)]
    with log.open("a", encoding="utf-8") as fh:
        proc = subprocess.run(cmd, env=env, stdout=fh, stderr=subprocess.STDOUT, check=False)
    if proc.returncode != 0:
        raise SystemExit(f"bench_concurrency: slm-agent bench failed (exit {proc.returncode}), see {log}")


def summary(recs: dict[str, dict[str, Any]], blocks: list[list[str]]) -> dict[str, float]:
    spans = []
    for block in blocks:
        rs = [recs[i] for i in block]
        spans.append(max(r["finished_at"] for r in rs) - min(r["started_at"] for r in rs))
    rs = [recs[i] for b in blocks for i in b]
    ms = [m for r in rs for m in r["metrics"]]
    c = [counters(m) for m in ms]

    def rate(tok: str, ms_key: str) -> float:
        xs = [x[tok] / x[ms_key] * 1e3 for x in c if x.get(ms_key)]
        return statistics.median(xs) if xs else float("nan")

    return {
        "cases": len(rs),
        "passed": sum(1 for r in rs if r["passed"]),
        "case_wall_s_mean": statistics.mean(r["wall_time_s"] for r in rs),
        "llm_s_per_case": statistics.mean(sum(m["total_ms"] for m in r["metrics"]) / 1e3 for r in rs),
        "llama_prefill_tok_s": rate("llama_prompt_eval_tokens", "llama_prompt_eval_ms"),
        "llama_decode_tok_s": rate("llama_eval_tokens", "llama_eval_ms"),
        "threads_decode": statistics.median([x.get("llama_threads", float("nan")) for x in c]),
        "threads_batch": statistics.median([x.get("llama_threads_batch", float("nan")) for x in c]),
        "busy_s": sum(spans),
        "cases_per_min": 60.0 * len(rs) / sum(spans),
    }


def main() -> int:
    argv = sys.argv[1:]
    extra = argv[argv.index("--") + 1:] if "--" in argv else []
    argv = argv[:argv.index("--")] if "--" in argv else argv
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--n", type=int, default=40, help="cases, half per category (>= 2)")
    ap.add_argument("--block", type=int, default=20, help="cases per slm-agent bench call")
    ap.add_argument("--model", default=DEFAULT_PROFILE)
    ap.add_argument("--settings", default="before,policy,c2,c4",
                    help=f"comma-separated, from {', '.join(SETTINGS)}; the first is the reference")
    ap.add_argument("--out", default="/tmp/bench_concurrency", help="output directory (must not exist)")
    ap.add_argument("--old-src", default="", help="source tree (its src/) run by the 'old' setting")
    ap.add_argument("--full", action="store_true", help="telemetry and recorder on, as slm-agent bench runs")
    args = ap.parse_args(argv)
    settings = [s for s in args.settings.split(",") if s]
    bad = [s for s in settings if s not in SETTINGS]
    if bad or len(settings) < 2:
        ap.error(f"--settings: unknown {bad}" if bad else "--settings: at least two (the first is the reference)")
    if args.n < 2 or args.block < 1:
        ap.error("--n must be >= 2 and --block >= 1")
    if ("old" in settings) != bool(args.old_src):
        ap.error("the 'old' setting and --old-src go together")
    if args.old_src and not (Path(args.old_src) / "src" / "slm_agent").is_dir():
        ap.error(f"--old-src {args.old_src}: no src/slm_agent there")
    if not args.full:
        extra = ["--no-record", "--no-telemetry", *extra]
    out = Path(args.out)
    if out.exists():
        ap.error(f"{out} exists; give a fresh --out")
    out.mkdir(parents=True)
    suite = get_suite("bfcl")
    half = args.n // 2
    per_cat = [[s.case_id for s in suite.select([cat], [], k)] for cat, k in zip(CATEGORIES, (half, args.n - half))]
    ids = [i for pair in zip(*per_cat) for i in pair] + per_cat[1][len(per_cat[0]):]  # both categories in every block
    profiles = write_profiles(args.model, out)
    if args.old_src:
        profiles["old"] = Path(args.old_src) / "config" / "models" / find_profile(args.model).name
    env = dict(os.environ, ROS_DOMAIN_ID=str(random.randint(150, 230)), ROS_AUTOMATIC_DISCOVERY_RANGE="LOCALHOST",
               PYTHONUNBUFFERED="1")
    blocks = [ids[i:i + args.block] for i in range(0, len(ids), args.block)]
    for b, block in enumerate(blocks):
        order = settings[b % len(settings):] + settings[:b % len(settings)]
        for name in order:
            t0 = time.monotonic()
            profile, concurrency = SETTINGS[name]
            run_env = dict(env, PYTHONPATH=str(Path(args.old_src).resolve() / "src")) if name == "old" else env
            run_block(profiles[profile], block, concurrency, out / name, run_env, out / f"{name}.log", extra)
            print(f"block {b + 1}/{len(blocks)} {name}: {len(block)} cases in {time.monotonic() - t0:.1f} s "
                  "(with node start-up)", flush=True)
    recs = {name: records(out / name) for name in settings}
    stats = {name: summary(recs[name], blocks) for name in settings}
    rows = [("cases", "{:.0f}"), ("passed", "{:.0f}"), ("threads_decode", "{:.0f}"), ("threads_batch", "{:.0f}"),
            ("case_wall_s_mean", "{:.2f}"), ("llm_s_per_case", "{:.2f}"), ("llama_prefill_tok_s", "{:.0f}"),
            ("llama_decode_tok_s", "{:.1f}"), ("busy_s", "{:.1f}"), ("cases_per_min", "{:.2f}")]
    print(f"\nmodel {args.model}, {args.n} BFCL cases ({half} simple_python, {args.n - half} multiple), blocks of "
          f"{args.block}, {usable_cpus()} usable CPUs, output {out}")
    print(f"{'':24s}" + "".join(f"{n:>10s}" for n in settings))
    for key, fmt in rows:
        print(f"{key:24s}" + "".join(f"{fmt.format(stats[n][key]):>10s}" for n in settings))
    first = settings[0]
    ref = recs[first]
    diffs = {}
    for name in settings[1:]:
        diffs[name] = {
            "verdicts": sum(1 for i in ids if recs[name][i]["passed"] != ref[i]["passed"]),
            "raw_outputs": sum(1 for i in ids if recs[name][i]["raw_output"] != ref[i]["raw_output"]),
            "parsed_calls": sum(1 for i in ids if parsed_calls(recs[name][i]) != parsed_calls(ref[i])),
        }
        d = diffs[name]
        print(f"{name} vs {first}: verdicts differ {d['verdicts']}, raw outputs {d['raw_outputs']}, "
              f"parsed calls {d['parsed_calls']} of {len(ids)}")
    (out / "summary.json").write_text(json.dumps({"stats": stats, "differences": diffs, "ids": ids,
                                                  "reference": first, "full": args.full}, indent=1),
                                      encoding="utf-8")
    base = stats[first]["cases_per_min"]
    print(f"cases/min vs {first}: " + ", ".join(f"{n} {stats[n]['cases_per_min'] / base:.2f}" for n in settings[1:]))
    return 0


if __name__ == "__main__":
    sys.exit(main())
