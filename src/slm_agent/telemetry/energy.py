"""Energy over an arbitrary time window from irregular telemetry samples.

The benchmark asks "how many joules did this one LLM call cost?" after the
call ends, for a window ``[t0, t1]`` that never lines up with sample times.
Two sources exist:

* **power samples** (INA3221 rails, NVML, jtop): :class:`EnergyIntegrator`
  integrates them with the trapezoidal rule, interpolating linearly at the
  window edges.  This is exact for piecewise-linear power and the natural
  estimate otherwise.
* **cumulative energy counters** (RAPL ``energy_uj``):
  :class:`EnergyCounterIntegrator` differences the counter, unwrapping it at
  ``max_range``.  When the window edges fall on samples this is exact; inside
  a segment the counter is interpolated linearly (constant power assumption).

Both refuse to invent data.  A segment whose endpoints are further apart than
``max_gap_s`` (the sampler stalled, the node was paused), or that touches a
NaN sample (a failed read), contributes nothing, and the estimate is flagged
``complete=False`` with ``covered_s`` telling how much of the window had data.
That way an energy-per-token figure never silently bridges a hole.

:class:`PowerLog` is what every PowerState consumer uses (agent node,
benchmark node, bag report): one spelling of the message's stamp
(:func:`stamp_seconds`), of "measured", and of the declared gap.

Memory is bounded by ``horizon_s`` (samples older than that behind the newest
are dropped) and a hard ``max_samples`` cap.  All methods take one lock, since
a ROS subscription thread adds while the benchmark thread queries.  Times are
seconds on a monotonic clock (``time.monotonic()`` or ``stamp_ns / 1e9``).
"""
from __future__ import annotations

import bisect
import math
import threading
import time
from dataclasses import dataclass
from typing import Callable

from .model import PowerSample

NAN = math.nan
_REL_TOL = 1e-9


@dataclass(frozen=True)
class EnergyEstimate:
    """Joules in the requested window and how much of it was actually covered."""

    joules: float
    covered_s: float
    complete: bool
    requested_s: float

    @property
    def mean_power_w(self) -> float:
        """Average power over the covered part (NaN if nothing was covered)."""
        return self.joules / self.covered_s if self.covered_s > 0 else NAN


def _wrap_delta(a: float, b: float, max_range: float) -> float:
    if b >= a:
        return b - a
    if math.isfinite(max_range) and max_range > 0:
        return b + max_range - a
    return NAN


class _Series:
    """Time-ordered ``(t, value)`` store with horizon eviction and a lock."""

    def __init__(self, max_gap_s: float, horizon_s: float, max_samples: int) -> None:
        if not (max_gap_s > 0 and horizon_s > 0 and max_samples >= 2):
            raise ValueError("need max_gap_s > 0, horizon_s > 0, max_samples >= 2")
        self.max_gap_s = float(max_gap_s)
        self.horizon_s = float(horizon_s)
        self.max_samples = int(max_samples)
        self._t: list[float] = []
        self._v: list[float] = []
        self._start = 0
        self._rejected = 0
        self._lock = threading.Lock()

    def add(self, t_s: float, value: float) -> bool:
        """Append a sample; returns False (and drops it) if ``t_s`` is not increasing.

        Out-of-order samples are dropped rather than raised on, because the
        caller is typically a subscription callback where an exception would
        only lose later samples too.  NaN/inf values are kept as gap markers.
        """
        t = float(t_s)
        v = float(value) if value is not None else NAN
        if not math.isfinite(v):
            v = NAN
        with self._lock:
            if not math.isfinite(t) or (len(self._t) > self._start and t <= self._t[-1]):
                self._rejected += 1
                return False
            self._t.append(t)
            self._v.append(v)
            self._evict_locked()
        return True

    def _evict_locked(self) -> None:
        cutoff = self._t[-1] - self.horizon_s
        end = len(self._t)
        # Keep the last sample at or before the cutoff so a window starting
        # exactly at the horizon is still fully covered.
        while end - self._start > 2 and self._t[self._start + 1] <= cutoff:
            self._start += 1
        while end - self._start > self.max_samples:
            self._start += 1
        if self._start > 1024 and self._start * 2 > end:
            del self._t[: self._start]
            del self._v[: self._start]
            self._start = 0

    def __len__(self) -> int:
        with self._lock:
            return len(self._t) - self._start

    @property
    def rejected(self) -> int:
        """How many samples were dropped for arriving out of order."""
        return self._rejected

    def span(self) -> tuple[float, float]:
        """``(oldest, newest)`` retained sample time, NaNs when empty."""
        with self._lock:
            if len(self._t) == self._start:
                return NAN, NAN
            return self._t[self._start], self._t[-1]

    def clear(self) -> None:
        with self._lock:
            self._t.clear()
            self._v.clear()
            self._start = 0

    def _segment_energy(self, ta: float, tb: float, a: float, b: float, lo: float, hi: float) -> float:
        raise NotImplementedError

    def energy(self, t0: float, t1: float) -> EnergyEstimate:
        """Energy in ``[t0, t1]``; see the module docstring for gap rules."""
        t0, t1 = float(t0), float(t1)
        if not (math.isfinite(t0) and math.isfinite(t1)) or t1 < t0:
            raise ValueError(f"invalid window [{t0}, {t1}]")
        requested = t1 - t0
        joules = 0.0
        covered = 0.0
        with self._lock:
            ts, vs, end = self._t, self._v, len(self._t)
            k = max(self._start, bisect.bisect_right(ts, t0, self._start, end) - 1)
            k_end = min(end - 1, bisect.bisect_left(ts, t1, self._start, end))
            for i in range(k, k_end):
                ta, tb, a, b = ts[i], ts[i + 1], vs[i], vs[i + 1]
                if tb - ta > self.max_gap_s or math.isnan(a) or math.isnan(b):
                    continue
                lo, hi = max(ta, t0), min(tb, t1)
                if hi <= lo:
                    continue
                e = self._segment_energy(ta, tb, a, b, lo, hi)
                if math.isnan(e):
                    continue
                joules += e
                covered += hi - lo
        complete = covered >= requested - max(_REL_TOL * requested, 1e-12)
        return EnergyEstimate(joules, covered, complete, requested)

    def mean_power(self, t0: float, t1: float) -> float:
        return self.energy(t0, t1).mean_power_w


class EnergyIntegrator(_Series):
    """Integrate power samples ``(t_s, power_w)`` by the trapezoidal rule."""

    def __init__(self, max_gap_s: float = 1.0, horizon_s: float = 3600.0,
                 max_samples: int = 1_000_000) -> None:
        super().__init__(max_gap_s, horizon_s, max_samples)

    def add_power_sample(self, sample: PowerSample) -> bool:
        """Add a reader's ``PowerSample`` (its total; an unavailable total is a gap).

        Uses ``stamp_ns`` as the time base, so query with the same clock
        (monotonic seconds unless the reader was given another ``clock_ns``).
        """
        power = sample.total_power_w if sample.total_available else NAN
        return self.add(sample.stamp_ns / 1e9, power)

    def _segment_energy(self, ta: float, tb: float, a: float, b: float, lo: float, hi: float) -> float:
        slope = (b - a) / (tb - ta)
        p_lo = a + slope * (lo - ta)
        p_hi = a + slope * (hi - ta)
        return 0.5 * (p_lo + p_hi) * (hi - lo)


class EnergyCounterIntegrator(_Series):
    """Difference a cumulative energy counter ``(t_s, counter_j)`` that wraps at ``max_range_j``.

    ``max_gap_s`` matters more here than for power: across a long gap the
    counter may have wrapped more than once, and nothing in the samples can
    tell, so such a segment is dropped instead of under-counted.
    """

    def __init__(self, max_range_j: float, max_gap_s: float = 1.0, horizon_s: float = 3600.0,
                 max_samples: int = 1_000_000) -> None:
        super().__init__(max_gap_s, horizon_s, max_samples)
        self.max_range_j = float(max_range_j)

    def _segment_energy(self, ta: float, tb: float, a: float, b: float, lo: float, hi: float) -> float:
        delta = _wrap_delta(a, b, self.max_range_j)
        if lo == ta and hi == tb:
            return delta
        return delta * (hi - lo) / (tb - ta)


#: default ``max_gap_s`` of the PowerState consumers (declared as the agent's and the
#: benchmark's ``energy_max_gap_s`` setting in :mod:`slm_agent.settings`)
DEFAULT_MAX_GAP_S = 1.0


def stamp_seconds(sec: int, nanosec: int) -> float:
    """A ROS stamp's ``(sec, nanosec)`` in seconds; an all-zero stamp (never set) is NaN."""
    sec, nanosec = int(sec), int(nanosec)
    return NAN if sec == 0 and nanosec == 0 else sec + nanosec * 1e-9


class PowerLog:
    """``slm_agent/msg/PowerState`` samples -> energy over any window on their clock.

    Why one class: the agent node (energy of each LLM call), the benchmark
    node (each case, and the calls the agent left NaN) and the bag report
    (the same, after the fact) each integrated PowerState on their own, with
    three timestamp spellings and two hard-coded gaps.  Here a sample is
    ``(stamp seconds, total_power_w, total_available, power_mode)``; an
    unavailable or non-finite total is a gap marker, never a zero.  Energy is
    NaN unless power was measured and the samples cover the whole window
    (no gap longer than ``max_gap_s``); a zero-length window is NaN too.
    """

    def __init__(self, max_gap_s: float = DEFAULT_MAX_GAP_S, horizon_s: float = 3600.0,
                 clock: Callable[[], float] = time.monotonic) -> None:
        self.integrator = EnergyIntegrator(max_gap_s=max_gap_s, horizon_s=horizon_s)
        self._clock = clock
        self._lock = threading.Lock()
        self.samples = 0            # PowerState messages added
        self.measured_samples = 0   # ... with a measured total
        self.power_mode = ""        # the latest non-empty power mode
        self.last_rx = -math.inf    # ``clock()`` when the latest sample was added

    def add(self, t_s: float, total_power_w: float, total_available: bool, power_mode: str = "") -> bool:
        """Add one sample; returns whether it carried a measured total."""
        ok = bool(total_available) and math.isfinite(total_power_w)
        self.integrator.add(t_s, total_power_w if ok else NAN)
        with self._lock:
            self.samples += 1
            self.measured_samples += int(ok)
            if power_mode:
                self.power_mode = power_mode
            self.last_rx = self._clock()
        return ok

    @property
    def measured(self) -> bool:
        """Whether any sample so far carried a measured total."""
        return self.measured_samples > 0

    def __len__(self) -> int:
        return len(self.integrator)

    def covers(self, end_s: float) -> bool:
        """Whether a sample at or after ``end_s`` has arrived (a window ending there is final)."""
        newest = self.integrator.span()[1]
        return math.isfinite(newest) and newest >= end_s

    def settled(self, end_s: float, stale_s: float) -> bool:
        """Whether waiting longer cannot change a window ending at ``end_s``: it is covered,
        or no sample arrived for ``stale_s`` seconds, or for ``max_gap_s`` if that is longer
        (telemetry is not running).  A shorter silence is a gap the next sample may still
        bridge -- a loaded machine stalls publishers for seconds -- so giving up on it would
        turn a measurable window into NaN."""
        silence = max(stale_s, self.integrator.max_gap_s)
        return self._clock() - self.last_rx > silence or self.covers(end_s)

    def estimate(self, t0_s: float, t1_s: float) -> tuple[float, float]:
        """(joules, or NaN unless measured and complete; covered seconds) over ``[t0_s, t1_s]``."""
        if not self.measured or not (math.isfinite(t0_s) and math.isfinite(t1_s)) or t1_s < t0_s:
            return NAN, 0.0
        est = self.integrator.energy(t0_s, t1_s)
        return (float(est.joules) if est.complete and est.covered_s > 0 else NAN), est.covered_s

    def joules(self, t0_s: float, t1_s: float) -> float:
        """Energy over ``[t0_s, t1_s]`` (see :meth:`estimate`), NaN when not known."""
        return self.estimate(t0_s, t1_s)[0]


__all__ = ["DEFAULT_MAX_GAP_S", "EnergyEstimate", "EnergyIntegrator", "EnergyCounterIntegrator", "PowerLog",
           "stamp_seconds"]
