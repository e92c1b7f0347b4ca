"""A native crash in an ``isolated`` test fails that test with its signal and
the last lines of its output, and the rest of the suite still runs.

Runs an inner pytest session over a small test tree that uses this suite's
own plugin (test/crash_isolation.py): one module whose tests abort, segfault
and pass, and a plain module after it.
"""
from __future__ import annotations

import os
import subprocess
import sys
import textwrap
from pathlib import Path

TEST_DIR = Path(__file__).resolve().parent

CRASHING = '''
import ctypes
import os
import sys

import pytest

pytestmark = pytest.mark.isolated

@pytest.fixture(scope="module")
def loaded():
    return {"pid": os.getpid()}

def test_first_passes(loaded):
    # runs in the child pytest, which reports back through this file
    assert os.environ.get("SLM_AGENT_ISOLATION_REPORTS") and loaded["pid"] == os.getpid()

def test_aborts(loaded):
    print("about to abort in a fake engine", flush=True)
    os.abort()

def test_after_abort_runs(loaded):
    assert loaded["pid"] == os.getpid()

def test_segfaults():
    print("fake engine dereferences NULL", flush=True)
    ctypes.string_at(0)

def test_last_in_module_runs():
    assert True

def test_plain_failure_is_reported_normally():
    assert 1 == 2, "an ordinary failure"
'''

PLAIN = '''
def test_next_module_runs():
    assert True
'''


def test_native_crash_fails_one_test_and_the_suite_goes_on(tmp_path: Path) -> None:
    (tmp_path / "conftest.py").write_text(textwrap.dedent(f'''
        import sys
        sys.path.insert(0, {str(TEST_DIR)!r})
        import crash_isolation

        def pytest_configure(config):
            crash_isolation.register(config)
    '''))
    (tmp_path / "test_a_crashing.py").write_text(CRASHING)
    (tmp_path / "test_b_plain.py").write_text(PLAIN)
    (tmp_path / "pytest.ini").write_text("[pytest]\n")
    env = dict(os.environ)
    env.pop("SLM_AGENT_ISOLATION_REPORTS", None)
    res = subprocess.run([sys.executable, "-m", "pytest", "-p", "no:cacheprovider", "-rA", str(tmp_path)],
                         cwd=tmp_path, capture_output=True, text=True, timeout=300, env=env)
    out = res.stdout + res.stderr
    assert res.returncode == 1, out
    assert "3 failed, 4 passed" in out, out
    assert "FAILED test_a_crashing.py::test_aborts" in out
    assert "crashed with SIGABRT (signal 6) while running this test" in out
    assert "about to abort in a fake engine" in out  # the child's last lines are in the report
    assert "FAILED test_a_crashing.py::test_segfaults" in out
    assert "crashed with SIGSEGV (signal 11)" in out
    assert "fake engine dereferences NULL" in out
    assert "Fatal Python error" in out  # faulthandler's trace from the child
    assert "an ordinary failure" in out
    for name in ("test_first_passes", "test_after_abort_runs", "test_last_in_module_runs"):
        assert f"PASSED test_a_crashing.py::{name}" in out, out
    assert "PASSED test_b_plain.py::test_next_module_runs" in out
