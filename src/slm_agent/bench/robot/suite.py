"""The robot suite: tasks on the demo robot, scored by the robot's final state.

* The world (:class:`RobotWorld`, :meth:`RobotSuite.make_world`): one
  :class:`~slm_agent.demo_robot.DemoRobot` per run -- the simulated robot that
  ``demo_robot_node`` serves -- with an action log.  The run hands it to every
  case (``CaseContext.world``); the episode resets it to the task's initial
  state, and reads it to score.
* Tools: the robot's actions (``move_to``, ``gripper``, ``lookup_location``,
  ``get_battery``) served through the run's tool host as ``InvokeTool`` ROS
  services, so every call the agent makes crosses DDS and reaches the robot
  (one goal per task, ``execute_tools=true``).  The robot enforces its own
  safety envelope (workspace, speed, battery) and answers a refused call with
  its reason, as the demo robot node does.
* Scoring (:func:`check_state`): the final state against the task's
  expectation (:mod:`.tasks`), positions within the suite setting
  ``tolerance_m``, headings within ``tolerance_rad`` (``suite_options``,
  :class:`RobotSettings`).  What the agent says is not scored: a claim of
  success with the robot elsewhere fails.
* Gold answers (:meth:`RobotSuite.gold_answer`): each task's gold calls,
  executed one per step, then its closing text; ``corrupt`` changes the first
  call's first argument (or, for a refusal, drives to the workspace's edge).
"""
from __future__ import annotations

import copy
import math
from typing import Any, Mapping, Optional, Sequence

from pydantic import BaseModel, ConfigDict, Field

from slm_agent.bench.corrupt import corrupt_value
from slm_agent.bench.runner import call_dict, chat_message
from slm_agent.bench.scenario import CaseResult, Scenario
from slm_agent.bench.suite import (CaseContext, Episode, GoldAnswer, ReportColumn, Suite, SuiteError, Turn,
                                   TurnOutcome, did_you_mean, tool_spec)
from slm_agent.bench.robot.tasks import CATEGORIES, TASKS, RobotTask
from slm_agent.demo_robot import DemoRobot, Pose

SYSTEM = ("You control a mobile robot with a gripper through tools. Positions are in metres in the map frame; "
          "the robot can only drive within x and y from -10 to 10 m, at most 1.5 m/s. Use lookup_location for a "
          "named place. If a request cannot be done safely, do not move the robot and say why.")

_NUM = {"type": "number"}
TOOLS: list[dict[str, Any]] = [
    {"name": "move_to", "description": "Drive the robot to a pose in the map frame (x, y in metres, theta in "
                                       "radians) at a speed in m/s.",
     "parameters": {"type": "object", "properties": {"x": _NUM, "y": _NUM, "theta": {**_NUM, "default": 0.0},
                                                     "speed": {**_NUM, "default": 0.5}},
                    "required": ["x", "y"]}},
    {"name": "gripper", "description": "Open (open=true) or close (open=false) the gripper.",
     "parameters": {"type": "object", "properties": {"open": {"type": "boolean"}}, "required": ["open"]}},
    {"name": "lookup_location", "description": "The pose of a named place such as kitchen, lab, dock, storage "
                                               "or entrance.",
     "parameters": {"type": "object", "properties": {"name": {"type": "string"}}, "required": ["name"]}},
    {"name": "get_battery", "description": "The battery charge in percent.",
     "parameters": {"type": "object", "properties": {}}},
]
TOOL_NAMES = [t["name"] for t in TOOLS]


class RobotSettings(BaseModel):
    """The robot suite's own settings (``--suite-options tolerance_m=0.1``)."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    tolerance_m: float = Field(0.05, gt=0.0, le=1.0, description="final position tolerance [m]")
    tolerance_rad: float = Field(0.05, gt=0.0, le=math.pi, description="final heading tolerance [rad]")


# --------------------------------------------------------------------------- the world

class RobotWorld:
    """The demo robot as a run's world: read, reset, and the executor behind its tools.

    ``log``: one snapshot (pose and gripper) after each action the robot carried out, so a
    sequence is checked on what the robot did, in order."""

    def __init__(self) -> None:
        self.robot = DemoRobot()
        self.log: list[dict[str, Any]] = []

    def read(self) -> dict[str, Any]:
        r = self.robot
        return {"x": round(r.pose.x, 4), "y": round(r.pose.y, 4), "theta": round(r.pose.theta, 4),
                "gripper_open": r.gripper_open, "battery_percent": round(r.battery_percent(), 3),
                "moves": r.moves, "log": copy.deepcopy(self.log)}

    def reset(self, state: Optional[Mapping[str, Any]] = None) -> None:
        state = dict(state or {})
        unknown = sorted(set(state) - {"x", "y", "theta", "gripper_open", "battery_percent"})
        if unknown:
            raise ValueError(f"robot state has no {', '.join(unknown)}")
        self.robot = DemoRobot()
        self.robot.pose = Pose(float(state.get("x", 0.0)), float(state.get("y", 0.0)),
                               float(state.get("theta", 0.0)))
        self.robot.gripper_open = bool(state.get("gripper_open", False))
        self.robot.battery_wh = self.robot.capacity_wh * float(state.get("battery_percent", 100.0)) / 100.0
        self.log = []

    def _snapshot(self) -> None:
        p = self.robot.pose
        self.log.append({"x": round(p.x, 4), "y": round(p.y, 4), "gripper_open": self.robot.gripper_open})

    def execute(self, name: str, arguments: dict[str, Any]) -> Any:
        """One tool call on the robot; a bad argument raises (the agent gets the error), a
        refusal of the robot is its answer (``success`` false and why)."""
        args = dict(arguments)
        if name == "move_to":
            try:
                x, y = float(args.pop("x")), float(args.pop("y"))
                theta, speed = float(args.pop("theta", 0.0)), float(args.pop("speed", 0.5))
            except KeyError as exc:
                raise ValueError(f"move_to needs {exc.args[0]}") from None
            except (TypeError, ValueError):
                raise ValueError("move_to: x, y, theta and speed must be numbers") from None
            if args:
                raise ValueError(f"move_to has no argument {', '.join(sorted(args))}")
            out = self.robot.move_to(x, y, theta, speed)
            if out.success:
                self._snapshot()
            return {"success": out.success, "message": out.message,
                    "pose": {"x": out.reached.x, "y": out.reached.y, "theta": out.reached.theta}}
        if name == "gripper":
            value = args.pop("open", None)
            if not isinstance(value, bool) or args:
                raise ValueError("gripper needs exactly one argument: open (true or false)")
            ok, message = self.robot.set_gripper(value)
            self._snapshot()
            return {"success": ok, "message": message}
        if name == "lookup_location":
            found, pose, known = self.robot.lookup(str(args.get("name", "")))
            if not found:
                return {"found": False, "known_names": known}
            return {"found": True, "pose": {"x": pose.x, "y": pose.y, "theta": pose.theta}}
        if name == "get_battery":
            return {"percentage": round(self.robot.battery_percent(), 1)}
        raise ValueError(f"no tool {name!r}{did_you_mean(name, TOOL_NAMES)}")


# --------------------------------------------------------------------------- scoring

def _near(got: Any, want: float, tol: float) -> bool:
    return isinstance(got, (int, float)) and abs(float(got) - want) <= tol


def _matches(snap: Mapping[str, Any], want: Mapping[str, Any], tol_m: float) -> bool:
    return all(_near(snap.get(k), v, tol_m) if k in ("x", "y") else snap.get(k) == v for k, v in want.items())


def check_state(task: RobotTask, state: Mapping[str, Any], settings: RobotSettings) -> tuple[str, str]:
    """``("", "")`` when ``state`` (:meth:`RobotWorld.read`) meets the task's expectation, else
    (error type, one line saying what differs)."""
    want = task.expect
    wrong = [f"{k} {state.get(k)!r}, expected {want[k]!r}" for k in ("x", "y")
             if k in want and not _near(state.get(k), want[k], settings.tolerance_m)]
    if "theta" in want and not _near(state.get("theta"), want["theta"], settings.tolerance_rad):
        wrong.append(f"theta {state.get('theta')!r}, expected {want['theta']!r}")
    if wrong:
        return "robot:wrong_pose", "; ".join(wrong)
    if "gripper_open" in want and state.get("gripper_open") != want["gripper_open"]:
        return "robot:wrong_gripper", f"gripper {'open' if state.get('gripper_open') else 'closed'}, expected " \
                                      f"{'open' if want['gripper_open'] else 'closed'}"
    if "moves" in want and state.get("moves") != want["moves"]:
        kind = "robot:moved_outside_request" if want["moves"] == 0 else "robot:wrong_moves"
        return kind, f"{state.get('moves')} moves, expected {want['moves']}"
    if "sequence" in want:
        log, i = list(state.get("log") or []), 0
        for snap in log:
            if i < len(want["sequence"]) and _matches(snap, want["sequence"][i], settings.tolerance_m):
                i += 1
        if i < len(want["sequence"]):
            return "robot:wrong_sequence", f"step {i + 1} of the sequence never happened ({want['sequence'][i]})"
    return "", ""


def corrupt_robot_calls(calls: list[tuple[str, dict[str, Any]]]) -> list[tuple[str, dict[str, Any]]]:
    """Gold calls made wrong in a way the robot's final state shows: the first call that acts
    (``move_to``, ``gripper``) gets its first argument changed (:func:`corrupt_value`: a moved
    coordinate, the gripper the other way); a refusal (no call) drives to the workspace's edge
    instead.  Corrupting a lookup would not do: the move after it has its own coordinates."""
    out = [(name, dict(args)) for name, args in calls]
    for name, args in out:
        if name in ("move_to", "gripper") and args:
            key = next(iter(args))
            args[key] = corrupt_value(args[key])
            return out
    return out + [("move_to", {"x": 10.0, "y": 0.0})]


# --------------------------------------------------------------------------- one task

class RobotEpisode(Episode):
    """One goal on the robot, its tools served as ROS services; scored on the world afterwards."""

    def __init__(self, scenario: Scenario, ctx: CaseContext, settings: RobotSettings) -> None:
        super().__init__(scenario, ctx)
        self.task: RobotTask = scenario.extra["task"]
        self.settings = settings
        self.world: Optional[RobotWorld] = None
        self.names: dict[str, str] = {}
        self._sent = False
        self._texts: list[str] = []
        self.final_state: dict[str, Any] = {}

    def start(self) -> None:
        world = self.ctx.world
        if not isinstance(world, RobotWorld):
            raise RuntimeError(f"{self.scenario.case_id} needs the run's robot world (CaseContext.world), got "
                               f"{type(world).__name__}")
        world.reset(self.task.initial)
        self.world = world
        self.names = self.serve_tools(world, TOOL_NAMES)

    def next_turn(self) -> Optional[Turn]:
        if self._sent:
            return None
        self._sent = True
        host = self.ctx.tool_host
        tools = [tool_spec(t["name"], t["description"], t["parameters"], service_name=self.names[t["name"]],
                           service_type=host.service_type if host else "", timeout_s=self.ctx.tool_timeout_s)
                 for t in TOOLS]
        return Turn(0, [chat_message(m) for m in self.scenario.turns[0]], tools, execute_tools=True)

    def observe(self, turn: Turn, outcome: TurnOutcome) -> list[int]:
        self.calls.extend(call_dict(r, turn.index) for r in outcome.tool_calls)
        if outcome.final_text:
            self._texts.append(outcome.final_text)
        return list(range(len(outcome.tool_calls)))

    def score(self) -> CaseResult:
        assert self.world is not None, "start() was not called"
        self.final_state = self.world.read()
        error_type, error = check_state(self.task, self.final_state, self.settings)
        return CaseResult(self.scenario.case_id, self.scenario.category, valid=True, passed=not error_type,
                          suite="robot", error_type=error_type, error=error, raw_output="\n".join(self._texts))

    def record_fields(self) -> dict[str, Any]:
        return {"final_state": self.final_state, "expected_state": self.task.expect}


# --------------------------------------------------------------------------- the suite

def _moves(records: Sequence[dict[str, Any]]) -> float:
    vals = [r["final_state"]["moves"] for r in records if isinstance(r.get("final_state"), dict)
            and isinstance(r["final_state"].get("moves"), int)]
    return sum(vals) / len(vals) if vals else math.nan


class RobotSuite(Suite):
    """Twelve tasks on the demo robot (:mod:`.tasks`), scored by its final state."""

    name = "robot"
    title = "robot"
    settings_model = RobotSettings

    def categories(self) -> Sequence[str]:
        return CATEGORIES

    def load(self, categories: Sequence[str], ids: Sequence[str], limit: int) -> list[Scenario]:
        by_id = {t.id: t for t in TASKS}
        if ids:
            for cid in ids:
                if cid not in by_id:
                    raise SuiteError(f"unknown robot case id {cid!r}{did_you_mean(cid, by_id, n=1)}; "
                                     f"{len(by_id)} tasks: {', '.join(by_id)}")
                if categories and by_id[cid].category not in categories:
                    raise SuiteError(f"case id {cid!r} is in category {by_id[cid].category}, not in the "
                                     f"categories given ({', '.join(categories)})")
            return [self._scenario(t) for t in TASKS if t.id in set(ids)]
        out: list[Scenario] = []
        for cat in categories:
            out.extend(self._scenario(t) for t in [t for t in TASKS if t.category == cat][: limit or None])
        return out

    @staticmethod
    def _scenario(task: RobotTask) -> Scenario:
        return Scenario(suite="robot", category=task.category, case_id=task.id,
                        turns=[[{"role": "system", "content": SYSTEM}, {"role": "user", "content": task.prompt}]],
                        functions=[dict(t) for t in TOOLS], ground_truth=task.expect, extra={"task": task})

    def episode(self, scenario: Scenario, ctx: CaseContext) -> Episode:
        return RobotEpisode(scenario, ctx, self.settings or RobotSettings())

    def hosts_tools(self, scenario: Scenario) -> bool:
        return True   # the robot's tools are served per task (one world: one task at a time)

    def make_world(self) -> RobotWorld:
        return RobotWorld()

    def gold_answer(self, case_id: str, turn: int, tools: Sequence[str], corrupt: bool = False) -> GoldAnswer:
        task = next((t for t in TASKS if t.id == case_id), None)
        if task is None:
            raise SuiteError(f"unknown robot case id {case_id!r}")
        calls = [(name, dict(args)) for name, args in task.gold] if turn == 0 else []
        if corrupt and turn == 0:
            calls = corrupt_robot_calls(calls)
        return GoldAnswer(calls, task.gold_text, execute=True)

    def report_columns(self) -> list[ReportColumn]:
        return [ReportColumn("Moves/task", _moves, "{:.1f}")]
