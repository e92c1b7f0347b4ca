"""Confidence signals (issue 26) on known logits: plain numpy, no model."""
from __future__ import annotations

import math

import numpy as np
import pytest

from slm_agent.engines.confidence import NEAR, Confidence, token_logprob, top_margin


def _log_softmax(row: np.ndarray) -> np.ndarray:
    r = row.astype(np.float64)
    return r - r.max() - np.log(np.exp(r - r.max()).sum())


def test_token_logprob_is_log_softmax():
    row = np.array([2.0, 1.0, 0.0, -1.0], dtype=np.float32)
    expect = _log_softmax(row)
    for tok in range(4):
        assert token_logprob(row, tok) == pytest.approx(expect[tok], abs=1e-6)
    # two equal logits: each has log(1/2) when the rest is negligible
    assert token_logprob(np.array([5.0, 5.0, -60.0], dtype=np.float32), 1) == pytest.approx(math.log(0.5), abs=1e-9)


def test_far_logits_are_negligible_in_a_large_vocabulary():
    rng = np.random.default_rng(0)
    row = (rng.standard_normal(262_144) * 3).astype(np.float32)
    row[7] += 30.0
    exact = _log_softmax(row)
    for tok in (7, 0, 12345):
        assert token_logprob(row, tok) == pytest.approx(exact[tok], abs=1e-3)
    assert NEAR >= 20.0


def test_top_margin_is_the_gap_of_the_two_best_probabilities():
    row = np.log(np.array([0.5, 0.3, 0.2], dtype=np.float64)).astype(np.float32)
    assert top_margin(row) == pytest.approx(0.2, abs=1e-6)
    assert top_margin(np.array([1.0, 1.0], dtype=np.float32)) == pytest.approx(0.0)
    assert top_margin(np.array([0.0, -50.0], dtype=np.float32)) == pytest.approx(1.0, abs=1e-9)
    assert math.isnan(top_margin(np.array([1.0], dtype=np.float32)))


def test_confidence_keeps_the_minimum_and_the_first_margin():
    c = Confidence()
    assert math.isnan(c.min_logprob) and math.isnan(c.top_margin)
    sure = np.array([10.0, 0.0, 0.0], dtype=np.float32)
    torn = np.log(np.array([0.4, 0.35, 0.25])).astype(np.float32)
    c.observe(sure, 0)
    first_margin = c.top_margin
    c.observe(torn, 2)        # the unsure token: log(0.25)
    c.observe(sure, 0)
    c.observe(None, 1)        # an unknown row changes nothing
    assert c.min_logprob == pytest.approx(math.log(0.25), abs=1e-6)
    assert c.top_margin == first_margin and first_margin > 0.99
    assert c.tokens == 3


# ----------------------------------------------------------------------------- OpenAI-compatible servers

def _feed(events):
    import json as _json

    from slm_agent.engines.base import StreamTimer
    from slm_agent.engines.openai_http import _StreamState

    state, timer = _StreamState(), StreamTimer()
    timer.start()
    for e in events:
        state.feed("data: " + _json.dumps(e), "http://x", timer)
    return state


def test_chat_logprobs_give_both_signals():
    def tok(lp, tops):
        return {"token": "t", "logprob": lp, "top_logprobs": [{"token": "a", "logprob": t} for t in tops]}

    state = _feed([
        {"choices": [{"index": 0, "delta": {"content": "["},
                      "logprobs": {"content": [tok(math.log(0.6), [math.log(0.6), math.log(0.3)])]}}]},
        {"choices": [{"index": 0, "delta": {"content": "x"},
                      "logprobs": {"content": [tok(math.log(0.2), [math.log(0.5), math.log(0.2)])]}}]},
        {"choices": [{"index": 0, "delta": {}, "finish_reason": "stop"}]},
    ])
    assert state.min_logprob == pytest.approx(math.log(0.2))
    assert state.top_margin == pytest.approx(0.3)


def test_completion_logprobs_and_none_sent():
    state = _feed([{"choices": [{"index": 0, "text": "ab", "logprobs": {
        "tokens": ["a", "b"], "token_logprobs": [-0.1, -2.5],
        "top_logprobs": [{"a": -0.1, "c": -2.4}, {"b": -2.5, "d": -0.2}]}}]}])
    assert state.min_logprob == pytest.approx(-2.5)
    assert state.top_margin == pytest.approx(math.exp(-0.1) - math.exp(-2.4))
    none = _feed([{"choices": [{"index": 0, "delta": {"content": "hi"}}]}])
    assert math.isnan(none.min_logprob) and math.isnan(none.top_margin)


def test_logprobs_are_asked_only_when_the_profile_says_so():
    from slm_agent.engines import ChatRequest
    from slm_agent.engines.openai_http import OpenAIHttpEngine
    from slm_agent.profiles import parse_profile

    def body(req, **opts):
        prof = parse_profile({"model": {"name": "m"}, "backend": {"type": "openai_http", "openai_http": {
            "base_url": "http://127.0.0.1:9/v1", **opts}}}, name="t")
        return OpenAIHttpEngine(prof).build_body(req)[1]

    chat = ChatRequest(messages=[{"role": "user", "content": "x"}])
    assert "logprobs" not in body(chat)
    assert body(chat, logprobs=True)["logprobs"] is True and body(chat, logprobs=True)["top_logprobs"] == 2
    assert body(ChatRequest(prompt="x"), logprobs=True)["logprobs"] == 2
