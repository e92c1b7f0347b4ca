"""Run ``@pytest.mark.isolated`` test modules in a child pytest process.

Why: a test that loads a real model runs llama.cpp's native kernels inside
the process.  A native crash there (SIGSEGV in a repack kernel, SIGILL from a
wheel built for another CPU, an abort in ggml) used to kill the whole pytest
run: no summary, no later test.  Here each marked module runs in one child
``python -m pytest <its node ids>`` (so module fixtures such as a loaded
model are still shared by its tests); the child streams every test report
back as JSON, and the parent replays them as if the tests had run in it.

If the child dies, the test it was running fails with the signal's name and
the last lines of the child's output, and the module's remaining tests run in
a fresh child.  Tests in unmarked modules are untouched.

Why not fork per test (pytest-forked): forking a process whose DDS or OpenMP
threads exist leaves the child with locks held by threads that are gone; a
fresh interpreter has no such state.
"""
from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any, Optional

import pytest
from _pytest.reports import TestReport

MARK = "isolated"
CHILD_ENV = "SLM_AGENT_ISOLATION_REPORTS"
TAIL_LINES = 25


def _signal_name(num: int) -> str:
    try:
        return signal.Signals(num).name
    except ValueError:
        return f"signal {num}"


def _crash_excerpt(output: str) -> str:
    """The child's last lines before the crash and the top of faulthandler's
    trace (most recent call first, so the crashing frames), not the tail of
    the trace, which is pytest's own call stack."""
    lines = output.rstrip().splitlines()
    fatal = max((i for i, ln in enumerate(lines) if ln.startswith("Fatal Python error")), default=None)
    if fatal is None:
        return "\n".join(lines[-TAIL_LINES:])
    before = lines[max(0, fatal - 12):fatal]
    after = lines[fatal:fatal + 14]
    return "\n".join(before + after)


class CrashIsolation:
    """The parent side (and, with ``CHILD_ENV`` set, the child's reporter)."""

    def __init__(self, config: pytest.Config) -> None:
        self.config = config
        self.child_file: Optional[str] = os.environ.get(CHILD_ENV)
        self.results: dict[str, list[TestReport]] = {}

    # ------------------------------------------------------------ child side

    def _emit(self, record: dict[str, Any]) -> None:
        assert self.child_file
        with open(self.child_file, "a") as fh:
            fh.write(json.dumps(record) + "\n")
            fh.flush()
            os.fsync(fh.fileno())

    def pytest_runtest_logstart(self, nodeid: str, location: Any) -> None:
        if self.child_file:
            self._emit({"start": nodeid})

    def pytest_runtest_logreport(self, report: TestReport) -> None:
        if self.child_file:
            data = self.config.hook.pytest_report_to_serializable(config=self.config, report=report)
            self._emit({"report": data})

    # ----------------------------------------------------------- parent side

    @pytest.hookimpl(tryfirst=True)
    def pytest_collection_modifyitems(self, items: list[pytest.Item]) -> None:
        if self.child_file:
            return
        for item in items:
            if item.get_closest_marker(MARK):
                # the child enforces pytest-timeout per test; the parent's
                # wait for a whole module is bounded in _run_child
                item.add_marker(pytest.mark.timeout(0), append=False)

    @pytest.hookimpl(tryfirst=True)
    def pytest_runtest_protocol(self, item: pytest.Item, nextitem: Optional[pytest.Item]) -> Optional[bool]:
        if self.child_file or item.get_closest_marker(MARK) is None:
            return None
        if item.nodeid not in self.results:
            self._run_module(item)
        reports = self.results.pop(item.nodeid, [])
        item.ihook.pytest_runtest_logstart(nodeid=item.nodeid, location=item.location)
        for rep in reports:
            item.ihook.pytest_runtest_logreport(report=rep)
        item.ihook.pytest_runtest_logfinish(nodeid=item.nodeid, location=item.location)
        # nothing of this item was set up here, but the item before it left the collectors it
        # shared with this one (its directory's package) on the setup stack: tear down what the
        # next item does not need, as the normal protocol would (else pytest fails the next
        # item's setup with "previous item was not torn down properly")
        item.session._setupstate.teardown_exact(nextitem)
        return True

    def _module_items(self, item: pytest.Item) -> list[pytest.Item]:
        module = item.nodeid.split("::", 1)[0]
        return [it for it in item.session.items
                if it.nodeid.split("::", 1)[0] == module and it.get_closest_marker(MARK)
                and it.nodeid not in self.results]

    def _run_module(self, item: pytest.Item) -> None:
        pending = [it for it in self._module_items(item)]
        by_id = {it.nodeid: it for it in pending}
        while pending:
            done, crashed = self._run_child(item, [it.nodeid for it in pending])
            for nodeid, reports in done.items():
                self.results[nodeid] = reports
            pending = [it for it in pending if it.nodeid not in self.results]
            if crashed is None and pending:
                # the child ended without running them (collection error, ...)
                for it in pending:
                    self.results[it.nodeid] = [self._failure(it, "the child pytest process ended "
                                                             "without running this test", "")]
                pending = []
            elif crashed is not None:
                nodeid, text = crashed
                self.results[nodeid] = [self._failure(by_id[nodeid], text[0], text[1])]
                pending = [it for it in pending if it.nodeid != nodeid]

    def _run_child(self, item: pytest.Item, nodeids: list[str]) -> tuple[dict[str, list[TestReport]], Optional[tuple[str, tuple[str, str]]]]:
        root = str(item.config.rootpath)
        fd, reports_path = tempfile.mkstemp(prefix="isolated_reports_", suffix=".jsonl")
        os.close(fd)
        log_fd, log_path = tempfile.mkstemp(prefix="isolated_output_", suffix=".log")
        env = dict(os.environ, **{CHILD_ENV: reports_path, "PYTHONFAULTHANDLER": "1"})
        # tee-sys: output reaches the log as it is written, so a crash leaves it
        cmd = [sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", "--no-header", "--capture=tee-sys",
               "-rN", *nodeids]
        bound = 900.0 * len(nodeids) + 120.0
        t0 = time.monotonic()
        try:
            proc = subprocess.Popen(cmd, cwd=root, env=env, stdout=log_fd, stderr=subprocess.STDOUT,
                                    stdin=subprocess.DEVNULL)
            try:
                rc = proc.wait(timeout=bound)
            except subprocess.TimeoutExpired:
                proc.kill()
                rc = proc.wait()
        finally:
            os.close(log_fd)
        output = Path(log_path).read_text(errors="replace")
        records = []
        for line in Path(reports_path).read_text().splitlines():
            try:
                records.append(json.loads(line))
            except ValueError:
                break  # a torn last line from the crash
        os.unlink(reports_path)
        os.unlink(log_path)
        done: dict[str, list[TestReport]] = {}
        started: list[str] = []
        finished: set[str] = set()
        for rec in records:
            if "start" in rec:
                started.append(rec["start"])
                continue
            rep = self.config.hook.pytest_report_from_serializable(config=self.config, data=rec["report"])
            done.setdefault(rep.nodeid, []).append(rep)
            if rep.when == "teardown":
                finished.add(rep.nodeid)
        for nodeid in list(done):
            if nodeid not in finished:
                done.pop(nodeid)  # reported in part: counted with the crash below
        unfinished = [n for n in started if n not in finished]
        if rc < 0 or (unfinished and rc not in (0, 1)):
            how = (f"crashed with {_signal_name(-rc)} (signal {-rc})" if rc < 0
                   else f"exited with status {rc}")
            if time.monotonic() - t0 >= bound:
                how = f"was killed after {bound:.0f} s"
            tail = _crash_excerpt(output)
            victim = unfinished[-1] if unfinished else None
            if victim is None:  # died between tests: blame the next one, it never ran
                victim = next((n for n in nodeids if n not in done), None)
            if victim is not None:
                return done, (victim, (f"the test's child process {how} while running this test "
                                       f"(crash isolated by test/crash_isolation.py)", tail))
        return done, None

    @staticmethod
    def _failure(item: pytest.Item, message: str, tail: str) -> TestReport:
        text = message + (f"\n--- the child's last output ---\n{tail}" if tail else "")
        return TestReport(item.nodeid, item.location, {k: 1 for k in item.keywords}, "failed",
                          text, "call", [], 0.0)


def register(config: pytest.Config) -> None:
    config.addinivalue_line(
        "markers", f"{MARK}: run this module in a child pytest process so a native crash "
                   "fails one test instead of the whole run (test/crash_isolation.py)")
    config.pluginmanager.register(CrashIsolation(config), "slm_agent_crash_isolation")
