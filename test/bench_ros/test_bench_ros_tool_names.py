"""Each case's tools under service names never served before (issue 23 item 8).

A fresh-clone ``make test`` on a loaded machine once scored the tau2 gold case
``mock/update_task_with_message_history`` 0; its ``update_task_status`` call
is the second in a row under the same service name (``update_task_1`` is
served just before).  The benchmark node destroyed the service after one
case and created it again under the same name for the next; a client of that
name kept across goals (the gold agent's cache, as the agent node's
ToolRouter keeps its clients) can still count the destroyed server as
matched: ``service_is_ready()`` says True at once, and the request goes to a
reader that no longer exists -- never executed, a TIMEOUT 10 s later, and
for that case reward 0 (the database was not changed).

Measured before the fix, with this file's host process and a client calling
right after each re-serve (2 loaded cores): 7 of 870 requests lost with
re-used names, 0 of 840 with fresh ones.

* deterministic: the benchmark node's host serves every case under a
  sub-namespace of its own, and a name once cleared is never served again
  (the standalone BFCL tool server keeps its agreed, fixed names);
* over DDS, two processes: a host re-serving 40 times and a client calling
  right after each serve, every request executed exactly once and answered.
"""
from __future__ import annotations

import json
import subprocess
import sys
import threading
import time
import types
import uuid
from pathlib import Path

import pytest

rclpy = pytest.importorskip("rclpy", reason="rclpy (ROS 2 Python client) not installed")
pytest.importorskip("slm_agent.srv", reason="slm_agent interfaces not generated/installed")

from slm_agent.ros.tool_services import ToolServiceHost  # noqa: E402

HERE = Path(__file__).resolve().parent
CYCLES = 40


class _Exe:
    def execute(self, name, args):
        return name


def test_fresh_names_never_serve_a_name_twice():
    node = types.SimpleNamespace(create_service=lambda *a, **k: object(), destroy_service=lambda s: None)
    host = ToolServiceHost(node, "/tau2", fresh_names=True)
    seen: set[str] = set()
    for _ in range(5):
        names = host.serve(_Exe(), ["create_task", "update_task_status"])
        assert all(n.startswith("/tau2/") and n.count("/") == 3 for n in names.values()), names
        assert not seen & set(names.values()), f"a service name served again: {seen & set(names.values())}"
        seen |= set(names.values())
        host.clear()
    # two hosts (a resumed run's new benchmark node) do not share names either
    other = ToolServiceHost(node, "/tau2", fresh_names=True).serve(_Exe(), ["create_task"])
    assert other["create_task"] not in seen
    # the standalone tool server's names are agreed in advance: fixed
    fixed = ToolServiceHost(node, "/bfcl")
    assert fixed.serve(_Exe(), ["cd"]) == fixed.serve(_Exe(), ["cd"]) == {"cd": "/bfcl/cd"}


def test_the_benchmark_node_serves_each_case_under_fresh_names():
    from slm_agent.nodes.benchmark_node import BenchmarkNode

    fake = types.SimpleNamespace(_tool_host=None, cfg=types.SimpleNamespace(tool_namespace="", suite="tau2"))
    host = BenchmarkNode._tools(fake)
    assert host.fresh_names and host.namespace == "/tau2"


def test_the_gold_agent_keeps_no_tool_client_across_goals():
    """A client kept from an earlier case is the one that can count a destroyed server as matched."""
    from slm_agent.nodes import gold_agent_node

    created, destroyed = [], []

    class FakeGold:
        _group = None

        def create_client(self, _type, name, callback_group=None):
            created.append(name)
            return name

        def destroy_client(self, client):
            destroyed.append(client)

        def _execute_goal(self, goal_handle, clients):
            gold_agent_node.GoldAgentNode._client(self, "/tau2/s1/a", clients)
            gold_agent_node.GoldAgentNode._client(self, "/tau2/s1/a", clients)
            gold_agent_node.GoldAgentNode._client(self, "/tau2/s1/b", clients)
            return "result"

    assert gold_agent_node.GoldAgentNode._execute(FakeGold(), None) == "result"
    assert created == ["/tau2/s1/a", "/tau2/s1/b"] and sorted(destroyed) == created


@pytest.fixture
def client_node():
    """A node on its own rclpy context, spun by an executor in a daemon thread."""
    from rclpy.executors import MultiThreadedExecutor

    context = rclpy.Context()
    rclpy.init(context=context)
    node = rclpy.create_node(f"tool_names_client_{uuid.uuid4().hex[:6]}", context=context)
    executor = MultiThreadedExecutor(num_threads=2, context=context)
    executor.add_node(node)
    thread = threading.Thread(target=executor.spin, daemon=True)
    thread.start()
    yield node
    executor.shutdown(timeout_sec=2.0)
    node.destroy_node()
    context.try_shutdown()
    thread.join(timeout=2.0)


def test_every_call_right_after_a_re_serve_is_executed_once(client_node):
    """The benchmark node's pattern over DDS: serve, call at once from another process, clear, again."""
    from rclpy.callback_groups import ReentrantCallbackGroup

    from slm_agent.ros.clients import wait_future
    from slm_agent.srv import InvokeTool

    node = client_node
    namespace = f"/tool_names_{uuid.uuid4().hex[:6]}"
    proc = subprocess.Popen([sys.executable, str(HERE / "tool_host_proc.py"), namespace, "fresh"],
                            stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    lines: list[str] = []
    got = threading.Condition()

    def read() -> None:
        for line in proc.stdout:
            with got:
                lines.append(line.rstrip())
                got.notify_all()
        with got:
            got.notify_all()            # the host ended: a waiting expect() fails at once

    threading.Thread(target=read, daemon=True).start()

    def expect(prefix: str, timeout: float = 30.0) -> str:
        end = time.monotonic() + timeout
        with got:
            while True:
                hit = next((x for x in lines if x.startswith(prefix)), None)
                if hit is not None:
                    lines.remove(hit)
                    return hit
                left = end - time.monotonic()
                assert left > 0 and proc.poll() is None, f"no {prefix!r} from the host: {lines}"
                got.wait(left)

    def send(cmd: str) -> None:
        proc.stdin.write(cmd + "\n")
        proc.stdin.flush()

    lost, names = [], set()
    try:
        expect("READY")
        for k in range(CYCLES):
            send(f"serve {k}")
            name = expect(f"SERVED {k} ").split()[2]
            names.add(name)
            client = node.create_client(InvokeTool, name, callback_group=ReentrantCallbackGroup())
            try:
                end = time.monotonic() + 30.0
                while not client.service_is_ready():
                    assert time.monotonic() < end, f"{name} never appeared"
                    time.sleep(0.01)
                try:
                    resp = wait_future(client.call_async(InvokeTool.Request(
                        call_id=str(k), arguments_json=json.dumps({"k": k}))), 5.0, client)
                    assert resp.success and json.loads(resp.result_json) == {"done": k}, resp
                except TimeoutError:
                    lost.append(k)
            finally:
                node.destroy_client(client)
            send("clear")
            expect("CLEARED")
        send("quit")
        proc.wait(20)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait(10)
    executed = [int(x.split()[1]) for x in lines if x.startswith("EXEC")]
    assert len(names) == CYCLES, "every serve under a name of its own"
    assert not lost, f"requests with no answer within 5 s: {lost} (executed: {executed})"
    assert sorted(executed) == list(range(CYCLES)), f"each request executed exactly once: {executed}"
