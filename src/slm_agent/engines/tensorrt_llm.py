"""TensorRT-LLM backend through its LLM API (``tensorrt_llm.LLM``).

Runs in-process like the llama.cpp engine, so there is no HTTP hop in the
measurement: ``generate_async(..., streaming=True)`` yields one
``RequestOutput`` per decoding step whose ``outputs[0].token_ids_diff`` are
the new tokens -- the token count is exact even when a step yields several
tokens (speculative decoding).  KV block reuse (``enable_block_reuse``) is
TensorRT-LLM's prefix cache; the reused length comes from the request's
``cached_tokens`` or perf metrics when this TensorRT-LLM version reports it.

TensorRT-LLM needs an NVIDIA GPU (on Jetson: a JetPack build of
TensorRT-LLM), so the import is guarded: without it the constructor raises
:class:`EngineError` saying so, before touching the model path.
"""
from __future__ import annotations

from typing import Any, Iterator, Optional

from slm_agent.engines.base import ChatRequest, Engine, EngineError, StreamChunk, StreamTimer
from slm_agent.profiles import Profile

__all__ = ["TensorRTLLMEngine", "NOT_INSTALLED_MESSAGE", "tensorrt_llm_available"]

NOT_INSTALLED_MESSAGE = (
    "tensorrt_llm is not installed; it needs an NVIDIA GPU/Jetson (x86_64 + CUDA: "
    "pip install tensorrt_llm; Jetson AGX Orin: the JetPack 6 TensorRT-LLM build). "
    "Use a llama_cpp or openai_http profile on this machine"
)


def _import_tensorrt_llm() -> Any:
    try:
        import tensorrt_llm  # type: ignore[import-not-found]
    except ImportError as exc:
        raise EngineError(f"tensorrt_llm: {NOT_INSTALLED_MESSAGE} ({exc})") from exc
    except Exception as exc:  # noqa: BLE001 - e.g. OSError: libcuda missing on a CPU box
        raise EngineError(f"tensorrt_llm: {NOT_INSTALLED_MESSAGE} (import failed: {exc})") from exc
    return tensorrt_llm


def tensorrt_llm_available() -> bool:
    """True when ``import tensorrt_llm`` works here."""
    try:
        _import_tensorrt_llm()
    except EngineError:
        return False
    return True


class TensorRTLLMEngine(Engine):
    """A model served in-process by ``tensorrt_llm.LLM``."""

    backend = "tensorrt_llm"

    def __init__(self, profile: Profile) -> None:
        trtllm = _import_tensorrt_llm()  # first: the clearest error on CPU machines
        super().__init__(model=profile.model.name, engine_name=f"tensorrt_llm:{profile.name}")
        self.profile = profile
        self.model_path = profile.resolved_model_path()
        o = profile.backend.tensorrt_llm
        try:
            from tensorrt_llm.llmapi import KvCacheConfig  # type: ignore[import-not-found]

            kwargs: dict[str, Any] = dict(
                model=self.model_path,
                backend=o.runtime_backend,
                dtype=o.dtype,
                max_batch_size=o.max_batch_size,
                trust_remote_code=o.trust_remote_code,
                kv_cache_config=KvCacheConfig(
                    enable_block_reuse=o.enable_block_reuse and profile.context.prefix_reuse,
                    free_gpu_memory_fraction=o.kv_cache_free_gpu_memory_fraction,
                    tokens_per_block=o.tokens_per_block,
                ),
            )
            if o.tokenizer:
                kwargs["tokenizer"] = o.tokenizer
            if o.max_num_tokens:
                kwargs["max_num_tokens"] = o.max_num_tokens
            if o.max_seq_len:
                kwargs["max_seq_len"] = o.max_seq_len
            if o.guided_decoding_backend:
                kwargs["guided_decoding_backend"] = o.guided_decoding_backend
            kwargs.update(o.extra_llm_args)
            self._llm: Any = trtllm.LLM(**kwargs)
        except EngineError:
            raise
        except Exception as exc:  # noqa: BLE001 - CUDA/TensorRT failures are many
            raise EngineError(f"tensorrt_llm: failed to load {self.model_path}: {exc}") from exc
        self._tokenizer = self._llm.tokenizer

    def close(self) -> None:
        llm, self._llm = getattr(self, "_llm", None), None
        if llm is not None:
            llm.shutdown()

    def tokenize_request(self, request: ChatRequest) -> list[int]:
        """Prompt token ids: raw prompt, or messages through the tokenizer's chat template."""
        tok = self._tokenizer
        if request.prompt is not None:
            return list(tok.encode(request.prompt))
        if self.profile.chat.mode == "raw":
            raise EngineError(f"tensorrt_llm: profile {self.profile.name} has chat.mode raw; send a prompt")
        kwargs = dict(self.profile.chat.template_kwargs)
        template = self.profile.chat_template_text()
        if template is not None:
            kwargs["chat_template"] = template
        try:
            text = tok.apply_chat_template(
                request.messages, tools=request.tools, add_generation_prompt=True, tokenize=False, **kwargs
            )
        except Exception as exc:  # noqa: BLE001 - jinja / tokenizer errors
            raise EngineError(f"tensorrt_llm: chat template failed: {exc}") from exc
        return list(tok.encode(text, add_special_tokens=False))

    def _sampling_params(self, request: ChatRequest) -> Any:
        from tensorrt_llm import SamplingParams  # type: ignore[import-not-found]

        kwargs: dict[str, Any] = dict(
            max_tokens=request.max_tokens,
            temperature=request.temperature,
            top_p=request.top_p,
            stop=list(dict.fromkeys(list(request.stop) + list(self.profile.chat.stop))) or None,
        )
        if request.top_k > 0:
            kwargs["top_k"] = request.top_k
        if request.seed is not None:
            kwargs["seed"] = request.seed
        if request.json_schema is not None or request.grammar is not None:
            if not self.profile.backend.tensorrt_llm.guided_decoding_backend:
                raise EngineError("tensorrt_llm: constrained decoding needs guided_decoding_backend (xgrammar)")
            from tensorrt_llm.llmapi import GuidedDecodingParams  # type: ignore[import-not-found]

            if request.json_schema is not None and request.grammar is not None:
                raise EngineError("tensorrt_llm: give json_schema or grammar, not both")
            kwargs["guided_decoding"] = (
                GuidedDecodingParams(json=request.json_schema)
                if request.json_schema is not None
                else GuidedDecodingParams(grammar=request.grammar)
            )
        try:
            return SamplingParams(return_perf_metrics=True, **kwargs)
        except TypeError:  # older TensorRT-LLM without per-request perf metrics
            return SamplingParams(**kwargs)

    def stream(self, request: ChatRequest) -> Iterator[StreamChunk]:
        if self._llm is None:
            raise EngineError("tensorrt_llm: engine is closed")
        timer = StreamTimer()
        timer.start()
        ids = self.tokenize_request(request)
        params = self._sampling_params(request)
        last: Any = None
        try:
            for out in self._llm.generate_async(ids, sampling_params=params, streaming=True):
                last = out
                step = out.outputs[0]
                new = len(step.token_ids_diff)
                if new:
                    timer.token(new)
                if step.text_diff:
                    yield StreamChunk(text=step.text_diff)
        except Exception as exc:  # noqa: BLE001 - executor errors arrive as RuntimeError
            raise EngineError(f"tensorrt_llm: generation failed: {exc}") from exc
        final = last.outputs[0] if last is not None else None
        metrics = timer.finish(
            engine=self.engine_name,
            backend=self.backend,
            model=self.model,
            prompt_tokens=len(ids),
            cached_prompt_tokens=self._cached_tokens(last, len(ids)),
            decode_tokens=len(final.token_ids) if final is not None else 0,
            finish_reason=str(final.finish_reason or "") if final is not None else "",
            engine_counters=self._counters(final),
        )
        yield StreamChunk(text="", metrics=metrics)

    def _cached_tokens(self, result: Any, n_prompt: int) -> int:
        if result is None:
            return 0
        cached = getattr(result, "cached_tokens", None)
        if isinstance(cached, int):
            return min(cached, n_prompt)
        kv = _kv_metrics(result.outputs[0])
        blocks = getattr(kv, "num_reused_blocks", None) if kv is not None else None
        if isinstance(blocks, int):
            return min(blocks * self.profile.backend.tensorrt_llm.tokens_per_block, n_prompt)
        return 0

    @staticmethod
    def _counters(final: Any) -> dict[str, float]:
        counters: dict[str, float] = {}
        kv = _kv_metrics(final) if final is not None else None
        for key in ("num_total_allocated_blocks", "num_new_allocated_blocks", "num_reused_blocks", "num_missed_blocks"):
            val = getattr(kv, key, None) if kv is not None else None
            if isinstance(val, (int, float)):
                counters[f"trtllm_{key}"] = float(val)
        return counters


def _kv_metrics(output: Any) -> Optional[Any]:
    perf = getattr(output, "request_perf_metrics", None)
    return getattr(perf, "kv_cache_metrics", None) if perf is not None else None
