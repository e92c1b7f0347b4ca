"""ROS 2 adapter serving :class:`slm_agent.demo_robot.DemoRobot`.

Services (relative names, so ``__ns:=/demo_robot`` gives ``/demo_robot/...``):
``get_battery`` (slm_agent/srv/GetBattery), ``move_to`` (slm_agent/srv/MoveTo),
``gripper`` (std_srvs/srv/SetBool, true opens), ``lookup_location``
(slm_agent/srv/LookupLocation). Every call is counted in ``call_counts`` and
logged so tests and users can see which services the agent really reached.
"""
from __future__ import annotations

import sys
from collections import Counter

from rclpy.node import Node
from std_srvs.srv import SetBool

from slm_agent.demo_robot import DemoRobot, Pose
from slm_agent.msg import Waypoint
from slm_agent.ros.runtime import run_node
from slm_agent.srv import GetBattery, LookupLocation, MoveTo


def _wp(p: Pose) -> Waypoint:
    return Waypoint(x=float(p.x), y=float(p.y), theta=float(p.theta))


class DemoRobotNode(Node):
    def __init__(self) -> None:
        super().__init__("demo_robot", namespace="/demo_robot")
        self.robot = DemoRobot()
        self.call_counts: Counter[str] = Counter()
        self.create_service(GetBattery, "get_battery", self._battery)
        self.create_service(MoveTo, "move_to", self._move)
        self.create_service(SetBool, "gripper", self._gripper)
        self.create_service(LookupLocation, "lookup_location", self._lookup)
        self.get_logger().info("demo robot ready: get_battery, move_to, gripper, lookup_location")

    def _count(self, name: str, detail: str) -> None:
        self.call_counts[name] += 1
        self.get_logger().info(f"{name}: {detail}")

    def _battery(self, req: GetBattery.Request, res: GetBattery.Response) -> GetBattery.Response:
        res.percentage = float(self.robot.battery_percent())
        res.voltage = float(self.robot.battery_voltage())
        res.charging = self.robot.charging
        self._count("get_battery", f"{res.percentage:.1f} %")
        return res

    def _move(self, req: MoveTo.Request, res: MoveTo.Response) -> MoveTo.Response:
        via = [Pose(w.x, w.y, w.theta) for w in req.via] if req.mode == MoveTo.Request.MODE_PATH else []
        out = self.robot.move_to(req.goal.x, req.goal.y, req.goal.theta, req.speed, via, req.frame_id)
        res.success, res.message, res.reached, res.duration_s = out.success, out.message, _wp(out.reached), out.duration_s
        self._count("move_to", out.message)
        return res

    def _gripper(self, req: SetBool.Request, res: SetBool.Response) -> SetBool.Response:
        res.success, res.message = self.robot.set_gripper(bool(req.data))
        self._count("gripper", res.message)
        return res

    def _lookup(self, req: LookupLocation.Request, res: LookupLocation.Response) -> LookupLocation.Response:
        found, pose, known = self.robot.lookup(req.name)
        res.found, res.pose, res.known_names = found, _wp(pose), known
        self._count("lookup_location", f"{req.name!r} -> {'found' if found else 'unknown'}")
        return res


def main(args=None) -> int:
    return run_node(DemoRobotNode, args if args is not None else sys.argv)


if __name__ == "__main__":
    sys.exit(main())
