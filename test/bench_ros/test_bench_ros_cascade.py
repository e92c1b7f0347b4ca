"""``slm-agent bench --fallback-model`` end to end (issue 26): the real agent node with two
OpenAI-compatible engines, each a loopback server that always gives one fixed reply (not a
model): the primary's reply does not decode, so every step goes to the fallback, and
results.jsonl records which model answered each step and why."""
from __future__ import annotations

import json
import subprocess
import sys
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Iterator

import pytest

pytest.importorskip("bfcl_eval", reason="bfcl_eval not installed (pip install --no-deps bfcl-eval==2026.3.23)")
pytest.importorskip("rclpy", reason="rclpy (ROS 2 Python client) not installed")
pytest.importorskip("httpx", reason="the agent's openai_http engine needs httpx")
action = pytest.importorskip("slm_agent.action", reason="slm_agent interfaces not generated/installed")

sys.path.insert(0, str(Path(__file__).resolve().parent))
from bench_helpers import REPO, jsonl_records  # noqa: E402

CLI = [sys.executable, "-m", "slm_agent.cli"]
pytestmark = pytest.mark.timeout(300)

if "step_models" not in action.RunTask.Result.get_fields_and_field_types():
    pytest.skip("the built interfaces predate issue 26 (no RunTask step_models): run python3 tools/bootstrap.py",
                allow_module_level=True)


class FixedReply:
    """Answers every chat completion with ``text`` as a server-sent event stream."""

    def __init__(self, text: str) -> None:
        self.requests = 0

        outer = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def log_message(self, *_args) -> None:
                pass

            def do_POST(self) -> None:  # noqa: N802 - http.server API
                self.rfile.read(int(self.headers.get("Content-Length", "0")))
                outer.requests += 1
                self.send_response(200)
                self.send_header("Content-Type", "text/event-stream")
                self.send_header("Connection", "close")
                self.end_headers()
                self.close_connection = True
                for event in ({"choices": [{"index": 0, "delta": {"content": text}, "finish_reason": None}]},
                              {"choices": [{"index": 0, "delta": {}, "finish_reason": "stop"}]}):
                    self.wfile.write(b"data: " + json.dumps(event).encode() + b"\n\n")
                self.wfile.write(b"data: [DONE]\n\n")
                self.wfile.flush()

        self.httpd = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.httpd.daemon_threads = True
        self.url = f"http://127.0.0.1:{self.httpd.server_address[1]}/v1"
        threading.Thread(target=self.httpd.serve_forever, daemon=True).start()

    def profile(self, path: Path, name: str) -> Path:
        path.write_text(f"name: {name}\ndescription: fixed-reply loopback server (test)\nmodel: {{name: {name}}}\n"
                        "backend:\n  type: openai_http\n  openai_http:\n"
                        f"    base_url: {self.url}\n    connect_timeout_s: 5.0\n    read_timeout_s: 60.0\n"
                        "    include_usage: false\nchat: {mode: template}\nsampling: {max_tokens: 64}\n",
                        encoding="utf-8")
        return path

    def stop(self) -> None:
        self.httpd.shutdown()
        self.httpd.server_close()


@pytest.fixture
def servers() -> Iterator[tuple[FixedReply, FixedReply]]:
    small = FixedReply('[{"name": "calculate_triangle_area", "arguments": {')   # call-like, does not decode
    large = FixedReply("I cannot tell.")                                        # a plain-text answer
    yield small, large
    small.stop()
    large.stop()


def test_bench_with_a_fallback_records_per_step_model_and_trigger(servers, tmp_path):
    small, large = servers
    out = tmp_path / "run"
    res = subprocess.run([*CLI, "bench", "--model", str(small.profile(tmp_path / "small.yaml", "small")),
                          "--fallback-model", str(large.profile(tmp_path / "large.yaml", "large")),
                          "--escalate-on", "undecodable", "--constrained", "off",
                          "--categories", "simple_python", "--limit", "1", "--output-dir", str(out),
                          "--no-record", "--no-telemetry", "--no-report", "--quiet"],
                         capture_output=True, text=True, timeout=240, cwd=REPO)
    assert res.returncode == 0, res.stdout[-3000:] + res.stderr[-3000:]
    (rec,) = jsonl_records(out / "results.jsonl")
    assert rec["steps"] == [{"turn": 0, "step": 0, "model": "large", "trigger": "undecodable"}]
    assert rec["llm_steps"] == 1 and rec["steps_escalated"] == 1
    assert [(m["model"], m["escalation"], m["step"]) for m in rec["metrics"]] == [
        ("small", "", 0), ("large", "undecodable", 0)]
    assert small.requests == 1 and large.requests == 1
