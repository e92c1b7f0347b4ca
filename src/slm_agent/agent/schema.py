"""JSON schemas derived from ROS 2 interface types, and JSON <-> message conversion.

Why derive instead of hand-writing schemas: the service request type is the
contract the robot actually enforces, so the schema the model sees (and the
grammar that constrains it) cannot drift from what the service accepts.  The
tool set only *narrows* it (bounds, enums, descriptions, optional fields).

Introspection uses the generated classes' ``get_fields_and_field_types()``
and ``SLOT_TYPES`` (``rosidl_parser.definition`` objects).  This module never
imports rclpy: importing a generated ``pkg.srv`` module does not load any
type support.

``rosidl_runtime_py`` is not installed in this environment (checked: the ROS
wheels here ship ``rosidl_parser`` but not ``rosidl_runtime_py``), so the
message <-> dict conversion is written here, strict about ranges because the
generated setters only check types when ``ROS_PYTHON_CHECK_FIELDS=1``.
"""
from __future__ import annotations

import array
import copy
import importlib
import math
import re
from typing import Any, Iterable, Optional

from rosidl_parser import definition as idl

from slm_agent.agent.safety import validate_value

_TYPE_RE = re.compile(r"^([A-Za-z_][A-Za-z0-9_]*)/(msg|srv|action)/([A-Za-z_][A-Za-z0-9_]*)$")

#: Integer ranges by IDL type name (``char`` is an 8-bit int in rosidl Python).
INT_RANGES: dict[str, tuple[int, int]] = {
    "int8": (-(2**7), 2**7 - 1),
    "uint8": (0, 2**8 - 1),
    "int16": (-(2**15), 2**15 - 1),
    "uint16": (0, 2**16 - 1),
    "int32": (-(2**31), 2**31 - 1),
    "uint32": (0, 2**32 - 1),
    "int64": (-(2**63), 2**63 - 1),
    "uint64": (0, 2**64 - 1),
    "short": (-(2**15), 2**15 - 1),
    "unsigned short": (0, 2**16 - 1),
    "long": (-(2**31), 2**31 - 1),
    "unsigned long": (0, 2**32 - 1),
    "long long": (-(2**63), 2**63 - 1),
    "unsigned long long": (0, 2**64 - 1),
    "char": (0, 255),
    "octet": (0, 255),
}
FLOAT32_MAX = 3.4028234663852886e38
FLOAT_TYPES = {"float": FLOAT32_MAX, "double": 1.7976931348623157e308, "long double": 1.7976931348623157e308}

#: Keys a tool set may put on a field (snake_case aliases accepted by toolset.py).
OVERRIDE_KEYS = frozenset(
    {
        "description",
        "minimum",
        "maximum",
        "exclusiveMinimum",
        "exclusiveMaximum",
        "enum",
        "required",
        "default",
        "maxLength",
        "maxItems",
    }
)


class SchemaError(ValueError):
    """A type or tool-set override cannot be turned into a schema."""


# --------------------------------------------------------------------------- types


def import_interface(type_str: str) -> type:
    """Import ``pkg/srv/Type`` (or ``pkg/msg/Type``, ``pkg/action/Type``)."""
    m = _TYPE_RE.match(type_str or "")
    if not m:
        raise SchemaError(f"interface type '{type_str}' is not of the form pkg/srv/Type")
    pkg, kind, name = m.groups()
    try:
        module = importlib.import_module(f"{pkg}.{kind}")
    except ImportError as exc:
        raise SchemaError(f"cannot import {pkg}.{kind} for '{type_str}': {exc}") from exc
    cls = getattr(module, name, None)
    if cls is None:
        raise SchemaError(f"{pkg}.{kind} has no type '{name}' (from '{type_str}')")
    return cls


def service_request_class(service_type: str) -> type:
    """The ``Request`` message class of a ``pkg/srv/Type`` service."""
    if "/srv/" not in (service_type or ""):
        raise SchemaError(f"'{service_type}' is not a service type (pkg/srv/Type)")
    srv = import_interface(service_type)
    req = getattr(srv, "Request", None)
    if req is None:
        raise SchemaError(f"'{service_type}' has no Request type")
    return req


def _nested_class(t: idl.NamespacedType) -> type:
    return import_interface("/".join([*t.namespaces, t.name]))


def _fields(msg_cls: type) -> list[tuple[str, Any]]:
    """(field name, rosidl definition type) in declaration order."""
    names = list(msg_cls.get_fields_and_field_types().keys())
    return list(zip(names, msg_cls.SLOT_TYPES))


def _constants(msg_cls: type) -> dict[str, Any]:
    """Constants declared in the message (``MODE_DIRECT=0`` ...)."""
    meta = type(msg_cls)
    for key, value in vars(meta).items():
        if key.endswith("__constants") and isinstance(value, dict):
            return dict(value)
    return {}


# --------------------------------------------------------------------------- schema


def _type_schema(t: Any) -> dict[str, Any]:
    if isinstance(t, idl.BasicType):
        tn = t.typename
        if tn == "boolean":
            return {"type": "boolean"}
        if tn in INT_RANGES:
            lo, hi = INT_RANGES[tn]
            return {"type": "integer", "minimum": lo, "maximum": hi}
        if tn in FLOAT_TYPES:
            return {"type": "number"}
        raise SchemaError(f"unsupported basic type '{tn}'")
    if isinstance(t, idl.AbstractGenericString):
        s: dict[str, Any] = {"type": "string"}
        if isinstance(t, (idl.BoundedString, idl.BoundedWString)):
            s["maxLength"] = int(t.maximum_size)
        return s
    if isinstance(t, idl.NamespacedType):
        return message_schema(_nested_class(t))
    if isinstance(t, idl.Array):
        return {
            "type": "array",
            "items": _type_schema(t.value_type),
            "minItems": int(t.size),
            "maxItems": int(t.size),
        }
    if isinstance(t, idl.BoundedSequence):
        return {"type": "array", "items": _type_schema(t.value_type), "maxItems": int(t.maximum_size)}
    if isinstance(t, idl.UnboundedSequence):
        return {"type": "array", "items": _type_schema(t.value_type)}
    raise SchemaError(f"unsupported interface type {type(t).__name__}")


def message_schema(msg_cls: type) -> dict[str, Any]:
    """JSON schema (an object) for one message class, recursively.

    Every field is required (a ROS message always carries every field);
    :func:`apply_overrides` relaxes that per field.  Constants whose name starts
    with the upper-cased field name plus ``_`` become that field's ``enum``.
    """
    props: dict[str, Any] = {}
    constants = _constants(msg_cls)
    for name, t in _fields(msg_cls):
        s = _type_schema(t)
        prefix = name.upper() + "_"
        named = {k: v for k, v in constants.items() if k.startswith(prefix)}
        if named and s.get("type") in ("integer", "number", "string"):
            values = sorted(set(named.values()), key=lambda v: (str(type(v)), v))
            s["enum"] = values
            s["description"] = "one of " + ", ".join(f"{k}={v}" for k, v in named.items())
        props[name] = s
    return {
        "type": "object",
        "properties": props,
        "required": list(props.keys()),
        "additionalProperties": False,
    }


def _split_path(path: str) -> list[str]:
    if not path or path.startswith(".") or path.endswith(".") or ".." in path:
        raise SchemaError(f"bad field path '{path}'")
    return path.split(".")


def _resolve(schema: dict[str, Any], path: str) -> tuple[dict[str, Any], dict[str, Any], str]:
    """(parent object schema, field schema, field name) for ``a.b[].c`` paths."""
    node = schema
    parent: dict[str, Any] = schema
    name = ""
    for part in _split_path(path):
        items = 0
        while part.endswith("[]"):
            part, items = part[:-2], items + 1
        props = node.get("properties")
        if not isinstance(props, dict) or part not in props:
            have = ", ".join(props.keys()) if isinstance(props, dict) else "none"
            raise SchemaError(f"field '{path}': no field '{part}' here (fields: {have})")
        parent, name, node = node, part, props[part]
        for _ in range(items):
            if node.get("type") != "array":
                raise SchemaError(f"field '{path}': '{part}' is not an array, '[]' does not apply")
            parent, node = node, node["items"]
            name = ""
    return parent, node, name


def apply_overrides(schema: dict[str, Any], fields: dict[str, dict[str, Any]]) -> tuple[dict[str, Any], dict[str, Any]]:
    """Merge tool-set field settings into a derived schema.

    Returns ``(schema, defaults)``; ``defaults`` maps field paths to values
    filled in when the model omits an optional field.  Overrides may only
    narrow what the ROS type allows: a bound outside the type's range, or an
    enum value the type cannot hold, is an error naming the field.
    """
    schema = copy.deepcopy(schema)
    defaults: dict[str, Any] = {}
    for path, ov in (fields or {}).items():
        if not isinstance(ov, dict):
            raise SchemaError(f"field '{path}': settings must be a mapping, got {type(ov).__name__}")
        unknown = set(ov) - OVERRIDE_KEYS
        if unknown:
            raise SchemaError(
                f"field '{path}': unknown key(s) {sorted(unknown)}; allowed: {sorted(OVERRIDE_KEYS)}"
            )
        parent, node, name = _resolve(schema, path)
        kind = node.get("type")
        for key in ("minimum", "maximum", "exclusiveMinimum", "exclusiveMaximum"):
            if key not in ov:
                continue
            v = ov[key]
            if kind not in ("integer", "number"):
                raise SchemaError(f"field '{path}': '{key}' needs a numeric field, this one is {kind}")
            if isinstance(v, bool) or not isinstance(v, (int, float)) or not math.isfinite(v):
                raise SchemaError(f"field '{path}': '{key}' must be a finite number, got {v!r}")
            lo, hi = node.get("minimum"), node.get("maximum")
            if (lo is not None and v < lo) or (hi is not None and v > hi):
                raise SchemaError(f"field '{path}': {key} {v} is outside the type's range [{lo}, {hi}]")
        merged = {**node}
        for key in ("minimum", "maximum", "exclusiveMinimum", "exclusiveMaximum"):
            if key in ov:
                merged[key] = ov[key]
        # an exclusive bound from the tool set makes a looser type bound redundant
        if "exclusiveMinimum" in ov and merged.get("minimum", -math.inf) <= ov["exclusiveMinimum"]:
            merged.pop("minimum", None)
        if "exclusiveMaximum" in ov and merged.get("maximum", math.inf) >= ov["exclusiveMaximum"]:
            merged.pop("maximum", None)
        lo = merged.get("minimum", merged.get("exclusiveMinimum"))
        hi = merged.get("maximum", merged.get("exclusiveMaximum"))
        if lo is not None and hi is not None and lo > hi:
            raise SchemaError(f"field '{path}': lower bound {lo} is above upper bound {hi}")
        if "enum" in ov:
            values = ov["enum"]
            if not isinstance(values, list) or not values:
                raise SchemaError(f"field '{path}': 'enum' must be a non-empty list")
            if "enum" in node:
                bad = [v for v in values if v not in node["enum"]]
                if bad:
                    raise SchemaError(f"field '{path}': enum values {bad} are not among {node['enum']}")
            for v in values:
                errs = validate_value({k: w for k, w in node.items() if k != "enum"}, v, path)
                if errs:
                    raise SchemaError(f"field '{path}': enum value {v!r} does not fit the type: {errs[0]}")
            merged["enum"] = list(values)
        for key, kinds in (("maxLength", ("string",)), ("maxItems", ("array",))):
            if key in ov:
                v = ov[key]
                if kind not in kinds:
                    raise SchemaError(f"field '{path}': '{key}' does not apply to a {kind} field")
                if isinstance(v, bool) or not isinstance(v, int) or v < 0:
                    raise SchemaError(f"field '{path}': '{key}' must be a non-negative integer")
                if key in node and v > node[key]:
                    raise SchemaError(f"field '{path}': {key} {v} exceeds the type's limit {node[key]}")
                merged[key] = v
        if "description" in ov:
            desc = str(ov["description"]).strip()
            merged["description"] = f"{desc} ({node['description']})" if node.get("description") else desc
        node.clear()
        node.update(merged)
        required_flag = ov.get("required")
        if "default" in ov:
            errs = validate_value(node, ov["default"], path)
            if errs:
                raise SchemaError(f"field '{path}': default {ov['default']!r} is invalid: {errs[0]}")
            defaults[path] = copy.deepcopy(ov["default"])
            if required_flag is None:
                required_flag = False
        if required_flag is not None:
            if not isinstance(required_flag, bool):
                raise SchemaError(f"field '{path}': 'required' must be true or false")
            if not name:
                raise SchemaError(f"field '{path}': 'required' applies to object fields, not array items")
            req = [r for r in parent.get("required", []) if r != name]
            if required_flag:
                req.append(name)
                order = list(parent["properties"].keys())
                req.sort(key=order.index)
            parent["required"] = req
    return schema, defaults


def tool_parameters_schema(
    service_type: str, fields: Optional[dict[str, dict[str, Any]]] = None
) -> tuple[dict[str, Any], dict[str, Any]]:
    """(arguments schema, defaults) for a service, narrowed by tool-set fields."""
    return apply_overrides(message_schema(service_request_class(service_type)), fields or {})


# --------------------------------------------------------------------------- defaults


def apply_defaults(args: dict[str, Any], defaults: dict[str, Any]) -> dict[str, Any]:
    """Copy of ``args`` with tool-set defaults filled in where a field is absent."""
    out = copy.deepcopy(args)
    for path, value in defaults.items():
        _fill(out, _split_path(path), value)
    return out


def _fill(node: Any, parts: list[str], value: Any) -> None:
    part, rest = parts[0], parts[1:]
    items = 0
    while part.endswith("[]"):
        part, items = part[:-2], items + 1
    if not isinstance(node, dict):
        return
    if not rest and not items:
        node.setdefault(part, copy.deepcopy(value))
        return
    children = [node.get(part)]
    for _ in range(items):
        children = [c for lst in children if isinstance(lst, list) for c in lst]
    for child in children:
        if rest:
            _fill(child, rest, value)


# --------------------------------------------------------------------------- conversion


def _check_number(t: idl.BasicType, v: Any, where: str) -> Any:
    tn = t.typename
    if tn == "boolean":
        if not isinstance(v, bool):
            raise ValueError(f"{where}: expected true/false, got {v!r}")
        return v
    if isinstance(v, bool) or not isinstance(v, (int, float)):
        raise ValueError(f"{where}: expected a number, got {type(v).__name__} {v!r}")
    if tn in INT_RANGES:
        if isinstance(v, float):
            if not v.is_integer():
                raise ValueError(f"{where}: expected an integer, got {v!r}")
            v = int(v)
        lo, hi = INT_RANGES[tn]
        if not lo <= v <= hi:
            raise ValueError(f"{where}: {v} is outside the {tn} range [{lo}, {hi}]")
        return bytes([v]) if tn == "octet" else v
    if tn in FLOAT_TYPES:
        v = float(v)
        if not math.isfinite(v) or abs(v) > FLOAT_TYPES[tn]:
            raise ValueError(f"{where}: {v!r} is not a finite {tn}")
        return v
    raise ValueError(f"{where}: unsupported type {tn}")


def _convert(t: Any, v: Any, where: str) -> Any:
    if isinstance(t, idl.BasicType):
        return _check_number(t, v, where)
    if isinstance(t, idl.AbstractGenericString):
        if not isinstance(v, str):
            raise ValueError(f"{where}: expected a string, got {type(v).__name__}")
        if isinstance(t, (idl.BoundedString, idl.BoundedWString)) and len(v) > t.maximum_size:
            raise ValueError(f"{where}: string of length {len(v)} exceeds the maximum {t.maximum_size}")
        if isinstance(t, idl.AbstractString):
            try:
                v.encode("utf-8")
            except UnicodeEncodeError as exc:
                raise ValueError(f"{where}: string is not valid UTF-8 ({exc.reason})") from exc
        return v
    if isinstance(t, idl.NamespacedType):
        if not isinstance(v, dict):
            raise ValueError(f"{where}: expected an object, got {type(v).__name__}")
        return _fill_message(_nested_class(t), v, where)
    if isinstance(t, idl.AbstractNestedType):
        if not isinstance(v, (list, tuple)):
            raise ValueError(f"{where}: expected a list, got {type(v).__name__}")
        if isinstance(t, idl.Array) and len(v) != t.size:
            raise ValueError(f"{where}: expected exactly {t.size} items, got {len(v)}")
        if isinstance(t, idl.BoundedSequence) and len(v) > t.maximum_size:
            raise ValueError(f"{where}: {len(v)} items exceed the maximum {t.maximum_size}")
        return [_convert(t.value_type, item, f"{where}[{i}]") for i, item in enumerate(v)]
    raise ValueError(f"{where}: unsupported type {type(t).__name__}")


def _new_message(msg_cls: type) -> Any:
    try:  # the generated setters then assert types and ranges as a second check
        return msg_cls(check_fields=True)
    except (TypeError, AssertionError):
        return msg_cls()


def _fill_message(msg_cls: type, args: dict[str, Any], where: str) -> Any:
    fields = dict(_fields(msg_cls))
    extra = [k for k in args if k not in fields]
    if extra:
        raise ValueError(f"{where}: unknown field(s) {extra}; fields are {list(fields)}")
    msg = _new_message(msg_cls)
    for name, value in args.items():
        converted = _convert(fields[name], value, f"{where}.{name}" if where else name)
        try:
            setattr(msg, name, converted)
        except (AssertionError, TypeError, ValueError) as exc:
            raise ValueError(f"{where}.{name}: rejected by the message type: {exc}") from exc
    return msg


def json_to_request(request_cls: type, args: dict[str, Any], defaults: Optional[dict[str, Any]] = None) -> Any:
    """Build a request message from (validated) JSON arguments.

    Strict on its own (types, integer ranges, finite floats, string and
    sequence bounds, unknown keys) because it is the last step before the
    wire; raises ``ValueError`` with the offending field path.
    """
    if not isinstance(args, dict):
        raise ValueError(f"arguments must be an object, got {type(args).__name__}")
    if defaults:
        args = apply_defaults(args, defaults)
    return _fill_message(request_cls, args, "")


def _plain(t: Any, v: Any) -> Any:
    if isinstance(t, idl.BasicType):
        tn = t.typename
        if tn == "octet":
            return v[0] if isinstance(v, (bytes, bytearray)) and v else int(v or 0)
        if tn in FLOAT_TYPES:
            v = float(v)
            if not math.isfinite(v):
                return "NaN" if math.isnan(v) else ("Infinity" if v > 0 else "-Infinity")
            if tn == "float":  # float32 -> shortest decimal that round-trips at float32 precision
                return float(f"{v:.7g}")
            return v
        if tn == "boolean":
            return bool(v)
        return int(v)
    if isinstance(t, idl.AbstractGenericString):
        return str(v)
    if isinstance(t, idl.NamespacedType):
        return response_to_dict(v)
    if isinstance(t, idl.AbstractNestedType):
        seq: Iterable[Any] = v.tolist() if hasattr(v, "tolist") and not isinstance(v, array.array) else v
        if isinstance(v, (bytes, bytearray)):
            return list(v)
        return [_plain(t.value_type, item) for item in seq]
    return v


def response_to_dict(msg: Any) -> dict[str, Any]:
    """Message -> JSON-safe dict (non-finite floats become "NaN"/"Infinity" strings)."""
    cls = type(msg)
    return {name: _plain(t, getattr(msg, name)) for name, t in _fields(cls)}
