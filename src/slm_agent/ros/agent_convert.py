"""Agent dataclasses (``slm_agent.agent`` / ``slm_agent.engines``) <-> ROS messages.

Pure functions with no node state, so the agent node stays a thin adapter and
the rules are testable without DDS.  Rules the message types force on us:

* float fields keep NaN for "unknown" (``ToolResult.latency_ms`` when no
  service was called, rates that could not be measured, ``energy_j``);
* ``uint32`` token counts cannot hold negatives or NaN: they are clamped to 0;
* tool-call arguments travel as JSON text.  :func:`arguments_json` is the one
  spelling used everywhere (``ToolCall.arguments_json`` in records, feedback
  and transcript, and the ``arguments_json`` an ``slm_agent/srv/InvokeTool``
  service receives), so a client can compare them byte for byte;
* a ``ToolSpec`` message naming ``slm_agent/srv/InvokeTool`` with an empty
  ``parameters_json_schema`` means "any arguments object" (the generic
  service's own request fields are *not* the tool's arguments).
"""
from __future__ import annotations

import json
import math
from typing import Any, Iterable, Optional, Sequence

from builtin_interfaces.msg import Time

from slm_agent.action import RunTask
from slm_agent.agent.toolset import spec_from_dict
from slm_agent.agent.types import INVOKE_TOOL_TYPE, Status, ToolCall, ToolResult, ToolSpec
from slm_agent.coerce import num
from slm_agent.engines.base import CallMetrics
from slm_agent.msg import ChatMessage, InferenceMetrics
from slm_agent.msg import ToolCall as ToolCallMsg
from slm_agent.msg import ToolCallRecord
from slm_agent.msg import ToolResult as ToolResultMsg
from slm_agent.msg import ToolSpec as ToolSpecMsg
from slm_agent.ros.tool_invoker import arguments_json

_ANY_OBJECT: dict[str, Any] = {"type": "object"}


class ConversionError(ValueError):
    """A message cannot be turned into agent data (the text says which and why)."""


def _u32(value: Any) -> int:
    try:
        v = int(value)
    except (TypeError, ValueError, OverflowError):
        return 0
    return min(max(v, 0), 0xFFFFFFFF)


def content_json(content: Any) -> str:
    """A tool result's content for ``ToolResult.content_json``.

    A string is sent as is (BFCL results are strings, a service's text
    answer too); anything else as JSON.
    """
    if isinstance(content, str):
        return content
    return json.dumps(content, ensure_ascii=False, default=str)


def time_msg(ns: int) -> Time:
    ns = max(int(ns), 0)
    return Time(sec=ns // 1_000_000_000, nanosec=ns % 1_000_000_000)


# ------------------------------------------------------------------ tool specs

def tool_spec_from_msg(msg: Any) -> ToolSpec:
    """A goal's ``ToolSpec`` message as agent data.

    Raises :class:`ConversionError` naming the tool when the schema is not
    JSON or the spec is unusable (e.g. an empty schema for a service type
    that cannot be imported).
    """
    name = getattr(msg, "name", "") or ""
    if not name:
        raise ConversionError("a goal ToolSpec has an empty name")
    schema_text = (getattr(msg, "parameters_json_schema", "") or "").strip()
    try:
        if not schema_text and msg.service_type != INVOKE_TOOL_TYPE:
            # derive the schema from the service type, as a tool set entry does
            spec = spec_from_dict({
                "name": name, "description": msg.description, "service": msg.service_name,
                "type": msg.service_type, "timeout_s": msg.timeout_s or 5.0,
                "requires_confirmation": msg.requires_confirmation, "max_rate_hz": msg.max_rate_hz,
            }, where=f"ToolSpec '{name}'")
        else:  # an empty InvokeTool schema: any arguments object (see the module docstring)
            spec = ToolSpec(
                name=name, description=msg.description, service_name=msg.service_name,
                service_type=msg.service_type,
                parameters=json.loads(schema_text) if schema_text else dict(_ANY_OBJECT),
                timeout_s=float(msg.timeout_s) if msg.timeout_s > 0 else 5.0,
                requires_confirmation=bool(msg.requires_confirmation), max_rate_hz=float(msg.max_rate_hz))
    except json.JSONDecodeError as exc:
        raise ConversionError(f"tool '{name}': parameters_json_schema is not JSON: {exc}") from exc
    except ValueError as exc:  # ToolSetError / SchemaError from deriving the schema
        raise ConversionError(f"tool '{name}': {exc}") from exc
    if not isinstance(spec.parameters, dict):
        raise ConversionError(f"tool '{name}': parameters_json_schema must be a JSON object")
    if not math.isfinite(spec.timeout_s) or spec.timeout_s <= 0:
        raise ConversionError(f"tool '{name}': timeout_s must be > 0, got {msg.timeout_s}")
    return spec


def tool_spec_fields(spec: ToolSpec) -> dict[str, Any]:
    """Keyword arguments for ``slm_agent.msg.ToolSpec(**fields)`` (the schema as compact JSON)."""
    return {
        "name": spec.name,
        "description": spec.description,
        "service_name": spec.service_name,
        "service_type": spec.service_type,
        "parameters_json_schema": json.dumps(spec.parameters, separators=(",", ":")),
        "timeout_s": float(spec.timeout_s),
        "requires_confirmation": bool(spec.requires_confirmation),
        "max_rate_hz": float(spec.max_rate_hz),
    }


def tool_spec_msg(spec: ToolSpec) -> ToolSpecMsg:
    return ToolSpecMsg(**tool_spec_fields(spec))


# ------------------------------------------------------------------ messages

def messages_from_msgs(msgs: Iterable[Any]) -> list[dict[str, Any]]:
    """``ChatMessage[]`` -> OpenAI-style dicts (the loop's transcript format)."""
    out: list[dict[str, Any]] = []
    for m in msgs:
        d: dict[str, Any] = {"role": m.role or "user", "content": m.content}
        if m.name:
            d["name"] = m.name
        if m.tool_call_id:
            d["tool_call_id"] = m.tool_call_id
        if m.tool_calls:
            d["tool_calls"] = [
                {"id": c.id, "type": "function",
                 "function": {"name": c.name, "arguments": c.arguments_json or "{}"}}
                for c in m.tool_calls
            ]
        out.append(d)
    return out


def chat_messages(transcript: Sequence[dict[str, Any]], calls: Sequence[ToolCall] = ()) -> list[ChatMessage]:
    """Message dicts -> ``ChatMessage[]``: the loop's transcript (OpenAI-style tool calls,
    ``{"id", "function": {"name", "arguments"}}``; ``calls`` supply each call's step) or
    ChatMessage fields as suites' turns and results.jsonl hold them (tool calls
    ``{"id", "name", "arguments_json", "step"}``)."""
    steps = {c.id: c.step for c in calls}
    out: list[ChatMessage] = []
    for d in transcript:
        content = d.get("content", "")
        msg = ChatMessage(role=str(d.get("role", "")),
                          content=content if isinstance(content, str) else content_json(content),
                          name=str(d.get("name", "") or ""), tool_call_id=str(d.get("tool_call_id", "") or ""))
        for c in d.get("tool_calls") or []:
            cid = str(c.get("id", ""))
            if "function" in c:
                fn = c.get("function") or {}
                name, args, step = fn.get("name", ""), fn.get("arguments", "{}"), steps.get(cid, 0)
            else:
                name, args, step = c.get("name", ""), c.get("arguments_json", ""), c.get("step", 0)
            msg.tool_calls.append(ToolCallMsg(
                id=cid, name=str(name), arguments_json=args if isinstance(args, str) else arguments_json(args),
                step=_u32(step)))
        out.append(msg)
    return out


def tool_call_msg(call: ToolCall, stamp: Optional[Time] = None) -> ToolCallMsg:
    msg = ToolCallMsg(id=call.id, name=call.name, arguments_json=arguments_json(call.arguments),
                      step=_u32(call.step))
    if stamp is not None:
        msg.header.stamp = stamp
    return msg


def tool_result_msg(result: Optional[ToolResult], call: ToolCall, stamp: Optional[Time] = None) -> ToolResultMsg:
    """``result`` None -> a placeholder for a call that has not run yet
    (``KIND_TOOL_CALL`` feedback): status REFUSED, error ``pending``, NaN latency."""
    if result is None:
        msg = ToolResultMsg(call_id=call.id, name=call.name, status=int(Status.REFUSED),
                            error="pending", latency_ms=math.nan)
    else:
        latency = num(result.latency_ms)
        msg = ToolResultMsg(call_id=result.call_id or call.id, name=result.name or call.name,
                            status=int(result.status), content_json=content_json(result.content),
                            error=result.error or "", latency_ms=latency)
    if stamp is not None:
        msg.header.stamp = stamp
    return msg


def tool_call_record(task_id: str, call: ToolCall, result: Optional[ToolResult],
                     call_stamp: Optional[Time] = None, result_stamp: Optional[Time] = None) -> ToolCallRecord:
    return ToolCallRecord(task_id=task_id, call=tool_call_msg(call, call_stamp),
                          result=tool_result_msg(result, call, result_stamp or call_stamp))


def set_fields(msg: Any, **values: Any) -> Any:
    """Set the fields ``values`` names that ``msg``'s built type has; returns ``msg``.

    Why: fields added to the interfaces (issue 26: confidence, the cascade's
    per-step model and trigger) reach a venv only when its interfaces are
    rebuilt (``tools/bootstrap.py``).  Nodes started from a newer checkout
    against older built interfaces keep running; the new fields are then
    simply absent from their messages, and readers use ``getattr`` defaults."""
    have = msg.get_fields_and_field_types() if hasattr(msg, "get_fields_and_field_types") else {}
    for name, value in values.items():
        if name in have:
            setattr(msg, name, value)
    return msg


def inference_metrics_msg(m: CallMetrics, *, task_id: str, request_id: str, step: int,
                          start_ns: int, end_ns: int, power_mode: str = "",
                          energy_j: float = math.nan, escalation: str = "") -> InferenceMetrics:
    """One LLM call's metrics; ``start_ns``/``end_ns`` are node-clock times; ``escalation``:
    the cascade's trigger when the call re-asked a step of the fallback model ("" = the primary)."""
    msg = InferenceMetrics(
        task_id=task_id, request_id=request_id, step=_u32(step), engine=m.engine, backend=m.backend,
        model=m.model, power_mode=power_mode or "", prompt_tokens=_u32(m.prompt_tokens),
        cached_prompt_tokens=_u32(m.cached_prompt_tokens), decode_tokens=_u32(m.decode_tokens),
        ttft_ms=num(m.ttft_s) * 1e3, prefill_tokens_per_s=num(m.prefill_tokens_per_s),
        decode_tokens_per_s=num(m.decode_tokens_per_s), total_ms=num(m.total_s) * 1e3,
        energy_j=num(energy_j), finish_reason=m.finish_reason or "",
        engine_counter_names=[str(k) for k in m.engine_counters],
        engine_counter_values=[num(v) for v in m.engine_counters.values()],
    )
    msg.header.stamp = time_msg(start_ns)
    msg.end_stamp = time_msg(end_ns)
    set_fields(msg, min_logprob=num(getattr(m, "min_logprob", math.nan)),
               top_margin=num(getattr(m, "top_margin", math.nan)),
               escalation=escalation or getattr(m, "escalation", "") or "")
    return msg


def text_feedback(step: int, text: str) -> Any:
    return RunTask.Feedback(kind=RunTask.Feedback.KIND_TEXT, step=_u32(step), text_delta=text)


def call_feedback(kind: int, record: ToolCallRecord, step: int) -> Any:
    return RunTask.Feedback(kind=kind, step=_u32(step), tool_call=record)


__all__ = [
    "INVOKE_TOOL_TYPE", "ConversionError", "arguments_json", "content_json", "time_msg",
    "tool_spec_fields", "tool_spec_from_msg", "tool_spec_msg", "messages_from_msgs", "chat_messages", "tool_call_msg",
    "tool_result_msg", "tool_call_record", "inference_metrics_msg", "text_feedback", "call_feedback", "set_fields",
]
