"""A node as a child process: its log file, console echo, and stop in order.

Why a log file first: a node's stdout/stderr go straight to
``logs/<name>.log`` (so the node's last words survive the parent), and a
thread follows the file to echo it.  Readiness is not decided here (see
:mod:`slm_agent.launcher.ready`): a log line is for people.
"""
from __future__ import annotations

import os
import re
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path
from typing import Optional, Sequence

from slm_agent.isolation import parent_death_preexec

#: executable name -> module with ``main(args)``; scripts/ has one file per entry
NODES: dict[str, str] = {
    "agent_node": "slm_agent.nodes.agent_node",
    "demo_robot_node": "slm_agent.nodes.demo_robot_node",
    "telemetry_node": "slm_agent.nodes.telemetry_node",
    "benchmark_node": "slm_agent.nodes.benchmark_node",
    "gold_agent_node": "slm_agent.nodes.gold_agent_node",
    "recorder_node": "slm_agent.nodes.recorder_node",
}

#: node console lines shown even when the console is quiet: a line moved to quarantine,
#: dropped or skipped, or a write that failed
QUIET_SHOWN = re.compile(r"\[(WARN|ERROR)\].*(quarantin|dropped|skipped|cannot write)", re.IGNORECASE)


def node_command(name: str, ros_args: Sequence[str] = ()) -> list[str]:
    """argv that runs node ``name`` in a fresh interpreter."""
    return [sys.executable, "-m", NODES[name], *ros_args]


class NodeProcess:
    """A node process.  Its stdout/stderr go straight to ``logs/<name>.log``; a thread
    follows the file to echo it to the console (``echo``; else only :data:`QUIET_SHOWN`
    lines, to stderr).  The node gets SIGTERM if this process dies (PR_SET_PDEATHSIG,
    which is per thread: so it is started from the main thread)."""

    def __init__(self, name: str, argv: list[str], log_dir: Path, echo: bool = True,
                 pass_fds: Sequence[int] = (), env: Optional[dict[str, str]] = None) -> None:
        if threading.current_thread() is not threading.main_thread():
            raise RuntimeError("node processes are started from the main thread (PR_SET_PDEATHSIG)")
        self.name = name
        self.lines: list[str] = []
        self.log_path = log_dir / f"{name}.log"
        with self.log_path.open("ab") as out:
            offset = out.tell()
            full_env = dict(os.environ if env is None else env, PYTHONUNBUFFERED="1")
            # own session: Ctrl-C reaches only the parent, which stops the nodes in order
            self.proc = subprocess.Popen(argv, stdin=subprocess.DEVNULL, stdout=out, stderr=subprocess.STDOUT,
                                         env=full_env, start_new_session=True, pass_fds=tuple(pass_fds),
                                         preexec_fn=parent_death_preexec())
        self._reader = self.log_path.open("rb")
        self._reader.seek(offset)
        self._echo = echo
        self._thread = threading.Thread(target=self._pump, name=f"log-{name}", daemon=True)
        self._thread.start()

    @property
    def pid(self) -> int:
        return self.proc.pid

    def alive(self) -> bool:
        return self.proc.poll() is None

    def _line(self, line: str) -> None:
        self.lines.append(line)
        if self._echo:
            sys.stdout.write(f"{self.name:>10s} | {line}")
            sys.stdout.flush()
        elif QUIET_SHOWN.search(line):
            sys.stderr.write(f"{self.name:>10s} | {line}")
            sys.stderr.flush()

    def _pump(self) -> None:
        buf = b""
        while True:
            exited = self.proc.poll() is not None
            chunk = self._reader.read(1 << 16)
            if chunk:
                buf += chunk
                *complete, buf = buf.split(b"\n")
                for raw in complete:
                    self._line(raw.decode("utf-8", "replace") + "\n")
                continue
            if exited:  # the file was read to its end after the process ended
                if buf:
                    self._line(buf.decode("utf-8", "replace") + "\n")
                break
            time.sleep(0.05)
        self._reader.close()

    def error_text(self, limit: int = 3) -> str:
        """The node's logged errors (``[ERROR]`` lines and their indented continuation), one
        line: what a one-line failure message quotes."""
        if self.proc.poll() is not None:
            self._thread.join(timeout=2.0)
        out: list[str] = []
        take = False
        for line in list(self.lines):
            text = line.rstrip("\n")
            if "(reason above)" in text:
                take = False
                continue
            if "[ERROR]" in text or text.startswith("Traceback"):
                take = True
                body = text.split("]: ", 1)[1] if "]: " in text else text
                out.append(body.strip())
            elif take and text.startswith((" ", "\t")) and text.strip():
                out[-1] += " " + text.strip()
            else:
                take = False
        return "; ".join(out[:limit])

    def stop(self, sig: int = signal.SIGTERM, timeout_s: float = 20.0) -> Optional[int]:
        if self.proc.poll() is None:
            try:
                self.proc.send_signal(sig)
                self.proc.wait(timeout=timeout_s)
            except subprocess.TimeoutExpired:
                print(f"slm-agent: {self.name} ignored {signal.Signals(sig).name} for {timeout_s:.0f} s; killing it",
                      file=sys.stderr)
                self.proc.kill()
                self.proc.wait(timeout=10)
        self._thread.join(timeout=5)
        return self.proc.returncode


def free_bag_dir(out: Path) -> Path:
    """A bag folder in run directory ``out`` that does not exist yet (``bag``,
    then ``bag_2``, ...): rosbag2 refuses to record into an existing one, and a
    resumed run records its own bag next to the earlier ones.  The launch file
    uses it too."""
    bag = out / "bag"
    n = 2
    while bag.exists():
        try:   # an empty one (a run that recorded nothing: disk full, a start refused) is reused
            if bag.is_dir() and not any(bag.iterdir()):
                bag.rmdir()
                break
        except OSError:
            pass
        bag = out / f"bag_{n}"
        n += 1
    return bag


def write_problem(out: Path) -> str:
    """Why ``out`` cannot be written now ("" when it can): a probe written and
    fsynced, so a failure message names the OS error even when the nodes' logs (on
    the same full disk) lost it."""
    probe = out / f".write_probe_{os.getpid()}"
    try:
        with probe.open("wb") as fh:
            fh.write(b"\0" * 65536)
            fh.flush()
            os.fsync(fh.fileno())
        return ""
    except OSError as exc:
        return f"cannot write {out}: {exc.strerror or exc}"
    finally:
        try:
            probe.unlink()
        except OSError:
            pass
