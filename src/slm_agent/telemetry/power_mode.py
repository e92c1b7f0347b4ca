"""List, query and set Jetson power modes (nvpmodel).

The benchmark sweeps power modes, so it must know exactly which mode each run
used and must fail loudly when a switch did not happen.  Sources:

* ``/etc/nvpmodel.conf``: mode catalogue, lines ``< POWER_MODEL ID=0 NAME=MAXN >``
  and the boot default ``< PM_CONFIG DEFAULT=2 >``.
* ``nvpmodel -q``: current mode, printed as ``NV Power Mode: MODE_30W`` followed
  by the id on the next line (possibly after ``NVPM WARN`` lines).
* ``/var/lib/nvpmodel/status``: ``pmode:0002 ...``, what nvpmodel last applied;
  used when the binary cannot be run (containers without it, no root).
* ``nvpmodel -m N`` sets a mode.  On Orin some switches need a reboot: nvpmodel
  prints ``Reboot required for changing to this power mode`` and asks
  ``DO YOU WANT TO REBOOT NOW?`` on stdin.  We always answer NO and raise
  :class:`PowerModeRebootRequired`: rebooting a robot from a benchmark is never
  this module's call.

The command runner is injectable so tests can run a real fake ``nvpmodel``
executable; production uses :class:`SubprocessRunner`.
"""
from __future__ import annotations

import os
import re
import shutil
import subprocess
from dataclasses import dataclass
from typing import Protocol

from .model import PowerModeInfo
from .readers._fs import read_text, rooted

CONF_PATH = "/etc/nvpmodel.conf"
STATUS_PATH = "/var/lib/nvpmodel/status"

_MODE_RE = re.compile(r"<\s*POWER_MODEL\s+ID\s*=\s*(\d+)\s+NAME\s*=\s*([^\s>]+)\s*>")
_DEFAULT_RE = re.compile(r"<\s*PM_CONFIG\s+DEFAULT\s*=\s*(\d+)\s*>")
_QUERY_RE = re.compile(r"NV Power Mode:\s*(\S+)")
_STATUS_RE = re.compile(r"pmode:\s*(\d+)")


class PowerModeError(RuntimeError):
    """nvpmodel ran but the requested mode is not in effect."""


class PowerModeUnsupported(PowerModeError):
    """No nvpmodel on this machine (not a Jetson, or binary/config missing)."""


class PowerModeRebootRequired(PowerModeError):
    """The requested mode only takes effect after a reboot (which we declined)."""


@dataclass(frozen=True)
class CommandResult:
    returncode: int
    stdout: str
    stderr: str


class CommandRunner(Protocol):
    def available(self) -> bool: ...

    def run(self, args: list[str], input_text: str = "") -> CommandResult: ...

    def describe(self) -> str: ...


class SubprocessRunner:
    """Runs the real ``nvpmodel`` (or the executable at ``executable``)."""

    def __init__(self, executable: str = "nvpmodel", timeout_s: float = 30.0) -> None:
        self.executable = executable
        self.timeout_s = timeout_s

    def _resolved(self) -> str | None:
        if os.sep in self.executable:
            return self.executable if os.access(self.executable, os.X_OK) else None
        return shutil.which(self.executable)

    def available(self) -> bool:
        return self._resolved() is not None

    def describe(self) -> str:
        return self._resolved() or f"{self.executable} (not found on PATH)"

    def run(self, args: list[str], input_text: str = "") -> CommandResult:
        exe = self._resolved()
        if exe is None:
            return CommandResult(127, "", f"{self.executable}: not found")
        try:
            proc = subprocess.run([exe, *args], input=input_text, capture_output=True, text=True,
                                  timeout=self.timeout_s, check=False)
        except (OSError, subprocess.SubprocessError) as exc:
            return CommandResult(126, "", f"{exe}: {exc!r}")
        return CommandResult(proc.returncode, proc.stdout or "", proc.stderr or "")


def parse_nvpmodel_conf(text: str) -> tuple[list[tuple[int, str]], int]:
    """Return ``(modes sorted by id, default id or -1)``; comment lines ignored."""
    modes: dict[int, str] = {}
    default = -1
    for line in text.splitlines():
        line = line.split("#", 1)[0]
        m = _MODE_RE.search(line)
        if m:
            modes.setdefault(int(m.group(1)), m.group(2))
            continue
        d = _DEFAULT_RE.search(line)
        if d:
            default = int(d.group(1))
    return sorted(modes.items()), default


def parse_query_output(text: str) -> tuple[int, str] | None:
    """``(id, name)`` from ``nvpmodel -q`` output, or None if not recognised."""
    lines = [ln.strip() for ln in text.splitlines()]
    for i, line in enumerate(lines):
        m = _QUERY_RE.search(line)
        if not m:
            continue
        for nxt in lines[i + 1:]:
            if nxt.isdigit():
                return int(nxt), m.group(1)
            if nxt:
                break
        return -1, m.group(1)
    return None


def parse_status_file(text: str) -> int | None:
    m = _STATUS_RE.search(text or "")
    return int(m.group(1)) if m else None


class PowerModeController:
    def __init__(self, root: str = "/", runner: CommandRunner | None = None) -> None:
        self.root = root
        self.runner: CommandRunner = runner if runner is not None else SubprocessRunner()

    # ----------------------------------------------------------- catalogue
    def _conf(self) -> tuple[list[tuple[int, str]], int, str]:
        """``(modes, default, problem)``; problem is "" when the conf parsed."""
        path = rooted(self.root, CONF_PATH)
        text = read_text(path)
        if text is None:
            return [], -1, f"{CONF_PATH} not found or unreadable (not a Jetson?)"
        modes, default = parse_nvpmodel_conf(text)
        if not modes:
            return [], default, f"{CONF_PATH} has no '< POWER_MODEL ID=.. NAME=.. >' entries"
        return modes, default, ""

    def _unsupported_reason(self, conf_problem: str) -> str:
        reasons = []
        if conf_problem:
            reasons.append(conf_problem)
        if not self.runner.available():
            reasons.append(f"nvpmodel binary not available ({self.runner.describe()})")
        return "; ".join(reasons)

    # --------------------------------------------------------------- query
    def _current(self, modes: list[tuple[int, str]]) -> tuple[int, str, str]:
        names = dict(modes)
        notes = []
        if self.runner.available():
            res = self.runner.run(["-q"])
            parsed = parse_query_output(res.stdout + "\n" + res.stderr) if res.returncode == 0 else None
            if parsed is not None:
                mid, name = parsed
                if mid < 0:
                    mid = next((i for i, n in modes if n == name), -1)
                return mid, name, ""
            notes.append(f"'nvpmodel -q' failed (rc={res.returncode}): {(res.stderr or res.stdout).strip()[:200]}")
        status = read_text(rooted(self.root, STATUS_PATH))
        sid = parse_status_file(status) if status is not None else None
        if sid is not None:
            return sid, names.get(sid, ""), "; ".join(notes + [f"current mode read from {STATUS_PATH}"])
        notes.append(f"{STATUS_PATH} missing or unparsable")
        return -1, "", "; ".join(notes)

    def info(self) -> PowerModeInfo:
        """Catalogue + current mode.  Never raises."""
        try:
            modes, default, conf_problem = self._conf()
            reason = self._unsupported_reason(conf_problem)
            if conf_problem and not self.runner.available():
                return PowerModeInfo(False, -1, "", modes, f"power modes unsupported: {reason}", default)
            cur_id, cur_name, note = self._current(modes)
            supported = not reason
            message = note if supported else f"power modes unsupported: {reason}" + (f"; {note}" if note else "")
            return PowerModeInfo(supported, cur_id, cur_name, modes, message, default)
        except Exception as exc:  # noqa: BLE001 - a query must not take down a node
            return PowerModeInfo(False, -1, "", [], f"power mode query failed: {exc!r}")

    def list_modes(self) -> list[tuple[int, str]]:
        return self._conf()[0]

    # ----------------------------------------------------------------- set
    def resolve(self, mode: int | str, modes: list[tuple[int, str]] | None = None) -> tuple[int, str]:
        """Map an id, a numeric string or a name (case-insensitive) to ``(id, name)``."""
        modes = self.list_modes() if modes is None else modes
        valid = ", ".join(f"{i}={n}" for i, n in modes) or "none"
        if isinstance(mode, bool):
            raise ValueError(f"invalid power mode {mode!r}; valid modes: {valid}")
        if isinstance(mode, int) or (isinstance(mode, str) and mode.strip().isdigit()):
            mid = int(mode)
            for i, n in modes:
                if i == mid:
                    return i, n
        elif isinstance(mode, str):
            for i, n in modes:
                if n.lower() == mode.strip().lower():
                    return i, n
        raise ValueError(f"unknown power mode {mode!r}; valid modes: {valid}")

    def set_mode(self, mode: int | str) -> PowerModeInfo:
        """Switch to ``mode`` and verify it took effect; returns the new state."""
        modes, _default, conf_problem = self._conf()
        reason = self._unsupported_reason(conf_problem)
        if reason:
            raise PowerModeUnsupported(f"cannot set power mode: {reason}")
        mid, name = self.resolve(mode, modes)
        res = self.runner.run(["-m", str(mid)], input_text="NO\n")
        out = f"{res.stdout}\n{res.stderr}"
        if "reboot required" in out.lower():
            raise PowerModeRebootRequired(
                f"mode {mid} ({name}) needs a reboot to take effect; declined. nvpmodel said: {out.strip()[:300]}")
        if res.returncode != 0 or "NVPM ERROR" in out:
            raise PowerModeError(f"'nvpmodel -m {mid}' failed (rc={res.returncode}): {out.strip()[:300]}")
        info = self.info()
        if info.current_id != mid:
            raise PowerModeError(
                f"asked for mode {mid} ({name}) but nvpmodel reports {info.current_id} ({info.current_name})")
        return info


__all__ = [
    "CommandResult", "CommandRunner", "PowerModeController", "PowerModeError",
    "PowerModeRebootRequired", "PowerModeUnsupported", "SubprocessRunner",
    "parse_nvpmodel_conf", "parse_query_output", "parse_status_file",
]
