"""The canonical fine-tuning record and the bookkeeping of what was dropped (plain data).

A :class:`Sample` is one conversation in the shape TRL's ``SFTTrainer`` and
Hugging Face chat templates take: ``messages`` (roles system/user/assistant/
tool; assistant tool calls as ``{"type": "function", "function": {"name",
"arguments": <object>}}``) and ``tools`` (OpenAI ``{"type": "function",
"function": {...}}`` entries).  Every source converts to it, so curation,
clustering and rendering are written once.
"""
from __future__ import annotations

import hashlib
import json
from collections import Counter
from dataclasses import dataclass, field
from typing import Any, Optional


@dataclass
class Sample:
    """One conversation to learn from; ``source``/``meta`` say where it came from."""

    messages: list[dict[str, Any]]
    tools: list[dict[str, Any]] = field(default_factory=list)
    source: str = ""
    meta: dict[str, Any] = field(default_factory=dict)

    def calls(self) -> list[dict[str, Any]]:
        """Every assistant tool call (``{"name", "arguments"}``), in order."""
        out = []
        for m in self.messages:
            for c in m.get("tool_calls") or []:
                fn = c.get("function", c)
                out.append({"name": fn.get("name", ""), "arguments": fn.get("arguments", {})})
        return out

    def prompt_text(self) -> str:
        """What the user asked (all user messages): the clustering text with the actions."""
        return "\n".join(str(m.get("content") or "") for m in self.messages if m.get("role") == "user")

    def task_text(self) -> str:
        """Prompt plus the names of the actions taken: what clustering groups tasks by."""
        names = " ".join(c["name"] for c in self.calls())
        return f"{self.prompt_text()}\n{names}"

    def key(self) -> str:
        """Content hash for de-duplication (messages and tool names; not meta)."""
        body = json.dumps({"m": self.messages, "t": sorted(tool_name(t) for t in self.tools)},
                          sort_keys=True, ensure_ascii=False)
        return hashlib.sha256(body.encode("utf-8")).hexdigest()

    def to_json(self) -> dict[str, Any]:
        return {"messages": self.messages, "tools": self.tools, "source": self.source, "meta": self.meta}


def tool_name(tool: dict[str, Any]) -> str:
    return str((tool.get("function") or tool).get("name", ""))


def function_tool(name: str, description: str, parameters: Optional[dict[str, Any]]) -> dict[str, Any]:
    """An OpenAI tools entry."""
    params = parameters if isinstance(parameters, dict) else {"type": "object", "properties": {}}
    return {"type": "function", "function": {"name": name, "description": description or "",
                                             "parameters": params}}


def assistant_call_message(calls: list[tuple[str, dict[str, Any]]], content: str = "",
                           id_prefix: str = "call") -> dict[str, Any]:
    """An assistant message with tool calls (ids ``<prefix>_<i>``)."""
    return {"role": "assistant", "content": content,
            "tool_calls": [{"id": f"{id_prefix}_{i}", "type": "function",
                            "function": {"name": n, "arguments": a}} for i, (n, a) in enumerate(calls)]}


class Drops:
    """Counts of records dropped, by source and reason (the builder's report)."""

    def __init__(self) -> None:
        self.counts: Counter[tuple[str, str]] = Counter()

    def add(self, source: str, reason: str, n: int = 1) -> None:
        self.counts[(source, reason)] += n

    def total(self) -> int:
        return sum(self.counts.values())

    def as_dict(self) -> dict[str, dict[str, int]]:
        out: dict[str, dict[str, int]] = {}
        for (source, reason), n in sorted(self.counts.items()):
            out.setdefault(source, {})[reason] = n
        return out
