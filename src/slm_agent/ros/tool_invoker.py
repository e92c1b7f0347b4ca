"""Tool calls as ROS 2 service calls (the only agent piece that imports rclpy).

:class:`RosServiceToolInvoker` creates one client per tool in the loaded tool
set, and only those: a name outside the set has no client to reach, whatever
the caller passes.  ``invoke`` never spins: it sends with ``call_async`` and
waits on a ``threading.Event`` set by the future's done callback, so the
node's executor must be spinning in another thread (``spin_until_future_complete``
busy-loops at ~10 ms a call in rclpy 7.1; waiting on the future costs one
DDS round trip).  Clients use their own reentrant callback group so a
response can be processed while an action-server callback of the same node
blocks in ``invoke`` (with a multi-threaded executor).

A call that is not answered within ``timeout_s`` is removed from the
client's pending requests (a late answer is dropped) and reported as
TIMEOUT; the client stays usable for the next call.

Unavailable servers fail fast instead of costing the tool's timeout:

* before sending, a service that is not on the graph is waited for only
  while its client is young (``DISCOVERY_GRACE_S`` after the client was
  created, never past ``timeout_s``) and has never seen its server: that is
  discovery, not an outage.  Otherwise an absent server is FAILED at once,
  "not available", and the request is not sent.
* while waiting for the answer, the graph is re-checked every
  ``LIVENESS_POLL_S``; once the server has left it (its node was destroyed
  or its process exited), the call is FAILED after ``GONE_GRACE_S`` (so an
  answer sent just before it left still arrives) with an error saying it
  may or may not have run.  A server killed without leaving the graph
  (SIGKILL, power loss) is only noticed when DDS liveliness expires it
  (Fast DDS's default participant lease: 20 s, measured 20.0 s here), so
  such a call can still end by TIMEOUT.

No call is ever sent twice: every outcome goes back to the caller (the
model), which decides what to do next.  A TIMEOUT or a server gone mid-call
is marked ``outcome_unknown``; the agent loop then refuses an identical call
in the same goal unless the tool is ``idempotent`` (at most once).

Tools served by ``slm_agent/srv/InvokeTool`` (scenario environments such as
BFCL's multi-turn classes, whose functions have no ROS type of their own)
are *pass-through*: the arguments, validated against the tool's JSON schema,
are sent unchanged as ``arguments_json`` (spelled by :func:`arguments_json`,
the same text the agent reports in ``ToolCall.arguments_json``) with the
call id in ``call_id``; a response with ``success`` false is FAILED with its
``error``; otherwise ``json.loads(result_json)`` is the result (a JSON string
stays a string, an object a dict, any other value ``{"result": value}``; text
that is not JSON is kept verbatim).
"""
from __future__ import annotations

import json
import threading
import time
from dataclasses import dataclass
from typing import Any, Iterable, Optional, Union

from rclpy.callback_groups import CallbackGroup, ReentrantCallbackGroup
from rclpy.node import Node

from slm_agent.agent.safety import validate_arguments
from slm_agent.agent.schema import SchemaError, import_interface, json_to_request, response_to_dict
from slm_agent.agent.types import INVOKE_TOOL_TYPE, Status, ToolCall, ToolResult, ToolSpec

#: polling interval while waiting for a service to appear (rclpy's own wait
#: sleeps 0.25 s per check, too coarse for a 2 s tool timeout)
READY_POLL_S = 0.005
#: how long after a client is created its server may still be "being
#: discovered"; later, a server that is not on the graph is simply not there
DISCOVERY_GRACE_S = 2.0
#: how often a pending call re-checks that its server is still on the graph
LIVENESS_POLL_S = 0.05
#: after the server left the graph, how long an answer it may have sent just
#: before leaving is still waited for
GONE_GRACE_S = 0.2


@dataclass
class _Entry:
    spec: ToolSpec
    srv_type: Any
    client: Any
    passthrough: bool = False
    created: float = 0.0   # time.monotonic() when the client was created
    seen: bool = False     # its server has been on the graph (discovery is done)


def arguments_json(arguments: Any) -> str:
    """The JSON text of a call's arguments, as InvokeTool services receive it."""
    return json.dumps(arguments, ensure_ascii=False, default=str)


def invoke_tool_content(result_json: str) -> Union[dict[str, Any], str]:
    """An InvokeTool ``result_json`` as ToolResult content (see module docstring)."""
    if not result_json:
        return ""
    try:
        value = json.loads(result_json)
    except ValueError:
        return result_json
    if isinstance(value, (dict, str)):
        return value
    return {"result": value}


class RosServiceToolInvoker:
    """One service client per tool; ``invoke(spec, call) -> ToolResult``."""

    def __init__(self, node: Node, tool_specs: Iterable[ToolSpec],
                 callback_group: Optional[CallbackGroup] = None) -> None:
        self._node = node
        self._group = callback_group or ReentrantCallbackGroup()
        self._entries: dict[str, _Entry] = {}
        for spec in tool_specs:
            if spec.name in self._entries:
                raise ValueError(f"duplicate tool name '{spec.name}'")
            if "/srv/" not in spec.service_type:
                raise SchemaError(f"tool '{spec.name}': '{spec.service_type}' is not a service type")
            srv_type = import_interface(spec.service_type)
            client = node.create_client(srv_type, spec.service_name, callback_group=self._group)
            self._entries[spec.name] = _Entry(spec, srv_type, client,
                                              passthrough=spec.service_type == INVOKE_TOOL_TYPE,
                                              created=time.monotonic())

    @property
    def tool_names(self) -> list[str]:
        return list(self._entries)

    def wait_ready(self, timeout_s: float = 5.0) -> bool:
        """True once every tool's service is on the graph (for startup checks)."""
        deadline = time.monotonic() + timeout_s
        while True:
            ready = True
            for e in self._entries.values():
                if e.client.service_is_ready():
                    e.seen = True
                else:
                    ready = False
            if ready or time.monotonic() >= deadline:
                return ready
            time.sleep(READY_POLL_S)

    def invoke(self, spec: ToolSpec, call: ToolCall) -> ToolResult:
        """Call the tool's service.  Never raises; never spins."""
        entry = self._entries.get(spec.name)
        if entry is None or entry.spec.service_name != spec.service_name or call.name != spec.name:
            names = ", ".join(sorted(self._entries)) or "none"
            return ToolResult(call.id, call.name, Status.REFUSED,
                              error=f"tool '{call.name}' is not in this invoker's tool set ({names})")
        spec = entry.spec  # the invoker's own copy is authoritative
        errors = validate_arguments(spec, call.arguments)
        if errors:
            return ToolResult(call.id, call.name, Status.INVALID_ARGUMENTS, error="; ".join(errors))
        if entry.passthrough:
            request = entry.srv_type.Request(call_id=call.id, arguments_json=arguments_json(call.arguments))
        else:
            try:
                request = json_to_request(entry.srv_type.Request, call.arguments, spec.defaults)
            except ValueError as exc:
                return ToolResult(call.id, call.name, Status.INVALID_ARGUMENTS, error=str(exc))

        start = time.monotonic()
        deadline = start + spec.timeout_s
        client = entry.client
        if not client.service_is_ready():
            # Only a young client that never saw its server may still be discovering it.
            ready_by = start if entry.seen else min(deadline, entry.created + DISCOVERY_GRACE_S)
            while not client.service_is_ready():
                if time.monotonic() >= ready_by:
                    waited = time.monotonic() - start
                    waited_text = f"waited {waited:.1f} s for discovery, " if waited >= 0.05 else ""
                    return ToolResult(call.id, call.name, Status.FAILED,
                                      error=f"service {spec.service_name} is not available "
                                            f"(no server on the graph; {waited_text}not called)")
                time.sleep(READY_POLL_S)
        entry.seen = True

        done = threading.Event()
        t0 = time.perf_counter()
        try:
            future = client.call_async(request)
        except Exception as exc:
            return ToolResult(call.id, call.name, Status.FAILED, error=f"send failed: {type(exc).__name__}: {exc}")
        future.add_done_callback(lambda _f: done.set())
        gone_at: Optional[float] = None
        while not done.is_set():
            now = time.monotonic()
            if now >= deadline:
                break
            if gone_at is None:
                if not client.service_is_ready():
                    gone_at = now
            elif now - gone_at >= GONE_GRACE_S:
                break
            done.wait(min(LIVENESS_POLL_S, deadline - now))
        if not done.is_set():
            client.remove_pending_request(future)
            future.cancel()
            latency_ms = (time.perf_counter() - t0) * 1e3
            if gone_at is not None:
                return ToolResult(call.id, call.name, Status.FAILED, latency_ms=latency_ms,
                                  error=f"service {spec.service_name} went away during the call (its server left "
                                        f"the graph after {gone_at - start:.2g} s); it may or may not have "
                                        f"executed the request", outcome_unknown=True)
            return ToolResult(call.id, call.name, Status.TIMEOUT,
                              error=f"{spec.service_name} did not answer within {spec.timeout_s:g} s",
                              latency_ms=latency_ms, outcome_unknown=True)
        latency_ms = (time.perf_counter() - t0) * 1e3
        if future.cancelled():
            return ToolResult(call.id, call.name, Status.FAILED, error="call was cancelled", latency_ms=latency_ms)
        exc = future.exception()
        if exc is not None:
            return ToolResult(call.id, call.name, Status.FAILED,
                              error=f"{type(exc).__name__}: {exc}", latency_ms=latency_ms)
        response = future.result()
        if response is None:
            return ToolResult(call.id, call.name, Status.FAILED, error="empty response", latency_ms=latency_ms)
        if entry.passthrough:
            if not response.success:
                return ToolResult(call.id, call.name, Status.FAILED, latency_ms=latency_ms,
                                  error=response.error or f"{spec.service_name} reported failure")
            return ToolResult(call.id, call.name, Status.OK, content=invoke_tool_content(response.result_json),
                              latency_ms=latency_ms)
        try:
            content = response_to_dict(response)
        except Exception as exc:
            return ToolResult(call.id, call.name, Status.FAILED,
                              error=f"cannot convert the response: {exc}", latency_ms=latency_ms)
        return ToolResult(call.id, call.name, Status.OK, content=content, latency_ms=latency_ms)

    def destroy(self) -> None:
        """Destroy the clients (the node stays)."""
        for entry in self._entries.values():
            try:
                self._node.destroy_client(entry.client)
            except Exception:
                pass
        self._entries.clear()


def tool_call_record_msg(task_id: str, call: ToolCall, result: ToolResult, stamp: Any = None) -> Any:
    """``slm_agent/msg/ToolCallRecord`` for one (call, result) of an AgentResult.

    ``stamp`` (a ``builtin_interfaces/Time``, e.g. ``node.get_clock().now().to_msg()``)
    goes into both headers when given.  Content that is not JSON-able is sent as
    its ``str()``; non-finite floats follow Python's ``json`` spelling.
    """
    from slm_agent.msg import ToolCall as ToolCallMsg
    from slm_agent.msg import ToolCallRecord
    from slm_agent.msg import ToolResult as ToolResultMsg

    call_msg = ToolCallMsg(id=call.id, name=call.name, step=int(call.step),
                           arguments_json=json.dumps(call.arguments, ensure_ascii=False, default=str))
    content = result.content if isinstance(result.content, str) else json.dumps(
        result.content, ensure_ascii=False, default=str)
    result_msg = ToolResultMsg(call_id=result.call_id, name=result.name, status=int(result.status),
                               content_json=content, error=result.error, latency_ms=float(result.latency_ms))
    if stamp is not None:
        call_msg.header.stamp = stamp
        result_msg.header.stamp = stamp
    return ToolCallRecord(task_id=task_id, call=call_msg, result=result_msg)
