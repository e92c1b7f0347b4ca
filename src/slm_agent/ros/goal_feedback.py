"""One RunTask goal's feedback messages and ToolCallRecords (the agent node's side of
:class:`~slm_agent.agent.feedback.FeedbackBatcher`).

Why a separate class: the batching rules are plain Python; what is left here
is message building (:mod:`slm_agent.ros.agent_convert`), stamping with the
node's clock, and keeping each call's record, so the action result reuses
the very record (and stamps) that the feedback and ``~/tool_calls`` carried.
"""
from __future__ import annotations

from typing import Any, Callable, Optional

from slm_agent.action import RunTask
from slm_agent.agent.feedback import FeedbackBatcher
from slm_agent.agent.loop import AgentEvent
from slm_agent.agent.types import ToolCall, ToolResult
from slm_agent.ros import agent_convert as conv


class GoalFeedback:
    """Publishes a goal's feedback; ``records`` holds the ToolCallRecord of every executed call."""

    def __init__(self, goal_handle: Any, task_id: str, batch: int, max_delay_s: float, *,
                 now: Callable[[], Any], publish_record: Callable[[Any], None],
                 log_debug: Callable[[str], None] = lambda _text: None) -> None:
        self.gh = goal_handle
        self.task_id = task_id
        self._now = now                          # node clock -> builtin_interfaces/Time
        self._publish_record = publish_record    # ~/tool_calls
        self._log_debug = log_debug
        self.call_stamps: dict[str, Any] = {}
        self.records: dict[str, Any] = {}
        self.batcher = FeedbackBatcher(batch, max_delay_s, on_text=self._text, on_call=self._call,
                                       on_result=self._result)

    def on_event(self, ev: AgentEvent) -> None:
        self.batcher.on_event(ev)

    def flush(self) -> None:
        self.batcher.flush()

    def record_for(self, call: ToolCall, outcome: Optional[ToolResult], now: Any) -> tuple[Any, bool]:
        """(the call's record, whether it is new): a call not executed (``execute_tools=false``)
        got no TOOL_RESULT event, so its record is made now."""
        record = self.records.get(call.id)
        if record is not None:
            return record, False
        return conv.tool_call_record(self.task_id, call, outcome, self.call_stamps.get(call.id, now), now), True

    def _send(self, fb: Any) -> None:
        try:
            self.gh.publish_feedback(fb)
        except Exception as exc:  # noqa: BLE001 - a feedback hiccup must not end the task
            self._log_debug(f"feedback not sent: {exc}")

    def _text(self, step: int, text: str) -> None:
        self._send(conv.text_feedback(step, text))

    def _call(self, step: int, call: ToolCall) -> None:
        stamp = self._now()
        self.call_stamps[call.id] = stamp
        record = conv.tool_call_record(self.task_id, call, None, stamp)
        self._send(conv.call_feedback(RunTask.Feedback.KIND_TOOL_CALL, record, step))

    def _result(self, step: int, call: ToolCall, result: Optional[ToolResult]) -> None:
        stamp = self._now()
        record = conv.tool_call_record(self.task_id, call, result, self.call_stamps.get(call.id, stamp), stamp)
        self.records[call.id] = record
        self._send(conv.call_feedback(RunTask.Feedback.KIND_TOOL_RESULT, record, step))
        self._publish_record(record)


__all__ = ["GoalFeedback"]
