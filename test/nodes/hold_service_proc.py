"""A service server (own process) that takes every request and never answers.

``python hold_service_proc.py <service name> [SetBool|Trigger]`` (std_srvs,
SetBool by default): prints ``held ready`` once
serving and ``RECEIVED <n>`` for each request, then holds it.  On SIGTERM
(rclpy's handler shuts the context down) it leaves the graph and exits
without answering: a robot driver that goes away in the middle of a call.
Used by test_agent_node_admission.py.
"""
from __future__ import annotations

import sys
import threading

import rclpy
from rclpy.executors import ExternalShutdownException, SingleThreadedExecutor
from rclpy.signals import SignalHandlerOptions
from std_srvs.srv import SetBool, Trigger


def main() -> int:
    rclpy.init(args=sys.argv, signal_handler_options=SignalHandlerOptions.ALL)
    node = rclpy.create_node("held_service")
    received = []
    never = threading.Event()

    def cb(req, res):
        received.append(req)
        print(f"RECEIVED {len(received)} {req}", flush=True)
        never.wait()
        return res

    srv_type = Trigger if len(sys.argv) > 2 and sys.argv[2] == "Trigger" else SetBool
    node.create_service(srv_type, sys.argv[1], cb)
    executor = SingleThreadedExecutor()
    executor.add_node(node)
    # the held callback blocks this (daemon) thread; the main thread only waits for shutdown
    threading.Thread(target=lambda: _spin(executor), daemon=True).start()
    print("held ready", flush=True)
    ctx = rclpy.get_default_context()
    while ctx.ok():
        threading.Event().wait(0.05)
    print(f"exiting with {len(received)} request(s) unanswered", flush=True)
    return 0


def _spin(executor: SingleThreadedExecutor) -> None:
    try:
        executor.spin()
    except (ExternalShutdownException, KeyboardInterrupt, RuntimeError):
        pass


if __name__ == "__main__":
    sys.exit(main())
