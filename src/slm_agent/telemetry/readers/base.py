"""Common reader contract.

A reader is polled from ROS timers and benchmark threads; an exception escaping
a read would kill a callback and lose the run.  So the public ``read_*``
methods are template methods: they stamp the sample, call the subclass hook,
and turn any unexpected exception into an all-unavailable sample whose
``message``/flags say so.  Subclasses still report expected failures (missing
files, offline sensors) themselves, per field.
"""
from __future__ import annotations

import abc
import logging
import time
from typing import Callable, ClassVar

from ..model import (
    PowerSample,
    SystemSample,
    ThermalSample,
    unavailable_power,
    unavailable_system,
    unavailable_thermal,
)

log = logging.getLogger(__name__)

Clock = Callable[[], int]


class ReaderUnavailable(RuntimeError):
    """An explicitly requested reader cannot work on this machine."""


class Reader(abc.ABC):
    """Base class: ``read_power()``, ``read_thermal()``, ``read_system()``.

    ``root`` prefixes every filesystem path so tests can point a reader at a
    fixture tree.  ``clock_ns`` stamps samples and times counter deltas; it is
    monotonic by default because RAPL power and energy integration divide by
    elapsed time and must not see wall-clock jumps.
    """

    name: ClassVar[str] = "base"

    def __init__(self, root: str = "/", clock_ns: Clock = time.monotonic_ns) -> None:
        self.root = root
        self._clock_ns = clock_ns

    @classmethod
    @abc.abstractmethod
    def probe(cls, root: str = "/") -> bool:
        """Cheap check that this reader can produce real data under ``root``.

        Must never raise.
        """

    def read_power(self) -> PowerSample:
        stamp = self._clock_ns()
        try:
            return self._read_power(stamp)
        except Exception as exc:  # noqa: BLE001 - contract: reads never raise
            log.warning("%s: read_power failed: %r", self.name, exc)
            return unavailable_power(stamp, self.name, f"read failed: {exc!r}")

    def read_thermal(self) -> ThermalSample:
        stamp = self._clock_ns()
        try:
            return self._read_thermal(stamp)
        except Exception as exc:  # noqa: BLE001
            log.warning("%s: read_thermal failed: %r", self.name, exc)
            return unavailable_thermal(stamp, self.name)

    def read_system(self) -> SystemSample:
        stamp = self._clock_ns()
        try:
            return self._read_system(stamp)
        except Exception as exc:  # noqa: BLE001
            log.warning("%s: read_system failed: %r", self.name, exc)
            return unavailable_system(stamp, self.name)

    @abc.abstractmethod
    def _read_power(self, stamp_ns: int) -> PowerSample: ...

    @abc.abstractmethod
    def _read_thermal(self, stamp_ns: int) -> ThermalSample: ...

    @abc.abstractmethod
    def _read_system(self, stamp_ns: int) -> SystemSample: ...

    def close(self) -> None:
        """Release service connections (jtop socket, NVML handle)."""

    def __enter__(self) -> "Reader":
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()
