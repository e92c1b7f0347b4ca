"""Mapping of jetson-stats 4.x dict shapes to the sample dataclasses.

jtop itself is not installed here (it needs a Jetson and its root service), so
these feed the documented dict shapes (jetson-stats ``jtop/core/power.py``,
``temperature.py``, ``gpu.py``, ``memory.py``) to the pure mapping functions.
"""
from __future__ import annotations

import math

import pytest

from slm_agent.telemetry.readers.jtop_reader import map_power, map_system, map_temperature


def rail(volt_mv, curr_ma, online=True):
    return {"online": online, "type": "I2C", "status": "ok", "volt": volt_mv, "curr": curr_ma,
            "warn": 32760, "crit": 32760, "power": int(volt_mv * curr_ma / 1000), "avg": 0}


def test_agx_orin_power_has_no_vdd_in_and_sums_top_level():
    power = {
        "rail": {"VDD_GPU_SOC": rail(5000, 1200), "VDD_CPU_CV": rail(5000, 400),
                 "VIN_SYS_5V0": rail(5000, 1500), "VDDQ_VDD2_1V8AO": rail(5000, 250)},
        # jtop sums every rail when no VDD_IN exists (so includes VDDQ twice over)
        "tot": {"power": 16750, "avg": 16750},
    }
    s = map_power(power, 7)
    assert s.source == "jtop" and s.stamp_ns == 7
    r = {x.name: x for x in s.rails}
    assert r["VDD_GPU_SOC"].power_w == pytest.approx(6.0) and r["VDD_GPU_SOC"].voltage_v == pytest.approx(5.0)
    assert s.total_available and s.total_power_w == pytest.approx(6.0 + 2.0 + 7.5)
    assert s.total_rail == "sum(VDD_CPU_CV,VDD_GPU_SOC,VIN_SYS_5V0)"


def test_vdd_in_total_from_tot_entry():
    power = {"rail": {"VDD_CPU_GPU_CV": rail(5000, 800), "VDD_SOC": rail(5000, 600)},
             "tot": {**rail(5000, 2400), "name": "VDD_IN"}}
    s = map_power(power, 1)
    assert s.total_rail == "VDD_IN" and s.total_power_w == pytest.approx(12.0)
    assert {x.name for x in s.rails} == {"VDD_CPU_GPU_CV", "VDD_SOC", "VDD_IN"}


def test_offline_rail_is_unavailable():
    power = {"rail": {"VDD_GPU_SOC": rail(5000, 1200, online=False), "VDD_CPU_CV": rail(5000, 400)},
             "tot": {"power": 8000}}
    s = map_power(power, 1)
    gpu = {x.name: x for x in s.rails}["VDD_GPU_SOC"]
    assert not gpu.available and math.isnan(gpu.power_w)
    assert not s.total_available and math.isnan(s.total_power_w)


def test_temperature_offline_sentinel():
    t = map_temperature({"cpu": {"temp": 45.5, "online": True}, "cv0": {"temp": -256.0, "online": False},
                         "tj": {"temp": 47.0, "online": True}}, 3)
    z = {x.name: x for x in t.zones}
    assert z["cpu"].temperature_c == pytest.approx(45.5) and z["cpu"].available
    assert not z["cv0"].available and math.isnan(z["cv0"].temperature_c)
    assert not t.throttling_available


def test_system_mapping():
    cpu = {"total": {"user": 20.0, "nice": 0.0, "system": 5.0, "idle": 75.0},
           "cpu": [{"online": True, "governor": "schedutil", "user": 30.0, "nice": 0.0, "system": 10.0,
                    "idle": 60.0, "freq": {"min": 115200, "max": 2201600, "cur": 2201600}},
                   {"online": False, "governor": "", "freq": {}}]}
    gpu = {"gpu": {"type": "integrated", "status": {"railgate": False, "load": 34.5},
                   "freq": {"governor": "nvhost_podgov", "cur": 918000, "max": 1300500, "min": 306000}}}
    memory = {"RAM": {"tot": 64298636, "used": 3298636, "free": 60000000},
              "EMC": {"online": True, "cur": 3199000, "max": 3199000, "min": 204000, "val": 12}}
    s = map_system(cpu, gpu, memory, 9)
    assert s.cpu_percent == pytest.approx(25.0)
    assert s.per_cpu_percent[0] == pytest.approx(40.0) and math.isnan(s.per_cpu_percent[1])
    assert s.cpu_freq_mhz[0] == pytest.approx(2201.6) and math.isnan(s.cpu_freq_mhz[1])
    assert s.gpu_load_percent == pytest.approx(34.5) and s.gpu_freq_mhz == pytest.approx(918.0)
    assert s.emc_freq_mhz == pytest.approx(3199.0) and s.emc_available
    assert s.mem_total_bytes == 64298636 * 1024 and s.mem_used_bytes == 3298636 * 1024


def test_system_mapping_with_empty_dicts_is_all_unavailable():
    s = map_system({}, {}, {}, 0)
    assert not (s.cpu_available or s.gpu_load_available or s.emc_available or s.mem_available)
    assert math.isnan(s.cpu_percent) and math.isnan(s.mem_total_bytes)
