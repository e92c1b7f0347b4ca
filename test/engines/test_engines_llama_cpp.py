"""LlamaCppEngine against the real bundled Gemma 3 270M model (loaded once).

Checks the things a benchmark relies on: text really streams, the metrics
are internally consistent and agree with llama.cpp's own counters, the
system prompt + tool specs prefix is reused (and reported) across calls,
and constrained decoding yields schema-valid tool calls.
"""
from __future__ import annotations

import json
import math
from typing import Iterator

import pytest

from engines_fixtures import SYSTEM, TOOL_CALL_SCHEMA, tool_specs
from slm_agent.engines import ChatRequest, EngineError, create_engine
from slm_agent.engines.base import CallMetrics, StreamChunk
from slm_agent.engines.llama_cpp import LlamaCppEngine
from slm_agent.profiles import load_profile

# isolated: llama.cpp runs in-process; a native crash must fail one test, not the run
pytestmark = [pytest.mark.timeout(300), pytest.mark.isolated]


@pytest.fixture(scope="module")
def engine() -> Iterator[LlamaCppEngine]:
    eng = create_engine(load_profile("gemma3-270m-q4km"))
    assert isinstance(eng, LlamaCppEngine)
    yield eng
    eng.close()


def _collect(eng: LlamaCppEngine, req: ChatRequest) -> tuple[list[StreamChunk], CallMetrics]:
    chunks = list(eng.stream(req))
    assert chunks[-1].metrics is not None, "final chunk must carry metrics"
    assert all(c.metrics is None for c in chunks[:-1]), "only the final chunk carries metrics"
    return chunks, chunks[-1].metrics


def _tool_request(question: str, **kw: object) -> ChatRequest:
    return ChatRequest(messages=[SYSTEM, {"role": "user", "content": question}], tools=tool_specs(), **kw)


def test_short_generation_streams_with_consistent_metrics(engine: LlamaCppEngine) -> None:
    engine.reset_cache()
    req = ChatRequest(prompt="The capital of France is", max_tokens=24)
    chunks, m = _collect(engine, req)
    texts = [c.text for c in chunks if c.text]
    assert len(texts) >= 5, f"expected a real stream of deltas, got {texts!r}"
    assert "".join(texts).strip()

    tokens, _ = engine.tokenize_request(req)
    assert m.prompt_tokens == len(tokens)
    assert m.cached_prompt_tokens == 0
    assert m.backend == "llama_cpp" and m.model == "gemma-3-270m-q4_k_m"
    assert m.finish_reason in ("length", "stop")
    if m.finish_reason == "length":
        assert m.decode_tokens == 24
    assert m.decode_tokens >= 5
    assert 0 < m.ttft_s < m.total_s
    assert m.prefill_tokens_per_s > 0 and m.decode_tokens_per_s > 0
    # self-consistency: the documented definition, recomputed
    decode_time = m.total_s - m.ttft_s
    assert m.decode_tokens_per_s == pytest.approx((m.decode_tokens - 1) / decode_time, rel=1e-6)
    assert m.prefill_tokens_per_s == pytest.approx(m.prompt_tokens / m.ttft_s, rel=1e-6)
    assert m.end_wall_ns > m.start_wall_ns > 0
    assert math.isnan(m.energy_j)

    # llama.cpp's own counters: same token counts, decode rate within 10%
    c = m.engine_counters
    assert c["llama_prompt_eval_tokens"] == m.prompt_tokens
    assert c["llama_eval_tokens"] == m.decode_tokens - 1  # the last sampled token is never evaluated
    assert c["llama_decode_tokens_per_s"] > 0
    assert abs(m.decode_tokens_per_s - c["llama_decode_tokens_per_s"]) / c["llama_decode_tokens_per_s"] < 0.10
    assert c["llama_prompt_eval_ms"] / 1e3 <= m.ttft_s


def test_prefix_reuse_reports_cached_tokens_and_cuts_ttft(engine: LlamaCppEngine) -> None:
    engine.reset_cache()
    cold_req = _tool_request("Move to the kitchen.", max_tokens=4)
    _, cold = _collect(engine, cold_req)
    assert cold.prompt_tokens >= 1000, "the tool-spec prompt should be long"
    assert cold.cached_prompt_tokens == 0
    assert cold.engine_counters["llama_prompt_eval_tokens"] == cold.prompt_tokens

    _, warm = _collect(engine, _tool_request("Grasp the red cup.", max_tokens=4))
    assert warm.cached_prompt_tokens > 0
    assert warm.cached_prompt_tokens >= 0.9 * warm.prompt_tokens
    # the reused length predicted from token lists matches what llama.cpp evaluated
    assert warm.engine_counters["prefix_reuse_predicted_tokens"] == warm.cached_prompt_tokens
    assert warm.engine_counters["llama_prompt_eval_tokens"] == warm.prompt_tokens - warm.cached_prompt_tokens
    assert warm.ttft_s < 0.5 * cold.ttft_s
    # prefill rate counts only the evaluated suffix
    evaluated = warm.prompt_tokens - warm.cached_prompt_tokens
    assert warm.prefill_tokens_per_s == pytest.approx(evaluated / warm.ttft_s, rel=1e-6)


def test_reset_cache_makes_the_next_call_cold(engine: LlamaCppEngine) -> None:
    req = _tool_request("Dock at the charger.", max_tokens=2)
    _collect(engine, req)
    _, again = _collect(engine, req)
    chunk = engine.profile.context.prefill_chunk   # reuse keeps whole prefill chunks (exact, see engine doc)
    assert again.cached_prompt_tokens >= again.prompt_tokens - 1 - chunk
    assert again.cached_prompt_tokens % chunk == 0
    engine.reset_cache()
    _, cold = _collect(engine, req)
    assert cold.cached_prompt_tokens == 0
    assert cold.engine_counters["llama_prompt_eval_tokens"] == cold.prompt_tokens


def test_json_schema_constrained_tool_call(engine: LlamaCppEngine) -> None:
    req = ChatRequest(
        prompt='Tool call for "drive to the door slowly" as JSON:\n',
        json_schema=TOOL_CALL_SCHEMA,
        max_tokens=96,
    )
    chunks, m = _collect(engine, req)
    text = "".join(c.text for c in chunks)
    assert m.finish_reason == "stop", f"grammar should end the output, got {m.finish_reason}: {text!r}"
    assert m.engine_counters["constrained"] == 1.0
    call = json.loads(text)
    try:
        import jsonschema
    except ImportError:  # structural fallback
        assert set(call) == {"name", "arguments"}
        assert call["name"] in TOOL_CALL_SCHEMA["properties"]["name"]["enum"]
        assert isinstance(call["arguments"]["target"], str)
        assert call["arguments"]["speed"] in ("slow", "normal", "fast")
    else:
        jsonschema.validate(call, TOOL_CALL_SCHEMA)


def test_lazy_grammar_matches_full_vocab_grammar(engine: LlamaCppEngine) -> None:
    """The engine checks the greedy token against the grammar and only
    constrains the full vocabulary on rejection; for greedy decoding that
    must give exactly what llama-cpp-python's always-on grammar gives."""
    from llama_cpp.llama_grammar import LlamaGrammar

    prompt = "Robot command: grasp the cup quickly.\nJSON:"
    engine.reset_cache()
    ours = engine.complete(ChatRequest(prompt=prompt, json_schema=TOOL_CALL_SCHEMA, max_tokens=64))
    llm = engine.llama
    llm.reset()
    grammar = LlamaGrammar.from_json_schema(json.dumps(TOOL_CALL_SCHEMA), verbose=False)
    ref: list[int] = []
    tokens = llm.tokenize(prompt.encode(), add_bos=True, special=True)
    for tok in llm.generate(tokens, top_k=40, top_p=1.0, min_p=0.0, temp=0.0, repeat_penalty=1.0, grammar=grammar):
        if tok == llm.token_eos() or len(ref) >= 64:
            break
        ref.append(tok)
    llm.reset()
    assert ours.text == llm.detokenize(ref).decode("utf-8")
    assert ours.metrics.decode_tokens == len(ref) + 1  # + the EOS the grammar ends with
    passes = ours.metrics.engine_counters["grammar_full_vocab_passes"]
    assert 0 <= passes <= ours.metrics.decode_tokens


def test_gbnf_grammar(engine: LlamaCppEngine) -> None:
    out = engine.complete(ChatRequest(prompt="Is the sky blue? Answer:", grammar='root ::= " yes" | " no"', max_tokens=8))
    assert out.text in (" yes", " no")
    assert out.metrics.finish_reason == "stop"


def test_invalid_grammar_is_an_engine_error(engine: LlamaCppEngine) -> None:
    with pytest.raises(EngineError, match="grammar"):
        engine.complete(ChatRequest(prompt="x", grammar="root ::= (", max_tokens=2))


def test_chat_messages_use_profile_template(engine: LlamaCppEngine) -> None:
    llm = engine.llama
    tokens, _ = engine.tokenize_request(_tool_request("Stop."))
    start_of_turn = llm.tokenize(b"<start_of_turn>", add_bos=False, special=True)
    assert len(start_of_turn) == 1
    assert tokens[0] == llm.token_bos() and tokens[1] != llm.token_bos()
    assert tokens.count(start_of_turn[0]) == 2  # user turn + generation prompt
    text = llm.detokenize(tokens, special=True).decode()
    assert '"name": "move_to"' in text and text.endswith("<start_of_turn>model\n")


def test_stop_string_cuts_output(engine: LlamaCppEngine) -> None:
    out = engine.complete(ChatRequest(prompt="Count: one, two, three, four, five, six,", stop=[","], max_tokens=32))
    assert "," not in out.text
    assert out.metrics.finish_reason == "stop"


def test_prompt_longer_than_context_is_an_engine_error(engine: LlamaCppEngine) -> None:
    with pytest.raises(EngineError, match="n_ctx"):
        engine.complete(ChatRequest(prompt="word " * (engine.llama.n_ctx() + 100), max_tokens=4))


def test_abandoned_stream_releases_the_engine(engine: LlamaCppEngine) -> None:
    stream = engine.stream(ChatRequest(prompt="Once upon a time", max_tokens=32))
    first = next(stream)
    assert first.metrics is None
    stream.close()
    out = engine.complete(ChatRequest(prompt="Once upon a time", max_tokens=3))
    assert out.metrics.decode_tokens >= 1
    assert out.metrics.cached_prompt_tokens > 0  # KV from the abandoned call is still reused
