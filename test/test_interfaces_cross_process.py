"""Every custom message, service and action crosses DDS between two processes,
with every field checked on the far side (and the echo/response on this side)."""
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest
import rclpy
from rclpy.action import ActionClient
from rclpy.node import Node
from rclpy.qos import DurabilityPolicy, QoSProfile, ReliabilityPolicy
from std_msgs.msg import String

from interface_values import all_types, diff, fill, plain
from slm_agent.ros.clients import call, wait_future
from slm_agent.ros.runtime import SpinThread, wait_for

SEED = 11
QOS = QoSProfile(depth=10, reliability=ReliabilityPolicy.RELIABLE, durability=DurabilityPolicy.TRANSIENT_LOCAL)
TIMEOUT = 20.0


@pytest.fixture(scope="module")
def peer():
    proc = subprocess.Popen([sys.executable, str(Path(__file__).with_name("interface_peer.py")), str(SEED)],
                            stdout=subprocess.PIPE, text=True)
    ready = threading.Event()
    threading.Thread(target=lambda: ("READY" in proc.stdout.readline()) and ready.set(), daemon=True).start()
    assert ready.wait(TIMEOUT), "peer process did not become ready"
    rclpy.init()
    node = Node("interface_test")
    reports: dict[str, str] = {}
    node.create_subscription(String, "/slm_if/report",
                             lambda m: reports.__setitem__(" ".join(m.data.split()[:2]), m.data),
                             QoSProfile(depth=200, reliability=ReliabilityPolicy.RELIABLE,
                                        durability=DurabilityPolicy.TRANSIENT_LOCAL))
    spin = SpinThread(node)
    yield node, reports, proc
    spin.stop()
    node.destroy_node()
    rclpy.shutdown()
    proc.terminate()
    assert proc.wait(timeout=10) == 0, "peer did not exit cleanly on SIGTERM"


def _far_side(reports: dict, key: str) -> str:
    assert wait_for(lambda: key in reports, TIMEOUT), f"no report from the peer for {key}"
    return reports[key]


def test_types_are_discovered():
    names = {n for n, _ in all_types("msg")}
    assert {"ToolCall", "ToolResult", "InferenceMetrics", "PowerState", "ThermalState",
            "Scenario", "ScenarioResult", "ChatMessage", "ToolSpec"} <= names
    assert {"ListTools", "PowerMode", "InvokeTool", "MoveTo"} <= {n for n, _ in all_types("srv")}
    assert {"RunTask"} == {n for n, _ in all_types("action")}


@pytest.mark.parametrize("name,cls", all_types("msg"), ids=[n for n, _ in all_types("msg")])
def test_message_round_trip(peer, name, cls):
    node, reports, _ = peer
    expected = fill(cls, SEED)
    echoed = []
    got = threading.Event()
    node.create_subscription(cls, f"/slm_if/echo/{name}", lambda m: (echoed.append(m), got.set()), QOS)
    pub = node.create_publisher(cls, f"/slm_if/msg/{name}", QOS)
    assert wait_for(lambda: pub.get_subscription_count() > 0, TIMEOUT)
    pub.publish(expected)
    assert _far_side(reports, f"msg {name}") == f"msg {name} OK"
    assert got.wait(TIMEOUT), "no echo"
    assert diff(plain(expected), plain(echoed[0])) == []
    assert plain(expected) != plain(cls()), "filled message must differ from defaults"


@pytest.mark.parametrize("name,cls", all_types("srv"), ids=[n for n, _ in all_types("srv")])
def test_service_call(peer, name, cls):
    node, reports, _ = peer
    client = node.create_client(cls, f"/slm_if/srv/{name}")
    response, _ms = call(client, fill(cls.Request, SEED), TIMEOUT)
    assert _far_side(reports, f"srv {name}") == f"srv {name} OK"
    assert diff(plain(fill(cls.Response, SEED + 1)), plain(response)) == []


@pytest.mark.parametrize("name,cls", all_types("action"), ids=[n for n, _ in all_types("action")])
def test_action_goal_feedback_result(peer, name, cls):
    node, reports, _ = peer
    client = ActionClient(node, cls, f"/slm_if/action/{name}")
    assert client.wait_for_server(timeout_sec=TIMEOUT)
    feedback = []
    handle = wait_future(client.send_goal_async(fill(cls.Goal, SEED),
                                                feedback_callback=lambda f: feedback.append(f.feedback)), TIMEOUT)
    assert handle.accepted
    result = wait_future(handle.get_result_async(), TIMEOUT).result
    assert _far_side(reports, f"action {name}") == f"action {name} OK"
    assert diff(plain(fill(cls.Result, SEED + 3)), plain(result)) == []
    assert wait_for(lambda: len(feedback) > 0, 5.0), "no feedback received"
    assert diff(plain(fill(cls.Feedback, SEED + 2)), plain(feedback[0])) == []


def test_far_side_detects_a_wrong_value(peer):
    """The check itself can fail: a message with one changed field is reported."""
    node, reports, _ = peer
    from slm_agent.msg import ToolCall

    client_pub = node.create_publisher(ToolCall, "/slm_if/msg/ToolCall", QOS)
    assert wait_for(lambda: client_pub.get_subscription_count() > 0, TIMEOUT)
    bad = fill(ToolCall, SEED)
    bad.name = bad.name + "x"
    reports.pop("msg ToolCall", None)
    client_pub.publish(bad)
    assert wait_for(lambda: "FAIL" in reports.get("msg ToolCall", ""), TIMEOUT)
    assert ".name" in reports["msg ToolCall"]
