"""The short real demo: two processes, real services, measured round trips."""
from __future__ import annotations

import os
import subprocess
import sys

from rclpy.node import Node
from std_srvs.srv import SetBool

from slm_agent.isolation import DomainLease, parent_death_preexec
from slm_agent.msg import Waypoint
from slm_agent.ros.clients import call
from slm_agent.ros.runtime import SpinThread, ros_context
from slm_agent.srv import GetBattery, LookupLocation, MoveTo


def run_demo(timeout_s: float = 20.0) -> int:
    # own DDS domain and parent-death signal, as for `slm-agent bench` (slm_agent.isolation)
    with DomainLease() as domain:
        os.environ["ROS_DOMAIN_ID"] = str(domain.domain_id)
        robot = subprocess.Popen([sys.executable, "-m", "slm_agent.nodes.demo_robot_node"],
                                 pass_fds=(domain.fd,) if domain.fd >= 0 else (),
                                 preexec_fn=parent_death_preexec())
        return _demo(robot, timeout_s)


def _demo(robot: subprocess.Popen, timeout_s: float) -> int:
    try:
        with ros_context():
            node = Node("slm_agent_demo_client")
            spin = SpinThread(node)
            try:
                ns = "/demo_robot"
                lookup = node.create_client(LookupLocation, f"{ns}/lookup_location")
                move = node.create_client(MoveTo, f"{ns}/move_to")
                grip = node.create_client(SetBool, f"{ns}/gripper")
                battery = node.create_client(GetBattery, f"{ns}/get_battery")
                print(f"demo: robot process pid {robot.pid}; calling its services over DDS")
                res, ms = call(lookup, LookupLocation.Request(name="kitchen"), timeout_s)
                print(f"  lookup_location('kitchen') -> found={res.found} "
                      f"pose=({res.pose.x}, {res.pose.y}, {res.pose.theta})  [{ms:.2f} ms]")
                req = MoveTo.Request(frame_id="map", goal=Waypoint(x=res.pose.x, y=res.pose.y, theta=res.pose.theta),
                                     speed=1.0, mode=MoveTo.Request.MODE_DIRECT)
                res, ms = call(move, req, timeout_s)
                print(f"  move_to(kitchen, 1.0 m/s) -> {res.success}: {res.message}  [{ms:.2f} ms]")
                bad = MoveTo.Request(frame_id="map", goal=Waypoint(x=50.0, y=0.0), speed=1.0)
                res, ms = call(move, bad, timeout_s)
                print(f"  move_to(50, 0) -> {res.success}: {res.message}  [{ms:.2f} ms]")
                res, ms = call(grip, SetBool.Request(data=True), timeout_s)
                print(f"  gripper(open) -> {res.success}: {res.message}  [{ms:.2f} ms]")
                res, ms = call(battery, GetBattery.Request(), timeout_s)
                print(f"  get_battery() -> {res.percentage:.1f} % at {res.voltage:.2f} V  [{ms:.2f} ms]")
            finally:
                spin.stop()
                node.destroy_node()
    finally:
        robot.terminate()
        try:
            robot.wait(timeout=10)
        except subprocess.TimeoutExpired:
            robot.kill()
    print("demo: done (the agent and benchmark nodes are built on these same services)")
    return 0
