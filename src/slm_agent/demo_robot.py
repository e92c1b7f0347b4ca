"""A small simulated mobile manipulator whose services the demo tool set exposes.

Plain Python so its behaviour (limits, battery drain, named places) is tested
without DDS; ``nodes/demo_robot_node.py`` serves it over ROS 2.
"""
from __future__ import annotations

import math
from dataclasses import dataclass, field

LOCATIONS: dict[str, tuple[float, float, float]] = {
    "dock": (0.0, 0.0, 0.0),
    "kitchen": (4.0, 2.5, 1.57),
    "lab": (-3.0, 5.0, 3.14),
    "storage": (6.5, -4.0, -1.57),
    "entrance": (-6.0, -2.0, 0.0),
}


@dataclass
class Pose:
    x: float = 0.0
    y: float = 0.0
    theta: float = 0.0


@dataclass
class MoveOutcome:
    success: bool
    message: str
    reached: Pose
    duration_s: float


@dataclass
class DemoRobot:
    """State and limits; every refusal says why so a model can correct itself."""

    workspace: float = 10.0        # |x|, |y| limit in metres
    max_speed: float = 1.5         # m/s
    battery_wh: float = 100.0
    capacity_wh: float = 100.0
    wh_per_m: float = 0.4
    pose: Pose = field(default_factory=Pose)
    gripper_open: bool = False
    charging: bool = False
    moves: int = 0

    def battery_percent(self) -> float:
        return 100.0 * self.battery_wh / self.capacity_wh

    def battery_voltage(self) -> float:
        # linear 22.0 V (empty) .. 25.2 V (full), a 6S Li-ion pack
        return 22.0 + 3.2 * self.battery_wh / self.capacity_wh

    def move_to(self, x: float, y: float, theta: float, speed: float,
                via: list[Pose] | None = None, frame_id: str = "map") -> MoveOutcome:
        if frame_id not in ("", "map"):
            return MoveOutcome(False, f"unknown frame '{frame_id}', use 'map'", self.pose, 0.0)
        if not (0.0 < speed <= self.max_speed) or not math.isfinite(speed):
            return MoveOutcome(False, f"speed must be in (0, {self.max_speed}] m/s", self.pose, 0.0)
        path = list(via or []) + [Pose(x, y, theta)]
        for p in path:
            if not all(math.isfinite(v) for v in (p.x, p.y, p.theta)) or \
                    abs(p.x) > self.workspace or abs(p.y) > self.workspace:
                return MoveOutcome(False, f"pose ({p.x}, {p.y}) outside the ±{self.workspace} m workspace",
                                   self.pose, 0.0)
        dist, here = 0.0, self.pose
        for p in path:
            dist += math.hypot(p.x - here.x, p.y - here.y)
            here = p
        need = dist * self.wh_per_m
        if need > self.battery_wh:
            return MoveOutcome(False, f"battery too low for {dist:.1f} m", self.pose, 0.0)
        self.battery_wh -= need
        self.pose = Pose(x, y, theta)
        self.moves += 1
        return MoveOutcome(True, f"reached ({x:.2f}, {y:.2f}) after {dist:.2f} m", self.pose, dist / speed)

    def set_gripper(self, open_: bool) -> tuple[bool, str]:
        changed = open_ != self.gripper_open
        self.gripper_open = open_
        state = "open" if open_ else "closed"
        return True, f"gripper {state}" + ("" if changed else " (already)")

    def lookup(self, name: str) -> tuple[bool, Pose, list[str]]:
        key = name.strip().lower().replace(" ", "_")
        known = sorted(LOCATIONS)
        if key in LOCATIONS:
            return True, Pose(*LOCATIONS[key]), known
        return False, Pose(), known
