"""``RosGraph.wait_active``: the launcher's wait for a lifecycle node that loads a model.

A node loading its model cannot answer ``get_state`` until configure returns.  The wait
used to ask with a 1 s timeout and destroy the client each time, so the node answered
into the void and logged "failed to send response (timeout): client will not receive
response" at every start (seen in every grid cell's agent log).  Here the node is a real
rclpy lifecycle node in this process, in its own context, whose configure sleeps like a
model load.
"""
from __future__ import annotations

import os
import threading
import time
import warnings

import pytest

rclpy = pytest.importorskip("rclpy", reason="needs rclpy (ROS 2 Jazzy wheels)")

from rclpy.context import Context  # noqa: E402
from rclpy.executors import SingleThreadedExecutor  # noqa: E402
from rclpy.lifecycle import LifecycleNode, TransitionCallbackReturn  # noqa: E402
from rclpy.signals import SignalHandlerOptions  # noqa: E402

from slm_agent.launcher.ready import RosGraph  # noqa: E402

LOAD_S = 2.5


class SlowLoader(LifecycleNode):
    """Configures (a ``LOAD_S`` sleep: the model load) and activates itself once spun."""

    def __init__(self, context: Context) -> None:
        super().__init__("slow_loader", context=context, start_parameter_services=False,
                         enable_rosout=False)
        self._start = self.create_timer(0.3, self._bring_up)

    def on_configure(self, state) -> TransitionCallbackReturn:
        time.sleep(LOAD_S)
        return TransitionCallbackReturn.SUCCESS

    def _bring_up(self) -> None:
        self._start.cancel()
        self.trigger_configure()
        self.trigger_activate()


@pytest.fixture()
def domain() -> int:
    return int(os.environ["ROS_DOMAIN_ID"])


def _serve(node_cls, domain: int):
    ctx = Context()
    rclpy.init(context=ctx, domain_id=domain, signal_handler_options=SignalHandlerOptions.NO)
    node = node_cls(ctx)
    executor = SingleThreadedExecutor(context=ctx)
    executor.add_node(node)
    thread = threading.Thread(target=executor.spin, daemon=True)
    thread.start()

    def stop() -> None:
        executor.shutdown()
        node.destroy_node()
        ctx.try_shutdown()
        thread.join(5)
    return stop


def test_waits_through_a_slow_configure_and_leaves_no_unanswered_request(domain: int) -> None:
    with warnings.catch_warnings(record=True) as caught, RosGraph(domain, name="ready_test") as graph:
        warnings.simplefilter("always")
        stop = _serve(SlowLoader, domain)
        try:
            t0 = time.monotonic()
            assert graph.wait_active("/slow_loader", 30.0)
            waited = time.monotonic() - t0
            time.sleep(0.5)   # any answer to a forgotten request would be sent by now
        finally:
            stop()
    assert waited >= LOAD_S, waited   # not active before configure returned
    lost = [str(w.message) for w in caught if "will not receive response" in str(w.message)]
    assert not lost, lost


def test_gives_up_at_the_timeout_and_when_the_process_ended(domain: int) -> None:
    with RosGraph(domain, name="ready_test_absent") as graph:
        t0 = time.monotonic()
        assert not graph.wait_active("/nobody_here", 0.5)
        assert 0.5 <= time.monotonic() - t0 < 5.0
        t0 = time.monotonic()
        assert not graph.wait_active("/nobody_here", 30.0, alive=lambda: False)
        assert time.monotonic() - t0 < 2.0
