"""Wait until a recorder has matched a node's publishers, so the bag has every message.

A VOLATILE subscription only receives what is published after its publisher matched
it, and two processes can take seconds to discover each other on a loaded machine.  A
node whose topics are recorded (benchmark: scenarios and results; agent: metrics and
tool calls) waits for ``min_subscribers`` matches before its first message
(:class:`slm_agent.settings.RecordedSettings`).
"""
from __future__ import annotations

import threading
import time
from typing import Callable, Iterable, Optional, Protocol


class _Publisher(Protocol):
    def get_subscription_count(self) -> int: ...


def wait_for_subscriptions(publishers: Iterable[Optional[_Publisher]], count: int, timeout_s: float,
                           stop: Callable[[], bool] = lambda: False, poll_s: float = 0.05) -> bool:
    """True once every publisher (None ones skipped) has ``count`` matched subscriptions;
    False after ``timeout_s`` or when ``stop()`` says so.  ``count`` <= 0: True at once."""
    pubs = [p for p in publishers if p is not None]
    if count <= 0 or not pubs:
        return True
    end = time.monotonic() + timeout_s
    while True:
        if all(p.get_subscription_count() >= count for p in pubs):
            return True
        if time.monotonic() >= end or stop():
            return False
        time.sleep(poll_s)


def matched_counts(publishers: Iterable[Optional[_Publisher]]) -> list[int]:
    """Matched subscriptions per publisher (for the warning when the wait ran out)."""
    return [p.get_subscription_count() for p in publishers if p is not None]


class RecorderGate:
    """:func:`wait_for_subscriptions` before a goal publishes, for as long as it helps: a goal
    passes at once while every topic has its matches; otherwise it waits (goals arriving
    meanwhile wait with it).  A wait that runs out warns once and disarms the gate, so later
    goals do not each pay the timeout; the gate re-arms when the matches are there again, so
    a grid's shared agent waits for each cell's new recorder as it did for the first."""

    def __init__(self, count: int, timeout_s: float, warn: Callable[[str], None]) -> None:
        self.count, self.timeout_s, self._warn = count, timeout_s, warn
        self._lock = threading.Lock()
        self._armed = count > 0

    def wait(self, publishers: Iterable[Optional[_Publisher]], names: str,
             stop: Callable[[], bool] = lambda: False) -> None:
        if self.count <= 0:
            return
        pubs = [p for p in publishers if p is not None]
        with self._lock:
            if all(p.get_subscription_count() >= self.count for p in pubs):
                self._armed = True
                return
            if not self._armed:
                return
            if wait_for_subscriptions(pubs, self.count, self.timeout_s, stop):
                return
            if not stop():
                self._armed = False
                self._warn(f"only {matched_counts(pubs)} subscriptions matched on {names} after "
                           f"{self.timeout_s:g} s; going on (a recorder may miss messages)")
