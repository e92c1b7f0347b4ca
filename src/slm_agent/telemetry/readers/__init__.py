"""Telemetry readers and the policy for picking one.

``auto`` tries, in order: jtop (richest on a Jetson, needs its service),
jetson_sysfs (Jetson without the service), nvml (discrete NVIDIA GPU), linux
(anything else).  ``linux`` is returned even if its probe fails, so ``auto``
always yields a reader; its samples then say, field by field, that nothing was
readable.  An explicit choice that cannot work raises ``ReaderUnavailable``
instead, because a benchmark that asked for Jetson rails must not silently
record NaN power for a whole run.
"""
from __future__ import annotations

import time

from .base import Clock, Reader, ReaderUnavailable
from .jetson_sysfs import JetsonSysfsReader
from .jtop_reader import JtopReader
from .linux import EnergyCounter, LinuxReader
from .nvml import NvmlReader

READERS: dict[str, type[Reader]] = {
    "jtop": JtopReader,
    "jetson_sysfs": JetsonSysfsReader,
    "nvml": NvmlReader,
    "linux": LinuxReader,
}
AUTO_ORDER = ("jtop", "jetson_sysfs", "nvml", "linux")


def valid_reader_names() -> list[str]:
    return ["auto", *READERS]


def select_reader(preference: str = "auto", root: str = "/",
                  clock_ns: Clock = time.monotonic_ns) -> Reader:
    """Build the reader named by ``preference`` (or the best available for ``auto``)."""
    if preference == "auto":
        for key in AUTO_ORDER:
            cls = READERS[key]
            if cls.probe(root):
                return cls(root=root, clock_ns=clock_ns)
        return LinuxReader(root=root, clock_ns=clock_ns)
    if preference not in READERS:
        raise ValueError(
            f"unknown telemetry reader {preference!r}; valid: {', '.join(valid_reader_names())}")
    cls = READERS[preference]
    if not cls.probe(root):
        raise ReaderUnavailable(f"telemetry reader {preference!r} is not available under root={root!r}")
    return cls(root=root, clock_ns=clock_ns)


__all__ = [
    "AUTO_ORDER", "READERS", "EnergyCounter", "JetsonSysfsReader", "JtopReader", "LinuxReader",
    "NvmlReader", "Reader", "ReaderUnavailable", "select_reader", "valid_reader_names",
]
