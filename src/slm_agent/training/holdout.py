"""The study's held-out evaluation set, and the check that training data does not touch it.

Why a check and not a convention: the LLM-to-SLM loop trains on a larger model's logged
calls and evaluates the student on the study's held-out set.  A single evaluation case (or
the same question under another id -- BFCL's live and non-live sets are built from
different sources, but a dataset may mix in anything) in the training data would make the
student's gain meaningless.  ``slm-agent finetune`` therefore refuses a dataset with any
example whose source case id is a held-out id or whose user question is a held-out
question (compared after folding case and white space).

The held-out set is declared here once (:data:`STUDY_HOLDOUT`): the first 20 cases of each
BFCL non-live single-turn category the study scores (config/grids/study.yaml names the same
set; a test keeps the two equal).
"""
from __future__ import annotations

import json
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Iterable, Optional

__all__ = ["HoldoutSpec", "HoldoutSet", "STUDY_HOLDOUT", "parse_holdout", "overlap_problems"]


@dataclass(frozen=True)
class HoldoutSpec:
    """Which cases are held out: ``limit`` per category of ``suite`` (0 = all)."""

    suite: str
    categories: tuple[str, ...]
    limit: int

    def __str__(self) -> str:
        return f"{self.suite}:{','.join(self.categories)}:{self.limit}"


#: the study's held-out set (issue 24): never trained on
STUDY_HOLDOUT = HoldoutSpec("bfcl", ("simple_python", "multiple", "parallel", "parallel_multiple", "irrelevance"), 20)


def parse_holdout(text: str) -> Optional[HoldoutSpec]:
    """``suite:cat1,cat2:limit`` (``study`` = :data:`STUDY_HOLDOUT`, ``none`` = no check)."""
    text = text.strip()
    if text == "study":
        return STUDY_HOLDOUT
    if text == "none":
        return None
    parts = text.split(":")
    if len(parts) != 3 or not parts[0] or not parts[1]:
        raise ValueError(f"expected 'study', 'none' or 'suite:cat1,cat2:limit', got {text!r}")
    try:
        limit = int(parts[2])
    except ValueError:
        raise ValueError(f"limit must be an integer >= 0, got {parts[2]!r}") from None
    if limit < 0:
        raise ValueError(f"limit must be an integer >= 0, got {limit}")
    return HoldoutSpec(parts[0], tuple(c.strip() for c in parts[1].split(",") if c.strip()), limit)


def fold(text: str) -> str:
    """A question as compared: case and runs of white space folded."""
    return re.sub(r"\s+", " ", text).strip().lower()


@dataclass
class HoldoutSet:
    """The ids and folded questions of a held-out set."""

    spec: HoldoutSpec
    ids: frozenset[str]
    questions: frozenset[str]

    @classmethod
    def load(cls, spec: HoldoutSpec) -> "HoldoutSet":
        from slm_agent.bench.suite import get_suite

        cases = get_suite(spec.suite).select(list(spec.categories), (), spec.limit)
        questions = set()
        for case in cases:
            for turn in case.turns:
                for msg in turn:
                    content = msg.get("content") if isinstance(msg, dict) else getattr(msg, "content", "")
                    if (msg.get("role") if isinstance(msg, dict) else getattr(msg, "role", "")) == "user" and content:
                        questions.add(fold(str(content)))
        return cls(spec, frozenset(c.case_id for c in cases), frozenset(questions))

    def hits(self, record: dict[str, Any]) -> str:
        """Why a training record touches the held-out set ("" when it does not)."""
        case_id = str((record.get("meta") or {}).get("case_id") or "")
        if case_id in self.ids:
            return f"case id {case_id}"
        for m in record.get("messages") or []:
            if m.get("role") == "user" and fold(str(m.get("content") or "")) in self.questions:
                return f"question {str(m.get('content'))[:60]!r}"
        return ""


def overlap_problems(files: Iterable[Path], holdout: HoldoutSet) -> list[str]:
    """One line per dataset file with examples in the held-out set (none: [])."""
    problems = []
    for path in files:
        hits = []
        n = 0
        with open(path, encoding="utf-8") as fh:
            for line in fh:
                if not line.strip():
                    continue
                n += 1
                why = holdout.hits(json.loads(line))
                if why:
                    hits.append(why)
        if hits:
            problems.append(f"{path}: {len(hits)} of {n} examples are in the held-out evaluation set "
                            f"({holdout.spec}; first: {hits[0]}): training on them would make the "
                            f"evaluation meaningless; rebuild the dataset without those runs or cases")
    return problems
