"""Shared fixtures for the agent tests.

ROS fixtures use a private rclpy Context, a MultiThreadedExecutor spinning in
a daemon thread (never spin_until_future_complete, which busy-loops in rclpy
7.1) and a per-run namespace so concurrent test runs on the same DDS domain
cannot answer each other's calls.
"""
from __future__ import annotations

import dataclasses
import os
import threading
import uuid
from pathlib import Path
from typing import Iterator, Sequence

import pytest

from slm_agent.agent.toolset import ToolSet, load_tool_set
from slm_agent.engines.base import ChatRequest, Engine, StreamChunk, StreamTimer

REPO = Path(__file__).resolve().parents[2]
DEMO_TOOL_SET = REPO / "config" / "tool_sets" / "demo_robot.yaml"


@pytest.fixture(scope="session")
def demo_tool_set() -> ToolSet:
    return load_tool_set(DEMO_TOOL_SET)


class ScriptedEngine(Engine):
    """A *scripted* engine for loop control-flow tests: replays fixed outputs.

    Not a model: it proves nothing about model quality, only that the loop
    handles what an engine can return.  It records every request so tests can
    assert what was fed back, and streams each output in small chunks with
    real StreamTimer metrics.
    """

    backend = "scripted"

    def __init__(self, outputs: Sequence[str], chunk: int = 7, chunk_delay_s: float = 0.0) -> None:
        super().__init__(model="scripted", engine_name="scripted")
        self.outputs = list(outputs)
        self.chunk = chunk
        self.chunk_delay_s = chunk_delay_s
        self.requests: list[ChatRequest] = []
        self.closed_streams = 0

    def stream(self, request: ChatRequest) -> Iterator[StreamChunk]:
        self.requests.append(request)
        if not self.outputs:
            raise RuntimeError("scripted engine ran out of outputs")
        text = self.outputs.pop(0)
        timer = StreamTimer()
        timer.start()
        try:
            for i in range(0, len(text), self.chunk):
                if self.chunk_delay_s:
                    threading.Event().wait(self.chunk_delay_s)
                timer.token()
                yield StreamChunk(text=text[i:i + self.chunk])
            yield StreamChunk(metrics=timer.finish(engine=self.engine_name, backend=self.backend,
                                                   model=self.model, prompt_tokens=len(request.prompt or "")))
        except GeneratorExit:
            self.closed_streams += 1
            raise


@pytest.fixture
def scripted_engine_cls():
    return ScriptedEngine


# ----------------------------------------------------------------------------- ROS


@pytest.fixture(scope="module")
def ros_env():
    """(context, node, executor) with the executor spinning in a daemon thread."""
    rclpy = pytest.importorskip("rclpy", reason="rclpy is needed for the service tests")
    from rclpy.executors import MultiThreadedExecutor

    context = rclpy.Context()
    rclpy.init(context=context)
    node = rclpy.create_node(f"agent_test_{os.getpid()}", context=context)
    executor = MultiThreadedExecutor(num_threads=4, context=context)
    executor.add_node(node)
    thread = threading.Thread(target=executor.spin, daemon=True)
    thread.start()
    try:
        yield context, node, executor
    finally:
        executor.shutdown(timeout_sec=2.0)
        node.destroy_node()
        context.try_shutdown()
        thread.join(timeout=2.0)


@pytest.fixture(scope="module")
def test_namespace() -> str:
    return f"/agent_test_{os.getpid()}_{uuid.uuid4().hex[:8]}"


@pytest.fixture(scope="module")
def namespaced_tools(test_namespace):
    """The demo tool set's specs with /demo_robot/... moved under the test namespace."""
    tool_set = load_tool_set(DEMO_TOOL_SET)
    return [
        dataclasses.replace(t, service_name=test_namespace + "/" + t.service_name.rsplit("/", 1)[-1])
        for t in tool_set.tools
    ]
