"""Gold agent: a RunTask action server that answers with a suite's gold answers.

It stands in for the agent node so the harness can be checked end to end
*through ROS* without a model: scenario message -> RunTask goal -> ToolCall
messages -> the suite's checker -> ScenarioResult message and results.jsonl.
Gold answers must score 100 %; with ``corrupt:=true`` one argument value is
changed and they must fail.

The goal's ``task_id`` is ``<case_id>#<turn>`` (``slm_agent.bench.runner.task_id``);
the answer is the suite's (parameter ``suite``, set by ``slm-agent bench`` to
the run's; :meth:`slm_agent.bench.suite.Suite.gold_answer`):

* calls returned unexecuted (BFCL single-turn): step-0 ToolCallRecords;
  without calls (irrelevance) a text answer;
* calls to execute (BFCL multi-turn, tau2): one per step, each
  **executed** through the InvokeTool service named by the goal's ToolSpec
  (``service_name``), so the calls cross DDS like a real agent's; the
  transcript (goal messages + assistant tool calls + tool results + the
  answer's closing text) is returned.

Publishes ``/agent/metrics`` (InferenceMetrics: one per "response", engine
and backend ``gold``, measured wall times, no tokens) and ``/agent/tool_calls``
(ToolCallRecord) like the real agent.  Node name ``gold_agent``; parameters:
:class:`slm_agent.settings.GoldAgentSettings` (``config/benchmark.yaml``).
"""
from __future__ import annotations

import json
import math
import sys
import threading
import time
from typing import Any

from rclpy.action import ActionServer, CancelResponse, GoalResponse
from rclpy.callback_groups import ReentrantCallbackGroup
from rclpy.node import Node

from slm_agent.action import RunTask
from slm_agent.bench.runner import parse_task_id
from slm_agent.bench.suite import get_suite
from slm_agent.msg import ChatMessage, InferenceMetrics, ToolCall, ToolCallRecord, ToolResult
from slm_agent.ros.clients import ServiceCallError, wait_future
from slm_agent.ros.matching import RecorderGate
from slm_agent.ros.params import declare_settings, read_settings
from slm_agent.ros.runtime import run_node
from slm_agent.settings import GoldAgentSettings, SettingsError
from slm_agent.srv import InvokeTool

NODE_NAME = "gold_agent"


class GoldAgentConfigError(RuntimeError):
    """Bad parameters (already logged)."""


class GoldAgentNode(Node):
    def __init__(self, **kwargs: Any) -> None:
        super().__init__(NODE_NAME, **kwargs)
        try:
            declare_settings(self, GoldAgentSettings)
            p = read_settings(self, GoldAgentSettings)
        except SettingsError as exc:
            self.get_logger().error(f"bad gold_agent configuration: {'; '.join(exc.problems)}")
            self.destroy_node()
            raise GoldAgentConfigError(str(exc)) from exc
        self.suite_name = p.suite
        self.corrupt = p.corrupt
        self.corrupt_ids = {t.strip() for t in p.corrupt_ids.split(",") if t.strip()}
        self.delay_s = p.delay_s
        self.tool_timeout_s = p.tool_timeout_s
        self._group = ReentrantCallbackGroup()
        self._clients_lock = threading.Lock()
        self._call_seq = 0
        self.pub_metrics = self.create_publisher(InferenceMetrics, p.metrics_topic, 50)
        self.pub_calls = self.create_publisher(ToolCallRecord, p.tool_calls_topic, 50)
        self._recorder = RecorderGate(p.min_subscribers, p.subscriber_wait_s, self.get_logger().warning)
        self._recorded_names = f"{p.metrics_topic}, {p.tool_calls_topic}"
        self.server = ActionServer(self, RunTask, p.action_name, self._execute,
                                   goal_callback=lambda _g: GoalResponse.ACCEPT,
                                   cancel_callback=lambda _g: CancelResponse.ACCEPT,
                                   callback_group=self._group)
        self.get_logger().info(f"gold agent ready at {p.action_name}"
                               + (" (CORRUPTED answers)" if self.corrupt else ""))

    # ------------------------------------------------------------------ tools
    def _client(self, service: str, clients: dict[str, Any]):
        """The goal's client of ``service`` (``clients``: the goal's own, destroyed when it ends).

        Not kept across goals: the benchmark node serves each case under fresh
        service names, so a cache would only grow, and a client kept from an
        earlier case is the one that can still count a destroyed server as
        matched (``slm_agent.ros.tool_services``, Fresh names)."""
        if service not in clients:
            clients[service] = self.create_client(InvokeTool, service, callback_group=self._group)
        return clients[service]

    def _invoke(self, spec, call_id: str, arguments_json: str, clients: dict[str, Any]) -> ToolResult:
        """One gold call through the goal's InvokeTool service, arguments verbatim and the result
        text kept as the service sent it: the gold agent is the harness's reference, so its calls
        reach the environment exactly as the dataset (or the deliberate corruption) states them.
        Not :class:`~slm_agent.ros.tool_invoker.RosServiceToolInvoker`, which checks arguments
        against the schema first and re-spells arguments and results."""
        res = ToolResult(call_id=call_id, name=spec.name if spec else "", latency_ms=math.nan)
        if spec is None or not spec.service_name:
            res.status, res.error = ToolResult.STATUS_REFUSED, "tool not offered in this goal"
            return res
        timeout = spec.timeout_s if spec.timeout_s > 0 else self.tool_timeout_s
        client = self._client(spec.service_name, clients)
        end = time.monotonic() + timeout
        while not client.service_is_ready():
            if time.monotonic() > end:
                res.status, res.error = ToolResult.STATUS_FAILED, f"{spec.service_name} not available"
                return res
            time.sleep(0.02)
        req = InvokeTool.Request(call_id=call_id, arguments_json=arguments_json)
        t0 = time.perf_counter()
        try:
            resp = wait_future(client.call_async(req), max(0.1, end - time.monotonic()), client)
        except TimeoutError:
            res.status, res.error = ToolResult.STATUS_TIMEOUT, f"no answer within {timeout:g} s"
            return res
        except ServiceCallError as exc:
            res.status, res.error = ToolResult.STATUS_FAILED, f"{spec.service_name}: {exc}"
            return res
        res.latency_ms = (time.perf_counter() - t0) * 1e3
        if not resp.success:
            res.status, res.error = ToolResult.STATUS_FAILED, resp.error
            return res
        res.status, res.content_json = ToolResult.STATUS_OK, resp.result_json
        return res

    # ------------------------------------------------------------------ action
    def _metrics(self, task: str, step: int, start, t0: float, finish: str) -> InferenceMetrics:
        if self.delay_s:
            time.sleep(self.delay_s)
        ms = (time.perf_counter() - t0) * 1e3
        m = InferenceMetrics(task_id=task, request_id=f"{task}/{step}", step=step, engine="gold", backend="gold",
                             model="gold", power_mode="", prompt_tokens=0, cached_prompt_tokens=0,
                             decode_tokens=0, ttft_ms=ms, prefill_tokens_per_s=math.nan,
                             decode_tokens_per_s=math.nan, total_ms=ms, energy_j=math.nan,
                             finish_reason=finish)
        m.header.stamp = start
        m.end_stamp = self.get_clock().now().to_msg()
        self.pub_metrics.publish(m)
        return m

    def _execute(self, goal_handle) -> RunTask.Result:
        clients: dict[str, Any] = {}
        try:
            return self._execute_goal(goal_handle, clients)
        finally:
            for client in clients.values():
                self.destroy_client(client)

    def _execute_goal(self, goal_handle, clients: dict[str, Any]) -> RunTask.Result:
        self._recorder.wait((self.pub_metrics, self.pub_calls), self._recorded_names)  # before any message
        goal = goal_handle.request
        result = RunTask.Result()
        result.messages = list(goal.messages)
        case_id, turn = parse_task_id(goal.task_id)
        try:   # the suite says what its gold answer is (no guessing the suite from the case id)
            answer = get_suite(self.suite_name).gold_answer(case_id, turn, [t.name for t in goal.tools],
                                                            self.corrupt or case_id in self.corrupt_ids)
        except Exception as exc:  # noqa: BLE001 - unknown case: a failed goal, not a dead node
            goal_handle.succeed()
            result.success, result.error = False, f"gold answer unavailable for {goal.task_id!r}: {exc}"
            return result
        specs = {t.name: t for t in goal.tools}
        records: list[ToolCallRecord] = []
        metrics: list[InferenceMetrics] = []
        if answer.execute and goal.execute_tools:
            if not self._execute_calls(goal_handle, goal, result, answer.calls, specs, records, metrics, clients):
                return result
            result.final_text = answer.text
            if answer.text:
                result.messages.append(ChatMessage(role="assistant", content=answer.text))
        else:
            start, t0 = self.get_clock().now().to_msg(), time.perf_counter()
            call_msgs = [self._call(name, args, 0) for name, args in answer.calls]
            metrics.append(self._metrics(goal.task_id, 0, start, t0, "tool_calls" if call_msgs else "stop"))
            for call in call_msgs:
                rec = ToolCallRecord(task_id=goal.task_id, call=call,
                                     result=ToolResult(call_id=call.id, name=call.name, latency_ms=math.nan,
                                                       status=ToolResult.STATUS_OK))
                self.pub_calls.publish(rec)
                records.append(rec)
            if call_msgs:
                result.messages.append(ChatMessage(role="assistant", content="", tool_calls=call_msgs))
            else:
                result.final_text = answer.text
                result.messages.append(ChatMessage(role="assistant", content=result.final_text))
        result.tool_calls = records
        result.metrics = metrics
        result.success = True
        goal_handle.succeed()
        return result

    def _execute_calls(self, goal_handle, goal, result: RunTask.Result, calls, specs: dict,
                       records: list, metrics: list, clients: dict[str, Any]) -> bool:
        """Run gold ``calls`` one per step through the goal's InvokeTool services,
        recording each call, its result and a closing "stop" step; False (and the
        goal canceled) when a cancel arrives between calls."""
        for step, (name, args) in enumerate(calls):
            if goal_handle.is_cancel_requested:
                goal_handle.canceled()
                result.success, result.error = False, "canceled"
                return False
            start, t0 = self.get_clock().now().to_msg(), time.perf_counter()
            call = self._call(name, args, step)
            metrics.append(self._metrics(goal.task_id, step, start, t0, "tool_calls"))
            tool_result = self._invoke(specs.get(name), call.id, call.arguments_json, clients)
            rec = ToolCallRecord(task_id=goal.task_id, call=call, result=tool_result)
            self.pub_calls.publish(rec)
            records.append(rec)
            result.messages.append(ChatMessage(role="assistant", content="", tool_calls=[call]))
            content = json.loads(tool_result.content_json) if tool_result.content_json else tool_result.error
            result.messages.append(ChatMessage(role="tool", name=name, tool_call_id=call.id,
                                               content=content if isinstance(content, str) else json.dumps(content)))
        start, t0 = self.get_clock().now().to_msg(), time.perf_counter()
        metrics.append(self._metrics(goal.task_id, len(calls), start, t0, "stop"))
        return True

    def _call(self, name: str, args: dict[str, Any], step: int) -> ToolCall:
        with self._clients_lock:
            self._call_seq += 1
            seq = self._call_seq
        call = ToolCall(id=f"gold-{seq}", name=name, arguments_json=json.dumps(args, ensure_ascii=False),
                        step=step)
        call.header.stamp = self.get_clock().now().to_msg()
        return call


def main(args=None) -> int:
    """Run the node; exit status 2 (after one logged line) on a bad parameter."""
    try:
        return run_node(GoldAgentNode, args if args is not None else sys.argv)
    except GoldAgentConfigError:
        return 2


if __name__ == "__main__":
    sys.exit(main())
