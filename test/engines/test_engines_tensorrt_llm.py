"""TensorRTLLMEngine: on machines without TensorRT-LLM (no NVIDIA GPU) the
engine must fail fast with a clear EngineError; the streaming test runs only
where tensorrt_llm imports and a checkpoint is configured."""
from __future__ import annotations

import os

import pytest

from slm_agent.engines import ChatRequest, EngineError, create_engine
from slm_agent.engines.tensorrt_llm import NOT_INSTALLED_MESSAGE, TensorRTLLMEngine, tensorrt_llm_available
from slm_agent.profiles import load_profile

HAVE_TRTLLM = tensorrt_llm_available()
SKIP_REASON = "tensorrt_llm not installed (needs NVIDIA GPU/Jetson)"


@pytest.mark.skipif(HAVE_TRTLLM, reason="tensorrt_llm is installed here; the not-installed path cannot be exercised")
def test_missing_tensorrt_llm_raises_clear_engine_error() -> None:
    profile = load_profile("gpt-oss-20b-trtllm", validate_files=False)
    with pytest.raises(EngineError) as err:
        TensorRTLLMEngine(profile)
    msg = str(err.value)
    assert "tensorrt_llm is not installed; it needs an NVIDIA GPU/Jetson" in msg
    assert NOT_INSTALLED_MESSAGE in msg


@pytest.mark.skipif(HAVE_TRTLLM, reason="tensorrt_llm is installed here; the not-installed path cannot be exercised")
def test_factory_reports_the_same_error_before_touching_model_files() -> None:
    # the checkpoint directory does not exist either; the import error must win
    profile = load_profile("gpt-oss-20b-trtllm", validate_files=False)
    assert profile.model_path is not None and not os.path.exists(profile.model_path)
    with pytest.raises(EngineError, match="tensorrt_llm is not installed"):
        create_engine(profile)


@pytest.mark.skipif(not HAVE_TRTLLM, reason=SKIP_REASON)
def test_tensorrt_llm_streams_with_metrics() -> None:
    path = os.environ.get("SLM_TRTLLM_TEST_MODEL")
    if not path:
        pytest.skip("set SLM_TRTLLM_TEST_MODEL to a small local HF checkpoint directory to run this on a GPU")
    profile = load_profile("gpt-oss-20b-trtllm", validate_files=False)
    import dataclasses

    profile = dataclasses.replace(profile, model=dataclasses.replace(profile.model, path=path), model_path=path)
    eng = create_engine(profile)
    try:
        chunks = list(eng.stream(ChatRequest(prompt="The capital of France is", max_tokens=16)))
        m = chunks[-1].metrics
        assert m is not None and m.decode_tokens >= 1 and m.ttft_s > 0
        assert sum(1 for c in chunks if c.text) >= 2
    finally:
        eng.close()
