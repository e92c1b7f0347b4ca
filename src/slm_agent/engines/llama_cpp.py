"""llama.cpp backend (llama-cpp-python), the default engine.

Why the engine runs its own token loop on ``Llama.eval()`` instead of
calling ``create_completion(stream=True)`` or ``Llama.generate()``:

* exact token accounting -- every sampled token passes through
  :class:`StreamTimer` the moment it exists, so TTFT is the first *token*,
  not the first chunk that survived stop-string hold-back, and
  ``decode_tokens`` is a count, not a guess from chunks;
* exact prefix KV reuse -- the engine keeps the longest common token prefix
  of the previous call in the KV cache (never ``reset()`` unless the profile
  turns reuse off) and only prefills the rest, and it says how much it kept
  (checked against llama.cpp's own prompt-eval counter afterwards: hybrid /
  recurrent models cannot truncate their state, so llama.cpp silently
  re-prefills; that is then reported, not hidden).  llama.cpp's CPU kernels
  are not batch invariant -- a prompt row is rounded differently in a batch
  of 300 than in one of 130 -- so a suffix prefilled after a reused prefix
  would not be bit-identical to a cold prefill and could change greedy
  outputs.  The engine therefore prefills in batches that start at multiples
  of ``context.prefill_chunk`` positions -- and at the end of the request's
  ``cache_anchor`` (the agent's shared instructions, rules and example), the
  grid going on from there -- and cuts the kept prefix back to such a start:
  warm and cold calls run the same batches and give the same logits to the
  last bit (``Llama.generate`` always re-evaluates the last prompt token
  alone and splits at n_batch from wherever the cache ended);
* chat templating happens here (GGUF template, a profile template, or a
  named llama-cpp-python format -- never llama-cpp-python's silent
  ``llama-2`` fallback, which is wrong for most models) and the rendered
  prompt is tokenized here, so prompt token counts are exact.

llama.cpp's perf counters (``llama_perf_context``) are reset before every
call and reported in ``engine_counters`` next to our own timings.

Constrained decoding (``json_schema`` / ``grammar``) does not hand the
grammar to the sampler chain: llama-cpp-python then runs the grammar over the
whole vocabulary (262k tokens for Gemma 3) at every step, which here cut
decode speed to about a third and would bias every constrained benchmark.
Instead the engine samples as usual and only checks the chosen token
against the grammar, falling back to grammar-then-sample over the full
vocabulary when it is rejected -- llama.cpp's own common sampler strategy,
exact for greedy decoding.  Greedy requests (temperature 0, no repeat
penalty) run :meth:`LlamaCppEngine._generate_greedy`: a rejected argmax is
followed by a grammar check of the ``grammar_top_k`` likeliest tokens in
logit order before the full-vocabulary pass (same token, a fraction of the
cost), and ``prompt_lookup_tokens`` > 0 adds draft-free speculative decoding
(drafts copied from an earlier match of the last n-gram, verified in one
batch).  The top-k check gives the plain loop's tokens exactly.  The
drafts' batch does not guarantee it: a batch of a few rows can be rounded
differently from the one-row decode step (measured on this build with and
without ``cpu.use_extra_bufts``: last-row logits of Gemma 3 270M differ by
up to 0.7 for some batch sizes under 8, benchmarks/prefix_exactness.py),
so an argmax between two close logits can flip; prompt
lookup stays off by default and ``benchmarks/bench_throughput.py`` counts
the outputs it changes.  JSON schemas are converted to GBNF by
llama-cpp-python's converter, which enforces structure, types, enums,
``required`` and string lengths but not numeric ``minimum``/``maximum``.
"""
from __future__ import annotations

import codecs
import contextlib
import ctypes
import json
import math
import os
import re
import threading
import time
from collections import OrderedDict
from typing import Any, Iterator, Optional, Sequence

import numpy as np

from slm_agent.engines.base import ChatRequest, Engine, EngineError, StreamChunk, StreamTimer
from slm_agent.engines._streaming import StopFilter
from slm_agent.engines.confidence import Confidence
from slm_agent.engines.llama_seq import SharedContext, SharedSeq, SoloSeq
from slm_agent.engines.threads import ThreadPolicy, machine_key, thread_policy, usable_cpus
from slm_agent.profiles import Profile

# llama.cpp's CPU backend runs on OpenMP, whose default (active) wait policy
# spins idle threads between tokens.  Anything else wanting a core -- the ROS
# executor, telemetry, a recorder on a 2-core board -- then collapses decode
# (measured here: 1.8-13 tok/s instead of ~22 with passive).  OpenMP reads
# this when libgomp loads, i.e. at ``import llama_cpp`` below; a value the
# user set wins.
os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")

try:  # import-guarded so the package imports without llama-cpp-python
    import llama_cpp
    import llama_cpp._internals as _llama_internals
    from llama_cpp import llama_chat_format
    from llama_cpp.llama_grammar import LlamaGrammar, json_schema_to_gbnf
except ImportError as _exc:  # pragma: no cover - exercised only without the wheel
    llama_cpp = None  # type: ignore[assignment]
    _IMPORT_ERROR: Optional[BaseException] = _exc
else:
    _IMPORT_ERROR = None

__all__ = ["LlamaCppEngine", "build_id", "moe_override_patterns", "prompt_lookup", "threads_for"]

_KV_TYPES = {
    "f32": 0, "f16": 1, "q4_0": 2, "q4_1": 3, "q5_0": 6, "q5_1": 7, "q8_0": 8,
    "iq4_nl": 20, "bf16": 30,
}
#: expert FFN tensors of MoE models as llama.cpp names them (same set as
#: llama.cpp's --cpu-moe / --n-cpu-moe helpers).
_EXPERT_TENSORS = r"\.ffn_(up|down|gate|gate_up)_(ch|)exps"
_PATCH_LOCK = threading.Lock()


def moe_override_patterns(n_cpu_moe: int, cpu_moe: bool) -> list[tuple[str, str]]:
    """``--cpu-moe`` / ``--n-cpu-moe N`` as (regex, buffer type) overrides."""
    if cpu_moe:
        return [(_EXPERT_TENSORS, "CPU")]
    return [(rf"^blk\.{i}{_EXPERT_TENSORS}", "CPU") for i in range(n_cpu_moe)]


def build_id() -> str:
    """This llama.cpp build as thread measurements are keyed by: version and compiled-in CPU features."""
    return f"{llama_cpp.__version__}:{llama_cpp.llama_print_system_info().decode(errors='replace')}"


def threads_for(profile: Profile, slots: int) -> ThreadPolicy:
    """The thread policy an engine for ``profile`` at ``slots`` would load with on this machine,
    without loading it: the cached measurement, else the unmeasured rule (run.json records it)."""
    cpu = profile.cpu
    if profile.backend.llama_cpp.parallel == "batched":
        slots = 1  # one context whatever the calls in flight (engines/llama_pool.py)
    return thread_policy(cpu.n_threads, cpu.n_threads_batch, slots=slots,
                         key=machine_key(profile.resolved_model_path(), build_id(), usable_cpus(), slots))


class _BuftOverride(ctypes.Structure):
    """``struct llama_model_tensor_buft_override`` (llama.h)."""

    _fields_ = [("pattern", ctypes.c_char_p), ("buft", ctypes.c_void_p)]


def _buffer_types() -> dict[str, int]:
    """Buffer-type name -> ``ggml_backend_buffer_type_t`` for every device."""
    from llama_cpp import _ggml

    lib = _ggml.libggml
    lib.ggml_backend_dev_count.restype = ctypes.c_size_t
    lib.ggml_backend_dev_get.argtypes = [ctypes.c_size_t]
    lib.ggml_backend_dev_get.restype = ctypes.c_void_p
    lib.ggml_backend_dev_buffer_type.argtypes = [ctypes.c_void_p]
    lib.ggml_backend_dev_buffer_type.restype = ctypes.c_void_p
    lib.ggml_backend_dev_host_buffer_type.argtypes = [ctypes.c_void_p]
    lib.ggml_backend_dev_host_buffer_type.restype = ctypes.c_void_p
    lib.ggml_backend_buft_name.argtypes = [ctypes.c_void_p]
    lib.ggml_backend_buft_name.restype = ctypes.c_char_p
    out: dict[str, int] = {}
    for i in range(lib.ggml_backend_dev_count()):
        dev = lib.ggml_backend_dev_get(i)
        for getter in (lib.ggml_backend_dev_buffer_type, lib.ggml_backend_dev_host_buffer_type):
            buft = getter(dev)
            if buft:
                out.setdefault(lib.ggml_backend_buft_name(buft).decode(), buft)
    return out


@contextlib.contextmanager
def _model_params_patched(*, tensor_buft_overrides: Optional[int] = None,
                          use_extra_bufts: Optional[bool] = None, n_seq_max: int = 0) -> Iterator[None]:
    """Make the next ``Llama(...)`` load use these ``llama_model_params`` fields (and, with
    ``n_seq_max``, a context for that many sequences with a KV stream each).

    llama-cpp-python 0.3.x builds ``llama_model_params`` and loads the model
    inside ``Llama.__init__`` without exposing ``tensor_buft_overrides`` or
    ``use_extra_bufts``, so for the load only, ``_internals.LlamaModel`` is
    swapped for a subclass that sets them (None leaves llama.cpp's default);
    ``n_seq_max`` likewise through ``_internals.LlamaContext`` (llama-cpp-python
    sets it only for embedding models).  The KV cache is unified (one stream, cells
    tagged by sequence): with a stream per sequence llama.cpp splits a batch into
    ubatches that hold the same number of tokens of every sequence (``split_equal``),
    so a 64-token prefill chunk next to another sequence's one decode token would
    not run as one ubatch; with one stream any mix does.  The price: attention runs
    over every sequence's cells, masked.
    """
    original = _llama_internals.LlamaModel
    original_ctx = _llama_internals.LlamaContext

    class _LlamaContextWithSeqs(original_ctx):  # type: ignore[misc, valid-type]
        def __init__(self, *, model: Any, params: Any, verbose: bool = True) -> None:
            params.n_seq_max = n_seq_max
            params.kv_unified = True
            super().__init__(model=model, params=params, verbose=verbose)

    class _LlamaModelWithParams(original):  # type: ignore[misc, valid-type]
        def __init__(self, *, path_model: str, params: Any, verbose: bool = True) -> None:
            if tensor_buft_overrides is not None:
                params.tensor_buft_overrides = tensor_buft_overrides
            if use_extra_bufts is not None:
                params.use_extra_bufts = use_extra_bufts
            super().__init__(path_model=path_model, params=params, verbose=verbose)

    with _PATCH_LOCK:
        _llama_internals.LlamaModel = _LlamaModelWithParams
        if n_seq_max > 1:
            _llama_internals.LlamaContext = _LlamaContextWithSeqs
        try:
            yield
        finally:
            _llama_internals.LlamaModel = original
            _llama_internals.LlamaContext = original_ctx


class LlamaCppEngine(Engine):
    """A GGUF model loaded in-process with llama-cpp-python."""

    backend = "llama_cpp"

    def __init__(self, profile: Profile, *, model_path: Optional[str] = None,
                 threads: Optional[ThreadPolicy] = None,
                 shared: Optional[tuple["llama_cpp.Llama", SharedContext, int]] = None, n_seq: int = 1) -> None:
        """``threads``: the thread policy to load with (default: measured for one slot on this
        machine from the profile's ``cpu`` group, :func:`slm_agent.engines.threads.thread_policy`).
        ``shared``: (model, shared context, sequence id) -- this engine then decodes on that
        sequence of a context loaded by :class:`slm_agent.engines.llama_pool.LlamaCppPool`
        instead of loading its own.  ``n_seq`` > 1: load a context for that many sequences of
        ``context.n_ctx`` each (the pool's loader; it measures threads, then streams nothing)."""
        if llama_cpp is None:
            raise EngineError(
                f"llama_cpp: llama-cpp-python is not installed ({_IMPORT_ERROR}); "
                "pip install 'llama-cpp-python[server]'"
            )
        super().__init__(model=profile.model.name, engine_name=f"llama_cpp:{profile.name}")
        self.profile = profile
        self.model_path = model_path or profile.resolved_model_path()
        #: the provisional policy to load with; measured below unless given or set in the profile
        self.threads = threads or thread_policy(profile.cpu.n_threads, profile.cpu.n_threads_batch)
        self._lock = threading.Lock()
        self._grammars: "OrderedDict[str, LlamaGrammar]" = OrderedDict()
        self._pieces: dict[int, bytes] = {}
        #: control tokens the current request renders as text (ChatRequest.preserve)
        self._preserved: set[int] = set()
        self._keepalive: list[Any] = []
        self._shared = shared[1] if shared else None
        self._llm = shared[0] if shared else self._load(n_seq)
        self._seq: Any = (SharedSeq(shared[1], shared[2], profile.context.n_ctx) if shared
                          else SoloSeq(self._llm))
        self._vocab = self._llm._model.vocab
        self._bos = self._llm.token_bos()
        self._formatter: Any = None  # built lazily on the first messages request
        self._formatter_kind = ""
        self._candidates = _llama_internals.LlamaTokenDataArray(n_vocab=self._llm.n_vocab())
        self._single_data = (llama_cpp.llama_token_data * 1)()
        self._single = llama_cpp.llama_token_data_array(
            data=self._single_data, size=1, selected=-1, sorted=False
        )
        self._grammar_fallbacks = 0
        #: where the cached prompt's prefill batches started (reusable bit-exactly up to each)
        self._starts: list[int] = []
        if threads is None and shared is None and profile.cpu.n_threads is None:
            self.threads = self.measure_threads(slots=1)

    def measure_threads(self, slots: int) -> ThreadPolicy:
        """The thread policy for ``slots`` contexts of this model, decode threads measured on this
        context (or taken from the per-machine cache, :mod:`slm_agent.engines.threads`); applied
        to this context."""
        cpu = self.profile.cpu
        policy = thread_policy(cpu.n_threads, cpu.n_threads_batch, slots=slots,
                               key=machine_key(self.model_path, build_id(), usable_cpus(), slots),
                               measure=lambda n: self._decode_rate(n, cpu.n_threads_batch or 1))
        self.set_threads(policy)
        return policy

    def set_threads(self, policy: ThreadPolicy) -> None:
        """Run this context with ``policy``'s thread counts from the next call on."""
        llama_cpp.llama_set_n_threads(self.llama.ctx, policy.n_threads, policy.n_threads_batch)
        self.threads = policy

    def _decode_rate(self, n_threads: int, n_threads_batch: int) -> float:
        """Single-token decode tok/s with ``n_threads`` (after a 16-token prompt and 2 warm-up steps;
        best of two runs of 8).  Leaves the KV cache empty."""
        llm = self.llama
        llama_cpp.llama_set_n_threads(llm.ctx, n_threads, max(n_threads_batch, n_threads))
        toks = llm.tokenize(b"def area(width: float, height: float) -> float:\n    return width * height\n",
                            add_bos=True)[:16]
        best = 0.0
        try:
            for _ in range(2):
                llm.reset()
                llm.eval(toks)
                llm.eval([toks[-1]])
                llm.eval([toks[-2]])
                t0 = time.perf_counter()
                for i in range(8):
                    llm.eval([toks[i]])
                best = max(best, 8 / (time.perf_counter() - t0))
        finally:
            llm.reset()
            self._starts = []
        return best

    # ------------------------------------------------------------------ load

    def _load(self, n_seq: int = 1) -> "llama_cpp.Llama":
        p = self.profile
        c, cpu, gpu = p.context, p.cpu, p.gpu
        kwargs: dict[str, Any] = dict(
            n_ctx=c.n_ctx * n_seq,
            n_batch=c.n_batch,
            n_ubatch=c.n_ubatch,
            n_threads=self.threads.n_threads,
            n_threads_batch=self.threads.n_threads_batch,
            n_gpu_layers=gpu.n_gpu_layers,
            main_gpu=gpu.main_gpu,
            offload_kqv=gpu.offload_kqv,
            use_mmap=cpu.use_mmap,
            use_mlock=cpu.use_mlock,
            flash_attn=c.flash_attn,
            swa_full=c.swa_full,
            verbose=p.backend.llama_cpp.verbose,
        )
        if p.model.lora is not None:  # GGUF LoRA adapter (profiles.LoraSpec); llama-cpp-python turns mmap off
            kwargs.update(lora_path=p.model.lora.path, lora_scale=p.model.lora.scale)
        if c.cache_type_k:
            kwargs["type_k"] = _KV_TYPES[c.cache_type_k]
        if c.cache_type_v:
            kwargs["type_v"] = _KV_TYPES[c.cache_type_v]
        overrides = moe_override_patterns(gpu.n_cpu_moe, gpu.cpu_moe)
        for entry in gpu.override_tensor:
            pattern, _, buft = entry.rpartition("=")
            overrides.append((pattern, buft))
        patch: dict[str, Any] = {}
        if overrides:
            patch["tensor_buft_overrides"] = self._override_array(overrides)
        if not cpu.use_extra_bufts:
            patch["use_extra_bufts"] = False
        if n_seq > 1:
            patch["n_seq_max"] = n_seq
        guard: Any = _model_params_patched(**patch) if patch else contextlib.nullcontext()
        try:
            with guard:
                return llama_cpp.Llama(self.model_path, **kwargs)
        except Exception as exc:  # noqa: BLE001 - llama-cpp raises ValueError/RuntimeError
            raise EngineError(f"llama_cpp: failed to load {self.model_path}: {exc}") from exc

    def _override_array(self, overrides: list[tuple[str, str]]) -> int:
        limit = llama_cpp.llama_max_tensor_buft_overrides()
        if len(overrides) >= limit:
            raise EngineError(
                f"llama_cpp: {len(overrides)} tensor overrides, this build allows {limit - 1}"
            )
        types = _buffer_types()
        arr = (_BuftOverride * (len(overrides) + 1))()
        for i, (pattern, name) in enumerate(overrides):
            if name not in types:
                raise EngineError(
                    f"llama_cpp: gpu.override_tensor buffer type {name!r} is not available in "
                    f"this llama.cpp build (available: {', '.join(sorted(types))})"
                )
            raw = pattern.encode()
            self._keepalive.append(raw)
            arr[i].pattern = raw
            arr[i].buft = types[name]
        self._keepalive.append(arr)
        return ctypes.addressof(arr)

    # ------------------------------------------------------------ public API

    @property
    def llama(self) -> "llama_cpp.Llama":
        """The underlying ``llama_cpp.Llama`` (benchmarks compare against it)."""
        if self._llm is None:
            raise EngineError("llama_cpp: engine is closed")
        return self._llm

    def close(self) -> None:
        llm, self._llm = self._llm, None
        if llm is not None and self._shared is None:  # a shared model is the pool's to close
            llm.close()

    def reset_cache(self) -> None:
        """Forget the cached prompt so the next call prefills from scratch."""
        if not self._lock.acquire(timeout=self.profile.backend.llama_cpp.busy_timeout_s):
            raise EngineError("llama_cpp: reset_cache() while a stream is still open")
        try:
            if self._llm is not None:
                self._seq.reset()
                self._starts = []
        finally:
            self._lock.release()

    def tokenize_request(self, request: ChatRequest) -> tuple[list[int], list[str]]:
        """Prompt tokens exactly as :meth:`stream` would feed them, plus the
        stop strings the chat format adds."""
        text, add_bos, extra_stops = self._render(request)
        return self._tokenize(text, add_bos), extra_stops

    def _render(self, request: ChatRequest) -> tuple[str, bool, list[str]]:
        """(prompt text, whether tokenizing adds BOS, the chat format's stop strings)."""
        if request.prompt is not None:
            return request.prompt, True, []
        if self.profile.chat.mode == "raw":
            raise EngineError(
                f"llama_cpp: profile {self.profile.name} has chat.mode raw; "
                "send ChatRequest.prompt instead of messages"
            )
        if not request.messages:
            raise EngineError("llama_cpp: ChatRequest has neither prompt nor messages")
        formatter = self._chat_formatter()
        try:
            result = formatter(
                messages=request.messages,
                tools=request.tools,
                **self.profile.chat.template_kwargs,
            )
        except Exception as exc:  # noqa: BLE001 - jinja errors, raise_exception()
            raise EngineError(f"llama_cpp: chat template ({self._formatter_kind}) failed: {exc}") from exc
        stop = result.stop or []
        return result.prompt, not result.added_special, [stop] if isinstance(stop, str) else list(stop)

    def _tokenize(self, text: str, add_bos: bool) -> list[int]:
        tokens = self.llama.tokenize(text.encode("utf-8"), add_bos=add_bos, special=True)
        if len(tokens) >= 2 and tokens[0] == self._bos and tokens[1] == self._bos:
            tokens = tokens[1:]  # template text already had <bos>
        return tokens

    def _chunk_starts(self, text: str, add_bos: bool, tokens: list[int], anchor: str) -> tuple[list[int], int]:
        """Where the prefill batches of ``tokens`` start: multiples of
        ``context.prefill_chunk``, and -- when the prompt contains the
        request's ``cache_anchor`` -- its end, with the grid going on from
        there, so a prefix shared up to the anchor is reused whole.  Also
        the anchor's token position (0 = none)."""
        chunk = self.profile.context.prefill_chunk
        n = len(tokens)
        if chunk <= 0:
            return [0], 0
        at = text.find(anchor) if anchor else -1
        cut = 0
        if at >= 0:
            head = self._tokenize(text[: at + len(anchor)], add_bos)
            for a, b in zip(head, tokens):  # tokens shared with the prompt (a merge at the seam drops one)
                if a != b:
                    break
                cut += 1
        if 0 < cut < n:
            return list(range(0, cut, chunk)) + list(range(cut, n, chunk)), cut
        return list(range(0, n, chunk)), 0

    # -------------------------------------------------------------- stream

    def stream(self, request: ChatRequest) -> Iterator[StreamChunk]:
        # One sequence, one KV cache: calls are serialised.  The clock starts
        # once the model is ours, so time spent queueing is not TTFT.
        if not self._lock.acquire(timeout=self.profile.backend.llama_cpp.busy_timeout_s):
            raise EngineError("llama_cpp: engine busy (another stream did not finish in time)")
        if self._shared is not None:
            self._shared.enter()
        try:
            yield from self._stream_locked(request)
        finally:
            if self._shared is not None:
                self._shared.leave()
            self._lock.release()

    def _stream_locked(self, request: ChatRequest) -> Iterator[StreamChunk]:
        timer = StreamTimer()
        timer.start()  # templating + tokenization count towards TTFT
        llm = self.llama
        ctx = self._seq.perf_ctx  # None: a shared context's counters mix sequences
        prompt_text, add_bos, format_stops = self._render(request)
        tokens = self._tokenize(prompt_text, add_bos)
        starts, anchor_at = self._chunk_starts(prompt_text, add_bos, tokens, request.cache_anchor)
        prep_ms = (time.perf_counter() - timer.start_mono) * 1e3
        n_prompt = len(tokens)
        n_ctx = self._seq.n_ctx
        if n_prompt >= n_ctx:
            raise EngineError(
                f"llama_cpp: prompt has {n_prompt} tokens, context.n_ctx is {n_ctx}"
            )
        max_new = max(1, min(request.max_tokens, n_ctx - n_prompt))
        stop_ids, stop_texts = self._split_stops(
            list(request.stop) + list(self.profile.chat.stop) + format_stops
        )
        grammar = self._grammar_for(request)
        self._preserved = self._preserved_ids(request.preserve)
        if self.profile.context.prefix_reuse:
            predicted = self._predict_reuse(tokens, starts)
        else:
            self._seq.reset()
            self._starts = []
            predicted = 0
        if request.seed is not None:
            llm.set_seed(request.seed)
        fallbacks_before = self._grammar_fallbacks
        if ctx is not None:
            llama_cpp.llama_perf_context_reset(ctx)

        decoder = codecs.getincrementaldecoder("utf-8")(errors="replace")
        stops = StopFilter(stop_texts)
        finish = "length"
        n = 0
        first_perf = None
        spec = _SpecStats()
        conf = Confidence()   # from the rows the tokens are picked from (engines/confidence.py)
        if self._greedy(request):
            gen: Iterator[int] = self._generate_greedy(tokens, predicted, starts, grammar, spec,
                                                       _Lazy.of(request, grammar), conf)
        else:
            gen = self._generate_sampled(tokens, predicted, starts, request, grammar, _Lazy.of(request, grammar),
                                         conf)
        try:
            for tok in gen:
                timer.token()
                n += 1
                if n == 1 and ctx is not None:
                    first_perf = llama_cpp.llama_perf_context(ctx)
                if tok in stop_ids or llama_cpp.llama_vocab_is_eog(self._vocab, tok):
                    finish = "stop"
                    break
                text, stopped = stops.push(decoder.decode(self._piece(tok)))
                if text:
                    yield StreamChunk(text=text)
                if stopped:
                    finish = "stop"
                    break
                if n >= max_new:
                    break
        except EngineError:
            raise
        except Exception as exc:  # noqa: BLE001 - llama_decode failures surface here
            raise EngineError(f"llama_cpp: generation failed: {exc}") from exc
        finally:
            gen.close()  # type: ignore[attr-defined]
        tail = ""
        if stops.stopped_on is None:
            tail, hit = stops.push(decoder.decode(b"", final=True))
            if hit:
                finish = "stop"
            else:
                tail += stops.flush()
        if ctx is not None:
            counters, evaluated = _perf_counters(first_perf, llama_cpp.llama_perf_context(ctx))
        else:
            counters, evaluated = {}, None
        cached = predicted
        if evaluated is not None and evaluated != n_prompt - predicted:
            # llama.cpp re-evaluated more than predicted (e.g. recurrent state
            # that cannot be truncated): report what really happened.
            cached = max(n_prompt - evaluated, 0)
        counters["prefix_reuse_predicted_tokens"] = float(predicted)
        counters["cache_anchor_tokens"] = float(anchor_at)
        counters["prompt_prep_ms"] = prep_ms
        counters["constrained"] = 1.0 if grammar is not None else 0.0
        counters["llama_threads"] = float(self.threads.n_threads)
        counters["llama_threads_batch"] = float(self.threads.n_threads_batch)
        if grammar is not None:
            counters["grammar_full_vocab_passes"] = float(self._grammar_fallbacks - fallbacks_before)
            counters["grammar_top_k_hits"] = float(spec.top_k_hits)
        if spec.steps:
            counters["spec_steps"] = float(spec.steps)
            counters["spec_drafted_tokens"] = float(spec.drafted)
            counters["spec_accepted_tokens"] = float(spec.accepted)
        metrics = timer.finish(
            engine=self.engine_name,
            backend=self.backend,
            model=self.model,
            prompt_tokens=n_prompt,
            cached_prompt_tokens=cached,
            decode_tokens=n,
            finish_reason=finish,
            engine_counters=counters,
        )
        metrics.min_logprob, metrics.top_margin = conf.min_logprob, conf.top_margin
        yield StreamChunk(text=tail, metrics=metrics)

    # ------------------------------------------------------------- helpers

    def _predict_reuse(self, tokens: list[int], starts: list[int]) -> int:
        """How many tokens of the KV cache the call keeps for ``tokens``.

        The longest common prefix with the cached tokens, but at least the
        last prompt token is evaluated (its logits are needed) unless the
        cache holds exactly the prompt with live logits.  With
        ``context.prefill_chunk`` it is then cut back to the last prefill
        chunk start (``starts``, :meth:`_chunk_starts`) that the cached
        prefill shared with this prompt's, so the rest is prefilled in the
        same batches as a cold call (:meth:`_prefill`) and the result is
        bit-identical to it (measured on this build: some batch sizes under 8
        rows round differently from large batches, benchmarks/prefix_exactness.py).
        Generated tokens are never reused this way: they were evaluated one
        at a time.
        """
        cached = self._seq.n_tokens
        if cached == 0:
            return 0
        prev = self._seq.tokens()
        lcp = 0
        for a, b in zip(prev, tokens):
            if a != b:
                break
            lcp += 1
        chunk = self.profile.context.prefill_chunk
        if (lcp == len(tokens) == cached and self._seq.live
                and (chunk <= 0 or self._starts == starts)):
            return lcp
        limit = min(lcp, len(tokens) - 1)
        if chunk <= 0:
            return limit
        keep = 0
        for a, b in zip(self._starts, starts):
            if a != b or b > limit:
                break
            keep = b
        return keep

    def _prefill(self, todo: list[int], starts: list[int]) -> None:
        """Evaluate prompt tokens after the cache in batches that start at
        ``starts`` (one batch per n_batch if ``context.prefill_chunk`` is 0)."""
        seq = self._seq
        if self.profile.context.prefill_chunk <= 0:
            if todo:
                seq.eval(todo)
            return
        self._starts = []  # until the prefill completed
        base = pos = seq.n_tokens
        end = base + len(todo)
        for cut in [b for b in starts if base < b < end] + [end]:
            if cut > pos:
                seq.eval(todo[pos - base: cut - base])
                pos = cut
        self._starts = list(starts)

    def _greedy(self, request: ChatRequest) -> bool:
        """Whether the request is plain greedy decoding (temperature 0, no
        repeat penalty): then :meth:`_generate_greedy` runs, else the
        sampler chain (:meth:`_generate_sampled`)."""
        return request.temperature == 0.0 and self.profile.sampling.repeat_penalty == 1.0

    def _generate_greedy(
        self, tokens: list[int], reuse: int, starts: list[int], grammar: Optional["LlamaGrammar"],
        spec: "_SpecStats", lazy: Optional["_Lazy"] = None, conf: Optional[Confidence] = None,
    ) -> Iterator[int]:
        """Greedy decoding, optionally constrained, with prompt-lookup drafts.

        Same tokens as sampling one at a time: each position takes the
        highest-logit token the grammar admits (lowest id on ties, like
        llama.cpp's greedy sampler).  Drafts (tokens that followed an earlier
        occurrence of the last n-gram, :func:`prompt_lookup`) are evaluated in
        one batch with the sampled token; each is kept only while it equals
        the token greedy decoding picks from the logits before it, and the KV
        cells of the first rejected draft onwards are removed.
        """
        seq = self._seq
        opts = self.profile.backend.llama_cpp
        todo = self._keep_prefix(tokens, reuse)
        gram = self._grammar_sampler(grammar)
        history = list(tokens)
        try:
            self._prefill(todo, starts)
            row = seq.last_row()
            tok = self._pick_greedy(row, gram, spec)
            while True:
                if tok < 0:
                    raise EngineError("llama_cpp: no token satisfies the grammar")
                if conf is not None:
                    conf.observe(row, tok)
                self._accept(gram, tok)
                yield tok
                history.append(tok)
                room = seq.n_ctx - seq.n_tokens - 1
                drafts = prompt_lookup(history, opts.prompt_lookup_ngram, min(opts.prompt_lookup_tokens, room))
                rows = seq.eval_rows([tok] + drafts)
                if drafts:
                    spec.steps += 1
                    spec.drafted += len(drafts)
                j = 0
                row = rows[0]
                tok = self._pick_greedy(row, gram, spec)
                while j < len(drafts) and tok == drafts[j]:
                    spec.accepted += 1
                    if conf is not None:
                        conf.observe(row, tok)
                    self._accept(gram, tok)
                    yield tok
                    history.append(tok)
                    j += 1
                    row = rows[j]
                    tok = self._pick_greedy(row, gram, spec)
                if j < len(drafts):  # drafts[j:] were wrong: forget their KV cells (the last row is theirs)
                    seq.truncate(seq.n_tokens - (len(drafts) - j))
        finally:
            if gram is not None:
                llama_cpp.llama_sampler_free(gram)

    def _keep_prefix(self, tokens: list[int], reuse: int) -> list[int]:
        """Keep ``reuse`` tokens of the KV cache; the prompt tokens still to evaluate."""
        if reuse == len(tokens) and reuse > 0:
            return []  # exact cache hit with live logits
        if reuse > 0 and self._seq.truncate(reuse):
            return tokens[reuse:]
        self._seq.reset()
        self._starts = []
        return list(tokens)

    def _accept(self, gram: Any, tok: int) -> None:
        if gram is not None:
            llama_cpp.llama_sampler_accept(gram, tok)

    def _pick_greedy(self, row: np.ndarray, gram: Any, spec: "_SpecStats") -> int:
        """The highest-logit token ``gram`` admits (lowest id on ties); -1 if none.

        The argmax is checked alone; if the grammar rejects it, the
        ``grammar_top_k`` best tokens (every token tied with the k-th
        included, so the order is total) are checked in logit order; only
        if all fail does the grammar run over the full vocabulary.
        """
        tok = int(np.argmax(row))
        if gram is None or self._admits(gram, [tok])[0]:
            return tok
        k = self.profile.backend.llama_cpp.grammar_top_k
        if 0 < k < row.shape[0]:
            thr = np.partition(row, row.shape[0] - k)[row.shape[0] - k]
            ids = np.flatnonzero(row >= thr)
            ids = ids[np.lexsort((ids, -row[ids]))]  # logit desc, then id asc
            ok = self._admits(gram, ids.tolist())
            for t, good in zip(ids.tolist(), ok):
                if good:
                    spec.top_k_hits += 1
                    return int(t)
        self._grammar_fallbacks += 1
        cand = self._candidates
        cand.copy_logits(row)
        cand.candidates.selected = -1
        llama_cpp.llama_sampler_apply(gram, ctypes.byref(cand.candidates))
        data = cand.candidates_data
        logits = np.asarray(data.logit[: cand.candidates.size])
        if not np.isfinite(logits).any():
            return -1
        best = int(np.argmax(logits))  # candidates keep vocabulary order: first max = lowest id
        return int(data.id[best])

    def _admits(self, gram: Any, ids: list[int]) -> list[bool]:
        """Which of ``ids`` the grammar (in its current state) allows next."""
        n = len(ids)
        arr = (llama_cpp.llama_token_data * n)()
        for i, t in enumerate(ids):
            arr[i].id = t
            arr[i].logit = 1.0
            arr[i].p = 0.0
        view = llama_cpp.llama_token_data_array(data=arr, size=n, selected=-1, sorted=False)
        llama_cpp.llama_sampler_apply(gram, ctypes.byref(view))
        return [not math.isinf(arr[i].logit) for i in range(n)]

    def _generate_sampled(
        self, tokens: list[int], reuse: int, starts: list[int], request: ChatRequest,
        grammar: Optional["LlamaGrammar"], lazy: Optional["_Lazy"] = None, conf: Optional[Confidence] = None,
    ) -> Iterator[int]:
        """Sampling with llama.cpp's sampler chain, the grammar (if any)
        applied lazily (see module doc).

        Keeps ``reuse`` tokens of the KV cache (:meth:`_predict_reuse`),
        prefills the rest in chunks (:meth:`_prefill`), samples, evaluates
        each sampled token before sampling the next.
        """
        llm = self.llama
        todo = self._keep_prefix(tokens, reuse)
        gram = None if lazy is not None else self._grammar_sampler(grammar)
        s = self.profile.sampling
        chain = llm._init_sampler(
            top_k=request.top_k,
            top_p=request.top_p,
            min_p=s.min_p,
            temp=request.temperature,
            repeat_penalty=s.repeat_penalty,
        )
        try:
            self._prefill(todo, starts)
            while True:
                tok = self._sample_lazy(chain.sampler, gram)
                if tok < 0:
                    raise EngineError("llama_cpp: no token satisfies the grammar")
                if conf is not None:   # the row the sampler read (still live: nothing evaluated since)
                    conf.observe(self._seq.last_row(copy=False), tok)
                yield tok
                if lazy is not None:
                    gram = lazy.step(self, gram, self._piece(tok))
                self._seq.eval([tok])
        finally:
            chain.close()
            if gram is not None:
                llama_cpp.llama_sampler_free(gram)

    def _sample_lazy(self, chain: Any, gram: Any) -> int:
        """Sample with ``chain``; apply ``gram`` (if any) to the full
        vocabulary only if the chosen token violates it."""
        cand = self._candidates
        logits = self._seq.last_row(copy=False)
        cand.copy_logits(logits)
        cand.candidates.selected = -1
        llama_cpp.llama_sampler_apply(chain, ctypes.byref(cand.candidates))
        tok = int(cand.candidates_data.id[cand.candidates.selected])
        if gram is None:
            llama_cpp.llama_sampler_accept(chain, tok)
            return tok
        self._single_data[0].id = tok
        self._single_data[0].logit = 1.0
        self._single_data[0].p = 0.0
        self._single.size = 1
        self._single.selected = -1
        self._single.sorted = False
        llama_cpp.llama_sampler_apply(gram, ctypes.byref(self._single))
        if math.isinf(self._single_data[0].logit):  # rejected: constrain, then sample
            self._grammar_fallbacks += 1
            cand.copy_logits(logits)
            cand.candidates.selected = -1
            llama_cpp.llama_sampler_apply(gram, ctypes.byref(cand.candidates))
            llama_cpp.llama_sampler_apply(chain, ctypes.byref(cand.candidates))
            sel = cand.candidates.selected
            tok = int(cand.candidates_data.id[sel])
            if sel < 0 or math.isinf(float(cand.candidates_data.logit[sel])):
                return -1
        llama_cpp.llama_sampler_accept(gram, tok)
        llama_cpp.llama_sampler_accept(chain, tok)
        return tok

    def _piece(self, tok: int) -> bytes:
        """The token's text; a control token only if the request preserves it (``preserve``)."""
        special = tok in self._preserved
        key = -tok - 1 if special else tok
        piece = self._pieces.get(key)
        if piece is None:
            size = 64
            while True:
                buf = ctypes.create_string_buffer(size)
                n = llama_cpp.llama_token_to_piece(self._vocab, tok, buf, size, 0, special)
                if n >= 0:
                    piece = buf.raw[:n]
                    break
                size = -n
            self._pieces[key] = piece
        return piece

    def _preserved_ids(self, texts: Sequence[str]) -> set[int]:
        """Ids of the control tokens among ``texts`` (each one token), rendered as text."""
        ids: set[int] = set()
        for t in texts:
            toks = self.llama.tokenize(t.encode("utf-8"), add_bos=False, special=True)
            if len(toks) == 1:
                ids.add(toks[0])
        return ids

    def _split_stops(self, stops: list[str]) -> tuple[set[int], list[str]]:
        """Stops that are a single control token (``<end_of_turn>``) never
        appear in detokenized text, so they become stop token ids."""
        ids: set[int] = set()
        texts: list[str] = []
        for s in dict.fromkeys(stops):
            if not s:
                continue
            toks = self.llama.tokenize(s.encode("utf-8"), add_bos=False, special=True)
            if len(toks) == 1 and llama_cpp.llama_vocab_get_attr(self._vocab, toks[0]) & (
                llama_cpp.LLAMA_TOKEN_ATTR_CONTROL
            ):
                ids.add(toks[0])
            else:
                texts.append(s)
        return ids, texts

    def _grammar_for(self, request: ChatRequest) -> Optional["LlamaGrammar"]:
        if request.json_schema is not None and request.grammar is not None:
            raise EngineError("llama_cpp: give json_schema or grammar, not both")
        if request.json_schema is None and request.grammar is None:
            if request.grammar_trigger:
                raise EngineError("llama_cpp: grammar_trigger needs json_schema or grammar")
            return None
        if request.grammar_trigger and not request.grammar_end:
            raise EngineError("llama_cpp: grammar_trigger needs grammar_end (where a constrained block ends)")
        body = ("schema:" + json.dumps(request.json_schema, sort_keys=True) if request.json_schema is not None
                else "gbnf:" + (request.grammar or ""))
        key = f"{body}|text={request.allow_text}|end={request.grammar_end if request.grammar_trigger else ''}"
        grammar = self._grammars.get(key)
        if grammar is not None:
            self._grammars.move_to_end(key)
            return grammar
        try:
            if request.json_schema is not None:
                gbnf = json_schema_to_gbnf(json.dumps(request.json_schema))
            else:
                gbnf = request.grammar or ""
            gbnf = compose_gbnf(gbnf, allow_text=request.allow_text,
                                end=request.grammar_end if request.grammar_trigger else "")
            grammar = LlamaGrammar.from_string(gbnf, verbose=False)
        except Exception as exc:  # noqa: BLE001 - schema converter raises many kinds
            raise EngineError(f"llama_cpp: cannot build grammar: {exc}") from exc
        # llama.cpp returns NULL for a grammar it cannot parse: fail here, before any prefill
        llama_cpp.llama_sampler_free(self._grammar_sampler(grammar))
        self._grammars[key] = grammar
        if len(self._grammars) > 32:
            self._grammars.popitem(last=False)
        return grammar

    def _grammar_sampler(self, grammar: Optional["LlamaGrammar"]) -> Any:
        """A llama.cpp grammar sampler for ``grammar`` (None for None; the caller frees it)."""
        if grammar is None:
            return None
        gram = llama_cpp.llama_sampler_init_grammar(
            self._vocab, grammar._grammar.encode("utf-8"), grammar._root.encode("utf-8")
        )
        if not gram:
            raise EngineError("llama_cpp: llama.cpp rejected the grammar (GBNF parse error)")
        return gram

    def _chat_formatter(self) -> Any:
        if self._formatter is not None:
            return self._formatter
        llm = self.llama
        model = llm._model
        eos = model.token_get_text(llm.token_eos()) if llm.token_eos() != -1 else ""
        bos = model.token_get_text(self._bos) if self._bos != -1 else ""
        template = self.profile.chat_template_text()
        kind = "profile template"
        if template is None:
            template = llm.metadata.get("tokenizer.chat_template")
            kind = "GGUF template"
        if template is not None:
            self._formatter = llama_chat_format.Jinja2ChatFormatter(
                template=template, eos_token=eos, bos_token=bos, add_generation_prompt=True
            )
        elif self.profile.chat.chat_format:
            name = self.profile.chat.chat_format
            kind = f"chat_format {name}"
            for attr in (name.replace("-", "_").replace(".", "_"), name.replace("-", "").replace(".", "")):
                fn = getattr(llama_chat_format, f"format_{attr}", None)
                if callable(fn):
                    self._formatter = fn
                    break
            else:
                raise EngineError(f"llama_cpp: unknown chat.chat_format {name!r}")
        else:
            raise EngineError(
                f"llama_cpp: {self.model_path} has no chat template and profile "
                f"{self.profile.name} sets neither chat.template, chat.template_file nor "
                "chat.chat_format; send ChatRequest.prompt or add one"
            )
        self._formatter_kind = kind
        return self._formatter


_ROOT_RE = re.compile(r"^root(\s*::=)", re.MULTILINE)


def compose_gbnf(gbnf: str, allow_text: bool = False, end: str = "") -> str:
    """Wrap a GBNF grammar (its rule ``root``) for the request's constraint mode.

    * ``end``: a lazily triggered block -- optional white space, the body,
      optional white space, then ``end`` (the engine activates the grammar
      after the trigger and drops it once the block is closed);
    * ``allow_text``: the body (after optional white space) or plain text
      whose first character is none of ``[``, ``{``, ``<`` or white space,
      so a reply that is an answer rather than a call stays possible.
    """
    if not end and not allow_text:
        return gbnf
    if not _ROOT_RE.search(gbnf):
        raise ValueError("grammar has no 'root' rule")
    body = _ROOT_RE.sub(r"slm-body\1", gbnf)
    if end:
        root = f'root ::= slm-ws slm-body slm-ws {json.dumps(end)}'
    else:
        root = "root ::= slm-ws slm-body | slm-text"
    extra = [root, 'slm-ws ::= [ \\t\\n]{0,3}', 'slm-text ::= [^\\[{< \\t\\n] [^\\x00]*']
    return "\n".join(extra) + "\n" + body


class _Lazy:
    """A lazily triggered constraint's state during one generation: off until
    ``trigger`` has been generated, then ``grammar`` (which ends with ``end``)
    until ``end`` has been generated, then off again."""

    def __init__(self, grammar: "LlamaGrammar", trigger: str, end: str) -> None:
        self.grammar = grammar
        self.trigger = trigger.encode("utf-8")
        self.end = end.encode("utf-8")
        self.seen = b""

    @classmethod
    def of(cls, request: ChatRequest, grammar: Optional["LlamaGrammar"]) -> Optional["_Lazy"]:
        if grammar is None or not request.grammar_trigger:
            return None
        return cls(grammar, request.grammar_trigger, request.grammar_end)

    def step(self, engine: "LlamaCppEngine", gram: Any, piece: bytes) -> Any:
        """The grammar sampler for the next token, given the last token's bytes."""
        self.seen += piece
        if gram is None:
            if self.trigger in self.seen:
                self.seen = b""
                return engine._grammar_sampler(self.grammar)
            self.seen = self.seen[-len(self.trigger):]
            return None
        if self.seen.endswith(self.end):  # the block is closed: free text again
            llama_cpp.llama_sampler_free(gram)
            self.seen = b""
            return None
        return gram


class _SpecStats:
    """Per-call counts of the greedy fast path (engine counters)."""

    __slots__ = ("steps", "drafted", "accepted", "top_k_hits")

    def __init__(self) -> None:
        self.steps = self.drafted = self.accepted = self.top_k_hits = 0


def prompt_lookup(history: list[int], max_ngram: int, max_tokens: int) -> list[int]:
    """Draft tokens for prompt-lookup decoding: what followed the latest
    earlier occurrence of the last n-gram of ``history`` (longest n first).

    Why: a tool call's arguments are mostly copied from the request, and the
    name and keys from the tool list, so the text after an earlier match is
    a cheap, model-free guess; verification makes it exact.
    """
    n_hist = len(history)
    if max_tokens <= 0 or n_hist < 2:
        return []
    for n in range(min(max_ngram, n_hist - 1), 0, -1):
        tail = history[n_hist - n:]
        first = tail[0]
        for start in range(n_hist - n - 1, -1, -1):
            if history[start] == first and history[start:start + n] == tail:
                follow = history[start + n: start + n + max_tokens]
                if follow:
                    return follow
    return []


def _perf_counts(data: Any) -> tuple[int, float, int, float]:
    """(prompt tokens, prompt ms, eval tokens, eval ms) from llama_perf_context.

    llama.cpp reports ``max(1, n)`` for both token counters, so a counter
    with zero accumulated time is really zero.
    """
    n_p = int(data.n_p_eval) if data.t_p_eval_ms > 0 else 0
    n_e = int(data.n_eval) if data.t_eval_ms > 0 else 0
    return n_p, float(data.t_p_eval_ms), n_e, float(data.t_eval_ms)


def _perf_counters(first: Any, last: Any) -> tuple[dict[str, float], Optional[int]]:
    """llama.cpp's own timings split into the prompt phase and the decode phase.

    llama.cpp books a 1-token batch as "eval" even when it is prompt, so the
    prompt phase is everything counted up to the first sampled token (the
    counters are synchronised when that token is sampled).
    """
    if first is None:
        return {}, None
    fp_n, fp_ms, fe_n, fe_ms = _perf_counts(first)
    _, _, le_n, le_ms = _perf_counts(last)
    p_tokens, p_ms = fp_n + fe_n, fp_ms + fe_ms
    d_tokens, d_ms = le_n - fe_n, le_ms - fe_ms
    nan = float("nan")
    counters = {
        "llama_prompt_eval_tokens": float(p_tokens),
        "llama_prompt_eval_ms": p_ms,
        "llama_eval_tokens": float(d_tokens),
        "llama_eval_ms": d_ms,
        "llama_prefill_tokens_per_s": p_tokens / (p_ms / 1e3) if p_ms > 0 and p_tokens else nan,
        "llama_decode_tokens_per_s": d_tokens / (d_ms / 1e3) if d_ms > 0 and d_tokens else nan,
        "llama_graph_reuses": float(last.n_reused),
    }
    return counters, p_tokens
