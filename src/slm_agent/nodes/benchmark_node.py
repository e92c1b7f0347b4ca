"""Benchmark node: replays a suite's cases through the agent's RunTask action and scores them.

Node ``benchmark`` (relative names, so ``__ns:=/x`` moves its topics).  What
a case is, what each goal carries, which tools run and how the answers are
scored belong to the suite (:class:`slm_agent.bench.suite.Suite`, found by
the ``suite`` parameter; BFCL: :mod:`slm_agent.bench.bfcl.suite`).  The node
creates the ROS interfaces, converts messages, and delegates: playing a case
to :func:`slm_agent.bench.play.play_case`, the run directory to
:class:`slm_agent.bench.session.RunSession`.

Per case
    for each turn the suite's episode asks for: publishes it on
    ``~/scenarios`` (slm_agent/msg/Scenario) and sends it as a RunTask goal
    to ``agent_action`` (task id ``<case_id>#<turn>``); tools the suite must
    execute are ``slm_agent/srv/InvokeTool`` services under
    ``tool_namespace`` (default ``/<suite>``, one fresh sub-namespace per
    case, never served twice) in this process
    (:class:`~slm_agent.ros.tool_services.ToolServiceHost`), so every such
    tool call crosses DDS.

    Scores with the suite's own checker; integrates ``power_topic``
    (slm_agent/msg/PowerState, :class:`~slm_agent.telemetry.energy.PowerLog`,
    gaps over ``energy_max_gap_s`` not bridged) over the case window for
    ``energy_j`` (NaN when power is not measured, or not for the whole window)
    and fills each LLM call's ``energy_j`` the agent left NaN the same way; publishes
    ``~/results`` (slm_agent/msg/ScenarioResult); appends one line to
    ``<output_dir>/results.jsonl`` (flush + fsync); logs a progress line
    (done/total, accuracy so far, ETA).

    ``concurrency`` > 1 keeps that many cases in flight at once (one thread
    each, pulling the next case from the todo list; for an agent on a server
    backend with ``max_parallel_goals`` as large): results.jsonl gets each
    case once, in completion order; per-call metrics stay per call, but a
    case's ``energy_j`` is NaN (overlapping cases share the power samples).
    Refused (exit 2) for cases whose tools this node hosts
    (:meth:`~slm_agent.bench.suite.Suite.hosts_tools`: BFCL multi-turn, tau2).

Run
    Parameters are checked before anything is written (as declared in
    :class:`slm_agent.settings.BenchmarkSettings`: strategy and serialization
    against the agent's registries, limit >= 0, max_steps >= 0,
    case_timeout_s > 0, ...; then the categories against the suite).  ``<output_dir>`` is locked for
    the node's lifetime (``run.lock``, :class:`slm_agent.bench.rundir.RunLock`;
    a lock handed down by ``slm-agent bench`` is adopted): a second writer is
    refused naming the holder's pid.  ``<output_dir>/run.json`` records the
    configuration, model profile, power mode, start time(s) and versions.  A
    rerun with the same ``output_dir`` resumes: case ids already in
    results.jsonl are skipped; a damaged line (a torn last line from a kill,
    or a corrupt line anywhere) is moved to ``results.quarantine.jsonl`` and
    only its case runs again.  The model, strategy, serialization, suite and
    max_steps must match the first run; the case set (categories, ids, limit)
    too unless ``allow_different_run``.  At the end the node logs a
    per-category summary and its ``main`` returns (exit 0; 2 = bad
    parameters, an unusable or locked output_dir or a mismatching resume;
    3 = the agent was unreachable, nothing recorded for the unfinished case;
    130 = interrupted, SIGINT/SIGTERM).

Parameters: :class:`slm_agent.settings.BenchmarkSettings` (declared there with
defaults, bounds and choices; documented in ``config/benchmark.yaml``).
"""
from __future__ import annotations

import math
import random
import sys
import threading
import time
from typing import Any, Optional

import rclpy
from action_msgs.msg import GoalStatus
from rclpy.callback_groups import MutuallyExclusiveCallbackGroup, ReentrantCallbackGroup
from rclpy.node import Node
from rclpy.qos import QoSProfile, ReliabilityPolicy
from rclpy.signals import SignalHandlerOptions

from slm_agent.action import RunTask
from slm_agent.bench import rundir, runner
from slm_agent.bench.play import AgentUnavailable, Interrupted, play_case
from slm_agent.bench.results import RESULTS_FILE, msg_to_dict
from slm_agent.bench.scenario import Scenario
from slm_agent.bench.session import RunSession
from slm_agent.bench.suite import CaseContext, Suite, Turn, TurnOutcome, get_suite, loop_protocol
from slm_agent.msg import PowerState, ScenarioResult, ToolSpec
from slm_agent.msg import Scenario as ScenarioMsg
from slm_agent.ros import agent_convert as conv
from slm_agent.ros.clients import RaceFreeActionClient, wait_future
from slm_agent.ros.matching import matched_counts, wait_for_subscriptions
from slm_agent.ros.params import declare_settings, read_settings
from slm_agent.ros.runtime import SpinThread, shutdown_node
from slm_agent.settings import BenchmarkSettings, SettingsError
from slm_agent.telemetry.energy import PowerLog, stamp_seconds

NODE_NAME = "benchmark"
EXIT_OK, EXIT_CONFIG, EXIT_AGENT, EXIT_INTERRUPTED = 0, 2, 3, 130
#: the output could not be written (disk full, read-only, quota): README "Exit status"
EXIT_WRITE = 4


def write_failure_line(exc: OSError, where: str) -> str:
    """One line naming the path and the OS error (``cannot write PATH: No space left on device``)."""
    return f"cannot write {exc.filename or where}: {exc.strerror or exc}"
_STATUS = {GoalStatus.STATUS_ABORTED: "ABORTED", GoalStatus.STATUS_CANCELED: "CANCELED",
           GoalStatus.STATUS_UNKNOWN: "UNKNOWN"}


class BenchmarkConfigError(RuntimeError):
    pass


def _tool_msgs(dicts: list[dict[str, Any]]) -> list[ToolSpec]:
    return [ToolSpec(**d) for d in dicts]


class BenchmarkNode(Node):
    def __init__(self, **kwargs: Any) -> None:
        super().__init__(NODE_NAME, **kwargs)
        try:
            declare_settings(self, BenchmarkSettings)
            self.cfg = runner.BenchConfig(read_settings(self, BenchmarkSettings))
        except SettingsError as exc:
            self.get_logger().error(f"benchmark not started: bad parameters: {'; '.join(exc.problems)}")
            raise BenchmarkConfigError(str(exc)) from exc
        self.min_subscribers = self.cfg.min_subscribers
        self.subscriber_wait_s = self.cfg.subscriber_wait_s
        self.power_wait_s = self.cfg.power_wait_s
        self.allow_different_run = self.cfg.allow_different_run
        self.suite: Optional[Suite] = None
        self.protocol = ""                      # loop rules every goal carries (set with the suite)
        self.world: Any = None                  # the suite's world for this run (Suite.make_world), if any
        self.session: Optional[RunSession] = None
        random.seed(self.cfg.seed)

        self._stop = threading.Event()
        self._t_start = time.monotonic()
        self.exit_code = EXIT_OK
        self.power = PowerLog(max_gap_s=self.cfg.energy_max_gap_s, horizon_s=7200.0)

        self._cb_group = ReentrantCallbackGroup()
        self.pub_scenarios = self.create_publisher(ScenarioMsg, "~/scenarios", 10)
        self.pub_results = self.create_publisher(ScenarioResult, "~/results", 10)
        self.create_subscription(PowerState, self.cfg.power_topic, self._on_power,
                                 QoSProfile(depth=100, reliability=ReliabilityPolicy.RELIABLE),
                                 callback_group=MutuallyExclusiveCallbackGroup())
        self.action = RaceFreeActionClient(self, RunTask, self.cfg.agent_action, callback_group=self._cb_group)
        self._tool_host = None
        self._in_flight: dict[int, Any] = {}    # goal handles awaiting their result, by id() (close() cancels them)
        self._in_flight_lock = threading.Lock()
        self.get_logger().info(
            f"benchmark: suite={self.cfg.suite} categories={','.join(self.cfg.categories)} "
            f"ids={len(self.cfg.ids)} limit={self.cfg.limit} strategy={self.cfg.strategy} "
            f"serialization={self.cfg.serialization} chat_format={self.cfg.chat_format or '(agent)'} "
            f"constrained={self.cfg.constrained or '(agent)'} model={self.cfg.model or '?'} "
            f"agent={self.cfg.agent_action} output_dir={self.cfg.output_dir} concurrency={self.cfg.concurrency}")

    # ------------------------------------------------------------------ power
    def _on_power(self, msg: PowerState) -> None:
        self.power.add(stamp_seconds(msg.header.stamp.sec, msg.header.stamp.nanosec), msg.total_power_w,
                       msg.total_available, msg.power_mode)

    @property
    def power_mode(self) -> str:
        return self.cfg.power_mode or self.power.power_mode

    def _now_s(self) -> float:
        return self.get_clock().now().nanoseconds / 1e9

    def _energy(self, t0: float, t1: float) -> tuple[float, float]:
        """(joules or NaN, covered seconds) over [t0, t1] on the node clock."""
        if not self.power.measured or not (t1 >= t0):
            return math.nan, 0.0
        # the sample after t1 may still be in flight: wait up to ~1 s for it
        end = time.monotonic() + 1.0
        while time.monotonic() < end and not self.power.covers(t1) and not self._stop.is_set():
            time.sleep(0.05)
        return self.power.estimate(t0, t1)

    def _fill_call_energy(self, metrics: list) -> None:
        """Each call's ``energy_j`` the agent left NaN, from this node's power samples."""
        for m in metrics:
            if not math.isfinite(m.energy_j):
                joules = self.power.joules(stamp_seconds(m.header.stamp.sec, m.header.stamp.nanosec),
                                           stamp_seconds(m.end_stamp.sec, m.end_stamp.nanosec))
                if math.isfinite(joules):
                    m.energy_j = joules

    # ------------------------------------------------------------------ waiting
    def request_stop(self) -> None:
        self._stop.set()

    def _interrupted(self) -> bool:
        return self._stop.is_set() or not self.context.ok()

    def _wait(self, future, timeout_s: float):
        """Result of an rclpy future (:func:`~slm_agent.ros.clients.wait_future`, never spins);
        raises TimeoutError, or Interrupted on SIGINT/SIGTERM."""
        try:
            return wait_future(future, timeout_s, interrupted=self._interrupted)
        except InterruptedError:
            raise Interrupted() from None

    # ------------------------------------------------------------------ the run
    def run(self) -> int:
        """Run every case not yet in results.jsonl; returns the exit status."""
        problems = runner.validate_config(self.cfg)
        for name, text in problems:
            self.get_logger().error(f"benchmark not started: bad parameter {name}: {text}")
        if problems:
            return EXIT_CONFIG
        try:
            self.suite = get_suite(self.cfg.suite).configure(self.cfg.settings.model_dump())
            self.protocol = loop_protocol(self.suite, self.cfg.protocol)
            self.world = self.suite.make_world()   # the run's world, read and reset by each case
            self.get_logger().info(f"loop protocol: {self.protocol} (protocol={self.cfg.protocol}; the suite's "
                                   f"own: {self.suite.protocol})")
            scenarios = self.suite.select([] if self.cfg.ids else self.cfg.categories, self.cfg.ids, self.cfg.limit)
            if not scenarios:
                raise BenchmarkConfigError("no case selected")
            refused = runner.concurrency_problem(self.cfg, self.suite, scenarios)
            if refused:
                raise BenchmarkConfigError(f"bad parameter concurrency: {refused}")
            self.session = RunSession(self.cfg, self.suite, scenarios, allow_different_run=self.allow_different_run,
                                      warn=self.get_logger().warning)
            self.session.lock_dir("benchmark_node")
            self._wait_for_power()
            self.session.open(self.power_mode)
        except (ValueError, KeyError, BenchmarkConfigError, rundir.RunDirError) as exc:
            self.get_logger().error(f"benchmark not started: {exc.args[0] if exc.args else exc}")
            return EXIT_CONFIG
        except OSError as exc:
            self.get_logger().error(f"benchmark not started: {exc.filename or self.cfg.output_dir}: "
                                    f"{exc.strerror or exc}")
            return EXIT_CONFIG
        todo = self.session.todo
        if self.session.already_done:
            self.get_logger().info(f"resuming {self.cfg.output_dir}: {self.session.already_done} of "
                                   f"{len(scenarios)} cases already done")
        if todo:
            self.get_logger().info(f"waiting for the agent at {self.cfg.agent_action} ...")
            if not self._wait_for_agent():
                if self._interrupted():
                    return EXIT_INTERRUPTED
                self.get_logger().error(f"no RunTask action server at {self.cfg.agent_action} "
                                        f"after {self.cfg.agent_wait_s:.0f} s")
                return EXIT_AGENT
        self._wait_for_subscribers()
        if self.cfg.concurrency > 1:
            self.get_logger().info(f"concurrency {self.cfg.concurrency}: up to {self.cfg.concurrency} cases in "
                                   "flight at once; case energy_j is NaN (overlapping cases cannot be told "
                                   "apart in the power samples), per-call metrics stay per call")
        try:
            if self.cfg.concurrency > 1:
                self._run_concurrent(todo)
            else:
                for sc in todo:
                    if self._interrupted():
                        return EXIT_INTERRUPTED
                    self._finish_case(*self.run_case(sc))
        except Interrupted:
            self.get_logger().warning("interrupted; finished cases are in results.jsonl, rerun to resume")
            return EXIT_INTERRUPTED
        except AgentUnavailable as exc:
            self.get_logger().error(f"agent unavailable: {exc}; rerun with the same output_dir to resume")
            return EXIT_AGENT
        except OSError as exc:   # disk full, read-only: every finished case is already on disk
            self.get_logger().error(write_failure_line(exc, self.cfg.output_dir)
                                    + "; finished cases are kept, free space and rerun to resume")
            return EXIT_WRITE
        self._flush_publishers()
        self.get_logger().info("benchmark finished: " + f"{self.cfg.output_dir}/{RESULTS_FILE}\n"
                               + "\n".join(self.session.summary_lines()))
        return EXIT_OK

    def _finish_case(self, record: dict[str, Any], result_msg: ScenarioResult) -> None:
        assert self.session is not None
        line = self.session.append(record)   # thread-safe: concurrent cases finish on their own threads
        self.pub_results.publish(result_msg)
        self.get_logger().info(line)

    def _run_concurrent(self, todo: list[Scenario]) -> None:
        """Up to ``concurrency`` cases in flight (one thread each, taking the next case in order);
        each finished case is written at once.  After a case raised Interrupted or
        AgentUnavailable no new case starts; the cases in flight end, then it is re-raised."""
        pending = iter(todo)
        lock = threading.Lock()
        failures: list[BaseException] = []
        self._tools()   # made once here, not raced by the workers

        def worker() -> None:
            while True:
                with lock:
                    sc = None if failures or self._interrupted() else next(pending, None)
                if sc is None:
                    return
                try:
                    record, result_msg = self.run_case(sc)
                    self._finish_case(record, result_msg)
                except BaseException as exc:  # noqa: BLE001 - re-raised on the node's thread
                    with lock:
                        failures.append(exc)
                    return

        threads = [threading.Thread(target=worker, name=f"bench-case-{i}", daemon=True)
                   for i in range(min(self.cfg.concurrency, len(todo)))]
        for t in threads:
            t.start()
        for t in threads:
            while t.is_alive():
                t.join(0.2)
        if failures:
            raise next((f for f in failures if isinstance(f, Interrupted)), failures[0])
        if self._interrupted():
            raise Interrupted()

    def _wait_for_power(self) -> None:
        """Wait (up to power_wait_s after node start, discovery takes seconds) for the first
        power sample, so the first case has energy and run.json the power-mode label; 2 s more
        if a publisher is known by then.  Without any power publisher this costs power_wait_s."""
        end = self._t_start + self.power_wait_s
        extended = False
        while not self._interrupted():
            if len(self.power) > 0:
                return
            if time.monotonic() > end:
                if extended or self.count_publishers(self.cfg.power_topic) == 0:
                    if self.count_publishers(self.cfg.power_topic) == 0:
                        self.get_logger().info(f"no publisher on {self.cfg.power_topic}: energy not measured")
                    return
                end, extended = time.monotonic() + 2.0, True
            time.sleep(0.05)

    def _wait_for_subscribers(self) -> None:
        pubs = (self.pub_scenarios, self.pub_results)
        if not wait_for_subscriptions(pubs, self.min_subscribers, self.subscriber_wait_s, self._interrupted) \
                and not self._interrupted():
            self.get_logger().warning(f"only {matched_counts(pubs)} subscriptions matched on ~/scenarios, "
                                      f"~/results after {self.subscriber_wait_s:g} s; starting anyway")

    def _flush_publishers(self) -> None:
        """Wait until subscribers (a recorder) acknowledged everything, so exiting loses nothing."""
        from rclpy.duration import Duration

        for pub in (self.pub_scenarios, self.pub_results):
            try:
                pub.wait_for_all_acked(Duration(seconds=5.0))
            except Exception:  # noqa: BLE001 - best effort
                pass

    def _wait_for_agent(self) -> bool:
        end = time.monotonic() + self.cfg.agent_wait_s
        while time.monotonic() < end:
            if self._interrupted():
                return False
            if self.action.server_is_ready():
                return True
            time.sleep(0.1)
        return self.action.server_is_ready()

    # ------------------------------------------------------------------ one case
    def _send_goal(self, goal: RunTask.Goal, deadline: float):
        """(result or None, error text); raises AgentUnavailable / Interrupted."""
        if not self.action.server_is_ready():
            if not self._wait_ready(min(30.0, max(1.0, deadline - time.monotonic()))):
                raise AgentUnavailable(f"action server {self.cfg.agent_action} went away")
        try:
            handle = self._wait(self.action.send_goal_async(goal), min(30.0, max(1.0, deadline - time.monotonic())))
        except TimeoutError:
            raise AgentUnavailable(f"goal {goal.task_id} was not acknowledged") from None
        if not handle.accepted:
            return None, f"goal {goal.task_id} rejected by the agent"
        with self._in_flight_lock:
            self._in_flight[id(handle)] = handle   # ClientGoalHandle is not hashable
        try:
            wrapped = self._wait(handle.get_result_async(), max(0.0, deadline - time.monotonic()))
        except TimeoutError:
            try:
                self._wait(handle.cancel_goal_async(), 5.0)
            except (TimeoutError, Interrupted, Exception):  # noqa: BLE001 - best effort
                pass
            return None, "timeout"
        finally:
            with self._in_flight_lock:
                self._in_flight.pop(id(handle), None)
        result = wrapped.result
        if wrapped.status != GoalStatus.STATUS_SUCCEEDED and not result.error:
            result.error = f"goal ended with status {_STATUS.get(wrapped.status, wrapped.status)}"
            result.success = False
        return result, ""

    def _wait_ready(self, timeout_s: float) -> bool:
        end = time.monotonic() + timeout_s
        while time.monotonic() < end and not self._interrupted():
            if self.action.server_is_ready():
                return True
            time.sleep(0.1)
        return self.action.server_is_ready()

    def _goal(self, sc: Scenario, turn: Turn) -> RunTask.Goal:
        return RunTask.Goal(task_id=runner.task_id(sc.case_id, turn.index),
                            messages=conv.chat_messages(turn.messages),
                            tools=_tool_msgs(turn.tools), tool_set="", strategy=self.cfg.strategy,
                            serialization=self.cfg.serialization, chat_format=self.cfg.chat_format,
                            constrained=self.cfg.constrained, max_steps=self.cfg.max_steps,
                            allow_confirmation=False, execute_tools=turn.execute_tools, protocol=self.protocol)

    def _publish_scenario(self, sc: Scenario, turn: Turn) -> None:
        msg = ScenarioMsg(run_id=self.cfg.run_id, suite=sc.suite, category=sc.category, case_id=sc.case_id,
                          turn=turn.index, messages=conv.chat_messages(turn.messages), tools=_tool_msgs(turn.tools))
        msg.header.stamp = self.get_clock().now().to_msg()
        self.pub_scenarios.publish(msg)

    def _send_turn(self, sc: Scenario, turn: Turn, deadline: float) -> tuple[Optional[TurnOutcome], str]:
        res, err = self._send_goal(self._goal(sc, turn), deadline)
        if res is None:
            return None, err
        return TurnOutcome(turn.index, bool(res.success), res.error, res.final_text,
                           [msg_to_dict(m) for m in res.messages], [msg_to_dict(r) for r in res.tool_calls],
                           source=res, force_terminated=bool(res.force_terminated)), ""

    def _tools(self):
        """The tool host of this node (InvokeTool services under tool_namespace), made on first use."""
        if self._tool_host is None:
            from slm_agent.ros.tool_services import ToolServiceHost

            # fresh names per case: a service re-created under its old name loses requests
            # (tool_services module docstring)
            self._tool_host = ToolServiceHost(self, self.cfg.tool_namespace or f"/{self.cfg.suite}",
                                              fresh_names=True)
        return self._tool_host

    def run_case(self, sc: Scenario) -> tuple[dict[str, Any], ScenarioResult]:
        assert self.suite is not None and self.session is not None
        started_at = time.time()
        t0_wall = time.monotonic()
        deadline = t0_wall + self.cfg.case_timeout_s
        t0 = self._now_s()
        ctx = CaseContext(tool_host=self._tools(), tool_timeout_s=self.cfg.tool_timeout_s, seed=self.cfg.seed,
                          protocol=self.protocol, world=self.world)
        play = play_case(self.suite, sc, ctx, lambda turn: self._send_turn(sc, turn, deadline),
                         lambda turn: self._publish_scenario(sc, turn), case_timeout_s=self.cfg.case_timeout_s,
                         log_error=self.get_logger().error)
        result = play.result
        wall = time.monotonic() - t0_wall
        t1 = self._now_s()
        # cases in flight together share the power samples: a case's own energy is not attributable
        energy_j, covered = self._energy(t0, t1) if self.cfg.concurrency == 1 else (math.nan, 0.0)
        metrics_msgs = [m for o in play.outcomes if o.source is not None for m in o.source.metrics]
        call_msgs = [r.call for r in play.counted_sources("tool_calls")]
        self._fill_call_energy(metrics_msgs)
        metrics = [msg_to_dict(m) for m in metrics_msgs]
        power_mode = self.power_mode
        record = play.record(self.cfg, power_mode=power_mode, metrics=metrics, wall_time_s=wall,
                             energy_j=energy_j, energy_covered_s=covered, started_at=started_at)
        msg = ScenarioResult(run_id=self.cfg.run_id, suite=sc.suite, category=sc.category, case_id=sc.case_id,
                             model=self.cfg.model, power_mode=power_mode, valid=bool(result.valid),
                             passed=bool(result.passed), error_type=result.error_type, error=result.error,
                             raw_output=result.raw_output, calls=call_msgs, metrics=metrics_msgs,
                             wall_time_s=float(wall), energy_j=float(energy_j))
        msg.header.stamp = self.get_clock().now().to_msg()
        return record, msg

    # ------------------------------------------------------------------ shutdown
    def close(self) -> None:
        self._stop.set()
        with self._in_flight_lock:
            handles = list(self._in_flight.values())
        for handle in handles if self.context.ok() else ():
            try:
                handle.cancel_goal_async()
            except Exception:  # noqa: BLE001 - best effort on shutdown
                pass
        if self._tool_host is not None:
            try:
                self._tool_host.clear()
            except Exception:  # noqa: BLE001
                pass
        if self.suite is not None:
            try:   # the run's end in this process: the suite's shared engines (tau2's user) go
                self.suite.close()
            except Exception as exc:  # noqa: BLE001 - a failing release must not lose the results
                self.get_logger().error(f"closing the {self.cfg.suite} suite: {exc}")
        if self.session is not None:
            self.session.close()


def main(args=None) -> int:
    """Run the benchmark to the end (or until SIGINT/SIGTERM) and return its exit status."""
    rclpy.init(args=list(args) if args is not None else sys.argv,
               signal_handler_options=SignalHandlerOptions.ALL)
    node = None
    spin = None
    code = EXIT_CONFIG
    try:
        node = BenchmarkNode()
        spin = SpinThread(node)
        code = node.run()
    except BenchmarkConfigError:
        code = EXIT_CONFIG
    except KeyboardInterrupt:
        code = EXIT_INTERRUPTED
    except OSError as exc:   # a write outside the case loop (run.json at the end): documented, one line
        print(f"benchmark: {write_failure_line(exc, 'the output directory')}", file=sys.stderr, flush=True)
        code = EXIT_WRITE
    finally:
        try:
            shutdown_node(node, spin)
        except OSError as exc:
            print(f"benchmark: {write_failure_line(exc, 'the output directory')}", file=sys.stderr, flush=True)
            code = code or EXIT_WRITE
    return code


if __name__ == "__main__":
    sys.exit(main())
