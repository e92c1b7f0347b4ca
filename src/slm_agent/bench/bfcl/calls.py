"""Turn parsed tool calls into BFCL's decoded formats, as BFCL's FC handlers do.

The agent hands us calls as ``{"name": ..., "arguments": dict | json-str}``.
BFCL's function-calling handlers (e.g. ``OpenAICompletionsHandler``) see the
same thing from the API (``{name: arguments_json}``) and decode it with:

* ``decode_ast``: ``[{name: json.loads(arguments)}]`` -- used for the AST and
  relevance checkers.  A response without tool calls is the message *text*,
  on which ``decode_ast`` raises (so: "decoder failed" / "no function call").
* ``decode_execute`` = ``convert_to_function_call``: one Python call string
  per call, ``f"{name}({','.join(f'{k}={repr(v)}' ...)})"`` -- used for
  multi-turn execution and the multi-turn checker.

``bfcl_eval.model_handler.utils`` (where those live) imports tree-sitter and
tenacity, so its two small formatting functions are mirrored here verbatim in
behaviour; no checking logic is involved.
"""
from __future__ import annotations

import json
from typing import Any, Callable, Optional

from slm_agent.bench.scenario import Call

NameMapper = Callable[[str], str]


class DecodeError(ValueError):
    """The model output is not decodable as function calls (BFCL would raise)."""


def _identity(name: str) -> str:
    return name


def _arguments(call: Call) -> Any:
    args = call.get("arguments", {})
    if isinstance(args, str):
        try:
            return json.loads(args)
        except json.JSONDecodeError as exc:
            raise DecodeError(f"arguments of {call.get('name')!r} are not valid JSON: {exc}") from exc
    return args


def decode_ast(
    calls: Optional[list[Call]], raw_output: str = "", name_map: NameMapper = _identity
) -> list[dict[str, Any]]:
    """BFCL FC ``decode_ast``: ``[{original_name: arguments}]``.

    With no calls, BFCL decodes the text content: non-empty text raises
    (:class:`DecodeError`), empty text decodes to ``[]``.
    """
    if not calls:
        if raw_output:
            raise DecodeError("model output contains no function call (text response)")
        return []
    decoded = []
    for call in calls:
        if not isinstance(call, dict) or "name" not in call:
            raise DecodeError(f"not a function call: {call!r}")
        decoded.append({name_map(str(call["name"])): _arguments(call)})
    return decoded


def to_call_string(name: str, arguments: dict[str, Any]) -> str:
    """BFCL ``convert_to_function_call`` for one call."""
    if not isinstance(arguments, dict):
        raise DecodeError(f"arguments of {name!r} are not an object: {arguments!r}")
    return f"{name}({','.join(f'{k}={repr(v)}' for k, v in arguments.items())})"


def decode_execute(calls: Optional[list[Call]], name_map: NameMapper = _identity) -> list[str]:
    """BFCL FC ``decode_execute`` for one model response (one step).

    Raises :class:`DecodeError` where BFCL's decoding raises; BFCL then skips
    the step at evaluation (and ends the turn at inference).
    """
    return [to_call_string(name_map(str(c["name"])), _arguments(c)) for c in (calls or [])]
