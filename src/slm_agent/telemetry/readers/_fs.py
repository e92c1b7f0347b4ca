"""Tolerant sysfs/procfs access shared by the file-based readers.

sysfs files vanish (hot-unplug, a core going offline), return EIO while a
sensor is power-gated, and under a fixture tree may be directories, empty or
garbage.  Every helper here therefore turns *any* failure into ``None``/NaN, so
a reader can report "not available" instead of raising in a ROS callback.

All paths are built with :func:`rooted` so a reader constructed with
``root=tmp_path`` never touches the real ``/sys``.
"""
from __future__ import annotations

import glob
import math
import os
import re
import threading
from dataclasses import dataclass

from ..model import NAN, ThermalZone

# sysfs attributes are tiny; cap reads so a garbage fixture (or a misdirected
# path to a huge file) cannot stall a callback.
_MAX_READ = 64 * 1024

# Jetson thermal zones report this (milli-degC) when the sensor's domain is
# power-gated, e.g. cv0-thermal while no DLA/PVA is active.  jetson-stats treats
# -256 C as "offline"; so do we.
JETSON_OFFLINE_MILLI_C = -256000


def rooted(root: str, path: str) -> str:
    """Join an absolute system path onto ``root`` (``"/"`` leaves it alone)."""
    return os.path.join(root, path.lstrip("/"))


def read_text(path: str) -> str | None:
    try:
        with open(path, "rb") as fh:
            data = fh.read(_MAX_READ)
        return data.decode("utf-8").strip()
    except (OSError, UnicodeDecodeError, ValueError):
        return None


def read_number(path: str) -> float:
    """First whitespace-separated token as a finite float, else NaN.

    Taking the first token accepts values like ``"32760 ma"`` that some Jetson
    attributes carry; rejecting inf/nan keeps a literal "nan" in a file from
    masquerading as a reading.
    """
    text = read_text(path)
    if not text:
        return NAN
    try:
        value = float(text.split()[0])
    except ValueError:
        return NAN
    return value if math.isfinite(value) else NAN


def read_int(path: str) -> int | None:
    text = read_text(path)
    if not text:
        return None
    try:
        return int(text.split()[0])
    except ValueError:
        return None


def sorted_by_number(paths: list[str]) -> list[str]:
    """Sort ``thermal_zone10`` after ``thermal_zone9`` (plain sort would not)."""

    def key(p: str) -> tuple:
        base = os.path.basename(p.rstrip("/"))
        return tuple(int(x) if x.isdigit() else x for x in re.split(r"(\d+)", base))

    return sorted(paths, key=key)


# --------------------------------------------------------------------- thermal

_TRIP_TYPES_THAT_THROTTLE = {"passive", "hot", "critical"}
_COOLING_TYPES_NOT_THROTTLING = ("fan", "pwm", "tcc offset")


@dataclass
class ThermalReading:
    zones: list[ThermalZone]
    throttling: bool
    throttling_available: bool


def read_thermal_zones(root: str) -> ThermalReading:
    """Read ``/sys/class/thermal``.

    Throttling is inferred two ways, either being enough: a zone at or above a
    passive/hot/critical trip point (where the kernel governor starts capping
    clocks), or a non-fan cooling device with ``cur_state > 0``.  Fans are
    excluded because a spinning fan is cooling, not throttling.
    """
    zones: list[ThermalZone] = []
    throttling = False
    evidence = False
    seen: set[str] = set()
    base = rooted(root, "/sys/class/thermal")
    for zdir in sorted_by_number(glob.glob(os.path.join(base, "thermal_zone*"))):
        zone_no = os.path.basename(zdir)[len("thermal_zone"):]
        name = read_text(os.path.join(zdir, "type")) or os.path.basename(zdir)
        if name in seen:
            name = f"{name}.{zone_no}"
        seen.add(name)
        milli = read_number(os.path.join(zdir, "temp"))
        ok = math.isfinite(milli) and milli > JETSON_OFFLINE_MILLI_C and milli > -273150
        temp_c = milli / 1000.0 if ok else NAN
        zones.append(ThermalZone(name, temp_c, ok))
        for tpath in glob.glob(os.path.join(zdir, "trip_point_*_type")):
            ttype = read_text(tpath)
            if ttype not in _TRIP_TYPES_THAT_THROTTLE:
                continue
            trip = read_number(tpath[: -len("_type")] + "_temp")
            if not math.isfinite(trip):
                continue
            evidence = evidence or ok
            if ok and milli >= trip:
                throttling = True
    cbase = os.path.join(base, "cooling_device*")
    for cdir in sorted_by_number(glob.glob(cbase)):
        ctype = (read_text(os.path.join(cdir, "type")) or "").lower()
        if not ctype or any(word in ctype for word in _COOLING_TYPES_NOT_THROTTLING):
            continue
        state = read_int(os.path.join(cdir, "cur_state"))
        if state is None:
            continue
        evidence = True
        if state > 0:
            throttling = True
    return ThermalReading(zones, throttling, evidence)


def read_hwmon_temperatures(root: str) -> list[ThermalZone]:
    """``/sys/class/hwmon/*/temp*_input`` (milli-degC), named ``chip/label``."""
    zones: list[ThermalZone] = []
    base = rooted(root, "/sys/class/hwmon")
    for hdir in sorted_by_number(glob.glob(os.path.join(base, "hwmon*"))):
        chip = read_text(os.path.join(hdir, "name")) or os.path.basename(hdir)
        for tin in sorted_by_number(glob.glob(os.path.join(hdir, "temp*_input"))):
            stem = os.path.basename(tin)[: -len("_input")]
            label = read_text(os.path.join(hdir, f"{stem}_label")) or stem
            milli = read_number(tin)
            ok = math.isfinite(milli) and milli > -273150
            zones.append(ThermalZone(f"{chip}/{label}", milli / 1000.0 if ok else NAN, ok))
    return zones


# ------------------------------------------------------------------------- cpu

def cpu_indices(root: str) -> list[int]:
    """CPU numbers known to sysfs (present, online or not)."""
    out = []
    for d in glob.glob(rooted(root, "/sys/devices/system/cpu/cpu[0-9]*")):
        suffix = os.path.basename(d)[3:]
        if suffix.isdigit():
            out.append(int(suffix))
    return sorted(out)


def parse_proc_stat(text: str) -> dict[str, tuple[int, int]]:
    """Map ``"cpu"``/``"cpuN"`` to ``(busy+idle jiffies, idle jiffies)``.

    Only the first eight columns count: guest time is already included in
    user/nice, so adding guest columns would double count it.  iowait counts as
    idle, as top(1) does.
    """
    out: dict[str, tuple[int, int]] = {}
    for line in text.splitlines():
        if not line.startswith("cpu"):
            continue
        parts = line.split()
        try:
            vals = [int(v) for v in parts[1:9]]
        except ValueError:
            continue
        if len(vals) < 4:
            continue
        idle = vals[3] + (vals[4] if len(vals) > 4 else 0)
        out[parts[0]] = (sum(vals), idle)
    return out


class CpuUtilTracker:
    """CPU utilisation as the delta between two ``/proc/stat`` snapshots.

    The constructor takes the baseline, so the first ``sample()`` reports the
    utilisation since the reader was created.  If no jiffy elapsed since the
    previous snapshot (two calls within one tick) the value is NaN rather than
    a 0 % or 100 % artefact.  Lock-protected because the baseline is shared
    state and a ROS timer and a benchmark thread may both poll.
    """

    def __init__(self, root: str) -> None:
        self._path = rooted(root, "/proc/stat")
        self._lock = threading.Lock()
        self._prev = self._snapshot()

    def _snapshot(self) -> dict[str, tuple[int, int]] | None:
        text = read_text(self._path)
        if text is None:
            return None
        snap = parse_proc_stat(text)
        return snap or None

    def sample(self, n_cpus: int) -> tuple[float, list[float]]:
        with self._lock:
            cur = self._snapshot()
            prev, self._prev = self._prev, (cur if cur is not None else self._prev)
        if cur is None or prev is None:
            return NAN, [NAN] * n_cpus

        def util(key: str) -> float:
            if key not in cur or key not in prev:
                return NAN
            dt = cur[key][0] - prev[key][0]
            di = cur[key][1] - prev[key][1]
            if dt <= 0 or di < 0:
                return NAN
            return max(0.0, min(100.0, 100.0 * (1.0 - di / dt)))

        width = max([n_cpus] + [int(k[3:]) + 1 for k in cur if k[3:].isdigit()])
        return util("cpu"), [util(f"cpu{i}") for i in range(width)]


def read_cpu_freqs_mhz(root: str, n_cpus: int) -> list[float]:
    """``scaling_cur_freq`` (kHz) per CPU, NaN for offline/unreadable cores."""
    out = []
    for i in range(n_cpus):
        khz = read_number(rooted(root, f"/sys/devices/system/cpu/cpu{i}/cpufreq/scaling_cur_freq"))
        out.append(khz / 1000.0 if math.isfinite(khz) and khz > 0 else NAN)
    return out


# ---------------------------------------------------------------------- memory

def read_meminfo_bytes(root: str) -> tuple[float, float]:
    """``(total, used)`` bytes from ``/proc/meminfo`` or ``(NaN, NaN)``.

    used = MemTotal - MemAvailable; kernels older than 3.14 lack MemAvailable,
    so fall back to free + buffers + cached there.
    """
    text = read_text(rooted(root, "/proc/meminfo"))
    if not text:
        return NAN, NAN
    kv: dict[str, int] = {}
    for line in text.splitlines():
        m = re.match(r"^(\w+):\s+(\d+)\s*kB", line)
        if m:
            kv[m.group(1)] = int(m.group(2)) * 1024
    total = kv.get("MemTotal")
    if total is None or total <= 0:
        return NAN, NAN
    if "MemAvailable" in kv:
        avail = kv["MemAvailable"]
    elif "MemFree" in kv:
        avail = kv["MemFree"] + kv.get("Buffers", 0) + kv.get("Cached", 0)
    else:
        return total, NAN
    return total, max(0, total - avail)
