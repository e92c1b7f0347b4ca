"""PowerLog: the one PowerState -> energy helper of the agent node, the
benchmark node and the bag report (slm_agent.telemetry.energy)."""
from __future__ import annotations

import math

import pytest

from slm_agent.telemetry.energy import PowerLog, stamp_seconds


class Clock:
    def __init__(self) -> None:
        self.t = 100.0

    def __call__(self) -> float:
        return self.t


def test_stamp_seconds_and_unset_stamp():
    assert stamp_seconds(12, 500_000_000) == 12.5
    assert math.isnan(stamp_seconds(0, 0))


def test_energy_needs_measured_and_complete_samples():
    log = PowerLog(max_gap_s=1.0)
    assert math.isnan(log.joules(0.0, 1.0)) and not log.measured
    for t in (10.0, 10.5, 11.0, 11.5):
        assert log.add(t, 4.0, True, "MAXN")
    assert log.measured and log.samples == 4 and log.power_mode == "MAXN"
    assert log.joules(10.25, 11.25) == pytest.approx(4.0)
    joules, covered = log.estimate(10.0, 11.5)
    assert joules == pytest.approx(6.0) and covered == pytest.approx(1.5)
    assert math.isnan(log.joules(9.0, 10.5))          # starts before the first sample
    assert math.isnan(log.joules(11.0, 11.0))         # zero-length window: nothing measured
    assert math.isnan(log.joules(math.nan, 11.0)) and math.isnan(log.joules(11.0, 10.0))


def test_unavailable_total_is_a_gap_and_the_gap_setting_is_honoured():
    log = PowerLog(max_gap_s=1.0)
    log.add(0.0, 5.0, True)
    assert not log.add(0.5, 5.0, False, "")            # not measured: a gap marker, never 0 W
    assert not log.add(0.75, math.inf, True)
    log.add(1.0, 5.0, True)
    assert math.isnan(log.joules(0.0, 1.0)) and log.measured_samples == 2
    wide = PowerLog(max_gap_s=3.0)
    narrow = PowerLog(max_gap_s=1.0)
    for log in (wide, narrow):
        log.add(0.0, 2.0, True)
        log.add(2.0, 2.0, True)                         # a 2 s hole between samples
    assert wide.joules(0.0, 2.0) == pytest.approx(4.0) and math.isnan(narrow.joules(0.0, 2.0))


def test_power_mode_keeps_the_latest_named_one():
    log = PowerLog()
    log.add(1.0, 1.0, True, "15W")
    log.add(2.0, 1.0, True, "")
    assert log.power_mode == "15W"
    log.add(3.0, 1.0, True, "MAXN")
    assert log.power_mode == "MAXN"


def test_settled_when_covered_or_telemetry_is_stale():
    clock = Clock()
    log = PowerLog(clock=clock)
    assert log.settled(5.0, stale_s=2.0)               # nothing ever arrived: no telemetry
    log.add(4.0, 1.0, True)
    assert not log.covers(5.0) and not log.settled(5.0, stale_s=2.0)
    clock.t += 2.5                                      # no sample for 2.5 s: stale
    assert log.settled(5.0, stale_s=2.0)
    log.add(5.0, 1.0, True)
    assert log.covers(5.0) and log.settled(5.0, stale_s=2.0)


def test_settled_waits_for_max_gap_when_it_is_longer_than_stale():
    """A silence shorter than ``max_gap_s`` is a gap the next sample may bridge: waiting
    must not give up on it (the agent's energy became NaN on a loaded machine)."""
    clock = Clock()
    log = PowerLog(max_gap_s=10.0, clock=clock)
    log.add(4.0, 1.0, True)
    clock.t += 2.5                                      # past stale_s, inside max_gap_s
    assert not log.settled(5.0, stale_s=2.0)
    clock.t += 5.0                                      # 7.5 s of silence: still bridgeable
    assert not log.settled(5.0, stale_s=2.0)
    log.add(12.0, 1.0, True)                            # the late sample bridges the gap
    assert log.settled(5.0, stale_s=2.0) and log.joules(4.0, 5.0) == 1.0
    log2 = PowerLog(max_gap_s=10.0, clock=clock)
    log2.add(4.0, 1.0, True)
    clock.t += 10.5                                     # longer than max_gap_s: stale
    assert log2.settled(5.0, stale_s=2.0)
