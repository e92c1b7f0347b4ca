"""Per-call metrics held back until their energy is known, then emitted in call order.

Why wait: a call's ``energy_j`` integrates the power samples over its window,
and the sample after the window's end arrives up to one telemetry period
later.  Emitting at once would publish NaN for almost every call; so each
item waits until ``settled(end_s)`` says more waiting cannot change its
window (the covering sample arrived, or telemetry is not running), or until
its own deadline (``wait_s`` after submission), whichever comes first.
Items leave in submission order, so ``~/metrics`` stays in call order.

Plain Python with one daemon thread; the agent node passes ``settled`` (its
:class:`~slm_agent.telemetry.energy.PowerLog`) and ``emit`` (build the
message with the energy and publish it), and calls :meth:`poke` on every
power sample.
"""
from __future__ import annotations

import threading
import time
from typing import Any, Callable

#: how often a waiting item re-checks ``settled`` when no power sample pokes it
POLL_S = 0.05


class MetricsQueue:
    """``submit`` items with an ``end_s`` and a wait; ``emit`` gets them in order, once each."""

    def __init__(self, settled: Callable[[float], bool], emit: Callable[[Any], None],
                 on_error: Callable[[str], None] = lambda _text: None, name: str = "agent-metrics") -> None:
        self._settled = settled
        self._emit = emit
        self._on_error = on_error
        self._queue: list[tuple[Any, float, float]] = []   # (item, end_s, deadline on time.monotonic)
        self._cond = threading.Condition()
        self._stop = False
        self._thread = threading.Thread(target=self._run, name=name, daemon=True)
        self._thread.start()

    def submit(self, item: Any, end_s: float, wait_s: float) -> None:
        with self._cond:
            self._queue.append((item, end_s, time.monotonic() + wait_s))
            self._cond.notify_all()

    def poke(self) -> None:
        """Re-check the head item now (a power sample arrived)."""
        with self._cond:
            self._cond.notify_all()

    def stop(self, timeout_s: float = 2.0) -> None:
        """Stop the thread; items still waiting are dropped."""
        with self._cond:
            self._stop = True
            self._cond.notify_all()
        self._thread.join(timeout=timeout_s)

    def _run(self) -> None:
        while True:
            with self._cond:
                while not self._queue and not self._stop:
                    self._cond.wait()
                if self._stop:
                    return
                item, end_s, deadline = self._queue[0]
                if not self._settled(end_s) and time.monotonic() < deadline:
                    self._cond.wait(timeout=POLL_S)
                    continue
                self._queue.pop(0)
            try:
                self._emit(item)
            except Exception as exc:  # noqa: BLE001 - never kill the publisher thread
                self._on_error(f"metrics not published: {exc}")


__all__ = ["MetricsQueue"]
