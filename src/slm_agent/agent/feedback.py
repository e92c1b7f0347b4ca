"""Batching of :class:`~slm_agent.agent.loop.AgentEvent` streams into feedback.

Why batch: the loop reports every streamed text delta, often one token; one
action-feedback message per token would multiply DDS traffic for no reader's
benefit.  Text is therefore sent in batches of ``batch`` deltas or after
``max_delay_s``, whichever comes first, except the first delta of each LLM
call, which goes out at once (a client sees time to first token).  A tool
call or result first flushes the pending text, so a client sees events in
the order they happened.

Plain Python: the agent node gives it three callbacks that build and send
the RunTask feedback messages (:mod:`slm_agent.ros.goal_feedback`).
"""
from __future__ import annotations

import time
from typing import Callable, Optional

from slm_agent.agent.loop import AgentEvent, EventKind
from slm_agent.agent.types import ToolCall, ToolResult


class FeedbackBatcher:
    """Feeds on AgentLoop events (:meth:`on_event`); call :meth:`flush` when the goal ends."""

    def __init__(self, batch: int, max_delay_s: float, *, on_text: Callable[[int, str], None],
                 on_call: Callable[[int, ToolCall], None],
                 on_result: Callable[[int, ToolCall, Optional[ToolResult]], None],
                 clock: Callable[[], float] = time.monotonic) -> None:
        self.batch = batch
        self.max_delay_s = max_delay_s
        self._on_text = on_text
        self._on_call = on_call
        self._on_result = on_result
        self._clock = clock
        self._buf: list[str] = []
        self._buf_step = -1
        self._buf_t0 = 0.0
        self._started_steps: set[int] = set()
        #: text feedback messages sent so far
        self.text_messages = 0

    def flush(self) -> None:
        if self._buf:
            text, self._buf = "".join(self._buf), []
            self.text_messages += 1
            self._on_text(self._buf_step, text)

    def on_event(self, ev: AgentEvent) -> None:
        if ev.kind == EventKind.TEXT:
            self._on_text_delta(ev.step, ev.text_delta)
            return
        self.flush()
        if ev.call is None:
            return
        if ev.kind == EventKind.TOOL_CALL:
            self._on_call(ev.step, ev.call)
        elif ev.kind == EventKind.TOOL_RESULT:
            self._on_result(ev.step, ev.call, ev.result)

    def _on_text_delta(self, step: int, delta: str) -> None:
        if not delta:
            return
        if self._buf and step != self._buf_step:
            self.flush()
        if not self._buf:
            self._buf_step, self._buf_t0 = step, self._clock()
        self._buf.append(delta)
        first = step not in self._started_steps
        if first:
            self._started_steps.add(step)
        if first or len(self._buf) >= self.batch or self._clock() - self._buf_t0 >= self.max_delay_s:
            self.flush()


__all__ = ["FeedbackBatcher"]
