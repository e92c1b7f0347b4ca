"""The one engine interface every backend implements (plain Python, no ROS).

The product is a measurement instrument, so the contract is about *timing* as
much as text: a backend streams deltas and, when the stream ends, hands back a
:class:`CallMetrics` measured with ``time.perf_counter`` around the real stream,
plus whatever counters the engine itself reports (llama.cpp perf data, an
OpenAI-compatible server's ``usage``/``timings``) kept side by side in
``engine_counters`` so the two can be compared rather than trusted blindly.
"""
from __future__ import annotations

import math
import time
from abc import ABC, abstractmethod
from dataclasses import dataclass, field
from typing import Any, Iterator, Optional


class EngineError(RuntimeError):
    """A backend failed in a way the caller should report, not crash on."""


@dataclass
class ChatRequest:
    """One LLM call.

    ``messages`` are OpenAI-style dicts (``role``, ``content`` and optionally
    ``tool_calls`` / ``tool_call_id`` / ``name``).  When ``prompt`` is set the
    backend sends it verbatim as a raw completion (no chat template): prompt
    strategies for *base* models such as the bundled Gemma 3 270M need that.
    ``json_schema`` / ``grammar`` request constrained decoding where the
    backend supports it; a backend that cannot honour a constraint raises
    :class:`EngineError` instead of silently ignoring it.
    """

    messages: list[dict[str, Any]] = field(default_factory=list)
    prompt: Optional[str] = None
    tools: Optional[list[dict[str, Any]]] = None
    max_tokens: int = 256
    temperature: float = 0.0
    top_p: float = 1.0
    top_k: int = 40
    seed: Optional[int] = 0
    stop: list[str] = field(default_factory=list)
    json_schema: Optional[dict[str, Any]] = None
    grammar: Optional[str] = None
    request_id: str = ""
    #: text near the start of the prompt that many requests share (the
    #: agent's instructions, format rules and example).  Engines that prefill
    #: in fixed chunks (llama.cpp, ``context.prefill_chunk``) also start a
    #: chunk where it ends, so the whole shared part is reused exactly; "" = none.
    cache_anchor: str = ""
    #: with ``json_schema`` / ``grammar``: a reply that is plain text (not
    #: starting with ``[``, ``{`` or white space) is admitted too, so a model
    #: constrained to its call syntax can still answer without a call.
    allow_text: bool = False
    #: lazily triggered constraint: the reply is free until this text appears;
    #: what follows must match the constraint and then ``grammar_end``, after
    #: which the reply is free again until the next trigger (a model's own
    #: ``<tool_call>`` blocks).  "" = the constraint covers the whole reply.
    grammar_trigger: str = ""
    grammar_end: str = ""
    #: control tokens of the model's own call syntax (``<tool_call>``) that the
    #: reply must show as text (llama.cpp's "preserved tokens"); others stay hidden
    preserve: list[str] = field(default_factory=list)
    #: labels the agent loop puts on a request (engines ignore them; the agent
    #: node's per-call metrics carry them): the loop step, and the cascade's
    #: trigger when the step is re-asked of the fallback model ("" = the primary)
    step: int = 0
    escalation: str = ""


@dataclass
class CallMetrics:
    """Latency and size of one LLM call, all times in seconds.

    * ``ttft_s``: request start to the first generated token.
    * ``prefill_tokens_per_s``: prompt tokens actually evaluated
      (``prompt_tokens - cached_prompt_tokens``) divided by ``ttft_s``.
    * ``decode_tokens_per_s``: ``(decode_tokens - 1) / (end - first token)``;
      the first token's cost belongs to prefill.
    * ``energy_j``: NaN until a telemetry integrator attributes energy.
    """

    engine: str = ""
    backend: str = ""
    model: str = ""
    prompt_tokens: int = 0
    cached_prompt_tokens: int = 0
    decode_tokens: int = 0
    ttft_s: float = math.nan
    prefill_tokens_per_s: float = math.nan
    decode_tokens_per_s: float = math.nan
    total_s: float = math.nan
    start_wall_ns: int = 0
    end_wall_ns: int = 0
    start_mono_s: float = math.nan
    end_mono_s: float = math.nan
    energy_j: float = math.nan
    finish_reason: str = ""
    engine_counters: dict[str, float] = field(default_factory=dict)
    #: confidence of the reply (issue 26), from the logits the sampler already had
    #: (no extra forward pass); NaN when the engine gives none.  ``min_logprob``:
    #: the lowest log-probability (natural log, the model's own distribution before
    #: any grammar) of a generated token over the whole reply; ``top_margin``:
    #: p(top 1) - p(top 2) at the reply's first token (the call-or-answer choice)
    min_logprob: float = math.nan
    top_margin: float = math.nan
    #: the cascade's trigger when this call re-asked a step of the fallback model
    #: ("" = a call of the primary); set by the agent loop, not by engines
    escalation: str = ""


@dataclass
class StreamChunk:
    """A text delta; the last chunk of a stream carries ``metrics``."""

    text: str = ""
    metrics: Optional[CallMetrics] = None


@dataclass
class Completion:
    text: str
    metrics: CallMetrics


class Engine(ABC):
    """A loaded model behind some serving stack."""

    #: short backend name: "llama_cpp", "openai_http", "tensorrt_llm"
    backend: str = ""

    def __init__(self, model: str, engine_name: str = "") -> None:
        self.model = model
        self.engine_name = engine_name or self.backend

    @abstractmethod
    def stream(self, request: ChatRequest) -> Iterator[StreamChunk]:
        """Yield text deltas as they are generated; the final chunk has metrics."""

    def complete(self, request: ChatRequest) -> Completion:
        parts: list[str] = []
        metrics: Optional[CallMetrics] = None
        for chunk in self.stream(request):
            parts.append(chunk.text)
            if chunk.metrics is not None:
                metrics = chunk.metrics
        if metrics is None:
            raise EngineError(f"{self.backend}: stream ended without metrics")
        return Completion("".join(parts), metrics)

    def close(self) -> None:
        """Release the model or connection; safe to call twice."""

    def reset_cache(self) -> None:
        """Drop reusable prompt (prefix/KV) state so the next call is cold.

        Benchmarks need cold-vs-warm comparisons; a no-op where the backend
        has no such state or cannot reach it (a remote server).
        """


class StreamTimer:
    """Monotonic timing around a token stream, shared by every backend.

    Backends call :meth:`start` just before issuing the request,
    :meth:`token` for every generated token (or delta carrying tokens) and
    :meth:`finish` once; the arithmetic of the metric definitions above lives
    here only, so all backends are measured the same way.
    """

    def __init__(self) -> None:
        self.start_mono = math.nan
        self.first_mono = math.nan
        self.end_mono = math.nan
        self.start_wall_ns = 0
        self.tokens = 0

    def start(self) -> None:
        self.start_wall_ns = time.time_ns()
        self.start_mono = time.perf_counter()

    def token(self, count: int = 1) -> None:
        if self.tokens == 0 and count > 0:
            self.first_mono = time.perf_counter()
        self.tokens += count

    def finish(
        self,
        *,
        engine: str,
        backend: str,
        model: str,
        prompt_tokens: int,
        cached_prompt_tokens: int = 0,
        decode_tokens: Optional[int] = None,
        finish_reason: str = "",
        engine_counters: Optional[dict[str, float]] = None,
    ) -> CallMetrics:
        self.end_mono = time.perf_counter()
        n_decode = self.tokens if decode_tokens is None else decode_tokens
        ttft = self.first_mono - self.start_mono if self.tokens else math.nan
        evaluated = max(prompt_tokens - cached_prompt_tokens, 0)
        prefill_rate = evaluated / ttft if ttft and ttft > 0 and evaluated else math.nan
        decode_time = self.end_mono - self.first_mono if self.tokens else math.nan
        decode_rate = (
            (n_decode - 1) / decode_time if n_decode > 1 and decode_time > 0 else math.nan
        )
        total = self.end_mono - self.start_mono
        return CallMetrics(
            engine=engine,
            backend=backend,
            model=model,
            prompt_tokens=prompt_tokens,
            cached_prompt_tokens=cached_prompt_tokens,
            decode_tokens=n_decode,
            ttft_s=ttft,
            prefill_tokens_per_s=prefill_rate,
            decode_tokens_per_s=decode_rate,
            total_s=total,
            start_wall_ns=self.start_wall_ns,
            end_wall_ns=self.start_wall_ns + int(total * 1e9),
            start_mono_s=self.start_mono,
            end_mono_s=self.end_mono,
            finish_reason=finish_reason,
            engine_counters=dict(engine_counters or {}),
        )
