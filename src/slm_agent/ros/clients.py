"""Future-based service calls that never spin the caller's thread.

The executor runs in a :class:`~slm_agent.ros.runtime.SpinThread`; these
helpers only wait on the future, so they cost one DDS round trip and no
busy-looping.
"""
from __future__ import annotations

import threading
import time
from typing import Any

from rclpy.client import Client


class ServiceCallError(RuntimeError):
    pass


def wait_future(future, timeout_s: float) -> Any:
    done = threading.Event()
    future.add_done_callback(lambda _f: done.set())
    if not done.wait(timeout_s):
        future.cancel()
        raise TimeoutError(f"no answer within {timeout_s:.3f} s")
    exc = future.exception()
    if exc is not None:
        raise ServiceCallError(str(exc)) from exc
    return future.result()


def call(client: Client, request: Any, timeout_s: float = 5.0) -> tuple[Any, float]:
    """Call a service; return (response, round-trip ms)."""
    if not client.service_is_ready() and not client.wait_for_service(timeout_sec=timeout_s):
        raise ServiceCallError(f"service {client.srv_name} is not available")
    t0 = time.perf_counter()
    response = wait_future(client.call_async(request), timeout_s)
    return response, (time.perf_counter() - t0) * 1e3
