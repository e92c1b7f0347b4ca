"""EnergyIntegrator / EnergyCounterIntegrator on traces with known integrals."""
from __future__ import annotations

import math
import random
import threading
import time

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from slm_agent.telemetry.energy import EnergyCounterIntegrator, EnergyIntegrator
from slm_agent.telemetry.model import PowerSample


def feed(integ, times, fn):
    for t in times:
        assert integ.add(t, fn(t))


def grid(t0, t1, dt):
    n = int(round((t1 - t0) / dt))
    return [t0 + i * dt for i in range(n + 1)]


def test_constant_power():
    integ = EnergyIntegrator(max_gap_s=0.5)
    feed(integ, grid(0.0, 10.0, 0.1), lambda t: 5.0)
    est = integ.energy(1.0, 9.0)
    assert est.complete and est.joules == pytest.approx(40.0, rel=1e-12)
    assert est.covered_s == pytest.approx(8.0) and est.mean_power_w == pytest.approx(5.0)


def test_linear_ramp_with_window_edges_inside_samples():
    integ = EnergyIntegrator(max_gap_s=0.5)
    feed(integ, grid(0.0, 10.0, 0.1), lambda t: 2.0 * t)  # integral = t1^2 - t0^2
    t0, t1 = 0.2537, 7.3311
    est = integ.energy(t0, t1)
    assert est.complete
    assert est.joules == pytest.approx(t1 * t1 - t0 * t0, rel=1e-12)
    # a window entirely inside one sample interval
    est = integ.energy(3.01, 3.07)
    assert est.complete and est.joules == pytest.approx(3.07**2 - 3.01**2, rel=1e-9)


def test_changing_sample_rates_piecewise_linear_is_exact():
    rng = random.Random(1234)
    times, t = [], 0.0
    while t < 60.0:
        times.append(t)
        t += rng.choice([0.001, 0.01, 0.05, 0.2, 0.45])  # 1 kHz bursts to ~2 Hz
    integ = EnergyIntegrator(max_gap_s=0.5)
    feed(integ, times, lambda t: 3.0 + 0.5 * t)
    t0, t1 = 1.2345, times[-1] - 0.777
    est = integ.energy(t0, t1)
    exact = 3.0 * (t1 - t0) + 0.25 * (t1 * t1 - t0 * t0)
    assert est.complete and est.joules == pytest.approx(exact, rel=1e-12)


def test_gap_is_not_bridged():
    integ = EnergyIntegrator(max_gap_s=0.5)
    feed(integ, grid(0.0, 5.0, 0.1), lambda t: 10.0)
    feed(integ, grid(8.0, 10.0, 0.1), lambda t: 10.0)  # nothing between 5 s and 8 s
    est = integ.energy(0.0, 10.0)
    assert not est.complete
    assert est.covered_s == pytest.approx(7.0)
    assert est.joules == pytest.approx(70.0, rel=1e-12)  # not 100 J
    assert est.mean_power_w == pytest.approx(10.0)
    assert integ.energy(1.0, 4.0).complete and integ.energy(8.5, 9.5).complete
    inside = integ.energy(6.0, 7.0)
    assert inside.joules == 0.0 and inside.covered_s == 0.0 and not inside.complete
    assert math.isnan(inside.mean_power_w)


def test_gap_exactly_max_gap_is_bridged():
    integ = EnergyIntegrator(max_gap_s=0.5)
    integ.add(0.0, 2.0)
    integ.add(0.5, 2.0)
    assert integ.energy(0.0, 0.5).complete


def test_nan_sample_is_a_gap():
    integ = EnergyIntegrator(max_gap_s=0.5)
    for t in grid(0.0, 6.0, 0.1):
        integ.add(t, math.nan if abs(t - 3.0) < 1e-9 else 4.0)
    est = integ.energy(0.0, 6.0)
    assert not est.complete
    assert est.covered_s == pytest.approx(5.8)  # the two segments touching t=3.0 are dropped
    assert est.joules == pytest.approx(4.0 * 5.8, rel=1e-12)


def test_window_outside_data_and_zero_window():
    integ = EnergyIntegrator()
    feed(integ, grid(10.0, 11.0, 0.1), lambda t: 1.0)
    before = integ.energy(0.0, 5.0)
    assert before.joules == 0.0 and not before.complete
    partial = integ.energy(10.5, 12.0)
    assert not partial.complete and partial.covered_s == pytest.approx(0.5)
    zero = integ.energy(10.5, 10.5)
    assert zero.joules == 0.0 and zero.complete


def test_invalid_window_and_out_of_order_samples():
    integ = EnergyIntegrator()
    with pytest.raises(ValueError):
        integ.energy(2.0, 1.0)
    with pytest.raises(ValueError):
        integ.energy(math.nan, 1.0)
    assert integ.add(1.0, 1.0)
    assert not integ.add(1.0, 5.0)  # duplicate time
    assert not integ.add(0.5, 5.0)  # out of order
    assert not integ.add(math.inf, 5.0)
    assert integ.rejected == 3 and len(integ) == 1
    with pytest.raises(ValueError):
        EnergyIntegrator(max_gap_s=0.0)


def test_horizon_bounds_memory_and_loses_old_windows():
    integ = EnergyIntegrator(max_gap_s=0.5, horizon_s=10.0)
    feed(integ, grid(0.0, 100.0, 0.1), lambda t: 2.0)
    assert len(integ) <= 102  # ~10 s of 10 Hz samples plus the straddling one
    oldest, newest = integ.span()
    assert newest == pytest.approx(100.0) and oldest <= 90.0 and oldest > 89.0
    assert integ.energy(90.0, 100.0).complete
    old = integ.energy(0.0, 50.0)
    assert not old.complete and old.joules == 0.0


def test_max_samples_cap():
    integ = EnergyIntegrator(max_gap_s=1.0, horizon_s=1e9, max_samples=100)
    feed(integ, grid(0.0, 499.0, 1.0), lambda t: 1.0)
    assert len(integ) == 100
    assert integ.energy(400.0, 499.0).complete and not integ.energy(0.0, 499.0).complete


def test_compaction_keeps_results_exact():
    integ = EnergyIntegrator(max_gap_s=0.5, horizon_s=5.0)
    feed(integ, grid(0.0, 600.0, 0.01), lambda t: 1.0 + 0.01 * t)  # many evictions + compactions
    t0, t1 = 596.123, 599.987
    exact = (t1 - t0) + 0.005 * (t1 * t1 - t0 * t0)
    est = integ.energy(t0, t1)
    assert est.complete and est.joules == pytest.approx(exact, rel=1e-9)


def test_concurrent_add_and_query():
    integ = EnergyIntegrator(max_gap_s=0.5, horizon_s=1e6)
    n = 5000
    errors: list[BaseException] = []

    def writer():
        try:
            for i in range(n + 1):
                integ.add(i * 0.01, 3.0)
                if i % 250 == 0:
                    time.sleep(0.002)  # let the querying thread interleave
        except BaseException as exc:  # pragma: no cover - reported below
            errors.append(exc)

    queries = 0
    th = threading.Thread(target=writer)
    th.start()
    while th.is_alive():
        est = integ.energy(0.0, 50.0)
        # any snapshot is a consistent prefix: 3 W over whatever is covered
        assert est.joules == pytest.approx(3.0 * est.covered_s, rel=1e-9, abs=1e-9)
        queries += 1
        time.sleep(0.0005)
    th.join()
    assert queries > 0
    assert not errors
    est = integ.energy(0.0, 50.0)
    assert est.complete and est.joules == pytest.approx(150.0, rel=1e-12)


def test_add_power_sample_uses_stamp_and_treats_unavailable_as_gap():
    integ = EnergyIntegrator(max_gap_s=0.5)
    for i in range(21):
        ok = i != 10
        integ.add_power_sample(PowerSample(int(i * 0.1e9), "test", [], 8.0 if ok else math.nan, ok, "VDD_IN"))
    est = integ.energy(0.0, 2.0)
    assert not est.complete and est.covered_s == pytest.approx(1.8) and est.joules == pytest.approx(14.4)
    # an "unavailable" sample that still carries a number must not be integrated
    integ2 = EnergyIntegrator(max_gap_s=0.5)
    integ2.add_power_sample(PowerSample(0, "t", [], 5.0, True, "x"))
    integ2.add_power_sample(PowerSample(100_000_000, "t", [], 99.0, False, "x"))
    assert integ2.energy(0.0, 0.1).covered_s == 0.0


# ---------------------------------------------------------------- counters

def test_counter_with_wraps_is_exact_at_sample_edges():
    max_range = 1000.0
    integ = EnergyCounterIntegrator(max_range_j=max_range, max_gap_s=1.5)
    for t in range(301):
        integ.add(float(t), (10.0 * t) % max_range)  # 10 W, wraps every 100 s
    est = integ.energy(0.0, 300.0)
    assert est.complete and est.joules == pytest.approx(3000.0, rel=1e-12)
    assert integ.energy(95.0, 105.0).joules == pytest.approx(100.0, rel=1e-12)


def test_counter_interpolates_inside_a_segment():
    integ = EnergyCounterIntegrator(max_range_j=1e9, max_gap_s=2.0)
    integ.add(0.0, 100.0)
    integ.add(2.0, 120.0)
    est = integ.energy(0.5, 1.5)
    assert est.complete and est.joules == pytest.approx(10.0)


def test_counter_gap_across_possible_wraps_is_not_bridged():
    integ = EnergyCounterIntegrator(max_range_j=1000.0, max_gap_s=1.5)
    for t in range(0, 11):
        integ.add(float(t), (50.0 * t) % 1000.0)
    for t in range(40, 51):  # 30 s hole: the counter wrapped an unknown number of times
        integ.add(float(t), (50.0 * t) % 1000.0)
    est = integ.energy(0.0, 50.0)
    assert not est.complete
    assert est.covered_s == pytest.approx(20.0) and est.joules == pytest.approx(1000.0)


def test_counter_nan_is_a_gap():
    integ = EnergyCounterIntegrator(max_range_j=1e6, max_gap_s=1.5)
    for t in range(10):
        integ.add(float(t), math.nan if t == 5 else 2.0 * t)
    est = integ.energy(0.0, 9.0)
    assert not est.complete and est.covered_s == pytest.approx(7.0) and est.joules == pytest.approx(14.0)


# ---------------------------------------------------------------- properties

_sorted_times = st.lists(st.floats(min_value=0.0, max_value=100.0, allow_nan=False),
                         min_size=2, max_size=60, unique=True).map(sorted)


@settings(max_examples=60, deadline=None, database=None)
@given(times=_sorted_times, power=st.floats(min_value=0.0, max_value=500.0),
       a=st.floats(0.0, 1.0), b=st.floats(0.0, 1.0))
def test_property_constant_power_any_sampling(times, power, a, b):
    integ = EnergyIntegrator(max_gap_s=1e9)
    feed(integ, times, lambda t: power)
    lo, hi = times[0], times[-1]
    t0, t1 = sorted((lo + a * (hi - lo), lo + b * (hi - lo)))
    est = integ.energy(t0, t1)
    assert est.complete
    assert est.joules == pytest.approx(power * (t1 - t0), rel=1e-9, abs=1e-9)


@settings(max_examples=60, deadline=None, database=None)
@given(times=_sorted_times,
       values=st.lists(st.one_of(st.floats(0.0, 100.0), st.just(math.nan)), min_size=60, max_size=60),
       cuts=st.lists(st.floats(0.0, 1.0), min_size=3, max_size=3), gap=st.floats(0.5, 20.0))
def test_property_additive_and_bounded(times, values, cuts, gap):
    integ = EnergyIntegrator(max_gap_s=gap)
    for t, v in zip(times, values):
        integ.add(t, v)
    lo, hi = times[0] - 1.0, times[-1] + 1.0
    a, b, c = sorted(lo + x * (hi - lo) for x in cuts)
    whole, left, right = integ.energy(a, c), integ.energy(a, b), integ.energy(b, c)
    assert whole.joules == pytest.approx(left.joules + right.joules, rel=1e-9, abs=1e-9)
    assert whole.covered_s == pytest.approx(left.covered_s + right.covered_s, rel=1e-9, abs=1e-9)
    assert 0.0 <= whole.covered_s <= (c - a) + 1e-9
    assert whole.joules <= 100.0 * whole.covered_s + 1e-9  # never exceeds the max power
    assert whole.complete == (whole.covered_s >= (c - a) - max(1e-9 * (c - a), 1e-12))
