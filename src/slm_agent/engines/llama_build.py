"""How llama-cpp-python is built: the one place that decides the CPU flags.

Why this exists: llama-cpp-python's default source build compiles ggml with
``-march=native``.  On a CPU with AMX (Intel Sapphire Rapids, the usual cloud
Xeon) that enables ggml's AMX weight-repack buffer, which crashed with SIGSEGV
in ``ggml_backend_amx_mul_mat`` on the bundled Gemma 3 Q4_K_M model; and a
native wheel built on one machine may be reused by pip on another machine of
"the same kind" whose CPU lacks an instruction the wheel uses (SIGILL).

The build here is therefore never native.  The host's CPU features select one
of ggml's own named x86/ARM variants (the list ggml's ``GGML_CPU_ALL_VARIANTS``
builds, taken from ``ggml/src/CMakeLists.txt``) **with AMX removed**, and the
flags of that variant are passed explicitly with ``GGML_NATIVE=OFF``.  Why not
ggml's runtime-dispatched variants themselves: they need ``GGML_BACKEND_DL``,
llama-cpp-python 0.3.x installs only a single ``ggml-cpu`` library (the
``ggml-cpu-<variant>`` libraries would not be shipped), and the dispatcher
would pick the ``sapphirerapids`` (AMX) variant on exactly the CPUs that
crash.

The wheel is keyed by :func:`BuildConfig.key` (llama-cpp-python version,
variant, CMake arguments, machine, Python tag), so a wheel built for other
flags is never reused; ``tools/bootstrap.py`` builds it into its own wheel
cache, installs it, records the config in the venv
(:data:`RECORD_NAME`), and smoke-tests the model before declaring set-up done.

Stdlib only: the bootstrap imports this file by path before the venv exists.
Run it to see the decision for this machine::

    python3 src/slm_agent/engines/llama_build.py            # JSON
    python3 src/slm_agent/engines/llama_build.py --cmake-args
"""
from __future__ import annotations

import argparse
import hashlib
import json
import os
import platform
import sys
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Iterable, Optional

#: llama-cpp-python release this package is tested with (also pinned in
#: requirements/lock.txt; a test keeps the two equal).
LLAMA_CPP_PYTHON_VERSION = "0.3.36"

#: where the bootstrap records what it built, relative to the venv root.
RECORD_NAME = "slm_agent_llama_build.json"

#: environment variable that forces a variant (e.g. ``haswell``, ``x86-64``),
#: for a build meant to run on other, older CPUs than this one.
VARIANT_ENV = "SLM_AGENT_LLAMA_VARIANT"

# ggml CMake feature -> /proc/cpuinfo flags that must all be present.
_X86_FEATURE_FLAGS: dict[str, tuple[str, ...]] = {
    "SSE42": ("sse4_2",),
    "AVX": ("avx",),
    "F16C": ("f16c",),
    "FMA": ("fma",),
    "AVX2": ("avx2",),
    "BMI2": ("bmi2",),
    # ggml's AVX512 switch compiles with -mavx512f/cd/vl/dq/bw
    "AVX512": ("avx512f", "avx512cd", "avx512vl", "avx512dq", "avx512bw"),
    "AVX512_VBMI": ("avx512vbmi",),
    "AVX512_VNNI": ("avx512_vnni",),
    "AVX512_BF16": ("avx512_bf16",),
    "AVX_VNNI": ("avx_vnni",),
}
#: every x86 switch this module sets explicitly (the rest stay ggml's default).
_X86_SWITCHES = tuple(_X86_FEATURE_FLAGS) + ("AMX_TILE", "AMX_INT8", "AMX_BF16")

# ggml's x86 variants (GGML_CPU_ALL_VARIANTS), best first.  ``sapphirerapids``
# (the same as zen4 plus AMX_TILE/AMX_INT8) is deliberately absent: AMX is the
# path that crashed.  ``x86-64`` (no SIMD switches) is the last resort.
X86_VARIANTS: tuple[tuple[str, tuple[str, ...]], ...] = (
    ("zen4", ("SSE42", "AVX", "F16C", "FMA", "AVX2", "BMI2", "AVX512", "AVX512_VBMI",
              "AVX512_VNNI", "AVX512_BF16")),
    ("cooperlake", ("SSE42", "AVX", "F16C", "FMA", "AVX2", "BMI2", "AVX512", "AVX512_VNNI",
                    "AVX512_BF16")),
    ("icelake", ("SSE42", "AVX", "F16C", "FMA", "AVX2", "BMI2", "AVX512", "AVX512_VBMI",
                 "AVX512_VNNI")),
    ("cascadelake", ("SSE42", "AVX", "F16C", "FMA", "AVX2", "BMI2", "AVX512", "AVX512_VNNI")),
    ("cannonlake", ("SSE42", "AVX", "F16C", "FMA", "AVX2", "BMI2", "AVX512", "AVX512_VBMI")),
    ("skylakex", ("SSE42", "AVX", "F16C", "FMA", "AVX2", "BMI2", "AVX512")),
    ("alderlake", ("SSE42", "AVX", "F16C", "FMA", "AVX2", "BMI2", "AVX_VNNI")),
    ("haswell", ("SSE42", "AVX", "F16C", "FMA", "AVX2", "BMI2")),
    ("piledriver", ("SSE42", "AVX", "F16C", "FMA")),
    ("ivybridge", ("SSE42", "AVX", "F16C")),
    ("sandybridge", ("SSE42", "AVX")),
    ("sse42", ("SSE42",)),
    ("x86-64", ()),
)

# ARM (Linux) variants as ggml names them, best first, with the -march each
# compiles for and the /proc/cpuinfo "Features" it needs.  Jetson AGX Orin's
# Cortex-A78AE is armv8.2-a with dotprod and fp16 and no SVE: ``armv8.2_2``.
ARM_VARIANTS: tuple[tuple[str, str, tuple[str, ...]], ...] = (
    ("armv8.6_1", "armv8.6-a+dotprod+fp16+sve+i8mm", ("asimddp", "asimdhp", "sve", "i8mm")),
    ("armv8.2_3", "armv8.2-a+dotprod+fp16+sve", ("asimddp", "asimdhp", "sve")),
    ("armv8.2_2", "armv8.2-a+dotprod+fp16", ("asimddp", "asimdhp")),
    ("armv8.2_1", "armv8.2-a+dotprod", ("asimddp",)),
    ("armv8.0_1", "armv8-a", ()),
)

#: switches common to every build: no native tuning, no AMX, and the CPU
#: backend only (no GPU toolchains are probed on a CPU machine).
_COMMON_ARGS = ("-DGGML_NATIVE=OFF",)


@dataclass(frozen=True)
class BuildConfig:
    """One llama-cpp-python CPU build: what to pass to CMake and why."""

    machine: str
    variant: str
    cmake_args: tuple[str, ...]
    version: str = LLAMA_CPP_PYTHON_VERSION
    reason: str = ""
    python_tag: str = field(default_factory=lambda: f"cp{sys.version_info[0]}{sys.version_info[1]}")

    def key(self) -> str:
        """Wheel-cache key: anything that changes the binary changes the key."""
        text = json.dumps([self.version, self.machine, self.variant, list(self.cmake_args),
                           self.python_tag])
        return f"{self.version}-{self.machine}-{self.variant}-{hashlib.sha256(text.encode()).hexdigest()[:12]}"

    def cmake_env(self) -> str:
        """The ``CMAKE_ARGS`` value llama-cpp-python's scikit-build reads."""
        return " ".join(self.cmake_args)

    def to_dict(self) -> dict:
        d = asdict(self)
        d["cmake_args"] = list(self.cmake_args)
        d["key"] = self.key()
        return d


def cpu_flags(cpuinfo: Optional[str] = None) -> set[str]:
    """The CPU feature names of ``/proc/cpuinfo`` (x86 ``flags``, ARM ``Features``)."""
    if cpuinfo is None:
        try:
            cpuinfo = Path("/proc/cpuinfo").read_text(errors="replace")
        except OSError:
            return set()
    flags: set[str] = set()
    for line in cpuinfo.splitlines():
        key, _, value = line.partition(":")
        if key.strip().lower() in ("flags", "features"):
            flags.update(value.split())
            break  # every core lists the same features; the first is enough
    return flags


def _x86_args(features: Iterable[str]) -> tuple[str, ...]:
    on = set(features)
    return _COMMON_ARGS + tuple(f"-DGGML_{sw}={'ON' if sw in on else 'OFF'}" for sw in _X86_SWITCHES)


def _norm_machine(machine: str) -> str:
    m = machine.lower()
    if m in ("amd64", "x86_64", "x64"):
        return "x86_64"
    if m in ("arm64", "aarch64"):
        return "aarch64"
    return m


def variants_for(machine: str) -> list[str]:
    machine = _norm_machine(machine)
    if machine == "x86_64":
        return [name for name, _ in X86_VARIANTS]
    if machine == "aarch64":
        return [name for name, _, _ in ARM_VARIANTS]
    return ["generic"]


def choose(flags: Optional[set[str]] = None, machine: Optional[str] = None,
           variant: Optional[str] = None) -> BuildConfig:
    """The best AMX-free variant whose every feature this CPU has.

    ``variant`` (or ``$SLM_AGENT_LLAMA_VARIANT``) forces one, e.g. to build a
    wheel for older machines than this one; a variant needing a feature this
    CPU lacks is refused, since the smoke test could not run it.
    """
    machine = _norm_machine(machine or platform.machine())
    flags = cpu_flags() if flags is None else set(flags)
    forced = variant or os.environ.get(VARIANT_ENV) or None
    if machine == "x86_64":
        usable = [(n, feats) for n, feats in X86_VARIANTS
                  if all(f in flags for feat in feats for f in _X86_FEATURE_FLAGS[feat])]
        table = {n: feats for n, feats in X86_VARIANTS}
        name = _pick(forced, usable, table, machine)
        feats = table[name]
        return BuildConfig(machine, name, _x86_args(feats),
                           reason=_reason(forced, name, [f for f in feats]))
    if machine == "aarch64":
        usable = [(n, need) for n, _, need in ARM_VARIANTS if all(f in flags for f in need)]
        table = {n: need for n, _, need in ARM_VARIANTS}
        name = _pick(forced, usable, table, machine)
        march = next(m for n, m, _ in ARM_VARIANTS if n == name)
        return BuildConfig(machine, name, _COMMON_ARGS + (f"-DGGML_CPU_ARM_ARCH={march}",),
                           reason=_reason(forced, name, [march]))
    if forced and forced != "generic":
        raise ValueError(f"{VARIANT_ENV}={forced}: no named variants on {machine}; use 'generic'")
    return BuildConfig(machine, "generic", _COMMON_ARGS,
                       reason=f"{machine}: ggml's portable defaults with -march=native off")


def _pick(forced: Optional[str], usable: list, table: dict, machine: str) -> str:
    if forced:
        if forced not in table:
            raise ValueError(f"{VARIANT_ENV}={forced}: unknown variant for {machine}; "
                             f"choose one of {', '.join(table)}")
        if forced not in {n for n, _ in usable}:
            raise ValueError(f"{VARIANT_ENV}={forced}: this CPU lacks a feature it needs, so the "
                             f"build could not be verified here; choose one of "
                             f"{', '.join(n for n, _ in usable)}")
        return forced
    return usable[0][0]


def _reason(forced: Optional[str], name: str, feats: list[str]) -> str:
    how = f"forced by {VARIANT_ENV}" if forced else "best AMX-free ggml variant this CPU supports"
    return f"{name} ({how}): {' '.join(feats) or 'no SIMD extensions'}; AMX off, GGML_NATIVE off"


# ---------------------------------------------------------------- runtime

def record_path(prefix: Optional[str] = None) -> Path:
    return Path(prefix or sys.prefix) / RECORD_NAME


def installed() -> dict:
    """What run.json says about the llama.cpp build in this environment.

    The bootstrap's record (variant, CMake arguments, key) when it built the
    wheel, plus what the loaded library itself reports
    (``llama_print_system_info``: the ISA features compiled in).
    """
    out: dict = {}
    try:
        from importlib import metadata

        out["llama_cpp_python"] = metadata.version("llama_cpp_python")
    except Exception:  # noqa: BLE001 - not installed is a valid answer
        out["llama_cpp_python"] = None
        return out
    try:
        out["build"] = json.loads(record_path().read_text())
    except (OSError, ValueError):
        out["build"] = None
        out["note"] = ("llama-cpp-python was not built by tools/bootstrap.py: CPU flags unknown "
                       "(see src/slm_agent/engines/llama_build.py)")
    else:
        if out["build"].get("version") != out["llama_cpp_python"]:
            out["note"] = (f"installed llama-cpp-python {out['llama_cpp_python']} is not the "
                           f"{out['build'].get('version')} the bootstrap built")
    try:
        import llama_cpp

        out["system_info"] = llama_cpp.llama_print_system_info().decode(errors="replace").strip()
    except Exception as exc:  # noqa: BLE001
        out["system_info"] = f"unavailable: {exc}"
    return out


def main(argv: Optional[list[str]] = None) -> int:
    ap = argparse.ArgumentParser(description="Print the llama.cpp CPU build for this machine.")
    ap.add_argument("--cmake-args", action="store_true",
                    help="print only the CMAKE_ARGS value (for a manual pip install)")
    ap.add_argument("--variant", help=f"force a variant (default: ${VARIANT_ENV} or the best)")
    args = ap.parse_args(argv)
    try:
        cfg = choose(variant=args.variant)
    except ValueError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    print(cfg.cmake_env() if args.cmake_args else json.dumps(cfg.to_dict(), indent=1))
    return 0


if __name__ == "__main__":
    sys.exit(main())
