"""Gold multi-turn trajectories where every call crosses DDS.

A separate process (``test/bench/bfcl_tool_server.py``, a test helper) serves
the scenario's functions as ``slm_agent/srv/InvokeTool`` services; this test
process calls them through rclpy clients (an executor spins in a daemon
thread; nothing uses ``spin_until_future_complete``), records the
trajectory and scores it with BFCL's multi-turn checker.  The server process
is always terminated.
"""
import json
import os
import queue
import subprocess
import sys
import tempfile
import threading
import uuid
from pathlib import Path

import pytest

pytest.importorskip(
    "bfcl_eval", reason="bfcl_eval not installed (pip install --no-deps bfcl-eval==2026.3.23)"
)
pytest.importorskip("mpmath", reason="mpmath (imported by BFCL's MathAPI) not installed")
pytest.importorskip("filelock", reason="filelock (imported by bfcl_eval.utils) not installed")
rclpy = pytest.importorskip("rclpy", reason="rclpy (ROS 2 Python client) not installed")
pytest.importorskip(
    "slm_agent.srv", reason="slm_agent interfaces not generated/installed (no slm_agent.srv)"
)

from rclpy.executors import SingleThreadedExecutor  # noqa: E402

from slm_agent.bench.bfcl.checker import check_multi_turn  # noqa: E402
from slm_agent.bench.bfcl.loader import deterministic_sample, load_scenario, load_scenarios  # noqa: E402
sys.path.insert(0, str(Path(__file__).resolve().parent))
from bfcl_tool_server import (  # noqa: E402
    CONTROL_RESET,
    InvokeToolClient,
    ros_token,
    service_names_for,
)
from slm_agent.bench.fidelity import gold_multi_turn, gold_trajectory  # noqa: E402

SRC = Path(__file__).resolve().parents[2] / "src"
NAMESPACE = f"/bench_test_{os.getpid()}_{uuid.uuid4().hex[:6]}"
CASES = [s.case_id for s in deterministic_sample(load_scenarios(["multi_turn_base"]), 3)] + [
    "multi_turn_miss_func_0"
]
STARTUP_TIMEOUT_S = 60.0


@pytest.fixture(scope="module")
def server():
    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join([str(SRC), env.get("PYTHONPATH", "")]).rstrip(os.pathsep)
    env["PYTHONUNBUFFERED"] = "1"
    stderr = tempfile.TemporaryFile(mode="w+")
    proc = subprocess.Popen(
        [
            sys.executable,
            str(Path(__file__).resolve().parent / "bfcl_tool_server.py"),
            "--case",
            CASES[0],
            "--namespace",
            NAMESPACE,
            "--node-name",
            f"bench_test_server_{os.getpid()}",
        ],
        stdout=subprocess.PIPE,
        stderr=stderr,
        text=True,
        env=env,
    )
    lines: "queue.Queue[str]" = queue.Queue()
    threading.Thread(
        target=lambda: [lines.put(line) for line in proc.stdout], daemon=True
    ).start()
    try:
        try:
            ready = json.loads(lines.get(timeout=STARTUP_TIMEOUT_S))
        except queue.Empty:
            stderr.seek(0)
            pytest.fail(f"tool server did not start in {STARTUP_TIMEOUT_S}s: {stderr.read()[-2000:]}")
        assert ready["ready"] is True and ready["case_id"] == CASES[0]
        yield proc, ready
    finally:
        proc.terminate()
        try:
            proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait(timeout=10)
        stderr.close()


@pytest.fixture(scope="module")
def node():
    ctx = rclpy.Context()
    rclpy.init(context=ctx)
    n = rclpy.create_node(f"bench_test_client_{os.getpid()}", context=ctx)
    executor = SingleThreadedExecutor(context=ctx)
    executor.add_node(n)
    thread = threading.Thread(target=executor.spin, daemon=True)
    thread.start()
    try:
        yield n
    finally:
        executor.shutdown(timeout_sec=2.0)
        thread.join(timeout=2.0)
        n.destroy_node()
        rclpy.shutdown(context=ctx)


def _switch_to(node, case_id: str) -> dict:
    control = InvokeToolClient(node, {"reset": f"{NAMESPACE}/{CONTROL_RESET}"})
    try:
        assert control.wait_ready(STARTUP_TIMEOUT_S)
        resp = control.invoke("reset", {"case_id": case_id}, timeout_s=30.0)
    finally:
        control.close()
    assert resp.success, resp.error
    return json.loads(resp.result_json)


def test_server_announces_the_agreed_service_names(server):
    _, ready = server
    sc = load_scenario(CASES[0])
    assert ready["services"] == service_names_for(sc, NAMESPACE)
    assert all(v.startswith(NAMESPACE + "/") for v in ready["services"].values())


@pytest.mark.parametrize("case_id", CASES)
def test_gold_trajectory_over_ros_services_passes(server, node, case_id):
    proc, _ = server
    info = _switch_to(node, case_id)  # fresh environment for this case
    sc = load_scenario(case_id)
    assert info["services"] == service_names_for(sc, NAMESPACE)
    client = InvokeToolClient(node, info["services"])
    try:
        assert client.wait_ready(STARTUP_TIMEOUT_S)
        trajectory = gold_trajectory(sc, client.execute)
    finally:
        client.close()
    assert proc.poll() is None  # server alive throughout
    res = check_multi_turn(sc, trajectory)
    assert res.valid and res.passed, (res.error_type, res.error)
    # byte-identical to the in-process environment's results
    _, local = gold_multi_turn(sc)
    assert [[c["result"] for s in t for c in s] for t in trajectory] == [
        [c["result"] for s in t for c in s] for t in local
    ]


def test_bad_requests_are_rejected_not_executed(server, node):
    info = _switch_to(node, "multi_turn_base_0")
    client = InvokeToolClient(node, {"cd": info["services"]["cd"], "ls": info["services"]["ls"]})
    try:
        assert client.wait_ready(STARTUP_TIMEOUT_S)
        resp = client.invoke("cd", "{not json")  # raw text, sent verbatim
        assert resp.success is False and "JSON" in resp.error
        resp = client.invoke("cd", ["document"])  # not an object
        assert resp.success is False and "object" in resp.error
        # a BFCL-level failure is a normal result the model must see
        resp = client.invoke("cd", {"folder": "no_such_dir"})
        assert resp.success is True
        assert json.loads(resp.result_json) == (
            '{"error": "cd: \'no_such_dir\': No such file or directory"}'
        )
        assert "document" in client.execute("ls", {})  # state untouched by the rejects
    finally:
        client.close()


def test_ros_tokens_are_valid_and_collision_free():
    assert ros_token("math.factorial") == "math_factorial"
    assert ros_token("3d_plot") == "f_3d_plot"
    sc = load_scenario("multi_turn_base_0")
    names = service_names_for(sc, "bfcl")
    assert len(set(names.values())) == len(names)
    assert names["cd"] == "/bfcl/cd"
