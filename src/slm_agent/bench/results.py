"""The run directory: ``results.jsonl`` (one scored case per line) and ``run.json``.

``results.jsonl`` is append-only and crash-safe: each case is one
``json.dumps`` line written with a single ``write`` and then ``flush`` +
``fsync``, so a killed run leaves every finished case on disk.  A kill in the
middle of a write can leave a torn last line (no newline); on reopening,
:class:`ResultsLog` moves it to ``results.quarantine.jsonl``, so the torn
case is simply run again and written once.  A damaged line anywhere else
(not JSON, not a case record, a second record of one case) is moved there
the same way, with its line number; every intact line is kept.  Case ids
already in the file are skipped on a rerun (resume); a case id is never
written twice.

Non-finite floats (NaN = "not measured") are written as ``null`` so the file
is strict JSON (``jq``, pandas); :func:`num` turns them back into NaN.
"""
from __future__ import annotations

import json
import math
import os
import re
import threading
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Optional

from slm_agent.coerce import num  # noqa: F401 - re-exported: the bench modules read JSON numbers with it

RESULTS_FILE = "results.jsonl"
RUN_FILE = "run.json"
#: where damaged lines of results.jsonl are moved (one JSON object per line)
QUARANTINE_FILE = "results.quarantine.jsonl"


def json_safe(value: Any) -> Any:
    """``value`` with NaN/inf replaced by None (recursively) for strict JSON."""
    if isinstance(value, float):
        return value if math.isfinite(value) else None
    if isinstance(value, dict):
        return {str(k): json_safe(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [json_safe(v) for v in value]
    return value


def dumps(record: dict[str, Any]) -> str:
    return json.dumps(json_safe(record), ensure_ascii=False, allow_nan=False, separators=(",", ":"))


# --------------------------------------------------------------------------- messages <-> dicts

def msg_to_dict(msg: Any) -> Any:
    """A ROS message (rclpy or rosbags dataclass) as plain Python data.

    Works on both generated rclpy classes (``get_fields_and_field_types``) and
    ``rosbags`` dataclasses (``__dataclass_fields__``), so the report reads a
    bag and a live topic the same way.
    """
    if hasattr(msg, "get_fields_and_field_types"):
        names = list(msg.get_fields_and_field_types())
    elif hasattr(msg, "__dataclass_fields__"):
        names = [n for n in msg.__dataclass_fields__ if n != "__msgtype__"]
    elif isinstance(msg, (list, tuple)):
        return [msg_to_dict(m) for m in msg]
    elif hasattr(msg, "tolist"):  # numpy arrays (rosbags primitive arrays, rclpy array.array)
        return msg.tolist()
    elif isinstance(msg, (bytes, bytearray)):
        return list(msg)
    else:
        return msg
    out = {}
    for name in names:
        value = getattr(msg, name)
        if hasattr(value, "get_fields_and_field_types") or hasattr(value, "__dataclass_fields__"):
            out[name] = msg_to_dict(value)
        elif isinstance(value, (list, tuple)) or hasattr(value, "tolist"):
            out[name] = msg_to_dict(list(value) if not hasattr(value, "tolist") else value)
        else:
            out[name] = value
    return out


# --------------------------------------------------------------------------- results log

@dataclass
class DamagedLine:
    """A line moved out of ``results.jsonl`` into :data:`QUARANTINE_FILE`."""

    line: int          # 1-based line number in results.jsonl as it was found
    reason: str
    case_id: str       # the case it names, when that can be read ("" otherwise)
    text: str


_CASE_ID_RE = re.compile(rb'"case_id"\s*:\s*"((?:[^"\\]|\\.)*)"')


def _guess_case_id(raw: bytes) -> str:
    m = _CASE_ID_RE.search(raw)
    if not m:
        return ""
    try:
        return str(json.loads(b'"' + m.group(1) + b'"'))
    except (ValueError, UnicodeDecodeError):
        return m.group(1).decode("utf-8", "replace")


#: The one schema of a results.jsonl record, read and written: every key in
#: REQUIRED must be there with one of its types (what resume, the report and
#: compare rely on: the case, its labels and its verdict); a key of OPTIONAL,
#: when there, must have one of its types.  ``runner.case_record`` writes
#: all of them (a test checks that its output validates).
_NUM = (int, float, type(None))   # JSON numbers; null = NaN = "not measured"
RECORD_REQUIRED: dict[str, tuple[type, ...]] = {
    "case_id": (str,), "category": (str,), "model": (str,), "valid": (bool,), "passed": (bool,),
}
RECORD_OPTIONAL: dict[str, tuple[type, ...]] = {
    "run_id": (str,), "suite": (str,), "power_mode": (str,), "strategy": (str,), "serialization": (str,),
    "error_type": (str,), "error": (str,), "calls": (list,), "metrics": (list,), "wall_time_s": _NUM,
    "energy_j": _NUM, "started_at": _NUM, "finished_at": _NUM, "agent_errors": (list,),
}


def record_problems(rec: Any) -> list[str]:
    """Why ``rec`` is not a complete results.jsonl record ([] when it is)."""
    if not isinstance(rec, dict):
        return [f"not a case record (a JSON {type(rec).__name__}, not an object)"]
    problems: list[str] = []

    def bad(key: str, types: tuple[type, ...]) -> bool:
        v = rec[key]
        if isinstance(v, bool) and bool not in types:   # JSON true is not a number here
            return True
        return not isinstance(v, types) or (key == "case_id" and not v)

    for key, types in RECORD_REQUIRED.items():
        if key not in rec:
            problems.append(f"no {key}")
        elif bad(key, types):
            problems.append(f"{key} is {json.dumps(rec[key])[:40]}")
    for key, types in RECORD_OPTIONAL.items():
        if key in rec and bad(key, types):
            problems.append(f"{key} is {json.dumps(rec[key], default=str)[:40]}")
    return problems


def _parse_record(raw: bytes) -> tuple[Optional[dict[str, Any]], str]:
    """(record, "") or (None, why not): a complete record, as :func:`record_problems` defines it."""
    try:
        rec = json.loads(raw.decode("utf-8"))
    except UnicodeDecodeError:
        return None, "not UTF-8"
    except json.JSONDecodeError as exc:
        return None, f"not JSON ({exc.msg} at column {exc.colno})"
    if not isinstance(rec, dict) or not isinstance(rec.get("case_id"), str) or not rec["case_id"]:
        return None, "not a case record (no case_id)"
    problems = record_problems(rec)
    if problems:
        return None, "incomplete case record (" + ", ".join(problems) + ")"
    return rec, ""


def _salvage_suffix(raw: bytes, max_tries: int = 64) -> tuple[Optional[dict[str, Any]], int]:
    """A complete record glued after garbage (a torn line another writer appended to):
    (record, offset where it starts) or (None, -1)."""
    pos, tries = raw.find(b'{"', 1), 0
    while pos > 0 and tries < max_tries:
        rec, _ = _parse_record(raw[pos:])
        if rec is not None:
            return rec, pos
        pos, tries = raw.find(b'{"', pos + 1), tries + 1
    return None, -1


class ResultsLog:
    """Append-only ``results.jsonl`` with resume, torn-line repair and quarantine.

    On opening, every intact line is kept.  A damaged line (not JSON, not a
    case record, or a second record of a case id already in the file) is
    moved to :data:`QUARANTINE_FILE` (``{"line": N, "reason": ..., "case_id":
    ..., "text": ...}``, appended) and listed in :attr:`damaged`, so only its
    case runs again; a torn last line (no newline: a kill in the middle of a
    write) goes there too (:attr:`repaired_bytes`).  The cleaned file replaces
    the old one atomically.  One writer at a time: see
    :class:`slm_agent.bench.rundir.RunLock`.
    """

    def __init__(self, path: os.PathLike | str) -> None:
        self.path = Path(path)
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self.quarantine_path = self.path.with_name(QUARANTINE_FILE)
        self._lock = threading.Lock()
        self.records: list[dict[str, Any]] = []
        self.damaged: list[DamagedLine] = []
        self.repaired_bytes = 0
        self._repair(self._scan())
        self._ids = {r.get("case_id") for r in self.records}
        self._fh = self.path.open("ab", buffering=0)   # unbuffered: a failed write is cut back at once

    def _scan(self) -> tuple[bytes, list[bytes], bool]:
        """Read the file; fill records/damaged; return (data, good lines, tail was complete)."""
        if not self.path.exists():
            return b"", [], True
        data = self.path.read_bytes()
        lines = data.split(b"\n")
        tail = lines.pop()  # b"" when the file ends with a newline
        first_line: dict[str, int] = {}
        good: list[bytes] = []

        def take(raw: bytes, number: int, torn: bool) -> None:
            rec, why = _parse_record(raw)
            if rec is None and not torn:
                rec2, at = _salvage_suffix(raw)
                if rec2 is not None:
                    self.damaged.append(DamagedLine(number, f"garbage before a record ({why})", "",
                                                    raw[:at].decode("utf-8", "replace")))
                    raw, rec = raw[at:], rec2
            if rec is None:
                reason = "torn last line (no newline)" if torn else why
                self.damaged.append(DamagedLine(number, reason, _guess_case_id(raw),
                                                raw.decode("utf-8", "replace")))
                return
            cid = rec["case_id"]
            if cid in first_line:
                self.damaged.append(DamagedLine(number, f"duplicate of line {first_line[cid]} (same case_id)",
                                                cid, raw.decode("utf-8", "replace")))
                return
            first_line[cid] = number
            self.records.append(rec)
            good.append(raw)

        for i, raw in enumerate(lines):
            if raw.strip():
                take(raw, i + 1, torn=False)
        if tail.strip():
            before = len(self.damaged)
            take(tail, len(lines) + 1, torn=True)
            if len(self.damaged) > before:  # else it was a whole record missing only its newline
                self.repaired_bytes = len(tail)
        return data, good, not tail

    def _repair(self, scanned: tuple[bytes, list[bytes], bool]) -> None:
        data, good, _ = scanned
        clean = b"".join(line + b"\n" for line in good)
        if clean == data or not data:
            return
        if self.damaged:
            entries = [dumps({"line": d.line, "reason": d.reason, "case_id": d.case_id, "text": d.text,
                              "file": self.path.name, "moved_at": time.time()}) + "\n" for d in self.damaged]
            with self.quarantine_path.open("ab") as fh:
                fh.write("".join(entries).encode("utf-8"))
                fh.flush()
                os.fsync(fh.fileno())
        tmp = self.path.with_name(self.path.name + ".tmp")
        try:
            with tmp.open("wb") as fh:
                fh.write(clean)
                fh.flush()
                os.fsync(fh.fileno())
            tmp.replace(self.path)
        except BaseException:   # nothing half-written is left behind
            tmp.unlink(missing_ok=True)
            raise
        _fsync_dir(self.path.parent)

    @property
    def done_ids(self) -> set[str]:
        with self._lock:
            return set(self._ids)

    def __contains__(self, case_id: str) -> bool:
        with self._lock:
            return case_id in self._ids

    def append(self, record: dict[str, Any]) -> bool:
        """Write one case durably; False (nothing written) if its id is already there."""
        line = (dumps(record) + "\n").encode("utf-8")
        with self._lock:
            if record.get("case_id") in self._ids:
                return False
            fd = self._fh.fileno()
            start = os.lseek(fd, 0, os.SEEK_END)
            try:
                view = memoryview(line)
                while view:
                    view = view[os.write(fd, view):]
                os.fsync(fd)
            except OSError:   # disk full: cut back what was written of this line (no torn line left)
                try:
                    os.ftruncate(fd, start)
                except OSError:
                    pass
                raise
            self._ids.add(record.get("case_id"))
            self.records.append(json.loads(line))
            return True

    def close(self) -> None:
        with self._lock:
            if not self._fh.closed:
                try:
                    os.fsync(self._fh.fileno())
                finally:
                    self._fh.close()


def _fsync_dir(path: Path) -> None:
    try:
        fd = os.open(path, os.O_RDONLY | os.O_DIRECTORY)
    except OSError:
        return
    try:
        os.fsync(fd)
    except OSError:
        pass
    finally:
        os.close(fd)


def read_results_checked(path: os.PathLike | str) -> tuple[list[dict[str, Any]], list[DamagedLine]]:
    """(complete records, first per case id; every line that was skipped and why)
    of a ``results.jsonl`` (or a run directory).  Read-only: nothing is moved."""
    path = Path(path)
    if path.is_dir():
        path = path / RESULTS_FILE
    records: list[dict[str, Any]] = []
    skipped: list[DamagedLine] = []
    seen: dict[str, int] = {}
    if not path.exists():
        return records, skipped
    for number, line in enumerate(path.read_bytes().split(b"\n"), 1):
        if not line.strip():
            continue
        rec, why = _parse_record(line)
        if rec is None:
            skipped.append(DamagedLine(number, why, _guess_case_id(line), line.decode("utf-8", "replace")))
        elif rec["case_id"] in seen:
            skipped.append(DamagedLine(number, f"duplicate of line {seen[rec['case_id']]} (same case_id)",
                                       rec["case_id"], line.decode("utf-8", "replace")))
        else:
            seen[rec["case_id"]] = number
            records.append(rec)
    return records, skipped


def read_results(path: os.PathLike | str) -> list[dict[str, Any]]:
    """Complete records of a ``results.jsonl`` (or a run directory), first per case id
    (:func:`read_results_checked` also says which lines were skipped)."""
    return read_results_checked(path)[0]


def write_json_atomic(path: os.PathLike | str, data: Any) -> None:
    path = Path(path)
    tmp = path.with_suffix(path.suffix + ".tmp")
    try:
        with tmp.open("w", encoding="utf-8") as fh:
            json.dump(json_safe(data), fh, indent=2, sort_keys=True, allow_nan=False)
            fh.write("\n")
            fh.flush()
            os.fsync(fh.fileno())
        tmp.replace(path)
    except BaseException:   # disk full, read-only: nothing half-written is left behind
        tmp.unlink(missing_ok=True)
        raise


def read_json(path: os.PathLike | str) -> Optional[dict[str, Any]]:
    try:
        return json.loads(Path(path).read_text(encoding="utf-8"))
    except (OSError, json.JSONDecodeError):
        return None
