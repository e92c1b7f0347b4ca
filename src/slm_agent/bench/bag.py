"""rosbag2 (MCAP) bags without ROS tooling: write, salvage after kill -9, read.

Writing (:class:`BagWriter`) goes through ``rosbags`` with every connection's
**message definition embedded** (``ros2msg`` text, concatenated with its
dependencies the way rosbag2 does it) and its RIHS01 type hash, so any
``rosbags`` ``AnyReader`` -- or ``ros2 bag``/Foxglove -- can decode the bag on
a machine where ``slm_agent`` is not installed.  The definitions come from
:func:`build_typestore`: the installed ``.msg`` files of ``slm_agent``,
``std_msgs``, ``builtin_interfaces`` and ``diagnostic_msgs`` (the hashes
``rosbags`` computes from them equal the ones rosidl generated, which the
tests check).

Crash behaviour (checked by ``test/bench_ros/test_bench_bag.py``):

* A clean stop (``close()``, SIGINT/SIGTERM in the recorder node) writes the
  MCAP summary and ``metadata.yaml``: a normal rosbag2 bag.
* ``rosbags`` writes messages into an in-memory chunk and only writes a chunk
  to the file when it exceeds 1 MiB.  :meth:`BagWriter.flush` (called every
  ``flush_period_s`` by the recorder) closes the pending chunk and flushes the
  file, so after a ``kill -9`` the file holds every message up to the last
  flush, in complete chunks -- but no footer and no ``metadata.yaml``, and
  ``rosbags`` refuses such a bag ("File end magic is invalid" / missing
  metadata).  :func:`recover_bag` salvages it: it reads the complete chunks
  (schemas, channels and messages are all inside them), writes a proper bag
  with the same definitions, and keeps the original next to it as
  ``<name>.unclosed``.  :func:`open_reader` does that automatically.
  So a kill -9 loses at most the last ``flush_period_s`` of messages.
"""
from __future__ import annotations

import importlib
import math
import os
import shutil
import sys
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Iterable, Iterator, Optional, Sequence

from rosbags.rosbag2 import StoragePlugin, Writer
from rosbags.typesys import Stores, get_types_from_msg, get_typestore
from rosbags.typesys.store import Typestore

from slm_agent.settings import PACKAGE_TOPICS

#: Packages whose message definitions the recorder embeds.
INTERFACE_PACKAGES: tuple[str, ...] = ("builtin_interfaces", "std_msgs", "diagnostic_msgs", "slm_agent")

#: What ``slm-agent bench --record`` and the launch file record (declared in slm_agent.settings).
DEFAULT_TOPICS: tuple[str, ...] = PACKAGE_TOPICS

#: Types of the default topics, so the recorder subscribes before any publisher exists.
KNOWN_TOPIC_TYPES: dict[str, str] = {
    "/telemetry/power": "slm_agent/msg/PowerState",
    "/telemetry/thermal": "slm_agent/msg/ThermalState",
    "/telemetry/system": "slm_agent/msg/SystemState",
    "/diagnostics": "diagnostic_msgs/msg/DiagnosticArray",
    "/agent/metrics": "slm_agent/msg/InferenceMetrics",
    "/agent/tool_calls": "slm_agent/msg/ToolCallRecord",
    "/benchmark/scenarios": "slm_agent/msg/Scenario",
    "/benchmark/results": "slm_agent/msg/ScenarioResult",
}

BAG_VERSION = 9          # rosbag2 metadata version written by Jazzy
UNCLOSED_SUFFIX = ".unclosed"


class BagError(RuntimeError):
    pass


# --------------------------------------------------------------------------- typestore

def _share_candidates(package: str) -> list[Path]:
    """Where ``share/<package>/msg`` may be: ament prefixes, this interpreter's
    prefix, next to the package's generated Python module, and (for
    slm_agent) the source tree."""
    out: list[Path] = []
    for prefix in filter(None, os.environ.get("AMENT_PREFIX_PATH", "").split(os.pathsep)):
        out.append(Path(prefix) / "share" / package)
    out.append(Path(sys.prefix) / "share" / package)
    try:
        mod = importlib.import_module(f"{package}.msg")
        for parent in Path(mod.__file__).resolve().parents:
            out.append(parent / "share" / package)
    except Exception:  # noqa: BLE001 - module not installed: other candidates
        pass
    if package == "slm_agent":
        out.append(Path(__file__).resolve().parents[3])  # repo root: msg/*.msg
    return out


def interface_dir(package: str) -> Optional[Path]:
    """Directory holding ``msg/*.msg`` of ``package``, or None."""
    for cand in _share_candidates(package):
        if (cand / "msg").is_dir() and any((cand / "msg").glob("*.msg")):
            return cand
    return None


def build_typestore(packages: Sequence[str] = INTERFACE_PACKAGES) -> Typestore:
    """A typestore of the installed ``.msg`` definitions of ``packages``.

    A standard package whose files are not found falls back to ``rosbags``'
    own Jazzy definitions; ``slm_agent`` must be found.
    """
    store = get_typestore(Stores.EMPTY)
    jazzy = None
    types: dict[str, Any] = {}
    for pkg in packages:
        found = interface_dir(pkg)
        if found is not None:
            for f in sorted((found / "msg").glob("*.msg")):
                types.update(get_types_from_msg(f.read_text(encoding="utf-8"), f"{pkg}/msg/{f.stem}"))
            continue
        if pkg == "slm_agent":
            raise BagError("slm_agent .msg files not found (looked under AMENT_PREFIX_PATH, "
                           f"{sys.prefix}/share and the source tree)")
        jazzy = jazzy or get_typestore(Stores.ROS2_JAZZY)
        types.update({k: v for k, v in jazzy.fielddefs.items() if k.startswith(f"{pkg}/")})
    store.register(types)
    return store


# --------------------------------------------------------------------------- writing

@dataclass
class _Topic:
    topic: str
    msgtype: str
    connection: Any
    count: int = 0


class BagWriter:
    """A rosbag2 MCAP bag written from raw CDR bytes; thread-safe.

    ``path`` must not exist (rosbag2 convention).  Call :meth:`flush`
    periodically so a hard kill keeps the data (see the module docstring).
    """

    def __init__(self, path: os.PathLike | str, typestore: Optional[Typestore] = None) -> None:
        self.path = Path(path)
        if self.path.exists():
            raise BagError(f"{self.path} exists already; rosbag2 never overwrites a bag")
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self.typestore = typestore or build_typestore()
        self._writer = Writer(self.path, version=BAG_VERSION, storage_plugin=StoragePlugin.MCAP)
        self._writer.open()
        self._lock = threading.Lock()
        self._topics: dict[str, _Topic] = {}
        self._closed = False
        self._dirty = False
        storage = getattr(self._writer, "storage", None)
        #: False if this rosbags version lacks the chunk internals flush() uses.
        self.can_flush = all(hasattr(storage, a) for a in ("close_chunk", "chunk", "bio"))

    @property
    def topics(self) -> dict[str, str]:
        with self._lock:
            return {t.topic: t.msgtype for t in self._topics.values()}

    def counts(self) -> dict[str, int]:
        with self._lock:
            return {t.topic: t.count for t in self._topics.values()}

    def add_topic(self, topic: str, msgtype: str) -> None:
        """Register ``topic``; ``msgtype`` like ``slm_agent/msg/PowerState``."""
        msgtype = normalize_msgtype(msgtype)
        with self._lock:
            if topic in self._topics:
                if self._topics[topic].msgtype != msgtype:
                    raise BagError(f"{topic} already recorded as {self._topics[topic].msgtype}")
                return
            if msgtype not in self.typestore.fielddefs:
                raise BagError(f"no definition for {msgtype} (known packages: {', '.join(INTERFACE_PACKAGES)})")
            msgdef, _ = self.typestore.generate_msgdef(msgtype, ros_version=2)
            conn = self._writer.add_connection(topic, msgtype, msgdef=msgdef,
                                               rihs01=self.typestore.hash_rihs01(msgtype))
            self._topics[topic] = _Topic(topic, msgtype, conn)

    def write(self, topic: str, stamp_ns: int, data: bytes) -> None:
        with self._lock:
            if self._closed:
                return
            t = self._topics[topic]
            self._writer.write(t.connection, int(stamp_ns), bytes(data))
            t.count += 1
            self._dirty = True

    def flush(self, fsync: bool = True) -> bool:
        """Move buffered messages to the file as a complete chunk; True if anything was written."""
        with self._lock:
            if self._closed or not self._dirty or not self.can_flush:
                return False
            storage = self._writer.storage
            if storage.chunk.msgs:
                storage.close_chunk()
            storage.bio.flush()
            if fsync:
                os.fsync(storage.bio.fileno())
            self._dirty = False
            return True

    def close(self) -> None:
        with self._lock:
            if self._closed:
                return
            self._closed = True
            self._writer.close()


def normalize_msgtype(msgtype: str) -> str:
    """``slm_agent/PowerState`` or ``slm_agent/msg/PowerState`` -> the latter."""
    parts = msgtype.strip("/").split("/")
    if len(parts) == 2:
        return f"{parts[0]}/msg/{parts[1]}"
    return "/".join(parts)


# --------------------------------------------------------------------------- recovery

@dataclass
class Recovery:
    """What :func:`recover_bag` did."""

    path: Path
    recovered: bool
    messages: int = 0
    topics: dict[str, int] = field(default_factory=dict)
    unclosed: Optional[Path] = None
    note: str = ""


def is_closed_bag(path: os.PathLike | str) -> bool:
    """True for a bag ``rosbags`` can open as is (metadata.yaml and MCAP footer)."""
    path = Path(path)
    if not (path / "metadata.yaml").is_file():
        return False
    for f in path.glob("*.mcap"):
        with f.open("rb") as fh:
            fh.seek(0, 2)
            if fh.tell() < 45:
                return False
            fh.seek(-8, 2)
            if fh.read(8) != b"\x89MCAP0\r\n":
                return False
    return True


def _salvage_records(mcap_file: Path) -> tuple[dict[int, Any], dict[int, Any], list[Any], str]:
    """Schemas, channels and messages of every complete chunk of an unclosed MCAP."""
    from mcap.records import Channel, Message, Schema
    from mcap.stream_reader import StreamReader

    schemas: dict[int, Any] = {}
    channels: dict[int, Any] = {}
    messages: list[Any] = []
    note = "read to the end"
    with mcap_file.open("rb") as fh:
        try:
            for rec in StreamReader(fh, emit_chunks=False).records:
                if isinstance(rec, Schema):
                    schemas[rec.id] = rec
                elif isinstance(rec, Channel):
                    channels[rec.id] = rec
                elif isinstance(rec, Message):
                    messages.append(rec)
        except Exception as exc:  # noqa: BLE001 - truncated tail: keep what was complete
            note = f"stopped at the torn tail ({type(exc).__name__})"
    return schemas, channels, messages, note


def recover_bag(path: os.PathLike | str) -> Recovery:
    """Make a bag left by a killed recorder readable (no-op for a closed bag).

    The salvaged bag replaces ``path``; the original directory is kept as
    ``<path>.unclosed``.  Messages in the chunk that was still being filled
    when the process died are lost (at most one flush period).
    """
    path = Path(path)
    if is_closed_bag(path):
        return Recovery(path, False, note="bag was closed cleanly")
    files = sorted(path.glob("*.mcap"))
    if not files:
        raise BagError(f"{path}: no .mcap file to recover")
    schemas: dict[int, Any] = {}
    channels: dict[int, Any] = {}
    messages: list[Any] = []
    notes = []
    for f in files:
        s, c, m, note = _salvage_records(f)
        schemas.update(s)
        channels.update(c)
        messages.extend(m)
        notes.append(f"{f.name}: {note}")

    tmp_parent = path.parent / f".{path.name}.recover"
    if tmp_parent.exists():
        shutil.rmtree(tmp_parent)
    tmp_parent.mkdir()
    tmp_bag = tmp_parent / path.name
    writer = Writer(tmp_bag, version=BAG_VERSION, storage_plugin=StoragePlugin.MCAP)
    writer.open()
    conns: dict[int, Any] = {}
    counts: dict[str, int] = {}
    try:
        for cid, ch in sorted(channels.items()):
            schema = schemas.get(ch.schema_id)
            if schema is None:
                continue
            msgdef = schema.data.decode("utf-8")
            store = get_typestore(Stores.EMPTY)
            store.register(get_types_from_msg(msgdef, schema.name))
            conns[cid] = writer.add_connection(ch.topic, schema.name, msgdef=msgdef,
                                               rihs01=store.hash_rihs01(schema.name))
            counts[ch.topic] = 0
        for m in sorted(messages, key=lambda m: m.log_time):
            conn = conns.get(m.channel_id)
            if conn is None:
                continue
            writer.write(conn, m.log_time, m.data)
            counts[conn.topic] += 1
    finally:
        writer.close()
    unclosed = path.with_name(path.name + UNCLOSED_SUFFIX)
    if unclosed.exists():
        shutil.rmtree(unclosed)
    path.rename(unclosed)
    tmp_bag.rename(path)
    tmp_parent.rmdir()
    return Recovery(path, True, sum(counts.values()), counts, unclosed, "; ".join(notes))


# --------------------------------------------------------------------------- reading

@dataclass
class BagMessage:
    topic: str
    msgtype: str
    stamp_ns: int
    msg: Any


def open_reader(path: os.PathLike | str, recover: bool = True):
    """An ``AnyReader`` over ``path`` using only the bag's own definitions.

    With ``recover`` an unclosed bag (killed recorder) is salvaged first.
    """
    from rosbags.highlevel import AnyReader

    path = Path(path)
    if recover and not is_closed_bag(path):
        recover_bag(path)
    return AnyReader([path], default_typestore=get_typestore(Stores.EMPTY))


def read_messages(path: os.PathLike | str, msgtypes: Optional[Iterable[str]] = None,
                  topics: Optional[Iterable[str]] = None, recover: bool = True) -> Iterator[BagMessage]:
    """Decoded messages (``rosbags`` dataclasses) in log-time order."""
    want_types = {normalize_msgtype(t) for t in msgtypes} if msgtypes else None
    want_topics = set(topics) if topics else None
    with open_reader(path, recover=recover) as reader:
        conns = [c for c in reader.connections
                 if (want_types is None or c.msgtype in want_types)
                 and (want_topics is None or c.topic in want_topics)]
        for conn, stamp, raw in reader.messages(connections=conns):
            yield BagMessage(conn.topic, conn.msgtype, stamp, reader.deserialize(raw, conn.msgtype))


def stamp_s(t: Any) -> float:
    """``builtin_interfaces/Time`` (rclpy or rosbags object) -> seconds (NaN for zero)."""
    sec, nsec = int(getattr(t, "sec", 0)), int(getattr(t, "nanosec", 0))
    return math.nan if sec == 0 and nsec == 0 else sec + nsec * 1e-9


def main(argv: Optional[Sequence[str]] = None) -> int:  # pragma: no cover - manual tool
    import argparse

    ap = argparse.ArgumentParser(description="Inspect or recover a slm_agent rosbag2 MCAP bag")
    ap.add_argument("command", choices=["recover", "info"])
    ap.add_argument("bag")
    ns = ap.parse_args(argv)
    if ns.command == "recover":
        r = recover_bag(ns.bag)
        print(f"{r.path}: {'recovered ' + str(r.messages) + ' messages' if r.recovered else r.note}"
              + (f" (original kept as {r.unclosed}; {r.note})" if r.recovered else ""))
        return 0
    with open_reader(ns.bag) as reader:
        for conn in reader.connections:
            print(f"{conn.topic:28s} {conn.msgtype:40s} {conn.msgcount}")
    return 0


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
