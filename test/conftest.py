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
