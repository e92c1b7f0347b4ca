"""How many llama.cpp threads a local model gets: measured on the machine it runs on.

Why not "every CPU" (llama-cpp-python's and this project's old default), and why not a
fixed rule either.  llama.cpp's threads meet at a barrier after every op of the graph, so
a decode thread that loses its CPU to anything else -- the ROS executor, DDS, telemetry,
the recorder, the benchmark node, the engine's own Python loop between two
``llama_decode`` calls -- stalls the others; but whether a second thread pays depends on
the model and on what else runs.  Measured on a 2-CPU x86 VM (AMD EPYC, AVX2), single-token
decode through the engine on an otherwise idle machine:

* Gemma 3 270M: 1 thread 43 tok/s, 2 threads 72;
* Qwen2.5-Coder 0.5B: 26 vs 44; Qwen2.5-Coder 1.5B: 13 vs 22;

but with another job on the cores the same Gemma measurement gave 1 thread 44, 2 threads 39
(the two threads wait for each other).  So the decode thread count is *measured*: at load, a
few single-token decode steps at each candidate count (1 .. the CPUs per slot), the fastest
wins, and a count within 3 % of it that uses fewer threads wins over it (it leaves a CPU to
the rest of the system for nothing).  A measurement is cached per machine, llama.cpp build,
model file and slot count in ``~/.cache/slm_agent/threads.json``
(``$SLM_AGENT_THREADS_CACHE``; delete it to measure again) only when the machine was quiet
while measuring (1-minute load average, less this process, under half the CPUs): one taken
under a passing load is used for that load only, so a busy moment is not remembered as the
machine's answer.  The policy is recorded in every run.json (``llama_cpp_threads``) and the
counts in each call's ``engine_counters`` (``llama_threads``, ``llama_threads_batch``).

Prompt processing is compute-bound in large batches: batch threads = every usable CPU,
split between the model's slots.  ``cpus`` is what this process may really use (its
affinity mask, capped by a cgroup CPU quota).  A profile's explicit ``cpu.n_threads`` /
``cpu.n_threads_batch`` win (the Jetson profiles set them).
"""
from __future__ import annotations

import fcntl
import json
import math
import os
import platform
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, Callable, Optional

__all__ = ["ThreadPolicy", "thread_policy", "usable_cpus", "decode_candidates", "choose", "cache_path",
           "machine_key", "busy_load"]

_CGROUP_CPU_MAX = Path("/sys/fs/cgroup/cpu.max")
#: a thread count this close to the fastest (relative) counts as just as fast
TIE = 0.03


def usable_cpus(cgroup_cpu_max: Path = _CGROUP_CPU_MAX) -> int:
    """CPUs this process may run on: its affinity mask, capped by a cgroup v2 quota
    (``cpu.max`` = "<quota> <period>", "max" = none) -- a container limited to 2 CPUs on a
    64-CPU host must not start 64 threads."""
    try:
        n = len(os.sched_getaffinity(0))
    except (AttributeError, OSError):  # not Linux
        n = os.cpu_count() or 1
    try:
        quota, period = cgroup_cpu_max.read_text().split()[:2]
        if quota != "max" and int(period) > 0:
            n = min(n, max(1, math.ceil(int(quota) / int(period))))
    except (OSError, ValueError):
        pass
    return max(1, n)


def busy_load() -> float:
    """The 1-minute load average less this process's own runnable threads (at most 1 while it
    measures): how much else wanted the CPUs."""
    try:
        return max(0.0, os.getloadavg()[0] - 1.0)
    except OSError:
        return 0.0


def decode_candidates(per_slot: int) -> list[int]:
    """Decode thread counts worth timing with ``per_slot`` CPUs: all up to 4, else a spread."""
    if per_slot <= 4:
        return list(range(1, per_slot + 1))
    return sorted({1, max(1, per_slot // 4), per_slot // 2, per_slot - 1, per_slot})


def choose(rates: dict[int, float]) -> int:
    """The fewest threads within :data:`TIE` of the fastest measured rate."""
    best = max(rates.values())
    return min(n for n, r in rates.items() if r >= best * (1 - TIE))


@dataclass(frozen=True)
class ThreadPolicy:
    """The threads one llama.cpp context gets, and why."""

    cpus: int
    slots: int
    n_threads: int
    n_threads_batch: int
    reason: str
    #: measured single-token decode rates (tok/s) per thread count, when measured
    decode_rates: dict[int, float] = field(default_factory=dict)

    def as_dict(self) -> dict[str, Any]:
        out = asdict(self)
        out["decode_rates"] = {str(k): round(v, 2) for k, v in self.decode_rates.items()}
        return out


def cache_path() -> Path:
    env = os.environ.get("SLM_AGENT_THREADS_CACHE")
    return Path(env).expanduser() if env else Path.home() / ".cache" / "slm_agent" / "threads.json"


def _cpu_model() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith(("model name", "Model", "CPU part")):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def machine_key(model_path: str, build: str, cpus: int, slots: int) -> str:
    """What a measurement is valid for: CPU model, usable CPUs, slots, llama.cpp build, model file."""
    try:
        st = os.stat(model_path)
        model = f"{os.path.basename(model_path)}:{st.st_size}:{int(st.st_mtime)}"
    except OSError:
        model = os.path.basename(model_path)
    return f"{_cpu_model()}|cpus={cpus}|slots={slots}|build={build}|model={model}"


def _read_cache(path: Path) -> dict[str, Any]:
    try:
        data = json.loads(path.read_text())
        return data if isinstance(data, dict) else {}
    except (OSError, ValueError):
        return {}


def _write_cache(path: Path, key: str, entry: dict[str, Any]) -> None:
    """Add ``entry`` under ``key``; never fails the load (a read-only home just measures again)."""
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        with open(path.with_suffix(".lock"), "w") as lock:
            fcntl.flock(lock, fcntl.LOCK_EX)
            data = _read_cache(path)
            data[key] = entry
            tmp = path.with_suffix(f".tmp{os.getpid()}")
            tmp.write_text(json.dumps(data, indent=1, sort_keys=True))
            os.replace(tmp, path)
    except OSError:
        pass


def thread_policy(n_threads: Optional[int] = None, n_threads_batch: Optional[int] = None, *,
                  slots: int = 1, cpus: Optional[int] = None, key: str = "",
                  measure: Optional[Callable[[int], float]] = None,
                  cache: Optional[Path] = None) -> ThreadPolicy:
    """Threads per context for ``slots`` contexts on this machine (see the module doc).

    ``n_threads`` / ``n_threads_batch``: the profile's ``cpu`` values (None = computed).
    ``key``: :func:`machine_key` of the model; a cached measurement under it is used.
    ``measure(n)``: single-token decode tok/s with ``n`` threads (the engine's timer); called
    for each candidate when nothing is cached.  Without both, decode gets the CPUs per slot
    minus one (at least 1): what the rule would choose without a measurement.
    """
    cpus = usable_cpus() if cpus is None else max(1, cpus)
    slots = max(1, slots)
    per_slot = max(1, cpus // slots)
    batch = n_threads_batch if n_threads_batch is not None else per_slot
    batch_why = (f"batch {batch} from the profile (cpu.n_threads_batch)" if n_threads_batch is not None
                 else f"batch {batch} = {cpus} CPUs // {slots} slot(s)")
    if n_threads is not None:
        return ThreadPolicy(cpus, slots, n_threads, batch,
                            f"decode {n_threads} from the profile (cpu.n_threads); {batch_why}")
    path = cache or cache_path()
    if key:
        hit = _read_cache(path).get(key)
        if isinstance(hit, dict) and isinstance(hit.get("rates"), dict) and hit["rates"]:
            rates = {int(k): float(v) for k, v in hit["rates"].items()}
            n = choose(rates)
            return ThreadPolicy(cpus, slots, n, batch, f"decode {n}: fastest measured on this machine "
                                f"({hit.get('measured_at', '?')}, cached in {path}); {batch_why}", rates)
    if key and measure is not None:
        rates = {n: measure(n) for n in decode_candidates(per_slot)}
        n = choose(rates)
        load = busy_load()
        quiet = load < cpus / 2
        if quiet:
            _write_cache(path, key, {"rates": {str(k): v for k, v in rates.items()}, "load": round(load, 2),
                                     "measured_at": time.strftime("%Y-%m-%dT%H:%M:%S%z")})
        return ThreadPolicy(cpus, slots, n, batch, f"decode {n}: fastest measured now "
                            f"({', '.join(f'{k}: {v:.1f} tok/s' for k, v in rates.items())}; "
                            + ("cached" if quiet else f"not cached: load {load:.1f} on {cpus} CPUs")
                            + f"); {batch_why}", rates)
    n = max(1, per_slot - 1) if per_slot > 1 else 1
    return ThreadPolicy(cpus, slots, n, batch, f"decode {n} = {per_slot} CPUs per slot - 1 (not measured: "
                        f"the engine measures at load); {batch_why}")
