"""Readers on the real machine running the tests (root="/").

Nothing here assumes a Jetson or RAPL; instead every sample must be internally
consistent (available <=> finite) and the CPU/memory numbers must agree with
what /proc says independently.
"""
from __future__ import annotations

import importlib.util
import math
import os
import time

import pytest

from slm_agent.telemetry.readers import READERS, JtopReader, NvmlReader, select_reader


def _meminfo_kb(key: str) -> int:
    with open("/proc/meminfo") as fh:
        for line in fh:
            if line.startswith(key + ":"):
                return int(line.split()[1])
    raise KeyError(key)


@pytest.fixture(scope="module")
def reader():
    r = select_reader("auto")
    yield r
    r.close()


def test_auto_picks_a_known_reader(reader):
    assert reader.name in READERS
    assert isinstance(reader, READERS[reader.name])


def test_system_sample_has_real_cpu_and_memory(reader):
    time.sleep(0.25)  # let jiffies accumulate since the reader's baseline
    s = reader.read_system()
    assert s.source == reader.name
    assert s.cpu_available and 0.0 <= s.cpu_percent <= 100.0
    assert len(s.per_cpu_percent) >= 1
    for v in s.per_cpu_percent:
        assert math.isnan(v) or 0.0 <= v <= 100.0
    assert s.mem_available
    assert s.mem_total_bytes == _meminfo_kb("MemTotal") * 1024
    assert 0 < s.mem_used_bytes < s.mem_total_bytes
    for flag, value in [(s.gpu_load_available, s.gpu_load_percent), (s.gpu_freq_available, s.gpu_freq_mhz),
                        (s.emc_available, s.emc_freq_mhz)]:
        assert flag == math.isfinite(value)
    assert s.cpu_freq_available == any(math.isfinite(f) for f in s.cpu_freq_mhz)


def test_power_availability_matches_reality(reader):
    time.sleep(0.05)
    p = reader.read_power()
    assert p.source == reader.name
    assert p.total_available == math.isfinite(p.total_power_w)
    for r in p.rails:
        assert r.available == math.isfinite(r.power_w)
    rapl = "/sys/class/powercap/intel-rapl:0/energy_uj"
    rapl_readable = os.access(rapl, os.R_OK)
    if reader.name == "linux" and not rapl_readable:
        assert not p.total_available and p.message  # says why
    if p.total_available:
        assert p.total_power_w >= 0.0 and p.total_rail


def test_thermal_consistency(reader):
    t = reader.read_thermal()
    assert t.source == reader.name
    for z in t.zones:
        assert z.available == math.isfinite(z.temperature_c)
    if not t.throttling_available:
        assert t.throttling is False


def test_jtop_probe_matches_environment():
    expected = importlib.util.find_spec("jtop") is not None and os.path.exists("/run/jtop.sock")
    assert JtopReader.probe("/") is expected


@pytest.mark.skipif(JtopReader.probe("/"), reason="jtop service is running here; the no-jtop path needs its absence")
def test_jtop_reader_without_service_reports_unavailable():
    r = JtopReader()
    p = r.read_power()
    assert p.source == "jtop" and not p.total_available and "jtop unavailable" in p.message
    assert not r.read_system().cpu_available
    r.close()


@pytest.mark.skipif(os.path.exists("/dev/nvidiactl"), reason="an NVIDIA driver is present; testing the no-driver path")
def test_nvml_without_driver_is_unavailable_not_an_error():
    assert NvmlReader.probe("/") is False
    r = NvmlReader()
    p = r.read_power()
    assert p.source == "nvml" and not p.total_available and math.isnan(p.total_power_w)
    assert p.message  # pynvml missing or NVML library not found
    time.sleep(0.05)
    s = r.read_system()  # host CPU/memory still come from /proc
    assert s.source == "nvml" and s.mem_available and not s.gpu_load_available
    r.close()


def test_nvml_never_probes_true_for_a_fixture_root(tmp_path):
    assert NvmlReader.probe(str(tmp_path)) is False


def test_jtop_probe_needs_the_service_socket(tmp_path):
    assert JtopReader.probe(str(tmp_path)) is False  # no socket under this root
    (tmp_path / "run").mkdir()
    (tmp_path / "run/jtop.sock").write_text("")
    # with the socket present, the answer is whether jetson-stats is importable
    assert JtopReader.probe(str(tmp_path)) is (importlib.util.find_spec("jtop") is not None)


@pytest.mark.skipif(JtopReader.probe("/"), reason="jtop service is running here; the no-jtop path needs its absence")
def test_jtop_failed_connection_is_not_retried_on_every_read():
    r = JtopReader(retry_s=60.0)
    first = r.read_power()
    t0 = time.monotonic()
    second = r.read_power()
    assert time.monotonic() - t0 < 0.5  # served from the backoff, no new connection attempt
    assert not first.total_available and not second.total_available
    assert second.message == first.message and second.message.startswith("jtop unavailable")
