"""An in-process agent for suite tests: the real AgentLoop behind ``play_case``'s
``send``, with a scripted engine and a plain-Python tool host (no ROS).

It does per turn what the agent node does per RunTask goal: tool specs from the
turn, the goal's protocol, the node's default ``max_steps`` (4), unconstrained
raw prompts, and the result as the dicts ``msg_to_dict`` makes of the
RunTask result (ToolCallRecord / ChatMessage fields).
"""
from __future__ import annotations

import json
from types import SimpleNamespace
from typing import Any, Optional, Sequence

from slm_agent.agent.loop import AgentLoop
from slm_agent.agent.protocol import rules_for_goal
from slm_agent.agent.types import Status, ToolCall, ToolResult, ToolSpec
from slm_agent.bench.suite import INVOKE_TOOL_TYPE, Turn, TurnOutcome
from slm_agent.engines.base import ChatRequest, Engine, StreamChunk, StreamTimer
from slm_agent.ros.agent_convert import tool_spec_from_msg

NODE_MAX_STEPS = 4


class Script(Engine):
    """Replays fixed outputs, one per LLM call, across the turns of a case (not a model)."""

    backend = "scripted"

    def __init__(self, outputs: Sequence[str]) -> None:
        super().__init__(model="scripted", engine_name="scripted")
        self.outputs = list(outputs)
        self.requests: list[ChatRequest] = []

    def stream(self, request: ChatRequest):
        self.requests.append(request)
        if not self.outputs:
            raise RuntimeError("script ran out of outputs")
        text = self.outputs.pop(0)
        timer = StreamTimer()
        timer.start()
        timer.token()
        yield StreamChunk(text=text)
        yield StreamChunk(metrics=timer.finish(engine=self.engine_name, backend=self.backend, model=self.model,
                                               prompt_tokens=1))


def call(name: str, /, **arguments: Any) -> str:
    """One reply that calls ``name``, in the direct strategy's format."""
    return json.dumps({"name": name, "arguments": arguments})


FINAL = call("final_answer", text="done")


class Host:
    """A ToolHost without ROS; remembers every result it returned, in order."""

    service_type = INVOKE_TOOL_TYPE

    def __init__(self) -> None:
        self.served: dict[str, tuple[Any, str]] = {}
        self.log: list[tuple[str, dict[str, Any], Any]] = []

    def serve(self, executor: Any, functions: Sequence[str]) -> dict[str, str]:
        self.served = {f"/t/{f}": (executor, f) for f in functions}
        return {f: f"/t/{f}" for f in functions}

    def clear(self) -> None:
        self.served = {}

    def invoke(self, spec: ToolSpec, call: ToolCall) -> ToolResult:
        executor, name = self.served[spec.service_name]
        out = executor.execute(name, call.arguments)
        self.log.append((name, dict(call.arguments), out))
        return ToolResult(call.id, call.name, Status.OK, content=out if isinstance(out, (dict, str)) else {"r": out})


def _record(call: ToolCall, result: ToolResult) -> dict[str, Any]:
    return {"call": {"id": call.id, "name": call.name, "arguments_json": json.dumps(call.arguments),
                     "step": call.step},
            "result": {"status": int(result.status), "error": result.error}}


def _message(m: dict[str, Any]) -> dict[str, Any]:
    calls = [{"id": c["id"], "name": c["function"]["name"], "arguments_json": c["function"]["arguments"]}
             for c in m.get("tool_calls") or []]
    return {"role": m.get("role", ""), "content": str(m.get("content") or ""), "name": m.get("name", "") or "",
            "tool_call_id": m.get("tool_call_id", "") or "", "tool_calls": calls}


def loop_agent(engine: Any, host: Host, protocol: str, max_steps: int = 0, sent: Optional[list] = None):
    """``send(turn)`` for :func:`slm_agent.bench.play.play_case`."""

    def send(turn: Turn):
        if sent is not None:
            sent.append(turn)
        specs = [tool_spec_from_msg(SimpleNamespace(**t)) for t in turn.tools]  # as the node reads goals
        rules = rules_for_goal(protocol, max_steps)
        loop = AgentLoop(engine, specs, host, max_steps=max_steps or NODE_MAX_STEPS, rules=rules)
        messages = [{k: v for k, v in m.items() if k != "tool_calls"} for m in turn.messages]
        res = loop.run(messages=messages, execute_tools=turn.execute_tools)
        return TurnOutcome(turn.index, res.success, res.error, res.final_text,
                           [_message(m) for m in res.messages], [_record(c, r) for c, r in res.calls],
                           source=res, force_terminated=res.force_terminated), ""

    return send
