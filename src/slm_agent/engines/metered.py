"""An engine wrapper that reports each call's metrics the moment the call ends.

Why: the agent node publishes one ``~/metrics`` message per LLM call while
the goal is still running (a long multi-step goal shows its calls as they
happen), but :class:`~slm_agent.agent.loop.AgentLoop` only returns the calls'
metrics with the goal's result.  Wrapping the engine the loop is given puts
the hook where each call's final chunk passes, without the loop knowing.
"""
from __future__ import annotations

from typing import Callable, Iterator

from slm_agent.engines.base import CallMetrics, ChatRequest, Engine, StreamChunk


class MeteredEngine(Engine):
    """Passes ``inner``'s stream through, calling ``on_metrics`` with each call's metrics."""

    def __init__(self, inner: Engine, on_metrics: Callable[[ChatRequest, CallMetrics], None]) -> None:
        super().__init__(model=inner.model, engine_name=inner.engine_name)
        self.backend = inner.backend
        self.inner = inner
        self._on_metrics = on_metrics

    def stream(self, request: ChatRequest) -> Iterator[StreamChunk]:
        inner = self.inner.stream(request)
        try:
            for chunk in inner:
                if chunk.metrics is not None:
                    self._on_metrics(request, chunk.metrics)
                yield chunk
        finally:
            inner.close()  # on cancel: stop decoding and free the engine now

    def reset_cache(self) -> None:
        self.inner.reset_cache()


__all__ = ["MeteredEngine"]
