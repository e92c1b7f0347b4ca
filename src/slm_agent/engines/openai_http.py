"""Streaming client for OpenAI-compatible servers.

One client for trtllm-serve, vLLM, llama.cpp's llama-server, Ollama and NIM:
they all speak ``POST /v1/chat/completions`` (messages) and
``POST /v1/completions`` (raw prompt) with ``stream: true`` server-sent
events.  What differs is the optional extras, so each is used only when the
profile says the server has it:

* ``stream_options: {include_usage: true}`` -> a final chunk with ``usage``
  (exact prompt/completion/cached token counts);
* llama-server's ``timings`` object (its own prompt/decode ms and counts,
  ``cache_n`` = reused prompt tokens), kept in ``engine_counters``;
* structured output as ``response_format: json_schema`` and/or vLLM's
  ``guided_json`` (``structured_output``) and a GBNF ``grammar`` field.

Token counting: each SSE delta that carries generated text (content,
reasoning or tool-call arguments) marks a token for TTFT.  ``decode_tokens``
is the server's ``usage.completion_tokens`` when it sends one and the number
of such deltas otherwise -- exact for servers that flush one token per event
(llama.cpp, vLLM, trtllm-serve by default), an undercount for servers that
batch several tokens into one event; ``engine_counters['usage_present']``
says which was used.

Every failure -- nothing listening, HTTP error status, a body that is not an
SSE stream, malformed JSON, silence longer than the read timeout, a stream
that ends without finishing -- becomes :class:`EngineError` with the URL and
the reason, never a hang or a raw httpx/JSON exception.
"""
from __future__ import annotations

import json
import math
import os
import time
from typing import Any, Iterator, Optional

from slm_agent.coerce import num
from slm_agent.engines.base import ChatRequest, Engine, EngineError, StreamChunk, StreamTimer
from slm_agent.profiles import Profile

try:
    import httpx
except ImportError as _exc:  # pragma: no cover - only without httpx
    httpx = None  # type: ignore[assignment]
    _IMPORT_ERROR: Optional[BaseException] = _exc
else:
    _IMPORT_ERROR = None

__all__ = ["OpenAIHttpEngine"]

_SSE_FIELDS = ("data", "event", "id", "retry")


class OpenAIHttpEngine(Engine):
    """Chat/completions streaming against an OpenAI-compatible endpoint."""

    backend = "openai_http"

    def __init__(self, profile: Profile) -> None:
        if httpx is None:
            raise EngineError(f"openai_http: httpx is not installed ({_IMPORT_ERROR}); pip install httpx")
        super().__init__(model=profile.model.name, engine_name=f"openai_http:{profile.name}")
        self.profile = profile
        self.options = profile.backend.openai_http
        self.base_url = self.options.base_url.rstrip("/")
        o = self.options
        self._timeout = httpx.Timeout(
            connect=o.connect_timeout_s, read=o.read_timeout_s, write=o.read_timeout_s, pool=o.connect_timeout_s
        )
        self._client: Optional[httpx.Client] = httpx.Client(timeout=self._timeout, trust_env=False)

    def close(self) -> None:
        client, self._client = self._client, None
        if client is not None:
            client.close()

    # ------------------------------------------------------------ request

    def _headers(self) -> dict[str, str]:
        headers = {"Accept": "text/event-stream", **self.options.headers}
        env = self.options.api_key_env
        key = os.environ.get(env, "") if env else ""
        if key:
            headers["Authorization"] = f"Bearer {key}"
        return headers

    def build_body(self, request: ChatRequest) -> tuple[str, dict[str, Any]]:
        """(URL, JSON body) for ``request``; public so tests/benchmarks can inspect it."""
        o = self.options
        body: dict[str, Any] = {
            "model": self.model,
            "stream": True,
            "max_tokens": request.max_tokens,
            "temperature": request.temperature,
            "top_p": request.top_p,
        }
        if request.top_k > 0:
            body["top_k"] = request.top_k  # non-OpenAI but accepted by vLLM/llama-server/trtllm-serve
        if request.seed is not None:
            body["seed"] = request.seed
        stop = list(dict.fromkeys(list(request.stop) + list(self.profile.chat.stop)))
        if stop:
            body["stop"] = stop
        if o.include_usage:
            body["stream_options"] = {"include_usage": True}
        if request.prompt is not None:
            url = f"{self.base_url}/completions"
            body["prompt"] = request.prompt
            if o.logprobs:
                body["logprobs"] = 2
        else:
            if not request.messages:
                raise EngineError("openai_http: ChatRequest has neither prompt nor messages")
            url = f"{self.base_url}/chat/completions"
            body["messages"] = request.messages
            if o.logprobs:
                body["logprobs"], body["top_logprobs"] = True, 2
            if request.tools and o.send_tools:
                body["tools"] = request.tools
            if self.profile.chat.template_kwargs:
                body["chat_template_kwargs"] = dict(self.profile.chat.template_kwargs)
        if request.json_schema is not None and request.grammar is not None:
            raise EngineError("openai_http: give json_schema or grammar, not both")
        if request.json_schema is not None:
            mode = o.structured_output
            if mode == "none":
                raise EngineError(
                    f"openai_http: profile {self.profile.name} says the server cannot do "
                    "structured output (structured_output: none)"
                )
            if mode in ("json_schema", "both"):
                body["response_format"] = {
                    "type": "json_schema",
                    "json_schema": {"name": "response", "schema": request.json_schema, "strict": True},
                }
            if mode in ("guided_json", "both"):
                body["guided_json"] = request.json_schema
            if mode == "json_object_schema":
                body["response_format"] = {"type": "json_object", "schema": request.json_schema}
        if request.grammar is not None:
            if not o.grammar_field:
                raise EngineError(
                    f"openai_http: profile {self.profile.name} has no grammar_field; "
                    "this server cannot take a GBNF grammar"
                )
            body[o.grammar_field] = request.grammar
        body.update(o.extra_body)
        return url, body

    # ------------------------------------------------------------- stream

    def stream(self, request: ChatRequest) -> Iterator[StreamChunk]:
        if self._client is None:
            raise EngineError("openai_http: engine is closed")
        url, body = self.build_body(request)
        deadline = (
            time.monotonic() + self.options.total_timeout_s if self.options.total_timeout_s else math.inf
        )
        timer = StreamTimer()
        timer.start()
        state = _StreamState()
        try:
            with self._client.stream("POST", url, json=body, headers=self._headers()) as resp:
                if resp.status_code >= 400:
                    detail = _snippet(_read_some(resp))
                    raise EngineError(f"openai_http: HTTP {resp.status_code} from {url}: {detail}")
                ctype = resp.headers.get("content-type", "")
                if "text/event-stream" not in ctype:
                    detail = _snippet(_read_some(resp))
                    raise EngineError(
                        f"openai_http: {url} did not answer with an SSE stream "
                        f"(content-type {ctype or 'missing'!r}): {detail}"
                    )
                for line in resp.iter_lines():
                    if time.monotonic() > deadline:
                        raise EngineError(
                            f"openai_http: {url} exceeded total_timeout_s={self.options.total_timeout_s}"
                        )
                    for text in state.feed(line, url, timer):
                        yield StreamChunk(text=text)
                    if state.done:
                        break
        except EngineError:
            raise
        except httpx.ConnectTimeout as exc:
            raise EngineError(
                f"openai_http: connecting to {url} timed out after {self.options.connect_timeout_s}s"
            ) from exc
        except httpx.ConnectError as exc:
            raise EngineError(f"openai_http: cannot connect to {url} (is the server running?): {exc}") from exc
        except httpx.ReadTimeout as exc:
            raise EngineError(
                f"openai_http: no data from {url} for read_timeout_s={self.options.read_timeout_s}s"
            ) from exc
        except httpx.TimeoutException as exc:
            raise EngineError(f"openai_http: timeout talking to {url}: {exc}") from exc
        except httpx.HTTPError as exc:  # RemoteProtocolError, ReadError, ...
            raise EngineError(f"openai_http: HTTP failure talking to {url}: {type(exc).__name__}: {exc}") from exc
        if not state.done and not state.finish_reason:
            raise EngineError(f"openai_http: stream from {url} ended before [DONE] or a finish_reason")
        tail = state.tool_call_text()
        metrics = timer.finish(
            engine=self.engine_name,
            backend=self.backend,
            model=self.model,
            prompt_tokens=state.prompt_tokens(),
            cached_prompt_tokens=state.cached_tokens(),
            decode_tokens=state.decode_tokens(timer.tokens),
            finish_reason=state.finish_reason or "",
            engine_counters=state.counters(timer.tokens),
        )
        metrics.min_logprob, metrics.top_margin = state.min_logprob, state.top_margin
        yield StreamChunk(text=tail, metrics=metrics)


class _StreamState:
    """Parses SSE lines and keeps what the final metrics need."""

    def __init__(self) -> None:
        self.done = False
        self.finish_reason: Optional[str] = None
        self.usage: Optional[dict[str, Any]] = None
        self.timings: Optional[dict[str, Any]] = None
        self.events = 0
        self.reasoning_chars = 0
        self.tool_calls: dict[int, dict[str, str]] = {}
        #: confidence from the server's logprobs (engines/confidence.py's meaning; NaN: none sent)
        self.min_logprob = math.nan
        self.top_margin = math.nan
        self._logprob_tokens = 0

    def _logprobs(self, lp: Any) -> None:
        """Fold one choice's ``logprobs`` (chat: ``content[]`` entries with ``logprob`` and
        ``top_logprobs``; completions: ``token_logprobs`` and ``top_logprobs`` maps)."""
        if not isinstance(lp, dict):
            return
        entries: list[tuple[Any, list[Any]]] = []
        if isinstance(lp.get("content"), list):
            for e in lp["content"]:
                if isinstance(e, dict):
                    tops = [t.get("logprob") for t in e.get("top_logprobs") or [] if isinstance(t, dict)]
                    entries.append((e.get("logprob"), tops))
        elif isinstance(lp.get("token_logprobs"), list):
            tops_all = lp.get("top_logprobs") or []
            for i, value in enumerate(lp["token_logprobs"]):
                top = tops_all[i] if i < len(tops_all) and isinstance(tops_all[i], dict) else {}
                entries.append((value, list(top.values())))
        for value, tops in entries:
            v = num(value)
            if self._logprob_tokens == 0:
                ps = sorted((math.exp(t) for t in map(num, tops) if math.isfinite(t)), reverse=True)
                self.top_margin = ps[0] - ps[1] if len(ps) >= 2 else math.nan
            self._logprob_tokens += 1
            if math.isfinite(v) and not (v >= self.min_logprob):
                self.min_logprob = v

    def feed(self, line: str, url: str, timer: StreamTimer) -> list[str]:
        line = line.rstrip("\r")
        if not line or line.startswith(":"):
            return []  # event separator / SSE comment (keep-alive)
        name, sep, value = line.partition(":")
        if not sep or name not in _SSE_FIELDS:
            raise EngineError(f"openai_http: {url} sent a non-SSE line: {_snippet(line.encode())}")
        if name != "data":
            return []
        data = value[1:] if value.startswith(" ") else value
        if data.strip() == "[DONE]":
            self.done = True
            return []
        try:
            payload = json.loads(data)
        except json.JSONDecodeError as exc:
            raise EngineError(f"openai_http: {url} sent invalid JSON in an event: {_snippet(data.encode())}") from exc
        if not isinstance(payload, dict):
            raise EngineError(f"openai_http: {url} sent a non-object event: {_snippet(data.encode())}")
        if "error" in payload:
            err = payload["error"]
            msg = err.get("message", err) if isinstance(err, dict) else err
            raise EngineError(f"openai_http: server error from {url}: {msg}")
        self.events += 1
        if isinstance(payload.get("usage"), dict):
            self.usage = payload["usage"]
        if isinstance(payload.get("timings"), dict):
            self.timings = payload["timings"]
        out: list[str] = []
        for choice in payload.get("choices") or []:
            if choice.get("finish_reason"):
                self.finish_reason = choice["finish_reason"]
            if choice.get("logprobs"):
                self._logprobs(choice["logprobs"])
            if "delta" in choice:
                delta = choice.get("delta") or {}
                text = delta.get("content") or ""
                reasoning = delta.get("reasoning_content") or delta.get("reasoning") or ""
                calls = delta.get("tool_calls") or []
            else:  # /v1/completions
                text, reasoning, calls = choice.get("text") or "", "", []
            for call in calls:
                slot = self.tool_calls.setdefault(int(call.get("index", 0)), {"name": "", "arguments": ""})
                fn = call.get("function") or {}
                slot["name"] += fn.get("name") or ""
                slot["arguments"] += fn.get("arguments") or ""
            if text or reasoning or calls:
                timer.token()
            self.reasoning_chars += len(reasoning)
            if text:
                out.append(text)
        return out

    def tool_call_text(self) -> str:
        """Server-parsed tool calls as canonical JSON lines for the agent's parser."""
        lines = []
        for _, call in sorted(self.tool_calls.items()):
            try:
                args: Any = json.loads(call["arguments"]) if call["arguments"] else {}
            except json.JSONDecodeError:
                args = call["arguments"]
            lines.append(json.dumps({"name": call["name"], "arguments": args}))
        return "\n".join(lines)

    def _usage_int(self, key: str) -> Optional[int]:
        if self.usage and isinstance(self.usage.get(key), int):
            return int(self.usage[key])
        return None

    def prompt_tokens(self) -> int:
        n = self._usage_int("prompt_tokens")
        if n is None and self.timings:
            # llama-server: prompt_n excludes the cached part
            n = int(self.timings.get("prompt_n", 0)) + int(self.timings.get("cache_n", 0))
        return n or 0

    def cached_tokens(self) -> int:
        details = (self.usage or {}).get("prompt_tokens_details") or {}
        if isinstance(details.get("cached_tokens"), int):
            return int(details["cached_tokens"])
        if self.timings and isinstance(self.timings.get("cache_n"), int):
            return int(self.timings["cache_n"])
        return 0

    def decode_tokens(self, counted: int) -> int:
        n = self._usage_int("completion_tokens")
        return counted if n is None else n

    def counters(self, counted: int) -> dict[str, float]:
        c: dict[str, float] = {
            "usage_present": 1.0 if self.usage else 0.0,
            "sse_events": float(self.events),
            "delta_tokens_counted": float(counted),
            "reasoning_chars": float(self.reasoning_chars),
            "tool_calls": float(len(self.tool_calls)),
        }
        for key in ("prompt_tokens", "completion_tokens", "total_tokens"):
            n = self._usage_int(key)
            if n is not None:
                c[f"server_{key}"] = float(n)
        for key, val in (self.timings or {}).items():
            if isinstance(val, (int, float)) and not isinstance(val, bool):
                c[f"server_timings_{key}"] = float(val)
        return c


def _read_some(resp: "httpx.Response", limit: int = 2048) -> bytes:
    """At most ``limit`` bytes of a body: enough for an error message, and a
    junk server streaming forever cannot keep us reading."""
    buf = b""
    for chunk in resp.iter_bytes():
        buf += chunk
        if len(buf) >= limit:
            break
    return buf[:limit]


def _snippet(raw: bytes, limit: int = 200) -> str:
    text = raw.decode("utf-8", errors="replace").strip()
    return repr(text[:limit] + ("..." if len(text) > limit else ""))
