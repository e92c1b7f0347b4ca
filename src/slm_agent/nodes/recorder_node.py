"""Recorder node (pip route): topics -> rosbag2 bag (MCAP) with embedded definitions.

On a ROS install the launch file runs ``ros2 bag record -s mcap``; this node
does the same job where only rclpy wheels exist, through
:class:`slm_agent.bench.bag.BagWriter` (``rosbags``).

Node ``recorder``.  Subscribes **raw** (serialized CDR, no deserialization
cost) to every topic in ``topics``: topics of known type (the package's own,
see ``slm_agent.bench.bag.KNOWN_TOPIC_TYPES``) at once, others as soon as the
graph shows their type.  Each message is written with its receive time (node
clock).  The bag embeds each type's full message definition and RIHS01 hash,
so ``rosbags`` reads it without slm_agent installed.  Parameters:
:class:`slm_agent.settings.RecorderSettings` (``config/benchmark.yaml``).

Durability: every ``flush_period_s`` the buffered messages are written to
the file as a complete MCAP chunk.  SIGINT/SIGTERM close the bag properly
(``close()``: summary + metadata.yaml).  After a kill -9 the bag has no
footer/metadata and ``rosbags`` refuses it as is;
``slm_agent.bench.bag.recover_bag`` (run automatically by ``slm-agent
report``) rebuilds it with every message up to the last flush.
"""
from __future__ import annotations

import importlib
import sys
import threading
from typing import Any

from rclpy.callback_groups import MutuallyExclusiveCallbackGroup
from rclpy.node import Node
from rclpy.qos import DurabilityPolicy, HistoryPolicy, QoSProfile, ReliabilityPolicy

from slm_agent.bench.bag import KNOWN_TOPIC_TYPES, BagError, BagWriter, normalize_msgtype
from slm_agent.ros.params import declare_settings, read_settings
from slm_agent.ros.runtime import run_node
from slm_agent.settings import RecorderSettings, SettingsError

NODE_NAME = "recorder"


class RecorderConfigError(RuntimeError):
    pass


def message_class(msgtype: str):
    pkg, _, name = normalize_msgtype(msgtype).split("/")
    return getattr(importlib.import_module(f"{pkg}.msg"), name)


class RecorderNode(Node):
    def __init__(self, **kwargs: Any) -> None:
        super().__init__(NODE_NAME, **kwargs)
        try:
            declare_settings(self, RecorderSettings)
            p = read_settings(self, RecorderSettings)
        except SettingsError as exc:
            self.get_logger().error(f"bad recorder configuration: {'; '.join(exc.problems)}")
            self.destroy_node()
            raise RecorderConfigError(str(exc)) from exc
        self.topics = [t.strip() for t in p.topics.split(",") if t.strip()]
        self.output = p.output
        try:
            self.writer = BagWriter(self.output)
        except (BagError, OSError) as exc:
            self.get_logger().error(f"cannot record: {exc}")
            self.destroy_node()
            raise RecorderConfigError(str(exc)) from exc
        if not self.writer.can_flush:
            self.get_logger().warning("this rosbags version has no chunk flush: a kill -9 may lose "
                                      "everything since the last 1 MiB chunk")
        self._qos = QoSProfile(history=HistoryPolicy.KEEP_LAST, depth=p.qos_depth,
                               reliability=ReliabilityPolicy.RELIABLE, durability=DurabilityPolicy.VOLATILE)
        self._lock = threading.Lock()
        self._subs: dict[str, Any] = {}
        self._write_errors = 0
        self._matched: set[str] = set()
        self._group = MutuallyExclusiveCallbackGroup()
        for topic in self.topics:
            if topic in KNOWN_TOPIC_TYPES:
                self._subscribe(topic, KNOWN_TOPIC_TYPES[topic])
        self.create_timer(p.flush_period_s, self._flush, callback_group=self._group)
        self.create_timer(p.discovery_period_s, self._discover, callback_group=self._group)
        self._discover()
        self.get_logger().info(f"recording {len(self.topics)} topics to {self.output} "
                               f"({len(self._subs)} subscribed now)")

    def _subscribe(self, topic: str, msgtype: str) -> None:
        with self._lock:
            if topic in self._subs:
                return
            try:
                cls = message_class(msgtype)
                self.writer.add_topic(topic, msgtype)
            except Exception as exc:  # noqa: BLE001 - unknown type: log, keep recording the rest
                self.get_logger().error(f"cannot record {topic} ({msgtype}): {exc}")
                self._subs[topic] = None
                return
            self._subs[topic] = self.create_subscription(cls, topic, self._make_cb(topic), self._qos, raw=True)

    def _make_cb(self, topic: str):
        def cb(data: bytes) -> None:
            try:
                self.writer.write(topic, self.get_clock().now().nanoseconds, data)
            except Exception as exc:  # noqa: BLE001 - never let a write error kill the executor
                self._write_errors += 1
                if self._write_errors <= 3:
                    self.get_logger().error(f"write {topic}: {exc}")
        return cb

    def _discover(self) -> None:
        for topic, sub in list(self._subs.items()):
            if sub is not None and topic not in self._matched and sub.get_publisher_count() > 0:
                self._matched.add(topic)
                self.get_logger().info(f"matched a publisher on {topic}")
        missing = [t for t in self.topics if t not in self._subs]
        if not missing:
            return
        graph = dict(self.get_topic_names_and_types())
        for topic in missing:
            types = graph.get(topic)
            if types:
                self._subscribe(topic, types[0])

    def _flush(self) -> None:
        try:
            self.writer.flush()
        except Exception as exc:  # noqa: BLE001
            self.get_logger().error(f"flush failed: {exc}")

    def _say(self, text: str, error: bool = False) -> None:
        """Log, or print to stderr once the context is down (shutdown path: no rosout)."""
        if self.context.ok():
            (self.get_logger().error if error else self.get_logger().info)(text)
        else:
            print(f"[{'ERROR' if error else 'INFO'}] [{NODE_NAME}]: {text}", file=sys.stderr, flush=True)

    def close(self) -> None:
        try:
            self.writer.close()
        except Exception as exc:  # noqa: BLE001
            self._say(f"closing the bag failed: {exc}", error=True)
            return
        counts = self.writer.counts()
        self._say(f"bag closed: {self.output} ({sum(counts.values())} messages: "
                  + ", ".join(f"{t} {n}" for t, n in counts.items() if n) + ")")


def main(args=None) -> int:
    try:
        return run_node(RecorderNode, args if args is not None else sys.argv)
    except RecorderConfigError:
        return 2


if __name__ == "__main__":
    sys.exit(main())
