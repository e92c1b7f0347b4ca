"""Render a canonical sample the way the agent will prompt the fine-tuned model.

A model is trained on what it will see: the agent's system prompt with the
tools in the run's serialization (JSON, TOON or natural language, from
:mod:`slm_agent.agent.serializers`), the strategy's format rules, each
assistant step in the strategy's output format (direct call objects, ReAct
Thought/Action/Action Input, or ReflAct with a state reflection), and tool
results fed back as the serializer writes them.  This reuses
:meth:`Strategy.build_request` in chat mode, so the rendered messages are
the agent's own requests plus the answer to learn.

``strategy="native"`` keeps the canonical messages and ``tools`` for chat
templates with native tool calling.
"""
from __future__ import annotations

import json
from typing import Any, Optional

from slm_agent.agent.serializers import SERIALIZERS
from slm_agent.agent.strategies import STRATEGIES, Strategy, make_strategy
from slm_agent.agent.types import FINAL_ANSWER_TOOL, Status, ToolResult, ToolSpec
from slm_agent.dataset.records import Sample

NATIVE = "native"
#: strategies a record can be rendered in: the canonical messages (native) or an agent strategy
RENDER_STRATEGIES: tuple[str, ...] = (NATIVE, *STRATEGIES)
#: serializations of the agent's own reply syntax (not native/bfcl, whose call format belongs to the
#: model's template or BFCL's prompt, which a dataset rendered without a profile cannot reproduce)
RENDER_SERIALIZATIONS: tuple[str, ...] = tuple(n for n, cls in SERIALIZERS.items() if not cls.reply_format)
_STATUS = {"ok": Status.OK, "refused": Status.REFUSED, "invalid_arguments": Status.INVALID_ARGUMENTS,
           "timeout": Status.TIMEOUT, "failed": Status.FAILED}


def specs_of(sample: Sample) -> list[ToolSpec]:
    out = []
    for t in sample.tools:
        fn = t.get("function", t)
        out.append(ToolSpec(name=str(fn.get("name", "")), description=str(fn.get("description") or ""),
                            parameters=fn.get("parameters") or {"type": "object", "properties": {}}))
    return out


def tool_result(content: str, name: str) -> ToolResult:
    """A logged tool result as a :class:`ToolResult` (so it can be re-serialized)."""
    try:
        value = json.loads(content)
    except (ValueError, TypeError):
        return ToolResult(call_id="", name=name, status=Status.OK, content=content)
    if isinstance(value, dict) and value.get("status") in _STATUS and set(value) <= {"status", "result", "error"}:
        status = _STATUS[value["status"]]
        return ToolResult(call_id="", name=name, status=status, content=value.get("result", ""),
                          error=str(value.get("error", "")))
    if isinstance(value, (dict, list)):
        return ToolResult(call_id="", name=name, status=Status.OK,
                          content=value if isinstance(value, dict) else {"items": value})
    return ToolResult(call_id="", name=name, status=Status.OK, content=content)


def reasoning(strategy: Strategy, done: list[str], call: Optional[dict[str, Any]], final: bool) -> str:
    """The thought (ReAct) or state reflection (ReflAct) before a step; "" for direct."""
    if strategy.name == "direct":
        return ""
    if strategy.name == "reflact":
        counts = {name: done.count(name) for name in dict.fromkeys(done)}   # first-call order
        listed = ", ".join(name if n == 1 else f"{name} {n} times" for name, n in counts.items())
        state = f"Done so far: {listed}." if done else "Nothing is done yet."
        if final:
            return f"{state} That is everything the goal asks for, so the goal is reached."
        return f"{state} To get closer to the goal I next need {call['name'] if call else 'nothing'}."
    return strategy.example_reasoning(call, final)


def render_steps(sample: Sample, strategy: Strategy) -> list[dict[str, Any]]:
    """The transcript with each assistant step written in the strategy's format.

    A step with several calls becomes, for the direct strategy, one JSON list
    (parallel calls); strategies with one action per step get one step per
    call, each followed by its own result."""
    out: list[dict[str, Any]] = []
    done: list[str] = []
    msgs = sample.messages
    i = 0
    while i < len(msgs):
        m = msgs[i]
        if m["role"] != "assistant":
            if m["role"] == "tool":
                out.append({"role": "tool", "content": strategy.observation(tool_result(m.get("content", ""), ""))})
            else:
                out.append({"role": m["role"], "content": m.get("content", "")})
            i += 1
            continue
        calls = [{"name": c["function"]["name"], "arguments": c["function"]["arguments"]}
                 for c in m.get("tool_calls") or []]
        results = []
        j = i + 1
        while j < len(msgs) and msgs[j]["role"] == "tool":
            results.append(msgs[j])
            j += 1
        if not calls:
            text = strategy.render_step(None, m.get("content", ""), False, reasoning(strategy, done, None, True))
            out.append({"role": "assistant", "content": text})
        elif strategy.parallel_calls and len(calls) > 1:
            body = json.dumps(calls, ensure_ascii=False)
            cue = strategy.cue(False)
            out.append({"role": "assistant", "content": f"{cue} {body}" if cue else body})
            for c, r in zip(calls, results):
                out.append({"role": "tool", "content": strategy.observation(tool_result(r.get("content", ""), c["name"]))})
            done.extend(c["name"] for c in calls)
        else:
            for k, c in enumerate(calls):
                out.append({"role": "assistant",
                            "content": strategy.render_step(c, None, False, reasoning(strategy, done, c, False))})
                if k < len(results):
                    out.append({"role": "tool",
                                "content": strategy.observation(tool_result(results[k].get("content", ""), c["name"]))})
                done.append(c["name"])
        i = j
    return out


def render(sample: Sample, strategy: str = NATIVE, serialization: str = "json") -> dict[str, Any]:
    """The JSONL record to train on: ``{"messages", "tools"}`` (plus ``meta``)."""
    if strategy == NATIVE:
        return {"messages": sample.messages, "tools": sample.tools, "meta": {"source": sample.source, **sample.meta}}
    strat = make_strategy(strategy, serialization, "chat", None, 256)
    specs = specs_of(sample)
    if any(s.name == FINAL_ANSWER_TOOL for s in specs):
        raise ValueError(f"a tool may not be named {FINAL_ANSWER_TOOL!r} (reserved by the agent)")
    transcript = render_steps(sample, strat)
    request = strat.build_request(transcript, specs)
    return {"messages": request.messages, "tools": sample.tools,
            "meta": {"source": sample.source, "strategy": strategy, "serialization": serialization, **sample.meta}}
