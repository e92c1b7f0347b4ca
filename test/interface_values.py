"""Deterministic, non-default values for any ROS message type, by introspection.

Both sides of the cross-process test compute the same value for a type and
seed, so each side can check what it received field by field without the
values being sent separately. New interfaces are covered automatically.
"""
from __future__ import annotations

import array
import importlib
import math
from typing import Any

from rosidl_parser import definition as d

_INT_RANGES = {
    "int8": (-128, 127), "uint8": (0, 255), "int16": (-2**15, 2**15 - 1), "uint16": (0, 2**16 - 1),
    "int32": (-2**31, 2**31 - 1), "uint32": (0, 2**32 - 1), "int64": (-2**63, 2**63 - 1),
    "uint64": (0, 2**64 - 1),
}


def _basic(t: d.BasicType, seed: int, name: str) -> Any:
    tn = t.typename
    if tn == "boolean":
        return seed % 2 == 0
    if tn in ("octet",):
        return bytes([(seed * 37 + 11) % 256])
    if tn == "char":
        return chr(65 + seed % 26)
    if tn in ("float", "double"):
        # exactly representable in float32 so both widths round-trip exactly
        return float((seed % 997) + 0.25) * (-1 if seed % 3 == 0 else 1)
    lo, hi = _INT_RANGES[tn]
    # exercise the extremes of the type for some seeds
    if seed % 5 == 0:
        return hi
    if seed % 5 == 1 and lo < 0:
        return lo
    return lo + (seed * 7919 + 1) % (hi - lo) if hi - lo < 10**6 else (seed * 7919 + 1) % hi


def _nested_class(t: d.NamespacedType):
    module = importlib.import_module(".".join(t.namespaces))
    return getattr(module, t.name)


def value_for(t, seed: int, name: str) -> Any:
    if isinstance(t, d.BasicType):
        return _basic(t, seed, name)
    if isinstance(t, (d.UnboundedString, d.BoundedString)):
        s = f"{name}:{seed}:ünï✓"
        return s[: t.maximum_size] if isinstance(t, d.BoundedString) else s
    if isinstance(t, (d.UnboundedWString, d.BoundedWString)):
        return f"w{seed}"
    if isinstance(t, d.NamespacedType):
        return fill(_nested_class(t), seed + 1)
    if isinstance(t, d.AbstractNestedType):
        if isinstance(t, d.Array):
            n = t.size
        elif isinstance(t, d.BoundedSequence):
            n = min(t.maximum_size, 2 + seed % 3)
        else:
            n = 2 + seed % 3
        return [value_for(t.value_type, seed * 3 + i + 1, name) for i in range(n)]
    raise TypeError(f"unhandled type {t!r} for field {name}")


def fill(cls, seed: int):
    msg = cls()
    for i, (name, slot) in enumerate(zip(cls.get_fields_and_field_types(), cls.SLOT_TYPES)):
        setattr(msg, name, value_for(slot, seed * 31 + i, name))
    return msg


def plain(value: Any) -> Any:
    """Messages, arrays and numpy values as plain Python for exact comparison."""
    if hasattr(value, "get_fields_and_field_types"):
        return {k: plain(getattr(value, k)) for k in value.get_fields_and_field_types()}
    if isinstance(value, (list, tuple, array.array)) or type(value).__module__ == "numpy":
        try:
            return [plain(v) for v in value]
        except TypeError:
            return value.item()
    if isinstance(value, float) and math.isnan(value):
        return "NaN"
    return value


def diff(expected: Any, got: Any, path: str = "") -> list[str]:
    """Human-readable differences between two plain() trees."""
    if isinstance(expected, dict) and isinstance(got, dict):
        out: list[str] = []
        for k in expected:
            out += diff(expected[k], got.get(k), f"{path}.{k}")
        return out
    if isinstance(expected, list) and isinstance(got, list):
        if len(expected) != len(got):
            return [f"{path}: length {len(got)} != {len(expected)}"]
        out = []
        for i, (a, b) in enumerate(zip(expected, got)):
            out += diff(a, b, f"{path}[{i}]")
        return out
    return [] if expected == got else [f"{path}: {got!r} != {expected!r}"]


def all_types(kind: str) -> list[tuple[str, Any]]:
    """(name, class) of every slm_agent interface of ``kind`` (msg, srv, action)."""
    module = importlib.import_module(f"slm_agent.{kind}")
    out = []
    for name in sorted(dir(module)):
        obj = getattr(module, name)
        if isinstance(obj, type) and not name.startswith("_") and "_" not in name:
            out.append((name, obj))
    return out
