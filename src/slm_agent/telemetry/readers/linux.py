"""Generic Linux reader: RAPL, hwmon, thermal zones, /proc/stat, /proc/meminfo.

This is the fallback on a developer's x86 box or CI.  Total power is the sum of
the RAPL *package* domains only: core/uncore/dram sub-zones are parts of (or,
for dram, outside) the package and adding them would double count or mix
scopes.  ``intel-rapl-mmio`` zones mirror the package domain on some laptops
and are skipped for the same reason.

RAPL exposes cumulative energy counters, not power, so power is
Δenergy/Δt between two reads.  The constructor takes a baseline, so the first
``read_power()`` averages over the time since construction; a read with no
elapsed time gives NaN.  Since Linux 5.10 ``energy_uj`` is root-only
(CVE-2020-8694), so an unprivileged process sees power as unavailable.
"""
from __future__ import annotations

import glob
import math
import os
import threading
import time
from dataclasses import dataclass

from ..model import (
    NAN,
    PowerSample,
    RailSample,
    SystemSample,
    ThermalSample,
)
from ._fs import (
    CpuUtilTracker,
    cpu_indices,
    read_cpu_freqs_mhz,
    read_hwmon_temperatures,
    read_meminfo_bytes,
    read_number,
    read_text,
    read_thermal_zones,
    rooted,
    sorted_by_number,
)
from .base import Clock, Reader


@dataclass(frozen=True)
class RaplZone:
    path: str
    name: str  # "package-0" or "package-0/core"
    is_package: bool


@dataclass(frozen=True)
class EnergyCounter:
    """Raw cumulative counter, for feeding ``EnergyCounterIntegrator``."""

    name: str
    energy_j: float
    max_range_j: float
    available: bool


def discover_rapl(root: str) -> list[RaplZone]:
    base = rooted(root, "/sys/class/powercap")
    entries = glob.glob(os.path.join(base, "intel-rapl:*"))
    by_id: dict[str, str] = {}
    for path in entries:
        by_id[os.path.basename(path)] = read_text(os.path.join(path, "name")) or os.path.basename(path)
    zones = []
    for path in sorted_by_number(entries):
        zid = os.path.basename(path)
        parts = zid.split(":")
        own = by_id[zid]
        if len(parts) == 2:
            zones.append(RaplZone(path, own, own.startswith("package")))
        else:
            parent = by_id.get(":".join(parts[:2]), ":".join(parts[:2]))
            zones.append(RaplZone(path, f"{parent}/{own}", False))
    return zones


def counter_delta(prev: float, cur: float, max_range: float) -> float:
    """Counter increase from ``prev`` to ``cur`` allowing one wrap.

    The powercap counter counts up to ``max_energy_range_uj`` and restarts
    from zero, so a decrease means exactly one wrap if reads are frequent
    enough (callers keep reads well under the ~minutes wrap period).
    """
    if not (math.isfinite(prev) and math.isfinite(cur)):
        return NAN
    if cur >= prev:
        return cur - prev
    if not math.isfinite(max_range) or max_range <= 0:
        return NAN
    return cur + max_range - prev


class LinuxReader(Reader):
    name = "linux"

    @classmethod
    def probe(cls, root: str = "/") -> bool:
        return read_text(rooted(root, "/proc/stat")) is not None

    def __init__(self, root: str = "/", clock_ns: Clock = time.monotonic_ns) -> None:
        super().__init__(root, clock_ns)
        self._cpu = CpuUtilTracker(root)
        self._rapl = discover_rapl(root)
        self._rapl_lock = threading.Lock()
        self._rapl_prev: dict[str, tuple[int, float]] = {}
        now = self._clock_ns()
        for z in self._rapl:
            e = read_number(os.path.join(z.path, "energy_uj"))
            if math.isfinite(e):
                self._rapl_prev[z.path] = (now, e)

    # ----------------------------------------------------------------- power
    def read_energy_counters(self) -> list[EnergyCounter]:
        """Raw RAPL counters in joules (exact energy, no Δt needed)."""
        out = []
        for z in self._rapl:
            e = read_number(os.path.join(z.path, "energy_uj"))
            mx = read_number(os.path.join(z.path, "max_energy_range_uj"))
            out.append(EnergyCounter(z.name, e / 1e6, mx / 1e6, math.isfinite(e)))
        return out

    def _rapl_rails(self, stamp_ns: int) -> list[tuple[RaplZone, RailSample]]:
        out = []
        with self._rapl_lock:
            for z in self._rapl:
                e = read_number(os.path.join(z.path, "energy_uj"))
                mx = read_number(os.path.join(z.path, "max_energy_range_uj"))
                prev = self._rapl_prev.get(z.path)
                power = NAN
                if math.isfinite(e):
                    if prev is not None and stamp_ns > prev[0]:
                        delta_uj = counter_delta(prev[1], e, mx)
                        power = delta_uj / ((stamp_ns - prev[0]) / 1e3)  # uJ/us = W
                    if prev is None or stamp_ns > prev[0]:
                        self._rapl_prev[z.path] = (stamp_ns, e)
                ok = math.isfinite(power)
                out.append((z, RailSample(z.name, NAN, NAN, power if ok else NAN, ok)))
        return out

    def _hwmon_power_rails(self) -> list[RailSample]:
        """hwmon ``power*_input`` sensors (microwatts per the hwmon ABI)."""
        rails = []
        base = rooted(self.root, "/sys/class/hwmon")
        for hdir in sorted_by_number(glob.glob(os.path.join(base, "hwmon*"))):
            chip = read_text(os.path.join(hdir, "name")) or os.path.basename(hdir)
            for pin in sorted_by_number(glob.glob(os.path.join(hdir, "power*_input"))):
                stem = os.path.basename(pin)[: -len("_input")]
                label = read_text(os.path.join(hdir, f"{stem}_label")) or stem
                uw = read_number(pin)
                ok = math.isfinite(uw)
                rails.append(RailSample(f"{chip}/{label}", NAN, NAN, uw / 1e6 if ok else NAN, ok))
        return rails

    def _read_power(self, stamp_ns: int) -> PowerSample:
        rapl = self._rapl_rails(stamp_ns)
        rails = [r for _, r in rapl] + self._hwmon_power_rails()
        packages = [(z, r) for z, r in rapl if z.is_package]
        label = "sum(" + ",".join(z.name for z, _ in packages) + ")" if packages else ""
        if not packages:
            return PowerSample(stamp_ns, self.name, rails, NAN, False, "",
                               "no RAPL package domain under /sys/class/powercap")
        if all(r.available for _, r in packages):
            total = sum(r.power_w for _, r in packages)
            return PowerSample(stamp_ns, self.name, rails, total, True, label)
        return PowerSample(stamp_ns, self.name, rails, NAN, False, label,
                           "RAPL package energy unreadable or no interval yet "
                           "(energy_uj is root-only since Linux 5.10)")

    # --------------------------------------------------------------- thermal
    def _read_thermal(self, stamp_ns: int) -> ThermalSample:
        tz = read_thermal_zones(self.root)
        zones = tz.zones + read_hwmon_temperatures(self.root)
        return ThermalSample(stamp_ns, self.name, zones, tz.throttling, tz.throttling_available)

    # ---------------------------------------------------------------- system
    def _n_cpus(self) -> int:
        idx = cpu_indices(self.root)
        return (max(idx) + 1) if idx else 0

    def _read_system(self, stamp_ns: int) -> SystemSample:
        n = self._n_cpus()
        total, per_cpu = self._cpu.sample(n)
        freqs = read_cpu_freqs_mhz(self.root, max(n, len(per_cpu)))
        mem_total, mem_used = read_meminfo_bytes(self.root)
        return SystemSample(
            stamp_ns=stamp_ns,
            source=self.name,
            cpu_percent=total,
            per_cpu_percent=per_cpu,
            cpu_freq_mhz=freqs,
            gpu_load_percent=NAN,
            gpu_freq_mhz=NAN,
            emc_freq_mhz=NAN,
            mem_total_bytes=mem_total,
            mem_used_bytes=mem_used,
            cpu_available=math.isfinite(total),
            cpu_freq_available=any(math.isfinite(f) for f in freqs),
            mem_available=math.isfinite(mem_total) and math.isfinite(mem_used),
        )


__all__ = ["LinuxReader", "EnergyCounter", "RaplZone", "counter_delta", "discover_rapl"]
