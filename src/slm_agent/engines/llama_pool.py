"""Several cases at once on one local GGUF: N llama.cpp contexts over one set of weights.

Why slots of whole contexts and not several sequences in one batch: every
guarantee of :class:`~slm_agent.engines.llama_cpp.LlamaCppEngine` -- exact
prefix reuse in fixed prefill chunks (bit-identical to a cold prefill), the
greedy/grammar loop, exact token accounting -- is per context, and llama.cpp's
CPU kernels are not batch invariant (a row is rounded differently in a batch
of 4 than of 1, benchmarks/prefix_exactness.py), so sequences decoded
together could change greedy outputs.  A slot is a full single-sequence
engine; ggml splits work between threads by output rows, so a slot running
with fewer threads computes the same numbers, and every case's result is the
one it has at concurrency 1 (benchmarks/bench_concurrency.py counts
differences).  The weights are memory-mapped, so the slots share them in the
page cache; each slot adds its KV cache, compute buffers and any weights the
CPU backend repacks at load (``cpu.use_extra_bufts``).

The CPUs are split between the slots (:func:`slm_agent.engines.threads.thread_policy`):
on 2 CPUs two slots decode on one CPU each instead of two threads meeting at
a barrier after every op, which is where the gain comes from.  GPU offload
is refused with slots (each would load its own copy of the offloaded layers):
use a server backend with parallel slots there.
"""
from __future__ import annotations

import threading
from typing import Iterator, Optional

from slm_agent.engines.base import ChatRequest, Engine, EngineError, StreamChunk
from slm_agent.engines.llama_cpp import LlamaCppEngine
from slm_agent.engines.threads import ThreadPolicy, thread_policy
from slm_agent.profiles import Profile

__all__ = ["LlamaCppPool", "slots_problem"]


def slots_problem(profile: Profile, slots: int) -> str:
    """Why ``profile`` cannot run ``slots`` local contexts (one line), or ""."""
    if slots > 1 and profile.gpu.n_gpu_layers != 0:
        return (f"{slots} llama.cpp slots would each load the {profile.name} layers offloaded to the GPU "
                "(gpu.n_gpu_layers != 0): serve the model with parallel slots (llama-server -np N, "
                "backend openai_http) or use 1")
    return ""


class LlamaCppPool(Engine):
    """``slots`` :class:`LlamaCppEngine` contexts of one model; each ``stream()`` takes a free one."""

    backend = "llama_cpp"

    def __init__(self, profile: Profile, slots: int, *, model_path: Optional[str] = None) -> None:
        problem = slots_problem(profile, slots)
        if problem:
            raise EngineError(f"llama_cpp: {problem}")
        super().__init__(model=profile.model.name, engine_name=f"llama_cpp:{profile.name}")
        self.profile = profile
        self.threads: ThreadPolicy = thread_policy(profile.cpu.n_threads, profile.cpu.n_threads_batch,
                                                   slots=slots)
        self._slots: list[LlamaCppEngine] = []
        try:
            for _ in range(slots):
                self._slots.append(LlamaCppEngine(profile, model_path=model_path, threads=self.threads))
            if profile.cpu.n_threads is None:  # measured on the first slot, applied to all
                self.threads = self._slots[0].measure_threads(slots)
                for s in self._slots[1:]:
                    s.set_threads(self.threads)
        except BaseException:
            self.close()
            raise
        self._free = list(range(slots))
        self._cond = threading.Condition()

    @property
    def slots(self) -> int:
        return len(self._slots)

    def _take(self) -> int:
        timeout = self.profile.backend.llama_cpp.busy_timeout_s
        with self._cond:
            if not self._cond.wait_for(lambda: bool(self._free) or not self._slots, timeout=timeout):
                raise EngineError(f"llama_cpp: all {len(self._slots)} slots busy for {timeout:.0f} s")
            if not self._slots:
                raise EngineError("llama_cpp: engine is closed")
            return self._free.pop()  # the slot released last: its KV cache holds the latest prompt

    def _give(self, i: int) -> None:
        with self._cond:
            self._free.append(i)
            self._cond.notify()

    def stream(self, request: ChatRequest) -> Iterator[StreamChunk]:
        i = self._take()
        try:
            for chunk in self._slots[i].stream(request):
                if chunk.metrics is not None:
                    chunk.metrics.engine_counters["slot"] = float(i)
                    chunk.metrics.engine_counters["slots"] = float(len(self._slots))
                yield chunk
        finally:
            self._give(i)

    def tokenize_request(self, request: ChatRequest) -> tuple[list[int], list[str]]:
        return self._slots[0].tokenize_request(request)

    def reset_cache(self) -> None:
        for s in self._slots:
            s.reset_cache()

    def close(self) -> None:
        slots, self._slots = self._slots, []
        for s in slots:
            s.close()
        cond = getattr(self, "_cond", None)
        if cond is not None:
            with cond:
                cond.notify_all()
