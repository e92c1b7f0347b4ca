"""Several cases at once on one local GGUF (``--concurrency N`` with a llama_cpp profile).

Two ways, chosen by the profile's ``backend.llama_cpp.parallel``:

* ``contexts`` (default): N whole single-sequence contexts over the memory-mapped weights
  (the page cache shares them; each slot adds its KV cache, compute buffers and the weights
  the CPU backend repacks at load), the CPUs split between them.  Each slot is a full
  :class:`LlamaCppEngine` -- exact prefix reuse, the same prefill batches -- and ggml
  splits work between threads by output rows, so every output is the one it has at
  concurrency 1.  Measured through ``slm-agent bench`` on a 2-CPU VM (Gemma 3 270M, 40 BFCL
  cases, benchmarks/bench_concurrency.py): 29.5 cases/min at concurrency 2 against 24.1 at
  concurrency 1 with both CPUs (1.22x), 0 of 40 outputs changed.
* ``batched``: ONE context holding N sequences; every decode step of every call in flight
  runs in one ``llama_decode`` (engines/llama_seq.py), so a step reads the weights once for
  all rows (bare decode, Gemma, every row's logits: 34 tok/s for 1 row, 51 for 4, 62 for 8).
  In the harness it lost: 15.0 cases/min at concurrency 2 and 4 (0.62x), and since
  llama.cpp's CPU kernels are not batch invariant (a row next to another differed by up to
  1.1 in logits) 21-25 of 40 raw outputs and 9 verdicts changed.  Kept for hardware where
  decode is memory-bound and a round is cheap; a sequence alone in its rounds gives the
  single engine's outputs token for token.

Either way each call takes a free slot.  GPU offload is refused with slots: each context
would load its own copy of the offloaded layers, and a server with parallel slots
(llama-server -np N, backend openai_http) is the tool there.
"""
from __future__ import annotations

import threading
from typing import Iterator, Optional

from slm_agent.engines.base import ChatRequest, Engine, EngineError, StreamChunk
from slm_agent.engines.llama_cpp import LlamaCppEngine
from slm_agent.engines.llama_seq import SharedContext
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
        self.mode = profile.backend.llama_cpp.parallel
        self._slots: list[LlamaCppEngine] = []
        self._loader: Optional[LlamaCppEngine] = None
        self._shared: Optional[SharedContext] = None
        try:
            if self.mode == "batched":
                self._load_batched(profile, slots, model_path)
            else:
                self._load_contexts(profile, slots, model_path)
        except BaseException:
            self.close()
            raise
        self._free = list(range(slots))
        self._cond = threading.Condition()

    def _load_contexts(self, profile: Profile, slots: int, model_path: Optional[str]) -> None:
        self.threads: ThreadPolicy = thread_policy(profile.cpu.n_threads, profile.cpu.n_threads_batch,
                                                   slots=slots)
        for _ in range(slots):
            self._slots.append(LlamaCppEngine(profile, model_path=model_path, threads=self.threads))
        if profile.cpu.n_threads is None:  # measured on the first slot, applied to all
            self.threads = self._slots[0].measure_threads(slots)
            for s in self._slots[1:]:
                s.set_threads(self.threads)

    def _load_batched(self, profile: Profile, slots: int, model_path: Optional[str]) -> None:
        # the loader loads the N-sequence context and measures the threads on it while it holds
        # nothing; then the slots decode on its sequences and the loader streams nothing
        self._loader = LlamaCppEngine(profile, model_path=model_path, n_seq=slots)
        self.threads = self._loader.threads
        llm = self._loader.llama
        self._shared = SharedContext(llm, slots, profile.context.n_batch)
        for i in range(slots):
            self._slots.append(LlamaCppEngine(profile, model_path=model_path, threads=self.threads,
                                              shared=(llm, self._shared, i)))

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
                    c = chunk.metrics.engine_counters
                    c["slot"] = float(i)
                    c["slots"] = float(len(self._slots))
                    c["slots_batched"] = 1.0 if self._shared is not None else 0.0
                    if self._shared is not None:  # rows per llama_decode so far (how full the rounds ran)
                        c["batched_rounds"] = float(self._shared.rounds)
                        c["batched_rows"] = float(self._shared.rows)
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
        shared, self._shared = getattr(self, "_shared", None), None
        if shared is not None:
            shared.close()
        loader, self._loader = getattr(self, "_loader", None), None
        if loader is not None:
            loader.close()
        cond = getattr(self, "_cond", None)
        if cond is not None:
            with cond:
                cond.notify_all()
