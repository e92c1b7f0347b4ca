"""``slm-agent ask``: ask the demo robot something through the agent node.

Three processes, as on a robot: the demo robot's services, the agent node
(default model, demo tool set) and this client sending one RunTask goal and
printing the streamed tokens, every tool call and the metrics.
"""
from __future__ import annotations

import math
import os
import subprocess
import sys
import threading
import time


from rclpy.node import Node

from slm_agent.action import RunTask
from slm_agent.isolation import DomainLease, parent_death_preexec
from slm_agent.ros.clients import RaceFreeActionClient, wait_future
from slm_agent.ros.runtime import SpinThread, ros_context

STATUS = {0: "ok", 1: "refused", 2: "invalid arguments", 3: "timeout", 4: "failed"}


def _stop(proc: subprocess.Popen) -> None:
    proc.terminate()
    try:
        proc.wait(timeout=10)
    except subprocess.TimeoutExpired:
        proc.kill()


def run_ask(prompt: str, model: str, strategy: str, timeout_s: float) -> int:
    # a DDS domain of its own (another run's agent must not answer this goal), held by the
    # children too; they get SIGTERM if this process dies, however it dies
    with DomainLease() as domain:
        os.environ["ROS_DOMAIN_ID"] = str(domain.domain_id)
        fds = (domain.fd,) if domain.fd >= 0 else ()
        robot = subprocess.Popen([sys.executable, "-m", "slm_agent.nodes.demo_robot_node"],
                                 pass_fds=fds, preexec_fn=parent_death_preexec())
        agent = subprocess.Popen([sys.executable, "-m", "slm_agent.nodes.agent_node", "--ros-args",
                                  "-p", f"model:={model}", "-p", "tool_set:=demo_robot", "-p", "autostart:=true",
                                  "--log-level", "warn"], pass_fds=fds, preexec_fn=parent_death_preexec())
        try:
            return _ask(agent, prompt, model, strategy, timeout_s)
        finally:
            _stop(agent)
            _stop(robot)


def _ask(agent: subprocess.Popen, prompt: str, model: str, strategy: str, timeout_s: float) -> int:
    with ros_context():
        node = Node("slm_agent_ask")
        spin = SpinThread(node)
        try:
            client = RaceFreeActionClient(node, RunTask, "/agent/run_task")
            print(f"ask: waiting for the agent ({model}) to load ...", flush=True)
            t0 = time.monotonic()
            while not client.wait_for_server(timeout_sec=0.5):
                if agent.poll() is not None:
                    print(f"ask: the agent node exited with status {agent.returncode}", file=sys.stderr)
                    return 1
                if time.monotonic() - t0 > timeout_s:
                    print("ask: the agent did not come up", file=sys.stderr)
                    return 1
            print(f"you> {prompt}\nrobot> ", end="", flush=True)
            lock = threading.Lock()

            def feedback(msg) -> None:
                fb = msg.feedback
                with lock:
                    if fb.kind == RunTask.Feedback.KIND_TEXT:
                        print(fb.text_delta, end="", flush=True)
                    elif fb.kind == RunTask.Feedback.KIND_TOOL_RESULT:
                        r = fb.tool_call.result
                        print(f"\n  -> {fb.tool_call.call.name}({fb.tool_call.call.arguments_json}): "
                              f"{STATUS.get(r.status, r.status)} {r.content_json or r.error} "
                              f"[{r.latency_ms:.2f} ms]\nrobot> ", end="", flush=True)

            goal = RunTask.Goal(task_id="ask", prompt=prompt, strategy=strategy, execute_tools=True)
            handle = wait_future(client.send_goal_async(goal, feedback_callback=feedback), timeout_s)
            if not handle.accepted:
                print("\nask: goal rejected", file=sys.stderr)
                return 1
            result = wait_future(handle.get_result_async(), timeout_s).result
            print()
            print(f"answer: {result.final_text or '(none)'}" + (f"  error: {result.error}" if result.error else ""))
            for i, m in enumerate(result.metrics):
                energy = "n/a" if math.isnan(m.energy_j) else f"{m.energy_j:.2f} J"
                print(f"  LLM call {i}: TTFT {m.ttft_ms:.0f} ms, prefill {m.prefill_tokens_per_s:.0f} tok/s "
                      f"({m.prompt_tokens} tokens, {m.cached_prompt_tokens} cached), decode "
                      f"{m.decode_tokens_per_s:.1f} tok/s ({m.decode_tokens} tokens), energy {energy}")
            return 0 if result.success else 1
        finally:
            spin.stop()
            node.destroy_node()
