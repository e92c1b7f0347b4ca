"""Turn BFCL ground truth into the calls a perfect model would emit.

Used by the fidelity check: gold answers must pass through our loader ->
name mapping -> checker pipeline exactly as a model's answer would.

Single-turn ground truth lists, per parameter, every acceptable value
(``""`` meaning "may be omitted"); nested dicts list options per key.  We take
the first option (see :func:`first_option` for ``""``).  Java/JavaScript models answer in source-code strings (the hinted
docs declare every parameter "string"), so typed gold values are rendered as
Java/JS literals that BFCL's ``java_type_converter``/``js_type_converter``
parse back -- :func:`encode_java`/:func:`encode_js`.

Multi-turn ground truth is Python call strings (possibly positional,
``sort('final_report.pdf')``); :func:`parse_call_string` turns one into
``(name, {param: value})`` by binding positionals to the method signature.
"""
from __future__ import annotations

import ast
import inspect
import json
from typing import Any, Callable, Optional

from slm_agent.bench.bfcl.tools import ToolSet
from slm_agent.bench.scenario import Call, Scenario

_OMIT = object()


def first_option(options: Any, required: bool = False) -> Any:
    """The first acceptable value of a BFCL option list.

    ``""`` means "may be omitted": as the first option it yields ``_OMIT``,
    except for a parameter the doc marks required (omitting it would fail
    ``missing_required``), where we move on to the next option, or pass ``""``
    literally when it is the only one (``string_checker`` accepts that).
    """
    if not isinstance(options, list):
        return materialize(options)
    for opt in options:
        if opt == "":
            if required:
                continue
            return _OMIT
        return materialize(opt)
    return "" if (required and "" in options) else _OMIT


def materialize(value: Any) -> Any:
    """Resolve nested option lists inside a chosen gold value.

    In BFCL answers a dict value maps each key to its option list; a list of
    such dicts (``list_dict_checker``) resolves element-wise; other values are
    literal.
    """
    if isinstance(value, dict):
        out = {}
        for key, opts in value.items():
            chosen = first_option(opts)
            if chosen is not _OMIT:
                out[key] = chosen
        return out
    if isinstance(value, list):
        return [materialize(v) if isinstance(v, dict) else v for v in value]
    return value


# ----------------------------------------------------------------- Java / JS


def _java_scalar(value: Any) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, str):
        return json.dumps(value)
    return str(value)


def encode_java(value: Any, jtype: str, item_type: Optional[str] = None) -> str:
    """Java source text that BFCL's ``java_type_converter`` maps to ``value``."""
    if isinstance(value, str) and jtype not in ("Array", "ArrayList", "HashMap"):
        return value
    if jtype == "boolean":
        return "true" if value else "false"
    if jtype == "long":
        return f"{value}L"
    if jtype == "float":
        return f"{value}f"
    if jtype in ("byte", "short", "integer", "double"):
        return str(value)
    if jtype == "Array" and isinstance(value, list):
        # java_type_converter(element, item_type): String elements stay raw.
        elems = ", ".join(
            encode_java(v, item_type) if item_type else _java_scalar(v) for v in value
        )
        return f"new {item_type or 'Object'}[]{{{elems}}}"
    if jtype == "ArrayList" and isinstance(value, list):
        if not value:
            return "new ArrayList<>()"
        if item_type in ("String", "char"):
            elems = ", ".join(f'"{v}"' for v in value)
        elif item_type:
            elems = ", ".join(encode_java(v, item_type) for v in value)
        else:
            elems = ", ".join(_java_scalar(v) for v in value)
        return f"new ArrayList<>(Arrays.asList({elems}))"
    if jtype == "HashMap" and isinstance(value, dict):
        puts = " ".join(f'put("{k}", {_java_scalar(v)});' for k, v in value.items())
        return f"new HashMap<String, Object>() {{{{ {puts} }}}}" if puts else "new HashMap<>()"
    return value if isinstance(value, str) else json.dumps(value)


def _js_literal(value: Any) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, str):
        return f"'{value}'"
    if isinstance(value, list):
        return "[" + ", ".join(_js_literal(v) for v in value) + "]"
    if isinstance(value, dict):
        return "{" + ", ".join(f"{k}: {_js_literal(v)}" for k, v in value.items()) + "}"
    return json.dumps(value)


def encode_js(value: Any, jstype: str) -> str:
    """JavaScript source text that BFCL's ``js_type_converter`` maps to ``value``."""
    if isinstance(value, str):
        # A string where the doc wants another type is a variable name
        # (``is_variable`` in BFCL's type_checker): pass it through raw.
        return value
    if jstype == "Boolean":
        return "true" if value else "false"
    if jstype == "Bigint":
        return f"{value}n"
    if jstype in ("integer", "float"):
        return str(value)
    if jstype in ("array", "dict"):
        return _js_literal(value)
    return value if isinstance(value, str) else json.dumps(value)


def _encode_for_language(scenario: Scenario, func_name: str, args: dict[str, Any]) -> dict[str, Any]:
    if scenario.language == "python":
        return args
    doc = next(d for d in scenario.checker_functions if d["name"] == func_name)
    props = doc["parameters"]["properties"]
    out = {}
    for key, val in args.items():
        spec = props.get(key, {})
        ptype = spec.get("type", "String")
        item_type = (spec.get("items") or {}).get("type")
        if scenario.language == "java":
            out[key] = encode_java(val, ptype, item_type)
        else:
            out[key] = encode_js(val, ptype)
    return out


def gold_calls(scenario: Scenario, toolset: Optional[ToolSet] = None) -> list[Call]:
    """The calls a perfect model emits for a single-turn AST case.

    With ``toolset`` the names are the sanitized tool names the model sees.
    """
    rename: Callable[[str], str] = (
        (lambda n: toolset.to_sanitized.get(n, n)) if toolset is not None else (lambda n: n)
    )
    calls: list[Call] = []
    docs = {d["name"]: d for d in scenario.checker_functions}
    for item in scenario.ground_truth or []:
        (name, params), = item.items()
        doc_params = (docs.get(name) or {}).get("parameters", {})
        required = set(doc_params.get("required", []))
        declared = set(doc_params.get("properties", {}))
        args = {}
        for key, opts in params.items():
            if key not in declared and isinstance(opts, list) and "" in opts:
                continue  # an undeclared parameter is only passable by omission
            chosen = first_option(opts, key in required)
            if chosen is not _OMIT:
                args[key] = chosen
        calls.append({"name": rename(name), "arguments": _encode_for_language(scenario, name, args)})
    return calls


# ----------------------------------------------------------------- multi turn


def parse_call_string(
    call: str, signature_of: Callable[[str], inspect.Signature]
) -> tuple[str, dict[str, Any]]:
    """``"mv(source='a', destination='b')"`` -> ``("mv", {...})``.

    Positional arguments are bound to parameter names with the method's
    signature, so the result is a keyword-only call a model would emit.
    """
    node = ast.parse(call.strip(), mode="eval").body
    if not isinstance(node, ast.Call) or not isinstance(node.func, ast.Name):
        raise ValueError(f"not a simple call: {call!r}")
    name = node.func.id
    args = [ast.literal_eval(a) for a in node.args]
    kwargs = {kw.arg: ast.literal_eval(kw.value) for kw in node.keywords if kw.arg}
    if args:
        bound = signature_of(name).bind_partial(*args, **kwargs)
        kwargs = dict(bound.arguments)
    return name, kwargs


def gold_turns(
    scenario: Scenario, signature_of: Callable[[str], inspect.Signature]
) -> list[list[tuple[str, dict[str, Any]]]]:
    """Multi-turn ground truth as ``(name, arguments)`` per turn."""
    return [[parse_call_string(c, signature_of) for c in turn] for turn in scenario.ground_truth]
