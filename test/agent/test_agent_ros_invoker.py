"""RosServiceToolInvoker against real rclpy services in this process.

The fake robot counts every request its services receive, so "never reaches
the service" is asserted on the server side, not inferred from the client.
"""
from __future__ import annotations

import json
import math
import threading
import time

import pytest

rclpy = pytest.importorskip("rclpy", reason="rclpy is needed for the ROS service tests")

from rclpy.executors import SingleThreadedExecutor  # noqa: E402
from std_srvs.srv import SetBool, Trigger  # noqa: E402

from slm_agent.agent.loop import AgentLoop  # noqa: E402
from slm_agent.agent.types import Status, ToolCall, ToolResult, ToolSpec  # noqa: E402
from slm_agent.ros.tool_invoker import RosServiceToolInvoker  # noqa: E402
from slm_agent.srv import GetBattery, LookupLocation, MoveTo  # noqa: E402


class FakeRobot:
    """The demo robot's four services plus one that is NOT in the tool set."""

    def __init__(self, context, executor, namespace: str) -> None:
        self.node = rclpy.create_node(f"fake_robot_{id(self)}", context=context)
        self.counts = {"get_battery": 0, "move_to": 0, "gripper": 0, "lookup_location": 0, "self_destruct": 0}
        self.requests: dict[str, list] = {k: [] for k in self.counts}
        n = self.node
        n.create_service(GetBattery, f"{namespace}/get_battery", self._battery)
        n.create_service(MoveTo, f"{namespace}/move_to", self._move)
        n.create_service(SetBool, f"{namespace}/gripper", self._gripper)
        n.create_service(LookupLocation, f"{namespace}/lookup_location", self._lookup)
        n.create_service(Trigger, f"{namespace}/self_destruct", self._self_destruct)
        executor.add_node(n)

    def _count(self, name, request):
        self.counts[name] += 1
        self.requests[name].append(request)

    def _battery(self, request, response):
        self._count("get_battery", request)
        response.percentage, response.voltage, response.charging = 87.5, 24.8, False
        return response

    def _move(self, request, response):
        self._count("move_to", request)
        response.success, response.message = True, "reached"
        response.reached = request.goal
        response.duration_s = 1.0
        return response

    def _gripper(self, request, response):
        self._count("gripper", request)
        response.success, response.message = True, "gripper open" if request.data else "gripper closed"
        return response

    def _lookup(self, request, response):
        self._count("lookup_location", request)
        response.found = request.name == "kitchen"
        if response.found:
            response.pose.x, response.pose.y, response.pose.theta = 4.0, 2.5, 1.57
        response.known_names = ["dock", "kitchen"]
        return response

    def _self_destruct(self, request, response):
        self._count("self_destruct", request)
        response.success, response.message = True, "boom"
        return response


class SlowService:
    """A Trigger service that holds every request until released (own executor thread)."""

    def __init__(self, context, name: str) -> None:
        self.node = rclpy.create_node(f"slow_{id(self)}", context=context)
        self.release = threading.Event()
        self.received = 0
        self.node.create_service(Trigger, name, self._cb)
        self.executor = SingleThreadedExecutor(context=context)
        self.executor.add_node(self.node)
        self.thread = threading.Thread(target=self.executor.spin, daemon=True)
        self.thread.start()

    def _cb(self, request, response):
        self.received += 1
        self.release.wait(5.0)
        response.success, response.message = True, "late"
        return response

    def stop(self) -> None:
        self.release.set()
        self.executor.shutdown(timeout_sec=2.0)
        self.node.destroy_node()


@pytest.fixture(scope="module")
def robot(ros_env, test_namespace):
    context, node, executor = ros_env
    fake = FakeRobot(context, executor, test_namespace)
    yield fake
    executor.remove_node(fake.node)
    fake.node.destroy_node()


@pytest.fixture(scope="module")
def invoker(ros_env, robot, namespaced_tools):
    _, node, _ = ros_env
    inv = RosServiceToolInvoker(node, namespaced_tools)
    assert inv.wait_ready(10.0), "fake robot services did not appear on the graph"
    yield inv
    inv.destroy()


def _call(tool: str, /, **arguments) -> ToolCall:
    return ToolCall(id="c", name=tool, arguments=arguments)


def test_valid_calls_reach_the_services(invoker, robot, namespaced_tools):
    specs = {t.name: t for t in namespaced_tools}
    before = dict(robot.counts)
    r = invoker.invoke(specs["gripper"], _call("gripper", data=True))
    assert r.status == Status.OK, r.error
    assert r.content == {"success": True, "message": "gripper open"}
    assert math.isfinite(r.latency_ms) and 0 < r.latency_ms < 1000
    r = invoker.invoke(specs["move_to"], _call("move_to", goal={"x": 4, "y": 2.5}, speed=0.5))
    assert r.status == Status.OK, r.error
    assert r.content["reached"] == {"x": 4.0, "y": 2.5, "theta": 0.0}
    sent = robot.requests["move_to"][-1]
    assert (sent.goal.x, sent.goal.y, sent.goal.theta, sent.speed, sent.frame_id, sent.mode) == \
        (4.0, 2.5, 0.0, 0.5, "map", 0)  # tool-set defaults filled in
    r = invoker.invoke(specs["get_battery"], _call("get_battery"))
    assert r.status == Status.OK and r.content == {"percentage": 87.5, "voltage": 24.8, "charging": False}
    assert robot.counts["gripper"] == before["gripper"] + 1
    assert robot.counts["move_to"] == before["move_to"] + 1


def test_unlisted_service_on_the_graph_is_never_reached(ros_env, robot, invoker, namespaced_tools,
                                                        test_namespace, scripted_engine_cls):
    _, node, _ = ros_env
    # 1) through the agent loop: the model asks for the unlisted tool
    engine = scripted_engine_cls([
        '{"name": "self_destruct", "arguments": {}}',
        '[{"name": "self_destruct", "arguments": {}}, {"name": "gripper", "arguments": {"data": false}}]',
        '{"name": "final_answer", "arguments": {"text": "I cannot do that."}}',
    ])
    loop = AgentLoop(engine, namespaced_tools, invoker, strategy="direct", max_steps=4)
    result = loop.run(prompt="Self destruct now.")
    statuses = [(c.name, r.status) for c, r in result.calls]
    assert statuses == [("self_destruct", Status.REFUSED), ("self_destruct", Status.REFUSED),
                        ("gripper", Status.OK)]
    assert "unknown tool 'self_destruct'" in engine.requests[1].prompt  # the refusal was fed back
    assert result.success and result.final_text == "I cannot do that."
    # 2) straight at the invoker, with a spec that names the real service
    rogue = ToolSpec(name="self_destruct", service_name=f"{test_namespace}/self_destruct",
                     service_type="std_srvs/srv/Trigger")
    r = invoker.invoke(rogue, _call("self_destruct"))
    assert r.status == Status.REFUSED and "not in this invoker's tool set" in r.error
    # 3) a listed name pointed at another service is refused too
    hijack = ToolSpec(name="gripper", service_name=f"{test_namespace}/self_destruct",
                      service_type="std_srvs/srv/Trigger")
    assert invoker.invoke(hijack, _call("gripper", data=True)).status == Status.REFUSED
    time.sleep(0.2)  # let any stray request arrive before counting
    assert robot.counts["self_destruct"] == 0
    # control: the service is really there and reachable, so the 0 above means something
    client = node.create_client(Trigger, f"{test_namespace}/self_destruct")
    try:
        assert client.wait_for_service(timeout_sec=5.0)
        done = threading.Event()
        future = client.call_async(Trigger.Request())
        future.add_done_callback(lambda _f: done.set())
        assert done.wait(5.0)
        assert future.result().message == "boom"
        assert robot.counts["self_destruct"] == 1
    finally:
        node.destroy_client(client)


def test_invalid_arguments_never_reach_the_service(invoker, robot, namespaced_tools, scripted_engine_cls):
    specs = {t.name: t for t in namespaced_tools}
    before = robot.counts["move_to"]
    bad = [
        {"goal": {"x": 12, "y": 0}, "speed": 1},                     # out of range
        {"goal": {"x": 1, "y": 0}, "speed": "fast"},                 # wrong type
        {"goal": {"x": 1, "y": 0}, "speed": 1, "turbo": True},       # extra key
        {"goal": {"x": 1, "y": 0}, "speed": 2.0},                    # above the tool-set bound
        {"goal": {"x": 1, "y": 0}, "speed": 1, "via": [{"x": 0, "y": 0}] * 9},  # maxItems
        {"goal": {"x": 1, "y": 0}, "speed": 1, "mode": 7},           # not a MODE_* value
        {"speed": 1},                                                 # missing goal
    ]
    # straight at the invoker (its own validation, independent of the envelope)
    for args in bad:
        r = invoker.invoke(specs["move_to"], _call("move_to", **args))
        assert r.status == Status.INVALID_ARGUMENTS, args
        assert r.error and math.isnan(r.latency_ms)
    # through the loop, several in one turn, then a corrected call
    engine = scripted_engine_cls([
        json.dumps([{"name": "move_to", "arguments": a} for a in bad[:3]]),
        '{"name": "move_to", "arguments": {"goal": {"x": 9.5, "y": -3}, "speed": 1.5}}',
        '{"name": "final_answer", "arguments": {"text": "moved"}}',
    ])
    loop = AgentLoop(engine, namespaced_tools, invoker, max_steps=3)
    result = loop.run(prompt="Go to x=12.")
    assert [r.status for _, r in result.calls] == [Status.INVALID_ARGUMENTS] * 3 + [Status.OK]
    assert "goal.x: 12 is above the maximum 10" in engine.requests[1].prompt
    assert robot.counts["move_to"] == before + 1  # only the corrected call arrived
    assert robot.requests["move_to"][-1].goal.x == 9.5


def test_timeout_then_the_invoker_keeps_working(ros_env, robot, invoker, namespaced_tools, test_namespace):
    context, node, _ = ros_env
    slow = SlowService(context, f"{test_namespace}/slow")
    try:
        slow_spec = ToolSpec(name="slow_tool", description="never answers in time",
                             service_name=f"{test_namespace}/slow", service_type="std_srvs/srv/Trigger",
                             timeout_s=0.3)
        slow_invoker = RosServiceToolInvoker(node, [slow_spec])
        assert slow_invoker.wait_ready(10.0)
        t0 = time.monotonic()
        r = slow_invoker.invoke(slow_spec, _call("slow_tool"))
        elapsed = time.monotonic() - t0
        assert r.status == Status.TIMEOUT, r
        assert 0.3 <= elapsed < 0.3 + 0.1, elapsed
        assert "did not answer within 0.3 s" in r.error
        assert 290 <= r.latency_ms < 400
        # another tool works right after
        gripper = {t.name: t for t in namespaced_tools}["gripper"]
        ok = invoker.invoke(gripper, _call("gripper", data=False))
        assert ok.status == Status.OK and ok.content["message"] == "gripper closed"
        # the timed-out tool's client works again once the service answers (late reply dropped)
        slow.release.set()
        time.sleep(0.1)
        again = slow_invoker.invoke(slow_spec, _call("slow_tool"))
        assert again.status == Status.OK and again.content == {"success": True, "message": "late"}
        assert slow.received == 2
        slow_invoker.destroy()
    finally:
        slow.stop()


def test_missing_service_fails_within_its_timeout(ros_env, test_namespace):
    _, node, _ = ros_env
    spec = ToolSpec(name="ghost", service_name=f"{test_namespace}/ghost", service_type="std_srvs/srv/Trigger",
                    timeout_s=0.2)
    inv = RosServiceToolInvoker(node, [spec])
    t0 = time.monotonic()
    r = inv.invoke(spec, _call("ghost"))
    assert r.status == Status.FAILED and "not available" in r.error
    assert time.monotonic() - t0 < 0.2 + 0.1
    inv.destroy()


def test_server_gone_fails_at_once_not_after_its_timeout(ros_env, test_namespace, monkeypatch):
    """Once a client is past its discovery grace, an absent server is FAILED at once:
    a server that was there and left, and one that never came."""
    from slm_agent.ros import tool_invoker

    monkeypatch.setattr(tool_invoker, "DISCOVERY_GRACE_S", 0.3)
    context, node, executor = ros_env
    server = rclpy.create_node(f"short_lived_{id(ros_env)}", context=context)
    served = []

    def cb(request, response):
        served.append(request)
        response.success, response.message = True, "there"
        return response

    server.create_service(Trigger, f"{test_namespace}/short_lived", cb)
    executor.add_node(server)
    specs = [ToolSpec(name="short_lived", service_name=f"{test_namespace}/short_lived",
                      service_type="std_srvs/srv/Trigger", timeout_s=5.0),
             ToolSpec(name="never", service_name=f"{test_namespace}/never_served",
                      service_type="std_srvs/srv/Trigger", timeout_s=5.0)]
    inv = RosServiceToolInvoker(node, specs)
    try:
        assert inv.invoke(specs[0], _call("short_lived")).status == Status.OK
        executor.remove_node(server)
        server.destroy_node()
        end = time.monotonic() + 5.0
        while inv._entries["short_lived"].client.service_is_ready() and time.monotonic() < end:
            time.sleep(0.01)
        time.sleep(0.3)  # both clients are now past the (patched) discovery grace
        for spec in specs:
            t0 = time.monotonic()
            r = inv.invoke(spec, _call(spec.name))
            elapsed = time.monotonic() - t0
            assert r.status == Status.FAILED and "not available" in r.error and "not called" in r.error, r
            assert elapsed < 0.1, (spec.name, elapsed)  # not the 5 s timeout
        assert len(served) == 1
    finally:
        inv.destroy()


@pytest.mark.timeout(120)
def test_server_leaving_mid_call_ends_the_call_early(ros_env, test_namespace):
    """A server process takes the request, then leaves the graph (SIGTERM) without
    answering: the call is FAILED shortly after, not at its 10 s timeout, and was sent once."""
    import signal
    import subprocess
    import sys
    from pathlib import Path

    from slm_agent.ros import tool_invoker

    _, node, _ = ros_env
    script = Path(__file__).resolve().parents[1] / "nodes" / "hold_service_proc.py"
    name = f"{test_namespace}/held_gripper"
    proc = subprocess.Popen([sys.executable, str(script), name, "Trigger"], stdout=subprocess.PIPE,
                            stderr=subprocess.STDOUT, text=True)
    spec = ToolSpec(name="held", service_name=name, service_type="std_srvs/srv/Trigger", timeout_s=10.0)
    inv = RosServiceToolInvoker(node, [spec])
    result: list = []
    try:
        assert proc.stdout.readline().startswith("held ready")
        assert inv.wait_ready(10.0)
        t = threading.Thread(target=lambda: result.append(inv.invoke(spec, _call("held"))))
        t.start()
        assert proc.stdout.readline().startswith("RECEIVED 1")
        killed = time.monotonic()
        proc.send_signal(signal.SIGTERM)
        t.join(15.0)
        after_kill = time.monotonic() - killed
        out = proc.communicate(timeout=15.0)[0]
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait(10.0)
        inv.destroy()
    r = result[0]
    assert r.status == Status.FAILED and "went away during the call" in r.error, r
    assert after_kill < 2.0 + tool_invoker.GONE_GRACE_S, after_kill
    assert "RECEIVED 2" not in out


def test_young_client_still_waits_for_discovery(ros_env, robot, namespaced_tools):
    """A client created right before the call gets its discovery grace: the call succeeds."""
    _, node, _ = ros_env
    spec = {t.name: t for t in namespaced_tools}["get_battery"]
    inv = RosServiceToolInvoker(node, [spec])
    try:
        r = inv.invoke(spec, _call("get_battery"))
        assert r.status == Status.OK, r
    finally:
        inv.destroy()


def test_end_to_end_loop_over_ros(invoker, robot, namespaced_tools, scripted_engine_cls):
    engine = scripted_engine_cls([
        "Thought: I need the kitchen's pose.\nAction: lookup_location\nAction Input: {\"name\": \"kitchen\"}",
        'Thought: Now drive there.\nAction: move_to\nAction Input: {"goal": {"x": 4.0, "y": 2.5}, "speed": 0.5}',
        "Thought: I now know the final answer.\nFinal Answer: I am in the kitchen.",
    ])
    before = robot.counts["move_to"]
    result = AgentLoop(engine, namespaced_tools, invoker, strategy="react", max_steps=5).run(
        prompt="Go to the kitchen.")
    assert result.success, result.error
    assert result.final_text == "I am in the kitchen."
    assert [c.name for c, _ in result.calls] == ["lookup_location", "move_to"]
    assert all(r.status == Status.OK for _, r in result.calls)
    assert result.calls[0][1].content["pose"] == {"x": 4.0, "y": 2.5, "theta": 1.57}
    assert robot.counts["move_to"] == before + 1
    # the observation of step 0 is in the prompt of step 1, in the react format
    assert '\nObservation: {"status":"ok","result":{"found":true' in engine.requests[1].prompt
    assert len(result.metrics) == 3 and result.metric_steps == [0, 1, 2]


def test_tool_call_record_msg():
    from slm_agent.ros.tool_invoker import tool_call_record_msg

    call = ToolCall(id="call_1_0", name="move_to", arguments={"goal": {"x": 1.0, "y": 2.0}, "speed": 0.5}, step=1)
    ok = tool_call_record_msg("t1", call, ToolResult("call_1_0", "move_to", Status.OK, content={"success": True},
                                                     latency_ms=0.4))
    assert ok.task_id == "t1" and ok.call.step == 1 and ok.result.status == Status.OK == 0
    assert json.loads(ok.call.arguments_json) == call.arguments
    assert json.loads(ok.result.content_json) == {"success": True} and ok.result.latency_ms == 0.4
    refused = tool_call_record_msg("t1", call, ToolResult("call_1_0", "move_to", Status.REFUSED, error="no"))
    assert refused.result.status == 1 and math.isnan(refused.result.latency_ms) and refused.result.error == "no"
