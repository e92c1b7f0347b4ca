"""Discrete NVIDIA GPU reader via NVML (``nvidia-ml-py`` provides ``pynvml``).

For comparing a Jetson against a desktop GPU: total power is the sum of the
GPUs' board power (``nvmlDeviceGetPowerUsage``, mW), which is what the card
draws, not the host.  CPU, memory and host thermal zones come from the generic
Linux reader so the system sample is still complete.

NVML talks to the real driver and cannot be redirected to a fixture tree, so
``probe`` is False for any ``root`` other than ``/``.  Every NVML call is
wrapped individually: on consumer cards some queries raise NotSupported and
that must cost one field, not the whole sample.
"""
from __future__ import annotations

import math
import os
import threading
import time
from typing import Any, Callable

from ..model import NAN, PowerSample, RailSample, SystemSample, ThermalSample, ThermalZone
from .base import Clock
from .linux import LinuxReader

_THERMAL_REASON_BITS = 0x20 | 0x40  # SW and HW thermal slowdown


def _import_pynvml() -> Any:
    try:
        import pynvml  # type: ignore[import-not-found]
    except Exception:  # noqa: BLE001
        return None
    return pynvml


def _call(fn: Callable[..., Any], *args: Any) -> Any:
    try:
        return fn(*args)
    except Exception:  # noqa: BLE001 - NVMLError_NotSupported and friends
        return None


class NvmlReader(LinuxReader):
    name = "nvml"

    @classmethod
    def probe(cls, root: str = "/") -> bool:
        if os.path.realpath(root) != "/":
            return False
        nv = _import_pynvml()
        if nv is None:
            return False
        try:
            nv.nvmlInit()
        except Exception:  # noqa: BLE001 - no driver / library
            return False
        try:
            return int(nv.nvmlDeviceGetCount()) > 0
        except Exception:  # noqa: BLE001
            return False
        finally:
            _call(nv.nvmlShutdown)

    def __init__(self, root: str = "/", clock_ns: Clock = time.monotonic_ns) -> None:
        super().__init__(root, clock_ns)
        self._nv = _import_pynvml()
        self._lock = threading.Lock()
        self._handles: list[Any] = []
        self._error = ""
        if self._nv is None:
            self._error = "pynvml not importable (pip install nvidia-ml-py)"
            return
        try:
            self._nv.nvmlInit()
            count = int(self._nv.nvmlDeviceGetCount())
            self._handles = [self._nv.nvmlDeviceGetHandleByIndex(i) for i in range(count)]
        except Exception as exc:  # noqa: BLE001
            self._error = f"NVML init failed: {exc!r}"
            self._handles = []

    def _read_power(self, stamp_ns: int) -> PowerSample:
        if not self._handles:
            return PowerSample(stamp_ns, self.name, [], NAN, False, "", self._error or "no GPU")
        rails = []
        with self._lock:
            for i, h in enumerate(self._handles):
                mw = _call(self._nv.nvmlDeviceGetPowerUsage, h)
                w = float(mw) / 1000.0 if mw is not None else NAN
                ok = math.isfinite(w)
                rails.append(RailSample(f"GPU{i}", NAN, NAN, w if ok else NAN, ok))
        label = "sum(" + ",".join(r.name for r in rails) + ")"
        if all(r.available for r in rails):
            return PowerSample(stamp_ns, self.name, rails, sum(r.power_w for r in rails), True, label)
        return PowerSample(stamp_ns, self.name, rails, NAN, False, label, "GPU power not supported/readable")

    def _read_thermal(self, stamp_ns: int) -> ThermalSample:
        host = super()._read_thermal(stamp_ns)
        zones: list[ThermalZone] = []
        throttling = host.throttling
        known = host.throttling_available
        with self._lock:
            for i, h in enumerate(self._handles):
                t = _call(self._nv.nvmlDeviceGetTemperature, h, self._nv.NVML_TEMPERATURE_GPU)
                ok = t is not None and math.isfinite(float(t))
                zones.append(ThermalZone(f"GPU{i}", float(t) if ok else NAN, ok))
                fn = getattr(self._nv, "nvmlDeviceGetCurrentClocksEventReasons", None) or getattr(
                    self._nv, "nvmlDeviceGetCurrentClocksThrottleReasons", None)
                reasons = _call(fn, h) if fn is not None else None
                if reasons is not None:
                    known = True
                    throttling = throttling or bool(int(reasons) & _THERMAL_REASON_BITS)
        return ThermalSample(stamp_ns, self.name, zones + host.zones, throttling, known)

    def _read_system(self, stamp_ns: int) -> SystemSample:
        s = super()._read_system(stamp_ns)
        s.source = self.name
        if not self._handles:
            return s
        with self._lock:
            h = self._handles[0]  # the benchmarked device; multi-GPU load is out of scope
            util = _call(self._nv.nvmlDeviceGetUtilizationRates, h)
            gclk = _call(self._nv.nvmlDeviceGetClockInfo, h, self._nv.NVML_CLOCK_GRAPHICS)
            mclk = _call(self._nv.nvmlDeviceGetClockInfo, h, self._nv.NVML_CLOCK_MEM)
        s.gpu_load_percent = float(util.gpu) if util is not None else NAN
        s.gpu_freq_mhz = float(gclk) if gclk is not None else NAN
        s.emc_freq_mhz = float(mclk) if mclk is not None else NAN  # GPU memory clock
        s.gpu_load_available = math.isfinite(s.gpu_load_percent)
        s.gpu_freq_available = math.isfinite(s.gpu_freq_mhz)
        s.emc_available = math.isfinite(s.emc_freq_mhz)
        return s

    def close(self) -> None:
        if self._nv is not None and self._handles:
            _call(self._nv.nvmlShutdown)
            self._handles = []
