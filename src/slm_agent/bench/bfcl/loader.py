"""Load BFCL scenarios from the installed ``bfcl_eval`` data.

Entries come from BFCL's own ``load_dataset_entry`` /
``load_ground_truth_entry`` so multi-turn function docs, held-out
(``miss_func``) docs and language hints are populated exactly as BFCL's
generation step does.  Each case is loaded twice over (cached): with language
hints for what the model sees (BFCL's inference default) and without for
what the checker scores against (BFCL's evaluation does
``include_language_specific_hint=False``; for Java/JS the hinted docs even
have their types rewritten to "string", which the checker must not see).

Order is stable: categories in :data:`SUPPORTED_CATEGORIES` order, cases in
BFCL's ``sort_key`` order (numeric index) within a category.
"""
from __future__ import annotations

import copy
import functools
from typing import Any, Iterable, Optional, Sequence, TypeVar

from slm_agent.bench.bfcl.compat import ensure_bfcl
from slm_agent.bench.bfcl.tools import ToolSet, build_toolset
from slm_agent.bench.scenario import Scenario
from slm_agent.bench.suite import SuiteError, did_you_mean

ensure_bfcl()
from bfcl_eval.constants.default_prompts import (  # noqa: E402
    DEFAULT_USER_PROMPT_FOR_ADDITIONAL_FUNCTION_FC,
)
from bfcl_eval.utils import (  # noqa: E402
    extract_test_category_from_id,
    load_dataset_entry,
    load_ground_truth_entry,
    sort_key,
)

SUITE = "bfcl"

AST_CATEGORIES: tuple[str, ...] = (
    "simple_python",
    "simple_java",
    "simple_javascript",
    "multiple",
    "parallel",
    "parallel_multiple",
    "live_simple",
    "live_multiple",
    "live_parallel",
    "live_parallel_multiple",
)
#: Scored by "did the model call anything" (BFCL ``relevance_file_runner``).
RELEVANCE_CATEGORIES: tuple[str, ...] = (
    "irrelevance",
    "live_irrelevance",
    "live_relevance",
)
SINGLE_TURN_CATEGORIES: tuple[str, ...] = AST_CATEGORIES + RELEVANCE_CATEGORIES
MULTI_TURN_CATEGORIES: tuple[str, ...] = (
    "multi_turn_base",
    "multi_turn_miss_func",
    "multi_turn_miss_param",
    "multi_turn_long_context",
)
SUPPORTED_CATEGORIES: tuple[str, ...] = SINGLE_TURN_CATEGORIES + MULTI_TURN_CATEGORIES
#: Short names accepted on input (the BFCL names are canonical).
CATEGORY_ALIASES: dict[str, str] = {
    "simple": "simple_python",
    "python": "simple_python",
    "java": "simple_java",
    "javascript": "simple_javascript",
    "js": "simple_javascript",
}


class UnknownCategoryError(SuiteError):
    """Raised for a category name this harness does not support (a ValueError)."""


def resolve_category(name: str) -> str:
    """Canonical BFCL category name for ``name`` (aliases accepted)."""
    canonical = CATEGORY_ALIASES.get(name, name)
    if canonical not in SUPPORTED_CATEGORIES:
        raise UnknownCategoryError(
            f"unknown BFCL category {name!r}{did_you_mean(name, [*SUPPORTED_CATEGORIES, *CATEGORY_ALIASES])}; "
            "valid categories: "
            f"{', '.join(SUPPORTED_CATEGORIES)} "
            f"(aliases: {', '.join(f'{a}={c}' for a, c in CATEGORY_ALIASES.items())})"
        )
    return canonical


def category_of(case_id: str) -> str:
    """BFCL's category of a case id (``live_simple_3-2-0`` -> ``live_simple``)."""
    return extract_test_category_from_id(case_id)


def language_of(category: str) -> str:
    if category == "simple_java":
        return "java"
    if category == "simple_javascript":
        return "javascript"
    return "python"


@functools.lru_cache(maxsize=None)
def _entries(category: str, hinted: bool) -> tuple[dict[str, Any], ...]:
    entries = load_dataset_entry(
        category, include_prereq=False, include_language_specific_hint=hinted
    )
    return tuple(sorted(entries, key=sort_key))


@functools.lru_cache(maxsize=None)
def _ground_truth(category: str) -> dict[str, Any]:
    if category in RELEVANCE_CATEGORIES:
        return {}
    return {e["id"]: e["ground_truth"] for e in load_ground_truth_entry(category)}


def _build(category: str, hinted: dict[str, Any], raw: dict[str, Any], gt: Any) -> Scenario:
    hinted = copy.deepcopy(hinted)
    raw = copy.deepcopy(raw)
    missed: dict[int, list[dict[str, Any]]] = {
        int(k): v for k, v in (hinted.get("missed_function") or {}).items()
    }
    turns: list[list[dict[str, Any]]] = []
    for idx, msgs in enumerate(hinted["question"]):
        if idx in missed and not msgs:
            # BFCL's inference_multi_turn_FC sends this fixed prompt on a
            # held-out turn, whose dataset message list is empty.
            msgs = [{"role": "user", "content": DEFAULT_USER_PROMPT_FOR_ADDITIONAL_FUNCTION_FC}]
        turns.append(msgs)
    extra = {
        k: v
        for k, v in hinted.items()
        if k
        not in {"id", "question", "function", "missed_function", "initial_config", "involved_classes"}
    }
    return Scenario(
        suite=SUITE,
        category=category,
        case_id=hinted["id"],
        turns=turns,
        functions=hinted.get("function", []),
        involved_classes=list(hinted.get("involved_classes", [])),
        initial_config=hinted.get("initial_config", {}) or {},
        missed_functions=missed,
        ground_truth=copy.deepcopy(gt),
        language=language_of(category),
        checker_functions=raw.get("function", []),
        long_context=("long_context" in category or "composite" in category),
        extra=extra,
    )


def _load_category(
    category: str, wanted: Optional[set[str]] = None, limit: Optional[int] = None
) -> list[Scenario]:
    """Build scenarios of one category, only for the wanted ids (deep copies
    of long-context configs are the expensive part)."""
    hinted_entries = _entries(category, True)
    raw_by_id = {e["id"]: e for e in _entries(category, False)}
    gts = _ground_truth(category)
    out: list[Scenario] = []
    for entry in hinted_entries:
        if limit is not None and len(out) >= limit:
            break
        cid = entry["id"]
        if wanted is not None and cid not in wanted:
            continue
        if category not in RELEVANCE_CATEGORIES and cid not in gts:
            raise RuntimeError(f"BFCL data has no ground truth for {cid}")
        out.append(_build(category, entry, raw_by_id[cid], gts.get(cid)))
    return out


def load_scenarios(
    categories: Optional[Iterable[str]] = None,
    ids: Optional[Iterable[str]] = None,
    limit: Optional[int] = None,
) -> list[Scenario]:
    """Load BFCL scenarios.

    * ``categories``: BFCL category names (or aliases); default: all
      supported, or, when ``ids`` is given, the categories of those ids.
    * ``ids``: keep only these case ids (unknown ids raise ``KeyError``).
    * ``limit``: keep at most this many scenarios (after the other filters,
      in the stable order).
    """
    id_list = list(ids) if ids is not None else None
    if categories is not None:
        cats = [resolve_category(c) for c in categories]
    elif id_list is not None:
        cats = [resolve_category(category_of(i)) for i in id_list]
    else:
        cats = list(SUPPORTED_CATEGORIES)
    cats = [c for c in SUPPORTED_CATEGORIES if c in set(cats)]
    if limit is not None and limit < 0:
        raise ValueError("limit must be >= 0")

    wanted = set(id_list) if id_list is not None else None
    out: list[Scenario] = []
    for cat in cats:
        remaining = None if limit is None else limit - len(out)
        if remaining is not None and remaining <= 0 and wanted is None:
            break
        out.extend(_load_category(cat, wanted, None if wanted is not None else remaining))
    if wanted is not None:
        missing = sorted(wanted - {s.case_id for s in out})
        if missing:
            raise KeyError(f"case ids not found in categories {cats}: {missing}")
    if limit is not None:
        out = out[:limit]
    return out


def load_scenario(case_id: str) -> Scenario:
    """Load one case by id."""
    return load_scenarios(ids=[case_id])[0]


def tools_for(scenario: Scenario, turn: int = 0) -> ToolSet:
    """Tool specs the model sees at ``turn`` and the name mapping back.

    Returns a :class:`ToolSet`: ``.tools`` is ``[{name, description,
    parameters}]`` (JSON schema, sanitized names), ``.original_name(n)`` maps
    a name the model emitted back to the BFCL function name.
    """
    if turn < 0 or turn >= max(1, scenario.num_turns):
        raise IndexError(f"{scenario.case_id} has {scenario.num_turns} turns, not {turn + 1}")
    return build_toolset(scenario.functions_at(turn))


T = TypeVar("T")


def deterministic_sample(items: Sequence[T], n: int) -> list[T]:
    """``n`` evenly spaced items (first included), no RNG: reproducible across
    runs and Python versions."""
    if n <= 0:
        return []
    if n >= len(items):
        return list(items)
    step = len(items) / n
    return [items[int(i * step)] for i in range(n)]
