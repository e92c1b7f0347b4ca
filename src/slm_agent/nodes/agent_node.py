"""Agent node: a lifecycle adapter that runs :class:`~slm_agent.agent.loop.AgentLoop` behind ROS 2.

Node ``agent`` (relative names: ``--ros-args -r __ns:=/robot`` gives
``/robot/agent/...``).  Everything the agent *does* lives in plain Python
(``slm_agent.agent``, ``slm_agent.engines``); this node loads it, maps goals
and results to messages (:mod:`slm_agent.ros.agent_convert`) and publishes
what was measured.  The pieces it wires together: goal checks
(:mod:`slm_agent.agent.goal_plan`), goal admission and FIFO
(:mod:`slm_agent.ros.goal_queue`), tool clients
(:mod:`slm_agent.ros.tool_router`), feedback batching
(:mod:`slm_agent.agent.feedback`, :mod:`slm_agent.ros.goal_feedback`),
per-call metrics (:mod:`slm_agent.engines.metered`,
:mod:`slm_agent.agent.metrics_queue`) and energy
(:class:`slm_agent.telemetry.energy.PowerLog`).

Lifecycle (``rclpy.lifecycle``)
    ``configure`` reads the parameters, builds the prompt strategy (so an
    unknown ``strategy``/``serialization``/``chat_format`` fails here),
    loads the tool set (``tool_set``: a name under ``config/tool_sets/`` or a
    YAML path; empty = no tools of its own, goals bring theirs), loads the
    model profile and engine (``model``; with ``fallback_model`` a second
    engine, the cascade's, issue 26: ``agent/cascade.py``) and creates one
    service client per tool.  Any problem logs ONE error naming it and returns FAILURE: the node
    stays unconfigured and alive (fix the parameter, configure again).
    ``activate`` starts serving goals and enables the ``~/metrics`` and
    ``~/tool_calls`` publishers; ``deactivate`` aborts a running goal
    ("agent deactivated") and rejects new ones; ``cleanup``/``shutdown``
    close the engine and destroy the clients.  Configure-time parameters
    can only be changed while unconfigured.  With ``autostart:=true`` the
    node configures and activates itself at startup and exits with status 2
    (after the error) if that fails.

Action ``~/run_task`` (slm_agent/action/RunTask)
    Rejected unless active.  Goals run one at a time, in order (the engine
    holds one KV cache; ``max_parallel_goals`` > 1 runs that many at once,
    on a server backend or a llama.cpp model with that many contexts --
    engines/llama_pool.py; refused at configure for tensorrt_llm and
    GPU-offloaded llama.cpp), on one dedicated worker thread (one per parallel goal): llama.cpp's OpenMP
    runtime keeps a thread team per calling thread, so calling it from
    whichever executor thread took the goal would grow a team per executor
    thread and change its spin-wait behaviour from goal to goal.  At most
    ``max_queued_goals`` are accepted at once (running + waiting); more are
    rejected.  Waiting goals are a plain FIFO (``handle_accepted_callback``)
    and hold no executor thread: only the running goal's execute callback
    occupies one, so however many goals are queued, the executor always has
    threads left for tool-service responses, cancel requests and lifecycle
    calls.  A dispatcher thread starts the next goal when one ends and ends
    at once a waiting goal that is cancelled (or every waiting goal on
    deactivate).  Every goal request gets an answer: the goal, result and
    cancel services keep all requests (KEEP_ALL), so a burst larger than
    rclpy's default depth of 10 is answered (accepted or rejected) instead
    of silently dropped.
    Goal fields: ``messages`` and/or ``prompt``; ``tool_set`` (""
    = the loaded one, else a name/path loaded for this goal); ``tools``
    (extra ToolSpecs; one with the name of a set tool replaces it; empty
    ``service_name`` = a tool that cannot be executed, for
    ``execute_tools=false`` scoring); ``strategy``/``serialization``/
    ``chat_format`` (raw | chat) and ``constrained`` (on | off) ("" = node
    default; unknown -> that goal is aborted with the valid names in
    ``error``; :mod:`slm_agent.agent.goal_options`);
    ``max_steps`` (0 = node default); ``allow_confirmation``;
    ``execute_tools`` (false: the first response's calls come back
    unexecuted, status REFUSED "not executed"); ``protocol`` (loop rules,
    :mod:`slm_agent.agent.protocol`: "" = robot, bfcl; unknown, or a
    max_steps that the protocol fixes itself -> aborted; the result's
    ``force_terminated`` says the protocol's step limit ended it).  Tools of type
    ``slm_agent/srv/InvokeTool`` get the validated arguments JSON passed
    through (see :mod:`slm_agent.ros.tool_invoker`).

    Feedback: ``KIND_TEXT`` deltas (the first of each LLM call at once, then
    batched by ``feedback_batch``/``feedback_max_delay_s``), ``KIND_TOOL_CALL``
    (``tool_call.call`` set; its ``result`` is a placeholder: status REFUSED,
    error "pending") and ``KIND_TOOL_RESULT`` (call and result).
    Result: ``success``, ``final_text``, ``error``, ``tool_calls``
    (ToolCallRecord per call), ``metrics`` (InferenceMetrics per LLM call),
    ``messages`` (transcript), ``chat_format``/``constrained`` (in force).  Status SUCCEEDED when the agent finished
    (``success``), ABORTED otherwise (``error`` says why), CANCELED after a
    cancel request (generation stops at the next streamed chunk).

Topics / services
    ``~/metrics`` (InferenceMetrics, one per LLM call; header stamp = request
    start and ``end_stamp`` in this node's clock; ``power_mode`` from the
    latest ``telemetry_topic`` message; ``energy_j`` integrated from those
    PowerState messages over the call window, NaN when power is not measured
    or samples do not cover the window).  A ~/metrics message waits up to
    ``metrics_energy_wait_s`` for the power sample after the call's end, so
    its energy is usually known; the action result does not wait (its
    ``energy_j`` is NaN when the covering sample had not arrived yet).
    ``~/tool_calls`` (ToolCallRecord per executed or returned call).
    ``~/list_tools`` (slm_agent/srv/ListTools): the loaded set, or a named set.
"""
from __future__ import annotations

import concurrent.futures as cf
import math
import os
import sys
import threading
import time
from dataclasses import dataclass
from typing import Any, Optional, Sequence

import rclpy
from rcl_interfaces.msg import SetParametersResult
from rclpy.action import ActionServer, CancelResponse, GoalResponse
from rclpy.callback_groups import MutuallyExclusiveCallbackGroup, ReentrantCallbackGroup
from rclpy.executors import ExternalShutdownException, MultiThreadedExecutor
from rclpy.lifecycle import LifecycleNode, LifecycleState, TransitionCallbackReturn
from rclpy.qos import HistoryPolicy, QoSProfile, ReliabilityPolicy
from rclpy.signals import SignalHandlerOptions

from slm_agent.action import RunTask
from slm_agent.agent.goal_options import switch_text
from slm_agent.agent.goal_plan import GoalError, GoalPlan, GoalPlanner, load_planner
from slm_agent.agent.cascade import Cascade, CascadePolicy
from slm_agent.agent.loop import AgentLoop
from slm_agent.agent.metrics_queue import MetricsQueue
from slm_agent.engines import create_engine, parallel_calls_problem
from slm_agent.engines.base import CallMetrics, ChatRequest, Engine
from slm_agent.engines.metered import MeteredEngine
from slm_agent.msg import InferenceMetrics, PowerState, ToolCallRecord
from slm_agent.profiles import Profile
from slm_agent.ros import agent_convert as conv
from slm_agent.ros.goal_feedback import GoalFeedback
from slm_agent.ros.goal_queue import CancelFlag, GoalQueue
from slm_agent.ros.matching import RecorderGate
from slm_agent.ros.params import declare_settings, read_settings
from slm_agent.ros.runtime import shutdown_node, spin_until_shutdown
from slm_agent.ros.tool_router import ToolRouter
from slm_agent.srv import ListTools
from slm_agent.settings import AgentSettings
from slm_agent.telemetry.energy import PowerLog, stamp_seconds

NODE_NAME = AgentSettings.NODE
#: no power sample for this long (or for ``energy_max_gap_s``, if longer: see
#: ``PowerLog.settled``) means "telemetry is not running": a ~/metrics message stops
#: waiting for its energy.
POWER_STALE_S = 2.0
#: the RunTask goal/result/cancel services keep every request until it is taken:
#: rclpy's default (KEEP_LAST 10) silently drops all but the newest 10 of a
#: burst, leaving their clients waiting forever for an accept or reject.
ACTION_SERVICE_QOS = QoSProfile(history=HistoryPolicy.KEEP_ALL, reliability=ReliabilityPolicy.RELIABLE)


#: settings read at configure: changes are refused unless unconfigured (the rest are live)
_CONFIGURE_TIME = frozenset(d.name for d in AgentSettings.declarations() if not d.live)


class AgentConfigError(RuntimeError):
    """Parameters make the node unable to start (already logged)."""


@dataclass
class _Config:
    """Everything configure built; replaced as a whole, never mutated by goals."""

    profile: Profile
    engine: Engine
    tool_set_label: str
    planner: GoalPlanner
    router: ToolRouter
    feedback_batch: int
    feedback_max_delay_s: float
    metrics_energy_wait_s: float
    max_queued_goals: int
    max_parallel_goals: int
    #: the cascade's fallback engine and policy (agent/cascade.py); None = no fallback_model
    fallback_engine: Optional[Engine] = None
    cascade_policy: Optional[CascadePolicy] = None


class AgentNode(LifecycleNode):
    def __init__(self, **kwargs: Any) -> None:
        super().__init__(NODE_NAME, **kwargs)
        try:
            declare_settings(self, AgentSettings, read_only=False)  # changes refused while configured
        except ValueError as exc:  # SettingsError: names every bad override
            self.get_logger().error(f"bad agent parameters: {exc}")
            self.destroy_node()
            raise AgentConfigError(str(exc)) from exc
        self.autostart = bool(self.get_parameter("autostart").value)
        self._group = ReentrantCallbackGroup()
        self._cfg: Optional[_Config] = None
        self._active = False
        self._abort = threading.Event()        # set while deactivating/cleaning up: running goals stop
        self._goals_cv = threading.Condition()  # _goals_running changes (deactivate waits for 0)
        self._goals_running = 0
        self._worker = cf.ThreadPoolExecutor(max_workers=1, thread_name_prefix="agent-goal")
        self._worker_threads = 1
        self._queue = GoalQueue(lambda: self._active, self._abort, self.get_logger().error)
        self.power: Optional[PowerLog] = None   # built at configure (energy_max_gap_s)
        self._power_sub = None
        self.pub_metrics = None
        self._recorder: Optional[RecorderGate] = None
        self.pub_calls = None
        self._metrics_out = MetricsQueue(self._energy_settled, self._publish_call_metrics,
                                         self.get_logger().warning)
        self._action = ActionServer(self, RunTask, "~/run_task", self._execute,
                                    goal_callback=self._on_goal, cancel_callback=self._on_cancel,
                                    handle_accepted_callback=self._queue.accepted,
                                    goal_service_qos_profile=ACTION_SERVICE_QOS,
                                    result_service_qos_profile=ACTION_SERVICE_QOS,
                                    cancel_service_qos_profile=ACTION_SERVICE_QOS,
                                    callback_group=self._group)
        self._list_srv = self.create_service(ListTools, "~/list_tools", self._on_list_tools,
                                             callback_group=self._group)
        self.add_on_set_parameters_callback(self._on_set_parameters)
        self.get_logger().info(f"agent node up (unconfigured): model={self.get_parameter('model').value!r} "
                               f"tool_set={self.get_parameter('tool_set').value!r}"
                               + (" autostart" if self.autostart else "; waiting for configure"))

    # ------------------------------------------------------------ parameters
    def _on_set_parameters(self, params) -> SetParametersResult:
        if self._cfg is not None:
            frozen = [p.name for p in params if p.name in _CONFIGURE_TIME]
            if frozen:
                return SetParametersResult(
                    successful=False,
                    reason=f"{', '.join(frozen)} take effect at configure; run the cleanup transition first")
        return SetParametersResult(successful=True)

    def _state_label(self) -> str:
        try:
            return str(self._state_machine.current_state[1])
        except Exception:  # noqa: BLE001 - only for log text
            return "unknown"

    # ------------------------------------------------------------- lifecycle
    def on_configure(self, state: LifecycleState) -> TransitionCallbackReturn:
        # Subscribe to power *before* loading the model: discovery then has the
        # load time to complete, so the first call's window is already covered
        # by samples (a subscription made after the load missed the start of
        # the first goal sent right after activation: energy_j NaN).
        try:
            settings = read_settings(self, AgentSettings)
        except ValueError as exc:  # SettingsError: bounds, registry choices
            self.get_logger().error(f"configure failed: {exc}")
            return TransitionCallbackReturn.FAILURE
        self.power = PowerLog(max_gap_s=settings.energy_max_gap_s, horizon_s=3600.0)
        self._power_sub = self.create_subscription(
            PowerState, settings.telemetry_topic, self._on_power, 50,
            callback_group=MutuallyExclusiveCallbackGroup())
        try:
            cfg = self._build_config(settings)
        except Exception as exc:  # noqa: BLE001 - never crash on configure
            text = str(exc) if isinstance(exc, ValueError) else f"{type(exc).__name__}: {exc}"
            self.get_logger().error(f"configure failed: {text}")
            self.destroy_subscription(self._power_sub)
            self._power_sub = None
            return TransitionCallbackReturn.FAILURE
        self.pub_metrics = self.create_lifecycle_publisher(InferenceMetrics, "~/metrics", 50)
        self.pub_calls = self.create_lifecycle_publisher(ToolCallRecord, "~/tool_calls", 50)
        # a recorder started with the node sees every call: the first goal waits for its match
        self._recorder = RecorderGate(settings.min_subscribers, settings.subscriber_wait_s,
                                      self.get_logger().warning)
        if self._worker_threads != cfg.max_parallel_goals:   # no goal runs while unconfigured
            old, self._worker = self._worker, cf.ThreadPoolExecutor(max_workers=cfg.max_parallel_goals,
                                                                    thread_name_prefix="agent-goal")
            self._worker_threads = cfg.max_parallel_goals
            old.shutdown(wait=False)
        self._queue.parallel = cfg.max_parallel_goals
        self._cfg = cfg
        p, o = cfg.planner, cfg.planner.options
        names = ", ".join(t.name for t in p.tools) or "none"
        self.get_logger().info(
            f"configured: model {cfg.profile.name} ({cfg.engine.engine_name}), tool set {cfg.tool_set_label} "
            f"[{names}], strategy={o.strategy} serialization={o.serialization} chat_format={o.chat_format} "
            f"constrained={o.constrained} max_steps={p.max_steps} max_tokens={p.max_tokens} "
            f"max_parallel_goals={cfg.max_parallel_goals}")
        return super().on_configure(state)

    def _build_config(self, s: AgentSettings) -> _Config:
        """Load the tool set, the profile and the engine; create the tool set's clients."""
        planner, label = load_planner(s)
        problem = parallel_calls_problem(planner.profile, s.max_parallel_goals)
        if problem:
            raise ValueError(f"max_parallel_goals={s.max_parallel_goals}: {problem}")
        fb = planner.fallback
        if fb is not None:
            problem = parallel_calls_problem(fb.profile, s.max_parallel_goals)
            if problem:
                raise ValueError(f"fallback_model {s.fallback_model!r}: max_parallel_goals="
                                 f"{s.max_parallel_goals}: {problem}")
        policy = CascadePolicy.from_settings(s.escalate_on, s.escalate_threshold, s.escalate_signal)
        t0 = time.monotonic()
        engine = create_engine(planner.profile, slots=s.max_parallel_goals)
        self.get_logger().info(f"model {planner.profile.name} loaded in {time.monotonic() - t0:.1f} s")
        fallback = None
        if fb is not None:
            t0 = time.monotonic()
            try:
                fallback = create_engine(fb.profile, slots=s.max_parallel_goals)
            except Exception as exc:
                engine.close()
                text = str(exc) if isinstance(exc, ValueError) else f"{type(exc).__name__}: {exc}"
                raise ValueError(f"fallback_model {s.fallback_model!r}: "
                                 + "; ".join(t.strip() for t in text.splitlines() if t.strip())) from exc
            self.get_logger().info(f"fallback model {fb.profile.name} loaded in {time.monotonic() - t0:.1f} s "
                                   f"(escalate_on={','.join(policy.triggers) or 'nothing'}, "
                                   f"{policy.signal} < {policy.threshold:g} for low_confidence)")
        router = ToolRouter(self, self._group)
        try:
            router.prepare(planner.tools, pin=True)
        except Exception:
            router.destroy()
            engine.close()
            if fallback is not None:
                fallback.close()
            raise
        return _Config(profile=planner.profile, engine=engine, tool_set_label=label, planner=planner, router=router,
                       feedback_batch=s.feedback_batch, feedback_max_delay_s=s.feedback_max_delay_s,
                       metrics_energy_wait_s=s.metrics_energy_wait_s, max_queued_goals=s.max_queued_goals,
                       max_parallel_goals=s.max_parallel_goals, fallback_engine=fallback,
                       cascade_policy=policy if fallback is not None else None)

    def on_activate(self, state: LifecycleState) -> TransitionCallbackReturn:
        if self._cfg is None:  # unreachable through the state machine
            return TransitionCallbackReturn.FAILURE
        self._abort.clear()
        self._active = True
        self.get_logger().info(f"active: serving {self.get_fully_qualified_name()}/run_task")
        return super().on_activate(state)

    def on_deactivate(self, state: LifecycleState) -> TransitionCallbackReturn:
        self._active = False
        self._stop_goals("deactivated")
        self.get_logger().info("inactive: new goals are rejected")
        return super().on_deactivate(state)

    def on_cleanup(self, state: LifecycleState) -> TransitionCallbackReturn:
        self._release()
        self.get_logger().info("cleaned up: model and clients released")
        return super().on_cleanup(state)

    def on_shutdown(self, state: LifecycleState) -> TransitionCallbackReturn:
        self._active = False
        self._stop_goals("shutting down")
        self._release()
        return super().on_shutdown(state)

    def on_error(self, state: LifecycleState) -> TransitionCallbackReturn:
        self._active = False
        self._release()
        return TransitionCallbackReturn.SUCCESS

    def _stop_goals(self, why: str, timeout_s: float = 10.0) -> None:
        """End every waiting goal and make the running goals end (aborted); wait for them."""
        self._abort.set()
        self._queue.end_waiting()
        with self._goals_cv:
            if not self._goals_cv.wait_for(lambda: self._goals_running == 0, timeout=timeout_s):
                self.get_logger().warning(f"{why}: {self._goals_running} goal(s) still running after "
                                          f"{timeout_s:.0f} s")

    def _release(self) -> None:
        cfg, self._cfg = self._cfg, None
        if self._power_sub is not None:
            self.destroy_subscription(self._power_sub)
            self._power_sub = None
        self.power = None  # a reconfigure may name another telemetry_topic
        for pub in (self.pub_metrics, self.pub_calls):
            if pub is not None:
                self.destroy_lifecycle_publisher(pub)
        self.pub_metrics = self.pub_calls = None
        if cfg is not None:
            cfg.router.destroy()
            cfg.engine.close()
            if cfg.fallback_engine is not None:
                cfg.fallback_engine.close()

    def close(self) -> None:
        """Process exit: stop goals and threads, release the model."""
        self._active = False
        self._abort.set()
        self._queue.close()
        self._worker.shutdown(wait=False, cancel_futures=True)
        self._metrics_out.stop()
        try:
            self._release()
        except Exception:  # noqa: BLE001 - best effort at exit
            pass

    # ------------------------------------------------------------- telemetry
    def _on_power(self, msg: PowerState) -> None:
        power = self.power
        if power is None:  # released while this sample was in flight
            return
        power.add(stamp_seconds(msg.header.stamp.sec, msg.header.stamp.nanosec), msg.total_power_w,
                  msg.total_available, msg.power_mode)
        self._metrics_out.poke()

    def _energy_settled(self, end_s: float) -> bool:
        """True when waiting longer cannot change a window ending at ``end_s``."""
        power = self.power
        return power is None or power.settled(end_s, POWER_STALE_S)

    def energy_j(self, start_ns: int, end_ns: int) -> float:
        power = self.power
        return math.nan if power is None else power.joules(start_ns / 1e9, end_ns / 1e9)

    def _publish_call_metrics(self, item: tuple[CallMetrics, dict[str, Any]]) -> None:
        """~/metrics for one call (MetricsQueue's emit: its energy is known or cannot be)."""
        m, kwargs = item
        pub = self.pub_metrics
        if pub is not None:
            pub.publish(conv.inference_metrics_msg(m, energy_j=self.energy_j(kwargs["start_ns"], kwargs["end_ns"]),
                                                   **kwargs))

    def publish_tool_call(self, record: ToolCallRecord) -> None:
        pub = self.pub_calls
        if pub is not None:
            pub.publish(record)

    # ------------------------------------------------------------- services
    def _on_list_tools(self, req: ListTools.Request, res: ListTools.Response) -> ListTools.Response:
        cfg = self._cfg
        if cfg is None:
            res.success, res.message = False, f"agent is not configured (state {self._state_label()})"
            return res
        try:
            if req.tool_set.strip():
                ts = cfg.planner.named_tool_set(req.tool_set.strip())
                tools, source = ts.tools, f"{ts.name} ({ts.source})"
            else:
                tools, source = cfg.planner.tools, cfg.tool_set_label
        except GoalError as exc:
            res.success, res.message = False, str(exc)
            return res
        res.tools = [conv.tool_spec_msg(t) for t in tools]
        res.success, res.message = True, f"{len(tools)} tools from {source}"
        return res

    # --------------------------------------------------------------- action
    def _on_goal(self, goal: RunTask.Goal) -> GoalResponse:
        cfg = self._cfg
        if cfg is None or not self._active:
            self.get_logger().warning(f"goal {goal.task_id!r} rejected: agent is not active "
                                      f"(state {self._state_label()})")
            return GoalResponse.REJECT
        refused = self._queue.admit(cfg.max_queued_goals)
        if refused:
            self.get_logger().warning(f"goal {goal.task_id!r} rejected: {refused}")
            return GoalResponse.REJECT
        return GoalResponse.ACCEPT

    def _on_cancel(self, _goal_handle: Any) -> CancelResponse:
        self._queue.wake()  # a waiting goal ends as soon as its state says CANCELING
        return CancelResponse.ACCEPT

    def _execute(self, goal_handle: Any) -> RunTask.Result:
        """Executor thread, for a dispatched goal: end it unrun, or run it on the worker thread
        and wait (only the one running goal holds an executor thread)."""
        job = self._queue.job(goal_handle)
        if job is None:  # unreachable: every execute comes from the goal queue's dispatcher
            return self._end(goal_handle, RunTask.Result(), "agent node error: goal was not dispatched")
        try:
            if not job.run:
                return self._end(goal_handle, RunTask.Result(), "cancelled before it started"
                                 if goal_handle.is_cancel_requested else "agent is not active")
            return self._worker.submit(self._goal_job, goal_handle, goal_handle.request, job.task_id,
                                       job.cancel).result()
        except Exception as exc:  # noqa: BLE001 - a goal must never take the node down
            self.get_logger().error(f"goal {job.task_id!r} failed: {type(exc).__name__}: {exc}")
            return self._end(goal_handle, RunTask.Result(), f"agent node error: {type(exc).__name__}: {exc}")
        finally:
            self._queue.finished(job)

    def _goal_job(self, goal_handle: Any, goal: RunTask.Goal, task_id: str, cancel: CancelFlag) -> RunTask.Result:
        """Worker thread: one goal, start to end (counted in _goals_running)."""
        with self._goals_cv:
            self._goals_running += 1
        try:
            return self._goal_job_run(goal_handle, goal, task_id, cancel)
        finally:
            with self._goals_cv:
                self._goals_running -= 1
                self._goals_cv.notify_all()

    def _goal_job_run(self, goal_handle: Any, goal: RunTask.Goal, task_id: str,
                      cancel: CancelFlag) -> RunTask.Result:
        cfg = self._cfg
        if cancel.is_set() or cfg is None or not self._active:
            return self._end(goal_handle, RunTask.Result(), "cancelled before it started"
                             if goal_handle.is_cancel_requested else "agent is not active")
        if self._recorder is not None:
            self._recorder.wait((self.pub_metrics, self.pub_calls), "~/metrics, ~/tool_calls", cancel.is_set)
        try:
            plan = self._plan(cfg, goal)
        except GoalError as exc:
            self.get_logger().warning(f"goal {task_id!r} aborted: {exc}")
            return self._end(goal_handle, RunTask.Result(), str(exc))
        try:
            return self._run(goal_handle, goal, cfg, task_id, plan, cancel)
        except Exception as exc:  # noqa: BLE001 - a goal must never take the node down
            self.get_logger().error(f"goal {task_id!r} failed: {type(exc).__name__}: {exc}")
            return self._end(goal_handle, RunTask.Result(), f"agent node error: {type(exc).__name__}: {exc}")

    @staticmethod
    def _plan(cfg: _Config, goal: RunTask.Goal) -> GoalPlan:
        """The goal's checked plan, its tool clients ready; GoalError (one line) otherwise."""
        plan = cfg.planner.plan(protocol=goal.protocol, max_steps=goal.max_steps, tool_set=goal.tool_set,
                                extras=goal.tools, convert=conv.tool_spec_from_msg, strategy=goal.strategy,
                                serialization=goal.serialization, chat_format=goal.chat_format,
                                constrained=goal.constrained)
        if goal.execute_tools:
            try:
                cfg.router.prepare(plan.tools)
            except ValueError as exc:
                raise GoalError(str(exc)) from exc
        return plan

    def _run(self, goal_handle: Any, goal: RunTask.Goal, cfg: _Config, task_id: str, plan: GoalPlan,
             cancel: CancelFlag) -> RunTask.Result:
        metrics: list[tuple[CallMetrics, dict[str, Any]]] = []
        feedback = GoalFeedback(goal_handle, task_id, cfg.feedback_batch, cfg.feedback_max_delay_s,
                                now=lambda: self.get_clock().now().to_msg(), publish_record=self.publish_tool_call,
                                log_debug=self.get_logger().debug)

        def on_metrics(request: ChatRequest, m: CallMetrics) -> None:
            now_ns, perf = self.get_clock().now().nanoseconds, time.perf_counter()

            def node_ns(mono: float, wall_ns: int) -> int:
                return now_ns - int((perf - mono) * 1e9) if math.isfinite(mono) else int(wall_ns)

            power = self.power
            kwargs = dict(task_id=task_id, request_id=request.request_id, step=request.step,
                          escalation=request.escalation,
                          start_ns=node_ns(m.start_mono_s, m.start_wall_ns),
                          end_ns=node_ns(m.end_mono_s, m.end_wall_ns),
                          power_mode=power.power_mode if power is not None else "")
            metrics.append((m, kwargs))
            self._metrics_out.submit((m, kwargs), kwargs["end_ns"] / 1e9, cfg.metrics_energy_wait_s)

        cascade = None
        if cfg.fallback_engine is not None and cfg.cascade_policy is not None and plan.fallback_strategy is not None:
            cascade = Cascade(MeteredEngine(cfg.fallback_engine, on_metrics), plan.fallback_strategy,
                              cfg.cascade_policy)
        loop = AgentLoop(MeteredEngine(cfg.engine, on_metrics), plan.tools, cfg.router, strategy=plan.strategy,
                         max_steps=plan.max_steps, constrained=plan.options.constrained, envelope=plan.envelope,
                         rules=plan.rules, cascade=cascade)
        res = loop.run(messages=conv.messages_from_msgs(goal.messages), prompt=goal.prompt or None,
                       allow_confirmation=goal.allow_confirmation, execute_tools=goal.execute_tools,
                       on_event=feedback.on_event, cancel=cancel, task_id=task_id)
        feedback.flush()

        result = RunTask.Result(success=bool(res.success), final_text=res.final_text or "", error=res.error or "",
                                force_terminated=bool(res.force_terminated), chat_format=plan.options.chat_format,
                                constrained=switch_text(plan.options.constrained))
        now = self.get_clock().now().to_msg()
        for call, outcome in res.calls:
            record, new = feedback.record_for(call, outcome, now)
            if new:  # not executed (execute_tools=false): no TOOL_RESULT event published it
                self.publish_tool_call(record)
            result.tool_calls.append(record)
        result.metrics = [conv.inference_metrics_msg(m, energy_j=self.energy_j(kw["start_ns"], kw["end_ns"]), **kw)
                          for m, kw in metrics]
        result.messages = conv.chat_messages(res.messages, [c for c, _ in res.calls])
        conv.set_fields(result, step_models=list(res.step_models), step_escalations=list(res.step_triggers))
        if goal_handle.is_cancel_requested:
            result.success = False
            result.error = result.error or "cancelled"
            goal_handle.canceled()
        elif self._abort.is_set():
            result.success = False
            result.error = "agent deactivated" + (f" ({res.error})" if res.error else "")
            goal_handle.abort()
        elif result.success:
            goal_handle.succeed()
        else:
            goal_handle.abort()
        return result

    def _end(self, goal_handle: Any, result: RunTask.Result, error: str) -> RunTask.Result:
        result.success, result.error = False, error
        if goal_handle.is_cancel_requested:
            goal_handle.canceled()
        else:
            goal_handle.abort()
        return result


# --------------------------------------------------------------------------- process

def main(args: Optional[Sequence[str]] = None) -> int:
    """Run the node.  Exit status 2 after a logged error for bad parameters or a
    failed autostart configure/activate."""
    rclpy.init(args=list(args) if args is not None else sys.argv,
               signal_handler_options=SignalHandlerOptions.ALL)
    node: Optional[AgentNode] = None
    code = 0
    try:
        node = AgentNode()
        # running goals hold one of these threads each (their execute callback; waiting goals hold
        # none), so tool-service responses always find a free one: room for the most parallel goals
        parallel_max = max(d.le for d in AgentSettings.declarations() if d.name == "max_parallel_goals")
        executor = MultiThreadedExecutor(num_threads=max(8, os.cpu_count() or 2) + int(parallel_max))
        executor.add_node(node)
        if node.autostart:
            if node.trigger_configure() != TransitionCallbackReturn.SUCCESS:
                node.get_logger().error("autostart: configure failed (reason above); exiting")
                return 2
            if node.trigger_activate() != TransitionCallbackReturn.SUCCESS:
                node.get_logger().error("autostart: activate failed; exiting")
                return 2
        spin_until_shutdown(executor)  # not spin(): see its docstring (SIGTERM under load)
    except AgentConfigError:
        node = None  # already destroyed
        code = 2
    except (KeyboardInterrupt, ExternalShutdownException):
        pass
    finally:
        shutdown_node(node)
    return code


if __name__ == "__main__":
    sys.exit(main())
