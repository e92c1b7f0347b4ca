"""Serialization ``bfcl`` is scored exactly as BFCL scores prompt-mode models.

The same model outputs (BFCL's Python-call syntax: gold answers, corrupted
answers, plain-text answers, a call where none is wanted) go through

* our path: the ``bfcl`` call format's decoding (BFCL's own decoder) -> tool
  calls with the sanitized names the model was shown -> name mapping -> our
  checker (``score_single_turn``, what the benchmark node runs), and
* BFCL's own evaluator: ``eval_runner._evaluate_single_ast_entry`` /
  ``_evaluate_single_relevance_entry`` with a prompt-mode handler's decoder
  (``default_decode_ast_prompting``) on the same text with BFCL's original
  function names,

and every verdict must agree.
"""
from __future__ import annotations

import types

import pytest

pytest.importorskip("bfcl_eval", reason="bfcl_eval not installed (pip install --no-deps bfcl-eval==2026.3.23)")
pytest.importorskip("overrides", reason="overrides (imported by BFCL's eval_runner) not installed")

from slm_agent.agent.strategies import make_strategy  # noqa: E402
from slm_agent.agent.types import ToolSpec  # noqa: E402
from slm_agent.bench.bfcl.calls import to_call_string  # noqa: E402
from slm_agent.bench.bfcl.compat import CHECKER_MODEL_NAME, ensure_bfcl  # noqa: E402
from slm_agent.bench.bfcl.gold import gold_calls  # noqa: E402
from slm_agent.bench.bfcl.loader import deterministic_sample, load_scenarios, tools_for  # noqa: E402
from slm_agent.bench.bfcl.suite import score_single_turn  # noqa: E402

CATEGORIES = ["simple_python", "multiple", "parallel", "parallel_multiple", "irrelevance"]


def _bfcl_runner():
    ensure_bfcl()
    from bfcl_eval.constants.enums import Language, ReturnFormat
    from bfcl_eval.eval_checker import eval_runner
    from bfcl_eval.model_handler.utils import default_decode_ast_prompting

    handler = types.SimpleNamespace(decode_ast=default_decode_ast_prompting)  # what prompt-mode handlers use
    return eval_runner, handler, Language.PYTHON, ReturnFormat.PYTHON


def _outputs(scenario, toolset):
    """(label, text with sanitized names, text with BFCL's names) for one case."""
    out = [("text", "I cannot help with that using these functions.", None),
           ("empty list", "[]", None)]
    if scenario.category == "irrelevance":
        fn = scenario.checker_functions[0]
        args = {k: 1 for k in list(fn.get("parameters", {}).get("properties", {}))[:1]}
        out.append(("a call", to_call_string(toolset.to_sanitized.get(fn["name"], fn["name"]), args),
                    to_call_string(fn["name"], args)))
        return out
    gold = gold_calls(scenario, toolset)
    orig = gold_calls(scenario)
    render = lambda calls: "[" + ", ".join(to_call_string(c["name"], c["arguments"]) for c in calls) + "]"  # noqa: E731
    out.append(("gold", render(gold), render(orig)))
    if gold and gold[0]["arguments"]:
        key = next(iter(gold[0]["arguments"]))
        bad = [dict(c, arguments=dict(c["arguments"])) for c in gold]
        bad_orig = [dict(c, arguments=dict(c["arguments"])) for c in orig]
        for calls in (bad, bad_orig):
            calls[0]["arguments"][key] = "__wrong__"
        out.append(("wrong value", render(bad), render(bad_orig)))
    out.append(("no brackets", render(gold)[1:-1], render(orig)[1:-1]))
    return out


SAMPLE = [sc for cat in CATEGORIES for sc in deterministic_sample(load_scenarios([cat]), 5)]


@pytest.mark.parametrize("scenario", SAMPLE, ids=lambda s: s.case_id)
def test_bfcl_format_verdicts_equal_bfcls_evaluator(scenario):
    runner, handler, language, fmt = _bfcl_runner()
    toolset = tools_for(scenario, 0)
    specs = [ToolSpec(name=t["name"], description=t.get("description", ""), parameters=t["parameters"])
             for t in toolset.tools]
    strategy = make_strategy("direct", "bfcl", "chat", None, 256)
    verdicts = []
    for label, ours_text, bfcl_text in _outputs(scenario, toolset):
        bfcl_text = ours_text if bfcl_text is None else bfcl_text
        d = strategy.interpret(ours_text, specs)
        calls = [{"name": c.name, "arguments": c.arguments} for c in d.calls]
        ours = score_single_turn(scenario, calls, "" if calls else (d.final_text or "")).passed
        entry = {"function": scenario.checker_functions}
        if scenario.category == "irrelevance":
            theirs = runner._evaluate_single_relevance_entry(handler, scenario.case_id, bfcl_text, entry,
                                                             CHECKER_MODEL_NAME, scenario.category)
        else:
            theirs = runner._evaluate_single_ast_entry(handler, scenario.case_id, bfcl_text,
                                                       scenario.ground_truth, entry, CHECKER_MODEL_NAME,
                                                       scenario.category, language, fmt)
        verdicts.append((label, ours, bool(theirs["valid"])))
    assert all(o == t for _, o, t in verdicts), verdicts
    # the set of outputs is not trivial: some pass and some fail
    assert {o for _, o, _ in verdicts} == {True, False}, verdicts
