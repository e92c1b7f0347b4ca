"""Suite-neutral benchmark data model (plain Python, no ROS, no BFCL import).

A :class:`Scenario` is everything the agent needs to replay one benchmark
case; a :class:`CaseResult` is the scored outcome, shaped like
``slm_agent/msg/ScenarioResult`` so the benchmark node can copy it field by
field.  ``ground_truth`` is deliberately opaque: only the suite's checker
interprets it, never the agent.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Optional

#: A message as sent to the model: OpenAI-style ``{"role", "content", ...}``.
Message = dict[str, Any]
#: A parsed model tool call: ``{"name": str, "arguments": dict | str}``
#: (``arguments`` may be the raw JSON text the model emitted).
Call = dict[str, Any]


@dataclass
class Scenario:
    """One benchmark case.

    ``turns`` has one message list per user turn (single-turn cases have one).
    ``functions`` are the function docs the model is shown at the first turn
    (for BFCL exactly what BFCL's inference shows: language hints applied,
    held-out functions removed); ``missed_functions`` maps a turn index to the
    docs revealed at that turn (BFCL ``multi_turn_miss_func``).
    ``checker_functions`` are the docs the official checker scores against
    (for BFCL: the raw docs, without inference-time language hints).
    """

    suite: str
    category: str
    case_id: str
    turns: list[list[Message]]
    functions: list[dict[str, Any]]
    involved_classes: list[str] = field(default_factory=list)
    initial_config: dict[str, Any] = field(default_factory=dict)
    missed_functions: dict[int, list[dict[str, Any]]] = field(default_factory=dict)
    ground_truth: Any = None
    language: str = "python"
    checker_functions: list[dict[str, Any]] = field(default_factory=list)
    long_context: bool = False
    extra: dict[str, Any] = field(default_factory=dict)

    @property
    def is_multi_turn(self) -> bool:
        return bool(self.involved_classes)

    @property
    def num_turns(self) -> int:
        return len(self.turns)

    def functions_at(self, turn: int) -> list[dict[str, Any]]:
        """Function docs visible at ``turn``: initial ones plus every held-out
        doc revealed at or before it, in BFCL's order (revealed docs are
        appended, as BFCL's ``test_entry["function"].extend`` does)."""
        docs = list(self.functions)
        for idx in sorted(self.missed_functions):
            if idx <= turn:
                docs.extend(self.missed_functions[idx])
        return docs

    def all_functions(self) -> list[dict[str, Any]]:
        """Every function doc of the case, including all held-out ones."""
        return self.functions_at(max([0, *self.missed_functions.keys()]))


@dataclass
class CaseResult:
    """A scored case (mirrors ``slm_agent/msg/ScenarioResult``).

    ``valid`` is False only when the case could not be run or scored (harness
    or checker failure, ``error`` says why); a model that answers wrongly is
    ``valid=True, passed=False`` with the official checker's ``error_type``.
    """

    case_id: str
    category: str
    valid: bool
    passed: bool
    error_type: str = ""
    error: str = ""
    raw_output: str = ""
    calls: list[Call] = field(default_factory=list)
    suite: str = "bfcl"
    details: dict[str, Any] = field(default_factory=dict)
    wall_time_s: Optional[float] = None
