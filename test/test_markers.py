"""The fast loop's markers (issue 22): ``slow`` and ``ros_procs`` are set by directory,
module or the ``isolated`` mark in ``conftest.py``, so ``make test-fast`` (``-m "not slow"``)
leaves out every test that starts ROS node processes or loads a real model."""
import subprocess
import sys
from pathlib import Path

HERE = Path(__file__).resolve().parent


def _root_conftest(config):
    """test/conftest.py as pytest loaded it (``import conftest`` may find a subdirectory's)."""
    return next(p for p in config.pluginmanager.get_plugins()
                if Path(getattr(p, "__file__", "") or "").resolve() == HERE / "conftest.py")


def _collected(*args: str) -> list[str]:
    out = subprocess.run([sys.executable, "-m", "pytest", "--collect-only", "-q", "-p", "no:cacheprovider", *args],
                         capture_output=True, text=True, cwd=HERE.parent, timeout=300)
    assert out.returncode in (0, 5), out.stdout[-2000:] + out.stderr[-2000:]   # 5: nothing selected
    return [line for line in out.stdout.splitlines() if "::" in line]


def test_every_slow_module_named_exists(pytestconfig):
    """A renamed module would silently fall back into the fast loop."""
    conftest = _root_conftest(pytestconfig)
    names = {p.name for p in HERE.rglob("test_*.py")}
    assert set(conftest.SLOW_MODULES) <= names, set(conftest.SLOW_MODULES) - names
    assert all((HERE / d).is_dir() for d in conftest.ROS_PROC_DIRS)


def test_ros_process_and_real_model_tests_are_slow():
    ros = [str(HERE / "nodes"), str(HERE / "bench" / "test_bench_tau2_user.py")]
    assert _collected(*ros, "-m", "ros_procs"), "test/nodes has no ros_procs test"
    assert _collected(*ros, "-m", "not slow") == [], "a node-process or real-model test is in the fast loop"
    fast = _collected(str(HERE / "test_settings.py"), "-m", "not slow")
    assert fast, "a plain module is not in the fast loop"
