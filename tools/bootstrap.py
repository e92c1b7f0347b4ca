#!/usr/bin/env python3
"""Set up slm_agent on a machine without ROS: one idempotent command.

Steps (each skipped when its inputs have not changed since the last success,
so a second run takes seconds):

1. create ``.venv`` with Python 3.11;
2. install the pinned ROS 2 Jazzy wheels and other dependencies
   (``requirements/*.txt`` constrained by ``requirements/lock.txt``);
   llama-cpp-python is built here with the portable, AMX-free CPU flags that
   ``src/slm_agent/engines/llama_build.py`` chooses for this CPU, into a wheel
   cache keyed by those flags (never pip's cache, which does not know them);
3. check the interface definitions and their build dependencies *before*
   CMake runs, so a typo or a missing package is reported in one line naming
   the file or package instead of a CMake wall of text;
4. build ``msg/ srv/ action/`` with CMake into the venv prefix, correcting the
   wheels' exported Python include dirs (``tools/cmake/fix_wheel_python_includes.cmake``);
5. install the Python package (editable, so a developer's edits are live);
6. smoke-test the llama.cpp build in a subprocess: load the bundled model and
   generate a few tokens with and without the weight-repack buffers; a crash
   rebuilds once with the most conservative variant, and if that fails too,
   set-up stops naming the cause and the fix.

Run with any Python 3 (it re-runs the checks inside the venv). Exit status is
non-zero with a one-paragraph message on failure; full logs are under
``build/bootstrap/``.
"""
from __future__ import annotations

import argparse
import dataclasses
import hashlib
import importlib.util
import json
import os
import re
import shutil
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
PY_VERSION = "3.11"
LLAMA_BUILD_FILE = ROOT / "src" / "slm_agent" / "engines" / "llama_build.py"
#: wheels built by this script, one folder per BuildConfig.key()
WHEEL_CACHE = Path(os.environ.get("SLM_AGENT_WHEEL_CACHE")
                   or Path.home() / ".cache" / "slm_agent" / "wheels")

# Build-time packages that the interfaces need from the wheels' prefix
# (several are not declared as dependencies of the wheels themselves).
CMAKE_PACKAGES = [
    "ament_cmake", "ament_cmake_core", "ament_cmake_python", "ament_cmake_ros",
    "ament_cmake_gmock", "ament_cmake_gtest", "ament_cmake_pytest",
    "ament_cmake_include_directories", "rosidl_default_generators",
    "rosidl_core_generators", "python_cmake_module",
    "builtin_interfaces", "std_msgs", "action_msgs",
]
PYTHON_BUILD_MODULES = ["catkin_pkg", "em", "lark", "numpy", "rosidl_adapter", "rosidl_parser"]
INTERFACE_DIRS = {"msg": ".msg", "srv": ".srv", "action": ".action"}
PRIMITIVES = {
    "bool", "byte", "char", "float32", "float64", "int8", "uint8", "int16", "uint16",
    "int32", "uint32", "int64", "uint64", "string", "wstring",
}


class BootstrapError(Exception):
    """A failure with a message a user can act on."""


def log(msg: str) -> None:
    print(f"[bootstrap] {msg}", flush=True)


def digest(paths: list[Path], extra: str = "") -> str:
    h = hashlib.sha256(extra.encode())
    for p in sorted(paths):
        h.update(str(p.relative_to(ROOT) if p.is_relative_to(ROOT) else p).encode())
        h.update(p.read_bytes() if p.is_file() else b"<missing>")
    return h.hexdigest()


class Stamps:
    """Input hashes of the steps that last succeeded, kept inside the venv."""

    def __init__(self, venv: Path) -> None:
        self.path = venv / ".slm_agent_bootstrap.json"
        try:
            self.data = json.loads(self.path.read_text())
        except (OSError, ValueError):
            self.data = {}

    def fresh(self, step: str, value: str) -> bool:
        return self.data.get(step) == value

    def done(self, step: str, value: str) -> None:
        self.data[step] = value
        self.path.write_text(json.dumps(self.data, indent=1))


def run_logged(cmd: list[str], logfile: Path, env: dict | None = None, cwd: Path | None = None) -> int:
    logfile.parent.mkdir(parents=True, exist_ok=True)
    with logfile.open("a") as fh:
        fh.write(f"\n$ {' '.join(cmd)}\n")
        fh.flush()
        return subprocess.call(cmd, stdout=fh, stderr=subprocess.STDOUT, env=env, cwd=cwd)


def tail(logfile: Path, n: int = 15) -> str:
    try:
        return "\n".join(logfile.read_text(errors="replace").splitlines()[-n:])
    except OSError:
        return ""


# ---------------------------------------------------------------- venv + deps

def find_python() -> str:
    for cand in (os.environ.get("SLM_AGENT_PYTHON"), f"python{PY_VERSION}", sys.executable):
        if not cand:
            continue
        exe = shutil.which(cand) or cand
        try:
            out = subprocess.run([exe, "-c", "import sys;print('%d.%d'%sys.version_info[:2])"],
                                 capture_output=True, text=True, timeout=30).stdout.strip()
        except (OSError, subprocess.SubprocessError):
            continue
        if out == PY_VERSION:
            return exe
    raise BootstrapError(
        f"Python {PY_VERSION} not found: the ROS 2 Jazzy wheels on PyPI are built for CPython "
        f"{PY_VERSION}. Install it (e.g. apt-get install python{PY_VERSION} python{PY_VERSION}-venv "
        "python3-dev) or point SLM_AGENT_PYTHON at one.")


def ensure_venv(venv: Path) -> Path:
    py = venv / "bin" / "python"
    if py.exists():
        return py
    exe = find_python()
    log(f"creating {venv} with {exe}")
    subprocess.check_call([exe, "-m", "venv", str(venv)])
    return py


def install_dependencies(py: Path, stamps: Stamps, logdir: Path) -> None:
    req = ROOT / "requirements"
    files = sorted(req.glob("*.txt"))
    key = digest(files, extra=PY_VERSION)
    if stamps.fresh("dependencies", key):
        return
    log("installing pinned dependencies")
    pip = [str(py), "-m", "pip", "install", "--disable-pip-version-check", "-q"]
    lock = ["-c", str(req / "lock.txt")]
    steps = [
        ("pip, setuptools, wheel", pip + ["--upgrade", "pip", "setuptools", "wheel"] + lock),
        ("ROS 2 Jazzy wheels (requirements/ros.txt)", pip + lock + ["-r", str(req / "ros.txt")]),
        ("runtime and test packages (requirements/base.txt)", pip + lock + ["-r", str(req / "base.txt")]),
        # Installed without their declared dependencies: bfcl-eval's pull in
        # every provider SDK; what its checkers really import is in base.txt.
        ("benchmarks, no deps (requirements/nodeps.txt)",
         pip + lock + ["--no-deps", "-r", str(req / "nodeps.txt")]),
    ]
    logfile = logdir / "pip.log"
    for label, cmd in steps:
        t0 = time.monotonic()
        if run_logged(cmd, logfile) != 0:
            raise BootstrapError(f"pip failed installing {label}; see {logfile}:\n{tail(logfile)}")
        log(f"  {label}: {time.monotonic() - t0:.0f} s")
    stamps.done("dependencies", key)


# ------------------------------------------------------------- llama.cpp

def llama_build_module():
    """``src/slm_agent/engines/llama_build.py`` loaded by path (stdlib only),
    so the decision lives in the package and set-up uses the same code."""
    spec = importlib.util.spec_from_file_location("_slm_llama_build", LLAMA_BUILD_FILE)
    mod = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = mod  # dataclasses look their module up by name
    spec.loader.exec_module(mod)
    return mod


def llama_config(variant: str | None = None):
    lb = llama_build_module()
    try:
        cfg = lb.choose(variant=variant)
    except ValueError as exc:
        raise BootstrapError(str(exc)) from exc
    # the venv's Python, not the one running phase 1
    return dataclasses.replace(cfg, python_tag="cp" + PY_VERSION.replace(".", ""))


def llama_wheel(py: Path, cfg, logdir: Path) -> Path:
    """The wheel for ``cfg``: from our cache, or built now with its flags."""
    folder = WHEEL_CACHE / cfg.key()
    found = sorted(folder.glob("llama_cpp_python-*.whl"))
    if found:
        return found[-1]
    log(f"building llama-cpp-python {cfg.version} for CPU variant '{cfg.variant}' "
        f"(~5-10 min on 2 cores; log: {logdir / 'llama_build.log'})")
    log(f"  {cfg.reason}")
    tmp = WHEEL_CACHE / f".tmp-{cfg.key()}-{os.getpid()}"
    shutil.rmtree(tmp, ignore_errors=True)
    tmp.mkdir(parents=True)
    env = dict(os.environ, CMAKE_ARGS=cfg.cmake_env(), FORCE_CMAKE="1",
               CMAKE_BUILD_PARALLEL_LEVEL=str(max(1, os.cpu_count() or 1)))
    cmd = [str(py), "-m", "pip", "wheel", "--disable-pip-version-check", "--no-deps",
           "--no-cache-dir", "--no-binary", "llama-cpp-python", "-w", str(tmp),
           f"llama-cpp-python=={cfg.version}"]
    logfile = logdir / "llama_build.log"
    t0 = time.monotonic()
    if run_logged(cmd, logfile, env=env) != 0:
        shutil.rmtree(tmp, ignore_errors=True)
        raise BootstrapError(f"building llama-cpp-python failed (flags: {cfg.cmake_env()}); "
                             f"see {logfile}:\n{tail(logfile)}")
    wheels = sorted(tmp.glob("llama_cpp_python-*.whl"))
    if not wheels:
        raise BootstrapError(f"pip wheel produced no llama_cpp_python wheel in {tmp}; see {logfile}")
    folder.mkdir(parents=True, exist_ok=True)
    target = folder / wheels[0].name
    os.replace(wheels[0], target)  # atomic: a half-built wheel is never in the cache
    shutil.rmtree(tmp, ignore_errors=True)
    log(f"  built in {time.monotonic() - t0:.0f} s: {target}")
    return target


def install_llama(py: Path, venv: Path, stamps: Stamps, logdir: Path, variant: str | None = None,
                  force: bool = False) -> dict:
    """Install the wheel for this CPU's config unless it is already installed;
    returns the record written to the venv."""
    cfg = llama_config(variant)
    record_file = venv / llama_build_module().RECORD_NAME
    try:
        record = json.loads(record_file.read_text())
    except (OSError, ValueError):
        record = {}
    if not force and record.get("key") == cfg.key() and stamps.fresh("llama", cfg.key()):
        return record
    wheel = llama_wheel(py, cfg, logdir)
    logfile = logdir / "pip.log"
    pip = [str(py), "-m", "pip", "install", "--disable-pip-version-check", "-q"]
    for cmd in (pip + ["--force-reinstall", "--no-deps", str(wheel)],
                pip + ["-c", str(ROOT / "requirements" / "lock.txt"), f"{wheel}[server]"]):
        if run_logged(cmd, logfile) != 0:
            raise BootstrapError(f"installing {wheel.name} failed; see {logfile}:\n{tail(logfile)}")
    record = dict(cfg.to_dict(), wheel=str(wheel),
                  wheel_sha256=hashlib.sha256(wheel.read_bytes()).hexdigest(),
                  installed_at=time.strftime("%Y-%m-%dT%H:%M:%S%z"))
    record_file.write_text(json.dumps(record, indent=1))
    stamps.done("llama", cfg.key())
    stamps.done("llama_smoke", "")  # a new build is smoke-tested again
    log(f"  llama-cpp-python {cfg.version} ({cfg.variant}) installed")
    return record


SMOKE_CODE = r"""
import json, sys
import llama_cpp
from slm_agent.profiles import DEFAULT_PROFILE, load_profile
path = load_profile(DEFAULT_PROFILE).resolved_model_path()
out = {}
for extra in (True, False):
    llm = llama_cpp.Llama(model_path=path, n_ctx=256, n_threads=2, verbose=False)
    if not extra:  # reload without the weight-repack buffers (the reference kernels)
        del llm
        import slm_agent.engines.llama_cpp as eng
        with eng._model_params_patched(use_extra_bufts=False):
            llm = llama_cpp.Llama(model_path=path, n_ctx=256, n_threads=2, verbose=False)
    toks = list(llm.tokenize(b"The capital of France is"))
    gen = []
    for t in llm.generate(toks, temp=0.0, top_k=1):
        gen.append(int(t))
        if len(gen) == 6:
            break
    out["repack" if extra else "reference"] = {"tokens": gen,
                                               "text": llm.detokenize(gen).decode(errors="replace")}
    print("SMOKE-STEP", "repack" if extra else "reference", "ok", flush=True)
print("SMOKE-RESULT " + json.dumps(out), flush=True)
"""


def smoke_test_llama(py: Path, logdir: Path) -> tuple[bool, str]:
    """Load the bundled model in a subprocess and generate greedily with and
    without the repack buffers. Returns (ok, what happened)."""
    logfile = logdir / "llama_smoke.log"
    env = dict(os.environ, OMP_WAIT_POLICY="PASSIVE", PYTHONFAULTHANDLER="1")
    try:
        res = subprocess.run([str(py), "-c", SMOKE_CODE], capture_output=True, text=True,
                             timeout=300, env=env)
    except subprocess.TimeoutExpired:
        return False, "the smoke test hung for 300 s"
    logfile.parent.mkdir(parents=True, exist_ok=True)
    logfile.write_text(res.stdout + "\n--- stderr ---\n" + res.stderr)
    if res.returncode != 0:
        step = "loading the model with the weight-repack buffers"
        if "SMOKE-STEP repack ok" in res.stdout:
            step = "generating without the repack buffers (reference kernels)"
        how = (f"crashed with signal {-res.returncode}" if res.returncode < 0
               else f"exited with status {res.returncode}")
        last = "\n".join((res.stderr or res.stdout).strip().splitlines()[-6:])
        return False, f"{step} {how} (log: {logfile}):\n{last}"
    line = next((ln for ln in res.stdout.splitlines() if ln.startswith("SMOKE-RESULT ")), "")
    out = json.loads(line.split(" ", 1)[1])
    rep, ref = out["repack"], out["reference"]
    if not rep["tokens"]:
        return False, "the model generated no tokens"
    if rep["tokens"][:3] != ref["tokens"][:3]:
        return False, (f"the repack kernels disagree with the reference kernels on the first greedy "
                       f"tokens: {rep['text']!r} vs {ref['text']!r} (log: {logfile})")
    return True, f"'The capital of France is' -> {rep['text']!r}"


def ensure_llama(py: Path, venv: Path, stamps: Stamps, logdir: Path) -> None:
    """Install and verify llama-cpp-python; on a crash rebuild once with the
    most conservative variant of this architecture, then give up clearly."""
    lb = llama_build_module()
    record = install_llama(py, venv, stamps, logdir)
    cpu_key = hashlib.sha256(" ".join(sorted(lb.cpu_flags())).encode()).hexdigest()[:16]
    smoke_key = f"{record.get('key')}:{cpu_key}"
    if stamps.fresh("llama_smoke", smoke_key):
        return
    t0 = time.monotonic()
    ok, what = smoke_test_llama(py, logdir)
    if ok:
        log(f"llama.cpp smoke test passed in {time.monotonic() - t0:.0f} s ({record.get('variant')}): {what}")
        stamps.done("llama_smoke", smoke_key)
        return
    fallback = "haswell" if "haswell" in lb.variants_for(record.get("machine", "")) else None
    usable = lb.variants_for(record.get("machine", ""))
    if fallback is None or record.get("variant") == fallback:
        fallback = usable[-1]
    try:
        lb.choose(variant=fallback)
    except ValueError:
        fallback = usable[-1]
    first = what
    if record.get("variant") != fallback:
        log(f"llama.cpp smoke test FAILED with variant '{record.get('variant')}': {what}")
        log(f"rebuilding with the conservative variant '{fallback}'")
        record = install_llama(py, venv, stamps, logdir, variant=fallback, force=True)
        ok, what = smoke_test_llama(py, logdir)
        if ok:
            log(f"llama.cpp smoke test passed with '{fallback}': {what}. To keep this build, "
                f"set {lb.VARIANT_ENV}={fallback} for future set-ups.")
            stamps.done("llama_smoke", f"{record.get('key')}:{cpu_key}")
            return
    raise BootstrapError(
        f"llama.cpp does not run on this machine: the freshly built llama-cpp-python "
        f"({record.get('variant')}, flags {' '.join(record.get('cmake_args', []))}) failed its smoke "
        f"test: {what}" + (f" (first attempt: {first})" if first != what else "") +
        f". The venv was not marked ready. Fixes: if only the repack step failed, set "
        f"'cpu: {{use_extra_bufts: false}}' in the model profile; otherwise force a more "
        f"conservative build with {lb.VARIANT_ENV}=<variant> (one of {', '.join(usable)}) and rerun "
        f"set-up; the full output is in {logdir / 'llama_smoke.log'}.")


# ------------------------------------------------------- interface preflight

def interface_files(source: Path) -> list[Path]:
    return [p for d, ext in INTERFACE_DIRS.items() for p in sorted((source / d).glob(f"*{ext}"))]


def cmake_find_packages(source: Path) -> list[str]:
    text = (source / "CMakeLists.txt").read_text()
    return re.findall(r"find_package\(\s*(\w+)", text)


def check_interfaces(source: Path, prefix: Path) -> None:
    """Parse every definition with rosidl_adapter and check what it references.

    Runs inside the venv (it imports the ROS wheels' parser). Raises
    BootstrapError naming the file and the problem.
    """
    from rosidl_adapter.parser import (  # noqa: PLC0415 - only importable inside the venv
        parse_action_string, parse_message_string, parse_service_string)

    pkg = "slm_agent"
    files = interface_files(source)
    if not files:
        raise BootstrapError(f"no interface definitions found under {source}/msg, srv, action")
    own = {p.stem for p in files if p.suffix == ".msg"}
    problems: list[str] = []
    referenced: dict[str, str] = {}
    for path in files:
        rel = path.relative_to(source)
        if not re.fullmatch(r"[A-Z][A-Za-z0-9]*", path.stem):
            problems.append(f"{rel}: interface names must be CamelCase (e.g. ToolCall), got '{path.stem}'")
            continue
        text = path.read_text()
        try:
            if path.suffix == ".msg":
                specs = [parse_message_string(pkg, path.stem, text)]
            elif path.suffix == ".srv":
                srv = parse_service_string(pkg, path.stem, text)
                specs = [srv.request, srv.response]
            else:
                act = parse_action_string(pkg, path.stem, text)
                specs = [act.goal, act.result, act.feedback]
        except Exception as exc:  # the parser raises several unrelated types
            problems.append(f"{rel}: {type(exc).__name__}: {exc}")
            continue
        for spec in specs:
            for field in spec.fields:
                t = field.type
                if t.is_primitive_type():
                    continue
                other = t.pkg_name or pkg
                if other == pkg:
                    if t.type not in own:
                        problems.append(f"{rel}: field '{field.name}' uses {t.type}, "
                                        f"which is not defined in msg/")
                else:
                    referenced.setdefault(other, f"{rel} (field '{field.name}')")
    if problems:
        raise BootstrapError("malformed interface definition(s):\n  " + "\n  ".join(problems))
    declared = set(cmake_find_packages(source))
    for other, where in sorted(referenced.items()):
        if other not in declared:
            raise BootstrapError(
                f"{where} uses package '{other}', which CMakeLists.txt does not find_package() "
                f"and rosidl_generate_interfaces() does not list in DEPENDENCIES")
    needed = sorted(set(CMAKE_PACKAGES) | declared | set(referenced))
    missing = [n for n in needed if not (prefix / "share" / n / "cmake").is_dir()]
    if missing:
        wheels = " ".join("ros-jazzy-" + n.replace("_", "-") for n in missing)
        raise BootstrapError(
            f"missing build dependency: {', '.join(missing)} (no share/<pkg>/cmake under {prefix}). "
            f"Install with: {prefix}/bin/python -m pip install {wheels}  "
            "(and add it to requirements/ros.txt)")
    for mod in PYTHON_BUILD_MODULES:
        try:
            __import__(mod)
        except ImportError as exc:
            raise BootstrapError(f"missing build dependency: Python module '{mod}' ({exc})") from exc
    for tool in ("cmake", "cc", "c++"):
        if shutil.which(tool) is None:
            raise BootstrapError(f"missing build tool: '{tool}' is not on PATH "
                                 "(apt-get install cmake build-essential)")


# ----------------------------------------------------------- interface build

CMAKE_ERROR_PATTERNS = [
    r"Could not find a package configuration file provided by \"(\w+)\"",
    r"CMake Error.*",
    r"error: .*",
    r"Error: .*",
    r"ModuleNotFoundError: .*",
]


def summarize_cmake_failure(logfile: Path) -> str:
    text = logfile.read_text(errors="replace")
    m = re.search(CMAKE_ERROR_PATTERNS[0], text)
    if m:
        return (f"missing build dependency: CMake package '{m.group(1)}' "
                f"(pip install ros-jazzy-{m.group(1).replace('_', '-')})")
    for pat in CMAKE_ERROR_PATTERNS[1:]:
        hits = re.findall(pat, text)
        if hits:
            return hits[0].strip()[:400]
    return tail(logfile, 8)


def build_interfaces(py: Path, venv: Path, stamps: Stamps, logdir: Path, source: Path,
                     force: bool) -> None:
    inputs = interface_files(source) + [
        source / "CMakeLists.txt", source / "package.xml",
        ROOT / "tools" / "cmake" / "fix_wheel_python_includes.cmake",
    ] + sorted((source / "scripts").glob("*"))
    key = digest(inputs, extra=str(venv))
    site = venv / "lib" / f"python{PY_VERSION}" / "site-packages" / "slm_agent"
    generated_ok = (site / "msg" / "__init__.py").exists()
    if not force and generated_ok and stamps.fresh("interfaces", key):
        return
    builddir = ROOT / "build" / "interfaces"
    logfile = logdir / "cmake.log"
    logfile.unlink(missing_ok=True)
    log(f"building interfaces ({len(interface_files(source))} definitions) with CMake; log: {logfile}")
    env = dict(os.environ)
    env.pop("AMENT_PREFIX_PATH", None)  # a sourced ROS install must not mix with the wheels
    env.pop("CMAKE_PREFIX_PATH", None)
    configure = [
        "cmake", "-S", str(source), "-B", str(builddir),
        f"-DCMAKE_PREFIX_PATH={venv}", f"-DCMAKE_INSTALL_PREFIX={venv}",
        f"-DPython3_EXECUTABLE={py}", "-DSLM_AGENT_INSTALL_PYTHON=OFF", "-DBUILD_TESTING=OFF",
        f"-DCMAKE_PROJECT_INCLUDE={ROOT / 'tools' / 'cmake' / 'fix_wheel_python_includes.cmake'}",
        "-DCMAKE_BUILD_TYPE=Release",
    ]
    jobs = str(max(1, os.cpu_count() or 1))
    for cmd in (configure, ["cmake", "--build", str(builddir), "-j", jobs],
                ["cmake", "--install", str(builddir)]):
        if run_logged(cmd, logfile, env=env) != 0:
            raise BootstrapError(f"interface build failed at '{' '.join(cmd[:2])}': "
                                 f"{summarize_cmake_failure(logfile)}\n(full log: {logfile})")
    stamps.done("interfaces", key)


def install_package(py: Path, stamps: Stamps, logdir: Path) -> None:
    key = digest([ROOT / "setup.py", ROOT / "setup.cfg"])
    if stamps.fresh("package", key):
        return
    log("installing slm_agent (editable)")
    logfile = logdir / "pip.log"
    cmd = [str(py), "-m", "pip", "install", "-q", "--no-deps", "--no-build-isolation", "-e", str(ROOT)]
    if run_logged(cmd, logfile) != 0:
        raise BootstrapError(f"pip install -e . failed; see {logfile}:\n{tail(logfile)}")
    stamps.done("package", key)


def verify_import(py: Path) -> None:
    code = ("import slm_agent.msg, slm_agent.srv, slm_agent.action, slm_agent.engines.base;"
            "slm_agent.msg.ToolCall(); print('ok')")
    res = subprocess.run([str(py), "-c", code], capture_output=True, text=True)
    if res.returncode != 0 or "ok" not in res.stdout:
        raise BootstrapError("the built package does not import:\n" + (res.stderr or res.stdout)[-1500:])


# ---------------------------------------------------------------------- main

def in_venv(venv: Path) -> bool:
    return Path(sys.prefix).resolve() == venv.resolve()


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--venv", type=Path, default=ROOT / ".venv", help="virtual environment (default: .venv)")
    ap.add_argument("--source", type=Path, default=ROOT,
                    help="package source with msg/ srv/ action/ CMakeLists.txt (default: the repo)")
    ap.add_argument("--check-only", action="store_true",
                    help="only validate interface definitions and build dependencies")
    ap.add_argument("--force", action="store_true", help="rebuild the interfaces even if unchanged")
    args = ap.parse_args(argv)
    venv = args.venv.resolve()
    source = args.source.resolve()
    logdir = ROOT / "build" / "bootstrap"
    t0 = time.monotonic()
    try:
        if not in_venv(venv):
            # Phase 1 with whatever Python runs us: the venv and its packages.
            py = ensure_venv(venv)
            if not args.check_only:
                install_dependencies(py, Stamps(venv), logdir)
                install_llama(py, venv, Stamps(venv), logdir)
            # Phase 2 inside the venv, where the ROS wheels' parser is importable.
            return subprocess.call([str(py), str(Path(__file__).resolve()), *(argv if argv is not None else sys.argv[1:])])
        py = venv / "bin" / "python"
        check_interfaces(source, venv)
        if args.check_only:
            log("interfaces and build dependencies OK")
            return 0
        stamps = Stamps(venv)
        build_interfaces(py, venv, stamps, logdir, source, args.force)
        install_package(py, stamps, logdir)
        verify_import(py)
        ensure_llama(py, venv, Stamps(venv), logdir)
    except BootstrapError as exc:
        print(f"[bootstrap] ERROR: {exc}", file=sys.stderr, flush=True)
        return 2
    log(f"ready in {time.monotonic() - t0:.1f} s: {venv}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
