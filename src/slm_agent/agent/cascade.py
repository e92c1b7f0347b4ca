"""Cascade (issue 26): the small model answers first, a larger one takes the exceptions.

Why a module of its own: *when* to escalate a step is a policy that must be
tested on its own (each trigger escalates exactly the steps it names) and
measured before it is tuned (``benchmarks/escalation_roc.py``); the loop only
asks :class:`CascadePolicy` and re-asks the step of the fallback.

Triggers (agent setting ``escalate_on``, a comma-separated list):

* ``undecodable`` -- the primary's reply decodes neither as calls nor as an
  answer (the strategy's decision has no call and no final text);
* ``invalid`` -- a call of the reply fails its tool's schema or the safety
  envelope (unknown tool, confirmation, arguments; the rate limit is not the
  model's fault and is not checked here, see :meth:`SafetyEnvelope.problem`);
* ``tool_error`` -- a tool answered FAILED.  The call already ran, and a call
  is never re-sent (at most once), so the *next* step -- the one that reads the
  error -- is asked of the fallback instead of the primary;
* ``low_confidence`` -- the primary's confidence (``escalate_signal``) is
  below ``escalate_threshold``.  An unknown confidence (NaN: an engine that
  reports none) is not low.

The first three are checked in that order on the primary's reply; the first
that fires names the step's trigger.  An escalated step is re-asked of the
fallback with the same conversation, rendered for the fallback's own profile
(its chat template, prompt layout and call syntax); the fallback's reply is
the step's reply, and the goal goes on with the primary.

Plain Python.
"""
from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Any, Optional, Sequence

from slm_agent.agent.types import Status, ToolResult

#: the triggers of ``escalate_on``, in the order they are checked
TRIGGERS: tuple[str, ...] = ("undecodable", "invalid", "tool_error", "low_confidence")
#: the confidence signals every engine call records (CallMetrics fields of the same names)
SIGNALS: tuple[str, ...] = ("min_logprob", "top_margin")


def parse_triggers(text: str) -> tuple[str, ...]:
    """``"invalid, undecodable"`` -> the triggers in :data:`TRIGGERS` order; ValueError
    naming an unknown one (blanks, case and repeats do not matter; "" = none)."""
    names = [t.strip().lower() for t in (text or "").split(",") if t.strip()]
    bad = [n for n in names if n not in TRIGGERS]
    if bad:
        raise ValueError(f"unknown trigger(s) {', '.join(map(repr, bad))}; valid: {', '.join(TRIGGERS)}")
    return tuple(t for t in TRIGGERS if t in names)


def confidence(metrics: Any, signal: str) -> float:
    """The call's confidence by ``signal`` (NaN when the call or the engine gave none)."""
    if signal not in SIGNALS:
        raise ValueError(f"unknown confidence signal {signal!r}; valid: {', '.join(SIGNALS)}")
    value = getattr(metrics, signal, math.nan) if metrics is not None else math.nan
    try:
        return float(value)
    except (TypeError, ValueError):
        return math.nan


def is_tool_error(result: ToolResult) -> bool:
    """A tool answered with an error: FAILED, with a known outcome (a timeout or a server
    gone mid-call is not the model's doing, and the fallback cannot mend it)."""
    return result.status == Status.FAILED and not result.outcome_unknown


@dataclass(frozen=True)
class CascadePolicy:
    """Which triggers escalate, and the confidence rule of ``low_confidence``."""

    triggers: tuple[str, ...] = ()
    threshold: float = -3.3      # the measured default of AgentSettings.escalate_threshold
    signal: str = "min_logprob"

    def __post_init__(self) -> None:
        parse_triggers(",".join(self.triggers))
        confidence(None, self.signal)  # ValueError for an unknown signal

    @classmethod
    def from_settings(cls, escalate_on: str, threshold: float, signal: str) -> "CascadePolicy":
        return cls(parse_triggers(escalate_on), float(threshold), signal)

    def on(self, trigger: str) -> bool:
        return trigger in self.triggers

    def before_tools(self, *, undecodable: bool, invalid: bool, metrics: Any) -> str:
        """The trigger that escalates a reply before any of its calls run ("" = none)."""
        if undecodable and self.on("undecodable"):
            return "undecodable"
        if invalid and self.on("invalid"):
            return "invalid"
        if self.on("low_confidence"):
            value = confidence(metrics, self.signal)
            if math.isfinite(value) and value < self.threshold:
                return "low_confidence"
        return ""

    def after_tools(self, results: Sequence[ToolResult]) -> str:
        """``tool_error`` when a result calls for the next step to go to the fallback."""
        if self.on("tool_error") and any(is_tool_error(r) for r in results):
            return "tool_error"
        return ""


@dataclass
class Cascade:
    """What a goal needs to escalate: the fallback engine, its strategy (the goal's
    strategy and serialization rendered for the fallback's profile) and the policy."""

    engine: Any          # slm_agent.engines.base.Engine
    strategy: Any        # slm_agent.agent.strategies.Strategy
    policy: CascadePolicy = field(default_factory=CascadePolicy)


__all__ = ["Cascade", "CascadePolicy", "SIGNALS", "TRIGGERS", "confidence", "is_tool_error", "parse_triggers"]
