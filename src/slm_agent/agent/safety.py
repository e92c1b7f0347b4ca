"""The safety envelope between what a model asks for and what reaches the robot.

Why a hand-written validator instead of ``jsonschema``: the errors are fed
back to a small model as its next observation, so each must name the field,
the bad value and what would be accepted ("goal.x: 12 is above the maximum
10"), and the checked subset is exactly what :mod:`schema` emits.  The tests
cross-check derived schemas with ``jsonschema`` so the two do not disagree.

Order of checks (first failure wins, nothing after it runs):
unknown tool -> REFUSED; needs confirmation -> REFUSED; arguments ->
INVALID_ARGUMENTS; rate limit -> REFUSED.  Only calls that pass every check
count against the rate limit.
"""
from __future__ import annotations

import json
import math
import threading
import time
from typing import Any, Callable, Iterable, Optional

from slm_agent.agent.types import Status, ToolCall, ToolResult, ToolSpec

MAX_ERRORS = 8

_JSON_TYPES = {
    "object": "an object",
    "array": "a list",
    "string": "a string",
    "integer": "an integer",
    "number": "a number",
    "boolean": "true or false",
    "null": "null",
}


def _short(v: Any, limit: int = 40) -> str:
    try:
        text = json.dumps(v, ensure_ascii=False)
    except (TypeError, ValueError):
        text = repr(v)
    return text if len(text) <= limit else text[: limit - 3] + "..."


def _kind(v: Any) -> str:
    if v is None:
        return "null"
    if isinstance(v, bool):
        return "boolean"
    if isinstance(v, int):
        return "integer"
    if isinstance(v, float):
        return "number"
    if isinstance(v, str):
        return "string"
    if isinstance(v, (list, tuple)):
        return "array"
    if isinstance(v, dict):
        return "object"
    return type(v).__name__


def _is_type(v: Any, t: str) -> bool:
    if t == "integer":
        return (isinstance(v, int) and not isinstance(v, bool)) or (
            isinstance(v, float) and math.isfinite(v) and v.is_integer()
        )
    if t == "number":
        return isinstance(v, (int, float)) and not isinstance(v, bool)
    return _kind(v) == t


def _enum_match(v: Any, e: Any) -> bool:
    """Equality without Python's True == 1 (a JSON boolean is not a number)."""
    if isinstance(v, bool) or isinstance(e, bool):
        return isinstance(v, bool) and isinstance(e, bool) and v == e
    if _is_type(v, "number") and _is_type(e, "number"):
        return v == e
    return _kind(v) == _kind(e) and v == e


def validate_value(schema: dict[str, Any], value: Any, path: str = "") -> list[str]:
    """Errors for ``value`` against ``schema`` (empty list: valid)."""
    errors: list[str] = []
    _validate(schema, value, path, errors)
    return errors[:MAX_ERRORS]


def _validate(schema: Any, v: Any, path: str, errors: list[str]) -> None:
    if len(errors) >= MAX_ERRORS or not isinstance(schema, dict):
        return
    where = path or "arguments"
    if "anyOf" in schema or "oneOf" in schema:
        options = schema.get("anyOf") or schema.get("oneOf") or []
        if not any(not validate_value(o, v, path) for o in options):
            errors.append(f"{where}: {_short(v)} matches none of the allowed forms")
        return
    t = schema.get("type")
    if t is not None:
        types = t if isinstance(t, list) else [t]
        if not any(_is_type(v, x) for x in types):
            want = " or ".join(_JSON_TYPES.get(x, x) for x in types)
            errors.append(f"{where}: expected {want}, got {_kind(v)} {_short(v)}")
            return
    if "const" in schema and v != schema["const"]:
        errors.append(f"{where}: must be {_short(schema['const'])}, got {_short(v)}")
        return
    if "enum" in schema and not any(_enum_match(v, e) for e in schema["enum"]):
        allowed = ", ".join(_short(e) for e in schema["enum"])
        errors.append(f"{where}: {_short(v)} is not one of [{allowed}]")
        return
    if _is_type(v, "number"):
        if isinstance(v, float) and not math.isfinite(v):
            errors.append(f"{where}: {v} is not a finite number")
            return
        lo, hi = schema.get("minimum"), schema.get("maximum")
        xlo, xhi = schema.get("exclusiveMinimum"), schema.get("exclusiveMaximum")
        if lo is not None and v < lo:
            errors.append(f"{where}: {_short(v)} is below the minimum {lo}")
        elif xlo is not None and v <= xlo:
            errors.append(f"{where}: {_short(v)} must be greater than {xlo}")
        elif hi is not None and v > hi:
            errors.append(f"{where}: {_short(v)} is above the maximum {hi}")
        elif xhi is not None and v >= xhi:
            errors.append(f"{where}: {_short(v)} must be less than {xhi}")
    elif isinstance(v, str):
        if "maxLength" in schema and len(v) > schema["maxLength"]:
            errors.append(f"{where}: text of {len(v)} characters exceeds maxLength {schema['maxLength']}")
        if "minLength" in schema and len(v) < schema["minLength"]:
            errors.append(f"{where}: text shorter than minLength {schema['minLength']}")
    elif isinstance(v, (list, tuple)):
        if "maxItems" in schema and len(v) > schema["maxItems"]:
            errors.append(f"{where}: {len(v)} items exceed maxItems {schema['maxItems']}")
            return
        if "minItems" in schema and len(v) < schema["minItems"]:
            errors.append(f"{where}: {len(v)} items, needs at least {schema['minItems']}")
            return
        items = schema.get("items")
        if isinstance(items, dict):
            for i, item in enumerate(v):
                _validate(items, item, f"{path}[{i}]" if path else f"[{i}]", errors)
    elif isinstance(v, dict):
        props = schema.get("properties") or {}
        for key in schema.get("required") or []:
            if key not in v:
                errors.append(f"{where}: missing required field '{key}'")
        extra = schema.get("additionalProperties", True)
        for key, item in v.items():
            sub = f"{path}.{key}" if path else str(key)
            if key in props:
                _validate(props[key], item, sub, errors)
            elif extra is False:
                valid = ", ".join(props) or "none"
                errors.append(f"{where}: unexpected field '{key}' (valid fields: {valid})")
            elif isinstance(extra, dict):
                _validate(extra, item, sub, errors)


def validate_arguments(spec: ToolSpec, arguments: Any) -> list[str]:
    """Errors for a call's arguments against the tool's schema."""
    if not isinstance(arguments, dict):
        return [f"arguments must be an object, got {_kind(arguments)}"]
    return validate_value(spec.parameters, arguments, "")


class SafetyEnvelope:
    """Allowlist, argument validation, confirmation and per-tool rate limits.

    Thread-safe: parallel calls in one turn may be checked concurrently.
    ``clock`` is injectable so rate-limit tests need not sleep.
    """

    def __init__(self, tools: Iterable[ToolSpec], clock: Callable[[], float] = time.monotonic) -> None:
        self.tools: dict[str, ToolSpec] = {t.name: t for t in tools}
        self._clock = clock
        self._last_accept: dict[str, float] = {}
        self._lock = threading.Lock()

    def spec(self, name: str) -> Optional[ToolSpec]:
        return self.tools.get(name)

    def problem(self, call: ToolCall, allow_confirmation: bool = False) -> Optional[ToolResult]:
        """The refusal of every check but the rate limit (None: the call is well formed).

        No side effect (no rate-limit slot is taken): the cascade asks it of a
        reply before deciding whether its calls run at all (agent/cascade.py)."""

        def refuse(status: Status, error: str) -> ToolResult:
            return ToolResult(call_id=call.id, name=call.name, status=status, error=error)

        spec = self.tools.get(call.name)
        if spec is None:
            names = ", ".join(sorted(self.tools)) or "none"
            return refuse(Status.REFUSED, f"unknown tool '{call.name}'; available tools: {names}")
        if spec.requires_confirmation and not allow_confirmation:
            return refuse(
                Status.REFUSED,
                f"tool '{spec.name}' requires confirmation and this task does not allow it",
            )
        errors = validate_arguments(spec, call.arguments)
        if errors:
            return refuse(Status.INVALID_ARGUMENTS, "; ".join(errors))
        return None

    def check(self, call: ToolCall, allow_confirmation: bool = False) -> Optional[ToolResult]:
        """None if the call may go to its service, else the refusal to report."""

        def refuse(status: Status, error: str) -> ToolResult:
            return ToolResult(call_id=call.id, name=call.name, status=status, error=error)

        refusal = self.problem(call, allow_confirmation)
        if refusal is not None:
            return refusal
        spec = self.tools[call.name]
        if spec.max_rate_hz > 0:
            interval = 1.0 / spec.max_rate_hz
            with self._lock:
                now = self._clock()
                last = self._last_accept.get(spec.name)
                if last is not None and now - last < interval:
                    wait = interval - (now - last)
                    return refuse(
                        Status.REFUSED,
                        f"rate limit: '{spec.name}' allows {spec.max_rate_hz:g} calls/s; retry in {wait:.2f} s",
                    )
                self._last_accept[spec.name] = now
        return None
