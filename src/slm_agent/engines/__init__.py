"""Engines: one streaming interface over llama.cpp, OpenAI-compatible HTTP
servers and TensorRT-LLM.

Call :func:`create_engine` with a profile (or a profile name); backends are
imported lazily so a machine without llama-cpp-python, httpx or
tensorrt_llm can still use the others.

Typical use from the agent / nodes::

    from slm_agent.profiles import DEFAULT_PROFILE, load_profile
    from slm_agent.engines import create_engine

    profile = load_profile(DEFAULT_PROFILE)              # a profile name or a YAML path
    engine = create_engine(profile)                      # loads the model once
    req = profile.make_request(messages=msgs, tools=tools)   # sampling defaults
    for chunk in engine.stream(req):                     # text deltas ...
        ...
    metrics = chunk.metrics                              # ... last chunk: CallMetrics
    engine.reset_cache()                                 # next call cold (benchmarks)
    engine.close()

Every backend failure is an :class:`EngineError`; a bad profile is a
``slm_agent.profiles.ProfileError``.
"""
from __future__ import annotations

import os
from typing import Union

from slm_agent.engines.base import (
    CallMetrics,
    ChatRequest,
    Completion,
    Engine,
    EngineError,
    StreamChunk,
    StreamTimer,
)
from slm_agent.profiles import Profile, load_profile

__all__ = [
    "CallMetrics",
    "ChatRequest",
    "Completion",
    "Engine",
    "EngineError",
    "StreamChunk",
    "StreamTimer",
    "CONCURRENT_BACKENDS",
    "create_engine",
    "parallel_calls_problem",
]

#: backends whose engine may serve several ``stream()`` calls at once: a server with parallel
#: slots decodes them together, and llama_cpp loads one context per call in flight
#: (:mod:`slm_agent.engines.llama_pool`); tensorrt_llm's in-process engine serialises its calls
CONCURRENT_BACKENDS = ("openai_http", "llama_cpp")


def parallel_calls_problem(profile: "Profile", n: int) -> str:
    """Why ``n`` calls at once cannot run on ``profile``'s engine (one line), or "" when they can."""
    backend = profile.backend.type
    if n <= 1:
        return ""
    if backend == "llama_cpp":
        from slm_agent.engines.llama_pool import slots_problem

        return slots_problem(profile, n)
    if backend in CONCURRENT_BACKENDS:
        return ""
    return (f"{n} calls at once need a server backend or llama_cpp ({', '.join(CONCURRENT_BACKENDS)}); model "
            f"{profile.name} runs in the agent's process ({backend}), which serves one call at a time: use 1")


def create_engine(profile: Union[Profile, str, "os.PathLike[str]"], *, slots: int = 1) -> Engine:
    """Build the engine a profile describes (loading the model if local).

    ``profile`` may be a :class:`Profile` or a profile name/path for
    :func:`slm_agent.profiles.load_profile`.  ``slots``: calls the engine serves at once (the
    agent's ``max_parallel_goals``); a local llama.cpp model then loads that many contexts
    (:class:`slm_agent.engines.llama_pool.LlamaCppPool`), server backends need nothing.
    Raises :class:`EngineError` when the backend cannot start and ``ProfileError`` for a
    bad profile.
    """
    if not isinstance(profile, Profile):
        profile = load_profile(profile)
    kind = profile.backend.type
    if kind == "llama_cpp":
        if slots > 1:
            from slm_agent.engines.llama_pool import LlamaCppPool

            return LlamaCppPool(profile, slots)
        from slm_agent.engines.llama_cpp import LlamaCppEngine

        return LlamaCppEngine(profile)
    if kind == "openai_http":
        from slm_agent.engines.openai_http import OpenAIHttpEngine

        return OpenAIHttpEngine(profile)
    if kind == "tensorrt_llm":
        from slm_agent.engines.tensorrt_llm import TensorRTLLMEngine

        return TensorRTLLMEngine(profile)
    raise EngineError(f"unknown backend type {kind!r}")  # unreachable: profiles validate it
