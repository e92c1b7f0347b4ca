"""Prompt strategies: how a step's request is written and its output read.

* ``direct``  - plain function calling: the model replies with a JSON list of
  one or more calls ``[{"name": .., "arguments": {..}}, ...]`` or with a
  plain-text answer.
* ``react``   - Thought / Action / Action Input / Observation (Yao et al.).
* ``reflact`` - ReflAct (Kim et al., 2025): before each action the model
  writes a *Reflection* stating where things stand relative to the goal
  (what is done, what remains), then the action.  Same loop as ReAct; the
  difference is what the model is asked to reason about.

Each strategy renders the canonical transcript (OpenAI-style messages kept by
the loop) either as one raw completion ``prompt`` - needed for base models
such as the bundled Gemma 3 270M, which have no chat template worth the name
and learn the format from one worked example - or as chat ``messages``.
With constrained decoding on, the strategy also supplies the JSON schema its
output must match (direct: a call list, plain text admitted beside it;
ReAct/ReflAct then write their fields as JSON keys in the same order, so the
grammar still forces reasoning before the action).  The serializations
``native`` and ``bfcl`` hand the request and the reading of the reply to their
own syntax (``agent/call_formats.py``); a strategy then only adds its
reasoning line.
"""
from __future__ import annotations

import json
import re
import copy
from abc import ABC, abstractmethod
from dataclasses import dataclass, field
from typing import Any, Optional, Sequence, Union

from slm_agent.agent.call_formats import (MAX_LIST_CALLS, MAX_REASONING_CHARS, CallFormat, call_format_for,
                                          call_schema, grammar_args_schema)
from slm_agent.agent.parsing import parse_tool_calls
from slm_agent.agent.serializers import Serializer, get_serializer
from slm_agent.agent.types import FINAL_ANSWER_TOOL, Status, ToolCall, ToolResult, ToolSpec
from slm_agent.engines.base import ChatRequest

CHAT_FORMATS = ("raw", "chat")
#: system-prompt orders (profile ``chat.prompt_layout``): ``tools_first`` is the
#: seed's; ``shared_prefix`` puts what every case shares first (see Strategy.system_text)
PROMPT_LAYOUTS = ("tools_first", "shared_prefix")
MAX_PARALLEL_CALLS = 4

_FINAL_RE = re.compile(r"Final[ \t]*Answer[ \t]*:[ \t]*(.*)", re.IGNORECASE | re.DOTALL)


@dataclass
class StepDecision:
    """What one model output means for the loop."""

    calls: list[ToolCall] = field(default_factory=list)
    final_text: Optional[str] = None
    reasoning: str = ""
    errors: list[str] = field(default_factory=list)

    @property
    def is_final(self) -> bool:
        return self.final_text is not None and not self.calls


def _dumps(v: Any) -> str:
    return json.dumps(v, separators=(",", ":"), ensure_ascii=False)


_grammar_args_schema = grammar_args_schema  # the name the strategies used


def example_arguments(schema: dict[str, Any]) -> Any:
    """A small valid value for a schema (required fields only)."""
    t = schema.get("type")
    if "enum" in schema and schema["enum"]:
        return schema["enum"][0]
    if "const" in schema:
        return schema["const"]
    if t == "object":
        props = schema.get("properties") or {}
        return {k: example_arguments(props[k]) for k in schema.get("required") or [] if k in props}
    if t == "array":
        n = schema.get("minItems", 0)
        return [example_arguments(schema.get("items") or {}) for _ in range(n)]
    if t in ("number", "integer"):
        lo = schema.get("minimum", schema.get("exclusiveMinimum"))
        hi = schema.get("maximum", schema.get("exclusiveMaximum"))
        # not 0: a small base model copies the example's values, and 0 is the
        # most plausible wrong answer to copy
        v: float = 3 if t == "integer" else 2.5
        if lo is not None and v <= lo:
            v = lo + 1 if hi is None or lo + 1 <= hi else (lo + hi) / 2
        if hi is not None and v >= hi:
            v = hi - 1 if lo is None or hi - 1 >= lo else (lo + hi) / 2
        return int(v) if t == "integer" else float(v)
    if t == "boolean":
        return True
    if t == "string":
        return "example"
    return None


#: the one-shot example used when a tool set brings none (e.g. benchmark scenarios)
DEMO_EXAMPLE: dict[str, Any] = {
    "user": "What is the weather in Lisbon in celsius?",
    "call": {"name": "get_weather", "arguments": {"city": "Lisbon", "unit": "celsius"}},
    "result": {"temperature": 21, "unit": "celsius"},
    "answer": "It is 21 degrees celsius in Lisbon.",
}


def default_example() -> dict[str, Any]:
    """The example shown when the tool set has none: a fixed demonstration tool.

    Why not a call of one of the run's own tools: a small base model copies
    the example's argument *values* into the real call (measured on BFCL
    simple_python with Gemma 3 270M: ``factorial(number=0)``, then
    ``"example"`` strings in half of all calls). A demonstration whose values
    visibly come from its request teaches the mapping instead; it is marked as
    an example, and with constrained decoding the grammar admits only the
    run's tools.  So it depends on nothing of the run (a copy: callers may edit it).
    """
    return copy.deepcopy(DEMO_EXAMPLE)


class Strategy(ABC):
    """Builds each step's :class:`ChatRequest` and interprets the reply.

    A strategy defines the abstract hooks (cue, rules, one rendered step, the
    output schema, reading an output); the rest is shared.
    """

    name: str = ""
    #: labels used in raw prompts
    user_label = "User:"
    observation_label = "Result:"
    stop_raw: tuple[str, ...] = ()

    def __init__(
        self,
        serialization: Union[str, Serializer] = "json",
        chat_format: str = "raw",
        example: Optional[dict[str, Any]] = None,
        parallel_calls: bool = True,
        max_tokens: int = 256,
        instructions: str = "",
        native_tools: bool = False,
        prompt_layout: str = "tools_first",
        native_calls: Optional[str] = None,
    ) -> None:
        if chat_format not in CHAT_FORMATS:
            raise ValueError(f"unknown chat_format '{chat_format}'; valid: {', '.join(CHAT_FORMATS)}")
        if prompt_layout not in PROMPT_LAYOUTS:
            raise ValueError(f"unknown prompt_layout '{prompt_layout}'; valid: {', '.join(PROMPT_LAYOUTS)}")
        self.prompt_layout = prompt_layout
        self.serializer = get_serializer(serialization) if isinstance(serialization, str) else serialization
        self.chat_format = chat_format
        self.example = example
        self.parallel_calls = parallel_calls
        self.max_tokens = max_tokens
        self.instructions = instructions
        self.native_tools = native_tools
        #: the reply syntax when the serialization owns it (native, bfcl); None = the agent's
        self.call_format: Optional[CallFormat] = call_format_for(self.serializer.reply_format, native_calls)
        if self.call_format is not None and chat_format == "raw":
            raise ValueError(f"serialization '{self.serializer.name}' renders with the model's chat template; "
                             "chat_format raw is not available with it")

    # ------------------------------------------------------------------ hooks
    @abstractmethod
    def cue(self, constrained: bool) -> str:
        """Text the raw prompt ends with; the model's output continues it."""

    @abstractmethod
    def format_rules(self, tools: Sequence[ToolSpec], constrained: bool) -> str:
        """The system prompt's description of the output format."""

    @abstractmethod
    def render_step(self, call: Optional[dict[str, Any]], final: Optional[str], constrained: bool,
                    reasoning: str) -> str:
        """One assistant output in this strategy's format (for the example)."""

    def example_reasoning(self, call: Optional[dict[str, Any]], final: bool) -> str:
        return ""

    @abstractmethod
    def output_schema(self, tools: Sequence[ToolSpec]) -> dict[str, Any]:
        """JSON schema every output must match under constrained decoding."""

    @abstractmethod
    def interpret(self, text: str, tools: Sequence[ToolSpec], step: int = 0,
                  constrained: bool = False) -> StepDecision:
        """What one output asks for: calls, a final answer, or errors to feed back."""

    # ------------------------------------------------------------------ shared
    def observation(self, result: ToolResult) -> str:
        """A tool result as fed back to the model."""
        return self.serializer.result(result)

    def known_names(self, tools: Sequence[ToolSpec]) -> set[str]:
        return {t.name for t in tools} | {FINAL_ANSWER_TOOL}

    #: under constrained decoding, a plain-text reply (an answer) is admitted besides the schema
    allows_text: bool = False

    def stop(self, constrained: bool) -> list[str]:
        return [] if self.call_format is not None else list(self.stop_raw)

    def owned_decision(self, text: str, tools: Sequence[ToolSpec], step: int) -> "StepDecision":
        """A reply read by the serialization's own call format (native, bfcl)."""
        assert self.call_format is not None
        reply = self.call_format.interpret(self, text, tools, step)
        if reply.calls:
            return StepDecision(calls=reply.calls, reasoning=reply.reasoning, errors=reply.errors)
        if reply.errors:
            return StepDecision(errors=reply.errors, reasoning=reply.reasoning)
        return StepDecision(final_text=reply.answer or "", reasoning=reply.reasoning)

    @property
    def shared_prefix(self) -> bool:
        return self.prompt_layout == "shared_prefix"

    def tool_names_text(self, tools: Sequence[ToolSpec]) -> str:
        """How the format rules name the tools: listed by name, or (shared_prefix
        layout) by reference, so the rules do not change from case to case."""
        if self.shared_prefix:
            return "the tool names listed below"
        return ", ".join(t.name for t in tools)

    def system_text(self, tools: Sequence[ToolSpec], constrained: bool, extra: str = "") -> str:
        """The system prompt.

        ``tools_first``: header, instructions, extra system text, tools, format
        rules, example.  ``shared_prefix``: header, instructions, format rules,
        example, then extra system text and tools -- the first part is the same
        for every case of a run, so llama.cpp keeps its KV cache between cases
        and prefills only the tools and the request.
        """
        head, fixed = self._system_parts(tools, constrained)
        tools_part = "Tools:\n" + self.serializer.tools(tools)
        if self.shared_prefix:
            parts = head + fixed + [extra, tools_part]
        else:
            parts = head + [extra, tools_part] + fixed
        return "\n\n".join(p.strip() for p in parts if p.strip())

    def _system_parts(self, tools: Sequence[ToolSpec], constrained: bool) -> tuple[list[str], list[str]]:
        """(header and instructions, format rules and example) of the system prompt."""
        head = ["You control a robot through tools. Use them to do what the user asks."]
        if self.instructions:
            head.append(self.instructions)
        example = self.example_text(tools, constrained)
        return head, [self.format_rules(tools, constrained), "Example:\n" + example if example else ""]

    def cache_anchor(self, tools: Sequence[ToolSpec], constrained: bool) -> str:
        """The start of the system prompt every case shares (``shared_prefix`` layout: header,
        instructions, format rules, example); "" for ``tools_first``, whose shared part ends
        before the tools.  Sent as ``ChatRequest.cache_anchor``."""
        if not self.shared_prefix:
            return ""
        head, fixed = self._system_parts(tools, constrained)
        return "\n\n".join(p.strip() for p in head + fixed if p.strip())

    def example_text(self, tools: Sequence[ToolSpec], constrained: bool) -> str:
        if not tools:
            return ""
        ex = self.example
        if not ex or ex.get("call", {}).get("name") not in {t.name for t in tools}:
            ex = default_example()  # a tool-set example naming a tool this run lacks is not shown
        call = ex["call"]
        call = {"name": call["name"], "arguments": call.get("arguments") or {}}
        result = ToolResult(call_id="example", name=call["name"], status=Status.OK, content=ex.get("result", {}))
        answer = ex.get("answer") or "Done."
        lines = [
            f"{self.user_label} {ex['user']}",
            self.render_step(call, None, constrained, self.example_reasoning(call, False)),
            f"{self.observation_label} {self.observation(result)}",
            self.render_step(None, answer, constrained, self.example_reasoning(None, True)),
        ]
        return "\n".join(lines)

    def assistant_content(self, text: str, constrained: bool) -> str:
        """What the transcript stores for an output (raw mode keeps the cue)."""
        if self.chat_format == "raw":
            cue = self.cue(constrained)
            return f"{cue} {text.strip()}" if cue else text.strip()
        return text.strip()

    def build_request(self, transcript: Sequence[dict[str, Any]], tools: Sequence[ToolSpec],
                      constrained: bool = False) -> ChatRequest:
        """The request for the next step given the canonical transcript."""
        if self.call_format is not None:
            return self.call_format.build_request(self, transcript, tools, constrained)
        system_extra = "\n".join(
            str(m.get("content", "")) for m in transcript if m.get("role") == "system"
        )
        convo = [m for m in transcript if m.get("role") != "system"]
        schema = self.output_schema(tools) if constrained else None
        allow_text = bool(schema) and self.allows_text
        if self.chat_format == "raw":
            lines = [self.system_text(tools, constrained, system_extra), ""]
            for m in convo:
                role = m.get("role")
                content = str(m.get("content") or "")
                if role == "user":
                    lines.append(f"{self.user_label} {content}")
                elif role == "assistant":
                    lines.append(content)
                else:
                    lines.append(f"{self.observation_label} {content}")
            lines.append(self.cue(constrained))
            return ChatRequest(
                prompt="\n".join(lines),
                max_tokens=self.max_tokens,
                stop=self.stop(constrained),
                json_schema=schema,
                allow_text=allow_text,
                cache_anchor=self.cache_anchor(tools, constrained),
            )
        messages: list[dict[str, Any]] = [
            {"role": "system", "content": self.system_text(tools, constrained, system_extra)}
        ]
        for m in convo:
            role = m.get("role")
            if role == "tool" and not self.native_tools:
                messages.append({"role": "user", "content": f"{self.observation_label} {m.get('content', '')}"})
            elif role == "user" and self.user_label != "User:":
                messages.append({"role": "user", "content": f"{self.user_label} {m.get('content', '')}"})
            elif role == "assistant" and not self.native_tools:
                messages.append({"role": "assistant", "content": m.get("content", "")})
            else:
                messages.append(dict(m))
        return ChatRequest(
            messages=messages,
            tools=[t.to_function() for t in tools] if self.native_tools else None,
            max_tokens=self.max_tokens,
            stop=self.stop(constrained),
            json_schema=schema,
            allow_text=allow_text,
            cache_anchor=self.cache_anchor(tools, constrained),
        )

    def split_final(self, calls: list[ToolCall]) -> tuple[list[ToolCall], Optional[str]]:
        """Separate real calls from the ``final_answer`` pseudo call."""
        real = [c for c in calls if c.name != FINAL_ANSWER_TOOL]
        finals = [c for c in calls if c.name == FINAL_ANSWER_TOOL]
        final = None
        if finals:
            args = finals[0].arguments
            final = str(args.get("text", args.get("answer", "")) if isinstance(args, dict) else "")
        return real, final


def _call_schema(spec: ToolSpec) -> dict[str, Any]:
    return call_schema(spec, _grammar_args_schema(spec))


class DirectStrategy(Strategy):
    """Function calling: the reply is a JSON list of one or more calls, or a plain-text answer.

    Several calls and an answer without a call are equally first-class in
    the rules, the grammar (a call list, or text) and the parser; the
    ``final_answer`` pseudo call of earlier versions is still read.
    """

    name = "direct"
    user_label = "User:"
    observation_label = "Result:"
    stop_raw = ("\nUser:", "\nResult:")
    allows_text = True

    def cue(self, constrained: bool) -> str:
        return "Assistant:" if self.chat_format == "raw" else ""

    def format_rules(self, tools: Sequence[ToolSpec], constrained: bool) -> str:
        where = "below" if self.shared_prefix else "above"
        if self.parallel_calls:
            calls = ('To call tools, reply with a JSON list of the calls, one or more: '
                     '[{"name": <tool name>, "arguments": {<arguments>}}, ...].')
        else:
            calls = 'To call a tool, reply with a JSON list of one call: [{"name": <tool name>, "arguments": {<arguments>}}].'
        return (f"{calls} To answer without calling a tool, reply with the answer in plain text; do so when"
                " no tool fits the request or a required argument is unknown."
                f" Only call the tools listed {where}, with arguments inside their limits.")

    def render_step(self, call, final, constrained, reasoning) -> str:
        body = _dumps([call]) if call is not None else str(final)
        cue = self.cue(constrained)
        return f"{cue} {body}" if cue else body

    def output_schema(self, tools: Sequence[ToolSpec]) -> dict[str, Any]:
        """A list of calls (plain text is admitted beside it: ``allow_text``)."""
        calls = [_call_schema(t) for t in tools]
        if not calls:
            return {"type": "array", "maxItems": 0}
        return {
            "type": "array",
            "items": {"anyOf": calls} if len(calls) > 1 else calls[0],
            "minItems": 1,
            "maxItems": MAX_LIST_CALLS if self.parallel_calls else 1,
        }

    def interpret(self, text, tools, step=0, constrained=False) -> StepDecision:
        if self.call_format is not None:
            return self.owned_decision(text, tools, step)
        calls, leftover, errors = parse_tool_calls(text, self.known_names(tools), step=step)
        real, final = self.split_final(calls)
        if real:
            return StepDecision(calls=real, reasoning=leftover, errors=errors)
        if final is not None:
            return StepDecision(final_text=final, reasoning=leftover, errors=errors)
        if errors:  # something call-like was there but broken: let the model fix it
            return StepDecision(errors=errors, reasoning=leftover)
        return StepDecision(final_text=leftover)  # no call: the text is the answer


class ReActStrategy(Strategy):
    """Thought / Action / Action Input, one action per step."""

    name = "react"
    user_label = "Question:"
    observation_label = "Observation:"
    reasoning_label = "Thought:"
    reasoning_key = "thought"
    #: the reasoning line before "Final Answer:" in the unconstrained format rules
    final_reasoning = "I now know the final answer"
    stop_raw = ("\nObservation:", "\nQuestion:")

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        kwargs.setdefault("parallel_calls", False)
        super().__init__(*args, **kwargs)

    def cue(self, constrained: bool) -> str:
        if self.chat_format != "raw":
            return ""
        return "Step:" if constrained else self.reasoning_label

    def reasoning_rule(self) -> str:
        return "think about what to do next"

    def example_reasoning(self, call, final) -> str:
        if final:
            return "I now know the final answer."
        return f"I need to use {call['name']} to answer this."

    def format_rules(self, tools, constrained) -> str:
        names = self.tool_names_text(tools)
        r = self.reasoning_label
        if constrained:
            k = self.reasoning_key
            return (
                "Work in steps. Each step is one JSON object on one line: "
                f'{{"{k}": <{self.reasoning_rule()}>, "action": <one of {names}>, "action_input": {{<arguments>}}}}'
                f'. After each step you get an {self.observation_label[:-1]}. When done, write '
                f'{{"{k}": <...>, "final_answer": <the answer>}}.'
            )
        return (
            "Use this format:\n"
            f"{r} {self.reasoning_rule()}\n"
            f"Action: one of {names}\n"
            "Action Input: the arguments as a JSON object\n"
            f"{self.observation_label} the tool result\n"
            f"... ({r[:-1]}/Action/Action Input/{self.observation_label[:-1]} can repeat)\n"
            f"{r} {self.final_reasoning}\n"
            "Final Answer: the answer to the question"
        )

    def render_step(self, call, final, constrained, reasoning) -> str:
        cue = self.cue(constrained)
        if constrained:
            obj: dict[str, Any] = {self.reasoning_key: reasoning}
            if call is not None:
                obj["action"] = call["name"]
                obj["action_input"] = call["arguments"]
            else:
                obj["final_answer"] = final
            return f"{cue} {_dumps(obj)}" if cue else _dumps(obj)
        head = f"{self.reasoning_label} {reasoning}"
        if call is not None:
            return f"{head}\nAction: {call['name']}\nAction Input: {_dumps(call['arguments'])}"
        return f"{head}\nFinal Answer: {final}"

    def output_schema(self, tools) -> dict[str, Any]:
        thought = {"type": "string", "maxLength": MAX_REASONING_CHARS}
        options: list[dict[str, Any]] = []
        for t in tools:
            options.append({
                "type": "object",
                "properties": {
                    self.reasoning_key: thought,
                    "action": {"const": t.name},
                    "action_input": _grammar_args_schema(t),
                },
                "required": [self.reasoning_key, "action", "action_input"],
                "additionalProperties": False,
            })
        options.append({
            "type": "object",
            "properties": {self.reasoning_key: thought, "final_answer": {"type": "string"}},
            "required": [self.reasoning_key, "final_answer"],
            "additionalProperties": False,
        })
        return {"anyOf": options}

    def _json_object(self, text: str) -> Optional[dict[str, Any]]:
        start = text.find("{")
        if start < 0:
            return None
        try:
            obj, _ = json.JSONDecoder().raw_decode(text, start)
        except (ValueError, RecursionError):
            return None
        return obj if isinstance(obj, dict) else None

    def interpret(self, text, tools, step=0, constrained=False) -> StepDecision:
        if self.call_format is not None:
            return self.owned_decision(text, tools, step)
        calls, leftover, errors = parse_tool_calls(text, self.known_names(tools), step=step)
        obj = self._json_object(text)
        reasoning = ""
        if obj is not None and isinstance(obj.get(self.reasoning_key), str):
            reasoning = obj[self.reasoning_key]
        else:
            reasoning = re.split(r"Final[ \t]*Answer[ \t]*:|\n[ \t]*Observation[ \t]*:", leftover, maxsplit=1,
                                 flags=re.IGNORECASE)[0].strip()
            if reasoning.startswith(self.reasoning_label):
                reasoning = reasoning[len(self.reasoning_label):].strip()
        real, final = self.split_final(calls)
        if real:
            return StepDecision(calls=real[:1] if not self.parallel_calls else real,
                                reasoning=reasoning, errors=errors)
        if obj is not None and isinstance(obj.get("final_answer"), str):
            return StepDecision(final_text=obj["final_answer"], reasoning=reasoning, errors=errors)
        m = _FINAL_RE.search(leftover)
        if m:
            return StepDecision(final_text=m.group(1).strip(), reasoning=reasoning, errors=errors)
        if final is not None:
            return StepDecision(final_text=final, reasoning=reasoning, errors=errors)
        errors = errors or [
            "no Action and no Final Answer found; write 'Action:' and 'Action Input:' lines, or 'Final Answer:'"
        ]
        return StepDecision(reasoning=reasoning, errors=errors)


class ReflActStrategy(ReActStrategy):
    """ReflAct: reflect on the current state relative to the goal, then act."""

    name = "reflact"
    reasoning_label = "Reflection:"
    reasoning_key = "reflection"
    final_reasoning = "the goal is reached"

    def reasoning_rule(self) -> str:
        return "state where things stand now relative to the goal: what is done and what remains"

    def example_reasoning(self, call, final) -> str:
        if final:
            return "The result gives everything the goal asks for, so the goal is reached."
        return f"Nothing is done yet; to reach the goal I first need the result of {call['name']}."


STRATEGIES: dict[str, type[Strategy]] = {
    DirectStrategy.name: DirectStrategy,
    ReActStrategy.name: ReActStrategy,
    ReflActStrategy.name: ReflActStrategy,
}


def get_strategy(name: str, **kwargs: Any) -> Strategy:
    """Strategy by registry name (kwargs go to its constructor)."""
    cls = STRATEGIES.get((name or "").strip().lower())
    if cls is None:
        raise ValueError(f"unknown strategy '{name}'; valid: {', '.join(sorted(STRATEGIES))}")
    return cls(**kwargs)


def make_strategy(name: str, serialization: str, chat_format: str, example: Optional[dict[str, Any]],
                  max_tokens: int, prompt_layout: str = "tools_first", native_calls: Optional[str] = None) -> Strategy:
    """The strategy a goal runs with (raises ValueError naming the valid choices): what
    the agent node builds per goal, so benchmarks build the in-process loop exactly alike.
    ``prompt_layout`` and ``native_calls`` come from the model profile (``chat.prompt_layout``,
    ``chat.native_calls``: the model's own call syntax, for serialization ``native``)."""
    get_serializer(serialization)  # clear error for an unknown/unavailable serialization
    return get_strategy(name, serialization=serialization, chat_format=chat_format, example=example,
                        max_tokens=max_tokens, prompt_layout=prompt_layout, native_calls=native_calls)


def resolve_chat_format(param: str, profile: Any) -> str:
    """``chat_format`` setting -> raw|chat (empty = from the model profile: ``raw`` when its
    ``chat.mode`` is raw, else its ``chat.default_format``)."""
    value = (param or "").strip().lower()
    if not value:
        return "raw" if profile.chat.mode == "raw" else getattr(profile.chat, "default_format", "chat")
    if value not in CHAT_FORMATS:
        raise ValueError(f"unknown chat_format {param!r}; valid: {', '.join(CHAT_FORMATS)} (or empty)")
    return value


__all__ = [
    "CHAT_FORMATS",
    "PROMPT_LAYOUTS",
    "DirectStrategy",
    "ReActStrategy",
    "ReflActStrategy",
    "STRATEGIES",
    "StepDecision",
    "Strategy",
    "default_example",
    "example_arguments",
    "get_strategy",
    "make_strategy",
    "resolve_chat_format",
]
