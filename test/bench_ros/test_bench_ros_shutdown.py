"""No callback runs on a node being destroyed ("exception was never retrieved" at exit).

The benchmark node printed "The following exception was never retrieved:
cannot use Destroyable because destruction was requested" at the end of
runs: rclpy 7.1's ``Executor.shutdown`` does not wait for callbacks already
dispatched to the MultiThreadedExecutor's pool, so one could take from a
subscription after ``destroy_node`` and fail into a Task nobody reads.
``shutdown_node`` now drains the executor first.  Here a subscription is
flooded while the node is shut down, several times (without the drain most
rounds printed the message on this machine).
"""
from __future__ import annotations

import contextlib
import gc
import io
import threading
import time

import pytest

pytest.importorskip("rclpy", reason="rclpy (ROS 2 Python client) not installed")

import rclpy  # noqa: E402
from rclpy.node import Node  # noqa: E402
from std_msgs.msg import String  # noqa: E402

from slm_agent.ros.runtime import SpinThread, shutdown_node  # noqa: E402

ROUNDS = 8


def test_shutdown_under_a_message_flood_leaves_no_unretrieved_callback_error():
    printed = []
    received = 0
    for i in range(ROUNDS):
        rclpy.init()
        node = Node(f"flooded_{i}")
        sender = Node(f"flooder_{i}")
        pub = sender.create_publisher(String, "flood", 100)
        got: list[int] = []
        node.create_subscription(String, "flood", lambda _m: got.append(1), 100)
        node.create_timer(0.0005, lambda: None)
        spin = SpinThread(node)
        stop = threading.Event()

        def flood() -> None:
            while not stop.is_set():
                try:
                    pub.publish(String(data="x"))
                except Exception:  # noqa: BLE001 - context gone
                    return

        thread = threading.Thread(target=flood, daemon=True)
        thread.start()
        time.sleep(0.3)
        err = io.StringIO()
        with contextlib.redirect_stderr(err):
            shutdown_node(node, spin)     # close, drain + stop the executor, destroy, rclpy shutdown
            stop.set()
            thread.join(5)
            del spin, node
            gc.collect()
        sender.destroy_node()
        received += len(got)
        if "never retrieved" in err.getvalue() or "failed while the node was stopping" in err.getvalue():
            printed.append(err.getvalue().strip())
    assert received > 0, "the flood reached the node"
    assert not printed, printed
