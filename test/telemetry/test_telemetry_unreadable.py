"""Unreadable inputs become NaN plus a cleared flag, never an exception."""
from __future__ import annotations

import math
import os
import shutil

import pytest

from slm_agent.telemetry.model import PowerSample, SystemSample, ThermalSample
from slm_agent.telemetry.readers import JetsonSysfsReader, LinuxReader
from slm_agent.telemetry.readers._fs import read_number
from slm_agent.telemetry.readers.base import Reader
from telemetry_fixtures import build_jetson_tree, build_x86_tree, write

BAD_CONTENTS = {
    "empty": b"",
    "garbage": b"abc\n",
    "binary": b"\xff\xfe\x00\x81",
    "literal_nan": b"nan\n",
    "literal_inf": b"inf\n",
}


def make_bad(path, kind: str) -> None:
    if path.is_dir() and not path.is_symlink():
        shutil.rmtree(path)
    elif path.exists() or path.is_symlink():
        path.unlink()
    if kind == "missing":
        return
    if kind == "directory":
        path.mkdir(parents=True)
        return
    write(path, BAD_CONTENTS[kind])


KINDS = ["missing", "directory", *BAD_CONTENTS]


@pytest.mark.parametrize("kind", KINDS)
def test_bad_rail_voltage(tmp_path, kind):
    spec = build_jetson_tree(tmp_path / "j")
    hwmon, ch = spec.rail_dirs["VDD_GPU_SOC"]
    make_bad(hwmon / f"in{ch}_input", kind)
    s = JetsonSysfsReader(root=str(spec.root)).read_power()
    r = {x.name: x for x in s.rails}["VDD_GPU_SOC"]
    assert not r.available and math.isnan(r.power_w) and math.isnan(r.voltage_v)
    assert not s.total_available and math.isnan(s.total_power_w)
    other = {x.name: x for x in s.rails}["VDD_CPU_CV"]
    assert other.available and math.isfinite(other.power_w)  # one bad file costs one rail


@pytest.mark.parametrize("kind", KINDS)
def test_bad_label_still_reports_rail_under_fallback_name(tmp_path, kind):
    spec = build_jetson_tree(tmp_path / "j")
    hwmon, ch = spec.rail_dirs["VDD_CPU_CV"]
    make_bad(hwmon / f"in{ch}_label", kind)
    s = JetsonSysfsReader(root=str(spec.root)).read_power()
    names = {x.name for x in s.rails}
    assert "VDD_CPU_CV" not in names
    # Readable text is taken as the label (it cannot be told from a real one);
    # an unreadable label falls back to "<i2c device>:in<N>".
    text_kinds = {"garbage": "abc", "literal_nan": "nan", "literal_inf": "inf"}
    expected_name = text_kinds.get(kind, f"1-0040:in{ch}")
    rail = {x.name: x for x in s.rails}[expected_name]
    mv, ma = spec.rails["VDD_CPU_CV"]
    assert rail.available and rail.power_w == pytest.approx(mv * ma / 1e6)


@pytest.mark.parametrize("kind", KINDS)
def test_bad_thermal_zone_temp(tmp_path, kind):
    spec = build_jetson_tree(tmp_path / "j")
    make_bad(spec.zone_dirs["gpu-thermal"] / "temp", kind)
    th = JetsonSysfsReader(root=str(spec.root)).read_thermal()
    z = {x.name: x for x in th.zones}["gpu-thermal"]
    assert not z.available and math.isnan(z.temperature_c)
    assert {x.name: x for x in th.zones}["cpu-thermal"].available


@pytest.mark.parametrize("kind", KINDS)
def test_bad_gpu_load_emc_and_meminfo(tmp_path, kind):
    spec = build_jetson_tree(tmp_path / "j")
    make_bad(spec.root / "sys/devices/platform/17000000.ga10b/load", kind)
    make_bad(spec.root / "sys/kernel/debug/bpmp/debug/clk/emc/rate", kind)
    make_bad(spec.root / "proc/meminfo", kind)
    s = JetsonSysfsReader(root=str(spec.root)).read_system()
    assert not s.gpu_load_available and math.isnan(s.gpu_load_percent)
    assert not s.emc_available and math.isnan(s.emc_freq_mhz)
    assert not s.mem_available and math.isnan(s.mem_total_bytes) and math.isnan(s.mem_used_bytes)
    assert s.gpu_freq_available  # unaffected field still read


@pytest.mark.parametrize("kind", KINDS)
def test_bad_proc_stat(tmp_path, kind):
    spec = build_x86_tree(tmp_path / "x")
    reader = LinuxReader(root=str(spec.root))
    make_bad(spec.root / "proc/stat", kind)
    s = reader.read_system()
    assert not s.cpu_available and math.isnan(s.cpu_percent)
    assert all(math.isnan(x) for x in s.per_cpu_percent)


def test_out_of_range_gpu_load_is_rejected(tmp_path):
    spec = build_jetson_tree(tmp_path / "j")
    write(spec.root / "sys/devices/platform/17000000.ga10b/load", "5000\n")  # > 1000 per-mille
    s = JetsonSysfsReader(root=str(spec.root)).read_system()
    assert not s.gpu_load_available and math.isnan(s.gpu_load_percent)


def test_mode_000_file(tmp_path):
    spec = build_jetson_tree(tmp_path / "j")
    hwmon, ch = spec.rail_dirs["VDD_GPU_SOC"]
    path = hwmon / f"curr{ch}_input"
    path.chmod(0)
    try:
        r = {x.name: x for x in JetsonSysfsReader(root=str(spec.root)).read_power().rails}["VDD_GPU_SOC"]
    finally:
        path.chmod(0o644)
    if os.geteuid() == 0:
        # root bypasses permission bits, so the value is readable; the directory
        # and garbage cases above cover "cannot read" when tests run as root.
        assert r.available and r.power_w == pytest.approx(6.0)
    else:
        assert not r.available and math.isnan(r.power_w)


def test_nonexistent_root_gives_all_unavailable(tmp_path):
    reader = LinuxReader(root=str(tmp_path / "does-not-exist"))
    p, t, s = reader.read_power(), reader.read_thermal(), reader.read_system()
    assert not p.total_available and math.isnan(p.total_power_w) and p.rails == []
    assert t.zones == [] and not t.throttling_available
    assert not (s.cpu_available or s.mem_available or s.gpu_load_available)
    assert math.isnan(s.cpu_percent)
    assert JetsonSysfsReader(root=str(tmp_path / "nope")).read_power().total_available is False


def test_read_number_rejects_non_finite_and_takes_first_token(tmp_path):
    assert read_number(str(write(tmp_path / "a", "32760 ma\n"))) == 32760.0
    assert math.isnan(read_number(str(write(tmp_path / "b", "-inf\n"))))
    assert math.isnan(read_number(str(tmp_path)))  # a directory


class _Exploding(Reader):
    name = "exploding"

    @classmethod
    def probe(cls, root: str = "/") -> bool:
        return True

    def _read_power(self, stamp_ns: int) -> PowerSample:
        raise ZeroDivisionError("sensor bug")

    def _read_thermal(self, stamp_ns: int) -> ThermalSample:
        raise KeyError("zone")

    def _read_system(self, stamp_ns: int) -> SystemSample:
        raise RuntimeError("boom")


def test_unexpected_exception_in_a_reader_becomes_an_unavailable_sample():
    r = _Exploding(clock_ns=lambda: 42)
    p = r.read_power()
    assert p.stamp_ns == 42 and p.source == "exploding"
    assert not p.total_available and math.isnan(p.total_power_w) and "sensor bug" in p.message
    t = r.read_thermal()
    assert t.zones == [] and not t.throttling_available
    s = r.read_system()
    assert not s.cpu_available and math.isnan(s.cpu_percent) and math.isnan(s.mem_total_bytes)
