"""A benchmark-node-like InvokeTool host in its own process, driven line by line on stdin.

``python tool_host_proc.py <namespace> <fresh|same>``: ``serve <k>`` serves one
function ``update_task_status`` (a :class:`ToolServiceHost`, as the benchmark
node does for each case) and prints ``SERVED <k> <service name>``; ``clear``
stops serving (``CLEARED``); ``quit`` ends.  Each executed request prints
``EXEC <k>`` (its ``k`` argument), so the test counts what really ran.
Used by test_bench_ros_tool_names.py.
"""
from __future__ import annotations

import sys
import threading

import rclpy
from rclpy.executors import MultiThreadedExecutor

from slm_agent.ros.tool_services import ToolServiceHost


class Executor:
    def execute(self, name: str, args: dict) -> dict:
        print(f"EXEC {args.get('k')}", flush=True)
        return {"done": args.get("k")}


def main() -> int:
    rclpy.init()
    node = rclpy.create_node("tool_host_proc")
    executor = MultiThreadedExecutor(num_threads=4)
    executor.add_node(node)
    threading.Thread(target=executor.spin, daemon=True).start()
    host = ToolServiceHost(node, sys.argv[1], fresh_names=sys.argv[2] == "fresh")
    print("READY", flush=True)
    for line in sys.stdin:
        cmd = line.split()
        if not cmd or cmd[0] == "quit":
            break
        if cmd[0] == "serve":
            names = host.serve(Executor(), ["update_task_status"])
            print(f"SERVED {cmd[1]} {names['update_task_status']}", flush=True)
        elif cmd[0] == "clear":
            host.clear()
            print("CLEARED", flush=True)
    executor.shutdown(timeout_sec=2.0)
    rclpy.try_shutdown()
    return 0


if __name__ == "__main__":
    sys.exit(main())
