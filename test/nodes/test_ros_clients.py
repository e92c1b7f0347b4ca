"""ros/clients.wait_future: the one future wait of the benchmark node, the gold
agent, the BFCL tool client and ``slm-agent ask`` (rclpy futures, no DDS)."""
from __future__ import annotations

import threading
import time

import pytest

pytest.importorskip("rclpy", reason="rclpy (ROS 2 Python client) not installed")

from rclpy.task import Future  # noqa: E402

from slm_agent.ros.clients import ServiceCallError, wait_future  # noqa: E402


class Client:
    """Records what wait_future hands back to a service client."""

    def __init__(self) -> None:
        self.removed: list[Future] = []

    def remove_pending_request(self, future: Future) -> None:
        self.removed.append(future)


def test_result_arriving_from_another_thread():
    fut = Future()
    threading.Timer(0.05, fut.set_result, args=("ok",)).start()
    assert wait_future(fut, 5.0) == "ok"


def test_timeout_cancels_and_drops_the_request():
    fut, client = Future(), Client()
    t0 = time.monotonic()
    with pytest.raises(TimeoutError, match="no answer within 0.200 s"):
        wait_future(fut, 0.2, client)
    assert 0.19 <= time.monotonic() - t0 < 2.0
    assert fut.cancelled() and client.removed == [fut]


def test_interrupted_ends_the_wait_early():
    fut, client = Future(), Client()
    stop = threading.Event()
    threading.Timer(0.15, stop.set).start()
    t0 = time.monotonic()
    with pytest.raises(InterruptedError):
        wait_future(fut, 30.0, client, interrupted=stop.is_set)
    assert time.monotonic() - t0 < 2.0 and fut.cancelled() and client.removed == [fut]
    # not interrupted: the answer still counts, and a timeout is still a timeout
    fut = Future()
    threading.Timer(0.15, fut.set_result, args=(7,)).start()
    assert wait_future(fut, 5.0, interrupted=lambda: False) == 7
    with pytest.raises(TimeoutError):
        wait_future(Future(), 0.2, interrupted=lambda: False)


def test_failed_future_is_a_service_call_error_with_its_cause():
    fut = Future()
    fut.set_exception(RuntimeError("server crashed"))
    with pytest.raises(ServiceCallError, match="server crashed") as err:
        wait_future(fut, 1.0)
    assert isinstance(err.value.__cause__, RuntimeError)
