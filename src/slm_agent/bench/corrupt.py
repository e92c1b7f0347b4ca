"""Deliberately wrong gold answers: the gold agent's ``corrupt`` switch.

A fidelity run with ``corrupt`` on must score every case 0 (the checker
rejects a changed argument); these helpers change one value of a gold answer
so the result or the world state differs.  Library code (plain Python), so
the suites' gold answers (``tau2/data.py``) and the gold agent node share it
without the library importing a node.
"""
from __future__ import annotations

import copy
from typing import Any


def corrupt_value(value: Any) -> Any:
    """A different value of the same kind (the checker must reject it)."""
    if isinstance(value, bool):
        return not value
    if isinstance(value, int):
        return value + 7
    if isinstance(value, float):
        return value + 7.5
    if isinstance(value, str):
        return value + "_corrupted"
    if isinstance(value, list):
        return value + ["corrupted"]
    if isinstance(value, dict):
        return {**value, "corrupted": 1}
    return "corrupted"


def corrupt_calls(calls: list[tuple[str, dict[str, Any]]], first_tool: str) -> list[tuple[str, dict[str, Any]]]:
    """Change one argument value of the first call that has arguments (or add
    an unknown argument; with no call at all, call ``first_tool``)."""
    calls = copy.deepcopy(calls)
    for i, (name, args) in enumerate(calls):
        if args:
            key = next(iter(args))
            args[key] = corrupt_value(args[key])
            return calls
    if calls:
        calls[0][1]["corrupted_argument"] = 1
        return calls
    return [(first_tool, {})] if first_tool else calls


def corrupt_turns(turns: list[list[tuple[str, dict[str, Any]]]]) -> list[list[tuple[str, dict[str, Any]]]]:
    """Multi-turn: change the first *string* argument of the whole trajectory
    (a path or name, so the world state or a result differs; flipping e.g.
    ``ls(a=True)`` may leave both unchanged), else fall back to :func:`corrupt_calls`."""
    turns = copy.deepcopy(turns)
    for calls in turns:
        for _name, args in calls:
            for key, value in args.items():
                if isinstance(value, str):
                    args[key] = corrupt_value(value)
                    return turns
    for i, calls in enumerate(turns):
        if calls:
            turns[i] = corrupt_calls(calls, "")
            return turns
    return turns
