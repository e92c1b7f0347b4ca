#!/usr/bin/env python3
"""Is a reused prompt prefix bit-identical to a cold prefill?  (Why ``context.prefill_chunk`` exists.)

llama.cpp's CPU kernels are not batch invariant: the same prompt row is
rounded differently depending on how many rows the batch holds.  This script
shows it on the installed build and a bundled model, in two parts:

1. batch-size classes: a 320-token prompt is prefilled in one batch; then
   its last ``b`` tokens are re-evaluated as one batch of ``b`` (b = 1..16)
   after the rest stayed in the KV cache.  Printed: for each ``b`` the
   largest absolute difference of the last row's logits from the one-batch
   prefill (0.0 = bit-identical), with and without ``cpu.use_extra_bufts``.
2. the engine end to end: prompts sharing a long prefix and differing in a
   suffix of 1-9 tokens, called cold (empty cache) and warm (after another
   continuation of the prefix), with ``context.prefill_chunk`` 64 and 0;
   printed: how many warm calls gave other last-row logits than cold.

Usage:  .venv/bin/python benchmarks/prefix_exactness.py [--model <profile>, default profiles.DEFAULT_PROFILE]
"""
from __future__ import annotations

import argparse
import dataclasses
import sys
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "src"))

import llama_cpp  # noqa: E402

from slm_agent.agent.strategies import make_strategy  # noqa: E402
from slm_agent.agent.types import ToolSpec  # noqa: E402
from slm_agent.engines import ChatRequest  # noqa: E402
from slm_agent.engines.llama_cpp import LlamaCppEngine  # noqa: E402
from slm_agent.profiles import DEFAULT_PROFILE, load_profile  # noqa: E402

TOOL = ToolSpec(name="calculate_triangle_area", description="Area of a triangle from base and height.",
                parameters={"type": "object", "required": ["base", "height"],
                            "properties": {"base": {"type": "integer"}, "height": {"type": "integer"}}})
QUESTION = "Find the area of a triangle with a base of 10 units and height of 5 units."


def last_row(eng: LlamaCppEngine) -> np.ndarray:
    llm = eng.llama
    return np.ctypeslib.as_array(llama_cpp.llama_get_logits_ith(llm.ctx, -1), shape=(llm.n_vocab(),)).copy()


def batch_classes(profile, use_extra_bufts: bool) -> list[float]:
    eng = LlamaCppEngine(dataclasses.replace(profile, cpu=dataclasses.replace(profile.cpu,
                                                                             use_extra_bufts=use_extra_bufts)))
    try:
        llm = eng.llama
        text = (ROOT / "README.md").read_text(encoding="utf-8")[3000:9000]
        prompt = llm.tokenize(text.encode(), add_bos=True)[:320]
        llm.reset()
        llm.eval(prompt)
        ref = last_row(eng)
        out = []
        for b in range(1, 17):
            keep = len(prompt) - b
            llm._ctx.kv_cache_seq_rm(-1, keep, -1)
            llm.n_tokens = keep
            llm.eval(prompt[keep:])
            out.append(float(np.abs(last_row(eng) - ref).max()))
        return out
    finally:
        eng.close()


def warm_vs_cold(profile, chunk: int) -> tuple[int, int]:
    eng = LlamaCppEngine(dataclasses.replace(profile, context=dataclasses.replace(profile.context,
                                                                                 prefill_chunk=chunk)))
    try:
        base = make_strategy("direct", "json", "raw", None, 1, "shared_prefix").build_request(
            [{"role": "user", "content": QUESTION}], [TOOL]).prompt
        other = base + ' {"name": "final_answer", "arguments": {"text": "no"}}'

        def call(text: str) -> np.ndarray:
            list(eng.stream(ChatRequest(prompt=text, max_tokens=1, temperature=0.0)))
            return last_row(eng)

        differ = 0
        for n in range(1, 10):
            text = base + " {" + " x" * n
            eng.reset_cache()
            cold = call(text)
            call(other)
            differ += not np.array_equal(call(text), cold)
        return differ, 9
    finally:
        eng.close()


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--model", default=DEFAULT_PROFILE)
    args = ap.parse_args()
    try:
        profile = load_profile(args.model)
    except ValueError as exc:  # ProfileError: one message
        ap.error(str(exc).replace("\n", " "))
    print(f"model {args.model}; max |logit difference| of the last row, batch of b vs one 320-row batch")
    rows = {flag: batch_classes(profile, flag) for flag in (True, False)}
    print(f"{'b':>4s}{'repacked':>12s}{'plain':>12s}")
    for b in range(16):
        print(f"{b + 1:>4d}{rows[True][b]:>12.4g}{rows[False][b]:>12.4g}")
    for chunk in (profile.context.prefill_chunk or 64, 0):
        d, n = warm_vs_cold(profile, chunk)
        print(f"prefill_chunk {chunk:>3d}: warm call's last-row logits differ from cold in {d} of {n} prompts")
    return 0


if __name__ == "__main__":
    sys.exit(main())
