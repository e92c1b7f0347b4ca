"""Lenient number conversion for values that may be missing or garbage.

Why one function: JSON records (``results.jsonl``, bag messages as dicts) and
message fields (float64 where NaN means "unknown") all need "a float, or NaN
when there is none"; three private copies of it used to exist.  Plain Python.
"""
from __future__ import annotations

import math
from typing import Any


def num(value: Any) -> float:
    """A float from ``value``; None, missing or garbage -> NaN (never raises)."""
    try:
        return float(value)
    except (TypeError, ValueError):
        return math.nan


__all__ = ["num"]
