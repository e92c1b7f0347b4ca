"""MoE expert offload / --override-tensor for llama.cpp profiles.

llama-cpp-python does not expose ``tensor_buft_overrides``; the engine sets
it for the model load.  On this CPU-only build the only buffer type is CPU,
so the test proves the override array is accepted by llama.cpp and a model
still loads and generates, and that a buffer type the build lacks (CUDA0 on
a CPU machine) is a clear EngineError rather than a crash.
"""
from __future__ import annotations

import dataclasses
import re

import pytest

from slm_agent.engines import ChatRequest, EngineError
from slm_agent.engines.llama_cpp import LlamaCppEngine, moe_override_patterns
from slm_agent.profiles import load_profile

# isolated: llama.cpp runs in-process; a native crash must fail one test, not the run
pytestmark = [pytest.mark.timeout(300), pytest.mark.isolated]


def _with_gpu(**gpu: object):  # type: ignore[no-untyped-def]
    p = load_profile("gemma3-270m-q4km")
    return dataclasses.replace(p, gpu=dataclasses.replace(p.gpu, **gpu))


def test_moe_patterns_match_expert_tensors_only() -> None:
    pats = [re.compile(p) for p, buft in moe_override_patterns(2, False)]
    assert all(buft == "CPU" for _, buft in moe_override_patterns(2, False))
    assert any(p.search("blk.1.ffn_up_exps.weight") for p in pats)
    assert not any(p.search("blk.12.ffn_up_exps.weight") for p in pats)  # layer 12, not 1
    assert not any(p.search("blk.1.ffn_up.weight") for p in pats)  # dense FFN stays
    (all_pat, _), = moe_override_patterns(0, True)
    assert re.search(all_pat, "blk.30.ffn_gate_exps.weight")
    assert not re.search(all_pat, "blk.30.attn_q.weight")


def test_override_tensor_loads_and_generates() -> None:
    eng = LlamaCppEngine(_with_gpu(override_tensor=[r"token_embd\.weight=CPU"], cpu_moe=True))
    try:
        out = eng.complete(ChatRequest(prompt="Hello", max_tokens=3))
        assert out.metrics.decode_tokens >= 1
    finally:
        eng.close()


def test_unavailable_buffer_type_is_an_engine_error() -> None:
    with pytest.raises(EngineError, match=r"buffer type 'CUDA0' is not available.*available: .*CPU"):
        LlamaCppEngine(_with_gpu(override_tensor=[r"blk\.0\..*=CUDA0"]))
