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

The serializations whose reply syntax is not the agent's (``bfcl``: BFCL's
prompt mode and its Python-call list ``[f(a=1)]``; ``native``: the model's
own template and call syntax, named by ``native_calls`` as in the profile's
``chat.native_calls``) are rendered through the same
:class:`~slm_agent.agent.call_formats.CallFormat` the agent builds its
request with; each assistant step is written in that syntax (after the
strategy's reasoning line, if any) and read back by the format's own decoder
before it is kept: a step that would not read back as the same calls (or as
an answer without a call) is a :class:`RenderError`, and the record is
dropped (counted) rather than teaching the model something the agent would
misread.
"""
from __future__ import annotations

import json
from typing import Any, Optional

from slm_agent.agent.call_formats import NATIVE_SYNTAXES, BfclFormat, NativeFormat
from slm_agent.agent.serializers import SERIALIZERS
from slm_agent.agent.strategies import STRATEGIES, Strategy, make_strategy
from slm_agent.agent.types import FINAL_ANSWER_TOOL, Status, ToolResult, ToolSpec
from slm_agent.dataset.records import Sample

NATIVE = "native"
#: strategies a record can be rendered in: the canonical messages (native) or an agent strategy
RENDER_STRATEGIES: tuple[str, ...] = (NATIVE, *STRATEGIES)
#: every serialization of the agent (``native`` needs the student's call syntax: ``native_calls``)
RENDER_SERIALIZATIONS: tuple[str, ...] = tuple(SERIALIZERS)
#: ``native_calls`` values (the profile's ``chat.native_calls``)
NATIVE_CALLS: tuple[str, ...] = NATIVE_SYNTAXES


class RenderError(ValueError):
    """A record that cannot be written in the requested format so that the agent reads it back."""
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


def reasoning(strategy: Strategy, done: list[str], call: Optional[dict[str, Any]], final: bool,
              names: Optional[list[str]] = None) -> str:
    """The thought (ReAct) or state reflection (ReflAct) before a step; "" for direct.
    ``names``: the tools of a step with several calls (owned formats write them in one reply)."""
    if strategy.name == "direct":
        return ""
    if strategy.name == "reflact":
        counts = {name: done.count(name) for name in dict.fromkeys(done)}   # first-call order
        listed = ", ".join(name if n == 1 else f"{name} {n} times" for name, n in counts.items())
        state = f"Done so far: {listed}." if done else "Nothing is done yet."
        if final:
            return f"{state} That is everything the goal asks for, so the goal is reached."
        wanted = ", ".join(dict.fromkeys(names)) if names else (call["name"] if call else "nothing")
        return f"{state} To get closer to the goal I next need {wanted}."
    if names and len(set(names)) > 1:
        return f"I need to use {', '.join(dict.fromkeys(names))} to answer this."
    return strategy.example_reasoning(call, final)


def python_literal(value: Any) -> str:
    """A JSON value as the Python literal BFCL's call syntax writes (``True``, ``None``, quotes)."""
    if isinstance(value, dict):
        return "{" + ", ".join(f"{python_literal(str(k))}: {python_literal(v)}" for k, v in value.items()) + "}"
    if isinstance(value, (list, tuple)):
        return "[" + ", ".join(python_literal(v) for v in value) + "]"
    return repr(value)


def owned_body(fmt: Any, calls: list[dict[str, Any]]) -> str:
    """Calls in the syntax of an owned call format (bfcl, or native with its syntax)."""
    if isinstance(fmt, BfclFormat):
        return "[" + ", ".join(
            f"{c['name']}(" + ", ".join(f"{k}={python_literal(v)}" for k, v in c["arguments"].items()) + ")"
            for c in calls) + "]"
    objs = [{"name": c["name"], "arguments": c["arguments"]} for c in calls]
    if isinstance(fmt, NativeFormat) and fmt.syntax == "tool_call_tags":   # Qwen2.5 / Hermes templates
        return "\n".join(f"<tool_call>\n{json.dumps(o, ensure_ascii=False)}\n</tool_call>" for o in objs)
    return json.dumps(objs, ensure_ascii=False)                            # json_list


def owned_step(strategy: Strategy, specs: list[ToolSpec], calls: list[dict[str, Any]], answer: Optional[str],
               thought: str) -> str:
    """One reply in the owned format (after the strategy's reasoning line), checked by reading it
    back through the strategy as the agent does (:class:`RenderError` when it does not read back)."""
    body = owned_body(strategy.call_format, calls) if calls else str(answer or "").strip()
    label = getattr(strategy, "reasoning_label", "")
    text = f"{label} {thought}\n{body}" if label else body
    d = strategy.interpret(text, specs, 0)
    if calls:
        got = [(c.name, c.arguments) for c in d.calls]
        if d.errors or got != [(c["name"], c["arguments"]) for c in calls]:
            raise RenderError(f"the calls do not read back in {strategy.serializer.name} "
                              f"({'; '.join(d.errors) or 'different calls'}): {body[:80]!r}")
    elif d.calls or d.errors or d.final_text != body:
        raise RenderError(f"an answer that reads as a call in {strategy.serializer.name}: {body[:80]!r}")
    return text


def render_steps(sample: Sample, strategy: Strategy) -> list[dict[str, Any]]:
    """The transcript with each assistant step written in the strategy's format.

    A step with several calls becomes, for the direct strategy and for the owned formats
    (bfcl, native: their syntax lists calls), one step; strategies with one action per
    step get one step per call, each followed by its own result."""
    out: list[dict[str, Any]] = []
    done: list[str] = []
    msgs = sample.messages
    owned = strategy.call_format is not None
    specs = specs_of(sample) if owned else []
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
        if owned:
            names = [c["name"] for c in calls]
            thought = reasoning(strategy, done, calls[0] if calls else None, not calls, names)
            out.append({"role": "assistant",
                        "content": owned_step(strategy, specs, calls, None if calls else m.get("content", ""),
                                              thought)})
            for c, r in zip(calls, results):   # as the agent feeds them back: role tool, the tool's name
                out.append({"role": "tool", "name": c["name"],
                            "content": strategy.observation(tool_result(r.get("content", ""), c["name"]))})
            done.extend(names)
        elif not calls:
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


def render(sample: Sample, strategy: str = NATIVE, serialization: str = "json",
           native_calls: Optional[str] = None, prompt_layout: str = "tools_first") -> dict[str, Any]:
    """The JSONL record to train on: ``{"messages", "tools"}`` (plus ``meta``).

    ``native_calls``: the student's call syntax for serialization ``native`` (its profile's
    ``chat.native_calls``); such a record keeps ``tools`` for the chat template (``meta.template_tools``).
    ``prompt_layout``: the student's system-prompt order (its profile's ``chat.prompt_layout``) for the
    agent's own syntaxes (json, toon, natural; recorded in ``meta.prompt_layout``); the owned formats
    write their own system prompt."""
    if strategy == NATIVE:
        return {"messages": sample.messages, "tools": sample.tools, "meta": {"source": sample.source, **sample.meta}}
    if serialization == NativeFormat.name and native_calls not in NATIVE_CALLS:
        raise ValueError(f"serialization native needs the student's call syntax (--native-calls: "
                         f"{', '.join(NATIVE_CALLS)}; its profile's chat.native_calls)")
    strat = make_strategy(strategy, serialization, "chat", None, 256, prompt_layout=prompt_layout,
                          native_calls=native_calls)
    specs = specs_of(sample)
    if any(s.name == FINAL_ANSWER_TOOL for s in specs):
        raise ValueError(f"a tool may not be named {FINAL_ANSWER_TOOL!r} (reserved by the agent)")
    transcript = render_steps(sample, strat)
    request = strat.build_request(transcript, specs)
    meta = {"source": sample.source, **sample.meta, "strategy": strategy, "serialization": serialization}
    logged = (sample.meta.get("strategy"), sample.meta.get("serialization"))
    if any(logged) and logged != (strategy, serialization):   # rendered in another format than it was logged
        meta["logged_as"] = f"{logged[0] or ''}/{logged[1] or ''}"
    if serialization == NativeFormat.name:
        meta["native_calls"] = native_calls
    if strat.call_format is None:   # the agent's own system prompt: its order is the student's
        meta["prompt_layout"] = prompt_layout
    if request.tools:   # the template writes the tools (native): training must show it the same tools
        meta["template_tools"] = True
    return {"messages": request.messages, "tools": request.tools if request.tools else sample.tools, "meta": meta}
