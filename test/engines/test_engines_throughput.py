"""Throughput switches of the llama.cpp engine and the prompt layout (issue 16).

Each optimisation must leave greedy output unchanged, so every test compares
the optimised path's tokens with the plain path's on a real bundled model
(prompts are the agent's real BFCL-style prompts).

* Prefix reuse: llama.cpp's CPU kernels can round a prompt row differently
  in a small batch (some sizes under 8 rows) than in a large one, so the
  engine prefills in chunks at multiples of ``context.prefill_chunk`` and
  reuses only whole chunks; the test checks warm == cold logits to the last
  bit on the default Gemma 3 profile as shipped (repacked weights on), for
  suffixes of 1-9 tokens -- the lengths where an unaligned reuse gives other
  logits (2-4 of 9 prompts here with ``prefill_chunk: 0``,
  benchmarks/prefix_exactness.py).
* Top-k grammar check and prompt lookup: SmolLM2 (the smaller model),
  loaded with ``cpu.use_extra_bufts: false`` as in earlier measurements.
  Prompt lookup's verification batch is not guaranteed to round like the
  one-row decode step (see the engine's module doc); the test pins that it
  gives the plain tokens on these prompts.
"""
from __future__ import annotations

import dataclasses
from typing import Any, Iterator

import numpy as np
import pytest

from slm_agent.agent.strategies import PROMPT_LAYOUTS, get_strategy, make_strategy
from slm_agent.agent.types import ToolSpec
from slm_agent.engines import ChatRequest, create_engine
from slm_agent.engines.base import CallMetrics
from slm_agent.engines.llama_cpp import LlamaCppEngine, prompt_lookup
from slm_agent.profiles import load_profile

PROFILE = "smollm2-135m-q4_1"
DEFAULT_PROFILE = "gemma3-270m-q4km"
# isolated: llama.cpp runs in-process; a native crash must fail one test, not the run
pytestmark = [pytest.mark.timeout(300), pytest.mark.isolated]


def _tool(name: str, desc: str, **params: str) -> ToolSpec:
    return ToolSpec(name=name, description=desc, parameters={
        "type": "object",
        "properties": {k: {"type": t, "description": f"the {k}"} for k, t in params.items()},
        "required": list(params),
    })


TRIANGLE = _tool("calculate_triangle_area", "Area of a triangle from base and height.", base="integer", height="integer")
FACTORIAL = _tool("math_factorial", "The factorial of a number.", number="integer")
WEATHER = _tool("get_forecast", "Weather forecast for a city.", city="string", days="integer")
CASES = [
    ([TRIANGLE], "Find the area of a triangle with a base of 10 units and height of 5 units."),
    ([FACTORIAL], "Calculate the factorial of 5 using math functions."),
    ([WEATHER, FACTORIAL], "What will the weather be in Lisbon for the next 3 days?"),
]


# ---------------------------------------------------------------- no model


def test_prompt_lookup_copies_what_followed_the_latest_longest_match() -> None:
    #            0  1  2  3  4  5  6  7  8
    history = [5, 1, 2, 3, 9, 1, 2, 4, 1, 2]
    # last bigram (1, 2) last occurred at 5..6 (not 1..2): what followed it there
    assert prompt_lookup(history, 2, 3) == [4, 1, 2]
    assert prompt_lookup(history, 2, 1) == [4]
    # a trigram match wins over a later bigram match
    assert prompt_lookup([7, 1, 2, 8, 0, 1, 2, 6, 7, 1, 2], 3, 2) == [8, 0]
    assert prompt_lookup([1, 2, 3], 3, 4) == []          # nothing repeats
    assert prompt_lookup([1, 2, 1], 3, 0) == []          # switched off
    assert prompt_lookup([4], 3, 5) == []


@pytest.mark.parametrize("strategy", ["direct", "react", "reflact"])
@pytest.mark.parametrize("chat_format", ["raw", "chat"])
def test_shared_prefix_layout_keeps_everything_before_the_tools_identical(strategy: str, chat_format: str) -> None:
    def request(tools: list[ToolSpec], question: str, layout: str) -> ChatRequest:
        s = get_strategy(strategy, chat_format=chat_format, prompt_layout=layout)
        return s.build_request([{"role": "user", "content": question}], tools, constrained=True)

    def text(r: ChatRequest) -> str:
        return r.prompt if r.prompt is not None else r.messages[0]["content"]

    a = text(request(*CASES[0], "shared_prefix"))
    b = text(request(*CASES[2], "shared_prefix"))
    cut = a.index("Tools:\n")
    assert b.index("Tools:\n") == cut and a[:cut] == b[:cut]
    assert "Example:" in a[:cut] and "calculate_triangle_area" not in a[:cut]
    assert TRIANGLE.name in a[cut:] and WEATHER.name in b[cut:]
    # the seed layout puts the tools first: the two prompts part after the header
    old_a, old_b = (text(request(*c, "tools_first")) for c in (CASES[0], CASES[2]))
    assert old_a.index("Tools:\n") < old_a.index("Example:")
    assert old_a[: old_a.index("Tools:\n")] == old_b[: old_b.index("Tools:\n")]
    assert len(old_a[: old_a.index("Tools:\n")]) < cut


def test_unknown_prompt_layout_is_refused() -> None:
    assert PROMPT_LAYOUTS == ("tools_first", "shared_prefix")
    with pytest.raises(ValueError, match="unknown prompt_layout 'tools_last'; valid: tools_first, shared_prefix"):
        make_strategy("direct", "json", "raw", None, 64, "tools_last")


# ---------------------------------------------------------------- real model

@pytest.fixture(scope="module")
def engine() -> Iterator[LlamaCppEngine]:
    prof = load_profile(PROFILE)
    prof = dataclasses.replace(prof, cpu=dataclasses.replace(prof.cpu, use_extra_bufts=False))
    eng = create_engine(prof)
    assert isinstance(eng, LlamaCppEngine)
    yield eng
    eng.close()


def _with(eng: LlamaCppEngine, **llama_cpp: Any) -> None:
    p = eng.profile
    eng.profile = dataclasses.replace(
        p, backend=dataclasses.replace(p.backend, llama_cpp=dataclasses.replace(p.backend.llama_cpp, **llama_cpp)))


def _run(eng: LlamaCppEngine, req: ChatRequest) -> tuple[str, CallMetrics]:
    chunks = list(eng.stream(req))
    m = chunks[-1].metrics
    assert m is not None
    return "".join(c.text for c in chunks), m


def _requests(layout: str, chat_format: str = "chat") -> list[ChatRequest]:
    """Constrained to the call list alone (no plain-text branch): these tests are about the
    grammar's mechanics, which a reply the text branch admits would not exercise."""
    s = make_strategy("direct", "json", chat_format, None, 48, layout)
    return [dataclasses.replace(s.build_request([{"role": "user", "content": q}], tools, constrained=True),
                                allow_text=False) for tools, q in CASES]


def test_top_k_grammar_check_gives_the_full_vocabulary_pass_tokens(engine: LlamaCppEngine) -> None:
    outs: dict[int, list[tuple[str, CallMetrics]]] = {}
    for k in (0, 64):
        _with(engine, grammar_top_k=k, prompt_lookup_tokens=0)
        outs[k] = []
        for req in _requests("tools_first")[:2]:
            engine.reset_cache()
            outs[k].append(_run(engine, req))
    assert [t for t, _ in outs[64]] == [t for t, _ in outs[0]]
    full = sum(m.engine_counters["grammar_full_vocab_passes"] for _, m in outs[0])
    fast = sum(m.engine_counters["grammar_full_vocab_passes"] for _, m in outs[64])
    hits = sum(m.engine_counters["grammar_top_k_hits"] for _, m in outs[64])
    assert full > 0, "these prompts must exercise the grammar's rejections"
    assert fast < full and hits > 0
    for text, _ in outs[64]:
        assert text.lstrip().startswith(("{", "["))


def test_shared_prefix_is_reused_and_gives_the_cold_prefill_tokens(engine: LlamaCppEngine) -> None:
    _with(engine, grammar_top_k=64, prompt_lookup_tokens=0)
    reqs = _requests("shared_prefix")
    engine.reset_cache()
    first_text, first = _run(engine, reqs[0])
    assert first.cached_prompt_tokens == 0
    for req in reqs[1:2]:
        warm_text, warm = _run(engine, req)
        assert warm.cached_prompt_tokens >= 0.5 * warm.prompt_tokens, "the shared system part is not reused"
        assert warm.engine_counters["llama_prompt_eval_tokens"] == warm.prompt_tokens - warm.cached_prompt_tokens
        engine.reset_cache()
        cold_text, cold = _run(engine, req)
        assert cold.cached_prompt_tokens == 0
        assert warm_text == cold_text
    # the seed layout shares only the header between these cases
    old = _requests("tools_first")
    engine.reset_cache()
    _run(engine, old[0])
    _, m = _run(engine, old[1])
    assert m.cached_prompt_tokens < 0.5 * m.prompt_tokens


def test_prompt_lookup_decoding_gives_the_plain_greedy_tokens(engine: LlamaCppEngine) -> None:
    plain: list[str] = []
    spec: list[tuple[str, CallMetrics]] = []
    reqs = _requests("shared_prefix")[:1]
    reqs.append(ChatRequest(prompt="Repeat exactly: the red robot picks up the blue box and the red robot picks up",
                            max_tokens=24))
    for req in reqs:
        _with(engine, grammar_top_k=64, prompt_lookup_tokens=0)
        engine.reset_cache()
        plain.append(_run(engine, req)[0])
        _with(engine, grammar_top_k=64, prompt_lookup_tokens=6)
        engine.reset_cache()
        spec.append(_run(engine, req))
    assert [t for t, _ in spec] == plain
    steps = sum(m.engine_counters.get("spec_steps", 0) for _, m in spec)
    accepted = sum(m.engine_counters.get("spec_accepted_tokens", 0) for _, m in spec)
    drafted = sum(m.engine_counters.get("spec_drafted_tokens", 0) for _, m in spec)
    assert steps > 0 and 0 < accepted <= drafted


def test_prefix_reuse_is_bit_identical_to_a_cold_prefill() -> None:
    """Warm (reused prefix) and cold calls give the same last-row logits, bit for bit, on the
    default profile as shipped; the reused part is whole prefill chunks only."""
    import llama_cpp

    prof = load_profile(DEFAULT_PROFILE)
    chunk = prof.context.prefill_chunk
    assert chunk > 0 and prof.context.prefix_reuse
    eng = create_engine(prof)
    assert isinstance(eng, LlamaCppEngine)
    try:
        llm = eng.llama
        s = make_strategy("direct", "json", "raw", None, 1, "shared_prefix")
        base = s.build_request([{"role": "user", "content": CASES[0][1]}], CASES[0][0]).prompt
        assert base is not None

        def last_row(text: str) -> tuple[np.ndarray, CallMetrics]:
            _, m = _run(eng, ChatRequest(prompt=text, max_tokens=1, temperature=0.0))
            return np.ctypeslib.as_array(llama_cpp.llama_get_logits_ith(llm.ctx, -1),
                                         shape=(llm.n_vocab(),)).copy(), m

        other = base + " {\"name\": \"final_answer\", \"arguments\": {\"text\": \"no\"}}"
        for n in range(1, 10):
            text = base + " {" + " x" * n
            eng.reset_cache()
            cold, m_cold = last_row(text)
            last_row(other)                      # the cache now holds another continuation of base
            warm, m_warm = last_row(text)
            assert m_cold.cached_prompt_tokens == 0
            assert m_warm.cached_prompt_tokens > 0 and m_warm.cached_prompt_tokens % chunk == 0
            assert m_warm.prompt_tokens - m_warm.cached_prompt_tokens <= chunk + n + 2
            assert np.array_equal(warm, cold), f"suffix of {n}: warm logits differ from cold"
        # a prompt that is a whole-chunk extension of the cached one keeps all its whole chunks
        _, m = last_row(text + " y" * chunk)
        assert m.cached_prompt_tokens >= m_warm.prompt_tokens - m_warm.prompt_tokens % chunk - chunk

        # the agent's requests carry the shared part as cache_anchor: a chunk starts where it ends,
        # so two cases share all of it (not just whole chunks), still bit for bit
        reqs = [dataclasses.replace(r, max_tokens=1) for r in _requests("shared_prefix", "raw")]
        assert all(r.cache_anchor and r.prompt.startswith(r.cache_anchor) for r in reqs)

        def call(req: ChatRequest) -> tuple[np.ndarray, CallMetrics]:
            _, m = _run(eng, req)
            return np.ctypeslib.as_array(llama_cpp.llama_get_logits_ith(llm.ctx, -1),
                                         shape=(llm.n_vocab(),)).copy(), m

        eng.reset_cache()
        cold, m_cold = call(reqs[1])
        anchor = int(m_cold.engine_counters["cache_anchor_tokens"])
        assert anchor > chunk and anchor % chunk != 0
        call(reqs[0])
        warm, m_warm = call(reqs[1])
        assert m_warm.cached_prompt_tokens == anchor
        assert np.array_equal(warm, cold), "warm logits after the anchor differ from cold"
    finally:
        eng.close()
