"""Confidence signals (issue 26) on the bundled Gemma 3 270M: finite on a real run, every path."""
from __future__ import annotations

import math
from typing import Iterator

import pytest

from engines_fixtures import SYSTEM, TOOL_CALL_SCHEMA
from slm_agent.engines import ChatRequest, create_engine
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


@pytest.mark.parametrize("kw", [
    {"temperature": 0.0},                                       # greedy, prompt-lookup drafts
    {"temperature": 0.0, "json_schema": TOOL_CALL_SCHEMA},      # greedy under a grammar
    {"temperature": 0.8, "seed": 3},                            # the sampler chain
], ids=["greedy", "greedy-constrained", "sampled"])
def test_every_call_reports_finite_confidence(engine: LlamaCppEngine, kw) -> None:
    req = ChatRequest(messages=[SYSTEM, {"role": "user", "content": "What is the battery level?"}],
                      max_tokens=24, **kw)
    m = engine.complete(req).metrics
    assert m.decode_tokens >= 1
    assert math.isfinite(m.min_logprob) and m.min_logprob <= 0.0, m.min_logprob
    assert math.isfinite(m.top_margin) and 0.0 <= m.top_margin <= 1.0, m.top_margin
