"""OpenAIHttpEngine against a REAL OpenAI-compatible server
(``python -m llama_cpp.server`` with the bundled model, on loopback), plus
tiny stdlib servers on loopback for the failure modes a real server will not
produce on demand: junk bodies, broken SSE, stalls, and the usage/timings
fields of llama-server/vLLM that llama-cpp-python's server does not send.
"""
from __future__ import annotations

import json
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any, Callable, Iterator

import httpx
import pytest

from engines_fixtures import TOOL_CALL_SCHEMA
from llama_server import free_port, llama_server
from slm_agent.engines import ChatRequest, EngineError, create_engine
from slm_agent.engines.openai_http import OpenAIHttpEngine
from slm_agent.profiles import Profile, load_profile, parse_profile

pytestmark = pytest.mark.timeout(300)


def _profile(base_url: str, **options: Any) -> Profile:
    opts = {"base_url": base_url, "connect_timeout_s": 2.0, "read_timeout_s": 30.0, **options}
    return parse_profile(
        {"model": {"name": "gemma"}, "backend": {"type": "openai_http", "openai_http": opts}},
        name="test-http",
    )


# ----------------------------------------------------------- real server


@pytest.fixture(scope="module")
def server_url() -> Iterator[str]:
    model = load_profile("gemma3-270m-q4km").model_path
    assert model is not None
    with llama_server(model, "--n_ctx", "1024", "--n_threads", "2", "--chat_format", "gemma") as url:
        yield url


@pytest.fixture(scope="module")
def engine(server_url: str) -> Iterator[OpenAIHttpEngine]:
    eng = create_engine(_profile(server_url, structured_output="json_object_schema", grammar_field="grammar"))
    assert isinstance(eng, OpenAIHttpEngine)
    yield eng
    eng.close()


def test_real_server_raw_completion_streams_with_metrics(engine: OpenAIHttpEngine) -> None:
    chunks = list(engine.stream(ChatRequest(prompt="The capital of France is", max_tokens=16)))
    m = chunks[-1].metrics
    assert m is not None and all(c.metrics is None for c in chunks[:-1])
    texts = [c.text for c in chunks if c.text]
    assert len(texts) >= 5 and "".join(texts).strip()
    assert m.backend == "openai_http" and m.model == "gemma"
    assert m.finish_reason in ("length", "stop")
    # llama-cpp-python's server sends no usage: tokens are counted from deltas
    assert m.engine_counters["usage_present"] == 0.0
    assert m.decode_tokens == m.engine_counters["delta_tokens_counted"] >= 5
    if m.finish_reason == "length":
        assert m.decode_tokens == 16
    assert 0 < m.ttft_s < m.total_s
    assert m.decode_tokens_per_s == pytest.approx((m.decode_tokens - 1) / (m.total_s - m.ttft_s), rel=1e-6)
    assert m.prompt_tokens == 0  # unknown without usage; documented


def test_real_server_chat_completion(engine: OpenAIHttpEngine) -> None:
    out = engine.complete(ChatRequest(messages=[{"role": "user", "content": "Say hello."}], max_tokens=12))
    assert out.text.strip()
    assert out.metrics.decode_tokens >= 1 and out.metrics.ttft_s > 0


def test_real_server_json_schema(engine: OpenAIHttpEngine) -> None:
    # llama-cpp-python's server honours response_format on chat completions only
    msg = {"role": "user", "content": 'Tool call for "drive to the door slowly" as JSON.'}
    out = engine.complete(ChatRequest(messages=[msg], json_schema=TOOL_CALL_SCHEMA, max_tokens=96))
    call = json.loads(out.text)
    jsonschema = pytest.importorskip("jsonschema", reason="jsonschema not installed; structural check only")
    jsonschema.validate(call, TOOL_CALL_SCHEMA)


def test_real_server_grammar_field(engine: OpenAIHttpEngine) -> None:
    out = engine.complete(ChatRequest(prompt="Is the sky blue? Answer:", grammar='root ::= " yes" | " no"', max_tokens=8))
    assert out.text in (" yes", " no")


# ------------------------------------------------------ failure modes


def test_nothing_listening_is_an_engine_error_within_timeout() -> None:
    port = free_port()  # bound and released: nothing listens there now
    eng = OpenAIHttpEngine(_profile(f"http://127.0.0.1:{port}/v1", connect_timeout_s=2.0))
    t0 = time.monotonic()
    with pytest.raises(EngineError, match="cannot connect"):
        eng.complete(ChatRequest(prompt="hi", max_tokens=4))
    assert time.monotonic() - t0 < 2.0 + 1.0


class _FakeServer:
    """A stdlib HTTP server on loopback whose POST handler is a function."""

    def __init__(self, handler: Callable[[BaseHTTPRequestHandler], None]) -> None:
        outer = self
        self.requests: list[dict[str, Any]] = []

        class H(BaseHTTPRequestHandler):
            def do_POST(self) -> None:  # noqa: N802 - stdlib name
                length = int(self.headers.get("content-length", 0))
                outer.requests.append({"path": self.path, "headers": dict(self.headers), "body": json.loads(self.rfile.read(length) or b"{}")})
                try:
                    handler(self)
                except (BrokenPipeError, ConnectionResetError):
                    pass

            def log_message(self, *args: Any) -> None:
                pass

        self.httpd = ThreadingHTTPServer(("127.0.0.1", 0), H)
        self.httpd.daemon_threads = True
        self.url = f"http://127.0.0.1:{self.httpd.server_address[1]}/v1"
        self.thread = threading.Thread(target=self.httpd.serve_forever, daemon=True)

    def __enter__(self) -> "_FakeServer":
        self.thread.start()
        return self

    def __exit__(self, *exc: Any) -> None:
        self.httpd.shutdown()
        self.httpd.server_close()


def _respond(h: BaseHTTPRequestHandler, status: int, ctype: str, body: bytes) -> None:
    h.send_response(status)
    h.send_header("Content-Type", ctype)
    h.send_header("Content-Length", str(len(body)))
    h.end_headers()
    h.wfile.write(body)


def _sse(h: BaseHTTPRequestHandler, events: list[str], delay: float = 0.0) -> None:
    h.send_response(200)
    h.send_header("Content-Type", "text/event-stream")
    h.end_headers()
    for e in events:
        h.wfile.write(e.encode())
        h.wfile.flush()
        if delay:
            time.sleep(delay)


def test_garbage_html_response_is_an_engine_error() -> None:
    with _FakeServer(lambda h: _respond(h, 200, "text/html", b"<html><body>Welcome to nginx!</body></html>")) as srv:
        with pytest.raises(EngineError, match="did not answer with an SSE stream.*text/html.*nginx"):
            OpenAIHttpEngine(_profile(srv.url)).complete(ChatRequest(prompt="hi", max_tokens=4))


def test_junk_lines_in_event_stream_are_an_engine_error() -> None:
    with _FakeServer(lambda h: _sse(h, ["this is not sse\n\n"])) as srv:
        with pytest.raises(EngineError, match="non-SSE line"):
            OpenAIHttpEngine(_profile(srv.url)).complete(ChatRequest(prompt="hi", max_tokens=4))


def test_invalid_json_event_is_an_engine_error() -> None:
    with _FakeServer(lambda h: _sse(h, ["data: {not json\n\n"])) as srv:
        with pytest.raises(EngineError, match="invalid JSON"):
            OpenAIHttpEngine(_profile(srv.url)).complete(ChatRequest(prompt="hi", max_tokens=4))


def test_http_error_status_is_an_engine_error() -> None:
    body = json.dumps({"error": {"message": "model 'gemma' not found"}}).encode()
    with _FakeServer(lambda h: _respond(h, 404, "application/json", body)) as srv:
        with pytest.raises(EngineError, match="HTTP 404.*not found"):
            OpenAIHttpEngine(_profile(srv.url)).complete(ChatRequest(prompt="hi", max_tokens=4))


def test_stream_cut_before_done_is_an_engine_error() -> None:
    chunk = json.dumps({"choices": [{"index": 0, "text": "a", "finish_reason": None}]})
    with _FakeServer(lambda h: _sse(h, [f"data: {chunk}\n\n"])) as srv:
        with pytest.raises(EngineError, match="ended before"):
            OpenAIHttpEngine(_profile(srv.url)).complete(ChatRequest(prompt="hi", max_tokens=4))


def test_silent_server_hits_read_timeout() -> None:
    with _FakeServer(lambda h: time.sleep(5)) as srv:
        eng = OpenAIHttpEngine(_profile(srv.url, read_timeout_s=0.5))
        t0 = time.monotonic()
        with pytest.raises(EngineError, match="read_timeout_s=0.5"):
            eng.complete(ChatRequest(prompt="hi", max_tokens=4))
        assert time.monotonic() - t0 < 0.5 + 1.5


def test_trickling_server_hits_total_timeout() -> None:
    with _FakeServer(lambda h: _sse(h, [": keep-alive\n\n"] * 40, delay=0.1)) as srv:
        eng = OpenAIHttpEngine(_profile(srv.url, read_timeout_s=2.0, total_timeout_s=0.8))
        t0 = time.monotonic()
        with pytest.raises(EngineError, match="total_timeout_s=0.8"):
            eng.complete(ChatRequest(prompt="hi", max_tokens=4))
        assert time.monotonic() - t0 < 0.8 + 1.0


# ---------------------------------- usage / timings / tool calls parsing


def _chat_event(delta: dict[str, Any], finish: Any = None, **extra: Any) -> str:
    return "data: " + json.dumps({"choices": [{"index": 0, "delta": delta, "finish_reason": finish}], **extra}) + "\n\n"


def test_server_usage_and_timings_are_recorded() -> None:
    events = [
        _chat_event({"role": "assistant"}),
        _chat_event({"reasoning_content": "think"}),
        _chat_event({"content": "Hel"}),
        _chat_event({"content": "lo"}),
        _chat_event({}, "stop", timings={"prompt_n": 5, "prompt_ms": 12.5, "predicted_n": 7, "predicted_ms": 70.0, "cache_n": 95}),
        "data: " + json.dumps({"choices": [], "usage": {"prompt_tokens": 100, "completion_tokens": 7, "total_tokens": 107, "prompt_tokens_details": {"cached_tokens": 96}}}) + "\n\n",
        "data: [DONE]\n\n",
    ]
    with _FakeServer(lambda h: _sse(h, events, delay=0.01)) as srv:
        eng = OpenAIHttpEngine(_profile(srv.url))
        out = eng.complete(ChatRequest(messages=[{"role": "user", "content": "hi"}], max_tokens=8))
        sent = srv.requests[0]
    assert out.text == "Hello"
    m = out.metrics
    assert m.decode_tokens == 7  # server usage wins over the 3 counted deltas
    assert m.engine_counters["delta_tokens_counted"] == 3.0
    assert m.prompt_tokens == 100 and m.cached_prompt_tokens == 96
    assert m.finish_reason == "stop"
    assert m.engine_counters["server_timings_prompt_ms"] == 12.5
    assert m.engine_counters["server_timings_cache_n"] == 95.0
    assert m.engine_counters["reasoning_chars"] == 5.0
    assert sent["path"] == "/v1/chat/completions"
    assert sent["body"]["stream"] is True and sent["body"]["stream_options"] == {"include_usage": True}


def test_llama_server_timings_without_usage() -> None:
    events = [
        _chat_event({"content": "a"}),
        _chat_event({}, "length", timings={"prompt_n": 3, "cache_n": 40, "predicted_n": 1}),
        "data: [DONE]\n\n",
    ]
    with _FakeServer(lambda h: _sse(h, events)) as srv:
        m = OpenAIHttpEngine(_profile(srv.url)).complete(ChatRequest(prompt="x", max_tokens=1)).metrics
    assert m.prompt_tokens == 43 and m.cached_prompt_tokens == 40 and m.decode_tokens == 1


def test_server_parsed_tool_calls_become_json_text() -> None:
    events = [
        _chat_event({"tool_calls": [{"index": 0, "id": "c1", "type": "function", "function": {"name": "move_to", "arguments": ""}}]}),
        _chat_event({"tool_calls": [{"index": 0, "function": {"arguments": '{"target": "do'}}]}),
        _chat_event({"tool_calls": [{"index": 0, "function": {"arguments": 'or"}'}}]}),
        _chat_event({}, "tool_calls"),
        "data: [DONE]\n\n",
    ]
    with _FakeServer(lambda h: _sse(h, events)) as srv:
        eng = OpenAIHttpEngine(_profile(srv.url, send_tools=True))
        out = eng.complete(ChatRequest(messages=[{"role": "user", "content": "go"}], tools=[{"type": "function", "function": {"name": "move_to"}}]))
        assert srv.requests[0]["body"]["tools"][0]["function"]["name"] == "move_to"
    assert json.loads(out.text) == {"name": "move_to", "arguments": {"target": "door"}}
    assert out.metrics.decode_tokens == 3 and out.metrics.finish_reason == "tool_calls"


def test_api_key_is_read_from_the_named_env_var(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("SLM_TEST_KEY", "sekrit")
    events = [_chat_event({"content": "a"}, "stop"), "data: [DONE]\n\n"]
    with _FakeServer(lambda h: _sse(h, events)) as srv:
        OpenAIHttpEngine(_profile(srv.url, api_key_env="SLM_TEST_KEY")).complete(ChatRequest(prompt="x", max_tokens=1))
        headers = {k.lower(): v for k, v in srv.requests[0]["headers"].items()}
    assert headers["authorization"] == "Bearer sekrit"


def test_structured_output_body_per_profile_option() -> None:
    req = ChatRequest(messages=[{"role": "user", "content": "x"}], json_schema=TOOL_CALL_SCHEMA)
    _, body = OpenAIHttpEngine(_profile("http://127.0.0.1:9/v1", structured_output="json_schema")).build_body(req)
    assert body["response_format"]["type"] == "json_schema"
    assert body["response_format"]["json_schema"]["schema"] == TOOL_CALL_SCHEMA
    assert "guided_json" not in body
    _, body = OpenAIHttpEngine(_profile("http://127.0.0.1:9/v1", structured_output="guided_json")).build_body(req)
    assert body["guided_json"] == TOOL_CALL_SCHEMA and "response_format" not in body
    _, body = OpenAIHttpEngine(_profile("http://127.0.0.1:9/v1", structured_output="both")).build_body(req)
    assert "guided_json" in body and "response_format" in body
    with pytest.raises(EngineError, match="structured output"):
        OpenAIHttpEngine(_profile("http://127.0.0.1:9/v1", structured_output="none")).build_body(req)
    with pytest.raises(EngineError, match="grammar_field"):
        OpenAIHttpEngine(_profile("http://127.0.0.1:9/v1")).build_body(ChatRequest(prompt="x", grammar="root ::= \"a\""))


def test_shipped_openai_local_profile_builds_an_engine() -> None:
    p = load_profile("openai-local")
    eng = create_engine(p)
    assert isinstance(eng, OpenAIHttpEngine) and eng.base_url == "http://127.0.0.1:8080/v1"
    eng.close()
