"""Future-based service calls that never spin the caller's thread.

The executor runs in a :class:`~slm_agent.ros.runtime.SpinThread`; these
helpers only wait on the future, so they cost one DDS round trip and no
busy-looping.  :func:`wait_future` serves the benchmark node's goals, the
gold agent and ``slm-agent ask``; the agent's tool invoker has its own wait
because it also watches the server leave the graph
(:mod:`slm_agent.ros.tool_invoker`).
"""
from __future__ import annotations

import threading
import time
from typing import Any, Callable, Optional

from rclpy.action import ActionClient
from rclpy.client import Client


#: how often a wait with an ``interrupted`` check looks at it
INTERRUPT_POLL_S = 0.1


class ServiceCallError(RuntimeError):
    """A service or action request failed (its exception is the cause)."""


def wait_future(future, timeout_s: float, client: Any = None,
                interrupted: Optional[Callable[[], bool]] = None) -> Any:
    """The future's result, waiting on its done callback (never spinning).

    On timeout the future is cancelled and, given the service ``client`` that
    made it, removed from the client's pending requests (a late answer is
    then dropped instead of kept forever); raises ``TimeoutError``.  With
    ``interrupted`` (checked every ``INTERRUPT_POLL_S``), a wait that it ends
    is given up the same way and raises ``InterruptedError``.  A future that
    failed raises :class:`ServiceCallError` (the failure is its cause).
    """
    done = threading.Event()
    future.add_done_callback(lambda _f: done.set())
    end = time.monotonic() + max(0.0, timeout_s)
    while not done.is_set():
        left = end - time.monotonic()
        why: Optional[Exception] = None
        if interrupted is not None and interrupted():
            why = InterruptedError("interrupted while waiting for an answer")
        elif left <= 0:
            why = TimeoutError(f"no answer within {timeout_s:.3f} s")
        if why is not None:
            if client is not None:
                client.remove_pending_request(future)
            future.cancel()
            raise why
        done.wait(min(left, INTERRUPT_POLL_S) if interrupted is not None else left)
    exc = future.exception()
    if exc is not None:
        raise ServiceCallError(str(exc)) from exc
    return future.result()


def call(client: Client, request: Any, timeout_s: float = 5.0) -> tuple[Any, float]:
    """Call a service; return (response, round-trip ms)."""
    if not client.service_is_ready() and not client.wait_for_service(timeout_sec=timeout_s):
        raise ServiceCallError(f"service {client.srv_name} is not available")
    t0 = time.perf_counter()
    response = wait_future(client.call_async(request), timeout_s, client)
    return response, (time.perf_counter() - t0) * 1e3


class RaceFreeActionClient(ActionClient):
    """rclpy 7.1's ActionClient with its request/registration races closed.

    ``send_goal_async`` (and the result and cancel requests) send the request
    *before* registering the future that waits for its answer. With the
    executor spinning in another thread, a fast server's answer can be taken
    in between: the goal response is dropped ("Ignoring unexpected goal
    response") and the future never completes, or the future completes before
    it is added and ``remove_future`` raises ValueError in the caller. Sending
    and registering under one lock that ``execute`` also takes makes the
    answer wait until the future is registered.
    """

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self._register_lock = threading.RLock()

    def send_goal_async(self, *args: Any, **kwargs: Any) -> Any:
        with self._register_lock:
            return super().send_goal_async(*args, **kwargs)

    def _get_result_async(self, goal_handle: Any) -> Any:
        with self._register_lock:
            return super()._get_result_async(goal_handle)

    def _cancel_goal_async(self, goal_handle: Any) -> Any:
        with self._register_lock:
            return super()._cancel_goal_async(goal_handle)

    def remove_future(self, future: Any) -> None:
        try:
            super().remove_future(future)
        except ValueError:  # completed before it was added: nothing to remove
            pass

    async def execute(self, taken_data: Any) -> None:
        with self._register_lock:
            pass
        await super().execute(taken_data)
