"""The bootstrap stops with one clear message, before CMake, on bad interfaces
or missing build dependencies."""
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
BOOTSTRAP = ROOT / "tools" / "bootstrap.py"


@pytest.fixture
def source(tmp_path):
    for d in ("msg", "srv", "action"):
        shutil.copytree(ROOT / d, tmp_path / d)
    for f in ("CMakeLists.txt", "package.xml"):
        shutil.copy(ROOT / f, tmp_path / f)
    return tmp_path


def check(src: Path) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, str(BOOTSTRAP), "--check-only", "--source", str(src)],
                          capture_output=True, text=True, timeout=120)


def test_repository_interfaces_pass(source):
    res = check(source)
    assert res.returncode == 0, res.stderr
    assert "interfaces and build dependencies OK" in res.stdout


@pytest.mark.parametrize("text,needle", [
    ("flaot64 speed\n", "flaot64"),
    ("string name\nint32 name\n", "name"),
    ("int32 value 3 4\n", "value"),
])
def test_malformed_message_is_named(source, text, needle):
    (source / "msg" / "Broken.msg").write_text(text)
    res = check(source)
    assert res.returncode == 2
    assert "malformed interface" in res.stderr and "msg/Broken.msg" in res.stderr
    assert needle in res.stderr
    assert "CMake Error" not in res.stderr and len(res.stderr.splitlines()) < 8


def test_unknown_own_type_is_named(source):
    (source / "srv" / "Uses.srv").write_text("Waypiont goal\n---\nbool ok\n")
    res = check(source)
    assert res.returncode == 2
    assert "srv/Uses.srv" in res.stderr and "Waypiont" in res.stderr


def test_bad_file_name_is_named(source):
    (source / "msg" / "bad_name.msg").write_text("int32 x\n")
    res = check(source)
    assert res.returncode == 2 and "bad_name" in res.stderr and "CamelCase" in res.stderr


def test_undeclared_dependency_is_named(source):
    (source / "msg" / "Twisty.msg").write_text("geometry_msgs/Twist cmd\n")
    res = check(source)
    assert res.returncode == 2
    assert "geometry_msgs" in res.stderr and "find_package" in res.stderr


def test_missing_build_dependency_is_named(source):
    (source / "msg" / "Exotic.msg").write_text("nonexistent_msgs/Thing thing\n")
    cm = source / "CMakeLists.txt"
    cm.write_text(cm.read_text().replace("find_package(action_msgs REQUIRED)",
                                         "find_package(action_msgs REQUIRED)\nfind_package(nonexistent_msgs REQUIRED)"))
    res = check(source)
    assert res.returncode == 2
    assert "missing build dependency: nonexistent_msgs" in res.stderr
    assert "ros-jazzy-nonexistent-msgs" in res.stderr


# ------------------------------------------------- llama.cpp build verification

def _bootstrap_module():
    import importlib.util

    spec = importlib.util.spec_from_file_location("_bootstrap_under_test", BOOTSTRAP)
    mod = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = mod
    spec.loader.exec_module(mod)
    return mod


def _fake_python(tmp_path: Path, body: str) -> Path:
    """An interpreter stand-in that behaves like a broken llama.cpp build."""
    exe = tmp_path / "python"
    exe.write_text(f"#!/bin/sh\n{body}\n")
    exe.chmod(0o755)
    return exe


def test_smoke_test_reports_a_native_crash_with_its_signal(tmp_path):
    boot = _bootstrap_module()
    py = _fake_python(tmp_path, 'echo "ggml_backend_amx_mul_mat" >&2; kill -SEGV $$')
    ok, what = boot.smoke_test_llama(py, tmp_path / "logs")
    assert not ok
    assert "crashed with signal 11" in what and "repack buffers" in what
    assert "ggml_backend_amx_mul_mat" in what  # the last lines name where it died
    assert (tmp_path / "logs" / "llama_smoke.log").exists()


def test_smoke_test_refuses_kernels_that_disagree(tmp_path):
    boot = _bootstrap_module()
    result = ('{"repack": {"tokens": [1, 2, 3], "text": " Paris"}, '
              '"reference": {"tokens": [1, 9, 9], "text": " bananas"}}')
    py = _fake_python(tmp_path, f"echo 'SMOKE-STEP repack ok'; echo 'SMOKE-RESULT {result}'")
    ok, what = boot.smoke_test_llama(py, tmp_path / "logs")
    assert not ok and "disagree" in what and "bananas" in what


def test_smoke_test_passes_on_the_installed_build():
    """The real check set-up runs, on this machine's venv."""
    venv_py = ROOT / ".venv" / "bin" / "python"
    if not venv_py.exists():
        pytest.skip("no .venv: set-up has not run here")
    boot = _bootstrap_module()
    ok, what = boot.smoke_test_llama(venv_py, ROOT / "build" / "bootstrap")
    assert ok, what
