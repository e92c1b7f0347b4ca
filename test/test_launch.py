"""The launch file: executables it names are declared (always) and installed
(where launch_ros exists, i.e. on a ROS 2 install)."""
import ast
import importlib.util
import os
import stat
from pathlib import Path

import pytest

from slm_agent.cli import NODES

ROOT = Path(__file__).resolve().parents[1]
LAUNCH = ROOT / "launch" / "bench.launch.py"


def named_executables() -> set[str]:
    tree = ast.parse(LAUNCH.read_text())
    return {kw.value.value for node in ast.walk(tree) if isinstance(node, ast.Call)
            for kw in node.keywords
            if kw.arg == "executable" and isinstance(kw.value, ast.Constant)}


def test_named_executables_are_declared():
    names = named_executables()
    assert names, "the launch file names no node executables"
    for exe in names:
        script = ROOT / "scripts" / exe
        assert script.is_file(), f"{exe}: no scripts/{exe} (installed to lib/slm_agent by CMake)"
        assert script.stat().st_mode & stat.S_IXUSR, f"scripts/{exe} is not executable"
        assert exe in NODES, f"{exe}: not runnable from the CLI (slm_agent.cli.NODES)"
        module = NODES[exe]
        assert importlib.util.find_spec(module) is not None, f"{exe}: module {module} missing"
        assert module in script.read_text(), f"scripts/{exe} does not run {module}"


def test_launch_description_builds_and_executables_installed():
    try:
        import launch  # noqa: F401
        import launch_ros  # noqa: F401
        from ament_index_python.packages import PackageNotFoundError, get_package_prefix
    except ImportError as exc:
        pytest.skip(f"launch_ros is not importable ({exc}); it ships with ROS 2 installs, not PyPI")
    spec = importlib.util.spec_from_file_location("bench_launch", LAUNCH)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    description = module.generate_launch_description()
    from launch_ros.actions import Node

    nodes = [e for e in description.entities if isinstance(e, Node)]
    assert {n.node_executable for n in nodes} == named_executables()
    try:
        prefix = Path(get_package_prefix("slm_agent"))
    except PackageNotFoundError:
        pytest.fail("slm_agent is not in the ament index: build it with colcon and source install/setup.bash")
    for n in nodes:
        exe = prefix / "lib" / "slm_agent" / n.node_executable
        assert exe.is_file() and os.access(exe, os.X_OK), f"{exe} not installed"
