"""Test-session environment: DDS confined to this machine, ROS files in a temp dir.

Set at import so every node process a test starts inherits it. Each test
module also gets a DDS domain of its own (``_module_domain``): a node process
that outlives its module (a hung child, a kill -9 test's orphan) can then not
answer another module's goals or publish into its bag, and a developer's
session and a CI run on the same machine do not see each other.
"""
import itertools
import os
import random
import tempfile
from pathlib import Path

import pytest

import crash_isolation

_ROS_TMP = tempfile.mkdtemp(prefix="slm_agent_test_ros_")
os.environ.setdefault("ROS_AUTOMATIC_DISCOVERY_RANGE", "LOCALHOST")
os.environ.setdefault("ROS_HOME", _ROS_TMP)
os.environ.setdefault("ROS_LOG_DIR", os.path.join(_ROS_TMP, "log"))
os.environ.setdefault("RMW_IMPLEMENTATION", "rmw_fastrtps_cpp")
os.environ.setdefault("PYTHONUNBUFFERED", "1")

# Domains 1..100 (Fast DDS maps each to its own ports); a random start so two
# sessions on one machine are unlikely to walk the same sequence in step.
_DOMAINS = itertools.count(random.Random(os.getpid()).randint(0, 99))


@pytest.fixture(scope="module", autouse=True)
def _module_domain():
    """Runs before the module's own fixtures (autouse), so their contexts and
    child processes all use this module's domain."""
    previous = os.environ.get("ROS_DOMAIN_ID")
    os.environ["ROS_DOMAIN_ID"] = str(next(_DOMAINS) % 100 + 1)
    yield
    if previous is None:
        os.environ.pop("ROS_DOMAIN_ID", None)
    else:
        os.environ["ROS_DOMAIN_ID"] = previous


def pytest_configure(config):
    """Modules marked ``isolated`` (real models loaded in-process) run in a
    child pytest, so a native crash fails one test, not the run."""
    crash_isolation.register(config)


# ------------------------------------------------------------------ fast / slow (issue 22)
TEST_DIR = Path(__file__).resolve().parent
#: directories whose every test starts ROS node processes (an interpreter, rclpy and DDS
#: discovery per node: seconds each on 2 cores): marked ``ros_procs`` and ``slow``
ROS_PROC_DIRS = ("bench_ros", "nodes")
#: other modules left out of ``make test-fast``, each with why (measured with --durations)
SLOW_MODULES = {
    "test_interfaces_cross_process.py": "a peer interpreter with rclpy per interface",
    "test_crash_isolation.py": "crashes and restarts child pytest processes",
    "test_bench_ros_tool_server.py": "a BFCL tool-server node process",
    "test_bench_tau2.py": "imports tau2 (~20 s on 2 loaded cores)",
    "test_bench_tau2_judge.py": "imports tau2 and loads a model",
    "test_bench_grid.py": "runs grids of bench runs with node processes",
    "test_bench_write_failures.py": "bench runs through the real CLI",
    "test_training_lora.py": "fine-tunes a model",
    "test_llm_to_slm_loop.py": "bench runs through the CLI, fine-tunes and evaluates a model",
    "test_bootstrap.py": "runs the bootstrap in fresh interpreters",
}


@pytest.hookimpl(tryfirst=True)   # before -m deselects: the marks must be there to select on
def pytest_collection_modifyitems(config, items):
    """``slow`` and ``ros_procs`` set by directory, module or the ``isolated`` mark (a real
    model loaded in-process), so no test is marked by hand and a new test in a slow place
    is slow too."""
    for item in items:
        try:
            rel = Path(str(item.fspath)).resolve().relative_to(TEST_DIR)
        except ValueError:
            continue
        if rel.parts[0] in ROS_PROC_DIRS:
            item.add_marker(pytest.mark.ros_procs)
            item.add_marker(pytest.mark.slow)
        elif rel.name in SLOW_MODULES or item.get_closest_marker("isolated") is not None:
            item.add_marker(pytest.mark.slow)
