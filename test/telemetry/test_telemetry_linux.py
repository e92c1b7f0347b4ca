"""LinuxReader against a generic x86 tree: RAPL deltas (with wrap), hwmon, thermal, /proc."""
from __future__ import annotations

import math

import pytest

from slm_agent.telemetry.energy import EnergyCounterIntegrator
from slm_agent.telemetry.readers import LinuxReader, select_reader
from slm_agent.telemetry.readers.linux import counter_delta
from telemetry_fixtures import FakeClock, build_x86_tree, proc_stat_text, write


@pytest.fixture
def x86(tmp_path):
    return build_x86_tree(tmp_path / "x86")


def set_energy(zone_dir, uj: int) -> None:
    write(zone_dir / "energy_uj", f"{uj}\n")


def rails(sample):
    return {r.name: r for r in sample.rails}


def test_rapl_power_is_delta_energy_over_delta_t(x86):
    clock = FakeClock()
    reader = LinuxReader(root=str(x86.root), clock_ns=clock)
    set_energy(x86.rapl["package-0"], 1_000_000 + 25_000_000)  # +25 J
    set_energy(x86.rapl["package-0/core"], 400_000 + 10_000_000)  # +10 J
    set_energy(x86.rapl["psys"], 5_000_000 + 40_000_000)  # +40 J
    clock.advance(2.5)
    s = reader.read_power()
    assert s.source == "linux"
    r = rails(s)
    assert r["package-0"].power_w == pytest.approx(10.0, rel=1e-12)
    assert r["package-0/core"].power_w == pytest.approx(4.0, rel=1e-12)
    assert r["package-0/dram"].power_w == pytest.approx(0.0, abs=1e-12) and r["package-0/dram"].available
    assert r["psys"].power_w == pytest.approx(16.0, rel=1e-12)
    # Total = package domains only: not psys, not sub-zones, not the MMIO mirror.
    assert s.total_rail == "sum(package-0)"
    assert s.total_available and s.total_power_w == pytest.approx(10.0, rel=1e-12)
    assert r["amdgpu/PPT"].power_w == pytest.approx(15.25) and r["amdgpu/PPT"].available
    # The next read measures from the previous one, not from construction.
    set_energy(x86.rapl["package-0"], 26_000_000 + 3_000_000)
    clock.advance(1.0)
    assert reader.read_power().total_power_w == pytest.approx(3.0, rel=1e-12)


def test_rapl_counter_wrap(x86):
    zone = x86.rapl["package-0"]
    write(zone / "max_energy_range_uj", "1000000000\n")
    set_energy(zone, 999_000_000)
    clock = FakeClock()
    reader = LinuxReader(root=str(x86.root), clock_ns=clock)
    set_energy(zone, 1_000_000)  # wrapped: 1 J to the top, 1 J after restarting at 0
    clock.advance(0.5)
    s = reader.read_power()
    assert s.total_available and s.total_power_w == pytest.approx(4.0, rel=1e-12)


def test_rapl_wrap_with_unreadable_range_is_unavailable(x86):
    zone = x86.rapl["package-0"]
    set_energy(zone, 900)
    clock = FakeClock()
    reader = LinuxReader(root=str(x86.root), clock_ns=clock)
    write(zone / "max_energy_range_uj", "n/a\n")
    set_energy(zone, 100)
    clock.advance(1.0)
    s = reader.read_power()
    assert not s.total_available and math.isnan(s.total_power_w)
    assert not rails(s)["package-0"].available


def test_rapl_no_elapsed_time_gives_nan(x86):
    reader = LinuxReader(root=str(x86.root), clock_ns=FakeClock())
    s = reader.read_power()  # same instant as the constructor's baseline
    assert not s.total_available and math.isnan(s.total_power_w)


def test_rapl_unreadable_energy_is_unavailable(x86):
    clock = FakeClock()
    reader = LinuxReader(root=str(x86.root), clock_ns=clock)
    (x86.rapl["package-0"] / "energy_uj").unlink()
    (x86.rapl["package-0"] / "energy_uj").mkdir()  # a directory where a value should be
    clock.advance(1.0)
    s = reader.read_power()
    assert not s.total_available and math.isnan(s.total_power_w)
    assert "RAPL" in s.message


def test_energy_counters_feed_the_counter_integrator_exactly(x86):
    zone = x86.rapl["package-0"]
    write(zone / "max_energy_range_uj", "50000000\n")  # 50 J range: forces wraps
    reader = LinuxReader(root=str(x86.root), clock_ns=FakeClock())
    integ = None
    energy_uj = 0
    for step in range(40):
        set_energy(zone, energy_uj % 50_000_000)
        c = {e.name: e for e in reader.read_energy_counters()}["package-0"]
        assert c.available and c.max_range_j == pytest.approx(50.0)
        if integ is None:
            integ = EnergyCounterIntegrator(max_range_j=c.max_range_j, max_gap_s=1.5)
        integ.add(step * 1.0, c.energy_j)
        energy_uj += 7_000_000  # 7 W for 1 s
    est = integ.energy(0.0, 39.0)
    assert est.complete and est.joules == pytest.approx(39 * 7.0, rel=1e-12)


def test_counter_delta_helper():
    assert counter_delta(10.0, 25.0, 100.0) == 15.0
    assert counter_delta(90.0, 5.0, 100.0) == 15.0
    assert math.isnan(counter_delta(90.0, 5.0, math.nan))
    assert math.isnan(counter_delta(math.nan, 5.0, 100.0))


def test_thermal_zones_hwmon_and_throttle_evidence(x86):
    th = LinuxReader(root=str(x86.root)).read_thermal()
    z = {t.name: t for t in th.zones}
    assert z["x86_pkg_temp"].temperature_c == pytest.approx(53.0)
    assert z["acpitz"].temperature_c == pytest.approx(27.8)
    assert z["coretemp/Package id 0"].temperature_c == pytest.approx(52.0)
    assert z["coretemp/Core 0"].temperature_c == pytest.approx(50.0)
    assert z["nvme/Composite"].temperature_c == pytest.approx(38.85)
    assert all(t.available for t in th.zones)
    assert th.throttling_available and not th.throttling  # the Fan at state 1 does not count
    write(x86.root / "sys/class/thermal/cooling_device0/cur_state", "2\n")  # Processor cooling
    assert LinuxReader(root=str(x86.root)).read_thermal().throttling is True


def test_system_sample_cpu_mem_freq(x86):
    reader = LinuxReader(root=str(x86.root), clock_ns=FakeClock())
    first = reader.read_system()  # no jiffies elapsed since the constructor's baseline
    assert not first.cpu_available and math.isnan(first.cpu_percent)
    later = {c: (v[0] + 50, v[1], v[2] + 25, v[3] + 25, *v[4:]) for c, v in x86.proc_stat.items()}
    write(x86.root / "proc/stat", proc_stat_text(later))
    s = reader.read_system()
    assert s.cpu_available and s.cpu_percent == pytest.approx(75.0)
    assert s.per_cpu_percent == pytest.approx([75.0] * 4)
    assert s.cpu_freq_mhz == pytest.approx([x / 1000.0 for x in x86.cpu_khz.values()])
    assert not s.gpu_load_available and math.isnan(s.gpu_load_percent)
    assert not s.emc_available and math.isnan(s.emc_freq_mhz)
    total_kb, _free, avail_kb = x86.mem_kb
    assert s.mem_total_bytes == total_kb * 1024 and s.mem_used_bytes == (total_kb - avail_kb) * 1024


def test_auto_on_x86_tree_is_linux(x86):
    r = select_reader("auto", root=str(x86.root))
    assert type(r) is LinuxReader and r.read_thermal().source == "linux"
