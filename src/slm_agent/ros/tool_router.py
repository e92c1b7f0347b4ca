"""The agent node's tool clients: one :class:`~slm_agent.ros.tool_invoker.RosServiceToolInvoker`
per tool spec, created once and reused across goals.

Why a cache: creating a service client and waiting for discovery costs a DDS
round trip or more, and a benchmark sends thousands of goals that offer the
same few tools.  The loaded tool set's clients are created at configure
(pinned); a goal's extra tools get theirs when the goal starts (discovery
overlaps the first LLM call) and are kept, least recently used first out,
for later goals.

Why keyed by the whole spec: a call can only reach the client of the very
spec the loop's safety envelope accepted (same name, service, type, schema,
limits; :func:`slm_agent.agent.goal_plan.spec_key`), so nothing outside the
goal's tools is reachable.
"""
from __future__ import annotations

import threading
from collections import OrderedDict
from typing import Any, Sequence

from slm_agent.agent.goal_plan import spec_key
from slm_agent.agent.types import Status, ToolCall, ToolResult, ToolSpec
from slm_agent.ros.tool_invoker import RosServiceToolInvoker


def executable(spec: ToolSpec) -> bool:
    """A spec without a service (``execute_tools=false`` scoring) has nothing to call."""
    return bool(spec.service_name and spec.service_type)


class ToolRouter:
    """Routes a tool call to the client made for its spec (``invoke`` is what AgentLoop calls)."""

    def __init__(self, node: Any, group: Any, max_cached: int = 256) -> None:
        self._node = node
        self._group = group
        self._max = max_cached
        self._invokers: "OrderedDict[str, RosServiceToolInvoker]" = OrderedDict()
        self._pinned: set[str] = set()
        self._lock = threading.Lock()

    def prepare(self, specs: Sequence[ToolSpec], pin: bool = False) -> None:
        """Create missing clients; raises ValueError (naming the tool) when a type cannot be used."""
        with self._lock:
            for spec in specs:
                if not executable(spec):
                    continue
                k = spec_key(spec)
                if k not in self._invokers:
                    try:
                        self._invokers[k] = RosServiceToolInvoker(self._node, [spec], callback_group=self._group)
                    except Exception as exc:  # SchemaError, unknown package, bad service name
                        raise ValueError(f"tool '{spec.name}' ({spec.service_type} at {spec.service_name!r}): "
                                         f"{exc}") from exc
                self._invokers.move_to_end(k)
                if pin:
                    self._pinned.add(k)
            while len(self._invokers) > self._max + len(self._pinned):
                for k in self._invokers:
                    if k not in self._pinned:
                        self._invokers.pop(k).destroy()
                        break
                else:
                    break

    def invoke(self, spec: ToolSpec, call: ToolCall) -> ToolResult:
        if not executable(spec):
            return ToolResult(call.id, call.name, Status.FAILED,
                              error=f"tool '{spec.name}' has no ROS service to call (empty service_name/type)")
        with self._lock:
            invoker = self._invokers.get(spec_key(spec))
        if invoker is None:
            try:
                self.prepare([spec])
            except ValueError as exc:
                return ToolResult(call.id, call.name, Status.FAILED, error=str(exc))
            with self._lock:
                invoker = self._invokers.get(spec_key(spec))
        if invoker is None:  # evicted between the two locks: only with > max_cached tools in one goal
            return ToolResult(call.id, call.name, Status.FAILED, error=f"no client for tool '{spec.name}'")
        return invoker.invoke(spec, call)

    def destroy(self) -> None:
        with self._lock:
            for inv in self._invokers.values():
                inv.destroy()
            self._invokers.clear()
            self._pinned.clear()


__all__ = ["ToolRouter", "executable"]
