"""JetsonSysfsReader against a fixture tree with the documented AGX Orin layout."""
from __future__ import annotations

import math

import pytest

from slm_agent.telemetry.readers import (
    JetsonSysfsReader,
    LinuxReader,
    ReaderUnavailable,
    select_reader,
)
from telemetry_fixtures import FakeClock, build_jetson_tree, build_x86_tree, proc_stat_text, write


@pytest.fixture
def orin(tmp_path):
    return build_jetson_tree(tmp_path / "orin")


def expected_w(mv: int, ma: int) -> float:
    return (mv / 1000.0) * (ma / 1000.0)


def test_rails_are_exactly_the_fixture_values(orin):
    sample = JetsonSysfsReader(root=str(orin.root)).read_power()
    assert sample.source == "jetson_sysfs"
    got = {r.name: r for r in sample.rails}
    # NC channels and the in7 "sum of shunt voltages" channel are not rails.
    assert set(got) == {"VDD_GPU_SOC", "VDD_CPU_CV", "VIN_SYS_5V0", "VDDQ_VDD2_1V8AO"}
    for name, (mv, ma) in orin.rails.items():
        r = got[name]
        assert r.available
        assert r.voltage_v == pytest.approx(mv / 1000.0, rel=1e-12)
        assert r.current_a == pytest.approx(ma / 1000.0, rel=1e-12)
        assert r.power_w == pytest.approx(expected_w(mv, ma), rel=1e-12)
    assert got["VDD_GPU_SOC"].power_w == pytest.approx(6.0, rel=1e-12)  # 5000 mV x 1200 mA


def test_agx_orin_total_sums_top_level_rails_without_double_counting(orin):
    sample = JetsonSysfsReader(root=str(orin.root)).read_power()
    top = ("VDD_GPU_SOC", "VDD_CPU_CV", "VIN_SYS_5V0")  # VDDQ_VDD2_1V8AO is fed by VIN_SYS_5V0
    assert sample.total_available
    assert sample.total_power_w == pytest.approx(sum(expected_w(*orin.rails[n]) for n in top), rel=1e-12)
    assert sample.total_rail == "sum(VDD_GPU_SOC,VDD_CPU_CV,VIN_SYS_5V0)"


def test_orin_nx_total_is_vdd_in(tmp_path):
    spec = build_jetson_tree(tmp_path / "nx", variant="orin_nx")
    sample = JetsonSysfsReader(root=str(spec.root)).read_power()
    assert sample.total_rail == "VDD_IN"
    assert sample.total_available
    assert sample.total_power_w == pytest.approx(expected_w(*spec.rails["VDD_IN"]), rel=1e-12)
    assert {r.name for r in sample.rails} == {"VDD_IN", "VDD_CPU_GPU_CV", "VDD_SOC"}


def test_missing_current_file_makes_rail_and_sum_unavailable(orin):
    hwmon, ch = orin.rail_dirs["VDD_CPU_CV"]
    (hwmon / f"curr{ch}_input").unlink()
    sample = JetsonSysfsReader(root=str(orin.root)).read_power()
    rail = {r.name: r for r in sample.rails}["VDD_CPU_CV"]
    assert not rail.available and math.isnan(rail.power_w) and math.isnan(rail.current_a)
    assert rail.voltage_v == pytest.approx(orin.rails["VDD_CPU_CV"][0] / 1000.0)
    # A partial sum would under-report the board, so the total is withheld.
    assert not sample.total_available and math.isnan(sample.total_power_w)
    assert "VDD_CPU_CV" in sample.message


def test_missing_vdd_in_makes_total_unavailable_not_a_sum(tmp_path):
    spec = build_jetson_tree(tmp_path / "nx", variant="orin_nx")
    hwmon, ch = spec.rail_dirs["VDD_IN"]
    (hwmon / f"in{ch}_input").write_text("garbage\n")
    sample = JetsonSysfsReader(root=str(spec.root)).read_power()
    assert sample.total_rail == "VDD_IN"
    assert not sample.total_available and math.isnan(sample.total_power_w)


def test_thermal_zones_and_offline_sensors(orin):
    th = JetsonSysfsReader(root=str(orin.root)).read_thermal()
    assert th.source == "jetson_sysfs"
    zones = {z.name: z for z in th.zones}
    assert set(zones) == set(orin.zones)
    for name, milli in orin.zones.items():
        z = zones[name]
        if milli == -256000:  # power-gated CV cluster reports -256 C
            assert not z.available and math.isnan(z.temperature_c)
        else:
            assert z.available and z.temperature_c == pytest.approx(milli / 1000.0)
    # zone order follows thermal_zone numbering, so thermal_zone10 comes last
    assert th.zones[-1].name == "tdiode-thermal"
    # The fan (cooling_device0 state 3) and an 'active' fan trip are not throttling.
    assert th.throttling_available and th.throttling is False


def test_throttling_when_zone_above_passive_trip(tmp_path):
    spec = build_jetson_tree(tmp_path / "hot", hot=True)
    th = JetsonSysfsReader(root=str(spec.root)).read_thermal()
    assert th.throttling is True


def test_system_sample_gpu_emc_cpu_mem(orin):
    clock = FakeClock()
    reader = JetsonSysfsReader(root=str(orin.root), clock_ns=clock)
    # Second /proc/stat snapshot: cpu c gets busy delta 30*(c+1), idle delta 100-30*(c+1)... capped
    busy = {c: 10 * (c + 1) for c in range(8)}
    later = {c: (v[0] + busy[c], v[1], v[2], v[3] + (100 - busy[c]), *v[4:]) for c, v in orin.proc_stat.items()}
    write(orin.root / "proc/stat", proc_stat_text(later))
    clock.advance(1.0)
    s = reader.read_system()
    assert s.source == "jetson_sysfs" and s.stamp_ns == clock.t_ns
    assert s.gpu_load_available and s.gpu_load_percent == pytest.approx(34.5)
    assert s.gpu_freq_available and s.gpu_freq_mhz == pytest.approx(918.0)
    assert s.emc_available and s.emc_freq_mhz == pytest.approx(3199.0)
    assert len(s.cpu_freq_mhz) == 12
    for c, khz in orin.cpu_khz.items():
        if khz is None:
            assert math.isnan(s.cpu_freq_mhz[c])
        else:
            assert s.cpu_freq_mhz[c] == pytest.approx(khz / 1000.0)
    assert s.cpu_available
    for c in range(8):
        assert s.per_cpu_percent[c] == pytest.approx(busy[c], abs=1e-9)
    assert all(math.isnan(x) for x in s.per_cpu_percent[8:12])  # offline cores
    assert s.cpu_percent == pytest.approx(sum(busy.values()) / 8.0, abs=1e-9)
    total_kb, _free, avail_kb = orin.mem_kb
    assert s.mem_available
    assert s.mem_total_bytes == total_kb * 1024
    assert s.mem_used_bytes == (total_kb - avail_kb) * 1024


def test_gpu_fallback_path_without_devfreq(orin):
    import shutil

    shutil.rmtree(orin.root / "sys/class/devfreq")
    s = JetsonSysfsReader(root=str(orin.root)).read_system()
    assert s.gpu_load_percent == pytest.approx(34.5)  # from /sys/devices/platform/17000000.ga10b/load
    assert not s.gpu_freq_available and math.isnan(s.gpu_freq_mhz)


def test_probe_and_selection(orin, tmp_path):
    x86 = build_x86_tree(tmp_path / "x86")
    assert JetsonSysfsReader.probe(str(orin.root))
    assert not JetsonSysfsReader.probe(str(x86.root))
    assert LinuxReader.probe(str(orin.root)) and LinuxReader.probe(str(x86.root))
    # jtop: no socket in the tree; nvml: never for a fixture root -> jetson_sysfs wins.
    chosen = select_reader("auto", root=str(orin.root))
    assert isinstance(chosen, JetsonSysfsReader)
    assert chosen.read_power().source == "jetson_sysfs"
    with pytest.raises(ReaderUnavailable):
        select_reader("jetson_sysfs", root=str(x86.root))
    with pytest.raises(ValueError) as err:
        select_reader("tegrastats", root=str(orin.root))
    for name in ("auto", "jtop", "jetson_sysfs", "nvml", "linux"):
        assert name in str(err.value)
