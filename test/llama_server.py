"""llama-cpp-python's OpenAI-compatible server on loopback, for tests of the openai_http path.

One helper for every test that needs a real server: started as a child
process on a free port, ready when ``/v1/models`` answers, stopped (TERM,
then KILL) when the context ends.  A server that exits or is not ready in
time fails the test with its stderr.
"""
from __future__ import annotations

import contextlib
import socket
import subprocess
import sys
import time
from typing import Iterator

import pytest


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@contextlib.contextmanager
def llama_server(model: str, *args: str, ready_s: float = 120.0) -> Iterator[str]:
    """``python -m llama_cpp.server --model MODEL ARGS...``; yields its base URL (``.../v1``)."""
    import httpx

    port = free_port()
    cmd = [sys.executable, "-m", "llama_cpp.server", "--model", model, "--host", "127.0.0.1",
           "--port", str(port), "--verbose", "False", *args]
    proc = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    url = f"http://127.0.0.1:{port}/v1"
    try:
        deadline = time.monotonic() + ready_s
        while True:
            if proc.poll() is not None:
                err = proc.stderr.read().decode(errors="replace") if proc.stderr else ""
                pytest.fail(f"llama_cpp.server exited with {proc.returncode}: {err[-2000:]}")
            try:
                if httpx.get(f"{url}/models", timeout=1.0).status_code == 200:
                    break
            except httpx.HTTPError:
                pass
            if time.monotonic() > deadline:
                pytest.fail(f"llama_cpp.server did not become ready within {ready_s:g} s")
            time.sleep(0.25)
        yield url
    finally:
        proc.terminate()
        try:
            proc.wait(timeout=15)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait(timeout=5)
