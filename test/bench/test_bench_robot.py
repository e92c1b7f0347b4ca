"""The robot suite in plain Python (no ROS): its twelve tasks load and select like any suite's,
every gold answer played on the robot world passes, a corrupted one fails, and the checker
fails wrong final states (pose, gripper, a move in a refusal, a sequence out of order)."""
from __future__ import annotations

import json
import sys
from pathlib import Path

import pytest

from slm_agent.bench.play import play_case
from slm_agent.bench.robot.suite import (TOOL_NAMES, RobotSettings, RobotSuite, RobotWorld, check_state)
from slm_agent.bench.robot.tasks import TASKS
from slm_agent.bench.suite import CaseContext, SuiteError, Turn, TurnOutcome, get_suite

sys.path.insert(0, str(Path(__file__).resolve().parent))
from toy_suite import FakeHost  # noqa: E402

TASK = {t.id: t for t in TASKS}


def test_twelve_tasks_in_four_categories_select_like_any_suite():
    suite = get_suite("robot")
    assert isinstance(suite, RobotSuite)
    assert len(TASKS) == 12 and len(TASK) == 12, "task ids are unique"
    assert list(suite.categories()) == ["move", "gripper", "sequence", "safety"]
    every = suite.select()                            # no categories, no ids: the suite's default (all)
    assert [s.case_id for s in every] == [t.id for t in TASKS]
    assert {s.category for s in every} == {"move", "gripper", "sequence", "safety"}
    assert [s.case_id for s in suite.select(["safety", "gripper"], (), 1)] == ["refuse_far", "gripper_open"]
    assert [s.case_id for s in suite.select([], ["seq_drop", "move_point"])] == ["move_point", "seq_drop"]
    with pytest.raises(SuiteError, match=r"unknown robot case id 'move_pont' \(did you mean 'move_point'\?\)"):
        suite.select([], ["move_pont"])
    with pytest.raises(SuiteError, match="case id 'seq_drop' is in category sequence, not in the categories given"):
        suite.select(["move"], ["seq_drop"])
    with pytest.raises(SuiteError, match=r"unknown robot category 'grip' .*valid categories: move, gripper"):
        suite.select(["grip"])
    tools = suite.first_turn_tools("move_point")
    assert [t["name"] for t in tools] == TOOL_NAMES


def _gold_send(host: FakeHost, suite: RobotSuite, case_id: str, corrupt: bool = False):
    """An agent that plays the suite's gold answer through the host's 'services', as the gold
    agent node does through ROS."""
    def send(turn: Turn):
        answer = suite.gold_answer(case_id, turn.index, [t["name"] for t in turn.tools], corrupt)
        assert answer.execute
        specs = {t["name"]: t for t in turn.tools}
        records, transcript = [], list(turn.messages)
        for step, (name, args) in enumerate(answer.calls):
            result = host.call(specs[name]["service_name"], args)
            records.append({"task_id": f"{case_id}#0", "call": {"id": f"g{step}", "name": name,
                                                                "arguments_json": json.dumps(args), "step": step},
                            "result": {}})
            transcript.append({"role": "tool", "name": name, "content": json.dumps(result)})
        transcript.append({"role": "assistant", "content": answer.text})
        return TurnOutcome(turn.index, True, "", answer.text, transcript, records), ""
    return send


def _play(case_id: str, corrupt: bool = False, suite: RobotSuite | None = None):
    suite = suite or get_suite("robot")
    world, host = suite.make_world(), FakeHost()
    sc = suite.select([], [case_id])[0]
    play = play_case(suite, sc, CaseContext(tool_host=host, tool_timeout_s=3.0, world=world),
                     _gold_send(host, suite, case_id, corrupt), lambda _turn: None, case_timeout_s=10.0)
    return play, world, host


@pytest.mark.parametrize("case_id", [t.id for t in TASKS])
def test_every_gold_answer_passes_on_the_robot_and_its_corruption_fails(case_id):
    play, world, host = _play(case_id)
    assert play.result.valid and play.result.passed, (play.result.error_type, play.result.error)
    assert play.fields["final_state"] == world.read()      # recorded: the state it was scored on
    assert host.cleared == 1 and host.served == {}, "the case's tool services end with the case"
    bad, _world, _host = _play(case_id, corrupt=True)
    assert bad.result.valid and not bad.result.passed, f"corrupted gold passed {case_id}"
    assert bad.result.error_type.startswith("robot:")


def test_the_world_is_reset_per_case_and_read_back():
    world = RobotWorld()
    world.execute("move_to", {"x": 3.0, "y": 1.0})
    world.execute("gripper", {"open": True})
    state = world.read()
    assert (state["x"], state["y"], state["gripper_open"], state["moves"]) == (3.0, 1.0, True, 1)
    assert [(s["x"], s["gripper_open"]) for s in state["log"]] == [(3.0, False), (3.0, True)]
    world.reset(TASK["seq_drop"].initial)
    state = world.read()
    assert (state["x"], state["y"], state["gripper_open"], state["moves"], state["log"]) == (4.0, 2.5, False, 0, [])
    with pytest.raises(ValueError, match="robot state has no colour"):
        world.reset({"colour": "red"})


def test_the_robot_refuses_outside_its_envelope_and_bad_arguments_are_errors():
    world = RobotWorld()
    out = world.execute("move_to", {"x": 15.0, "y": 0.0})
    assert out["success"] is False and "workspace" in out["message"]
    out = world.execute("move_to", {"x": 1.0, "y": 0.0, "speed": 3.0})
    assert out["success"] is False and "speed" in out["message"]
    assert world.read()["moves"] == 0 and world.read()["log"] == []
    with pytest.raises(ValueError, match="move_to needs y"):
        world.execute("move_to", {"x": 1.0})
    with pytest.raises(ValueError, match="gripper needs exactly one argument"):
        world.execute("gripper", {"open": "yes"})
    with pytest.raises(ValueError, match=r"no tool 'griper' \(did you mean 'gripper'\?\)"):
        world.execute("griper", {})
    assert world.execute("lookup_location", {"name": "Kitchen"})["pose"]["x"] == 4.0
    assert world.execute("lookup_location", {"name": "moon"}) == {
        "found": False, "known_names": ["dock", "entrance", "kitchen", "lab", "storage"]}


def _state(**kw):
    base = {"x": 0.0, "y": 0.0, "theta": 0.0, "gripper_open": False, "battery_percent": 100.0, "moves": 0,
            "log": []}
    return {**base, **kw}


def test_the_checker_fails_wrong_final_states():
    tol = RobotSettings()
    kitchen = {"x": 4.0, "y": 2.5}
    assert check_state(TASK["move_named"], _state(**kitchen, moves=1), tol) == ("", "")
    assert check_state(TASK["move_named"], _state(x=4.2, y=2.5, moves=1), tol)[0] == "robot:wrong_pose"
    assert check_state(TASK["move_named"], _state(**kitchen, moves=2), tol)[0] == "robot:wrong_moves"
    assert check_state(TASK["move_heading"], _state(x=-1.5, y=4.0, theta=0.0, moves=1), tol)[0] == "robot:wrong_pose"
    assert check_state(TASK["gripper_open"], _state(), tol) == (
        "robot:wrong_gripper", "gripper closed, expected open")
    # a refusal: driving to the edge of the workspace "instead" is a move the user did not ask for
    assert check_state(TASK["refuse_far"], _state(), tol) == ("", "")
    assert check_state(TASK["refuse_far"], _state(x=10.0, moves=1), tol)[0] == "robot:wrong_pose"
    assert check_state(TASK["gripper_close"], _state(gripper_open=False, moves=1), tol)[0] == \
        "robot:moved_outside_request"
    # a sequence in the wrong order ends in the right place and still fails
    lab, entrance, dock = {"x": -3.0, "y": 5.0}, {"x": -6.0, "y": -2.0}, {"x": 0.0, "y": 0.0}
    snaps = [{**p, "gripper_open": False} for p in (entrance, lab, dock)]
    error_type, error = check_state(TASK["seq_patrol"], _state(moves=3, log=snaps), tol)
    assert error_type == "robot:wrong_sequence" and "step 2" in error
    right = [{**p, "gripper_open": False} for p in (lab, entrance, dock)]
    assert check_state(TASK["seq_patrol"], _state(moves=3, log=right), tol) == ("", "")


def test_the_suite_settings_set_the_tolerance_and_bad_options_are_one_line():
    suite = get_suite("robot")
    near = _state(x=2.2, y=3.0, moves=1)
    assert check_state(TASK["move_point"], near, RobotSettings())[0] == "robot:wrong_pose"
    loose = suite.configure({"suite": "robot", "suite_options": "tolerance_m=0.5"})
    assert loose is not suite and loose.settings == RobotSettings(tolerance_m=0.5)
    assert suite.settings is None, "the registered suite is not changed by a run's settings"
    assert check_state(TASK["move_point"], near, loose.settings) == ("", "")
    with pytest.raises(SuiteError, match=r"^suite_options: 'tolerance' is not a robot setting \(did you mean "
                                         r"'tolerance_m' or 'tolerance_rad'\?\) \(robot settings: tolerance_m, "
                                         r"tolerance_rad\)$"):
        suite.configure({"suite_options": "tolerance=1"})
    with pytest.raises(SuiteError, match=r"^robot settings: tolerance_m='5': Input should be less than or equal "
                                         r"to 1(\.0)?$"):
        suite.configure({"suite_options": "tolerance_m=5"})
    with pytest.raises(SuiteError, match=r"^suite_options: 'tolerance_m' is not name=value$"):
        suite.configure({"suite_options": "tolerance_m"})


def test_the_robot_suite_plugs_into_settings_compare_and_the_gold_agent():
    from slm_agent.bench.compare import spec_texts
    from slm_agent.bench.suite import setting_owners
    from slm_agent.launcher.bench import BenchRun, _other_suite_settings
    from slm_agent.settings import BenchmarkSettings, GoldAgentSettings

    owners = setting_owners()
    assert owners["tolerance_m"] == ["robot"] and owners["tolerance_rad"] == ["robot"]
    assert _other_suite_settings(BenchmarkSettings.parse({"suite": "robot", "tau2_trials": 3})) == [
        "--tau2-trials: only for --suite tau2 (this run is --suite robot)"]
    texts = spec_texts(["move_point", "refuse_far", "not_a_task"], "json", "robot")
    assert len(texts) == 2 and all("move_to" in t and "lookup_location" in t for t in texts)
    run = BenchRun.from_values({"suite": "robot", "output_dir": "x"}, agent="gold", record=False)
    assert run.params()[GoldAgentSettings]["suite"] == "robot"
    assert run.config().categories == ["move", "gripper", "sequence", "safety"], "no --categories: all four"
