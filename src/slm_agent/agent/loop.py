"""The agent loop: generate, parse, check, invoke, feed back, repeat.

Plain Python so the same loop runs inside the ROS node, in benchmarks and in
tests; the node supplies a :class:`ToolInvoker` that calls ROS services and
turns :class:`AgentEvent` callbacks into action feedback and topics.

Design points:

* Every tool call passes the :class:`SafetyEnvelope` before the invoker sees
  it; refusals and validation errors are fed back to the model as
  observations so it can correct itself.
* One :class:`CallMetrics` per LLM call, in order, with its step index.
* Cancellation is checked between streamed chunks (the generator is closed,
  which stops llama.cpp decoding) and between tool calls.
* Nothing here raises for a model's or an engine's misbehaviour: the result
  carries ``success=False`` and ``error`` instead.
* At most once: a call whose outcome is unknown (TIMEOUT, or a server that
  left mid-call) is never re-sent by anything here; the model reads that the
  outcome is unknown, and an identical call (same tool, same arguments) later
  in the same goal is executed again only for a tool its tool set marks
  ``idempotent: true``; for any other tool it is answered REFUSED, not run.
* A reply longer than the tool's ``max_reply_chars`` reaches the model cut,
  with a marker saying how much was cut (:func:`cut_reply`).
* What ends a goal and what is recorded follows a :class:`LoopRules`
  (:mod:`slm_agent.agent.protocol`): ``robot`` (default) retries unparsed
  replies and stops on repeated calls; ``bfcl`` is bfcl-eval's own loop.
* Cascade (:mod:`slm_agent.agent.cascade`, optional): a step whose reply
  fires a trigger is asked again of a fallback model with the same
  conversation; its reply is the step's reply.  Every step records the model
  that answered it and the trigger (``AgentResult.step_models`` /
  ``step_triggers``), every LLM call its metrics, the primary's discarded
  call included.
"""
from __future__ import annotations

import concurrent.futures as cf
import json
import logging
import math
import threading
import time
from dataclasses import dataclass
from enum import IntEnum
from typing import Any, Callable, Optional, Protocol, Sequence, Union, runtime_checkable

from slm_agent.agent.cascade import Cascade
from slm_agent.agent.protocol import LoopRules, get_rules
from slm_agent.agent.safety import SafetyEnvelope
from slm_agent.agent.strategies import Strategy, get_strategy
from slm_agent.agent.types import AgentResult, Status, ToolCall, ToolResult, ToolSpec
from slm_agent.engines.base import ChatRequest, Engine

log = logging.getLogger(__name__)


class EventKind(IntEnum):
    """Mirrors ``RunTask`` feedback ``KIND_*`` constants."""

    TEXT = 0
    TOOL_CALL = 1
    TOOL_RESULT = 2


@dataclass
class AgentEvent:
    kind: EventKind
    step: int
    text_delta: str = ""
    call: Optional[ToolCall] = None
    result: Optional[ToolResult] = None


@runtime_checkable
class ToolInvoker(Protocol):
    """Executes one already-checked call.  Must not raise; must honour ``spec.timeout_s``."""

    def invoke(self, spec: ToolSpec, call: ToolCall) -> ToolResult: ...


class CallableToolInvoker:
    """In-process tools (Python callables) for tests and benchmarks.

    Each call runs in a worker thread so ``spec.timeout_s`` is enforced the
    same way the ROS invoker enforces it (a call that overruns reports
    TIMEOUT; its thread is abandoned, not killed).  A callable returns a dict
    (the response) or anything JSON-able; raising means FAILED.
    """

    def __init__(self, functions: dict[str, Callable[..., Any]], max_workers: int = 4) -> None:
        self.functions = dict(functions)
        self._pool = cf.ThreadPoolExecutor(max_workers=max_workers, thread_name_prefix="tool")

    def invoke(self, spec: ToolSpec, call: ToolCall) -> ToolResult:
        fn = self.functions.get(spec.name)
        if fn is None:
            return ToolResult(call.id, call.name, Status.REFUSED, error=f"no implementation for tool '{spec.name}'")
        t0 = time.perf_counter()
        future = self._pool.submit(fn, **call.arguments)
        try:
            content = future.result(timeout=spec.timeout_s)
        except cf.TimeoutError:
            future.cancel()
            return ToolResult(call.id, call.name, Status.TIMEOUT,
                              error=f"no answer within {spec.timeout_s:g} s",
                              latency_ms=(time.perf_counter() - t0) * 1e3, outcome_unknown=True)
        except Exception as exc:  # the tool failed, the agent goes on
            return ToolResult(call.id, call.name, Status.FAILED, error=f"{type(exc).__name__}: {exc}",
                              latency_ms=(time.perf_counter() - t0) * 1e3)
        latency = (time.perf_counter() - t0) * 1e3
        if not isinstance(content, (dict, str)):
            content = {"result": content}
        return ToolResult(call.id, call.name, Status.OK, content=content, latency_ms=latency)

    def close(self) -> None:
        self._pool.shutdown(wait=False, cancel_futures=True)


def _normalise_messages(messages: Optional[Sequence[Any]]) -> list[dict[str, Any]]:
    """OpenAI-style dicts from dicts or ChatMessage-like objects (duck-typed)."""
    out: list[dict[str, Any]] = []
    for m in messages or []:
        if isinstance(m, dict):
            out.append(dict(m))
            continue
        d: dict[str, Any] = {"role": getattr(m, "role", "user"), "content": getattr(m, "content", "")}
        for key in ("name", "tool_call_id"):
            if getattr(m, key, ""):
                d[key] = getattr(m, key)
        calls = getattr(m, "tool_calls", None) or []
        if calls:
            d["tool_calls"] = [
                {"id": c.id, "type": "function",
                 "function": {"name": c.name, "arguments": c.arguments_json or "{}"}}
                for c in calls
            ]
        out.append(d)
    return out


def is_outcome_unknown(result: ToolResult) -> bool:
    """The request may have been executed although no answer came (TIMEOUT is always so)."""
    return result.outcome_unknown or result.status == Status.TIMEOUT


def call_key(call: ToolCall) -> str:
    """Tool name and arguments, canonical: two calls with the same key do the same thing."""
    return call.name + json.dumps(call.arguments, sort_keys=True, ensure_ascii=False, default=str)


#: the marker that ends a cut reply: ``cut_reply`` fills in the counts
REPLY_CUT_MARKER = "...[reply cut: {shown} of {total} characters shown (tool set max_reply_chars)]"


def cut_reply(content: Any, limit: int) -> tuple[Any, bool]:
    """``content`` as at most ``limit`` characters plus a marker, when its text is longer.

    The text is the content itself (a string) or its JSON; a cut reply is a
    string.  ``limit`` 0 = no limit.  Returns (content, was_cut).
    """
    if limit <= 0:
        return content, False
    text = content if isinstance(content, str) else json.dumps(content, ensure_ascii=False, default=str)
    if len(text) <= limit:
        return content, False
    return text[:limit] + REPLY_CUT_MARKER.format(shown=limit, total=len(text)), True


def _repeats_last_step(calls: Sequence[ToolCall], done: Sequence[tuple[ToolCall, ToolResult]]) -> bool:
    """True when ``calls`` are exactly the previous step's calls, all of which succeeded."""
    if not calls or not done:
        return False
    last_step = done[-1][0].step
    previous = [(c, r) for c, r in done if c.step == last_step]
    if len(previous) != len(calls) or any(r.status != Status.OK for _, r in previous):
        return False

    def key(c: ToolCall) -> str:
        return c.name + json.dumps(c.arguments, sort_keys=True, ensure_ascii=False)

    return sorted(key(c) for c, _ in previous) == sorted(key(c) for c in calls)


def _stopped(result: AgentResult, engine_error: str, was_cancelled: bool, *, fallback: bool = False) -> bool:
    """Ends the goal on an engine error (naming the fallback model when it was the one asked)
    or a cancellation; True when the caller must return ``result``."""
    if engine_error:
        result.error = f"engine error{' (fallback model)' if fallback else ''}: {engine_error}"
    elif was_cancelled:
        result.error = "cancelled"
    return bool(engine_error or was_cancelled)


class AgentLoop:
    """Multi-step tool-calling agent over one :class:`Engine`.

    ``strategy`` is a registry name (``direct``/``react``/``reflact``), built
    with ``serialization``, ``chat_format`` and ``example``; or a ready
    :class:`Strategy` (then those three are ignored).  ``envelope`` defaults to
    one built from ``tools``; pass a shared one to keep rate limits across
    loops.  ``rules``: a :class:`LoopRules` or a preset name (``robot``,
    ``bfcl``); a preset that fixes its own step limit overrides ``max_steps``.
    """

    def __init__(
        self,
        engine: Engine,
        tools: Sequence[ToolSpec],
        invoker: ToolInvoker,
        strategy: Union[str, Strategy] = "direct",
        serialization: str = "json",
        max_steps: int = 6,
        constrained: bool = False,
        chat_format: str = "raw",
        example: Optional[dict[str, Any]] = None,
        parallel_execution: bool = False,
        envelope: Optional[SafetyEnvelope] = None,
        rules: Union[str, LoopRules] = "robot",
        cascade: Optional[Cascade] = None,
    ) -> None:
        if max_steps < 1:
            raise ValueError("max_steps must be >= 1")
        self.engine = engine
        self.tools = list(tools)
        self.invoker = invoker
        self.strategy = (
            strategy if isinstance(strategy, Strategy)
            else get_strategy(strategy, serialization=serialization, chat_format=chat_format, example=example)
        )
        self.max_steps = max_steps
        self.constrained = constrained
        self.parallel_execution = parallel_execution
        self.envelope = envelope or SafetyEnvelope(self.tools)
        self.rules = rules if isinstance(rules, LoopRules) else get_rules(rules)
        self.cascade = cascade

    # ------------------------------------------------------------------ events
    @staticmethod
    def _emit(on_event: Optional[Callable[[AgentEvent], None]], event: AgentEvent) -> None:
        if on_event is None:
            return
        try:
            on_event(event)
        except Exception:  # a broken listener must not stop the robot task
            log.exception("agent event callback failed")

    # ------------------------------------------------------------------ LLM
    def _generate(self, request: ChatRequest, step: int, on_event, cancel,
                  engine: Optional[Engine] = None) -> tuple[str, Any, bool, str]:
        parts: list[str] = []
        metrics = None
        stream = None
        try:
            stream = (engine or self.engine).stream(request)
            for chunk in stream:
                if chunk.text:
                    parts.append(chunk.text)
                    self._emit(on_event, AgentEvent(EventKind.TEXT, step, text_delta=chunk.text))
                if chunk.metrics is not None:
                    metrics = chunk.metrics
                if cancel is not None and cancel.is_set():
                    return "".join(parts), metrics, True, ""
        except Exception as exc:
            return "".join(parts), metrics, False, f"{type(exc).__name__}: {exc}"
        finally:
            close = getattr(stream, "close", None)
            if close is not None:
                try:
                    close()
                except Exception:
                    log.exception("closing the engine stream failed")
        return "".join(parts), metrics, False, ""

    def _ask(self, strategy: Strategy, engine: Engine, transcript: list[dict[str, Any]], tools: Sequence[ToolSpec],
             step: int, task_id: str, escalation: str, result: AgentResult, on_event,
             cancel) -> tuple[str, bool, str]:
        """One LLM call for ``step`` (the primary's, or the fallback's when ``escalation``
        names its trigger); its metrics and raw text are recorded in ``result``."""
        request = strategy.build_request(transcript, tools, constrained=self.constrained)
        base = f"{task_id}:{step}" if task_id else str(step)
        request.request_id = f"{base}:fallback" if escalation else base
        request.step, request.escalation = step, escalation
        text, metrics, was_cancelled, engine_error = self._generate(request, step, on_event, cancel, engine)
        if metrics is not None:
            metrics.escalation = escalation
            result.metrics.append(metrics)
            result.metric_steps.append(step)
        result.raw_outputs.append(text)
        return text, was_cancelled, engine_error

    def _invalid(self, calls: Sequence[ToolCall], allow_confirmation: bool) -> bool:
        """A call fails its tool's schema or the envelope (the ``invalid`` trigger)."""
        return any(self.envelope.problem(c, allow_confirmation) is not None for c in calls)

    # ------------------------------------------------------------------ tools
    def _invoke_one(self, call: ToolCall, allow_confirmation: bool) -> ToolResult:
        refusal = self.envelope.check(call, allow_confirmation)
        if refusal is not None:
            return refusal
        spec = self.envelope.spec(call.name)
        if spec is None:  # unreachable: check() refuses unknown names; kept for -O runs
            return ToolResult(call.id, call.name, Status.REFUSED, error=f"unknown tool '{call.name}'")
        try:
            result = self.invoker.invoke(spec, call)
        except Exception as exc:  # invokers should not raise; never trust that
            result = ToolResult(call.id, call.name, Status.FAILED, error=f"invoker error: {type(exc).__name__}: {exc}")
        result.call_id, result.name = call.id, call.name
        if is_outcome_unknown(result):
            result.outcome_unknown = True
            again = ("it is marked idempotent, so calling it again is safe" if spec.idempotent else
                     "it was not re-sent, and the same call will not be executed again in this task; "
                     "check the robot's state before deciding what to do")
            result.error = (f"{result.error or 'no answer'}. OUTCOME UNKNOWN: the request may or may not have "
                            f"been executed; {again}")
        elif result.status == Status.OK:
            result.content, cut = cut_reply(result.content, spec.max_reply_chars)
            if cut:
                log.warning("tool %s: reply cut to max_reply_chars=%d", call.name, spec.max_reply_chars)
        return result

    def _not_repeated(self, call: ToolCall, earlier_id: str) -> ToolResult:
        return ToolResult(call.id, call.name, Status.REFUSED, outcome_unknown=False,
                          error=f"not executed: the identical call {earlier_id} in this task got no answer and "
                                f"its outcome is unknown (it may have been executed); '{call.name}' is not marked "
                                f"idempotent, so it runs at most once with these arguments per task")

    def _execute(self, calls: list[ToolCall], allow_confirmation: bool, cancel,
                 unknown: Optional[dict[str, str]] = None) -> list[ToolResult]:
        """Run ``calls``; ``unknown`` (call key -> call id) lists earlier calls of
        this goal whose outcome is unknown: an identical call of a tool that is
        not idempotent is refused, not run.  New unknown outcomes are added."""
        unknown = {} if unknown is None else unknown

        def cancelled(c: ToolCall) -> ToolResult:
            return ToolResult(c.id, c.name, Status.REFUSED, error="task cancelled before this call ran")

        def blocked(c: ToolCall) -> Optional[ToolResult]:
            earlier = unknown.get(call_key(c))
            spec = self.envelope.spec(c.name)
            if earlier is None or spec is None or spec.idempotent:
                return None
            return self._not_repeated(c, earlier)

        def note(c: ToolCall, r: ToolResult) -> ToolResult:
            if r.outcome_unknown:
                unknown.setdefault(call_key(c), c.id)
            return r

        if self.parallel_execution and len(calls) > 1:
            with cf.ThreadPoolExecutor(max_workers=len(calls)) as pool:
                futures = []
                for c in calls:
                    refusal = blocked(c)
                    if cancel is not None and cancel.is_set():
                        futures.append(cancelled(c))
                    elif refusal is not None:
                        futures.append(refusal)
                    else:
                        futures.append(pool.submit(self._invoke_one, c, allow_confirmation))
                return [note(c, f if isinstance(f, ToolResult) else f.result()) for f, c in zip(futures, calls)]
        results = []
        for c in calls:
            refusal = blocked(c)
            if cancel is not None and cancel.is_set():
                results.append(cancelled(c))
            elif refusal is not None:
                results.append(refusal)
            else:
                results.append(note(c, self._invoke_one(c, allow_confirmation)))
        return results

    # ------------------------------------------------------------------ run
    def run(
        self,
        messages: Optional[Sequence[Any]] = None,
        prompt: Optional[str] = None,
        allow_confirmation: bool = False,
        execute_tools: bool = True,
        on_event: Optional[Callable[[AgentEvent], None]] = None,
        cancel: Optional[threading.Event] = None,
        max_steps: Optional[int] = None,
        task_id: str = "",
    ) -> AgentResult:
        """Run until a final answer, ``max_steps`` LLM calls, an error or cancellation.

        With ``execute_tools=False`` the first step that produces calls ends
        the run; those calls are returned with status REFUSED ("not executed")
        and no service is touched (benchmarks that only score the calls).
        Retries, repeats and the step limit follow :attr:`rules`.
        """
        transcript = _normalise_messages(messages)
        if prompt:
            transcript.append({"role": "user", "content": prompt})
        result = AgentResult(messages=transcript)
        if not any(m.get("role") == "user" for m in transcript):
            result.error = "no user message or prompt given"
            return result
        rules = self.rules
        result.protocol = rules.name
        steps = rules.max_steps or max_steps or self.max_steps
        tools = self.tools
        unknown: dict[str, str] = {}   # calls of this goal whose outcome is unknown (at most once)
        cascade = self.cascade
        escalate_next = ""             # tool_error: the step after the error goes to the fallback
        for step in range(steps):
            if cancel is not None and cancel.is_set():
                result.error = "cancelled"
                return result
            strategy, trigger = self.strategy, escalate_next
            escalate_next = ""
            if trigger and cascade is not None:   # decided before the step: the primary is not asked
                strategy = cascade.strategy
                text, was_cancelled, engine_error = self._ask(strategy, cascade.engine, transcript, tools, step,
                                                              task_id, trigger, result, on_event, cancel)
            else:
                text, was_cancelled, engine_error = self._ask(strategy, self.engine, transcript, tools, step,
                                                              task_id, "", result, on_event, cancel)
            result.steps = step + 1
            if _stopped(result, engine_error, was_cancelled, fallback=bool(trigger and cascade is not None)):
                return result
            decision = strategy.interpret(text, tools, step=step, constrained=self.constrained)
            if cascade is not None and not trigger:
                trigger = cascade.policy.before_tools(
                    undecodable=not decision.calls and decision.final_text is None,
                    invalid=self._invalid(decision.calls, allow_confirmation),
                    metrics=result.metrics[-1] if result.metrics and result.metric_steps[-1] == step else None)
                if trigger:   # the same conversation, asked of the fallback; its reply is the step's
                    strategy = cascade.strategy
                    text, was_cancelled, engine_error = self._ask(strategy, cascade.engine, transcript, tools,
                                                                  step, task_id, trigger, result, on_event, cancel)
                    if _stopped(result, engine_error, was_cancelled, fallback=True):
                        return result
                    decision = strategy.interpret(text, tools, step=step, constrained=self.constrained)
            result.step_models.append((cascade.engine if trigger and cascade else self.engine).model)
            result.step_triggers.append(trigger)
            result.parse_errors.extend(decision.errors)
            for i, call in enumerate(decision.calls):
                call.id, call.step = f"call_{step}_{i}", step
            assistant: dict[str, Any] = {
                "role": "assistant",
                "content": strategy.assistant_content(text, self.constrained),
            }
            if decision.calls:
                assistant["tool_calls"] = [
                    {"id": c.id, "type": "function",
                     "function": {"name": c.name, "arguments": json.dumps(c.arguments, ensure_ascii=False)}}
                    for c in decision.calls
                ]
            transcript.append(assistant)
            if decision.calls:
                for c in decision.calls:
                    self._emit(on_event, AgentEvent(EventKind.TOOL_CALL, step, call=c))
                if not execute_tools:
                    for c in decision.calls:
                        r = ToolResult(c.id, c.name, Status.REFUSED, error="not executed (execute_tools is false)")
                        result.calls.append((c, r))
                    result.success = True
                    return result
                if rules.stop_on_repeated_calls and _repeats_last_step(decision.calls, result.calls):
                    # Small models often re-issue the call that just succeeded
                    # instead of answering; running it again would change
                    # nothing (or fail, for non-idempotent tools) and burn the
                    # remaining steps. Treat it as "done" with the last results.
                    result.final_text = "; ".join(
                        f"{c.name}: {self.strategy.observation(r)}" for c, r in result.calls if c.step == step - 1)
                    result.success = True
                    result.stopped_on_repeat = True
                    return result
                results = self._execute(decision.calls, allow_confirmation, cancel, unknown)
                for c, r in zip(decision.calls, results):
                    if r.latency_ms is None:
                        r.latency_ms = math.nan
                    result.calls.append((c, r))
                    self._emit(on_event, AgentEvent(EventKind.TOOL_RESULT, step, call=c, result=r))
                    transcript.append({
                        "role": "tool",
                        "tool_call_id": c.id,
                        "name": c.name,
                        "content": self.strategy.observation(r),
                    })
                if cancel is not None and cancel.is_set():
                    result.error = "cancelled"
                    return result
                if cascade is not None:
                    escalate_next = cascade.policy.after_tools(results)
                if rules.force_terminate_at_limit and step == steps - 1:
                    # bfcl-eval: "Model has been forced to quit after MAXIMUM_STEP_LIMIT steps"
                    result.force_terminated = True
                    result.error = (f"force-terminated: {step + 1} steps with tool calls, the {rules.name} "
                                    f"protocol allows {steps - 1} per goal")
                    return result
                continue
            if decision.final_text is not None:
                result.final_text = decision.final_text
                result.success = True
                return result
            if not rules.retry_unparsed:
                # bfcl-eval: a reply that does not decode ends the turn ("Proceed to next turn")
                result.error = ("the reply does not decode as tool calls, which ends the goal under the "
                                f"{rules.name} protocol: " + "; ".join(decision.errors))
                return result
            transcript.append({
                "role": "tool",
                "tool_call_id": "",
                "name": "",
                "content": "Error: " + "; ".join(decision.errors),
            })
        result.error = f"no final answer within max_steps={steps}"
        return result
