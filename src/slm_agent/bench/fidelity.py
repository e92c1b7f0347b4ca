"""Harness fidelity: BFCL's gold answers, scored by our pipeline, must pass.

If the loader, tool-name mapping, call decoding, environment or checker
wiring distorted anything, gold answers would start failing; so this is the
harness's own acceptance test (used by ``test/bench`` and, later, a CLI).

* Single-turn AST categories: ``gold.gold_calls`` (sanitized names, Java/JS
  literals) -> ``checker.check_single_turn``.
* ``irrelevance``/``live_irrelevance``: the perfect answer is no call.
  ``live_relevance`` has no ground truth: the perfect answer is *any* call;
  we call the first offered tool.
* Multi-turn: the gold call strings are parsed to keyword calls, executed one
  per step through a :class:`MultiTurnEnvironment` (or any ``execute``
  callable, e.g. ROS service clients), and the recorded trajectory is scored
  with ``multi_turn_checker``.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Callable, Iterable, Optional

from slm_agent.bench.bfcl.checker import check_multi_turn, check_single_turn
from slm_agent.bench.bfcl.environment import MultiTurnEnvironment, class_method_signatures
from slm_agent.bench.bfcl.gold import gold_calls, gold_turns
from slm_agent.bench.bfcl.loader import (
    MULTI_TURN_CATEGORIES,
    RELEVANCE_CATEGORIES,
    deterministic_sample,
    load_scenarios,
    tools_for,
)
from slm_agent.bench.scenario import Call, CaseResult, Scenario

#: ``execute(name, arguments) -> result text`` for one tool call.
Executor = Callable[[str, dict[str, Any]], str]


@dataclass
class CategoryFidelity:
    category: str
    total: int = 0
    passed: int = 0
    failures: list[CaseResult] = field(default_factory=list)

    @property
    def rate(self) -> float:
        return self.passed / self.total if self.total else float("nan")


def gold_single_turn(scenario: Scenario) -> CaseResult:
    """Score the perfect answer of a single-turn case."""
    toolset = tools_for(scenario, 0)
    if scenario.category in RELEVANCE_CATEGORIES:
        if "irrelevance" in scenario.category:
            calls: list[Call] = []
        else:
            calls = [{"name": toolset.tools[0]["name"], "arguments": {}}]
        return check_single_turn(scenario, calls, "", toolset)
    return check_single_turn(scenario, gold_calls(scenario, toolset), "", toolset)


def gold_trajectory(
    scenario: Scenario, execute: Executor
) -> list[list[list[Call]]]:
    """Execute a multi-turn case's gold calls (one call per step) through
    ``execute`` and return the trajectory with each call's ``result``."""
    sigs = class_method_signatures(scenario.involved_classes)
    sanitized = {}
    trajectory: list[list[list[Call]]] = []
    for turn_index, turn in enumerate(gold_turns(scenario, sigs.__getitem__)):
        sanitized.update(tools_for(scenario, turn_index).to_sanitized)
        steps: list[list[Call]] = []
        for name, args in turn:
            tool_name = sanitized.get(name, name)
            result = execute(tool_name, args)
            steps.append([{"name": tool_name, "arguments": args, "result": result}])
        trajectory.append(steps)
    return trajectory


def gold_multi_turn(
    scenario: Scenario, execute: Optional[Executor] = None
) -> tuple[CaseResult, list[list[list[Call]]]]:
    """Run and score a multi-turn case's gold trajectory.

    Without ``execute`` a fresh in-process :class:`MultiTurnEnvironment` runs
    the calls.  Returns the result and the trajectory (with results).
    """
    if execute is None:
        with MultiTurnEnvironment(scenario) as env:
            trajectory = gold_trajectory(scenario, env.execute)
    else:
        trajectory = gold_trajectory(scenario, execute)
    return check_multi_turn(scenario, trajectory), trajectory


def gold_result(scenario: Scenario) -> CaseResult:
    if scenario.category in MULTI_TURN_CATEGORIES:
        return gold_multi_turn(scenario)[0]
    return gold_single_turn(scenario)


def run_fidelity(
    categories: Optional[Iterable[str]] = None,
    ids: Optional[Iterable[str]] = None,
    limit: Optional[int] = None,
    sample_per_category: Optional[int] = None,
) -> dict[str, CategoryFidelity]:
    """Gold pass rate per category.

    ``sample_per_category`` keeps an evenly spaced deterministic sample of
    each category (after ``ids``/``limit``); ``None`` runs all cases.
    """
    scenarios = load_scenarios(categories=categories, ids=ids, limit=limit)
    by_cat: dict[str, list[Scenario]] = {}
    for sc in scenarios:
        by_cat.setdefault(sc.category, []).append(sc)
    report: dict[str, CategoryFidelity] = {}
    for cat, items in by_cat.items():
        if sample_per_category is not None:
            items = deterministic_sample(items, sample_per_category)
        fid = CategoryFidelity(cat)
        for sc in items:
            res = gold_result(sc)
            fid.total += 1
            if res.passed:
                fid.passed += 1
            else:
                fid.failures.append(res)
        report[cat] = fid
    return report


def format_report(report: dict[str, CategoryFidelity]) -> str:
    lines = [f"{'category':28s} {'passed':>7s} {'total':>6s} {'rate':>7s}"]
    for cat, fid in report.items():
        lines.append(f"{cat:28s} {fid.passed:7d} {fid.total:6d} {fid.rate:7.1%}")
        for fail in fid.failures:
            lines.append(f"    FAIL {fail.case_id}: {fail.error_type} {fail.error[:160]}")
    return "\n".join(lines)


if __name__ == "__main__":  # pragma: no cover - manual use
    import argparse

    ap = argparse.ArgumentParser(description="BFCL gold-answer fidelity of the harness")
    ap.add_argument("--categories", nargs="*")
    ap.add_argument("--ids", nargs="*")
    ap.add_argument("--limit", type=int)
    ap.add_argument("--sample", type=int, help="deterministic sample per category")
    ns = ap.parse_args()
    print(format_report(run_fidelity(ns.categories, ns.ids, ns.limit, ns.sample)))
