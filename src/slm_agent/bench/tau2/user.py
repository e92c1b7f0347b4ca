"""tau2's own user simulator, its LLM calls answered by one of our engines (no ROS imports).

tau2's :class:`~tau2.user.user_simulator.UserSimulator` keeps the user's
state, flips roles, applies its guidelines and scenario prompt, and asks
``tau2.utils.llm_utils.generate`` for each message, which calls
``litellm.completion(model=<the user's llm>)``.  Rather than copying that
logic, this module registers a litellm *custom provider* (``slm_agent``):
``model="slm_agent/<key>"`` is answered by the :class:`~slm_agent.engines.Engine`
built from a model profile (:func:`slm_agent.engines.create_engine`).  So the
prompts, guidelines, stop tokens (``###STOP###``, ``###TRANSFER###``,
``###OUT-OF-SCOPE###``) and message handling are tau2's own; only the
transport is ours.  A profile with an ``openai_http`` backend (e.g.
``openai-local``) sends the calls to an OpenAI-compatible endpoint, so the
user may be the agent's own model or a larger one elsewhere.

One engine per profile per process (loaded on first use, kept, calls
serialized by a lock); each call's :class:`~slm_agent.engines.CallMetrics`
goes to the :class:`SimulatedUser` that asked (a thread-local sink: litellm
calls the provider in the caller's thread), so a case reports its own
user-side LLM calls even when cases run concurrently.
"""
from __future__ import annotations

import contextlib
import functools
import threading
import time
from dataclasses import dataclass, field
from typing import Any, Iterator, Optional

from slm_agent.bench.tau2 import data

#: the litellm provider name our engines answer under
PROVIDER = "slm_agent"


@dataclass
class _Entry:
    ref: str
    engine: Any
    profile: Any
    lock: threading.Lock = field(default_factory=threading.Lock)


_ENTRIES: dict[str, _Entry] = {}
_KEYS: dict[str, str] = {}
_REGISTRY_LOCK = threading.Lock()
#: ``sink``: the list the current thread's user calls' metrics go to
_LOCAL = threading.local()


class UserModelError(ValueError):
    """The user's model profile cannot be used; one line."""


def check_profile(ref: str, role: str = "user") -> None:
    """Load the profile ``ref`` (name or YAML path) as the user simulator (or the NL judge, ``role``) will;
    one-line error otherwise."""
    from slm_agent.profiles import load_profile

    try:
        load_profile(ref)
    except Exception as exc:  # noqa: BLE001 - ProfileError, YAML errors: reported in one line
        text = "; ".join(part.strip() for part in str(exc).splitlines() if part.strip())
        raise UserModelError(f"tau2 {role} model {ref!r}: {text}") from None


def engine_key(ref: str) -> str:
    """The litellm model key of profile ``ref``; loads its engine on first use."""
    with _REGISTRY_LOCK:
        key = _KEYS.get(ref)
        if key is not None:
            return key
        from slm_agent.engines import create_engine
        from slm_agent.profiles import load_profile

        profile = load_profile(ref)
        engine = create_engine(profile)
        key = f"u{len(_KEYS)}"
        _ENTRIES[key] = _Entry(ref, engine, profile)
        _KEYS[ref] = key
        _register_provider()
        return key


@contextlib.contextmanager
def collect_calls(sink: list[Any]) -> Iterator[list[Any]]:
    """Within the block, the CallMetrics of this thread's calls to our engines are appended to ``sink``."""
    before = getattr(_LOCAL, "sink", None)
    _LOCAL.sink = sink
    try:
        yield sink
    finally:
        _LOCAL.sink = before


def close_engines() -> None:
    """Release every user engine of this process (models, connections)."""
    with _REGISTRY_LOCK:
        for entry in _ENTRIES.values():
            entry.engine.close()
        _ENTRIES.clear()
        _KEYS.clear()


def _text(content: Any) -> str:
    if isinstance(content, str):
        return content
    if isinstance(content, list):   # OpenAI content parts
        return "".join(str(p.get("text", "")) for p in content if isinstance(p, dict))
    return "" if content is None else str(content)


@functools.lru_cache(maxsize=1)
def _provider_class() -> type:
    """litellm's CustomLLM subclass answering ``slm_agent/<key>`` (litellm imported only when needed)."""
    data.tau2()   # litellm offline and quiet first
    from litellm import CustomLLM
    from litellm.types.utils import Choices, Message, Usage

    class EngineProvider(CustomLLM):
        """litellm ``completion`` on one of our engines (what tau2's ``generate`` calls)."""

        def completion(self, model: str, messages: list, api_base: Any, custom_prompt_dict: Any,
                       model_response: Any, print_verbose: Any, encoding: Any, api_key: Any, logging_obj: Any,
                       optional_params: dict, *args: Any, **kwargs: Any) -> Any:
            entry = _ENTRIES.get(model)
            if entry is None:
                raise UserModelError(f"no user engine registered as {PROVIDER}/{model}")
            if optional_params.get("tools"):
                raise UserModelError("the tau2 user simulator called with tools (telecom's user tools are "
                                     "not served to a simulated user here)")
            msgs = [{"role": str(m.get("role", "user")), "content": _text(m.get("content"))} for m in messages]
            overrides: dict[str, Any] = {"messages": msgs}
            for name in ("temperature", "top_p", "max_tokens", "seed"):
                if optional_params.get(name) is not None:
                    overrides[name] = optional_params[name]
            fmt = optional_params.get("response_format")
            if isinstance(fmt, dict) and fmt.get("type") == "json_schema":   # constrained decoding (the judge)
                overrides["json_schema"] = dict((fmt.get("json_schema") or {}).get("schema") or {})
            if optional_params.get("stop"):
                stop = optional_params["stop"]
                overrides["stop"] = [stop] if isinstance(stop, str) else list(stop)
            request = entry.profile.make_request(**overrides)
            with entry.lock:
                done = entry.engine.complete(request)
            sink = getattr(_LOCAL, "sink", None)
            if sink is not None:
                sink.append(done.metrics)
            text = done.text.strip()
            finish = "length" if done.metrics.finish_reason == "length" else "stop"
            model_response.choices = [Choices(index=0, finish_reason=finish,
                                              message=Message(role="assistant", content=text))]
            model_response.model = f"{PROVIDER}/{entry.profile.name}"
            model_response.usage = Usage(prompt_tokens=done.metrics.prompt_tokens,
                                         completion_tokens=done.metrics.decode_tokens,
                                         total_tokens=done.metrics.prompt_tokens + done.metrics.decode_tokens)
            return model_response

    return EngineProvider


@functools.lru_cache(maxsize=1)
def _register_provider() -> Any:
    import litellm

    handler = _provider_class()()
    litellm.suppress_debug_info = True   # no "Provider List" banners on stdout
    providers = [p for p in (litellm.custom_provider_map or []) if p.get("provider") != PROVIDER]
    litellm.custom_provider_map = [*providers, {"provider": PROVIDER, "custom_handler": handler}]
    return handler


class SimulatedUser:
    """tau2's ``UserSimulator`` for one task and trial, its LLM on the profile ``ref``.

    :meth:`reply` takes the agent's text and returns the user's next message
    (tau2 adds both to the user's own state, as its orchestrator does).
    """

    def __init__(self, task: Any, ref: str, seed: Optional[int]) -> None:
        data.tau2()
        from tau2.user.base import is_valid_user_history_message
        from tau2.user.user_simulator import UserSimulator

        if task.user_scenario is None:
            raise UserModelError(f"tau2 task {task.id} has no user scenario to simulate")
        # num_retries=0: tau2 retries an empty answer, which a greedy engine would only repeat
        self.sim = UserSimulator(tools=None, instructions=str(task.user_scenario),
                                 llm=f"{PROVIDER}/{engine_key(ref)}", llm_args={"num_retries": 0})
        if seed is not None:
            self.sim.set_seed(int(seed))
        init = task.initial_state
        history = [m for m in ((init.message_history or []) if init else []) if is_valid_user_history_message(m)]
        self.state = self.sim.get_init_state(message_history=history)
        self.last_s = 0.0
        #: CallMetrics of this user's LLM calls, in order
        self.calls: list[Any] = []

    @property
    def system_prompt(self) -> str:
        return self.sim.system_prompt

    def reply(self, agent_text: str) -> str:
        from tau2.data_model.message import AssistantMessage

        t0 = time.monotonic()
        with collect_calls(self.calls):
            msg, self.state = self.sim.generate_next_message(
                AssistantMessage(role="assistant", content=agent_text), self.state)
        self.last_s = time.monotonic() - t0
        return msg.content or ""
