"""Jetson reader straight from sysfs (JetPack 5/6, L4T >= 34), no daemon needed.

Why not only jtop: jtop needs its root service running; this reader works in a
container with ``/sys`` mounted read-only and is what the tests can pin down
exactly.

Layout used (hwmon driver, channel numbers start at 1 on L4T >= 34):

* power: ``/sys/bus/i2c/drivers/ina3221/<bus-addr>/hwmon/hwmon*/in{N}_label``,
  ``in{N}_input`` (mV), ``curr{N}_input`` (mA) for N in 1..3.  Channels
  labelled ``NC`` are unconnected; ``in7`` is the chip's sum-of-shunts channel,
  not a rail, so only 1..3 are read.
* GPU: ``/sys/class/devfreq/*`` whose ``device/of_node/name`` is the iGPU
  (ga10b/gv11b/gp10b/gpu); load is ``device/load`` in per-mille and frequency
  ``cur_freq`` in Hz.  A few fixed paths are tried if devfreq is hidden.
* EMC: BPMP debugfs ``clk/emc/rate`` (Hz; root only), then the
  ``devfreq/bwmgr`` and legacy ``debug/clk/emc`` locations.
* CPU, memory, thermal: as :class:`LinuxReader`.
"""
from __future__ import annotations

import glob
import math
import os
import re

from ..model import NAN, PowerSample, RailSample, SystemSample
from ._fs import read_number, read_text, rooted, sorted_by_number
from ._jetson import jetson_total
from .linux import LinuxReader

INA3221_DRIVER_DIRS = ("/sys/bus/i2c/drivers/ina3221",)
IGPU_OF_NAMES = ("ga10b", "gv11b", "gp10b", "gpu")
GPU_LOAD_FALLBACKS = (
    "/sys/devices/platform/bus@0/17000000.gpu/load",
    "/sys/devices/platform/17000000.ga10b/load",
    "/sys/devices/17000000.ga10b/load",
    "/sys/devices/platform/17000000.gv11b/load",
    "/sys/devices/17000000.gv11b/load",
    "/sys/devices/gpu.0/load",
)
EMC_RATE_FILES = (
    "/sys/kernel/debug/bpmp/debug/clk/emc/rate",
    "/sys/class/devfreq/bwmgr/cur_freq",
    "/sys/kernel/debug/clk/emc/clk_rate",
)


def ina3221_hwmon_dirs(root: str) -> list[str]:
    dirs: list[str] = []
    for drv in INA3221_DRIVER_DIRS:
        pattern = os.path.join(rooted(root, drv), "*", "hwmon", "hwmon*")
        dirs.extend(sorted_by_number(glob.glob(pattern)))
    return [d for d in dirs if os.path.isdir(d)]


def read_ina3221_rails(root: str) -> list[RailSample]:
    rails: list[RailSample] = []
    for hdir in ina3221_hwmon_dirs(root):
        device = os.path.basename(os.path.dirname(os.path.dirname(hdir)))  # e.g. 1-0040
        channels = set()
        for f in os.listdir(hdir):
            m = re.fullmatch(r"(?:in|curr)([1-3])_(?:label|input)", f)
            if m:
                channels.add(int(m.group(1)))
        for ch in sorted(channels):
            label = read_text(os.path.join(hdir, f"in{ch}_label"))
            if label == "NC":
                continue
            name = label or f"{device}:in{ch}"
            mv = read_number(os.path.join(hdir, f"in{ch}_input"))
            ma = read_number(os.path.join(hdir, f"curr{ch}_input"))
            v = mv / 1000.0 if math.isfinite(mv) else NAN
            a = ma / 1000.0 if math.isfinite(ma) else NAN
            p = v * a
            ok = math.isfinite(p)
            rails.append(RailSample(name, v, a, p if ok else NAN, ok))
    return rails


def find_igpu_devfreq(root: str) -> str | None:
    for entry in sorted(glob.glob(rooted(root, "/sys/class/devfreq/*"))):
        of_name = read_text(os.path.join(entry, "device", "of_node", "name"))
        if of_name and of_name.strip("\x00") in IGPU_OF_NAMES:
            return entry
    return None


def read_gpu(root: str) -> tuple[float, float]:
    """``(load %, freq MHz)``; each NaN when unreadable."""
    entry = find_igpu_devfreq(root)
    load = NAN
    freq = NAN
    if entry is not None:
        load = read_number(os.path.join(entry, "device", "load"))
        hz = read_number(os.path.join(entry, "cur_freq"))
        freq = hz / 1e6 if math.isfinite(hz) else NAN
    if not math.isfinite(load):
        for path in GPU_LOAD_FALLBACKS:
            load = read_number(rooted(root, path))
            if math.isfinite(load):
                break
    load_pct = load / 10.0 if math.isfinite(load) and 0 <= load <= 1000 else NAN
    return load_pct, freq


def read_emc_mhz(root: str) -> float:
    for path in EMC_RATE_FILES:
        hz = read_number(rooted(root, path))
        if math.isfinite(hz) and hz > 0:
            return hz / 1e6
    return NAN


class JetsonSysfsReader(LinuxReader):
    name = "jetson_sysfs"

    @classmethod
    def probe(cls, root: str = "/") -> bool:
        try:
            return bool(ina3221_hwmon_dirs(root)) or os.path.isfile(rooted(root, "/etc/nv_tegra_release"))
        except Exception:  # noqa: BLE001 - probe must never raise
            return False

    def _read_power(self, stamp_ns: int) -> PowerSample:
        rails = read_ina3221_rails(self.root)
        total, ok, label, msg = jetson_total(rails)
        return PowerSample(stamp_ns, self.name, rails, total, ok, label, msg)

    def _read_system(self, stamp_ns: int) -> SystemSample:
        s = super()._read_system(stamp_ns)
        s.source = self.name
        s.gpu_load_percent, s.gpu_freq_mhz = read_gpu(self.root)
        s.emc_freq_mhz = read_emc_mhz(self.root)
        s.gpu_load_available = math.isfinite(s.gpu_load_percent)
        s.gpu_freq_available = math.isfinite(s.gpu_freq_mhz)
        s.emc_available = math.isfinite(s.emc_freq_mhz)
        return s
