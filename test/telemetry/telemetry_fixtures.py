"""Builders for fake sysfs/procfs trees the telemetry readers are pointed at.

The Jetson tree follows the documented AGX Orin layout (Jetson Linux developer
guide, as tabulated by energymon's JetsonPowerRails.md and used by
jetson-stats): two INA3221 chips on I2C bus 1,

    1-0040: in1 VDD_GPU_SOC, in2 VDD_CPU_CV, in3 VIN_SYS_5V0
    1-0041: in1 NC,          in2 VDDQ_VDD2_1V8AO, in3 NC

with voltages in mV (``in{N}_input``) and currents in mA (``curr{N}_input``),
plus the chip's extra channels (shunt voltages in4..6, sum channel in7/curr4)
that are *not* rails.  The AGX Orin has no VDD_IN monitor; the ``orin_nx``
variant (one chip: VDD_IN, VDD_CPU_GPU_CV, VDD_SOC) covers the VDD_IN path.

Each builder returns a spec holding the raw numbers it wrote so tests compute
expected values from the same source instead of repeating literals.
"""
from __future__ import annotations

import os
import stat
from dataclasses import dataclass, field
from pathlib import Path


def write(path: Path, text: str | bytes) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    if isinstance(text, bytes):
        path.write_bytes(text)
    else:
        path.write_text(text)
    return path


def proc_stat_text(cpus: dict[int, tuple[int, ...]]) -> str:
    """``/proc/stat`` with an aggregate line that is the sum of the per-CPU lines.

    Each tuple is (user, nice, system, idle, iowait, irq, softirq, steal).
    """
    agg = [sum(v[i] for v in cpus.values()) for i in range(8)]
    lines = ["cpu  " + " ".join(map(str, agg)) + " 0 0"]
    for n in sorted(cpus):
        lines.append(f"cpu{n} " + " ".join(map(str, cpus[n])) + " 0 0")
    lines += ["intr 12345 0 0", "ctxt 99999", "btime 1700000000", "processes 4242",
              "procs_running 2", "procs_blocked 0", "softirq 1 0 0"]
    return "\n".join(lines) + "\n"


def meminfo_text(total_kb: int, free_kb: int, avail_kb: int) -> str:
    return (f"MemTotal:       {total_kb} kB\nMemFree:        {free_kb} kB\n"
            f"MemAvailable:   {avail_kb} kB\nBuffers:           20480 kB\n"
            f"Cached:          1048576 kB\nSwapCached:            0 kB\n"
            f"SwapTotal:       8388608 kB\nSwapFree:        8388608 kB\n")


@dataclass
class TreeSpec:
    root: Path
    rails: dict[str, tuple[int, int]] = field(default_factory=dict)  # name -> (mV, mA)
    rail_dirs: dict[str, tuple[Path, int]] = field(default_factory=dict)  # name -> (hwmon dir, channel)
    zones: dict[str, int] = field(default_factory=dict)  # type -> milli-degC
    zone_dirs: dict[str, Path] = field(default_factory=dict)
    cpu_khz: dict[int, int | None] = field(default_factory=dict)
    proc_stat: dict[int, tuple[int, ...]] = field(default_factory=dict)
    mem_kb: tuple[int, int, int] = (0, 0, 0)  # total, free, available
    gpu_load_permille: int = 0
    gpu_hz: int = 0
    emc_hz: int = 0
    rapl: dict[str, Path] = field(default_factory=dict)  # rail name -> zone dir
    hwmon_power_uw: dict[str, int] = field(default_factory=dict)


# --------------------------------------------------------------------- Jetson

ORIN_MODES = [(0, "MAXN"), (1, "MODE_15W"), (2, "MODE_30W"), (3, "MODE_50W")]

NVPMODEL_CONF = """\
# nvpmodel.conf (representative AGX Orin 64GB layout; PARAM blocks trimmed)
< PARAM TYPE=FILE NAME=CPU_ONLINE >
CORE_0 /sys/devices/system/cpu/cpu0/online
< PARAM TYPE=CLOCK NAME=GPU >
FREQ_TABLE /sys/devices/platform/17000000.ga10b/devfreq/17000000.ga10b/available_frequencies
MAX_FREQ /sys/devices/platform/17000000.ga10b/devfreq/17000000.ga10b/max_freq

###########################
#                         #
# POWER_MODEL DEFINITIONS #
#                         #
###########################

# MAXN is the NONE power model to release all constraints
< POWER_MODEL ID=0 NAME=MAXN >
CPU_ONLINE CORE_0 1
GPU MAX_FREQ -1

# < POWER_MODEL ID=7 NAME=COMMENTED_OUT >
< POWER_MODEL ID=1 NAME=MODE_15W >
CPU_ONLINE CORE_4 0
GPU MAX_FREQ 408000000

< POWER_MODEL ID=2 NAME=MODE_30W >
CPU_ONLINE CORE_8 0
GPU MAX_FREQ 612000000

< POWER_MODEL ID=3 NAME=MODE_50W >
GPU MAX_FREQ 828750000

# mode will be set to DEFAULT on first boot
< PM_CONFIG DEFAULT=2 >
"""


def _ina3221_chip(hwmon: Path, channels: dict[int, tuple[str, int, int]]) -> None:
    write(hwmon / "name", "ina3221\n")
    write(hwmon / "update_interval", "1100\n")
    for ch in (1, 2, 3):
        label, mv, ma = channels.get(ch, ("NC", 0, 0))
        write(hwmon / f"in{ch}_label", label + "\n")
        write(hwmon / f"in{ch}_enable", "1\n")
        write(hwmon / f"in{ch}_input", f"{mv}\n")
        write(hwmon / f"curr{ch}_input", f"{ma}\n")
        write(hwmon / f"curr{ch}_max", "32760\n")
        write(hwmon / f"curr{ch}_crit", "32760\n")
        write(hwmon / f"curr{ch}_crit_alarm", "0\n")
        write(hwmon / f"shunt{ch}_resistor", "5000\n")
        write(hwmon / f"in{ch + 3}_input", f"{ma * 5}\n")  # shunt voltage, uV
    # The chip's summation channel: looks like a rail, is not one.
    write(hwmon / "in7_label", "sum of shunt voltages\n")
    write(hwmon / "in7_input", "99999\n")
    write(hwmon / "curr4_input", "99999\n")


def build_jetson_tree(root: Path, variant: str = "agx_orin", hot: bool = False) -> TreeSpec:
    """A Jetson Orin sysfs/procfs tree under ``root``."""
    spec = TreeSpec(root=root)
    drv = root / "sys/bus/i2c/drivers/ina3221"
    write(drv / "uevent", "DRIVER=ina3221\n")
    if variant == "agx_orin":
        chips = {
            "1-0040": {1: ("VDD_GPU_SOC", 5000, 1200), 2: ("VDD_CPU_CV", 5000, 400),
                       3: ("VIN_SYS_5V0", 4976, 1500)},
            "1-0041": {2: ("VDDQ_VDD2_1V8AO", 4984, 250)},
        }
    elif variant == "orin_nx":
        chips = {"1-0040": {1: ("VDD_IN", 5000, 2400), 2: ("VDD_CPU_GPU_CV", 5000, 800),
                            3: ("VDD_SOC", 5000, 600)}}
    else:
        raise ValueError(variant)
    for n, (dev, channels) in enumerate(chips.items()):
        hwmon = drv / dev / "hwmon" / f"hwmon{n + 1}"
        write(drv / dev / "name", "ina3221\n")
        _ina3221_chip(hwmon, channels)
        for ch, (label, mv, ma) in channels.items():
            spec.rails[label] = (mv, ma)
            spec.rail_dirs[label] = (hwmon, ch)

    # Thermal zones (types as on JetPack 5/6 Orin); cv* are power-gated -> -256 C.
    zones = [("cpu-thermal", 45500), ("gpu-thermal", 100500 if hot else 43000),
             ("cv0-thermal", -256000), ("cv1-thermal", -256000), ("cv2-thermal", -256000),
             ("soc0-thermal", 44100), ("soc1-thermal", 43800), ("soc2-thermal", 44600),
             ("tj-thermal", 46000), ("tboard-thermal", 38000), ("tdiode-thermal", 39250)]
    for i, (ztype, milli) in enumerate(zones):
        z = root / f"sys/class/thermal/thermal_zone{i}"
        write(z / "type", ztype + "\n")
        write(z / "temp", f"{milli}\n")
        spec.zones[ztype] = milli
        spec.zone_dirs[ztype] = z
    gpu_zone = spec.zone_dirs["gpu-thermal"]
    write(gpu_zone / "trip_point_0_type", "passive\n")
    write(gpu_zone / "trip_point_0_temp", "99000\n")
    write(gpu_zone / "trip_point_1_type", "critical\n")
    write(gpu_zone / "trip_point_1_temp", "105000\n")
    write(spec.zone_dirs["cpu-thermal"] / "trip_point_0_type", "active\n")  # fan trip
    write(spec.zone_dirs["cpu-thermal"] / "trip_point_0_temp", "40000\n")
    write(root / "sys/class/thermal/cooling_device0/type", "pwm-fan\n")
    write(root / "sys/class/thermal/cooling_device0/cur_state", "3\n")

    # CPUs: 12 cores, 8-11 offline (as in a 30 W mode): no cpufreq, not in /proc/stat.
    for c in range(12):
        cdir = root / f"sys/devices/system/cpu/cpu{c}"
        write(cdir / "online", "1\n" if c < 8 else "0\n")
        if c < 8:
            khz = 2201600 if c < 4 else 1497600
            write(cdir / "cpufreq/scaling_cur_freq", f"{khz}\n")
            spec.cpu_khz[c] = khz
        else:
            spec.cpu_khz[c] = None
    spec.proc_stat = {c: (1000 + c, 0, 500, 8000, 100, 0, 10, 0) for c in range(8)}
    write(root / "proc/stat", proc_stat_text(spec.proc_stat))
    spec.mem_kb = (64298636, 60000000, 61000000)
    write(root / "proc/meminfo", meminfo_text(*spec.mem_kb))

    # iGPU: devfreq entry -> platform device, as the real symlinks are laid out.
    plat = root / "sys/devices/platform/17000000.ga10b"
    spec.gpu_load_permille, spec.gpu_hz = 345, 918000000
    write(plat / "load", f"{spec.gpu_load_permille}\n")
    dvf = plat / "devfreq/17000000.ga10b"
    write(dvf / "cur_freq", f"{spec.gpu_hz}\n")
    write(dvf / "max_freq", "1300500000\n")
    write(dvf / "governor", "nvhost_podgov\n")
    of = root / "sys/firmware/devicetree/base/bus@0/gpu@17000000"
    write(of / "name", b"gpu\x00")
    os.symlink(os.path.relpath(of, plat), plat / "of_node")
    os.symlink("../../../17000000.ga10b", dvf / "device")
    (root / "sys/class/devfreq").mkdir(parents=True, exist_ok=True)
    os.symlink("../../devices/platform/17000000.ga10b/devfreq/17000000.ga10b",
               root / "sys/class/devfreq/17000000.ga10b")
    # a non-GPU devfreq device that must not be mistaken for the GPU
    nvdla = root / "sys/devices/platform/15880000.nvdla0"
    write(nvdla / "devfreq/15880000.nvdla0/cur_freq", "1600000000\n")
    write(root / "sys/firmware/devicetree/base/nvdla0/name", b"nvdla0\x00")
    os.symlink(os.path.relpath(root / "sys/firmware/devicetree/base/nvdla0", nvdla), nvdla / "of_node")
    os.symlink("../../../15880000.nvdla0", nvdla / "devfreq/15880000.nvdla0/device")
    os.symlink("../../devices/platform/15880000.nvdla0/devfreq/15880000.nvdla0",
               root / "sys/class/devfreq/15880000.nvdla0")

    spec.emc_hz = 3199000000
    write(root / "sys/kernel/debug/bpmp/debug/clk/emc/rate", f"{spec.emc_hz}\n")

    write(root / "etc/nv_tegra_release", "# R36 (release), REVISION: 3.0, GCID: 0, BOARD: generic, EABI: aarch64\n")
    write(root / "etc/nvpmodel.conf", NVPMODEL_CONF)
    write(root / "var/lib/nvpmodel/status", "pmode:0002 fmode:quiet\n")
    return spec


FAKE_NVPMODEL = r"""#!/bin/sh
# Fake nvpmodel for tests: state lives in the fixture tree, like the real one's.
ROOT='@ROOT@'
STATUS="$ROOT/var/lib/nvpmodel/status"
CONF="$ROOT/etc/nvpmodel.conf"
echo "$*" >> "$ROOT/nvpmodel.calls"
name_of() { sed -n "s/^< POWER_MODEL ID=$1 NAME=\([^ >]*\) >.*/\1/p" "$CONF" | head -n 1; }
case "$1" in
  -q)
    id=$(sed -n 's/.*pmode:0*\([0-9][0-9]*\).*/\1/p' "$STATUS")
    echo "NVPM WARN: fan mode is not set!"
    echo "NV Power Mode: $(name_of "$id")"
    echo "$id"
    ;;
  -m)
    id="$2"
    name=$(name_of "$id")
    if [ -z "$name" ]; then echo "NVPM ERROR: Invalid mode $id"; exit 1; fi
    if [ "$id" = "@REBOOT_ID@" ]; then
      echo "NVPM WARN: Golden image context is already created"
      echo "NVPM WARN: Reboot required for changing to this power mode: $id"
      echo "NVPM WARN: DO YOU WANT TO REBOOT NOW? enter YES/yes to confirm:"
      read answer
      echo "$answer" > "$ROOT/nvpmodel.answer"
      case "$answer" in
        YES|yes) echo "NVPM WARN: rebooting"; touch "$ROOT/REBOOTED" ;;
        *) echo "NVPM ERROR: optMask is 1, no request for power mode" ;;
      esac
      exit 0
    fi
    if [ "$id" = "@BROKEN_ID@" ]; then
      echo "NVPM ERROR: failed to set CPU_ONLINE" ; exit 0
    fi
    printf 'pmode:%04d fmode:quiet\n' "$id" > "$STATUS"
    ;;
  *) echo "usage: nvpmodel [-q] [-m mode]" >&2; exit 2 ;;
esac
"""


def write_fake_nvpmodel(bin_dir: Path, root: Path, reboot_id: int = 0, broken_id: int = 3) -> Path:
    """A real executable that behaves like nvpmodel against the fixture ``root``."""
    script = (FAKE_NVPMODEL.replace("@ROOT@", str(root))
              .replace("@REBOOT_ID@", str(reboot_id)).replace("@BROKEN_ID@", str(broken_id)))
    path = write(bin_dir / "nvpmodel", script)
    path.chmod(path.stat().st_mode | stat.S_IXUSR | stat.S_IXGRP | stat.S_IXOTH)
    return path


# ---------------------------------------------------------------------- x86

def build_x86_tree(root: Path) -> TreeSpec:
    """A generic Intel desktop: RAPL, coretemp/nvme hwmon, ACPI thermal, 4 CPUs."""
    spec = TreeSpec(root=root)
    pc = root / "sys/class/powercap"
    write(pc / "intel-rapl/enabled", "1\n")  # the control-type dir, not a zone
    zones = {
        "intel-rapl:0": ("package-0", 1_000_000),
        "intel-rapl:0:0": ("core", 400_000),
        "intel-rapl:0:1": ("dram", 100_000),
        "intel-rapl:1": ("psys", 5_000_000),
        "intel-rapl-mmio:0": ("package-0", 1_000_000),  # MMIO mirror of package-0
    }
    for zid, (name, energy) in zones.items():
        write(pc / zid / "name", name + "\n")
        write(pc / zid / "energy_uj", f"{energy}\n")
        write(pc / zid / "max_energy_range_uj", "262143328850\n")
        write(pc / zid / "enabled", "1\n")
    spec.rapl = {"package-0": pc / "intel-rapl:0", "package-0/core": pc / "intel-rapl:0:0",
                 "package-0/dram": pc / "intel-rapl:0:1", "psys": pc / "intel-rapl:1"}

    hw = root / "sys/class/hwmon"
    write(hw / "hwmon0/name", "coretemp\n")
    write(hw / "hwmon0/temp1_label", "Package id 0\n")
    write(hw / "hwmon0/temp1_input", "52000\n")
    write(hw / "hwmon0/temp2_label", "Core 0\n")
    write(hw / "hwmon0/temp2_input", "50000\n")
    write(hw / "hwmon1/name", "nvme\n")
    write(hw / "hwmon1/temp1_label", "Composite\n")
    write(hw / "hwmon1/temp1_input", "38850\n")
    write(hw / "hwmon2/name", "amdgpu\n")
    write(hw / "hwmon2/power1_label", "PPT\n")
    write(hw / "hwmon2/power1_input", "15250000\n")
    spec.hwmon_power_uw = {"amdgpu/PPT": 15_250_000}

    for i, (ztype, milli) in enumerate([("x86_pkg_temp", 53000), ("acpitz", 27800)]):
        z = root / f"sys/class/thermal/thermal_zone{i}"
        write(z / "type", ztype + "\n")
        write(z / "temp", f"{milli}\n")
        spec.zones[ztype] = milli
        spec.zone_dirs[ztype] = z
    write(spec.zone_dirs["x86_pkg_temp"] / "trip_point_0_type", "passive\n")
    write(spec.zone_dirs["x86_pkg_temp"] / "trip_point_0_temp", "100000\n")
    write(spec.zone_dirs["acpitz"] / "trip_point_0_type", "critical\n")
    write(spec.zone_dirs["acpitz"] / "trip_point_0_temp", "119000\n")
    for i, (ctype, state) in enumerate([("Processor", 0), ("intel_powerclamp", 0), ("Fan", 1)]):
        write(root / f"sys/class/thermal/cooling_device{i}/type", ctype + "\n")
        write(root / f"sys/class/thermal/cooling_device{i}/cur_state", f"{state}\n")

    for c in range(4):
        khz = 3600000 + 100000 * c
        write(root / f"sys/devices/system/cpu/cpu{c}/cpufreq/scaling_cur_freq", f"{khz}\n")
        spec.cpu_khz[c] = khz
    spec.proc_stat = {c: (5000, 10, 2000, 40000, 300, 0, 50, 0) for c in range(4)}
    write(root / "proc/stat", proc_stat_text(spec.proc_stat))
    spec.mem_kb = (32768000, 20000000, 24576000)
    write(root / "proc/meminfo", meminfo_text(*spec.mem_kb))
    return spec


class FakeClock:
    """Explicit monotonic clock: RAPL power is Δenergy/Δt, so tests fix Δt."""

    def __init__(self, t_ns: int = 1_000_000_000) -> None:
        self.t_ns = t_ns

    def __call__(self) -> int:
        return self.t_ns

    def advance(self, seconds: float) -> None:
        self.t_ns += int(round(seconds * 1e9))
