"""Plain data carried from the telemetry readers to the benchmark and ROS layers.

Every numeric field that could not be read is ``math.nan`` and its availability
flag is ``False``.  The point is that an energy-per-token figure computed from a
missing rail must come out NaN and be visibly wrong, rather than silently using
a zero or a stale value that looks like a measurement.

Timestamps are ``time.monotonic_ns()`` by default (see ``Reader``) because the
energy integrator needs a clock that never jumps; a ROS adapter restamps with
the node clock when it publishes.
"""
from __future__ import annotations

import math
from dataclasses import dataclass, field

NAN = math.nan


def is_finite(value: float) -> bool:
    """True for a real measurement (not NaN, not +-inf, not None)."""
    try:
        return value is not None and math.isfinite(value)
    except TypeError:
        return False


@dataclass
class RailSample:
    """One power rail.

    ``available`` refers to ``power_w``: some sources (NVML) give power but no
    voltage/current, so those two can be NaN while the rail is still usable.
    """

    name: str
    voltage_v: float
    current_a: float
    power_w: float
    available: bool


@dataclass
class PowerSample:
    """A snapshot of all rails plus the one number the energy figures use.

    ``total_rail`` names what ``total_power_w`` is (e.g. ``"VDD_IN"``,
    ``"sum(package-0)"``, ``"sum(VDD_GPU_SOC,VDD_CPU_CV,VIN_SYS_5V0)"``) so a
    results file says which scope of power it measured.
    """

    stamp_ns: int
    source: str
    rails: list[RailSample]
    total_power_w: float
    total_available: bool
    total_rail: str
    message: str = ""


@dataclass
class ThermalZone:
    name: str
    temperature_c: float
    available: bool


@dataclass
class ThermalSample:
    """Temperatures plus whether the kernel is (probably) throttling.

    ``throttling_available`` is False when nothing on this machine lets us tell
    (no trip points, no cooling devices); ``throttling`` is then False but
    means "unknown", not "no".
    """

    stamp_ns: int
    source: str
    zones: list[ThermalZone]
    throttling: bool
    throttling_available: bool = False


@dataclass
class SystemSample:
    """CPU/GPU/memory state.

    List fields are indexed by CPU number; an offline or unreadable core holds
    NaN.  ``mem_*_bytes`` are ints when read and NaN otherwise (hence the
    ``int | float`` annotation).  ``mem_used_bytes`` is MemTotal - MemAvailable,
    which on a Jetson includes GPU allocations (unified memory).
    """

    stamp_ns: int
    source: str
    cpu_percent: float
    per_cpu_percent: list[float]
    cpu_freq_mhz: list[float]
    gpu_load_percent: float
    gpu_freq_mhz: float
    emc_freq_mhz: float
    mem_total_bytes: int | float
    mem_used_bytes: int | float
    cpu_available: bool = False
    cpu_freq_available: bool = False
    gpu_load_available: bool = False
    gpu_freq_available: bool = False
    emc_available: bool = False
    mem_available: bool = False


@dataclass
class PowerModeInfo:
    """What nvpmodel offers and what it is set to.

    ``current_id`` is -1 and ``current_name`` "" when the current mode could
    not be determined; ``message`` then says why.
    """

    supported: bool
    current_id: int
    current_name: str
    modes: list[tuple[int, str]] = field(default_factory=list)
    message: str = ""
    default_id: int = -1


def unavailable_power(stamp_ns: int, source: str, message: str) -> PowerSample:
    return PowerSample(stamp_ns, source, [], NAN, False, "", message)


def unavailable_thermal(stamp_ns: int, source: str) -> ThermalSample:
    return ThermalSample(stamp_ns, source, [], False, False)


def unavailable_system(stamp_ns: int, source: str) -> SystemSample:
    return SystemSample(stamp_ns, source, NAN, [], [], NAN, NAN, NAN, NAN, NAN)
