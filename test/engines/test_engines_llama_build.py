"""The llama.cpp CPU build: portable flag choice, and the installed library
provably without AMX kernels (the path that crashed on Sapphire Rapids).

The choice is tested on cpuinfo texts of other CPUs, since this machine is
only one of the CPU generations the project lands on; the installed-library
checks hold on any machine, with or without AMX in its CPU.
"""
from __future__ import annotations

import ctypes
import re
import subprocess
from pathlib import Path

import pytest

from slm_agent.engines import llama_build as lb

ROOT = Path(__file__).resolve().parents[2]

SAPPHIRE_RAPIDS = ("flags : fpu sse4_2 avx f16c fma avx2 bmi2 avx512f avx512cd avx512vl avx512dq "
                   "avx512bw avx512vbmi avx512_vnni avx512_bf16 avx_vnni amx_tile amx_int8 amx_bf16\n")
SKYLAKE_X = "flags : fpu sse4_2 avx f16c fma avx2 bmi2 avx512f avx512cd avx512vl avx512dq avx512bw\n"
EPYC_ZEN3 = "flags : fpu sse4_2 sse4a avx f16c fma avx2 bmi1 bmi2\n"
OLD_X86 = "flags : fpu sse sse2\n"
ORIN = "Features : fp asimd evtstrm aes pmull sha1 sha2 crc32 atomics fphp asimdhp cpuid asimdrdm lrcpc dcpop asimddp\n"


@pytest.mark.parametrize("cpuinfo,machine,variant", [
    (SAPPHIRE_RAPIDS, "x86_64", "zen4"),
    (SKYLAKE_X, "x86_64", "skylakex"),
    (EPYC_ZEN3, "x86_64", "haswell"),
    (OLD_X86, "x86_64", "x86-64"),
    (ORIN, "aarch64", "armv8.2_2"),
    ("Features : fp asimd\n", "aarch64", "armv8.0_1"),
])
def test_best_amx_free_variant_is_chosen(cpuinfo, machine, variant):
    cfg = lb.choose(lb.cpu_flags(cpuinfo), machine)
    assert cfg.variant == variant
    assert "-DGGML_NATIVE=OFF" in cfg.cmake_args
    assert not any(a.startswith("-DGGML_AMX") and a.endswith("=ON") for a in cfg.cmake_args)
    if machine == "x86_64":
        # every switch is explicit, so no ggml default can turn AMX or native back on
        for sw in ("AMX_TILE", "AMX_INT8", "AMX_BF16"):
            assert f"-DGGML_{sw}=OFF" in cfg.cmake_args


def test_orin_gets_its_march():
    cfg = lb.choose(lb.cpu_flags(ORIN), "aarch64")
    assert "-DGGML_CPU_ARM_ARCH=armv8.2-a+dotprod+fp16" in cfg.cmake_args


def test_sapphire_rapids_build_matches_the_flags_seen_to_work():
    """The non-AMX flag set that ran `make bench` on an AMX machine (issue 9)."""
    cfg = lb.choose(lb.cpu_flags(SAPPHIRE_RAPIDS), "x86_64")
    on = {a[len("-DGGML_"):-len("=ON")] for a in cfg.cmake_args if a.endswith("=ON")}
    assert on == {"SSE42", "AVX", "F16C", "FMA", "AVX2", "BMI2", "AVX512", "AVX512_VBMI",
                  "AVX512_VNNI", "AVX512_BF16"}


def test_key_changes_with_anything_that_changes_the_binary():
    a = lb.choose(lb.cpu_flags(EPYC_ZEN3), "x86_64")
    b = lb.choose(lb.cpu_flags(SKYLAKE_X), "x86_64")
    assert a.key() != b.key()
    assert a.key() != lb.BuildConfig(a.machine, a.variant, a.cmake_args, version="0.0.1").key()
    assert a.key() != lb.BuildConfig(a.machine, a.variant, a.cmake_args[:-1]).key()
    assert a.key() == lb.choose(lb.cpu_flags(EPYC_ZEN3), "x86_64").key()


def test_forced_variant_is_checked(monkeypatch):
    flags = lb.cpu_flags(EPYC_ZEN3)
    assert lb.choose(flags, "x86_64", variant="sse42").variant == "sse42"
    with pytest.raises(ValueError, match="lacks a feature"):
        lb.choose(flags, "x86_64", variant="skylakex")
    with pytest.raises(ValueError, match="unknown variant"):
        lb.choose(flags, "x86_64", variant="sapphirerapids")  # AMX is not offered at all
    monkeypatch.setenv(lb.VARIANT_ENV, "ivybridge")
    assert lb.choose(flags, "x86_64").variant == "ivybridge"


def test_pinned_version_matches_the_lock_file():
    lock = (ROOT / "requirements" / "lock.txt").read_text()
    assert re.search(rf"^llama_cpp_python=={re.escape(lb.LLAMA_CPP_PYTHON_VERSION)}$", lock, re.M)


def test_cli_prints_cmake_args():
    out = subprocess.run(["python3", str(Path(lb.__file__)), "--cmake-args"], capture_output=True,
                         text=True, timeout=60, check=True).stdout
    assert "-DGGML_NATIVE=OFF" in out and "AMX_INT8=OFF" in out


# ------------------------------------------------------- the installed library

def _lib_dir() -> Path:
    llama_cpp = pytest.importorskip("llama_cpp")
    return Path(llama_cpp.__file__).parent / "lib"


def _cpu_lib() -> Path:
    libs = sorted(_lib_dir().glob("libggml-cpu*.so*"))
    assert libs, f"no libggml-cpu in {_lib_dir()}"
    return libs[0]


def test_installed_cpu_library_has_no_amx_kernels():
    """ggml compiles its AMX kernels and buffer type only when __AMX_INT8__ is
    defined; their symbols in the library mean the crashing path is built in.
    Checked on the full symbol table, which a machine without AMX can read."""
    lib = _cpu_lib()
    syms = subprocess.run(["nm", "-C", str(lib)], capture_output=True, text=True, timeout=60).stdout
    if "no symbols" in syms or not syms.strip():
        syms = subprocess.run(["nm", "-D", "-C", str(lib)], capture_output=True, text=True,
                              timeout=60).stdout
    assert "ggml_cpu_has_avx2" in syms, "symbol table unreadable: the check would prove nothing"
    amx = sorted({ln.split()[-1] for ln in syms.splitlines()
                  if "amx" in ln.lower() and "ggml_cpu_has_amx" not in ln})
    assert amx == [], f"AMX code compiled into {lib.name}: {amx[:10]}"


def test_compiled_features_match_the_recorded_build():
    """The library's own compile-time feature probes agree with the variant
    the bootstrap recorded, and AMX is off."""
    lib = ctypes.CDLL(str(_cpu_lib()))
    for name in ("ggml_cpu_has_amx_int8", "ggml_cpu_has_avx2", "ggml_cpu_has_avx512"):
        getattr(lib, name).restype = ctypes.c_int
    assert lib.ggml_cpu_has_amx_int8() == 0
    info = lb.installed()
    if info.get("build") is None:
        pytest.skip("llama-cpp-python was not built by tools/bootstrap.py here: no record to compare")
    args = set(info["build"]["cmake_args"])
    if info["build"]["machine"] == "x86_64":
        assert lib.ggml_cpu_has_avx2() == int("-DGGML_AVX2=ON" in args)
        assert lib.ggml_cpu_has_avx512() == int("-DGGML_AVX512=ON" in args)
    assert "AMX_INT8 = 1" not in info["system_info"]
