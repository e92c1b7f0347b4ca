"""The agent: tool sets, safety envelope, prompt strategies, parsing and the loop.

Plain Python (no rclpy): the ROS side is ``slm_agent.ros.tool_invoker``.
Typical use in a node::

    from slm_agent.agent import AgentLoop, load_tool_set, resolve_tool_set
    from slm_agent.ros.tool_invoker import RosServiceToolInvoker

    tool_set = load_tool_set(resolve_tool_set("demo_robot"))
    invoker = RosServiceToolInvoker(node, tool_set.tools)
    loop = AgentLoop(engine, tool_set.tools, invoker, strategy="react",
                     serialization="toon", constrained=True, example=tool_set.example)
    result = loop.run(prompt="Go to the kitchen.", on_event=feedback, cancel=cancel_event)
"""
from slm_agent.agent.loop import AgentEvent, AgentLoop, CallableToolInvoker, EventKind, ToolInvoker
from slm_agent.agent.parsing import ParseResult, parse_tool_calls
from slm_agent.agent.safety import SafetyEnvelope, validate_arguments
from slm_agent.agent.serializers import SERIALIZERS, Serializer, get_serializer
from slm_agent.agent.strategies import STRATEGIES, StepDecision, Strategy, get_strategy
from slm_agent.agent.toolset import ToolSet, ToolSetError, load_tool_set, parse_tool_set, resolve_tool_set
from slm_agent.agent.types import FINAL_ANSWER_TOOL, AgentResult, Status, ToolCall, ToolResult, ToolSpec

__all__ = [
    "AgentEvent", "AgentLoop", "AgentResult", "CallableToolInvoker", "EventKind", "FINAL_ANSWER_TOOL",
    "ParseResult", "SERIALIZERS", "STRATEGIES", "SafetyEnvelope", "Serializer", "Status", "StepDecision",
    "Strategy", "ToolCall", "ToolInvoker", "ToolResult", "ToolSet", "ToolSetError", "ToolSpec",
    "get_serializer", "get_strategy", "load_tool_set", "parse_tool_calls", "parse_tool_set",
    "resolve_tool_set", "validate_arguments",
]
