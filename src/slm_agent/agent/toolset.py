"""Tool sets: YAML files naming which robot services a model may call, and how.

A tool set is the allowlist.  Anything not in it cannot be called, so the
loader is strict: unknown keys, bad types, duplicate names and bounds the ROS
type cannot hold are errors that name the file, the tool and the key, rather
than silently producing a looser envelope.

Format (``config/tool_sets/demo_robot.yaml`` is the worked example)::

    name: demo_robot
    example:                       # optional one-shot example for base-model prompts
      user: Open the gripper.
      call: {name: gripper, arguments: {data: true}}
      result: {success: true, message: gripper opened}
      answer: The gripper is open.
    max_reply_chars: 8000          # optional (default 8000; 0 = no limit): longer
                                   # tool replies reach the model cut, with a marker
    tools:
      - name: move_to
        service: /demo_robot/move_to
        type: slm_agent/srv/MoveTo
        description: Drive to a pose in the map frame.
        timeout_s: 10
        requires_confirmation: false
        max_rate_hz: 1
        idempotent: false          # default; true = safe to run again with the same
                                   # arguments (only then re-run after a timeout)
        max_reply_chars: 8000      # optional per-tool override of the set's limit
        fields:                    # paths into the request; "via[].x" = x of every via item
          goal.x: {minimum: -10, maximum: 10, description: metres}
          frame_id: {default: map}
          via: {required: false}

A tool without a ROS type of its own may give ``parameters`` (a JSON schema)
instead of deriving it, e.g. scenario tools served by ``slm_agent/srv/InvokeTool``.
"""
from __future__ import annotations

import math
import os
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Optional, Union

import yaml

from slm_agent.agent.schema import SchemaError, tool_parameters_schema
from slm_agent.config_paths import find_config, search_dirs as config_search_dirs
from slm_agent.agent.types import FINAL_ANSWER_TOOL, ToolSpec

_NAME_RE = re.compile(r"^[A-Za-z_][A-Za-z0-9_]{0,63}$")
_SERVICE_RE = re.compile(r"^/?[A-Za-z_~][A-Za-z0-9_/~]*$")
_TOOL_KEYS = {
    "name",
    "service",
    "type",
    "description",
    "timeout_s",
    "requires_confirmation",
    "max_rate_hz",
    "fields",
    "parameters",
    "idempotent",
    "max_reply_chars",
}
_TOP_KEYS = {"name", "description", "tools", "example", "max_reply_chars"}
#: default ``max_reply_chars``: a tool reply longer than this reaches the model cut
DEFAULT_MAX_REPLY_CHARS = 8000
_EXAMPLE_KEYS = {"user", "call", "result", "answer"}
_FIELD_ALIASES = {
    "exclusive_minimum": "exclusiveMinimum",
    "exclusive_maximum": "exclusiveMaximum",
    "max_length": "maxLength",
    "max_items": "maxItems",
    "min": "minimum",
    "max": "maximum",
}


class ToolSetError(ValueError):
    """A tool set is malformed; the message names the file, tool and key."""


@dataclass
class ToolSet:
    name: str
    tools: list[ToolSpec]
    example: Optional[dict[str, Any]] = None
    description: str = ""
    source: str = ""
    max_reply_chars: int = DEFAULT_MAX_REPLY_CHARS

    def by_name(self) -> dict[str, ToolSpec]:
        return {t.name: t for t in self.tools}


def _number(d: dict[str, Any], key: str, where: str, default: float, positive: bool) -> float:
    v = d.get(key, default)
    if isinstance(v, bool) or not isinstance(v, (int, float)) or not math.isfinite(v):
        raise ToolSetError(f"{where}: '{key}' must be a number, got {v!r}")
    if positive and v <= 0:
        raise ToolSetError(f"{where}: '{key}' must be > 0, got {v!r}")
    if not positive and v < 0:
        raise ToolSetError(f"{where}: '{key}' must be >= 0, got {v!r}")
    return float(v)


def _normalise_fields(fields: Any, where: str) -> dict[str, dict[str, Any]]:
    if fields is None:
        return {}
    if not isinstance(fields, dict):
        raise ToolSetError(f"{where}: 'fields' must be a mapping of field path -> settings")
    out: dict[str, dict[str, Any]] = {}
    for path, settings in fields.items():
        if settings is None:
            settings = {}
        if isinstance(settings, str):  # shorthand: "x: metres" is a description
            settings = {"description": settings}
        if not isinstance(settings, dict):
            raise ToolSetError(f"{where}: fields.{path} must be a mapping, got {type(settings).__name__}")
        out[str(path)] = {_FIELD_ALIASES.get(k, k): v for k, v in settings.items()}
    return out


def _reply_limit(v: Any, where: str) -> int:
    if isinstance(v, bool) or not isinstance(v, int) or v < 0:
        raise ToolSetError(f"{where}: 'max_reply_chars' must be an integer >= 0 (0 = no limit), got {v!r}")
    return v


def spec_from_dict(d: Any, where: str = "tool", max_reply_chars: int = DEFAULT_MAX_REPLY_CHARS) -> ToolSpec:
    """Validate one tool entry and derive its schema from the service type."""
    if not isinstance(d, dict):
        raise ToolSetError(f"{where}: a tool must be a mapping, got {type(d).__name__}")
    name = d.get("name")
    if isinstance(name, str):
        where = f"{where} ({name})"
    unknown = set(d) - _TOOL_KEYS
    if unknown:
        raise ToolSetError(f"{where}: unknown key(s) {sorted(unknown)}; allowed: {sorted(_TOOL_KEYS)}")
    if not isinstance(name, str) or not _NAME_RE.match(name):
        raise ToolSetError(f"{where}: 'name' must be an identifier of at most 64 characters, got {name!r}")
    if name == FINAL_ANSWER_TOOL:
        raise ToolSetError(f"{where}: 'name' {name!r} is reserved for the model's final answer")
    service = d.get("service")
    if not isinstance(service, str) or not _SERVICE_RE.match(service) or "//" in service:
        raise ToolSetError(f"{where}: 'service' must be a ROS service name like /robot/move_to, got {service!r}")
    description = d.get("description")
    if not isinstance(description, str) or not description.strip():
        raise ToolSetError(f"{where}: 'description' must be a non-empty string (the model reads it)")
    stype = d.get("type", "")
    if not isinstance(stype, str):
        raise ToolSetError(f"{where}: 'type' must be a string like std_srvs/srv/SetBool")
    confirm = d.get("requires_confirmation", False)
    if not isinstance(confirm, bool):
        raise ToolSetError(f"{where}: 'requires_confirmation' must be true or false, got {confirm!r}")
    idempotent = d.get("idempotent", False)
    if not isinstance(idempotent, bool):
        raise ToolSetError(f"{where}: 'idempotent' must be true or false, got {idempotent!r}")
    reply_limit = _reply_limit(d.get("max_reply_chars", max_reply_chars), where)
    fields = _normalise_fields(d.get("fields"), where)
    parameters = d.get("parameters")
    defaults: dict[str, Any] = {}
    if parameters is not None:
        if not isinstance(parameters, dict) or parameters.get("type") != "object":
            raise ToolSetError(f"{where}: 'parameters' must be a JSON schema with type: object")
        if fields:
            raise ToolSetError(f"{where}: give either 'parameters' or 'fields', not both")
    else:
        if not stype:
            raise ToolSetError(f"{where}: 'type' is required (e.g. std_srvs/srv/SetBool) unless 'parameters' is given")
        try:
            parameters, defaults = tool_parameters_schema(stype, fields)
        except SchemaError as exc:
            raise ToolSetError(f"{where}: {exc}") from exc
    return ToolSpec(
        name=name,
        description=description.strip(),
        service_name=service,
        service_type=stype,
        parameters=parameters,
        timeout_s=_number(d, "timeout_s", where, 5.0, positive=True),
        requires_confirmation=confirm,
        max_rate_hz=_number(d, "max_rate_hz", where, 0.0, positive=False),
        defaults=defaults,
        idempotent=idempotent,
        max_reply_chars=reply_limit,
    )


def parse_tool_set(data: Any, source: str = "<tool set>") -> ToolSet:
    """Validate parsed YAML: a mapping with ``tools``, or a bare list of tools."""
    if isinstance(data, list):
        data = {"tools": data}
    if not isinstance(data, dict):
        raise ToolSetError(f"{source}: expected a mapping with 'tools' or a list of tools")
    unknown = set(data) - _TOP_KEYS
    if unknown:
        raise ToolSetError(f"{source}: unknown top-level key(s) {sorted(unknown)}; allowed: {sorted(_TOP_KEYS)}")
    raw_tools = data.get("tools")
    if not isinstance(raw_tools, list) or not raw_tools:
        raise ToolSetError(f"{source}: 'tools' must be a non-empty list")
    reply_limit = _reply_limit(data.get("max_reply_chars", DEFAULT_MAX_REPLY_CHARS), source)
    tools: list[ToolSpec] = []
    seen: dict[str, int] = {}
    for i, entry in enumerate(raw_tools):
        spec = spec_from_dict(entry, f"{source}: tools[{i}]", reply_limit)
        if spec.name in seen:
            raise ToolSetError(f"{source}: tools[{i}]: duplicate tool name '{spec.name}' (also tools[{seen[spec.name]}])")
        seen[spec.name] = i
        tools.append(spec)
    example = data.get("example")
    if example is not None:
        if not isinstance(example, dict) or set(example) - _EXAMPLE_KEYS or "user" not in example or "call" not in example:
            raise ToolSetError(f"{source}: 'example' needs keys user and call (optional result, answer)")
        call = example["call"]
        if not isinstance(call, dict) or call.get("name") not in seen or not isinstance(call.get("arguments", {}), dict):
            raise ToolSetError(f"{source}: example.call must name a tool of this set and give an arguments mapping")
    name = data.get("name") or Path(source).stem
    return ToolSet(name=str(name), tools=tools, example=example, description=str(data.get("description", "")), source=source,
                   max_reply_chars=reply_limit)


def load_tool_set(path: Union[str, os.PathLike[str]]) -> ToolSet:
    """Load and validate a YAML tool set file."""
    p = Path(path)
    try:
        text = p.read_text(encoding="utf-8")
    except OSError as exc:
        raise ToolSetError(f"{p}: cannot read tool set: {exc}") from exc
    return load_tool_set_text(text, str(p))


def load_tool_set_text(text: str, source: str = "<tool set>") -> ToolSet:
    try:
        data = yaml.safe_load(text)
    except yaml.YAMLError as exc:
        raise ToolSetError(f"{source}: invalid YAML: {exc}") from exc
    return parse_tool_set(data, source)


def default_tool_set_dirs() -> list[Path]:
    """Where tool sets are looked up by name, first match wins.

    ``$SLM_AGENT_TOOL_SETS`` (``os.pathsep``-separated), the source tree's
    ``config/tool_sets``, the pip data files and, when installed with ament,
    the package share (:func:`slm_agent.config_paths.search_dirs`, shared
    with the model profiles).
    """
    return [d for d in config_search_dirs("tool_sets", "SLM_AGENT_TOOL_SETS") if d.is_dir()]


def resolve_tool_set(name_or_path: str, search_dirs: Optional[list[Path]] = None) -> Path:
    """A tool set file from a path or a bare name like ``demo_robot``."""
    dirs = default_tool_set_dirs() if search_dirs is None else search_dirs
    found = find_config(name_or_path, dirs)
    if found is not None:
        return found
    raise ToolSetError(f"tool set '{name_or_path}' not found in {[str(d) for d in dirs]}")
