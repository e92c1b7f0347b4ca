"""``slm-agent``: the same nodes as ``ros2 launch``/``ros2 run``, without ROS tooling.

On a ROS 2 install use ``ros2 launch slm_agent bench.launch.py``; on a plain
Python machine (the pip route) this CLI starts the very same node classes.
"""
from __future__ import annotations

import argparse
import importlib
import os
import subprocess
import sys
import time
from typing import Optional, Sequence

#: executable name -> module with ``main(args)``; scripts/ has one file per entry
NODES: dict[str, str] = {
    "demo_robot_node": "slm_agent.nodes.demo_robot_node",
    "telemetry_node": "slm_agent.nodes.telemetry_node",
}


def node_command(name: str, ros_args: Sequence[str] = ()) -> list[str]:
    """argv that runs node ``name`` in a fresh interpreter (used by bench/demo)."""
    return [sys.executable, "-m", NODES[name], *ros_args]


def cmd_node(args: argparse.Namespace) -> int:
    module = importlib.import_module(NODES[args.name])
    return module.main([sys.argv[0], *args.ros_args])


def cmd_demo(args: argparse.Namespace) -> int:
    """Start the demo robot in its own process and talk to it over DDS."""
    from slm_agent.ros.demo import run_demo

    return run_demo(timeout_s=args.timeout)


def build_parser() -> argparse.ArgumentParser:
    ap = argparse.ArgumentParser(prog="slm-agent", description=__doc__,
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = ap.add_subparsers(dest="command", required=True)

    p = sub.add_parser("node", help="run one node in the foreground (like `ros2 run slm_agent NAME`)")
    p.add_argument("name", choices=sorted(NODES))
    p.add_argument("ros_args", nargs=argparse.REMAINDER,
                   help="passed to rclpy, e.g. --ros-args -p rate_hz:=2.0")
    p.set_defaults(func=cmd_node)

    p = sub.add_parser("demo", help="start the demo robot node and call its services from another process")
    p.add_argument("--timeout", type=float, default=20.0, help="seconds to wait for the robot (default 20)")
    p.set_defaults(func=cmd_demo)
    return ap


def main(argv: Optional[Sequence[str]] = None) -> int:
    args = build_parser().parse_args(argv)
    return args.func(args)


if __name__ == "__main__":
    sys.exit(main())
