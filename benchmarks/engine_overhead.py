#!/usr/bin/env python3
"""How much does the engine interface cost, and what does prefix reuse buy?

Runs the bundled default model (Gemma 3 270M Q4_K_M, llama.cpp, CPU) and
prints, in one run:

1. decode tok/s and TTFT of the *same* ``llama_cpp.Llama`` instance driven
   (a) raw through ``Llama.generate`` -- the token loop our engine sits on,
   (b) raw through ``Llama.create_completion(stream=True)`` -- the usual
       high-level streaming call, for reference, and
   (c) through ``LlamaCppEngine.stream`` -- ours, with metrics, stop
       handling and llama.cpp perf counters.
   Runs are interleaved in rotating order (a, b, c / b, c, a / ...) so drift
   and other tenants of this 2-core machine hit every variant alike; every
   run starts from an empty KV cache so TTFT is a full prefill.  Goals: ours
   >= 97 % of raw decode rate, TTFT within 3 %.
2. cold vs warm TTFT through the engine on a >= 1,000-token chat prompt
   (system + tool specs) where only the user turn changes: the warm call
   reuses the cached prefix.  Goal: warm <= 15 % of cold.  It also checks
   that a warm call produces the same greedy text as a cold one.

This machine is shared: other tenants' processes come and go on the same
cores and can halve a run's speed.  Every run therefore also measures the
CPU time used by *other* processes during it (``/proc/stat`` busy time minus
our own ``/proc/self/stat`` time); a round in which any run saw more than
``--max-foreign`` of a core's worth of foreign CPU is discarded and re-run
(up to a bound), and the ratios are medians of per-round *paired* ratios
(ours vs raw measured seconds apart).  Usage:
    PYTHONPATH=src .venv/bin/python benchmarks/engine_overhead.py [--rounds N]
"""
from __future__ import annotations

import argparse
import cProfile
import os
import pstats
import statistics
import sys
import time
from pathlib import Path
from typing import Any, Callable

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "src"))

import llama_cpp  # noqa: E402

from slm_agent.engines import ChatRequest  # noqa: E402
from slm_agent.engines.llama_cpp import LlamaCppEngine  # noqa: E402
from slm_agent.profiles import DEFAULT_PROFILE, load_profile  # noqa: E402

DECODE_PROMPT = (
    "The following is a detailed field report written by the maintenance crew of a "
    "warehouse robot fleet. It describes, in chronological order, every task the robots "
    "performed during the night shift, the problems the crew ran into, how each problem "
    "was diagnosed, and which spare parts were replaced. The report is written in plain "
    "language so that the day shift can continue the work without asking questions. "
    "It starts with the arrival of the first truck at the loading dock and ends with the "
    "last battery swap before sunrise. Night shift report, robot fleet B.\n\n"
    "At 22:00 the first truck arrived at the loading dock and"
)
SAMPLING = dict(top_k=40, top_p=1.0, min_p=0.0, temp=0.0, repeat_penalty=1.0)


class ForeignCpu:
    """CPU time other processes used between start() and stop(), as a
    fraction of the wall time of the available cores."""

    def __init__(self) -> None:
        self.ncpu = len(os.sched_getaffinity(0))
        self.hz = os.sysconf("SC_CLK_TCK")

    @staticmethod
    def _busy() -> int:
        with open("/proc/stat", encoding="ascii") as fh:
            vals = [int(v) for v in fh.readline().split()[1:9]]
        return sum(vals) - vals[3] - vals[4]  # minus idle and iowait

    @staticmethod
    def _self() -> int:
        with open("/proc/self/stat", encoding="ascii") as fh:
            rest = fh.read().rsplit(")", 1)[1].split()
        return int(rest[11]) + int(rest[12])  # utime + stime

    def start(self) -> None:
        self._t, self._b, self._s = time.perf_counter(), self._busy(), self._self()

    def stop(self) -> float:
        wall = time.perf_counter() - self._t
        foreign = (self._busy() - self._b) - (self._self() - self._s)
        return max(foreign, 0) / self.hz / (wall * self.ncpu) if wall > 0 else 0.0


SYSTEM = "You control a mobile manipulator robot. Answer with exactly one tool call."
QUESTIONS = [
    "Move to the kitchen.", "Grasp the red cup.", "Dock at the charger.", "Look at the door.",
    "Scan the area near the shelf.", "Report your status.", "Rotate ninety degrees.",
    "Release the box.", "Take a photo of the table.", "Navigate to the lab.",
]


def tool_specs(n: int = 7) -> list[dict[str, Any]]:
    verbs = ["move_to", "rotate", "grasp", "release", "look_at", "navigate_to", "scan_area",
             "report_status", "set_speed", "dock"]
    out = []
    for v in verbs[:n]:
        words = v.replace("_", " ")
        out.append({"type": "function", "function": {
            "name": v,
            "description": (f"Ask the robot to {words}. Use this when the operator requests to {words}; "
                            "the call returns a status string and may take several seconds to complete "
                            "on the real hardware."),
            "parameters": {"type": "object", "properties": {
                "target": {"type": "string", "description": "Name of the target object, place or person for this action."},
                "speed": {"type": "number", "description": "Speed in meters per second, between 0.1 and 1.5."},
                "timeout_s": {"type": "integer", "description": "Give up after this many seconds."},
            }, "required": ["target"]},
        }})
    return out


# --------------------------------------------------------------- variants


def run_raw_generate(llm: llama_cpp.Llama, prompt: str, n: int) -> tuple[float, float, int]:
    """(ttft_s, decode tok/s, tokens) with the bare Llama.generate loop."""
    llm.reset()
    eog = llama_cpp.llama_vocab_is_eog
    vocab = llm._model.vocab
    t0 = time.perf_counter()
    tokens = llm.tokenize(prompt.encode("utf-8"), add_bos=True, special=True)
    count, first = 0, 0.0
    gen = llm.generate(tokens, **SAMPLING)
    for tok in gen:
        count += 1
        if count == 1:
            first = time.perf_counter()
        llm.detokenize([tok])  # a consumer needs text; same work as ours
        if eog(vocab, tok) or count >= n:
            break
    gen.close()
    end = time.perf_counter()
    return first - t0, (count - 1) / (end - first), count


def run_raw_completion(llm: llama_cpp.Llama, prompt: str, n: int) -> tuple[float, float, int]:
    """create_completion(stream=True); tokens from llama.cpp's eval counter
    because a chunk is not always one token."""
    llm.reset()
    llama_cpp.llama_perf_context_reset(llm.ctx)
    t0 = time.perf_counter()
    first = 0.0
    chunks = 0
    for _ in llm.create_completion(prompt, max_tokens=n, stream=True, temperature=0.0, top_p=1.0,
                                   top_k=40, min_p=0.0, repeat_penalty=1.0, seed=0):
        chunks += 1
        if chunks == 1:
            first = time.perf_counter()
    end = time.perf_counter()
    perf = llama_cpp.llama_perf_context(llm.ctx)
    count = (int(perf.n_eval) if perf.t_eval_ms > 0 else 0) + 1
    return first - t0, (count - 1) / (end - first), count


def run_engine(engine: LlamaCppEngine, prompt: str, n: int) -> tuple[float, float, int]:
    engine.reset_cache()
    m = None
    for chunk in engine.stream(ChatRequest(prompt=prompt, max_tokens=n, temperature=0.0, top_p=1.0, top_k=40)):
        if chunk.metrics is not None:
            m = chunk.metrics
    assert m is not None
    return m.ttft_s, m.decode_tokens_per_s, m.decode_tokens


def fmt_row(name: str, ttfts: list[float], rates: list[float], toks: list[int]) -> str:
    return (f"  {name:<34} TTFT median {statistics.median(ttfts) * 1e3:8.1f} ms "
            f"[{min(ttfts) * 1e3:7.1f}-{max(ttfts) * 1e3:7.1f}]   decode median {statistics.median(rates):6.2f} tok/s "
            f"[{min(rates):6.2f}-{max(rates):6.2f}]   tokens {statistics.median(toks):.0f}")


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--rounds", type=int, default=7, help="interleaved rounds for part 1")
    ap.add_argument("--tokens", type=int, default=64, help="tokens generated per run in part 1")
    ap.add_argument("--reuse-rounds", type=int, default=5, help="cold/warm pairs for part 2")
    ap.add_argument("--budget-s", type=float, default=300.0,
                    help="stop re-running disturbed rounds after this long (part 2 gets half)")
    ap.add_argument("--max-foreign", type=float, default=0.05,
                    help="discard a round if other processes used more than this fraction of the CPUs")
    args = ap.parse_args()

    profile = load_profile(DEFAULT_PROFILE)
    t = time.perf_counter()
    engine = LlamaCppEngine(profile)
    llm = engine.llama
    print(f"model      {profile.model_path}")
    print(f"llama-cpp-python {llama_cpp.__version__}, n_ctx {profile.context.n_ctx}, "
          f"n_threads {llm.n_threads}, loaded in {time.perf_counter() - t:.2f} s")
    n_prompt = len(llm.tokenize(DECODE_PROMPT.encode(), add_bos=True, special=True))
    print(f"\n[1] raw llama_cpp.Llama vs engine: {n_prompt}-token prompt, {args.tokens} tokens, greedy, "
          f"cold KV each run, {args.rounds} interleaved rounds (+1 warm-up)")

    variants: dict[str, Callable[[], tuple[float, float, int]]] = {
        "raw Llama.generate": lambda: run_raw_generate(llm, DECODE_PROMPT, args.tokens),
        "raw create_completion(stream=True)": lambda: run_raw_completion(llm, DECODE_PROMPT, args.tokens),
        "ours LlamaCppEngine.stream": lambda: run_engine(engine, DECODE_PROMPT, args.tokens),
    }
    names = list(variants)
    for name in names:  # warm-up: page cache, thread pools, graph allocation
        variants[name]()
    cpu = ForeignCpu()
    rounds: list[tuple[float, dict[str, tuple[float, float, int]]]] = []
    attempts = 0
    deadline = time.monotonic() + args.budget_s
    while (sum(f <= args.max_foreign for f, _ in rounds) < args.rounds and attempts < args.rounds * 3
           and (attempts < args.rounds or time.monotonic() < deadline)):
        order = names[attempts % len(names):] + names[:attempts % len(names)]
        attempts += 1
        round_res: dict[str, tuple[float, float, int]] = {}
        foreign = 0.0
        for name in order:
            cpu.start()
            round_res[name] = variants[name]()
            foreign = max(foreign, cpu.stop())
        rounds.append((foreign, round_res))
    clean = [r for f, r in rounds if f <= args.max_foreign]
    print(f"  rounds run {len(rounds)}, undisturbed {len(clean)} (others used <= {args.max_foreign:.0%} of the CPUs)")
    if len(clean) < 3:
        print("  WARNING: machine too busy for undisturbed rounds; using ALL rounds, numbers are noisy")
        clean = [r for _, r in rounds]
    res: dict[str, dict[str, list[Any]]] = {n: {"ttft": [], "rate": [], "tok": []} for n in names}
    for round_res in clean:
        for name, (ttft, rate, tok) in round_res.items():
            res[name]["ttft"].append(ttft)
            res[name]["rate"].append(rate)
            res[name]["tok"].append(tok)
    for name in names:
        print(fmt_row(name, res[name]["ttft"], res[name]["rate"], res[name]["tok"]))

    # ---- part 2: prefix reuse
    sysmsg = {"role": "system", "content": SYSTEM}

    def req(q: str, n: int = 1) -> ChatRequest:
        return ChatRequest(messages=[sysmsg, {"role": "user", "content": q}], tools=tool_specs(), max_tokens=n)

    long_tokens, _ = engine.tokenize_request(req(QUESTIONS[0]))
    print(f"\n[2] prefix reuse through the engine: {len(long_tokens)}-token chat prompt "
          f"(system + {len(tool_specs())} tool specs), only the user turn changes; {args.reuse_rounds} cold/warm pairs")
    pairs: list[tuple[float, Any, Any]] = []
    attempts = 0
    deadline = time.monotonic() + args.budget_s / 2
    while (sum(f <= args.max_foreign for f, _, _ in pairs) < args.reuse_rounds and attempts < args.reuse_rounds * 3
           and (attempts < args.reuse_rounds or time.monotonic() < deadline)):
        i = attempts
        attempts += 1
        engine.reset_cache()
        cpu.start()
        mc = engine.complete(req(QUESTIONS[(2 * i) % len(QUESTIONS)])).metrics
        mw = engine.complete(req(QUESTIONS[(2 * i + 1) % len(QUESTIONS)])).metrics
        pairs.append((cpu.stop(), mc, mw))
        assert mc.cached_prompt_tokens == 0, "cold call after reset_cache() reused a prefix"
    good = [(mc, mw) for f, mc, mw in pairs if f <= args.max_foreign]
    print(f"  pairs run {len(pairs)}, undisturbed {len(good)}")
    if len(good) < 2:
        print("  WARNING: machine too busy; using ALL pairs, numbers are noisy")
        good = [(mc, mw) for _, mc, mw in pairs]
    cold = [mc.ttft_s for mc, _ in good]
    warm = [mw.ttft_s for _, mw in good]
    cached = [mw.cached_prompt_tokens for _, mw in good]
    prompt_len = [mw.prompt_tokens for _, mw in good]
    print(f"  cold TTFT median {statistics.median(cold) * 1e3:8.1f} ms [{min(cold) * 1e3:.1f}-{max(cold) * 1e3:.1f}]")
    print(f"  warm TTFT median {statistics.median(warm) * 1e3:8.1f} ms [{min(warm) * 1e3:.1f}-{max(warm) * 1e3:.1f}]"
          f"   cached_prompt_tokens {min(cached)}-{max(cached)} of {min(prompt_len)}-{max(prompt_len)}")
    # correctness: a reused prefix must not change what greedy decoding produces
    q = QUESTIONS[3]
    engine.reset_cache()
    engine.complete(req(QUESTIONS[2], 1))
    warm_out = engine.complete(req(q, 24))
    engine.reset_cache()
    cold_out = engine.complete(req(q, 24))
    same = warm_out.text == cold_out.text
    print(f"  greedy 24-token output warm == cold: {same} "
          f"(warm reused {warm_out.metrics.cached_prompt_tokens} tokens)")

    # ---- engine-side Python cost per token, independent of machine noise
    req1 = ChatRequest(prompt=DECODE_PROMPT, max_tokens=args.tokens, temperature=0.0, top_p=1.0, top_k=40)
    engine.reset_cache()
    prof = cProfile.Profile()
    prof.enable()
    out = engine.complete(req1)
    prof.disable()
    stats = pstats.Stats(prof).stats  # type: ignore[attr-defined]
    gen_s = sum(v[3] for k, v in stats.items() if k[2] == "generate" and k[0].endswith("llama_cpp/llama.py"))
    total_s = sum(v[3] for k, v in stats.items() if k[2] == "complete" and k[0].endswith("engines/base.py"))
    per_tok_us = (total_s - gen_s) / out.metrics.decode_tokens * 1e6
    step_us = 1e6 / statistics.median(res[names[0]]["rate"])
    print(f"\n[3] profiled engine-side Python time outside Llama.generate: {per_tok_us:.0f} us/token "
          f"(upper bound, profiler overhead included) = {per_tok_us / step_us:.2%} of a {step_us / 1e3:.1f} ms decode step")

    # ---- ratios last
    raw, cc, ours = (res[n] for n in names)

    def paired(a: list[float], b: list[float]) -> float:
        return statistics.median(x / y for x, y in zip(a, b))

    dec_ratio = paired(ours["rate"], raw["rate"])
    ttft_ratio = paired(ours["ttft"], raw["ttft"])
    dec_ratio_cc = paired(ours["rate"], cc["rate"])
    ttft_ratio_cc = paired(ours["ttft"], cc["ttft"])
    dec_best = max(ours["rate"]) / max(raw["rate"])
    ttft_best = min(ours["ttft"]) / min(raw["ttft"])
    warm_ratio = statistics.median(warm) / statistics.median(cold)
    ok = lambda b: "PASS" if b else "MISS"  # noqa: E731
    print("\nratios (median of per-round paired ratios; best-vs-best in brackets)")
    print(f"  decode ours/raw generate           {dec_ratio:6.3f} [{dec_best:5.3f}]   goal >= 0.97   {ok(dec_ratio >= 0.97)}")
    print(f"  TTFT   ours/raw generate           {ttft_ratio:6.3f} [{ttft_best:5.3f}]   goal <= 1.03   {ok(ttft_ratio <= 1.03)}")
    print(f"  decode ours/raw create_completion  {dec_ratio_cc:6.3f}           (reference)")
    print(f"  TTFT   ours/raw create_completion  {ttft_ratio_cc:6.3f}           (reference)")
    print(f"  TTFT   warm/cold (prefix reuse)    {warm_ratio:6.3f}           goal <= 0.15   {ok(warm_ratio <= 0.15)}")
    engine.close()
    return 0


if __name__ == "__main__":
    sys.exit(main())
