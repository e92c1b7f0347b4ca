"""BFCL function docs -> JSON-schema tool specs, with reversible names.

BFCL docs use Gorilla types ("dict", "float", "tuple", "any", Java/JS names).
We map them with BFCL's own table ``GORILLA_TO_OPENAPI`` (unknown or missing
types become "string", floats get ``format: float`` and the same description
suffix BFCL's ``_cast_to_openai_type`` adds), recursing through
``properties``/``items`` at any depth (BFCL's own converter stops at two
levels; deeper levels would otherwise keep non-JSON-schema type names).

Tool names must match ``^[a-zA-Z0-9_-]{1,64}$`` for OpenAI-style APIs and
most chat templates, so BFCL's dotted names (``math.factorial``) are
sanitized like BFCL's FC handlers do (``.`` -> ``_``).  Unlike BFCL we keep an
explicit mapping back to the original name, so scoring never depends on the
lossy ``underscore_to_dot`` heuristic (see ``compat``).

The mapping is strict, as BFCL's official setting is: only a name the model
was shown maps back.  BFCL compares the model's name with the *sanitized*
expected name, so a model that writes the original ``math.factorial`` after
being shown ``math_factorial`` fails (``wrong_func_name``); here such a name
maps to a name no function has (:data:`NOT_SHOWN`).
"""
from __future__ import annotations

import copy
import re
from dataclasses import dataclass, field
from typing import Any

from slm_agent.bench.bfcl.compat import ensure_bfcl

ensure_bfcl()
from bfcl_eval.constants.type_mappings import GORILLA_TO_OPENAPI  # noqa: E402

_FLOAT_SUFFIX = " This is a float type value."
#: appended to an original name the model was not shown (its shown name differs), so it matches no function
NOT_SHOWN = " (not a name the model was shown)"
_NAME_OK = re.compile(r"[^A-Za-z0-9_-]")


def _convert_node(node: Any) -> Any:
    if not isinstance(node, dict):
        return node
    out = dict(node)
    src_type = out.get("type")
    if isinstance(src_type, str) and src_type in GORILLA_TO_OPENAPI:
        out["type"] = GORILLA_TO_OPENAPI[src_type]
        if src_type == "float":
            out["format"] = "float"
            out["description"] = str(out.get("description", "")) + _FLOAT_SUFFIX
    else:
        out["type"] = "string"
    if isinstance(out.get("properties"), dict):
        out["properties"] = {k: _convert_node(v) for k, v in out["properties"].items()}
    if isinstance(out.get("items"), dict):
        out["items"] = _convert_node(out["items"])
    if isinstance(out.get("additionalProperties"), dict):
        out["additionalProperties"] = _convert_node(out["additionalProperties"])
    return out


def parameters_schema(params: dict[str, Any]) -> dict[str, Any]:
    """Convert a BFCL ``parameters`` block to a JSON-schema object."""
    params = copy.deepcopy(params or {})
    props = params.get("properties") or {}
    schema = dict(params)
    schema["type"] = "object"
    schema["properties"] = {k: _convert_node(v) for k, v in props.items()}
    if "required" in schema and not isinstance(schema["required"], list):
        del schema["required"]
    return schema


def sanitize_tool_name(name: str) -> str:
    """BFCL FC handlers' sanitization, generalised to any invalid char."""
    clean = _NAME_OK.sub("_", name)[:64]
    return clean or "_"


@dataclass
class ToolSet:
    """Tool specs for one turn plus the sanitized -> original name mapping."""

    tools: list[dict[str, Any]]
    to_original: dict[str, str] = field(default_factory=dict)

    @property
    def to_sanitized(self) -> dict[str, str]:
        return {orig: clean for clean, orig in self.to_original.items()}

    def original_name(self, name: str) -> str:
        """Map a name the model emitted back to the BFCL name, strictly.

        A shown (sanitized) name maps to its original.  An original name
        that was shown under another name (``math.factorial`` shown as
        ``math_factorial``) gets :data:`NOT_SHOWN` appended, so it matches
        no function, as in BFCL, where the checker compares the model's name
        with the sanitized one.  Anything else (a hallucinated function, a
        held-out multi-turn function) is returned unchanged so the checker
        reports it as BFCL would.
        """
        original = self.to_original.get(name)
        if original is not None:
            return original
        if name in self._hidden_originals:
            return name + NOT_SHOWN
        return name

    def any_name(self, name: str) -> str:
        """Lenient mapping for executing (not scoring): a shown or an original name -> the original."""
        return self.to_original.get(name, name)

    @property
    def _hidden_originals(self) -> set[str]:
        return {orig for clean, orig in self.to_original.items() if clean != orig}

    @property
    def names(self) -> list[str]:
        return [t["name"] for t in self.tools]


def build_toolset(functions: list[dict[str, Any]]) -> ToolSet:
    """Convert BFCL docs (in order) into a :class:`ToolSet`."""
    tools: list[dict[str, Any]] = []
    to_original: dict[str, str] = {}
    for doc in functions:
        original = doc["name"]
        clean = sanitize_tool_name(original)
        base, n = clean, 2
        while clean in to_original and to_original[clean] != original:
            suffix = f"_{n}"
            clean = base[: 64 - len(suffix)] + suffix
            n += 1
        if clean in to_original:  # the same doc twice: keep the first
            continue
        to_original[clean] = original
        tools.append(
            {
                "name": clean,
                "description": doc.get("description", ""),
                "parameters": parameters_schema(doc.get("parameters", {})),
            }
        )
    return ToolSet(tools=tools, to_original=to_original)
