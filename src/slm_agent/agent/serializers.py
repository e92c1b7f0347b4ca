"""How tool specs and tool results are written into a prompt.

The serialization is an experimental variable (tokens per prompt, and how
well a small model follows it), so all three of ours render the same
information: compact JSON, TOON (Token-Oriented Object Notation, via the
``toon_format`` package) and plain English.  Two more are baselines that
hand the whole exchange to another syntax (``agent/call_formats.py``):
``native`` (the model's own template and call syntax) and ``bfcl`` (BFCL's
prompt mode).  The prompt view of a schema drops keys that only
the validator needs (``additionalProperties: false``, empty ``required``):
the envelope enforces them whatever the model was told.
"""
from __future__ import annotations

import copy
import json
from abc import ABC, abstractmethod
from typing import Any, Sequence

from slm_agent.agent.types import Status, ToolResult, ToolSpec

_STATUS_WORDS = {
    Status.OK: "ok",
    Status.REFUSED: "refused",
    Status.INVALID_ARGUMENTS: "invalid_arguments",
    Status.TIMEOUT: "timeout",
    Status.FAILED: "failed",
}


def prompt_schema(schema: dict[str, Any]) -> dict[str, Any]:
    """The schema as shown to the model: validator-only keys removed."""

    def strip(node: Any) -> Any:
        if isinstance(node, dict):
            out = {}
            for k, v in node.items():
                if k == "additionalProperties" and v is False:
                    continue
                if k in ("required", "properties") and not v:
                    continue
                if k in ("$schema", "title"):
                    continue
                if k in ("minimum", "maximum") and "enum" in node:  # the enum says it all
                    continue
                out[k] = strip(v)
            return out
        if isinstance(node, list):
            return [strip(v) for v in node]
        return node

    return strip(copy.deepcopy(schema))


def tool_dict(spec: ToolSpec) -> dict[str, Any]:
    d: dict[str, Any] = {"name": spec.name, "description": spec.description}
    params = prompt_schema(spec.parameters)
    if params.get("properties"):
        d["parameters"] = params
    return d


def result_dict(result: ToolResult) -> dict[str, Any]:
    d: dict[str, Any] = {"status": _STATUS_WORDS.get(result.status, str(result.status))}
    if result.status == Status.OK:
        d["result"] = result.content
    else:
        d["error"] = result.error or "no details"
    return d


class Serializer(ABC):
    """Renders tool specs and results (and example values) into prompt text."""

    name: str = ""
    #: "" = the agent's reply syntax; else the call format that owns the exchange
    #: (``native``: the model's own, ``bfcl``: BFCL's prompt mode)
    reply_format: str = ""

    @abstractmethod
    def tools(self, specs: Sequence[ToolSpec]) -> str:
        """The tool list for the system prompt."""

    @abstractmethod
    def result(self, result: ToolResult) -> str:
        """One tool result, fed back as an observation."""

    def value(self, v: Any) -> str:
        """A plain value (e.g. an example result)."""
        return self.result(ToolResult(call_id="", name="", status=Status.OK, content=v))


class JsonSerializer(Serializer):
    """One compact JSON object per tool line; results as compact JSON."""

    name = "json"

    @staticmethod
    def dumps(v: Any) -> str:
        return json.dumps(v, separators=(",", ":"), ensure_ascii=False)

    def tools(self, specs: Sequence[ToolSpec]) -> str:
        return "\n".join(self.dumps(tool_dict(s)) for s in specs)

    def result(self, result: ToolResult) -> str:
        return self.dumps(result_dict(result))


class ToonSerializer(Serializer):
    """TOON via the ``toon_format`` package (imported lazily: optional dependency)."""

    name = "toon"

    def __init__(self) -> None:
        try:
            import toon_format
        except ImportError as exc:  # pragma: no cover - depends on the install
            raise ValueError("serialization 'toon' needs the toon-format package (pip install toon-format)") from exc
        self._encode = toon_format.encode

    def tools(self, specs: Sequence[ToolSpec]) -> str:
        return self._encode({"tools": [tool_dict(s) for s in specs]})

    def result(self, result: ToolResult) -> str:
        return self._encode(result_dict(result))


def _describe(schema: dict[str, Any], depth: int = 0) -> str:
    """English for one value schema: 'a number from -10 to 10 (metres)'."""
    if depth > 4:
        return "a value"
    t = schema.get("type")
    parts: list[str] = []
    if "enum" in schema:
        parts.append("one of " + ", ".join(json.dumps(v) for v in schema["enum"]))
    elif t == "object":
        props = schema.get("properties") or {}
        req = set(schema.get("required") or [])
        inner = "; ".join(
            f"{k}{'' if k in req else ' (optional)'}: {_describe(v, depth + 1)}" for k, v in props.items()
        )
        parts.append(f"an object with {inner}" if inner else "an empty object")
    elif t == "array":
        limit = ""
        if "maxItems" in schema and schema.get("minItems") == schema["maxItems"]:
            limit = f"exactly {schema['maxItems']} "
        elif "maxItems" in schema:
            limit = f"up to {schema['maxItems']} "
        parts.append(f"a list of {limit}items, each {_describe(schema.get('items') or {}, depth + 1)}")
    elif t in ("number", "integer"):
        word = "an integer" if t == "integer" else "a number"
        lo, hi = schema.get("minimum"), schema.get("maximum")
        xlo, xhi = schema.get("exclusiveMinimum"), schema.get("exclusiveMaximum")
        fmt = lambda x: str(x) if isinstance(x, int) else f"{x:g}"  # noqa: E731
        low = f"at least {fmt(lo)}" if lo is not None else (f"greater than {fmt(xlo)}" if xlo is not None else "")
        high = f"at most {fmt(hi)}" if hi is not None else (f"less than {fmt(xhi)}" if xhi is not None else "")
        bounds = f"from {fmt(lo)} to {fmt(hi)}" if lo is not None and hi is not None else \
            " and ".join(x for x in (low, high) if x)
        parts.append(f"{word} {bounds}".strip())
    elif t == "string":
        parts.append("text" + (f" of at most {schema['maxLength']} characters" if "maxLength" in schema else ""))
    elif t == "boolean":
        parts.append("true or false")
    else:
        parts.append("a value")
    if schema.get("description"):
        parts.append(f"({schema['description']})")
    return " ".join(parts)


def _plain_value(v: Any) -> str:
    if isinstance(v, dict):
        return ", ".join(f"{k} {_plain_value(x)}" for k, x in v.items()) or "nothing"
    if isinstance(v, list):
        return "[" + "; ".join(_plain_value(x) for x in v) + "]"
    if isinstance(v, bool):
        return "true" if v else "false"
    return str(v)


class NaturalSerializer(Serializer):
    """Tools and results as English sentences (no brackets for a base model to copy)."""

    name = "natural"

    def tools(self, specs: Sequence[ToolSpec]) -> str:
        lines = []
        for s in specs:
            props = (s.parameters.get("properties") or {}) if isinstance(s.parameters, dict) else {}
            req = set(s.parameters.get("required") or []) if isinstance(s.parameters, dict) else set()
            if props:
                args = "; ".join(
                    f"{k}{'' if k in req else ' (optional)'}: {_describe(v)}" for k, v in props.items()
                )
                lines.append(f"- {s.name}: {s.description} Arguments: {args}.")
            else:
                lines.append(f"- {s.name}: {s.description} No arguments.")
        return "\n".join(lines)

    def result(self, result: ToolResult) -> str:
        who = result.name or "the tool"
        if result.status == Status.OK:
            content = result.content
            body = _plain_value(content) if isinstance(content, (dict, list)) else str(content)
            return f"{who} succeeded: {body}." if result.name else f"{body}."
        word = _STATUS_WORDS.get(result.status, "failed").replace("_", " ")
        return f"{who} {word}: {result.error or 'no details'}."


class NativeSerializer(JsonSerializer):
    """The model's own format (``agent/call_formats.py``): tools go to its chat template as
    JSON, results come back as its template's tool messages (compact JSON)."""

    name = "native"
    reply_format = "native"


class BfclSerializer(Serializer):
    """BFCL's prompt mode (``agent/call_formats.py``): tools as BFCL lists them (indented
    JSON), results as the text an executable BFCL function returns."""

    name = "bfcl"
    reply_format = "bfcl"

    def tools(self, specs: Sequence[ToolSpec]) -> str:
        return json.dumps([{"name": s.name, "description": s.description, "parameters": s.parameters}
                           for s in specs], indent=4)

    def result(self, result: ToolResult) -> str:
        if result.status != Status.OK:
            return f"Error during execution: {result.error or 'no details'}"
        c = result.content
        return c if isinstance(c, str) else json.dumps(c, ensure_ascii=False)


SERIALIZERS: dict[str, type[Serializer]] = {
    JsonSerializer.name: JsonSerializer,
    ToonSerializer.name: ToonSerializer,
    NaturalSerializer.name: NaturalSerializer,
    NativeSerializer.name: NativeSerializer,
    BfclSerializer.name: BfclSerializer,
}


def get_serializer(name: str) -> Serializer:
    """Serializer by registry name; unknown names list the valid ones."""
    cls = SERIALIZERS.get((name or "").strip().lower())
    if cls is None:
        raise ValueError(f"unknown serialization '{name}'; valid: {', '.join(sorted(SERIALIZERS))}")
    return cls()
