"""Test-session environment: DDS confined to this machine, ROS files in a temp dir.

Set at import so every node process a test starts inherits it. A random
domain id keeps a developer's session and a CI run on the same machine from
seeing each other's topics.
"""
import os
import random
import tempfile

_ROS_TMP = tempfile.mkdtemp(prefix="slm_agent_test_ros_")
os.environ.setdefault("ROS_AUTOMATIC_DISCOVERY_RANGE", "LOCALHOST")
os.environ.setdefault("ROS_HOME", _ROS_TMP)
os.environ.setdefault("ROS_LOG_DIR", os.path.join(_ROS_TMP, "log"))
os.environ.setdefault("RMW_IMPLEMENTATION", "rmw_fastrtps_cpp")
os.environ.setdefault("ROS_DOMAIN_ID", str(random.Random(os.getpid()).randint(1, 100)))
os.environ.setdefault("PYTHONUNBUFFERED", "1")
