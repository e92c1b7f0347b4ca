"""How many llama.cpp threads a local model gets: computed from the machine it runs on.

Why not "every CPU" (llama-cpp-python's and the old default): decode is
memory-bound and llama.cpp's threads meet at a barrier after every op, so a
decode thread that loses its CPU to anything else -- the ROS executor, DDS,
telemetry, the recorder, the benchmark node, the engine's own Python loop
(sampling and grammar checks run there between two ``llama_decode`` calls)
-- stalls the other one.  Measured on a 2-CPU x86 VM with Gemma 3 270M
inside ``slm-agent bench`` (benchmarks/harness_speed.py): 2 decode threads
gave 30 tok/s (0.93 of the same requests alone), 1 decode thread 36-37 tok/s
(0.98 of alone), while prompt processing -- compute-bound, large batches --
wants every CPU (300 tok/s with 2 batch threads, 200 with 1).

The policy therefore:

* decode threads = ``(cpus - 1) // slots`` (at least 1): one CPU is left to
  the rest of the system whenever there are two or more;
* batch (prefill) threads = ``cpus // slots`` (at least 1);

where ``cpus`` is what this process may really use (its affinity mask,
capped by a cgroup CPU quota) and ``slots`` the model's parallel slots
(:mod:`slm_agent.engines.llama_pool`), which split the CPUs between them.  A
profile's explicit ``cpu.n_threads`` / ``cpu.n_threads_batch`` win (the
Jetson profiles set them).  The chosen numbers and the reason are recorded in
every run.json (``llama_cpp_threads``).
"""
from __future__ import annotations

import math
import os
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any, Optional

__all__ = ["ThreadPolicy", "thread_policy", "usable_cpus"]

_CGROUP_CPU_MAX = Path("/sys/fs/cgroup/cpu.max")


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


@dataclass(frozen=True)
class ThreadPolicy:
    """The threads one llama.cpp context gets, and why."""

    cpus: int
    slots: int
    n_threads: int
    n_threads_batch: int
    reason: str

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)


def thread_policy(n_threads: Optional[int] = None, n_threads_batch: Optional[int] = None, *,
                  slots: int = 1, cpus: Optional[int] = None) -> ThreadPolicy:
    """Threads per context for ``slots`` contexts on this machine (see the module doc).

    ``n_threads`` / ``n_threads_batch`` are the profile's ``cpu`` values (None = computed).
    """
    cpus = usable_cpus() if cpus is None else max(1, cpus)
    slots = max(1, slots)
    parts = []
    if n_threads is None:
        decode = max(1, (cpus - 1) // slots)
        parts.append(f"decode {decode} = ({cpus} CPUs - 1 left to the rest of the system) // {slots} slot(s)"
                     if cpus > 1 else "decode 1 (one CPU)")
    else:
        decode = n_threads
        parts.append(f"decode {decode} from the profile (cpu.n_threads)")
    if n_threads_batch is None:
        batch = max(1, cpus // slots)
        parts.append(f"batch {batch} = {cpus} CPUs // {slots} slot(s)")
    else:
        batch = n_threads_batch
        parts.append(f"batch {batch} from the profile (cpu.n_threads_batch)")
    return ThreadPolicy(cpus=cpus, slots=slots, n_threads=decode, n_threads_batch=batch, reason="; ".join(parts))
