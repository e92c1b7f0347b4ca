"""Plain types line up with the ROS interfaces they are mapped to."""
from __future__ import annotations

import json
import subprocess
import sys

from slm_agent.action import RunTask
from slm_agent.agent.loop import EventKind
from slm_agent.agent.types import Status
from slm_agent.msg import ToolResult as ToolResultMsg
from slm_agent.msg import ToolSpec as ToolSpecMsg
from slm_agent.ros import agent_convert as conv


def test_status_values_match_tool_result_msg():
    for status in Status:
        assert getattr(ToolResultMsg, f"STATUS_{status.name}") == status.value
    assert len(Status) == len([k for k in dir(ToolResultMsg) if k.startswith("STATUS_")])


def test_event_kinds_match_run_task_feedback():
    for kind in EventKind:
        assert getattr(RunTask.Feedback, f"KIND_{kind.name}") == kind.value


def test_tool_spec_msg_round_trip(demo_tool_set):
    spec = demo_tool_set.by_name()["move_to"]
    msg = ToolSpecMsg(**conv.tool_spec_fields(spec))
    assert json.loads(msg.parameters_json_schema) == spec.parameters
    back = conv.tool_spec_from_msg(msg)
    assert (back.name, back.service_name, back.service_type, back.timeout_s, back.max_rate_hz) == \
        (spec.name, spec.service_name, spec.service_type, spec.timeout_s, spec.max_rate_hz)
    assert back.parameters == spec.parameters


def test_tool_spec_msg_without_schema_is_derived_from_the_type():
    msg = ToolSpecMsg(name="gripper", description="Open or close.", service_name="/r/gripper",
                      service_type="std_srvs/srv/SetBool", timeout_s=0.0)
    spec = conv.tool_spec_from_msg(msg)
    assert spec.parameters["properties"] == {"data": {"type": "boolean"}}
    assert spec.timeout_s == 5.0  # 0 in the message means "default"


def test_agent_package_does_not_import_rclpy():
    code = (
        "import sys, importlib, pkgutil, slm_agent.agent as a\n"
        "for m in pkgutil.iter_modules(a.__path__): importlib.import_module('slm_agent.agent.' + m.name)\n"
        "print('rclpy' in sys.modules)\n"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60)
    assert out.returncode == 0, out.stderr
    assert out.stdout.strip() == "False"
