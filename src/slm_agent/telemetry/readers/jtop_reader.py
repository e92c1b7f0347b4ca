"""Reader backed by the jetson-stats (``jtop``) service.

Preferred on a Jetson when its service runs, because jtop already reads the
root-only sources (BPMP debugfs EMC, GPC clocks) with privilege and keeps an
averaged view.  It needs ``/run/jtop.sock`` (the jetson_stats.service socket),
so ``probe`` checks for that and for the importable package.

The mapping from jtop's dicts is done by pure functions (``map_power`` etc.)
so it can be checked against the documented 4.x shapes without a Jetson:

* ``jetson.power``      -> ``{'rail': {NAME: {'volt' mV, 'curr' mA, 'power' mW,
  'online', ...}}, 'tot': {'power' mW, 'name'?}}``
* ``jetson.temperature`` -> ``{NAME: {'temp' C, 'online'}}`` (-256 = offline)
* ``jetson.cpu``        -> ``{'total': {'user','nice','system','idle'} %,
  'cpu': [{'online', 'user',..., 'idle', 'freq': {'cur' kHz}}]}``
* ``jetson.gpu``        -> ``{NAME: {'type', 'status': {'load' %}, 'freq': {'cur' kHz}}}``
* ``jetson.memory``     -> ``{'RAM': {'tot','used'} kB, 'EMC': {'cur' kHz, 'online'}}``
"""
from __future__ import annotations

import importlib.util
import math
import os
import threading
import time
from typing import Any, Mapping

from ..model import (
    NAN,
    PowerSample,
    RailSample,
    SystemSample,
    ThermalSample,
    ThermalZone,
    unavailable_power,
    unavailable_system,
    unavailable_thermal,
)
from ._fs import rooted
from ._jetson import jetson_total
from .base import Clock, Reader

JTOP_SOCKET = "/run/jtop.sock"
JTOP_OFFLINE_C = -256


def _num(value: Any, scale: float = 1.0) -> float:
    try:
        v = float(value) * scale
    except (TypeError, ValueError):
        return NAN
    return v if math.isfinite(v) else NAN


def _rail(name: str, d: Mapping[str, Any]) -> RailSample:
    online = bool(d.get("online", True))
    v = _num(d.get("volt"), 1e-3)
    a = _num(d.get("curr"), 1e-3)
    p = _num(d.get("power"), 1e-3)
    if not math.isfinite(p):
        p = v * a
    ok = online and math.isfinite(p)
    return RailSample(str(name), v, a, p if ok else NAN, ok)


def map_power(power: Mapping[str, Any], stamp_ns: int, source: str = "jtop") -> PowerSample:
    rails = [_rail(name, d) for name, d in sorted((power.get("rail") or {}).items())]
    tot = power.get("tot") or {}
    if tot.get("name"):
        # jtop moves the VDD_IN rail out of 'rail' into 'tot'; put it back so
        # the sample lists every rail and the same total rule applies.
        rails.append(_rail(str(tot["name"]), tot))
    total, ok, label, msg = jetson_total(rails)
    return PowerSample(stamp_ns, source, rails, total, ok, label, msg)


def map_temperature(temps: Mapping[str, Any], stamp_ns: int, source: str = "jtop") -> ThermalSample:
    zones = []
    for name, d in sorted(temps.items()):
        t = _num(d.get("temp") if isinstance(d, Mapping) else d)
        online = bool(d.get("online", True)) if isinstance(d, Mapping) else True
        ok = online and math.isfinite(t) and t > JTOP_OFFLINE_C
        zones.append(ThermalZone(str(name), t if ok else NAN, ok))
    # jtop exposes no throttling state; say so rather than claim "not throttling".
    return ThermalSample(stamp_ns, source, zones, False, False)


def _busy(d: Mapping[str, Any]) -> float:
    idle = _num(d.get("idle"))
    if math.isfinite(idle):
        return max(0.0, min(100.0, 100.0 - idle))
    parts = [_num(d.get(k)) for k in ("user", "nice", "system")]
    return sum(parts) if all(math.isfinite(x) for x in parts) else NAN


def map_system(cpu: Mapping[str, Any], gpu: Mapping[str, Any], memory: Mapping[str, Any],
               stamp_ns: int, source: str = "jtop") -> SystemSample:
    total = _busy(cpu.get("total") or {})
    per, freqs = [], []
    for core in cpu.get("cpu") or []:
        online = bool(core.get("online", False))
        per.append(_busy(core) if online else NAN)
        freqs.append(_num((core.get("freq") or {}).get("cur"), 1e-3) if online else NAN)
    load = fmhz = NAN
    for _name, g in sorted(gpu.items()):
        if g.get("type", "integrated") == "integrated":
            load = _num((g.get("status") or {}).get("load"))
            fmhz = _num((g.get("freq") or {}).get("cur"), 1e-3)
            break
    ram = memory.get("RAM") or {}
    mem_total = _num(ram.get("tot"), 1024.0)
    mem_used = _num(ram.get("used"), 1024.0)
    emc = memory.get("EMC") or {}
    emc_mhz = _num(emc.get("cur"), 1e-3) if emc.get("online", bool(emc)) else NAN
    return SystemSample(
        stamp_ns=stamp_ns, source=source, cpu_percent=total, per_cpu_percent=per,
        cpu_freq_mhz=freqs, gpu_load_percent=load, gpu_freq_mhz=fmhz, emc_freq_mhz=emc_mhz,
        mem_total_bytes=int(mem_total) if math.isfinite(mem_total) else NAN,
        mem_used_bytes=int(mem_used) if math.isfinite(mem_used) else NAN,
        cpu_available=math.isfinite(total),
        cpu_freq_available=any(math.isfinite(f) for f in freqs),
        gpu_load_available=math.isfinite(load), gpu_freq_available=math.isfinite(fmhz),
        emc_available=math.isfinite(emc_mhz),
        mem_available=math.isfinite(mem_total) and math.isfinite(mem_used),
    )


class JtopReader(Reader):
    name = "jtop"

    @classmethod
    def probe(cls, root: str = "/") -> bool:
        try:
            return (importlib.util.find_spec("jtop") is not None
                    and os.path.exists(rooted(root, JTOP_SOCKET)))
        except Exception:  # noqa: BLE001 - probe must never raise
            return False

    def __init__(self, root: str = "/", clock_ns: Clock = time.monotonic_ns,
                 interval_s: float = 0.5, retry_s: float = 5.0) -> None:
        super().__init__(root, clock_ns)
        self._interval_s = interval_s
        self._retry_s = retry_s
        self._lock = threading.Lock()
        self._jetson: Any = None
        self._error = ""
        self._next_attempt = 0.0

    def _client(self) -> Any:
        """Connect lazily, so constructing the reader never blocks or raises.

        A failed connection is retried at most every ``retry_s`` so a stopped
        service costs one socket attempt per few seconds, not one per read.
        """
        with self._lock:
            if self._jetson is not None and self._jetson.is_alive():
                return self._jetson
            self._jetson = None
            now = time.monotonic()
            if now < self._next_attempt:
                return None
            try:
                from jtop import jtop  # type: ignore[import-not-found]

                client = jtop(interval=self._interval_s)
                client.start()
                self._jetson, self._error = client, ""
            except Exception as exc:  # noqa: BLE001
                self._error = f"jtop unavailable: {exc!r}"
                self._next_attempt = now + self._retry_s
            return self._jetson

    def _read_power(self, stamp_ns: int) -> PowerSample:
        j = self._client()
        if j is None:
            return unavailable_power(stamp_ns, self.name, self._error)
        return map_power(j.power, stamp_ns, self.name)

    def _read_thermal(self, stamp_ns: int) -> ThermalSample:
        j = self._client()
        if j is None:
            return unavailable_thermal(stamp_ns, self.name)
        return map_temperature(j.temperature, stamp_ns, self.name)

    def _read_system(self, stamp_ns: int) -> SystemSample:
        j = self._client()
        if j is None:
            return unavailable_system(stamp_ns, self.name)
        return map_system(j.cpu, j.gpu, j.memory, stamp_ns, self.name)

    def close(self) -> None:
        with self._lock:
            if self._jetson is not None:
                try:
                    self._jetson.close()
                except Exception:  # noqa: BLE001
                    pass
                self._jetson = None
