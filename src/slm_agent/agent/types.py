"""Plain data passed between the agent loop, its strategies and the invokers.

Imports nothing of ROS nor of the other agent modules (every agent module
imports this one), so the loop, the parsers and the benchmarks run and are
tested without a DDS graph.  :mod:`slm_agent.ros.agent_convert` maps these to
the ``slm_agent`` messages (status values equal the ``ToolResult.msg``
constants on purpose, so the mapping is a plain ``int()``).
"""
from __future__ import annotations

import math
from dataclasses import dataclass, field
from enum import IntEnum
from typing import Any, Union

from slm_agent.engines.base import CallMetrics

#: The generic tool service: a tool of this type gets its validated arguments
#: passed through as JSON (``slm_agent.ros.tool_invoker``); benchmark suites
#: host their environments' functions behind it.
INVOKE_TOOL_TYPE = "slm_agent/srv/InvokeTool"

#: Name of the pseudo tool a model "calls" to give its final answer.  Reserved:
#: a tool set may not define a tool with this name.
FINAL_ANSWER_TOOL = "final_answer"


class Status(IntEnum):
    """Outcome of a tool call; values mirror ``slm_agent/msg/ToolResult`` constants."""

    OK = 0
    REFUSED = 1
    INVALID_ARGUMENTS = 2
    TIMEOUT = 3
    FAILED = 4


@dataclass
class ToolSpec:
    """A tool the model may call, bound to one ROS 2 service.

    ``parameters`` is the JSON schema of the arguments object (derived from the
    service request type and merged with the tool set's bounds).  ``defaults``
    holds values the tool set fills in for optional fields the model omits.
    """

    name: str
    description: str = ""
    service_name: str = ""
    service_type: str = ""
    parameters: dict[str, Any] = field(
        default_factory=lambda: {"type": "object", "properties": {}, "additionalProperties": False}
    )
    timeout_s: float = 5.0
    requires_confirmation: bool = False
    max_rate_hz: float = 0.0
    defaults: dict[str, Any] = field(default_factory=dict)
    #: safe to run again with the same arguments (a read, a set-to-value); only
    #: such a tool is re-executed after a call whose outcome is unknown (timeout,
    #: server gone).  Default False: robot actions run at most once per goal.
    idempotent: bool = False
    #: a reply (the result content as text) longer than this is cut, with a
    #: marker the model can read (0 = no limit); the tool set's setting
    max_reply_chars: int = 8000

    def to_function(self) -> dict[str, Any]:
        """OpenAI-style ``tools`` entry (for chat engines with native tool support)."""
        return {
            "type": "function",
            "function": {
                "name": self.name,
                "description": self.description,
                "parameters": self.parameters,
            },
        }


@dataclass
class ToolCall:
    """A call as the model asked for it (``raw`` is the text it was parsed from)."""

    id: str
    name: str
    arguments: dict[str, Any] = field(default_factory=dict)
    step: int = 0
    raw: str = ""


@dataclass
class ToolResult:
    """What came back from a call, or why nothing did.

    ``latency_ms`` is NaN when no service was called (refused, invalid, not
    executed) so averages over real round trips are never diluted by zeros.
    """

    call_id: str
    name: str
    status: Status = Status.OK
    content: Union[dict[str, Any], str] = ""
    error: str = ""
    latency_ms: float = math.nan
    #: the request may or may not have been executed (timed out, or the server
    #: left mid-call): it is never re-sent automatically
    outcome_unknown: bool = False

    @property
    def ok(self) -> bool:
        return self.status == Status.OK


@dataclass
class AgentResult:
    """Everything one agent run produced; ``metrics`` has one entry per LLM call."""

    final_text: str = ""
    calls: list[tuple[ToolCall, ToolResult]] = field(default_factory=list)
    metrics: list[CallMetrics] = field(default_factory=list)
    metric_steps: list[int] = field(default_factory=list)   # step of each metrics entry
    messages: list[dict[str, Any]] = field(default_factory=list)
    success: bool = False
    error: str = ""
    steps: int = 0
    raw_outputs: list[str] = field(default_factory=list)
    parse_errors: list[str] = field(default_factory=list)
    stopped_on_repeat: bool = False    # ended because the model re-issued the last successful calls
    force_terminated: bool = False     # the protocol's step limit ended it (bfcl: the case fails)
    protocol: str = ""                 # the LoopRules it ran under (agent/protocol.py)
    #: per step (index = step): the model whose reply the step used, and the cascade's
    #: trigger that sent it to the fallback ("" = not escalated; agent/cascade.py)
    step_models: list[str] = field(default_factory=list)
    step_triggers: list[str] = field(default_factory=list)

