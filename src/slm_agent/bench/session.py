"""One benchmark session writing a run directory (no ROS imports).

:class:`RunSession` is what the benchmark node does with its ``output_dir``,
for any suite:

* :meth:`~RunSession.lock_dir`: the directory checked and locked (one writer,
  :class:`slm_agent.bench.rundir.RunLock`; a lock handed down by
  ``slm-agent bench`` is adopted);
* :meth:`~RunSession.open`: ``run.json`` read and checked (a damaged one, or
  one of a different run, is refused: model, strategy, serialization, suite
  and max_steps must match; the case set too unless ``allow_different_run``,
  and then the directory plans the cases of both sets), the run id taken
  from it or made, and rewritten with this session (configuration, model
  profile, power mode, planned cases, versions, llama.cpp build);
  ``results.jsonl`` opened (damaged lines quarantined, each logged);
* resume: :attr:`~RunSession.todo` are the selected cases not yet in
  results.jsonl; :meth:`~RunSession.append` writes a case and returns the
  progress line (done/total, accuracy so far, ETA);
  :meth:`~RunSession.summary_lines` is the suite's end-of-run summary.

Every refusal is a :class:`slm_agent.bench.rundir.RunDirError` with one line.
"""
from __future__ import annotations

import os
import threading
import time
import uuid
from pathlib import Path
from typing import Any, Callable, Optional, Sequence

from slm_agent.bench import rundir, runner
from slm_agent.bench.results import QUARANTINE_FILE, RESULTS_FILE, RUN_FILE, ResultsLog, read_json, write_json_atomic
from slm_agent.bench.scenario import Scenario
from slm_agent.bench.suite import Suite, get_suite


def _ignore(_text: str) -> None:
    pass


class RunSession:
    """A run directory written by one benchmark session (see the module docstring)."""

    def __init__(self, cfg: runner.BenchConfig, suite: Suite, scenarios: Sequence[Scenario], *,
                 allow_different_run: bool = False, allow_flag: str = "allow_different_run:=true",
                 warn: Callable[[str], None] = _ignore) -> None:
        self.cfg = cfg
        self.suite = suite
        self.scenarios = list(scenarios)
        self.allow_different_run = allow_different_run
        self.allow_flag = allow_flag
        self.warn = warn
        self.out: Optional[Path] = None
        self.lock: Optional[rundir.RunLock] = None
        self.results: Optional[ResultsLog] = None
        self.progress: Optional[runner.Progress] = None
        self._ids = {s.case_id for s in self.scenarios}
        self._append_lock = threading.Lock()   # cases in flight at once finish on their own threads

    # ------------------------------------------------------------------ opening
    def lock_dir(self, what: str) -> Path:
        """The output directory, checked and locked (one writer per run directory)."""
        self.out = rundir.prepare_run_dir(self.cfg.output_dir)
        self.lock = rundir.RunLock(self.out).acquire_or_adopt(what)
        return self.out

    def open(self, power_mode: str) -> None:
        """Check and write run.json, open results.jsonl (see the module docstring)."""
        out = self.out if self.out is not None else rundir.prepare_run_dir(self.cfg.output_dir)
        self.out = out
        cfg = self.cfg
        run_path = out / RUN_FILE
        previous = read_json(run_path)
        if previous is None and run_path.exists() and run_path.stat().st_size > 0:
            raise rundir.RunDirError(f"{run_path} is damaged (not JSON); move it away to start this "
                                     "directory afresh, or use another output_dir")
        now = time.time()
        planned = {s.case_id: s.category for s in self.scenarios}
        profile_info = runner.model_info(cfg.model)
        if previous:
            old = previous.get("config", {})
            diffs, identity_ok = rundir.resume_differences(previous, cfg.to_dict(), profile_info)
            if diffs and not (identity_ok and self.allow_different_run):
                raise rundir.RunDirError(rundir.refusal(out, diffs, identity_ok, self.allow_flag))
            if diffs:
                # explicitly allowed: the directory now plans the cases of both sets
                try:
                    k, names, limit = rundir.case_set(old)
                    old_cases = get_suite(old.get("suite") or cfg.suite).configure(old).select(
                        [] if k == "ids" else names, names if k == "ids" else (), limit)
                    planned = {**{s.case_id: s.category for s in old_cases}, **planned}
                except Exception as exc:  # noqa: BLE001 - the old set is information only here
                    self.warn(f"cannot list the cases of the earlier run: {exc}")
                self.warn(f"adding cases to {out}, which holds a different run (" + "; ".join(diffs)
                          + "): allow_different_run is set, the report covers both sets")
            if not cfg.run_id:
                cfg.run_id = old.get("run_id", "")
        if not cfg.run_id:
            cfg.run_id = f"{cfg.model or 'run'}-{time.strftime('%Y%m%dT%H%M%S')}-{uuid.uuid4().hex[:4]}"
        info = previous or {"started_at": now, "started_at_iso": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
                            "sessions": []}
        info["config"] = cfg.to_dict()
        info["run_id"] = cfg.run_id
        info["model_profile"] = profile_info
        info["power_mode"] = power_mode
        info["cases_planned"] = len(planned)
        info["categories"] = sorted(set(planned.values()))
        info["versions"] = runner.versions(self.suite.distributions)
        info["loop_protocol"] = runner.protocol_info(cfg, self.suite)
        # which llama.cpp CPU build this environment runs (flags, variant, ISA compiled in)
        from slm_agent.engines import llama_build

        info["llama_cpp_build"] = llama_build.installed()
        # the threads a local model gets on this machine (engines/threads.py); each call's
        # engine_counters carry the numbers the agent really loaded with
        threads = llama_threads_info(profile_info, cfg.concurrency)
        if threads:
            info["llama_cpp_threads"] = threads
        info.setdefault("sessions", []).append({"started_at": now, "pid": os.getpid(),
                                                "cases": rundir.describe_case_set(cfg.to_dict())})
        write_json_atomic(run_path, info)
        self.results = ResultsLog(out / RESULTS_FILE)
        for d in self.results.damaged:
            if d.reason.startswith("torn last line"):
                self.warn(f"{RESULTS_FILE}: dropped a torn last line ({self.results.repaired_bytes} bytes) left "
                          f"by an interrupted run (moved to {QUARANTINE_FILE}); that case runs again")
                continue
            dup = d.reason.startswith("duplicate")
            self.warn(f"{RESULTS_FILE} line {d.line}: {d.reason}" + (f", case {d.case_id}" if d.case_id else "")
                      + f"; moved to {QUARANTINE_FILE}" + ("" if dup else "; that case runs again"))
        done = self.results.done_ids
        prev_passed = sum(1 for r in self.results.records if r.get("passed") and r.get("case_id") in self._ids)
        self.progress = runner.Progress(len(self.scenarios), len(self._ids & done), prev_passed,
                                        concurrency=cfg.concurrency)

    # ------------------------------------------------------------------ cases
    @property
    def todo(self) -> list[Scenario]:
        """Selected cases not yet in results.jsonl, in order."""
        assert self.results is not None, "open() first"
        done = self.results.done_ids
        return [s for s in self.scenarios if s.case_id not in done]

    @property
    def already_done(self) -> int:
        return len(self.scenarios) - len(self.todo)

    def append(self, record: dict[str, Any]) -> str:
        """Write one scored case durably; returns its progress line (thread-safe)."""
        assert self.results is not None and self.progress is not None, "open() first"
        with self._append_lock:
            self.results.append(record)
            self.progress.add(record["passed"], record["wall_time_s"])
            return (self.progress.line(record["case_id"], record["passed"])
                    + ("" if record["passed"] else f" ({record['error_type']})"))

    def records(self) -> list[dict[str, Any]]:
        """The records of this session's selected cases (earlier sessions' included)."""
        assert self.results is not None, "open() first"
        return [r for r in self.results.records if r.get("case_id") in self._ids]

    def summary_lines(self) -> list[str]:
        return self.suite.summary_lines(self.records())

    def close(self) -> None:
        if self.results is not None:
            self.results.close()
        if self.lock is not None:
            self.lock.release()


def llama_threads_info(profile_info: dict[str, Any], slots: int) -> dict[str, Any]:
    """The thread policy of a llama_cpp model at ``slots`` cases in flight on this machine, as
    run.json records it (the agent's measurement if cached, else the rule); {} for other
    backends, a label that is not a profile, or no llama.cpp here."""
    if (profile_info.get("backend") or {}).get("type") != "llama_cpp":
        return {}
    try:
        from slm_agent.engines.llama_cpp import threads_for
        from slm_agent.profiles import load_profile

        return threads_for(load_profile(profile_info["profile"]), max(1, slots)).as_dict()
    except Exception as exc:  # noqa: BLE001 - information only: say why it is missing
        return {"note": f"not computed: {exc}"}
