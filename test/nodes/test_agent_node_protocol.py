"""The goal's ``protocol`` through the real agent node, across processes.

The agent (``autostart:=true``) runs its real ``openai_http`` engine against
the scripted server of agent_node_helpers (not a model: each goal's prompt
scripts the replies) and calls a counting ``std_srvs/SetBool`` gripper served
by this process.  Shown: an unknown protocol, or a max_steps with the bfcl
protocol, aborts the goal before any LLM call with one clear error; under
``bfcl`` repeated calls reach the service every time, 20 steps with calls
complete and 21 end the goal with ``force_terminated``; empty = the robot
rules (a repeat of the last successful call ends the goal unexecuted).
"""
from __future__ import annotations

import sys
from pathlib import Path

import pytest

rclpy = pytest.importorskip("rclpy", reason="rclpy (ROS 2 Python client) not installed")
pytest.importorskip("slm_agent.msg", reason="slm_agent interfaces not generated/installed (no slm_agent.msg)")
pytest.importorskip("httpx", reason="the agent's openai_http engine needs httpx")

from action_msgs.msg import GoalStatus  # noqa: E402
from std_srvs.srv import SetBool  # noqa: E402

from slm_agent.action import RunTask  # noqa: E402
from slm_agent.agent.protocol import BFCL_MAXIMUM_STEP_LIMIT  # noqa: E402
from slm_agent.ros.runtime import SpinThread  # noqa: E402

sys.path.insert(0, str(Path(__file__).resolve().parent))
from agent_node_helpers import (  # noqa: E402
    AGENT_MODULE,
    AgentClient,
    CountingService,
    NodeProcess,
    ScriptedModelServer,
    namespace,
    script_prompt,
)

pytestmark = pytest.mark.timeout(300)

OPEN = {"name": "gripper", "arguments": {"data": True}}


@pytest.fixture(scope="module")
def stack(tmp_path_factory):
    ns = namespace("agent_proto")
    tmp = tmp_path_factory.mktemp("agent_proto")
    model = ScriptedModelServer()
    tools = tmp / "tools.yaml"
    tools.write_text("name: protocol_test\ndescription: one gripper\ntools:\n"
                     f"  - name: gripper\n    service: {ns}/tools/gripper\n    type: std_srvs/srv/SetBool\n"
                     "    description: Open or close the gripper.\n    timeout_s: 5.0\n", encoding="utf-8")
    context = rclpy.Context()
    rclpy.init(context=context)
    node = rclpy.create_node("agent_protocol_test", context=context)
    spin = SpinThread(node, context=context)

    def respond(req, res):
        res.success, res.message = True, "ok"
        return res

    gripper = CountingService(node, SetBool, f"{ns}/tools/gripper", respond)
    agent = NodeProcess(AGENT_MODULE, ["-r", f"__ns:={ns}", "-p", "autostart:=true",
                                       "-p", f"model:={model.write_profile(tmp)}", "-p", f"tool_set:={tools}",
                                       "-p", f"telemetry_topic:={ns}/telemetry/power"], name="agent")
    client = AgentClient(node, f"{ns}/agent")
    try:
        client.wait_server(120.0, agent)
        assert agent.wait_for_text("active: serving", 30.0), agent.tail()
        yield {"client": client, "agent": agent, "model": model, "gripper": gripper}
    finally:
        code = agent.terminate()
        spin.stop()
        node.destroy_node()
        context.try_shutdown()
        model.stop()
    assert code == 0, f"agent exited with {code} on SIGTERM\n{agent.tail(8000)}"


def _run(stack, steps, protocol="", max_steps=0):
    before_calls, before_requests = stack["gripper"].count, len(stack["model"].requests)
    goal = RunTask.Goal(task_id=f"p-{protocol or 'robot'}-{len(steps)}", prompt=script_prompt(steps),
                        max_steps=max_steps, execute_tools=True, protocol=protocol)
    out = stack["client"].run(goal, timeout_s=120.0)
    return out, stack["gripper"].count - before_calls, len(stack["model"].requests) - before_requests


def test_unknown_protocol_or_max_steps_with_bfcl_is_aborted_before_any_llm_call(stack):
    out, calls, requests = _run(stack, [OPEN], protocol="bfcI")
    assert out.accepted and out.status == GoalStatus.STATUS_ABORTED
    assert "unknown protocol 'bfcI'; valid: bfcl, robot" in out.result.error, out.result.error
    assert (calls, requests) == (0, 0) and not out.result.metrics
    out, calls, requests = _run(stack, [OPEN], protocol="bfcl", max_steps=8)
    assert out.status == GoalStatus.STATUS_ABORTED and "fixes its own step limit" in out.result.error
    assert (calls, requests) == (0, 0)


def test_bfcl_executes_repeats_and_force_terminates_after_twenty_steps(stack):
    limit = BFCL_MAXIMUM_STEP_LIMIT
    out, calls, requests = _run(stack, [OPEN] * limit, protocol="bfcl")
    assert out.status == GoalStatus.STATUS_SUCCEEDED and out.result.success, stack["agent"].tail()
    assert not out.result.force_terminated and calls == limit and requests == limit + 1
    out, calls, requests = _run(stack, [OPEN] * (limit + 1), protocol="bfcl")
    assert out.status == GoalStatus.STATUS_ABORTED and out.result.force_terminated
    assert out.result.error.startswith("force-terminated")
    assert calls == limit + 1 == len(out.result.tool_calls) and requests == limit + 1


def test_empty_protocol_is_the_robot_rules(stack):
    out, calls, requests = _run(stack, [OPEN] * 3)
    assert out.status == GoalStatus.STATUS_SUCCEEDED and not out.result.force_terminated
    assert calls == 1 and requests == 2, "the repeat ends the goal without running it again"
