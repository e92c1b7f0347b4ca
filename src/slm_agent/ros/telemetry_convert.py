"""Telemetry dataclasses (``slm_agent.telemetry.model``) -> ROS messages.

Pure functions with no node state, so the conversion rules are testable
without DDS.  Rules that the message types force on us:

* float fields keep NaN for "unknown" (the dataclasses already use NaN), so an
  unavailable reading stays visibly unavailable on the wire;
* ``SystemState.mem_*_bytes`` are ``uint64`` and cannot hold NaN: unknown
  memory is published as ``0`` (a real machine never has 0 bytes of RAM);
* ``ThermalState`` has no "throttling known" flag: ``throttling`` False means
  "not throttling or unknown"; the diagnostics status says which.

Diagnostics (``diagnostic_msgs/DiagnosticStatus``) are built here too: one
status per area (power, thermal, system) with the figures as ``KeyValue``
pairs, so ``rqt_robot_monitor``/``ros2 topic echo /diagnostics`` show why a
level was chosen.
"""
from __future__ import annotations

import math
from typing import Iterable, Optional

from builtin_interfaces.msg import Time
from diagnostic_msgs.msg import DiagnosticStatus, KeyValue
from std_msgs.msg import Header

from slm_agent.coerce import num
from slm_agent.msg import PowerRail, PowerState, SystemState, ThermalState
from slm_agent.msg import ThermalZone as ThermalZoneMsg
from slm_agent.telemetry.model import (
    PowerModeInfo,
    PowerSample,
    SystemSample,
    ThermalSample,
    is_finite,
)

OK = DiagnosticStatus.OK
WARN = DiagnosticStatus.WARN
ERROR = DiagnosticStatus.ERROR
STALE = DiagnosticStatus.STALE


def _u64(value) -> int:
    """A uint64 field: the integer value, or 0 when unknown/negative."""
    return int(value) if is_finite(value) and value >= 0 else 0


def header(stamp: Time, frame_id: str = "") -> Header:
    return Header(stamp=stamp, frame_id=frame_id)


# ------------------------------------------------------------------ messages

def power_msg(sample: PowerSample, stamp: Time, power_mode: str = "") -> PowerState:
    msg = PowerState()
    msg.header = header(stamp)
    msg.source = sample.source
    msg.rails = [
        PowerRail(name=r.name, voltage_v=num(r.voltage_v), current_a=num(r.current_a),
                  power_w=num(r.power_w) if r.available else math.nan, available=bool(r.available))
        for r in sample.rails
    ]
    msg.total_rail = sample.total_rail
    ok = bool(sample.total_available) and is_finite(sample.total_power_w)
    msg.total_power_w = float(sample.total_power_w) if ok else math.nan
    msg.total_available = ok
    msg.power_mode = power_mode or ""
    return msg


def thermal_msg(sample: ThermalSample, stamp: Time) -> ThermalState:
    msg = ThermalState()
    msg.header = header(stamp)
    msg.source = sample.source
    msg.zones = [
        ThermalZoneMsg(name=z.name, temperature_c=num(z.temperature_c) if z.available else math.nan,
                       available=bool(z.available))
        for z in sample.zones
    ]
    msg.throttling = bool(sample.throttling and sample.throttling_available)
    return msg


def system_msg(sample: SystemSample, stamp: Time) -> SystemState:
    msg = SystemState()
    msg.header = header(stamp)
    msg.source = sample.source
    msg.cpu_percent = num(sample.cpu_percent) if sample.cpu_available else math.nan
    msg.per_cpu_percent = [num(v) for v in sample.per_cpu_percent]
    msg.cpu_freq_mhz = [num(v) for v in sample.cpu_freq_mhz]
    msg.gpu_load_percent = num(sample.gpu_load_percent) if sample.gpu_load_available else math.nan
    msg.gpu_freq_mhz = num(sample.gpu_freq_mhz) if sample.gpu_freq_available else math.nan
    msg.emc_freq_mhz = num(sample.emc_freq_mhz) if sample.emc_available else math.nan
    msg.mem_total_bytes = _u64(sample.mem_total_bytes) if sample.mem_available else 0
    msg.mem_used_bytes = _u64(sample.mem_used_bytes) if sample.mem_available else 0
    return msg


def fill_power_mode_response(res, info: PowerModeInfo, success: bool, message: str):
    """Fill a ``slm_agent/srv/PowerMode`` response from a controller ``PowerModeInfo``."""
    res.supported = bool(info.supported)
    res.success = bool(success)
    res.message = message or ""
    res.current_id = int(info.current_id)
    res.current_name = info.current_name or ""
    res.mode_ids = [int(i) for i, _n in info.modes]
    res.mode_names = [str(n) for _i, n in info.modes]
    return res


# --------------------------------------------------------------- diagnostics

def _fmt(value, unit: str = "", digits: int = 2) -> str:
    if isinstance(value, bool):
        return str(value).lower()
    if isinstance(value, int):
        return f"{value}{unit}"
    if isinstance(value, float):
        return f"{value:.{digits}f}{unit}" if math.isfinite(value) else "nan"
    return str(value)


def _kv(pairs: Iterable[tuple[str, object]]) -> list[KeyValue]:
    return [KeyValue(key=k, value=_fmt(v)) for k, v in pairs]


def _status(name: str, hardware_id: str, level: bytes, message: str,
            values: Iterable[tuple[str, object]]) -> DiagnosticStatus:
    return DiagnosticStatus(level=level, name=name, message=message, hardware_id=hardware_id,
                            values=_kv(values))


def power_status(sample: Optional[PowerSample], reader: str, power_mode: str, name: str,
                 hardware_id: str = "", power_mode_message: str = "") -> DiagnosticStatus:
    """OK with the total when power is measured; WARN saying so when it is not.

    WARN rather than OK for "not measured" because every energy figure of a
    benchmark run on this machine will then be NaN, which a user must notice
    before the run, not after.
    """
    if sample is None:
        return _status(name, hardware_id, STALE, f"no power sample yet (reader {reader})",
                       [("reader", reader)])
    values: list[tuple[str, object]] = [
        ("reader", reader), ("source", sample.source),
        ("total_available", bool(sample.total_available)),
        ("total_power_w", sample.total_power_w if sample.total_available else math.nan),
        ("total_rail", sample.total_rail), ("power_mode", power_mode or "unsupported"),
    ]
    values += [(f"rail {r.name} W", r.power_w if r.available else math.nan) for r in sample.rails]
    if sample.message:
        values.append(("note", sample.message))
    if power_mode_message:
        values.append(("power_mode_note", power_mode_message))
    if sample.total_available and is_finite(sample.total_power_w):
        return _status(name, hardware_id, OK, f"{sample.total_power_w:.2f} W ({sample.total_rail})", values)
    message = f"power not measured on this machine (reader {reader})"
    if sample.message:
        message += f": {sample.message}"
    return _status(name, hardware_id, WARN, message, values)


def thermal_status(sample: Optional[ThermalSample], reader: str, warn_c: float, error_c: float,
                   name: str, hardware_id: str = "") -> DiagnosticStatus:
    """ERROR if any zone >= error_c; WARN if >= warn_c or throttling; WARN if nothing is readable."""
    if sample is None:
        return _status(name, hardware_id, STALE, f"no thermal sample yet (reader {reader})",
                       [("reader", reader)])
    zones = [z for z in sample.zones if z.available and is_finite(z.temperature_c)]
    values: list[tuple[str, object]] = [
        ("reader", reader), ("source", sample.source),
        ("throttling", "unknown" if not sample.throttling_available else sample.throttling),
        ("warn_c", float(warn_c)), ("error_c", float(error_c)),
    ]
    values += [(f"{z.name} C", z.temperature_c if z.available else math.nan) for z in sample.zones]
    if not zones:
        return _status(name, hardware_id, WARN,
                       f"temperature not measured on this machine (reader {reader})", values)
    hottest = max(zones, key=lambda z: z.temperature_c)
    values.insert(2, ("max_c", hottest.temperature_c))
    values.insert(3, ("hottest_zone", hottest.name))
    hot = f"{hottest.name} {hottest.temperature_c:.1f} C"
    throttling = sample.throttling_available and sample.throttling
    if hottest.temperature_c >= error_c:
        return _status(name, hardware_id, ERROR, f"{hot} >= {error_c:g} C"
                       + (" and throttling" if throttling else ""), values)
    if throttling:
        return _status(name, hardware_id, WARN, f"throttling ({hot})", values)
    if hottest.temperature_c >= warn_c:
        return _status(name, hardware_id, WARN, f"{hot} >= {warn_c:g} C", values)
    return _status(name, hardware_id, OK, f"max {hot}", values)


def system_status(sample: Optional[SystemSample], reader: str, name: str,
                  hardware_id: str = "") -> DiagnosticStatus:
    """OK with load/clocks/memory; WARN when CPU load or memory could not be read."""
    if sample is None:
        return _status(name, hardware_id, STALE, f"no system sample yet (reader {reader})",
                       [("reader", reader)])
    mem_total = sample.mem_total_bytes if sample.mem_available else math.nan
    mem_used = sample.mem_used_bytes if sample.mem_available else math.nan
    values: list[tuple[str, object]] = [
        ("reader", reader), ("source", sample.source),
        ("cpu_percent", sample.cpu_percent if sample.cpu_available else math.nan),
        ("cpu_count", len(sample.per_cpu_percent)),
        ("gpu_load_percent", sample.gpu_load_percent if sample.gpu_load_available else math.nan),
        ("gpu_freq_mhz", sample.gpu_freq_mhz if sample.gpu_freq_available else math.nan),
        ("emc_freq_mhz", sample.emc_freq_mhz if sample.emc_available else math.nan),
        ("mem_total_bytes", int(mem_total) if is_finite(mem_total) else math.nan),
        ("mem_used_bytes", int(mem_used) if is_finite(mem_used) else math.nan),
    ]
    missing = [what for what, ok in (("cpu load", sample.cpu_available), ("memory", sample.mem_available))
               if not ok]
    if missing:
        return _status(name, hardware_id, WARN,
                       f"{' and '.join(missing)} not readable (reader {reader})", values)
    mem_pct = 100.0 * mem_used / mem_total if mem_total else math.nan
    return _status(name, hardware_id, OK, f"cpu {sample.cpu_percent:.0f} %, mem {mem_pct:.0f} %", values)


__all__ = [
    "ERROR", "OK", "STALE", "WARN", "fill_power_mode_response", "header", "power_msg",
    "power_status", "system_msg", "system_status", "thermal_msg", "thermal_status",
]
