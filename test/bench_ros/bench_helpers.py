"""Shared by the test/bench_ros tests: node processes, unique names, file waits.

Every node runs in its own interpreter (``python -m slm_agent.nodes.X``) with
the test session's environment (test/conftest.py: localhost-only DDS, a
random domain id, temp ROS_HOME/ROS_LOG_DIR); its console goes to a temp
file that failure messages quote.  Names (action, tool namespace) carry the
pid and a random suffix so a stale process can never answer another test.
"""
from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import tempfile
import time
import uuid
from pathlib import Path
from typing import Callable, Optional

import pytest

REPO = Path(__file__).resolve().parents[2]
EXIT_S = 20.0


def terminal_signals() -> None:
    """``preexec_fn``: SIGINT and SIGQUIT as a process started from a terminal has them.

    A test run started in the background by a non-interactive shell (``make test &``)
    inherits SIGINT *ignored*; Python then installs no KeyboardInterrupt handler in the
    children, and a test's Ctrl-C (SIGINT) would silently do nothing."""
    signal.signal(signal.SIGINT, signal.SIG_DFL)
    signal.signal(signal.SIGQUIT, signal.SIG_DFL)


def uid(tag: str) -> str:
    return f"{tag}_{os.getpid()}_{uuid.uuid4().hex[:6]}"


class Proc:
    """A node (or CLI) process; output captured in a temp file."""

    def __init__(self, argv: list[str], name: str, env: Optional[dict[str, str]] = None) -> None:
        self.name = name
        self.out = tempfile.NamedTemporaryFile(mode="w+", prefix=f"{name}_", suffix=".log", delete=False)
        full_env = dict(os.environ if env is None else env)
        full_env["PYTHONUNBUFFERED"] = "1"
        self.proc = subprocess.Popen(argv, stdout=self.out, stderr=subprocess.STDOUT, env=full_env,
                                     cwd=str(REPO), preexec_fn=terminal_signals)

    @classmethod
    def node(cls, module: str, params: dict, name: str = "", env=None, namespace: str = "") -> "Proc":
        args = [sys.executable, "-m", f"slm_agent.nodes.{module}", "--ros-args"]
        if namespace:
            args += ["-r", f"__ns:={namespace}"]
        for k, v in params.items():
            if isinstance(v, bool):
                v = "true" if v else "false"
            args += ["-p", f"{k}:={v}"]
        return cls(args, name or module, env)

    def log(self, tail: int = 4000) -> str:
        try:
            return Path(self.out.name).read_text(errors="replace")[-tail:]
        except OSError:
            return ""

    def wait_text(self, text: str, timeout_s: float) -> bool:
        end = time.monotonic() + timeout_s
        while time.monotonic() < end:
            if text in self.log(tail=10**7):
                return True
            if self.proc.poll() is not None:
                return text in self.log(tail=10**7)
            time.sleep(0.05)
        return False

    def wait(self, timeout_s: float) -> int:
        try:
            return self.proc.wait(timeout=timeout_s)
        except subprocess.TimeoutExpired:
            self.kill()
            pytest.fail(f"{self.name} did not finish within {timeout_s} s:\n{self.log()}")

    def send(self, sig: int) -> None:
        if self.proc.poll() is None:
            self.proc.send_signal(sig)

    def terminate(self, sig: int = signal.SIGTERM, timeout_s: float = EXIT_S) -> int:
        """Stop with ``sig``; returns the exit status (kills and fails on a hang)."""
        if self.proc.poll() is None:
            self.proc.send_signal(sig)
            try:
                self.proc.wait(timeout=timeout_s)
            except subprocess.TimeoutExpired:
                self.kill()
                pytest.fail(f"{self.name} ignored {signal.Signals(sig).name} for {timeout_s} s:\n{self.log()}")
        return self.proc.returncode

    def kill(self) -> None:
        if self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait(timeout=EXIT_S)

    def close(self) -> None:
        self.kill()
        self.out.close()
        try:
            os.unlink(self.out.name)
        except OSError:
            pass


def wait_until(pred: Callable[[], bool], timeout_s: float, period_s: float = 0.05) -> bool:
    end = time.monotonic() + timeout_s
    while time.monotonic() < end:
        if pred():
            return True
        time.sleep(period_s)
    return pred()


def jsonl_lines(path: Path) -> list[str]:
    if not path.exists():
        return []
    return [line for line in path.read_text(encoding="utf-8").split("\n") if line.strip()]


def jsonl_records(path: Path) -> list[dict]:
    """Every line parsed (fails on a malformed line: the file must stay valid JSONL)."""
    out = []
    for i, line in enumerate(jsonl_lines(path)):
        try:
            out.append(json.loads(line))
        except json.JSONDecodeError as exc:
            pytest.fail(f"{path} line {i + 1} is not JSON ({exc}): {line[:200]!r}")
    return out


def bench_params(output_dir: Path, action: str, tool_ns: str, **extra) -> dict:
    params = {"output_dir": str(output_dir), "agent_action": action, "tool_namespace": tool_ns,
              "model": "gold", "agent_wait_s": 60.0, "case_timeout_s": 60.0,
              "power_wait_s": 0.0}   # no power publisher in most tests: do not wait for one
    params.update(extra)
    return params
