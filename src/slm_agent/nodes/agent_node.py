"""Agent node: a lifecycle adapter that runs :class:`~slm_agent.agent.loop.AgentLoop` behind ROS 2.

Node ``agent`` (relative names: ``--ros-args -r __ns:=/robot`` gives
``/robot/agent/...``).  Everything the agent *does* lives in plain Python
(``slm_agent.agent``, ``slm_agent.engines``); this node loads it, maps goals
and results to messages (:mod:`slm_agent.ros.agent_convert`) and publishes
what was measured.

Lifecycle (``rclpy.lifecycle``)
    ``configure`` reads the parameters, builds the prompt strategy (so an
    unknown ``strategy``/``serialization``/``chat_format`` fails here),
    loads the tool set (``tool_set``: a name under ``config/tool_sets/`` or a
    YAML path; empty = no tools of its own, goals bring theirs), loads the
    model profile and engine (``model``) and creates one service client per
    tool.  Any problem logs ONE error naming it and returns FAILURE: the node
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
    holds one KV cache), on one dedicated worker thread: llama.cpp's OpenMP
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
import json
import math
import os
import sys
import threading
import time
from collections import OrderedDict, deque
from dataclasses import dataclass, field
from typing import Any, Callable, Iterator, Optional, Sequence

import rclpy
from rcl_interfaces.msg import SetParametersResult
from rclpy.action import ActionServer, CancelResponse, GoalResponse
from rclpy.callback_groups import MutuallyExclusiveCallbackGroup, ReentrantCallbackGroup
from rclpy.executors import ExternalShutdownException, MultiThreadedExecutor
from rclpy.lifecycle import LifecycleNode, LifecycleState, TransitionCallbackReturn
from rclpy.qos import HistoryPolicy, QoSProfile, ReliabilityPolicy
from rclpy.signals import SignalHandlerOptions

from slm_agent.action import RunTask
from slm_agent.agent.goal_options import GoalOptions, resolve_goal_options, switch_text
from slm_agent.agent.loop import AgentEvent, AgentLoop, EventKind
from slm_agent.agent.protocol import rules_for_goal
from slm_agent.agent.safety import SafetyEnvelope
from slm_agent.agent.strategies import Strategy, make_strategy, resolve_chat_format
from slm_agent.agent.toolset import ToolSet, ToolSetError, load_tool_set, resolve_tool_set
from slm_agent.agent.types import Status, ToolCall, ToolResult, ToolSpec
from slm_agent.engines import create_engine
from slm_agent.engines.base import CallMetrics, ChatRequest, Engine, StreamChunk
from slm_agent.msg import InferenceMetrics, PowerState, ToolCallRecord
from slm_agent.profiles import Profile, load_profile
from slm_agent.ros import agent_convert as conv
from slm_agent.ros.params import declare_settings, read_settings
from slm_agent.ros.runtime import shutdown_node, spin_until_shutdown
from slm_agent.ros.tool_invoker import RosServiceToolInvoker
from slm_agent.srv import ListTools
from slm_agent.settings import AgentSettings
from slm_agent.telemetry import EnergyIntegrator

NODE_NAME = AgentSettings.NODE
#: power samples older than this mean "telemetry is not running" (no energy wait)
POWER_STALE_S = 2.0
#: how often the dispatcher re-checks waiting goals for cancel requests (the
#: goal's state changes only after the cancel callback returned)
DISPATCH_POLL_S = 0.02
#: the RunTask goal/result/cancel services keep every request until it is taken:
#: rclpy's default (KEEP_LAST 10) silently drops all but the newest 10 of a
#: burst, leaving their clients waiting forever for an accept or reject.
ACTION_SERVICE_QOS = QoSProfile(history=HistoryPolicy.KEEP_ALL, reliability=ReliabilityPolicy.RELIABLE)


#: settings read at configure: changes are refused unless unconfigured (the rest are live)
_CONFIGURE_TIME = frozenset(d.name for d in AgentSettings.declarations() if not d.live)


class AgentConfigError(RuntimeError):
    """Parameters make the node unable to start (already logged)."""


class _GoalError(ValueError):
    """A goal cannot run; the text goes into ``Result.error``."""


# --------------------------------------------------------------------------- helpers

class _MeteredEngine(Engine):
    """Passes an engine's stream through, reporting each call's metrics as it ends."""

    def __init__(self, inner: Engine, on_metrics: Callable[[ChatRequest, CallMetrics], None]) -> None:
        super().__init__(model=inner.model, engine_name=inner.engine_name)
        self.backend = inner.backend
        self.inner = inner
        self._on_metrics = on_metrics

    def stream(self, request: ChatRequest) -> Iterator[StreamChunk]:
        inner = self.inner.stream(request)
        try:
            for chunk in inner:
                if chunk.metrics is not None:
                    self._on_metrics(request, chunk.metrics)
                yield chunk
        finally:
            inner.close()  # on cancel: stop decoding and free the engine now

    def reset_cache(self) -> None:
        self.inner.reset_cache()


@dataclass(eq=False)
class _Job:
    """An accepted goal: waiting in the FIFO, then dispatched to run or to end."""

    goal_handle: Any
    task_id: str
    cancel: "_CancelFlag"
    run: bool = False   # set by the dispatcher: True = run it, False = end it unrun


class _CancelFlag:
    """``threading.Event``-like view of "stop this goal" for AgentLoop.run."""

    def __init__(self, goal_handle: Any, abort: threading.Event) -> None:
        self._gh = goal_handle
        self._abort = abort

    def is_set(self) -> bool:
        return self._gh.is_cancel_requested or self._abort.is_set()


class _ToolRouter:
    """Service clients for every tool a goal may execute, created once and reused.

    The loaded tool set's clients are created at configure (pinned); a goal's
    extra tools get theirs when the goal starts (discovery overlaps the first
    LLM call) and are kept, least recently used first out, for later goals.
    A call can only reach the client of the very spec the loop's safety
    envelope accepted (same name, service, type, schema), so nothing outside
    the goal's tools is reachable.
    """

    def __init__(self, node: LifecycleNode, group: ReentrantCallbackGroup, max_cached: int = 256) -> None:
        self._node = node
        self._group = group
        self._max = max_cached
        self._invokers: "OrderedDict[str, RosServiceToolInvoker]" = OrderedDict()
        self._pinned: set[str] = set()
        self._lock = threading.Lock()

    @staticmethod
    def key(spec: ToolSpec) -> str:
        return json.dumps([spec.name, spec.service_name, spec.service_type, spec.parameters, spec.timeout_s,
                           spec.requires_confirmation, spec.max_rate_hz, spec.defaults],
                          sort_keys=True, default=str)

    @staticmethod
    def executable(spec: ToolSpec) -> bool:
        return bool(spec.service_name and spec.service_type)

    def prepare(self, specs: Sequence[ToolSpec], pin: bool = False) -> None:
        """Create missing clients; raises (naming the tool) when a type cannot be used."""
        with self._lock:
            for spec in specs:
                if not self.executable(spec):
                    continue
                k = self.key(spec)
                if k not in self._invokers:
                    try:
                        self._invokers[k] = RosServiceToolInvoker(self._node, [spec], callback_group=self._group)
                    except Exception as exc:  # SchemaError, unknown package, bad service name
                        raise ValueError(f"tool '{spec.name}' ({spec.service_type} at {spec.service_name!r}): "
                                         f"{exc}") from exc
                self._invokers.move_to_end(k)
                if pin:
                    self._pinned.add(k)
            while len(self._invokers) > self._max + len(self._pinned):
                for k in self._invokers:
                    if k not in self._pinned:
                        self._invokers.pop(k).destroy()
                        break
                else:
                    break

    def invoke(self, spec: ToolSpec, call: ToolCall) -> ToolResult:
        if not self.executable(spec):
            return ToolResult(call.id, call.name, Status.FAILED,
                              error=f"tool '{spec.name}' has no ROS service to call (empty service_name/type)")
        with self._lock:
            invoker = self._invokers.get(self.key(spec))
        if invoker is None:
            try:
                self.prepare([spec])
            except ValueError as exc:
                return ToolResult(call.id, call.name, Status.FAILED, error=str(exc))
            with self._lock:
                invoker = self._invokers.get(self.key(spec))
        if invoker is None:  # evicted between the two locks: only with > max_cached tools in one goal
            return ToolResult(call.id, call.name, Status.FAILED, error=f"no client for tool '{spec.name}'")
        return invoker.invoke(spec, call)

    def destroy(self) -> None:
        with self._lock:
            for inv in self._invokers.values():
                inv.destroy()
            self._invokers.clear()
            self._pinned.clear()


@dataclass
class _Config:
    """Everything configure built; replaced as a whole, never mutated by goals."""

    profile: Profile
    engine: Engine
    tool_set: Optional[ToolSet]
    tool_set_label: str
    strategy: str
    serialization: str
    chat_format: str
    constrained: bool
    max_steps: int
    max_tokens: int
    telemetry_topic: str
    feedback_batch: int
    feedback_max_delay_s: float
    metrics_energy_wait_s: float
    max_queued_goals: int
    router: _ToolRouter
    envelopes: "OrderedDict[str, SafetyEnvelope]" = field(default_factory=OrderedDict)
    tool_sets: "OrderedDict[str, ToolSet]" = field(default_factory=OrderedDict)

    @property
    def tools(self) -> list[ToolSpec]:
        return list(self.tool_set.tools) if self.tool_set else []

    @property
    def options(self) -> GoalOptions:
        """The prompt settings a goal without overrides runs with."""
        return GoalOptions(self.strategy, self.serialization, self.chat_format, self.constrained)

    def envelope(self, tools: Sequence[ToolSpec]) -> SafetyEnvelope:
        """One envelope per tool list, so rate limits hold across goals with the same tools."""
        key = json.dumps([_ToolRouter.key(t) for t in tools])
        env = self.envelopes.get(key)
        if env is None:
            env = self.envelopes[key] = SafetyEnvelope(tools)
            while len(self.envelopes) > 32:
                self.envelopes.popitem(last=False)
        self.envelopes.move_to_end(key)
        return env


@dataclass(frozen=True)
class _Plan:
    """What a goal runs with, checked before it starts."""

    tools: list[ToolSpec]
    strategy: Strategy
    options: GoalOptions
    max_steps: int
    envelope: SafetyEnvelope


@dataclass
class _GoalRun:
    task_id: str
    metrics: list[tuple[CallMetrics, dict[str, Any]]] = field(default_factory=list)


class _Feedback:
    """AgentLoop events -> RunTask feedback and ~/tool_calls records."""

    def __init__(self, node: "AgentNode", goal_handle: Any, task_id: str, batch: int, max_delay_s: float) -> None:
        self.node = node
        self.gh = goal_handle
        self.task_id = task_id
        self.batch = batch
        self.max_delay_s = max_delay_s
        self._buf: list[str] = []
        self._buf_step = -1
        self._buf_t0 = 0.0
        self._started_steps: set[int] = set()
        self.call_stamps: dict[str, Any] = {}
        self.records: dict[str, ToolCallRecord] = {}
        self.text_messages = 0

    def _publish(self, fb: Any) -> None:
        try:
            self.gh.publish_feedback(fb)
        except Exception as exc:  # noqa: BLE001 - a feedback hiccup must not end the task
            self.node.get_logger().debug(f"feedback not sent: {exc}")

    def flush(self) -> None:
        if self._buf:
            text, self._buf = "".join(self._buf), []
            self.text_messages += 1
            self._publish(conv.text_feedback(self._buf_step, text))

    def on_event(self, ev: AgentEvent) -> None:
        if ev.kind == EventKind.TEXT:
            if not ev.text_delta:
                return
            if self._buf and ev.step != self._buf_step:
                self.flush()
            if not self._buf:
                self._buf_step, self._buf_t0 = ev.step, time.monotonic()
            self._buf.append(ev.text_delta)
            first = ev.step not in self._started_steps
            if first:
                self._started_steps.add(ev.step)
            if first or len(self._buf) >= self.batch or time.monotonic() - self._buf_t0 >= self.max_delay_s:
                self.flush()
            return
        self.flush()
        call = ev.call
        if call is None:
            return
        stamp = self.node.get_clock().now().to_msg()
        if ev.kind == EventKind.TOOL_CALL:
            self.call_stamps[call.id] = stamp
            record = conv.tool_call_record(self.task_id, call, None, stamp)
            self._publish(conv.call_feedback(RunTask.Feedback.KIND_TOOL_CALL, record, ev.step))
        elif ev.kind == EventKind.TOOL_RESULT:
            record = conv.tool_call_record(self.task_id, call, ev.result, self.call_stamps.get(call.id, stamp), stamp)
            self.records[call.id] = record
            self._publish(conv.call_feedback(RunTask.Feedback.KIND_TOOL_RESULT, record, ev.step))
            self.node.publish_tool_call(record)


class _MetricsPublisher:
    """Publishes ~/metrics in call order once the call's energy is known (or cannot be)."""

    def __init__(self, node: "AgentNode") -> None:
        self.node = node
        self._queue: list[tuple[CallMetrics, dict[str, Any], float]] = []
        self._cond = threading.Condition()
        self._stop = False
        self._thread = threading.Thread(target=self._run, name="agent-metrics", daemon=True)
        self._thread.start()

    def submit(self, m: CallMetrics, kwargs: dict[str, Any], wait_s: float) -> None:
        with self._cond:
            self._queue.append((m, kwargs, time.monotonic() + wait_s))
            self._cond.notify_all()

    def poke(self) -> None:
        with self._cond:
            self._cond.notify_all()

    def stop(self) -> None:
        with self._cond:
            self._stop = True
            self._cond.notify_all()
        self._thread.join(timeout=2.0)

    def _run(self) -> None:
        while True:
            with self._cond:
                while not self._queue and not self._stop:
                    self._cond.wait()
                if self._stop:
                    return
                m, kwargs, deadline = self._queue[0]
                end_s = kwargs["end_ns"] / 1e9
                if not self.node.energy_settled(end_s) and time.monotonic() < deadline:
                    self._cond.wait(timeout=0.05)  # woken by each power sample
                    continue
                self._queue.pop(0)
            energy = self.node.energy_j(kwargs["start_ns"], kwargs["end_ns"])
            try:
                self.node.publish_metrics(conv.inference_metrics_msg(m, energy_j=energy, **kwargs))
            except Exception as exc:  # noqa: BLE001 - never kill the publisher thread
                self.node.get_logger().warning(f"metrics not published: {exc}")


# --------------------------------------------------------------------------- node

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
        self._goal_lock = threading.Lock()      # held while a goal runs (deactivate waits on it)
        self._worker = cf.ThreadPoolExecutor(max_workers=1, thread_name_prefix="agent-goal")
        self._queue_lock = threading.Lock()
        self._queue_cv = threading.Condition(self._queue_lock)
        self._queued = 0                        # accepted and not ended (running + waiting)
        self._waiting: "deque[_Job]" = deque()  # accepted, not yet dispatched (FIFO)
        self._jobs: dict[bytes, _Job] = {}      # dispatched, execute callback not yet returned
        self._running: Optional[_Job] = None
        self._closing = False
        self._task_seq = 0
        self.energy: Optional[EnergyIntegrator] = None  # built at configure (energy_max_gap_s)
        self._power_mode = ""
        self._power_rx_mono = -math.inf
        self._power_sub = None
        self.pub_metrics = None
        self.pub_calls = None
        self._metrics_out = _MetricsPublisher(self)
        self._action = ActionServer(self, RunTask, "~/run_task", self._execute,
                                    goal_callback=self._on_goal, cancel_callback=self._on_cancel,
                                    handle_accepted_callback=self._on_accepted,
                                    goal_service_qos_profile=ACTION_SERVICE_QOS,
                                    result_service_qos_profile=ACTION_SERVICE_QOS,
                                    cancel_service_qos_profile=ACTION_SERVICE_QOS,
                                    callback_group=self._group)
        self._dispatcher = threading.Thread(target=self._dispatch_loop, name="agent-dispatch", daemon=True)
        self._dispatcher.start()
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
        self.energy = EnergyIntegrator(max_gap_s=settings.energy_max_gap_s, horizon_s=3600.0)
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
        self._cfg = cfg
        names = ", ".join(t.name for t in cfg.tools) or "none"
        self.get_logger().info(
            f"configured: model {cfg.profile.name} ({cfg.engine.engine_name}), tool set {cfg.tool_set_label} "
            f"[{names}], strategy={cfg.strategy} serialization={cfg.serialization} chat_format={cfg.chat_format} "
            f"constrained={cfg.constrained} max_steps={cfg.max_steps} max_tokens={cfg.max_tokens}")
        return super().on_configure(state)

    def _build_config(self, s: AgentSettings) -> _Config:
        """Load the tool set, the profile and the engine (settings are already validated:
        strategy/serialization/chat_format are registry names)."""
        tool_set: Optional[ToolSet] = None
        label = "(none)"
        if s.tool_set.strip():
            try:
                path = resolve_tool_set(s.tool_set.strip())
                tool_set = load_tool_set(path)
            except ToolSetError as exc:
                raise ValueError(f"tool_set {s.tool_set!r}: {exc}") from exc
            label = f"{tool_set.name} ({path})"
        profile = load_profile(s.model)  # ProfileError is a ValueError listing every problem
        chat_format = resolve_chat_format(s.chat_format, profile)
        max_tokens = s.max_tokens or profile.sampling.max_tokens
        make_strategy(s.strategy, s.serialization, chat_format, tool_set.example if tool_set else None, max_tokens)
        t0 = time.monotonic()
        engine = create_engine(profile)
        self.get_logger().info(f"model {profile.name} loaded in {time.monotonic() - t0:.1f} s")
        router = _ToolRouter(self, self._group)
        try:
            if tool_set is not None:
                router.prepare(tool_set.tools, pin=True)
        except Exception:
            router.destroy()
            engine.close()
            raise
        return _Config(
            profile=profile, engine=engine, tool_set=tool_set, tool_set_label=label, strategy=s.strategy,
            serialization=s.serialization, chat_format=chat_format, constrained=s.constrained,
            max_steps=s.max_steps, max_tokens=max_tokens, telemetry_topic=s.telemetry_topic,
            feedback_batch=s.feedback_batch, feedback_max_delay_s=s.feedback_max_delay_s,
            metrics_energy_wait_s=s.metrics_energy_wait_s, max_queued_goals=s.max_queued_goals,
            router=router)

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
        """End every waiting goal and make a running goal end (aborted); wait for it."""
        self._abort.set()
        with self._queue_cv:
            ended = list(self._waiting)
            self._waiting.clear()
            self._queue_cv.notify_all()
        for job in ended:
            self._dispatch(job, run=False)
        if self._goal_lock.acquire(timeout=timeout_s):
            self._goal_lock.release()
        else:
            self.get_logger().warning(f"{why}: a goal is still running after {timeout_s:.0f} s")

    def _release(self) -> None:
        cfg, self._cfg = self._cfg, None
        if self._power_sub is not None:
            self.destroy_subscription(self._power_sub)
            self._power_sub = None
        self.energy = None  # a reconfigure may name another telemetry_topic
        self._power_rx_mono, self._power_mode = -math.inf, ""
        for pub in (self.pub_metrics, self.pub_calls):
            if pub is not None:
                self.destroy_lifecycle_publisher(pub)
        self.pub_metrics = self.pub_calls = None
        if cfg is not None:
            cfg.router.destroy()
            cfg.engine.close()

    def close(self) -> None:
        """Process exit: stop goals and threads, release the model."""
        self._active = False
        self._abort.set()
        with self._queue_cv:
            self._closing = True
            self._queue_cv.notify_all()
        self._worker.shutdown(wait=False, cancel_futures=True)
        self._metrics_out.stop()
        try:
            self._release()
        except Exception:  # noqa: BLE001 - best effort at exit
            pass

    # ------------------------------------------------------------- telemetry
    def _on_power(self, msg: PowerState) -> None:
        energy = self.energy
        if energy is None:  # released while this sample was in flight
            return
        t = msg.header.stamp.sec + msg.header.stamp.nanosec * 1e-9
        ok = msg.total_available and math.isfinite(msg.total_power_w)
        energy.add(t, msg.total_power_w if ok else math.nan)
        self._power_mode = msg.power_mode
        self._power_rx_mono = time.monotonic()
        self._metrics_out.poke()

    def energy_settled(self, end_s: float) -> bool:
        """True when waiting longer cannot change a window ending at ``end_s``."""
        if time.monotonic() - self._power_rx_mono > POWER_STALE_S:
            return True  # no telemetry running
        if self.energy is None:
            return True
        newest = self.energy.span()[1]
        return math.isfinite(newest) and newest >= end_s

    def energy_j(self, start_ns: int, end_ns: int) -> float:
        energy = self.energy
        if energy is None or end_ns < start_ns or not len(energy):
            return math.nan
        est = energy.energy(start_ns / 1e9, end_ns / 1e9)
        return float(est.joules) if est.complete and est.covered_s > 0 else math.nan

    def publish_metrics(self, msg: InferenceMetrics) -> None:
        pub = self.pub_metrics
        if pub is not None:
            pub.publish(msg)

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
                ts = self._goal_tool_set(cfg, req.tool_set.strip())
                tools, source = ts.tools, f"{ts.name} ({ts.source})"
            else:
                tools, source = cfg.tools, cfg.tool_set_label
        except _GoalError as exc:
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
        with self._queue_lock:
            if self._queued >= cfg.max_queued_goals:
                self.get_logger().warning(f"goal {goal.task_id!r} rejected: {self._queued} goals already "
                                          f"queued (max_queued_goals)")
                return GoalResponse.REJECT
            self._queued += 1
        return GoalResponse.ACCEPT

    def _on_cancel(self, _goal_handle: Any) -> CancelResponse:
        with self._queue_cv:
            self._queue_cv.notify_all()  # a waiting goal ends as soon as its state says CANCELING
        return CancelResponse.ACCEPT

    def _on_accepted(self, goal_handle: Any) -> None:
        """Executor thread, right after the accept was sent: queue the goal (no thread is held)."""
        goal: RunTask.Goal = goal_handle.request
        with self._queue_cv:
            if goal.task_id:
                task_id = goal.task_id
            else:
                self._task_seq += 1
                task_id = f"task-{self._task_seq}"
            self._waiting.append(_Job(goal_handle, task_id, _CancelFlag(goal_handle, self._abort)))
            self._queue_cv.notify_all()

    def _dispatch(self, job: _Job, run: bool) -> None:
        """Hand a goal to the action server's execute path (``_execute``, an executor task)."""
        job.run = run
        with self._queue_cv:
            self._jobs[bytes(job.goal_handle.goal_id.uuid)] = job
        try:
            try:
                job.goal_handle.execute()
            except Exception:  # noqa: BLE001
                # a cancel that lands between execute()'s check and its EXECUTE transition makes
                # that transition invalid; the goal is CANCELING now and execute() skips it
                if not job.goal_handle.is_cancel_requested:
                    raise
                job.goal_handle.execute()
        except Exception as exc:  # noqa: BLE001 - e.g. the goal handle was destroyed at shutdown
            self.get_logger().error(f"goal {job.task_id!r} could not be dispatched: {type(exc).__name__}: {exc}")
            self._finished(job)

    def _finished(self, job: _Job) -> None:
        with self._queue_cv:
            if self._jobs.pop(bytes(job.goal_handle.goal_id.uuid), None) is not None:
                self._queued -= 1
            if self._running is job:
                self._running = None
            self._queue_cv.notify_all()

    def _dispatch_loop(self) -> None:
        """Dispatcher thread: FIFO order, one goal running at a time; waiting goals that are
        cancelled (or all of them while inactive) end at once, without running."""
        while True:
            start: Optional[_Job] = None
            with self._queue_cv:
                if self._closing:
                    return
                inactive = not self._active or self._abort.is_set()
                ended = [j for j in self._waiting if inactive or j.goal_handle.is_cancel_requested]
                for j in ended:
                    self._waiting.remove(j)
                if not ended and self._running is None and self._waiting:
                    start = self._running = self._waiting.popleft()
                if not ended and start is None:
                    self._queue_cv.wait(DISPATCH_POLL_S if self._waiting else None)
            for j in ended:
                self._dispatch(j, run=False)
            if start is not None:
                self._dispatch(start, run=True)

    def _goal_tool_set(self, cfg: _Config, name: str) -> ToolSet:
        ts = cfg.tool_sets.get(name)
        if ts is None:
            try:
                ts = load_tool_set(resolve_tool_set(name))
            except ToolSetError as exc:
                raise _GoalError(f"tool_set {name!r}: {exc}") from exc
            cfg.tool_sets[name] = ts
            while len(cfg.tool_sets) > 16:
                cfg.tool_sets.popitem(last=False)
        return ts

    def _plan(self, cfg: _Config, goal: RunTask.Goal) -> "_Plan":
        try:
            rules_for_goal(goal.protocol, goal.max_steps)
        except ValueError as exc:
            raise _GoalError(str(exc)) from exc
        ts = self._goal_tool_set(cfg, goal.tool_set.strip()) if goal.tool_set.strip() else cfg.tool_set
        try:
            extras = [conv.tool_spec_from_msg(m) for m in goal.tools]
        except conv.ConversionError as exc:
            raise _GoalError(str(exc)) from exc
        names = [t.name for t in extras]
        dupes = sorted({n for n in names if names.count(n) > 1})
        if dupes:
            raise _GoalError(f"goal tools repeat the name(s) {', '.join(dupes)}")
        tools = [t for t in (ts.tools if ts else []) if t.name not in set(names)] + extras
        try:
            opts = resolve_goal_options(cfg.options, cfg.profile, strategy=goal.strategy,
                                        serialization=goal.serialization, chat_format=goal.chat_format,
                                        constrained=goal.constrained)
            strategy = make_strategy(opts.strategy, opts.serialization, opts.chat_format,
                                     ts.example if ts else None, cfg.max_tokens, cfg.profile.chat.prompt_layout)
        except ValueError as exc:
            raise _GoalError(str(exc)) from exc
        if goal.execute_tools:
            try:
                cfg.router.prepare(tools)
            except ValueError as exc:
                raise _GoalError(str(exc)) from exc
        return _Plan(tools, strategy, opts, int(goal.max_steps) or cfg.max_steps, cfg.envelope(tools))

    def _execute(self, goal_handle: Any) -> RunTask.Result:
        """Executor thread, for a dispatched goal: end it unrun, or run it on the worker thread
        and wait (only the one running goal holds an executor thread)."""
        with self._queue_cv:
            job = self._jobs.get(bytes(goal_handle.goal_id.uuid))
        if job is None:  # unreachable: every execute comes from _dispatch
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
            self._finished(job)

    def _goal_job(self, goal_handle: Any, goal: RunTask.Goal, task_id: str, cancel: _CancelFlag) -> RunTask.Result:
        """Worker thread: one goal, start to end."""
        with self._goal_lock:
            cfg = self._cfg
            if cancel.is_set() or cfg is None or not self._active:
                return self._end(goal_handle, RunTask.Result(), "cancelled before it started"
                                 if goal_handle.is_cancel_requested else "agent is not active")
            try:
                plan = self._plan(cfg, goal)
            except _GoalError as exc:
                self.get_logger().warning(f"goal {task_id!r} aborted: {exc}")
                return self._end(goal_handle, RunTask.Result(), str(exc))
            try:
                return self._run(goal_handle, goal, cfg, task_id, plan, cancel)
            except Exception as exc:  # noqa: BLE001 - a goal must never take the node down
                self.get_logger().error(f"goal {task_id!r} failed: {type(exc).__name__}: {exc}")
                return self._end(goal_handle, RunTask.Result(), f"agent node error: {type(exc).__name__}: {exc}")

    def _run(self, goal_handle: Any, goal: RunTask.Goal, cfg: _Config, task_id: str, plan: "_Plan",
             cancel: _CancelFlag) -> RunTask.Result:
        run = _GoalRun(task_id)
        feedback = _Feedback(self, goal_handle, task_id, cfg.feedback_batch, cfg.feedback_max_delay_s)

        def on_metrics(request: ChatRequest, m: CallMetrics) -> None:
            now_ns, perf = self.get_clock().now().nanoseconds, time.perf_counter()

            def node_ns(mono: float, wall_ns: int) -> int:
                return now_ns - int((perf - mono) * 1e9) if math.isfinite(mono) else int(wall_ns)

            kwargs = dict(task_id=task_id, request_id=request.request_id, step=len(run.metrics),
                          start_ns=node_ns(m.start_mono_s, m.start_wall_ns),
                          end_ns=node_ns(m.end_mono_s, m.end_wall_ns), power_mode=self._power_mode)
            run.metrics.append((m, kwargs))
            self._metrics_out.submit(m, kwargs, cfg.metrics_energy_wait_s)

        loop = AgentLoop(_MeteredEngine(cfg.engine, on_metrics), plan.tools, cfg.router, strategy=plan.strategy,
                         max_steps=plan.max_steps, constrained=plan.options.constrained, envelope=plan.envelope,
                         rules=rules_for_goal(goal.protocol, goal.max_steps))
        res = loop.run(messages=conv.messages_from_msgs(goal.messages), prompt=goal.prompt or None,
                       allow_confirmation=goal.allow_confirmation, execute_tools=goal.execute_tools,
                       on_event=feedback.on_event, cancel=cancel, task_id=task_id)
        feedback.flush()

        result = RunTask.Result(success=bool(res.success), final_text=res.final_text or "", error=res.error or "",
                                force_terminated=bool(res.force_terminated), chat_format=plan.options.chat_format,
                                constrained=switch_text(plan.options.constrained))
        now = self.get_clock().now().to_msg()
        for call, outcome in res.calls:
            record = feedback.records.get(call.id)
            if record is None:  # not executed (execute_tools=false): no TOOL_RESULT event was sent
                record = conv.tool_call_record(task_id, call, outcome, feedback.call_stamps.get(call.id, now), now)
                self.publish_tool_call(record)
            result.tool_calls.append(record)
        result.metrics = [conv.inference_metrics_msg(m, energy_j=self.energy_j(kw["start_ns"], kw["end_ns"]), **kw)
                          for m, kw in run.metrics]
        result.messages = conv.chat_messages(res.messages, [c for c, _ in res.calls])
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
        # goals hold at most one of these threads (the running goal's execute callback; waiting
        # goals hold none), so tool-service responses always find a free one
        executor = MultiThreadedExecutor(num_threads=max(8, os.cpu_count() or 2))
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
