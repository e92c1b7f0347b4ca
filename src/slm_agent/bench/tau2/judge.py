"""tau2's own LLM judge of NL assertions, its LLM calls answered by one of our engines (no ROS imports).

tau2's :class:`~tau2.evaluator.evaluator_nl_assertions.NLAssertionsEvaluator`
builds the judge prompt (the conversation and the task's expected outcomes),
calls ``generate(model=DEFAULT_LLM_NL_ASSERTIONS, ...)`` and parses the JSON
answer into ``NLAssertionCheck``\\ s (assertion, met, justification).  Its
model is a module-level constant (``gpt-4o-mini``), so :func:`judge` points
that constant at our litellm provider (:mod:`.user`: ``slm_agent/<key>`` =
the engine of the judge's model profile) for the duration of one call, under
a lock, and restores it: the prompt and the parsing stay tau2's.  tau2's
``num_retries`` is set to 0 (a greedy engine would only repeat an answer).
The call also asks for tau2's answer format as a JSON schema
(:func:`answer_schema`: ``results``, one ``expectedOutcome`` / ``reasoning``
/ ``metExpectation`` per assertion), which our engines decode under
(``ChatRequest.json_schema``), so a small judge model answers in the JSON
tau2 parses; the verdict is still the model's.

An answer tau2 cannot parse (not JSON, missing fields) is an error of the
case (:attr:`NLJudgement.error`), never a pass.
"""
from __future__ import annotations

import threading
from dataclasses import dataclass, field
from typing import Any, Optional

from slm_agent.bench.tau2 import data
from slm_agent.bench.tau2.user import PROVIDER, UserModelError, check_profile, collect_calls, engine_key

#: serializes the swap of tau2's module-level judge model (one judge call at a time per process)
_PATCH_LOCK = threading.Lock()


@dataclass
class NLJudgement:
    """What the judge said about one trajectory's NL assertions."""

    model: str
    #: 1.0 when every assertion is met, else 0.0 (tau2's rule); None when the judge failed
    reward: Optional[float] = None
    #: one dict per assertion tau2 parsed: ``assertion``, ``met``, ``justification``
    verdicts: list[dict[str, Any]] = field(default_factory=list)
    #: ``"<ExceptionType>: <text>"`` when the judge's answer could not be obtained or parsed
    error: str = ""
    #: CallMetrics of the judge's LLM calls
    calls: list[Any] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        return self.reward is not None and not self.error


def answer_schema(n: int) -> dict[str, Any]:
    """The JSON tau2's judge prompt asks for (its "Example response structure"), for ``n`` assertions."""
    item = {"type": "object",
            "properties": {"expectedOutcome": {"type": "string"},
                           "reasoning": {"type": "string", "maxLength": 300},
                           "metExpectation": {"type": "boolean"}},
            "required": ["expectedOutcome", "reasoning", "metExpectation"]}
    return {"type": "object", "required": ["results"],
            "properties": {"results": {"type": "array", "items": item, "minItems": n, "maxItems": n}}}


def check_judge_profile(ref: str) -> None:
    """One line (:class:`UserModelError`) when the judge's profile ``ref`` does not load."""
    check_profile(ref, role="judge")


def judge(task: Any, trajectory: list[Any], ref: str) -> NLJudgement:
    """Judge ``task``'s NL assertions on ``trajectory`` (tau2 messages) with tau2's evaluator on profile ``ref``."""
    data.tau2()
    from tau2.evaluator import evaluator_nl_assertions as nl

    out = NLJudgement(model=ref)
    key = engine_key(ref)
    crit = task.evaluation_criteria
    n = len((crit.nl_assertions if crit else None) or [])
    fmt = {"type": "json_schema", "json_schema": {"name": "nl_assertions", "schema": answer_schema(n)}}
    with _PATCH_LOCK:
        saved = nl.DEFAULT_LLM_NL_ASSERTIONS, nl.DEFAULT_LLM_NL_ASSERTIONS_ARGS
        nl.DEFAULT_LLM_NL_ASSERTIONS = f"{PROVIDER}/{key}"
        nl.DEFAULT_LLM_NL_ASSERTIONS_ARGS = {**saved[1], "num_retries": 0, "response_format": fmt}
        try:
            with collect_calls(out.calls):
                info = nl.NLAssertionsEvaluator.calculate_reward(task=task, full_trajectory=trajectory)
        except Exception as exc:  # noqa: BLE001 - tau2's parse (JSON, KeyError, pydantic) or the engine failed
            text = " ".join(str(exc).split())
            out.error = f"{type(exc).__name__}: {text[:300]}"
            return out
        finally:
            nl.DEFAULT_LLM_NL_ASSERTIONS, nl.DEFAULT_LLM_NL_ASSERTIONS_ARGS = saved
    out.verdicts = [{"assertion": c.nl_assertion, "met": bool(c.met), "justification": c.justification}
                    for c in (info.nl_assertions or [])]
    if len(out.verdicts) < n:
        # tau2 would score all([]) = met; an answer that grades fewer assertions than asked is not a pass
        out.error = f"the judge graded {len(out.verdicts)} of {n} NL assertions"
        return out
    out.reward = float(info.reward)
    return out


__all__ = ["NLJudgement", "judge", "check_judge_profile", "UserModelError"]
