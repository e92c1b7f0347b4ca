"""Score agent output with BFCL's own checkers.

* AST categories: ``bfcl_eval...ast_checker.ast_checker`` on the decoded calls
  (names mapped back to the original BFCL names), preceded by the same decode
  and format gates as BFCL's ``_evaluate_single_ast_entry``.
* Relevance categories: BFCL's ``_evaluate_single_relevance_entry`` rule --
  a call "exists" when decoding succeeds and ``bfcl_eval.utils.is_empty_output``
  is False; ``irrelevance``/``live_irrelevance`` pass without one,
  ``live_relevance`` passes with one.  (That function lives in
  ``eval_runner``, which imports every model handler, so its 6-line rule is
  restated here using BFCL's own ``is_empty_output``; error types and messages
  are copied verbatim.)
* Multi-turn: ``multi_turn_checker`` (state + response checks).  Like BFCL's
  ``_evaluate_single_multi_turn_entry`` we first fail force-terminated runs
  (fewer turns than the ground truth) and drop steps that do not decode or are
  empty.  Note the checker *re-executes* the decoded calls itself in fresh
  instances -- the agent's own execution results are not an input.

BFCL keeps executable instances in ``multi_turn_utils``' module globals keyed
by model name and case id and never frees them (each BFCL process scores a
case once).  We score every multi-turn case under a unique model name and
delete its instances afterwards, so re-scoring the same case in one process
(e.g. the benchmark's retries, or tests) cannot see stale state.
"""
from __future__ import annotations

import copy
import json
import re
import time
import uuid
from typing import Any, Optional

from slm_agent.bench.bfcl.calls import DecodeError, decode_ast, decode_execute
from slm_agent.bench.bfcl.compat import CHECKER_MODEL_NAME, ensure_bfcl
from slm_agent.bench.bfcl.loader import (
    AST_CATEGORIES,
    MULTI_TURN_CATEGORIES,
    RELEVANCE_CATEGORIES,
    tools_for,
)
from slm_agent.bench.bfcl.tools import ToolSet
from slm_agent.bench.scenario import Call, CaseResult, Scenario

ensure_bfcl()
from bfcl_eval.constants.enums import Language  # noqa: E402
from bfcl_eval.eval_checker.ast_eval.ast_checker import ast_checker  # noqa: E402
from bfcl_eval.eval_checker.multi_turn_eval import multi_turn_utils  # noqa: E402
from bfcl_eval.eval_checker.multi_turn_eval.multi_turn_checker import (  # noqa: E402
    multi_turn_checker,
)
from bfcl_eval.eval_checker.multi_turn_eval.multi_turn_utils import (  # noqa: E402
    is_empty_execute_response,
)
from bfcl_eval.utils import (  # noqa: E402
    is_empty_output,
    is_function_calling_format_output,
)

HARNESS_ERROR = "harness:checker_exception"
MAX_DETAIL_CHARS = 20_000


def _errors_text(errors: Any) -> str:
    if isinstance(errors, str):
        return errors
    try:
        return json.dumps(errors, default=str, ensure_ascii=False)
    except (TypeError, ValueError):
        return str(errors)


def unique_model_name(tag: str = "chk") -> str:
    """A model name for BFCL's executable globals no other run will share."""
    return f"{CHECKER_MODEL_NAME}-{tag}-{uuid.uuid4().hex[:12]}"


def release_instances(model_name: str) -> int:
    """Delete the executable instances BFCL created under ``model_name``
    (including its ``_eval`` / ``_ground_truth`` variants); returns how many."""
    prefix = re.sub(r"[-./:]", "_", model_name) + "_"
    g = vars(multi_turn_utils)
    keys = [k for k in g if k.startswith(prefix) and k.endswith("_instance")]
    for k in keys:
        del g[k]
    return len(keys)


# --------------------------------------------------------------------------- single turn


def check_single_turn(
    scenario: Scenario,
    calls: Optional[list[Call]],
    raw_output: str = "",
    toolset: Optional[ToolSet] = None,
) -> CaseResult:
    """Score one single-turn (AST or relevance) case.

    ``calls`` are the model's parsed calls in order; names may be the
    sanitized tool names from :func:`loader.tools_for` (mapped back here).
    ``raw_output`` is the model's text; it only matters when there are no
    calls (BFCL then tries to decode the text, which fails when non-empty).
    """
    if scenario.category not in AST_CATEGORIES + RELEVANCE_CATEGORIES:
        raise ValueError(f"{scenario.case_id}: not a single-turn category")
    toolset = toolset or tools_for(scenario, 0)
    result = CaseResult(
        case_id=scenario.case_id,
        category=scenario.category,
        suite=scenario.suite,
        valid=True,
        passed=False,
        raw_output=raw_output,
        calls=list(calls or []),
    )
    decode_error: Optional[str] = None
    decoded: Optional[list[dict[str, Any]]] = None
    try:
        decoded = decode_ast(calls, raw_output, toolset.original_name)
    except DecodeError as exc:
        decode_error = str(exc)
    result.details["decoded"] = decoded

    if scenario.category in RELEVANCE_CATEGORIES:
        contain_func_call = decoded is not None and not is_empty_output(decoded)
        if "irrelevance" in scenario.category:
            result.passed = not contain_func_call
            if not result.passed:
                result.error_type = "irrelevance_error:decoder_success"
                result.error = "Valid syntax. Successfully decode AST when it should not."
        else:
            result.passed = contain_func_call
            if not result.passed:
                result.error_type = "relevance_error:decoder_failed"
                result.error = (
                    "Invalid syntax. Failed to decode AST when it should have. "
                    f"{decode_error}"
                )
        return result

    if decoded is None:
        result.error_type = "ast_decoder:decoder_failed"
        result.error = f"Invalid syntax. Failed to decode AST. {decode_error}"
        return result
    if not is_function_calling_format_output(decoded):
        result.error_type = "ast_decoder:decoder_wrong_output_format"
        result.error = "Did not output in the specified format."
        return result
    try:
        checked = ast_checker(
            copy.deepcopy(scenario.checker_functions),
            copy.deepcopy(decoded),
            copy.deepcopy(scenario.ground_truth),
            Language(scenario.language),
            scenario.category,
            CHECKER_MODEL_NAME,
        )
    except Exception as exc:  # BFCL itself would crash; report, don't crash
        result.valid = False
        result.error_type = HARNESS_ERROR
        result.error = f"ast_checker raised {type(exc).__name__}: {exc}"
        return result
    result.passed = bool(checked.get("valid"))
    if not result.passed:
        result.error_type = str(checked.get("error_type", ""))
        result.error = _errors_text(checked.get("error", ""))
        result.details["checker"] = checked
    return result


# --------------------------------------------------------------------------- multi turn


def decode_multi_turn(
    scenario: Scenario, turn_steps: list[list[list[Call]]]
) -> list[list[list[str]]]:
    """Per turn, per step: BFCL call strings; undecodable or empty steps are
    dropped exactly as BFCL's evaluation does."""
    decoded_turns: list[list[list[str]]] = []
    for turn_index, steps in enumerate(turn_steps):
        names = tools_for(scenario, min(turn_index, scenario.num_turns - 1)).original_name
        decoded_steps: list[list[str]] = []
        for step in steps:
            try:
                decoded = decode_execute(step, names)
            except Exception:  # BFCL: "Ignore any failed decoding"
                continue
            if is_empty_execute_response(decoded):
                continue
            decoded_steps.append(decoded)
        decoded_turns.append(decoded_steps)
    return decoded_turns


def check_multi_turn(
    scenario: Scenario,
    turn_steps: list[list[list[Call]]],
    raw_output: str = "",
) -> CaseResult:
    """Score a multi-turn case.

    ``turn_steps[t][s]`` is the list of calls of the model's response at
    step ``s`` of user turn ``t`` (a response with no call is ``[]``).  A run
    that stopped early (step limit) passes fewer turns and fails as BFCL's
    ``multi_turn:force_terminated``.
    """
    if scenario.category not in MULTI_TURN_CATEGORIES:
        raise ValueError(f"{scenario.case_id}: not a multi-turn category")
    flat = [
        {**call, "turn": t, "step": s}
        for t, steps in enumerate(turn_steps)
        for s, step in enumerate(steps)
        for call in (step or [])
    ]
    result = CaseResult(
        case_id=scenario.case_id,
        category=scenario.category,
        suite=scenario.suite,
        valid=True,
        passed=False,
        raw_output=raw_output,
        calls=flat,
    )
    ground_truth: list[list[str]] = scenario.ground_truth
    if len(turn_steps) != len(ground_truth):
        result.error_type = "multi_turn:force_terminated"
        result.error = (
            "Model was force-terminated during inference phase. The length of the model "
            f"result turns ({len(turn_steps)}) does not match the length of the ground "
            f"truth turns ({len(ground_truth)})."
        )
        return result
    decoded = decode_multi_turn(scenario, turn_steps)
    result.details["decoded"] = decoded
    test_entry = {
        "id": scenario.case_id,
        "initial_config": copy.deepcopy(scenario.initial_config),
        "involved_classes": list(scenario.involved_classes),
    }
    model_name = unique_model_name()
    t0 = time.perf_counter()
    try:
        checked = multi_turn_checker(
            decoded, copy.deepcopy(ground_truth), test_entry, scenario.category, model_name
        )
    except Exception as exc:
        result.valid = False
        result.error_type = HARNESS_ERROR
        result.error = f"multi_turn_checker raised {type(exc).__name__}: {exc}"
        return result
    finally:
        release_instances(model_name)
    result.details["checker_time_s"] = time.perf_counter() - t0
    result.passed = bool(checked.get("valid"))
    if not result.passed:
        result.error_type = str(checked.get("error_type", ""))
        result.error = str(checked.get("error_message", ""))
        # The details hold live instance state (file-system trees...): keep a
        # bounded text copy so results stay small and serialisable.
        result.details["checker"] = _errors_text(
            {k: v for k, v in checked.items() if k != "valid"}
        )[:MAX_DETAIL_CHARS]
    return result
