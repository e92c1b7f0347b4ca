"""A std_srvs/SetBool server (own process) that takes ``delay_s`` to answer.

``python slow_service_proc.py <service name> <delay_s>``: prints ``slow ready``
once serving and ``EXECUTED <n>`` (flushed) as each request starts executing,
then answers after ``delay_s``: a robot action slower than its tool timeout.
Used by test_agent_at_most_once.py to count how often the robot acted.
"""
from __future__ import annotations

import sys
import time

import rclpy
from rclpy.executors import ExternalShutdownException, MultiThreadedExecutor
from rclpy.callback_groups import ReentrantCallbackGroup
from rclpy.signals import SignalHandlerOptions
from std_srvs.srv import SetBool


def main() -> int:
    rclpy.init(args=sys.argv, signal_handler_options=SignalHandlerOptions.ALL)
    node = rclpy.create_node("slow_service")
    delay = float(sys.argv[2])
    count = [0]

    def cb(req, res):
        count[0] += 1
        print(f"EXECUTED {count[0]} data={req.data}", flush=True)
        time.sleep(delay)
        res.success, res.message = True, f"done after {delay:g} s"
        return res

    node.create_service(SetBool, sys.argv[1], cb, callback_group=ReentrantCallbackGroup())
    executor = MultiThreadedExecutor(num_threads=4)
    executor.add_node(node)
    print("slow ready", flush=True)
    try:
        executor.spin()
    except (ExternalShutdownException, KeyboardInterrupt):
        pass
    return 0


if __name__ == "__main__":
    sys.exit(main())
