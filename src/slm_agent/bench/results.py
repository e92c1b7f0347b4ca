"""The run directory: ``results.jsonl`` (one scored case per line) and ``run.json``.

``results.jsonl`` is append-only and crash-safe: each case is one
``json.dumps`` line written with a single ``write`` and then ``flush`` +
``fsync``, so a killed run leaves every finished case on disk.  A kill in the
middle of a write can leave a torn last line (no newline, or not JSON); on
reopening, :class:`ResultsLog` truncates the file back to the end of the last
complete line, so the torn case is simply run again and written once.  Case
ids already in the file are skipped on a rerun (resume); a case id is never
written twice.

Non-finite floats (NaN = "not measured") are written as ``null`` so the file
is strict JSON (``jq``, pandas); :func:`num` turns them back into NaN.
"""
from __future__ import annotations

import json
import math
import os
import threading
from pathlib import Path
from typing import Any, Iterable, Iterator, Optional

RESULTS_FILE = "results.jsonl"
RUN_FILE = "run.json"


def num(value: Any) -> float:
    """A float from a JSON value; None/missing/garbage -> NaN."""
    try:
        return float(value)
    except (TypeError, ValueError):
        return math.nan


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

class ResultsLog:
    """Append-only ``results.jsonl`` with resume and torn-line repair."""

    def __init__(self, path: os.PathLike | str) -> None:
        self.path = Path(path)
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self._lock = threading.Lock()
        self.records: list[dict[str, Any]] = []
        self.repaired_bytes = 0
        good_end = self._scan()
        size = self.path.stat().st_size if self.path.exists() else 0
        if size > good_end:
            self.repaired_bytes = size - good_end
            with self.path.open("r+b") as fh:
                fh.truncate(good_end)
                fh.flush()
                os.fsync(fh.fileno())
        self._ids = {r.get("case_id") for r in self.records}
        self._fh = self.path.open("ab")

    def _scan(self) -> int:
        """Load complete lines; return the byte offset after the last good one."""
        if not self.path.exists():
            return 0
        data = self.path.read_bytes()
        good_end = 0
        seen: set[str] = set()
        pos = 0
        while pos < len(data):
            nl = data.find(b"\n", pos)
            if nl < 0:
                break  # torn tail: no newline
            line = data[pos:nl]
            try:
                rec = json.loads(line.decode("utf-8")) if line.strip() else None
            except (UnicodeDecodeError, json.JSONDecodeError):
                break  # torn or corrupt: drop it and everything after
            if isinstance(rec, dict) and rec.get("case_id") not in seen:
                seen.add(rec.get("case_id"))
                self.records.append(rec)
            pos = nl + 1
            good_end = pos
        return good_end

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
            self._fh.write(line)
            self._fh.flush()
            os.fsync(self._fh.fileno())
            self._ids.add(record.get("case_id"))
            self.records.append(json.loads(line))
            return True

    def close(self) -> None:
        with self._lock:
            if not self._fh.closed:
                self._fh.flush()
                os.fsync(self._fh.fileno())
                self._fh.close()


def read_results(path: os.PathLike | str) -> list[dict[str, Any]]:
    """Complete records of a ``results.jsonl`` (or a run directory), first per case id."""
    path = Path(path)
    if path.is_dir():
        path = path / RESULTS_FILE
    records: list[dict[str, Any]] = []
    seen: set[str] = set()
    if not path.exists():
        return records
    for line in path.read_bytes().split(b"\n"):
        try:
            rec = json.loads(line.decode("utf-8")) if line.strip() else None
        except (UnicodeDecodeError, json.JSONDecodeError):
            continue
        if isinstance(rec, dict) and rec.get("case_id") not in seen:
            seen.add(rec.get("case_id"))
            records.append(rec)
    return records


def write_json_atomic(path: os.PathLike | str, data: Any) -> None:
    path = Path(path)
    tmp = path.with_suffix(path.suffix + ".tmp")
    with tmp.open("w", encoding="utf-8") as fh:
        json.dump(json_safe(data), fh, indent=2, sort_keys=True, allow_nan=False)
        fh.write("\n")
        fh.flush()
        os.fsync(fh.fileno())
    tmp.replace(path)


def read_json(path: os.PathLike | str) -> Optional[dict[str, Any]]:
    try:
        return json.loads(Path(path).read_text(encoding="utf-8"))
    except (OSError, json.JSONDecodeError):
        return None


def iter_metrics(records: Iterable[dict[str, Any]]) -> Iterator[dict[str, Any]]:
    """Every LLM call's metrics dict of ``records``, with the case's labels added."""
    for rec in records:
        for m in rec.get("metrics") or []:
            yield {**m, "_case_id": rec.get("case_id"), "_category": rec.get("category"),
                   "_model": rec.get("model"), "_power_mode": rec.get("power_mode")}
