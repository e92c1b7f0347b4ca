"""The agent: tool sets, safety envelope, prompt strategies, parsing and the loop.

Plain Python (no rclpy): the ROS side is ``slm_agent.ros.tool_invoker``.
Importing this package imports none of its modules; each name below is
loaded from its module on first use (``module __getattr__``), so
``slm_agent.agent.loop``, ``parsing`` or ``strategies`` import without
``rosidl_parser``, which only ``schema`` (and ``toolset``, which derives
schemas from service types) need.  Typical use in a node::

    from slm_agent.agent import AgentLoop, load_tool_set, resolve_tool_set
    from slm_agent.ros.tool_invoker import RosServiceToolInvoker

    tool_set = load_tool_set(resolve_tool_set("demo_robot"))
    invoker = RosServiceToolInvoker(node, tool_set.tools)
    loop = AgentLoop(engine, tool_set.tools, invoker, strategy="react",
                     serialization="toon", constrained=True, example=tool_set.example)
    result = loop.run(prompt="Go to the kitchen.", on_event=feedback, cancel=cancel_event)
"""
from __future__ import annotations

import importlib
from typing import Any

#: exported name -> the submodule that defines it
_EXPORTS: dict[str, str] = {
    **dict.fromkeys(("AgentEvent", "AgentLoop", "CallableToolInvoker", "EventKind", "ToolInvoker"), "loop"),
    **dict.fromkeys(("ParseResult", "parse_tool_calls"), "parsing"),
    **dict.fromkeys(("SafetyEnvelope", "validate_arguments"), "safety"),
    **dict.fromkeys(("SERIALIZERS", "Serializer", "get_serializer"), "serializers"),
    **dict.fromkeys(("STRATEGIES", "StepDecision", "Strategy", "get_strategy"), "strategies"),
    **dict.fromkeys(("ToolSet", "ToolSetError", "load_tool_set", "parse_tool_set", "resolve_tool_set"), "toolset"),
    **dict.fromkeys(("FINAL_ANSWER_TOOL", "AgentResult", "Status", "ToolCall", "ToolResult", "ToolSpec"), "types"),
}

__all__ = sorted(_EXPORTS)


def __getattr__(name: str) -> Any:
    module = _EXPORTS.get(name)
    if module is None:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    value = getattr(importlib.import_module(f"{__name__}.{module}"), name)
    globals()[name] = value
    return value


def __dir__() -> list[str]:
    return sorted(set(globals()) | set(_EXPORTS))
