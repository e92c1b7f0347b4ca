"""Reply syntaxes that belong to someone else: the model's own and BFCL's.

The serializations ``json`` / ``toon`` / ``natural`` only change how tools are
*described*; the reply syntax is the agent's (a JSON list of calls, or plain
text, :class:`~slm_agent.agent.strategies.DirectStrategy`).  A model's score
under our syntax measures our prompt as much as the model, so two
serializations hand the whole exchange to a syntax the score can be
compared with:

* ``native`` -- the model's own chat template rendered with ``tools`` and the
  model's own call syntax (BFCL's "FC" mode).  The profile names the syntax
  (``chat.native_calls``): ``tool_call_tags`` is Qwen2.5 / Hermes, one or more
  ``<tool_call>{"name": .., "arguments": ..}</tool_call>`` blocks in a reply;
  ``json_list`` is a JSON list of ``{"name", "arguments"}`` objects (the
  package's Gemma 3 template).  A reply without a call is an answer.  As in
  llama.cpp's own parser for Hermes-style templates, a reply that starts with
  a call object counts even without its opening tag.
* ``bfcl`` -- BFCL's own prompt-mode system prompt and Python-call syntax
  ``[f(a=1), g(b=2)]``, decoded by BFCL's own decoder from the installed
  bfcl-eval (BFCL's "Prompt" mode; nothing of its text is copied here).  A
  reply that does not decode is an answer (for irrelevance, a pass -- as BFCL
  scores prompt-mode models).

Strategies keep their meaning: under ReAct / ReflAct the reply starts with
one line of thought / reflection, then the reply in the format's syntax.
Constrained decoding covers only the calls: ``native`` constrains what is
inside a ``<tool_call>`` block (a lazily triggered grammar), ``bfcl`` the call
list; a plain-text answer stays possible in both.
"""
from __future__ import annotations

import json
from abc import ABC, abstractmethod
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Optional, Sequence

from slm_agent.agent.parsing import parse_tool_calls
from slm_agent.agent.types import ToolCall, ToolSpec
from slm_agent.engines.base import ChatRequest

if TYPE_CHECKING:  # pragma: no cover
    from slm_agent.agent.strategies import Strategy

#: profile ``chat.native_calls`` values
NATIVE_SYNTAXES = ("tool_call_tags", "json_list")
#: most calls a constrained call list admits (BFCL parallel_multiple needs up to ~6)
MAX_LIST_CALLS = 8
#: bounds the thought/reflection under a grammar (the JSON strategies' field, the owned formats'
#: reasoning line): unbounded, a small model reflects until max_tokens and never writes the call
MAX_REASONING_CHARS = 240



@dataclass
class Reply:
    """What one reply means: calls, or an answer, or errors to feed back."""

    calls: list[ToolCall] = field(default_factory=list)
    answer: Optional[str] = None
    errors: list[str] = field(default_factory=list)
    reasoning: str = ""


def grammar_args_schema(spec: ToolSpec) -> dict[str, Any]:
    """The tool's argument schema for a grammar: descriptions are dead weight there."""

    def strip(node: Any) -> Any:
        if isinstance(node, dict):
            return {k: strip(v) for k, v in node.items() if k != "description"}
        if isinstance(node, list):
            return [strip(v) for v in node]
        return node

    schema = strip(spec.parameters)
    if not isinstance(schema, dict) or schema.get("type") != "object":
        return {"type": "object"}
    return schema


def call_schema(spec: ToolSpec, args_schema: dict[str, Any]) -> dict[str, Any]:
    """``{"name": <const>, "arguments": <schema>}`` for one tool."""
    return {
        "type": "object",
        "properties": {"name": {"const": spec.name}, "arguments": args_schema},
        "required": ["name", "arguments"],
        "additionalProperties": False,
    }


def split_reasoning(text: str, label: str) -> tuple[str, str]:
    """(reasoning, rest): a leading ``label`` line (``Thought:``) taken off the reply."""
    stripped = text.lstrip()
    if label and stripped.lower().startswith(label.lower()):
        line, _, rest = stripped[len(label):].partition("\n")
        return line.strip(), rest
    return "", text


class CallFormat(ABC):
    """A reply syntax that owns the whole request: system text, messages, constraint, decoding."""

    name: str = ""
    #: tools go to the chat template (``ChatRequest.tools``) instead of the system text
    template_tools: bool = False
    #: control tokens of the syntax that replies must show (``ChatRequest.preserve``)
    preserve: tuple[str, ...] = ()

    @abstractmethod
    def system_text(self, tools: Sequence[ToolSpec], strategy: "Strategy") -> str:
        """The format's own system prompt (before instructions and reasoning rule)."""

    @abstractmethod
    def constraint(self, tools: Sequence[ToolSpec], strategy: "Strategy") -> dict[str, Any]:
        """ChatRequest fields for constrained decoding of this syntax."""

    @abstractmethod
    def decode(self, text: str, tools: Sequence[ToolSpec], step: int) -> Reply:
        """Calls in ``text`` (already without a reasoning line); no call = an answer."""

    def cache_anchor(self, tools: Sequence[ToolSpec], strategy: "Strategy") -> str:
        return ""

    # ------------------------------------------------------------ shared
    def reasoning_rule(self, strategy: "Strategy") -> str:
        label = getattr(strategy, "reasoning_label", "")
        if not label:
            return ""
        return (f"Begin every reply with one line '{label} <{strategy.reasoning_rule()}>', "  # type: ignore[attr-defined]
                "then write the reply itself in the format you were given.")

    def build_request(self, strategy: "Strategy", transcript: Sequence[dict[str, Any]],
                      tools: Sequence[ToolSpec], constrained: bool) -> ChatRequest:
        extra = "\n".join(str(m.get("content", "")) for m in transcript if m.get("role") == "system")
        own = self.system_text(tools, strategy)
        ours = "\n\n".join(p.strip() for p in (strategy.instructions, extra, self.reasoning_rule(strategy))
                           if p and p.strip())
        # the format's own text exactly as its authors write it; ours after it (as BFCL appends
        # a question's own system prompt)
        system = own + "\n\n" + ours if own and ours else (own or ours)
        messages: list[dict[str, Any]] = [{"role": "system", "content": system}] if system else []
        for m in transcript:
            role = m.get("role")
            if role == "system":
                continue
            if role == "tool":
                msg = {"role": "tool", "content": str(m.get("content") or "")}
                if m.get("name"):
                    msg["name"] = m["name"]
                messages.append(msg)
            else:
                messages.append({"role": role, "content": str(m.get("content") or "")})
        fields: dict[str, Any] = self.constraint(tools, strategy) if constrained else {}
        return ChatRequest(
            messages=messages,
            preserve=list(self.preserve),
            tools=[t.to_function() for t in tools] if self.template_tools and tools else None,
            max_tokens=strategy.max_tokens,
            stop=strategy.stop(constrained),
            cache_anchor=self.cache_anchor(tools, strategy),
            **fields,
        )

    def interpret(self, strategy: "Strategy", text: str, tools: Sequence[ToolSpec], step: int) -> Reply:
        reasoning, rest = split_reasoning(text, getattr(strategy, "reasoning_label", ""))
        reply = self.decode(rest, tools, step)
        reply.reasoning = reasoning
        return reply


class NativeFormat(CallFormat):
    """The model's own template and call syntax (profile ``chat.native_calls``)."""

    name = "native"
    template_tools = True

    def __init__(self, syntax: Optional[str]) -> None:
        if syntax not in NATIVE_SYNTAXES:
            raise ValueError(
                "serialization 'native' needs the model's own tool-call syntax, and this profile declares "
                f"none (chat.native_calls: one of {', '.join(NATIVE_SYNTAXES)}; its chat template must "
                "render tools)")
        self.syntax = syntax
        if syntax == "tool_call_tags":
            self.preserve = ("<tool_call>", "</tool_call>")

    def system_text(self, tools, strategy) -> str:
        return ""  # the template writes the tools and its own instructions

    def _call_schemas(self, tools: Sequence[ToolSpec]) -> list[dict[str, Any]]:
        return [call_schema(t, grammar_args_schema(t)) for t in tools]

    def constraint(self, tools, strategy) -> dict[str, Any]:
        calls = self._call_schemas(tools)
        if not calls:
            return {}
        one = {"anyOf": calls} if len(calls) > 1 else calls[0]
        if self.syntax == "tool_call_tags":
            return {"json_schema": one, "grammar_trigger": "<tool_call>", "grammar_end": "</tool_call>"}
        return {"json_schema": {"type": "array", "items": one, "minItems": 1, "maxItems": MAX_LIST_CALLS},
                "allow_text": True}

    def decode(self, text, tools, step) -> Reply:
        known = {t.name for t in tools}
        if self.syntax == "json_list":
            head = text.lstrip()
            if not head.startswith(("[", "{")):
                return Reply(answer=text.strip())
            calls, leftover, errors = parse_tool_calls(head, known, step=step)
            if not calls:
                return Reply(errors=errors or ["the reply starts like a call list but holds no call"])
            return Reply(calls=calls, errors=errors)
        return self._decode_tags(text, known, step)

    @staticmethod
    def _decode_tags(text: str, known: set[str], step: int) -> Reply:
        """``<tool_call>`` blocks; a reply that *starts* with a call object (bare, or in a
        ```json fence, its closing tag present or not) counts as a first block -- the
        tags are optional as in llama.cpp's own parser for Hermes-style templates
        (Qwen2.5-Coder often omits the opening tag)."""
        head, *tagged = text.split("<tool_call>")
        bodies: list[tuple[str, bool]] = []
        lead = head.strip()
        bare = lead.startswith("{") or lead.startswith("```")
        if bare:
            bodies.append((lead.replace("</tool_call>", " "), True))
        for seg in tagged:
            body, closed, _rest = seg.partition("</tool_call>")
            bodies.append((body.strip(), bool(closed)))
        if not bodies:
            return Reply(answer=text.strip())
        calls: list[ToolCall] = []
        errors: list[str] = []
        for body, closed in bodies:
            if not closed:
                errors.append("a <tool_call> block is not closed")
            found, _, errs = parse_tool_calls(body, known, step=step)
            if not found:
                errors.append(f"<tool_call> block is not a call object: {body[:80]!r}")
            calls.extend(found)
            errors.extend(errs)
        if bare and not calls and not tagged:  # a reply that only looks like JSON: an answer
            return Reply(answer=text.strip())
        for i, c in enumerate(calls):
            c.id = f"call_{step}_{i}"
        return Reply(calls=calls, errors=errors)


def _bfcl_prompt_api() -> tuple[Any, Any, str]:
    """bfcl-eval's system-prompt builder, its decoder and its default prompt format."""
    from slm_agent.bench.bfcl.compat import ensure_bfcl

    ensure_bfcl()  # BFCL's import-time directories go to a cache, not site-packages
    try:
        from bfcl_eval.constants.default_prompts import DEFAULT_SYSTEM_PROMPT_FORMAT
        from bfcl_eval.model_handler.utils import default_decode_ast_prompting, formulate_system_prompt
    except ImportError as exc:  # pragma: no cover - depends on the install
        raise ValueError(f"serialization 'bfcl' needs bfcl-eval (pip install --no-deps bfcl-eval): {exc}") from exc
    return formulate_system_prompt, default_decode_ast_prompting, DEFAULT_SYSTEM_PROMPT_FORMAT


def bfcl_functions(tools: Sequence[ToolSpec]) -> list[dict[str, Any]]:
    """Function docs as BFCL lists them in its prompt (name, description, parameters)."""
    return [{"name": t.name, "description": t.description, "parameters": t.parameters} for t in tools]


def _gbnf_literal(s: str) -> str:
    return json.dumps(s)


class BfclFormat(CallFormat):
    """BFCL's prompt mode: its system prompt, ``[f(a=1), g(b=2)]``, its decoder."""

    name = "bfcl"

    def __init__(self) -> None:
        self._formulate, self._decode, self._fmt = _bfcl_prompt_api()
        # BFCL's prompt is the same for every case up to the function list
        empty = self._formulate(self._fmt, [])
        cut = empty.rfind("[]")
        self._anchor = empty[:cut] if cut > 0 else ""

    def system_text(self, tools, strategy) -> str:
        return self._formulate(self._fmt, bfcl_functions(tools))

    def cache_anchor(self, tools, strategy) -> str:
        return self._anchor

    def constraint(self, tools, strategy) -> dict[str, Any]:
        return {"grammar": self.grammar(tools, getattr(strategy, "reasoning_label", ""))}

    @staticmethod
    def grammar(tools: Sequence[ToolSpec], reasoning_label: str = "") -> str:
        """GBNF for ``[f(a=1), g(b=2)]`` over the run's tools and their parameter names,
        values any Python literal; or a plain-text answer (first character not ``[``);
        after a ``reasoning_label`` line of at most ``MAX_REASONING_CHARS`` characters when
        the strategy reasons first (Qwen2.5-Coder-0.5B, ReflAct, unbounded: 90 of 100 first
        replies ran out of tokens, the median reflection line 978 characters long)."""
        lines = []
        head = (f'{_gbnf_literal(reasoning_label + " ")} [^\\n]{{0,{MAX_REASONING_CHARS}}} "\\n" '
                if reasoning_label else "")
        lines.append(f'root ::= {head}ws "[" ws call (ws "," ws call)* ws "]" ws | {head}text')
        alts = []
        for i, t in enumerate(tools):
            props = list((t.parameters or {}).get("properties") or {}) if isinstance(t.parameters, dict) else []
            if props:
                key = " | ".join(_gbnf_literal(p) for p in props)
                lines.append(f"k{i} ::= {key}")
                lines.append(f'a{i} ::= k{i} ws "=" ws value (ws "," ws k{i} ws "=" ws value)*')
                alts.append(f'{_gbnf_literal(t.name + "(")} ws a{i}? ws ")"')
            else:
                alts.append(f'{_gbnf_literal(t.name + "(")} ws ")"')
        lines.append("call ::= " + (" | ".join(alts) if alts else '"none()"'))
        lines += [
            'value ::= string | number | "True" | "False" | "None" | list | tuple | dict',
            'string ::= "\\"" ([^"\\\\\\n] | "\\\\" [^\\n])* "\\"" | "\'" ([^\'\\\\\\n] | "\\\\" [^\\n])* "\'"',
            'number ::= "-"? [0-9]+ ("." [0-9]+)? ([eE] [-+]? [0-9]+)?',
            'list ::= "[" ws (value (ws "," ws value)*)? ws "]"',
            'tuple ::= "(" ws (value (ws "," ws value)* ws ","?)? ws ")"',
            'dict ::= "{" ws (string ws ":" ws value (ws "," ws string ws ":" ws value)*)? ws "}"',
            'ws ::= [ \\t\\n]*',
            'text ::= [^\\[ \\t\\n] [^\\x00]*',
        ]
        return "\n".join(lines)

    def decode(self, text, tools, step) -> Reply:
        try:
            decoded = self._decode(text)
        except Exception:  # noqa: BLE001 - BFCL: a reply that does not decode is no call
            return Reply(answer=text.strip())
        calls: list[ToolCall] = []
        if not isinstance(decoded, list):
            return Reply(answer=text.strip())
        for i, item in enumerate(decoded):
            if not isinstance(item, dict) or len(item) != 1:
                return Reply(answer=text.strip())
            (name, args), = item.items()
            if not isinstance(args, dict):
                return Reply(answer=text.strip())
            calls.append(ToolCall(id=f"call_{step}_{i}", name=str(name), arguments=_plain(args), step=step,
                                  raw=text))
        if not calls:
            return Reply(answer=text.strip())
        return Reply(calls=calls)


def _plain(v: Any) -> Any:
    """Tuples (Python literals) as lists, so arguments are JSON values."""
    if isinstance(v, dict):
        return {str(k): _plain(x) for k, x in v.items()}
    if isinstance(v, (list, tuple)):
        return [_plain(x) for x in v]
    return v


def call_format_for(serialization: str, native_calls: Optional[str]) -> Optional[CallFormat]:
    """The owned reply syntax of a serialization (None: the agent's own, JSON list or text)."""
    if serialization == NativeFormat.name:
        return NativeFormat(native_calls)
    if serialization == BfclFormat.name:
        return BfclFormat()
    return None


__all__ = ["BfclFormat", "CallFormat", "MAX_LIST_CALLS", "MAX_REASONING_CHARS", "NATIVE_SYNTAXES", "NativeFormat",
           "Reply", "bfcl_functions", "call_format_for", "call_schema", "grammar_args_schema", "split_reasoning"]
