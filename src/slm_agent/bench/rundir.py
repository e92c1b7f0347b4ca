"""A run directory: usable-or-not checks, one writer at a time, resume rules (no ROS imports).

* :func:`prepare_run_dir` creates the directory and checks that what a run
  writes there can be written (a file where the directory should be, an
  unwritable path, ``results.jsonl`` being a directory, ...): one
  :class:`RunDirError` line naming the path instead of a traceback.
* :class:`RunLock`: ``run.lock`` inside the directory, locked with
  ``flock(LOCK_EX | LOCK_NB)``.  The kernel drops a flock when the last file
  descriptor of it is closed, so a dead process (even after ``kill -9``)
  never holds a directory.  ``slm-agent bench`` takes it before starting any
  node and hands the descriptor to every node it starts (``pass_fds``; the
  benchmark node finds it through :data:`LOCK_FD_ENV`), so the directory
  stays locked until the CLI *and* all its nodes are gone.  A benchmark node
  started on its own (``ros2 launch``) takes the lock itself.  The file holds
  the holders' pids, which a refused second writer names.
* :func:`run_differences`: what makes a resumed run a different run (model,
  strategy, serialization, suite, max_steps: never allowed; the case set:
  categories, ids, limit: only when asked explicitly); :func:`resume_differences`
  adds the model profile's ``chat`` group recorded in run.json (another
  template or prompt layout shows the model other prompts: never allowed).
"""
from __future__ import annotations

import errno
import fcntl
import json
import os
import socket
import time
from pathlib import Path
from typing import Any, Mapping, Optional, Sequence

from slm_agent.bench.runner import BenchConfig, split_list

LOCK_FILE = "run.lock"
#: set by ``slm-agent bench`` in its nodes' environment: the inherited descriptor of run.lock
LOCK_FD_ENV = "SLM_AGENT_RUN_LOCK_FD"

#: what a run writes: name -> "file" or "dir"
RUN_ENTRIES: dict[str, str] = {
    "results.jsonl": "file", "results.quarantine.jsonl": "file", "run.json": "file",
    "params.yaml": "file", LOCK_FILE: "file", "logs": "dir",
}


class RunDirError(RuntimeError):
    """The run directory cannot be used; the message is one line naming the path."""


class RunDirLocked(RunDirError):
    def __init__(self, path: Path, holders: list[dict[str, Any]]) -> None:
        self.path = path
        self.holders = holders
        alive = [h for h in holders if pid_alive(int(h.get("pid", 0) or 0))]
        shown = alive or holders
        who = ", ".join(f"pid {h.get('pid')} ({h.get('what', '?')})" for h in shown) or "another process"
        super().__init__(f"{path.parent} is in use by {who}: one writer per run directory; wait for it to "
                         "finish or stop it, or use another output directory")


def pid_alive(pid: int) -> bool:
    if pid <= 0:
        return False
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    # a zombie is dead for our purposes
    try:
        with open(f"/proc/{pid}/stat", "rb") as fh:
            state = fh.read().rsplit(b")", 1)[1].split()[0]
        return state not in (b"Z", b"X")
    except (OSError, IndexError):
        return True


def orphaned(holders: Sequence[Mapping[str, Any]]) -> bool:
    """True when the lock's holders were started by an ``slm-agent bench`` that is
    dead: what is left are its nodes, which stop on their own (parent-death signal)."""
    clis = [h for h in holders if h.get("what") == "slm-agent bench"]
    return bool(clis) and not any(pid_alive(int(h.get("pid", 0) or 0)) for h in clis)


def _oserror_line(action: str, path: Path, exc: OSError) -> str:
    return f"cannot {action} {path}: {exc.strerror or exc}"


def prepare_run_dir(path: os.PathLike | str, create: bool = True) -> Path:
    """The run directory, created if needed and checked writable; :class:`RunDirError` otherwise."""
    out = Path(path).expanduser()
    try:
        out = out.resolve()
    except OSError as exc:  # e.g. a symlink loop
        raise RunDirError(_oserror_line("resolve", out, exc)) from None
    if out.exists() and not out.is_dir():
        raise RunDirError(f"output directory {out} exists and is not a directory")
    if create:
        try:
            out.mkdir(parents=True, exist_ok=True)
        except OSError as exc:
            raise RunDirError(_oserror_line("create output directory", out, exc)) from None
    if not out.is_dir():
        raise RunDirError(f"output directory {out} does not exist")
    if not os.access(out, os.W_OK | os.X_OK):
        raise RunDirError(f"output directory {out} is not writable")
    for name, kind in RUN_ENTRIES.items():
        p = out / name
        if not (p.exists() or p.is_symlink()):
            continue
        if kind == "file" and not p.is_file():
            raise RunDirError(f"{p} is {'a directory' if p.is_dir() else 'not a regular file'}; "
                              "move it away or use another output directory")
        if kind == "dir" and not p.is_dir():
            raise RunDirError(f"{p} is not a directory; move it away or use another output directory")
        if not os.access(p, os.W_OK | (os.X_OK if kind == "dir" else 0)):
            raise RunDirError(f"{p} is not writable")
    return out


# --------------------------------------------------------------------------- lock

class RunLock:
    """``<run dir>/run.lock`` under ``flock``: one writer per run directory.

    ``acquire`` raises :class:`RunDirLocked` naming the holders' pids.  The
    descriptor (:attr:`fd`) can be handed to child processes so the lock lives
    as long as the longest of them; :meth:`add_holder` records their pids.
    """

    def __init__(self, run_dir: os.PathLike | str) -> None:
        self.path = Path(run_dir) / LOCK_FILE
        self.fd: Optional[int] = None
        self.holders: list[dict[str, Any]] = []

    # ---------------------------------------------------------------- taking
    def acquire(self, what: str, orphan_wait_s: float = 0.0) -> "RunLock":
        """Take the lock or raise :class:`RunDirLocked`.  With ``orphan_wait_s``, a lock
        whose ``slm-agent bench`` holder is dead (its nodes are still stopping, e.g.
        right after a kill -9 of the CLI) is waited for that long first."""
        end = time.monotonic() + max(0.0, orphan_wait_s)
        while True:
            try:
                return self._acquire_once(what)
            except RunDirLocked as exc:
                if time.monotonic() >= end or not orphaned(exc.holders):
                    raise
            time.sleep(0.2)

    def _acquire_once(self, what: str) -> "RunLock":
        try:
            fd = os.open(self.path, os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o644)
        except OSError as exc:
            raise RunDirError(_oserror_line("create lock file", self.path, exc)) from None
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError as exc:
            os.close(fd)
            if exc.errno in (errno.EWOULDBLOCK, errno.EAGAIN, errno.EACCES):
                raise RunDirLocked(self.path, self.read_holders()) from None
            raise RunDirError(_oserror_line("lock", self.path, exc)) from None
        self.fd = fd
        self.holders = [self._me(what)]
        self._write()
        return self

    def adopt(self, fd: int, what: str) -> bool:
        """Take over an inherited descriptor of *this* lock file (True), or refuse it
        (False: not a descriptor of this file, or it does not hold the lock)."""
        try:
            st_fd, st_path = os.fstat(fd), os.stat(self.path)
        except OSError:
            return False
        if (st_fd.st_dev, st_fd.st_ino) != (st_path.st_dev, st_path.st_ino):
            return False
        try:
            # the same open file description already holds it: this succeeds at once
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError:
            return False
        os.set_inheritable(fd, False)
        self.fd = fd
        me = os.getpid()
        self.holders = [h for h in self.read_holders()
                        if h.get("pid") != me and pid_alive(int(h.get("pid", 0) or 0))]
        self.holders.append(self._me(what))
        self._write()
        return True

    def acquire_or_adopt(self, what: str, env: Mapping[str, str] = os.environ) -> "RunLock":
        """In a node: adopt the descriptor ``slm-agent bench`` passed (:data:`LOCK_FD_ENV`), else acquire."""
        text = env.get(LOCK_FD_ENV, "")
        if text.isdigit() and self.adopt(int(text), what):
            return self
        return self.acquire(what)

    def add_holder(self, pid: int, what: str) -> None:
        """Record a child process that inherited :attr:`fd` (named if a second writer is refused)."""
        self.holders.append({"pid": int(pid), "what": what, "since": time.time()})
        self._write()

    def release(self) -> None:
        if self.fd is None:
            return
        fd, self.fd = self.fd, None
        try:
            os.close(fd)  # children that inherited it keep the lock until they exit
        except OSError:
            pass

    @property
    def held(self) -> bool:
        return self.fd is not None

    # ---------------------------------------------------------------- contents
    @staticmethod
    def _me(what: str) -> dict[str, Any]:
        return {"pid": os.getpid(), "what": what, "since": time.time(), "host": socket.gethostname()}

    def _write(self) -> None:
        if self.fd is None:
            return
        data = (json.dumps({"holders": self.holders}, sort_keys=True) + "\n").encode()
        try:
            os.ftruncate(self.fd, 0)
            os.pwrite(self.fd, data, 0)
        except OSError:
            pass  # the pids are information only; the flock is what locks

    def read_holders(self) -> list[dict[str, Any]]:
        try:
            data = json.loads(self.path.read_text(encoding="utf-8") or "{}")
        except (OSError, ValueError):
            return []
        holders = data.get("holders", []) if isinstance(data, dict) else []
        return [h for h in holders if isinstance(h, dict)]

    def __enter__(self) -> "RunLock":
        return self

    def __exit__(self, *exc: object) -> None:
        self.release()


# --------------------------------------------------------------------------- resume rules

#: a difference in these is a different experiment: never mixed into one results.jsonl
#: (cases are keyed by case id, so a resume would skip them as done)
IDENTITY = BenchConfig.IDENTITY
#: settings that change how the cases are measured, with their value in a run.json written
#: before they existed: a resume with another value is refused unless allow_different_run
MEASUREMENT = {"concurrency": 1}


def case_set(config: Mapping[str, Any]) -> tuple[str, tuple[str, ...], int]:
    """What selects the cases of a run: ("ids", sorted ids, limit) or
    ("categories", sorted canonical categories, limit)."""
    limit = int(config.get("limit", 0) or 0)
    ids = split_list(config.get("ids"))
    if ids:
        return "ids", tuple(sorted(set(ids))), limit
    try:
        from slm_agent.bench.suite import get_suite

        canonical = get_suite(str(config.get("suite") or "bfcl")).canonical_category
    except Exception:  # noqa: BLE001 - an unknown suite: names compare as written
        def canonical(name: str) -> str:
            return name
    cats = [canonical(c) for c in split_list(config.get("categories"))]
    return "categories", tuple(sorted(set(cats))), limit


def describe_case_set(config: Mapping[str, Any]) -> str:
    kind, names, limit = case_set(config)
    text = ("ids " if kind == "ids" else "categories ") + (",".join(names) or "(none)")
    if limit > 0:
        return text + f" limit {limit}"
    return text if kind == "ids" else text + " (all cases)"


def run_differences(previous: Mapping[str, Any], current: Mapping[str, Any]) -> tuple[list[str], bool]:
    """(differences as text, whether they are only in the case set)."""
    diffs = []
    for key in IDENTITY:
        if key == "protocol" and "suite" in previous:
            # run.json written before goals carried a protocol: those runs used the robot rules
            before, now = previous.get(key, "robot"), current.get(key, "robot")
            if before != now:
                diffs.append(f"{key} ({before!r} there, {now!r} now)")
            continue
        if key in previous and previous.get(key) != current.get(key):
            diffs.append(f"{key} ({previous.get(key)!r} there, {current.get(key)!r} now)")
    identity_ok = not diffs
    for key, default in MEASUREMENT.items():   # allowed with allow_different_run, like the case set
        before, now = previous.get(key, default), current.get(key, default)
        if before != now:
            diffs.append(f"{key} ({before!r} there, {now!r} now)")
    if case_set(previous) != case_set(current):
        diffs.append(f"case set ({describe_case_set(previous)} there, {describe_case_set(current)} now)")
    return diffs, identity_ok


def prompt_differences(previous: Mapping[str, Any], current: Mapping[str, Any]) -> list[str]:
    """What changed in the model profile's ``chat`` group (template, stops, prompt layout: what
    the model is shown) between the ``model_profile`` of run.json and now, as text; a run.json
    without the group (older, or a profile that did not load) is not compared."""
    before, now = previous.get("chat"), current.get("chat")
    if not isinstance(before, Mapping) or not isinstance(now, Mapping):
        return []
    return [f"model profile chat.{k} ({before.get(k)!r} there, {now.get(k)!r} now)"
            for k in sorted(set(before) | set(now)) if before.get(k) != now.get(k)]


def resume_differences(previous: Mapping[str, Any], config: Mapping[str, Any],
                       model_profile: Mapping[str, Any]) -> tuple[list[str], bool]:
    """:func:`run_differences` of run.json's config, plus :func:`prompt_differences` of its
    model profile (those make it another run: never allowed)."""
    diffs, identity_ok = run_differences(previous.get("config", {}), config)
    prompt = prompt_differences(previous.get("model_profile") or {}, model_profile)
    return prompt + diffs, identity_ok and not prompt


def refusal(out: Path, diffs: Sequence[str], identity_ok: bool, flag: str) -> str:
    """The one line that refuses a resume into ``out``."""
    text = f"{out} holds a run with a different " + ", ".join(diffs) + ": "
    if identity_ok:
        return text + f"use another output directory, or {flag} to add these cases to it"
    return text + "use another output directory"

