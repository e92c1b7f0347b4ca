"""ToolMind-format JSONL -> :class:`Sample` (normalising its known quirks).

A ToolMind row is ``{"conversations": [...], "tools": [...]}`` with roles
system/user/assistant/tool.  What is normalised (each counted in
``fixes``), and what drops a row (counted in :class:`Drops` with the reason):

* ``<think>...</think>`` in assistant text: removed (the model we train
  answers in our strategy's format, not with free-form thoughts);
* ``tool_calls`` of ``{"function": {"name", "arguments"}}``: ``arguments`` an
  object or a JSON string (parsed; unparseable drops the row);
* tool results paired with the calls *by position* (ids are assigned; a
  count that does not pair drops the row);
* tool schemas: Python type names (``str``, ``List[str]``, ``Optional[int]``,
  ``Dict[str, Any]``) mapped to JSON Schema, a flat property map wrapped into
  ``{"type": "object", "properties": ...}``, ``arguments`` used instead of
  ``parameters``, ``{"type": "function", "function": {...}}`` wrapped twice,
  and ``tools`` given as a JSON string.
"""
from __future__ import annotations

import json
import re
from collections import Counter
from pathlib import Path
from typing import Any, Iterator, Optional

from slm_agent.dataset.records import Drops, Sample, function_tool

SOURCE = "toolmind"
ROLES = ("system", "user", "assistant", "tool")
_THINK_RE = re.compile(r"<think>.*?(</think>|$)", re.DOTALL | re.IGNORECASE)
_SCALARS = {"str": "string", "string": "string", "int": "integer", "integer": "integer", "float": "number",
            "number": "number", "double": "number", "bool": "boolean", "boolean": "boolean",
            "dict": "object", "object": "object", "list": "array", "array": "array", "tuple": "array",
            "none": "null", "null": "null"}


class RowError(ValueError):
    """A row that cannot be used; the message is the drop reason."""


def json_type(text: str) -> dict[str, Any]:
    """A Python/typing type name as a JSON schema (``List[str]`` -> array of strings); {} when unknown."""
    t = text.strip()
    m = re.fullmatch(r"(?i)(?:typing\.)?optional\[(.+)\]", t)
    if m:
        return json_type(m.group(1))
    m = re.fullmatch(r"(?i)(?:typing\.)?(list|tuple|set|sequence)\[(.+)\]", t)
    if m:
        inner = json_type(m.group(2).split(",")[0])
        return {"type": "array", **({"items": inner} if inner else {})}
    m = re.fullmatch(r"(?i)(?:typing\.)?(dict|mapping)\[.+\]", t)
    if m:
        return {"type": "object"}
    scalar = _SCALARS.get(t.lower())
    return {"type": scalar} if scalar else {}


def _fix_schema(node: Any, fixes: Counter) -> Any:
    """Recursively map non-JSON-Schema type names."""
    if isinstance(node, list):
        return [_fix_schema(v, fixes) for v in node]
    if not isinstance(node, dict):
        return node
    out = {k: _fix_schema(v, fixes) if k in ("items", "anyOf", "oneOf") else v
           for k, v in node.items()}
    if isinstance(out.get("properties"), dict):
        out["properties"] = {k: _fix_schema(v, fixes) for k, v in node["properties"].items()}
    t = out.get("type")
    if isinstance(t, str) and t not in ("string", "integer", "number", "boolean", "object", "array", "null"):
        mapped = json_type(t)
        fixes["schema type names mapped"] += 1
        out.pop("type")
        out = {**mapped, **{k: v for k, v in out.items() if k != "items" or "items" not in mapped}}
    return out


def normalize_tool(raw: Any, fixes: Counter) -> dict[str, Any]:
    """One messy tool entry -> an OpenAI tools entry; :class:`RowError` if it has no name."""
    if isinstance(raw, str):
        try:
            raw = json.loads(raw)
        except ValueError:
            raise RowError("tool schema is not JSON") from None
    depth = 0
    while isinstance(raw, dict) and isinstance(raw.get("function"), dict):
        raw = raw["function"]
        depth += 1
    if depth > 1:
        fixes["tool double-wrapped"] += 1
    if not isinstance(raw, dict) or not isinstance(raw.get("name"), str) or not raw["name"]:
        raise RowError("tool without a name")
    params = raw.get("parameters")
    if params is None and "arguments" in raw:
        params = raw["arguments"]
        fixes["tool 'arguments' used as 'parameters'"] += 1
    if isinstance(params, str):
        try:
            params = json.loads(params)
        except ValueError:
            raise RowError(f"tool {raw['name']}: parameters are not JSON") from None
    if params is None:
        params = {"type": "object", "properties": {}}
    if not isinstance(params, dict):
        raise RowError(f"tool {raw['name']}: parameters are not an object")
    if "properties" not in params and params.get("type") != "object":
        # a flat property map: {"city": {"type": "str"}, ...} or {"city": "str"}
        props = {k: (v if isinstance(v, dict) else {"type": str(v)}) for k, v in params.items()}
        params = {"type": "object", "properties": props}
        fixes["flat property map wrapped"] += 1
    params = _fix_schema(params, fixes)
    params.setdefault("type", "object")
    return function_tool(raw["name"], str(raw.get("description") or ""), params)


def _arguments(value: Any, fixes: Counter) -> dict[str, Any]:
    if isinstance(value, dict):
        return value
    if isinstance(value, str):
        fixes["string arguments parsed"] += 1
        try:
            parsed = json.loads(value) if value.strip() else {}
        except ValueError:
            raise RowError("tool call arguments are not JSON") from None
        if isinstance(parsed, dict):
            return parsed
    raise RowError("tool call arguments are not an object")


def normalize_row(row: Any, fixes: Optional[Counter] = None) -> Sample:
    """One ToolMind row -> :class:`Sample`; :class:`RowError` names why it cannot be used."""
    fixes = fixes if fixes is not None else Counter()
    if not isinstance(row, dict) or not isinstance(row.get("conversations"), list):
        raise RowError("no 'conversations' list")
    tools_raw = row.get("tools") or []
    if isinstance(tools_raw, str):
        try:
            tools_raw = json.loads(tools_raw)
        except ValueError:
            raise RowError("tools are not JSON") from None
        fixes["tools given as a JSON string"] += 1
    tools = [normalize_tool(t, fixes) for t in tools_raw]
    messages: list[dict[str, Any]] = []
    pending: list[str] = []  # ids of calls still waiting for their result, in order
    n_calls = 0
    for m in row["conversations"]:
        if not isinstance(m, dict):
            raise RowError("message is not an object")
        role = m.get("role")
        if role not in ROLES:
            raise RowError(f"unknown role {role!r}")
        content = m.get("content")
        content = "" if content is None else str(content)
        if role == "assistant":
            if "<think>" in content.lower():
                content = _THINK_RE.sub("", content).strip()
                fixes["<think> removed"] += 1
            if pending:
                raise RowError("tool results do not pair with the calls by position")
            out: dict[str, Any] = {"role": "assistant", "content": content}
            calls = []
            for c in m.get("tool_calls") or []:
                fn = c.get("function", c) if isinstance(c, dict) else None
                if not isinstance(fn, dict) or not fn.get("name"):
                    raise RowError("tool call without a name")
                cid = f"call_{n_calls}"
                n_calls += 1
                calls.append({"id": cid, "type": "function",
                              "function": {"name": str(fn["name"]), "arguments": _arguments(fn.get("arguments"), fixes)}})
                pending.append(cid)
            if calls:
                out["tool_calls"] = calls
            messages.append(out)
        elif role == "tool":
            if not pending:
                raise RowError("tool results do not pair with the calls by position")
            messages.append({"role": "tool", "tool_call_id": pending.pop(0), "content": content})
        else:
            if pending:
                raise RowError("tool results do not pair with the calls by position")
            messages.append({"role": role, "content": content})
    if pending:
        raise RowError("tool results do not pair with the calls by position")
    if not any(m["role"] == "assistant" for m in messages) or not any(m["role"] == "user" for m in messages):
        raise RowError("no user or no assistant message")
    names = {t["function"]["name"] for t in tools}
    for m in messages:
        for c in m.get("tool_calls") or []:
            if c["function"]["name"] not in names:
                raise RowError("calls a tool that is not in its tools")
    return Sample(messages=messages, tools=tools, source=SOURCE)


def read_toolmind(path: Path | str, drops: Drops, fixes: Optional[Counter] = None) -> Iterator[Sample]:
    """Every usable row of a ToolMind JSONL file (unusable ones counted in ``drops``)."""
    fixes = fixes if fixes is not None else Counter()
    with Path(path).open(encoding="utf-8", errors="replace") as fh:   # bad bytes: a line that is not JSON
        for lineno, line in enumerate(fh, 1):
            if not line.strip():
                continue
            try:
                row = json.loads(line)
            except ValueError:
                drops.add(SOURCE, "unreadable line: not JSON")
                continue
            row_fixes: Counter = Counter()  # counted only for rows that are kept
            try:
                sample = normalize_row(row, row_fixes)
            except RowError as exc:
                drops.add(SOURCE, str(exc))
                continue
            fixes.update(row_fixes)
            sample.meta = {"file": str(path), "line": lineno}
            yield sample
