"""Irrelevance scoring follows BFCL's ``_evaluate_single_relevance_entry``.

A case passes when the model makes no *decodable, non-empty* call.  BFCL's FC
decoding means two things that look odd but are faithful:
a call whose arguments are not valid JSON makes the whole output undecodable
(so it counts as "no call" and passes irrelevance), and a text answer is
"no call".
"""
import pytest

pytest.importorskip(
    "bfcl_eval", reason="bfcl_eval not installed (pip install --no-deps bfcl-eval==2026.3.23)"
)
pytest.importorskip("filelock", reason="filelock (imported by bfcl_eval.utils) not installed")

from slm_agent.bench.bfcl.checker import check_single_turn  # noqa: E402
from slm_agent.bench.bfcl.loader import deterministic_sample, load_scenarios, tools_for  # noqa: E402

CASES = deterministic_sample(load_scenarios(["irrelevance"]), 10) + deterministic_sample(
    load_scenarios(["live_irrelevance"]), 10
)


@pytest.mark.parametrize("scenario", CASES, ids=lambda s: s.case_id)
def test_no_call_passes(scenario):
    assert check_single_turn(scenario, []).passed
    assert check_single_turn(scenario, None, raw_output="I can't help with that.").passed


@pytest.mark.parametrize("scenario", CASES, ids=lambda s: s.case_id)
def test_any_call_fails(scenario):
    tool = tools_for(scenario).names[0]
    for calls in (
        [{"name": tool, "arguments": {}}],
        [{"name": tool, "arguments": '{"x": 1}'}],
        [{"name": "hallucinated_tool", "arguments": {"q": "weather"}}],
    ):
        res = check_single_turn(scenario, calls)
        assert res.valid and not res.passed
        assert res.error_type == "irrelevance_error:decoder_success"
        assert res.error == "Valid syntax. Successfully decode AST when it should not."


def test_undecodable_call_counts_as_no_call_like_bfcl():
    sc = CASES[0]
    tool = tools_for(sc).names[0]
    assert check_single_turn(sc, [{"name": tool, "arguments": "{not json"}]).passed


def test_relevance_is_the_opposite():
    sc = load_scenarios(["live_relevance"], limit=1)[0]
    tool = tools_for(sc).names[0]
    assert check_single_turn(sc, [{"name": tool, "arguments": {}}]).passed
    res = check_single_turn(sc, [], raw_output="no")
    assert not res.passed and res.error_type == "relevance_error:decoder_failed"
