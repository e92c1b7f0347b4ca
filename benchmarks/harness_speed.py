#!/usr/bin/env python3
"""How fast the model runs inside ``slm-agent bench`` compared with alone (issue 21).

1. Runs ``--n`` BFCL cases (``--category``, default simple_python) through the
   real harness -- ``slm-agent bench``: agent node, benchmark node, telemetry
   and recorder as separate processes talking over DDS -- and reads every
   LLM call's metrics from its ``results.jsonl``.
2. Rebuilds exactly the requests that run sent (the same strategy,
   serialization, chat format, constraint and profile: the agent's own
   ``make_strategy`` / ``build_request`` on the same cases; the replay checks
   that every prompt has the token count the run recorded) and streams them
   through the same engine class alone in this one process, in ``--rounds``
   rounds of all cases (so a round sees the prefix cache as the run did).
3. Prints prefill and decode rates, by llama.cpp's own counters
   (``llama_perf_context``: tokens / ms of prompt eval and eval) and by ours
   (``prefill_tokens_per_s``: evaluated prompt tokens / TTFT;
   ``decode_tokens_per_s``), medians over calls, in both settings and their
   ratios, the last line ``in-harness/alone prefill <r1> decode <r2>``.
   Before that, the CPU seconds each process of the harness run used (agent,
   benchmark node, telemetry, recorder, the CLI; sampled with psutil every
   0.25 s): where the cores went besides the model.

Keep other work off the cores while it measures: it compares two settings on
one machine, minutes apart.

Usage: .venv/bin/python benchmarks/harness_speed.py [--model <profile>, default profiles.DEFAULT_PROFILE] [--n 8] [--rounds 3]
       [--out /tmp/harness_speed] [-- more slm-agent bench flags]
"""
from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "src"))
sys.path.insert(0, str(Path(__file__).resolve().parent))

from bench_records import counters  # noqa: E402


def rates(metrics: list[dict[str, Any]]) -> dict[str, float]:
    """Median rates over calls: llama.cpp's counters and ours."""
    def med(xs: list[float]) -> float:
        xs = [x for x in xs if x == x and x > 0]
        return statistics.median(xs) if xs else float("nan")

    c = [counters(m) for m in metrics]
    return {
        "llama prefill tok/s": med([x["llama_prompt_eval_tokens"] / x["llama_prompt_eval_ms"] * 1e3
                                    for x in c if x.get("llama_prompt_eval_ms")]),
        "llama decode tok/s": med([x["llama_eval_tokens"] / x["llama_eval_ms"] * 1e3
                                   for x in c if x.get("llama_eval_ms")]),
        "our prefill tok/s": med([m["prefill_tokens_per_s"] for m in metrics if m.get("prefill_tokens_per_s")]),
        "our decode tok/s": med([m["decode_tokens_per_s"] for m in metrics if m.get("decode_tokens_per_s")]),
    }


def watch_cpu(proc: "subprocess.Popen[bytes]", every_s: float = 0.25) -> dict[str, float]:
    """User+system CPU seconds of ``proc`` and each descendant (last value seen before it
    exited), summed per program: which node takes the cores while the model runs."""
    import psutil

    last: dict[int, tuple[str, float]] = {}
    root = psutil.Process(proc.pid)
    while proc.poll() is None:
        try:
            procs = [root, *root.children(recursive=True)]
        except psutil.Error:
            procs = []
        for p in procs:
            try:
                t = p.cpu_times()
                last[p.pid] = (last[p.pid][0] if p.pid in last else _label(p.cmdline()), t.user + t.system)
            except psutil.Error:
                continue
        time.sleep(every_s)
    out: dict[str, float] = {}
    for name, secs in last.values():
        out[name] = out.get(name, 0.0) + secs
    return out


def _label(cmdline: list[str]) -> str:
    """``slm_agent.nodes.agent_node`` -> ``agent_node``; else the program's name."""
    for i, arg in enumerate(cmdline):
        if arg == "-m" and i + 1 < len(cmdline):
            return cmdline[i + 1].rsplit(".", 1)[-1]
    return Path(cmdline[1] if len(cmdline) > 1 and cmdline[0].endswith("python") else (cmdline or ["?"])[0]).name


def run_harness(args: argparse.Namespace, out: Path, extra: list[str]) -> list[dict[str, Any]]:
    cmd = [str(Path(sys.executable).with_name("slm-agent")), "bench", "--model", args.model,
           "--categories", args.category, "--limit", str(args.n), "--output-dir", str(out / "run"),
           "--no-report", "--quiet", *extra]  # telemetry and recorder on: the harness as a run has it
    env = dict(os.environ, ROS_AUTOMATIC_DISCOVERY_RANGE="LOCALHOST")
    t0 = time.monotonic()
    with (out / "bench.log").open("w", encoding="utf-8") as log:
        proc = subprocess.Popen(cmd, env=env, stdout=log, stderr=subprocess.STDOUT)
        cpu = watch_cpu(proc)
        rc = proc.wait()
    wall = time.monotonic() - t0
    print(f"CPU time per process of the harness run ({wall:.0f} s wall, {os.cpu_count()} CPUs):")
    for name, secs in sorted(cpu.items(), key=lambda kv: -kv[1]):
        print(f"  {name:28s} {secs:7.1f} s  {100 * secs / wall:5.1f} % of one CPU")
    if rc != 0:
        raise SystemExit(f"harness_speed: slm-agent bench exited {rc}; see {out / 'bench.log'}")
    with (out / "run" / "results.jsonl").open(encoding="utf-8") as fh:
        return [json.loads(line) for line in fh if line.strip()]


def replay(args: argparse.Namespace, recs: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """The run's first-step requests streamed through the same engine alone, in rounds."""
    from slm_agent.agent.goal_options import GoalOptions, resolve_goal_options
    from slm_agent.agent.strategies import make_strategy, resolve_chat_format
    from slm_agent.bench.bfcl.loader import load_scenario, tools_for
    from slm_agent.agent.types import ToolSpec
    from slm_agent.engines import create_engine
    from slm_agent.profiles import load_profile

    profile = load_profile(args.model)
    engine = create_engine(profile)
    requests = []
    for r in recs:
        sc = load_scenario(r["case_id"])
        specs = [ToolSpec(name=t["name"], description=t.get("description", ""), parameters=t["parameters"])
                 for t in tools_for(sc, 0).tools]
        opts = resolve_goal_options(GoalOptions(r["strategy"], r["serialization"],
                                                resolve_chat_format("", profile), bool(r["constrained"])),
                                    profile, chat_format=r.get("chat_format", ""))
        strat = make_strategy(opts.strategy, opts.serialization, opts.chat_format, None,
                              profile.sampling.max_tokens, profile.chat.prompt_layout, profile.chat.native_calls)
        req = strat.build_request([{"role": m["role"], "content": m["content"]} for m in sc.turns[0]], specs,
                                  constrained=opts.constrained)
        want = r["metrics"][0]["prompt_tokens"]
        got = len(engine.tokenize_request(req)[0])
        if got != want:
            raise SystemExit(f"harness_speed: {r['case_id']}: replayed prompt has {got} tokens, the run's had "
                             f"{want}: not the same request")
        requests.append(req)
    metrics = []
    try:
        for _ in range(args.rounds):
            for req in requests:
                for chunk in engine.stream(req):
                    if chunk.metrics is not None:
                        m = chunk.metrics
                        c = m.engine_counters
                        metrics.append({
                            "prefill_tokens_per_s": m.prefill_tokens_per_s,
                            "decode_tokens_per_s": m.decode_tokens_per_s,
                            "engine_counter_names": list(c), "engine_counter_values": list(c.values()),
                        })
    finally:
        engine.close()
    return metrics


def main() -> int:
    argv = sys.argv[1:]
    extra = argv[argv.index("--") + 1:] if "--" in argv else []
    argv = argv[: argv.index("--")] if "--" in argv else argv
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    from slm_agent.profiles import DEFAULT_PROFILE

    ap.add_argument("--model", default=DEFAULT_PROFILE)
    ap.add_argument("--category", default="simple_python")
    ap.add_argument("--n", type=int, default=8)
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--out", default="/tmp/harness_speed")
    args = ap.parse_args(argv)
    if args.n < 1 or args.rounds < 1:
        ap.error("--n and --rounds must be >= 1")
    out = Path(args.out)
    if out.exists() and any(out.iterdir()):
        ap.error(f"--out {out} is not empty; give a fresh directory")
    out.mkdir(parents=True, exist_ok=True)
    t0 = time.monotonic()
    recs = run_harness(args, out, extra)
    harness_metrics = [m for r in recs for m in r["metrics"]]
    alone_metrics = replay(args, recs)
    h, a = rates(harness_metrics), rates(alone_metrics)
    print(f"model {args.model}, {len(recs)} cases of {args.category}, {len(harness_metrics)} calls in the harness, "
          f"{len(alone_metrics)} alone ({args.rounds} rounds); {time.monotonic() - t0:.0f} s")
    print(f"{'':22s} {'in harness':>11s} {'alone':>9s} {'ratio':>7s}")
    for k in h:
        print(f"{k:22s} {h[k]:11.1f} {a[k]:9.1f} {h[k] / a[k]:7.2f}")
    print(f"in-harness/alone prefill {h['llama prefill tok/s'] / a['llama prefill tok/s']:.2f} "
          f"decode {h['llama decode tok/s'] / a['llama decode tok/s']:.2f}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
