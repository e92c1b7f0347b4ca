"""The launch file: executables it names are declared (always) and installed
(where launch_ros exists, i.e. on a ROS 2 install); its arguments are the
declared settings and its nodes read the config/*.yaml parameters files plus
the arguments given; record:=true records to a fresh bag folder with --topics.

The plain-Python part of the launch file (``plan``) is checked everywhere;
the launch description itself where launch_ros is importable."""
import ast
import importlib.util
import os
import stat
from pathlib import Path

import pytest
import yaml

from slm_agent.launcher.processes import NODES
from slm_agent.settings import NODE_SETTINGS, PACKAGE_TOPICS, BenchmarkSettings, TelemetrySettings

ROOT = Path(__file__).resolve().parents[1]
LAUNCH = ROOT / "launch" / "bench.launch.py"
CONFIG = ROOT / "config"


def load_launch_module():
    spec = importlib.util.spec_from_file_location("bench_launch", LAUNCH)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)   # imports no launch package at module level
    return module


def default_texts(module) -> dict[str, str]:
    return {name: default for name, default, _ in module.declared_arguments()}


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
        assert exe in NODES, f"{exe}: not runnable from the CLI (slm_agent.launcher.processes.NODES)"
        module = NODES[exe]
        assert importlib.util.find_spec(module) is not None, f"{exe}: module {module} missing"
        assert module in script.read_text(), f"scripts/{exe} does not run {module}"


# ---------------------------------------------------------------- no ROS install needed

def test_every_launch_argument_is_a_declared_setting():
    module = load_launch_module()
    for arg, cls, name in module.ARGUMENTS:
        assert name in cls.model_fields, f"launch argument {arg}: {cls.__name__} declares no {name!r}"
        assert arg in (name, f"{cls.NODE}_{name}"), f"launch argument {arg} is not named after {cls.NODE}.{name}"
    assert [name for name, _, _ in module.LAUNCH_ONLY] == ["record", "config_dir"]
    texts = default_texts(module)
    for arg, cls, name in module.ARGUMENTS:   # defaults and help come from the declaration
        default = cls.defaults()[name]
        assert texts[arg] == (str(default).lower() if isinstance(default, bool) else str(default)), arg
    # no literal defaults or topic lists left in the launch file
    source = LAUNCH.read_text()
    assert "/telemetry/power" not in source and "runs/latest" not in source and "simple_python" not in \
        source.split('"""', 2)[2]


def test_nodes_read_the_params_files_and_only_the_given_arguments(tmp_path):
    module = load_launch_module()
    plan = module.plan(default_texts(module), CONFIG)
    assert plan["bag"] is None and plan["record_cmd"] is None
    params = plan["parameters"]
    assert set(params) == {"agent", "telemetry", "benchmark"}
    for node, (path, overrides) in params.items():
        assert Path(path) == CONFIG / f"{node}.yaml" and Path(path).is_file()
        file_values = yaml.safe_load(Path(path).read_text())[node]["ros__parameters"]
        NODE_SETTINGS[node].parse({**file_values, **overrides})   # what the node will read is valid
    assert params["agent"][1] == {"autostart": True}
    assert params["telemetry"][1] == {}
    assert params["benchmark"][1] == {"model": "gemma3-270m-q4km"}, "labelled with the agent's model"

    texts = dict(default_texts(module), limit="5", case_timeout_s="600", run_id="15", telemetry_reader="linux",
                 model="other-model", strategy="ReAct")
    plan = module.plan(texts, CONFIG)
    bench = plan["parameters"]["benchmark"][1]
    assert bench == {"limit": 5, "case_timeout_s": 600.0, "run_id": "15", "strategy": "react",
                     "model": "other-model"}
    assert type(bench["case_timeout_s"]) is float and type(bench["run_id"]) is str
    assert plan["parameters"]["telemetry"][1] == {"reader": "linux"}
    assert plan["parameters"]["agent"][1] == {"model": "other-model", "autostart": True}


def test_concurrency_gives_the_agent_as_many_parallel_goals():
    module = load_launch_module()
    params = module.plan(dict(default_texts(module), concurrency="8"), CONFIG)["parameters"]
    assert params["benchmark"][1]["concurrency"] == 8
    assert params["agent"][1] == {"autostart": True, "max_parallel_goals": 8, "max_queued_goals": 8}
    file_values = yaml.safe_load((CONFIG / "agent.yaml").read_text())["agent"]["ros__parameters"]
    NODE_SETTINGS["agent"].parse({**file_values, **params["agent"][1]})   # valid for the agent node


def test_bad_launch_arguments_are_refused_before_anything_starts():
    module = load_launch_module()
    texts = dict(default_texts(module), limit="-1", strategy="foo", case_timeout_s="soon", telemetry_reader="x")
    with pytest.raises(ValueError) as err:
        module.plan(texts, CONFIG)
    lines = str(err.value).splitlines()
    assert len(lines) == 4, lines
    assert "launch argument limit: must be an integer (>= 0) (got -1)" in lines
    assert "launch argument strategy: must be one of direct, react, reflact (got 'foo')" in lines
    assert any(line.startswith("launch argument telemetry_reader: must be one of") for line in lines)
    with pytest.raises(ValueError, match="record"):
        module.plan(dict(default_texts(module), record="maybe"), CONFIG)


def test_record_uses_a_fresh_bag_folder_and_topics_flag(tmp_path):
    module = load_launch_module()
    out = tmp_path / "run"
    texts = dict(default_texts(module), record="true", output_dir=str(out))
    plan = module.plan(texts, CONFIG)
    assert plan["bag"] == out / "bag"
    cmd = plan["record_cmd"]
    assert cmd[:3] == ["ros2", "bag", "record"] and cmd[cmd.index("-o") + 1] == str(out / "bag")
    assert cmd[cmd.index("--topics") + 1:] == list(PACKAGE_TOPICS), "topics after --topics (Jazzy), all of them"
    assert not any(t in cmd[:cmd.index("--topics")] for t in PACKAGE_TOPICS), "no positional topics"
    assert plan["parameters"]["benchmark"][1]["min_subscribers"] == 1, "the benchmark waits for the recorder"
    assert plan["parameters"]["agent"][1]["min_subscribers"] == 1, "and so does the agent's first goal"
    (out / "bag").mkdir(parents=True)     # a resumed run: the first bag is there
    (out / "bag" / "metadata.yaml").write_text("recorded")
    assert module.plan(texts, CONFIG)["bag"] == out / "bag_2"
    (out / "bag_2").mkdir()
    (out / "bag_2" / "metadata.yaml").write_text("recorded")
    assert module.plan(texts, CONFIG)["bag"] == out / "bag_3"
    (out / "bag_3").mkdir()               # an empty one (a run that recorded nothing) is reused, not skipped
    assert module.plan(texts, CONFIG)["bag"] == out / "bag_3" and not (out / "bag_3").exists()
    # output_dir not given: the one in the benchmark's parameters file
    other = tmp_path / "config"
    other.mkdir()
    for f in ("agent.yaml", "telemetry.yaml"):
        (other / f).write_text((CONFIG / f).read_text())
    data = yaml.safe_load((CONFIG / "benchmark.yaml").read_text())
    data["benchmark"]["ros__parameters"]["output_dir"] = str(tmp_path / "from_file")
    (other / "benchmark.yaml").write_text(yaml.safe_dump(data))
    plan = module.plan(dict(default_texts(module), record="true"), other)
    assert plan["bag"] == tmp_path / "from_file" / "bag"
    assert plan["parameters"]["benchmark"][0] == str(other / "benchmark.yaml")


def test_every_bench_flag_of_a_launched_node_is_a_launch_argument():
    """One marked list (``run=True`` in settings.py) makes both: every ``slm-agent bench``
    setting flag of the agent, benchmark and telemetry nodes is a launch argument (issue 22:
    ``protocol`` was a flag but not an argument), and nothing else is."""
    from slm_agent.launcher.bench import run_flags

    module = load_launch_module()
    launched = {(cls, name) for cls, names in run_flags().items() if cls.NODE in module.PARAMS_FILES
                for name in names}
    assert {(cls, name) for _arg, cls, name in module.ARGUMENTS} == launched
    assert ("protocol", BenchmarkSettings, "protocol") in module.ARGUMENTS
    params = module.plan(dict(default_texts(module), protocol="robot"), CONFIG)["parameters"]
    assert params["benchmark"][1]["protocol"] == "robot"


def test_launch_arguments_match_the_cli_flags_for_the_same_settings():
    """The same setting has the same default on both routes (slm-agent bench and ros2 launch)."""
    from slm_agent.cli import build_parser

    module = load_launch_module()
    bench = build_parser().parse_args(["bench"])
    for arg, cls, name in module.ARGUMENTS:
        if cls in (BenchmarkSettings, TelemetrySettings) and hasattr(bench, name):
            assert getattr(bench, name) == cls.defaults()[name], name


# ---------------------------------------------------------------- ROS install (launch_ros)

def test_launch_description_builds_and_executables_installed():
    try:
        import launch  # noqa: F401
        import launch_ros  # noqa: F401
        from ament_index_python.packages import PackageNotFoundError, get_package_prefix
    except ImportError as exc:
        pytest.skip(f"launch_ros is not importable ({exc}); it ships with ROS 2 installs, not PyPI")
    module = load_launch_module()
    description = module.generate_launch_description()
    nodes, _ = _expand(description, {"config_dir": str(CONFIG)})
    assert {n.node_executable for n in nodes} == named_executables()
    try:
        prefix = Path(get_package_prefix("slm_agent"))
    except (PackageNotFoundError, OSError):   # OSError: no AMENT_PREFIX_PATH at all
        pytest.fail("slm_agent is not in the ament index: build it with colcon and source install/setup.bash")
    for n in nodes:
        exe = prefix / "lib" / "slm_agent" / n.node_executable
        assert exe.is_file() and os.access(exe, os.X_OK), f"{exe} not installed"


def _expand(description, arguments: dict[str, str]):
    """The actions the launch description's OpaqueFunction creates for ``arguments``."""
    from launch import LaunchContext
    from launch.actions import DeclareLaunchArgument, ExecuteProcess, OpaqueFunction
    from launch_ros.actions import Node

    context = LaunchContext()
    for entity in description.entities:
        if isinstance(entity, DeclareLaunchArgument):
            context.launch_configurations[entity.name] = arguments.get(
                entity.name, "".join(s.perform(context) for s in entity.default_value))
    actions = []
    for entity in description.entities:
        if isinstance(entity, OpaqueFunction):
            actions += entity.execute(context) or []
    return ([a for a in actions if isinstance(a, Node)], [a for a in actions if isinstance(a, ExecuteProcess)
                                                          and not isinstance(a, Node)])


def test_launch_description_parameters_and_record_command(tmp_path):
    try:
        import launch  # noqa: F401
        import launch_ros  # noqa: F401
        from launch.utilities import perform_substitutions
    except ImportError as exc:
        pytest.skip(f"launch_ros is not importable ({exc}); it ships with ROS 2 installs, not PyPI")
    module = load_launch_module()
    out = tmp_path / "run"
    (out / "bag").mkdir(parents=True)
    nodes, processes = _expand(module.generate_launch_description(),
                               {"config_dir": str(CONFIG), "record": "true", "output_dir": str(out), "limit": "3"})
    by_exe = {n.node_executable: n for n in nodes}
    assert set(by_exe) == {"telemetry_node", "agent_node", "benchmark_node"}
    from launch import LaunchContext
    from launch_ros.utilities import evaluate_parameters

    ctx = LaunchContext()
    for exe, node in by_exe.items():   # the node's parameters file, then the arguments given
        path, overrides = evaluate_parameters(ctx, node._Node__parameters)
        assert Path(str(path)) == CONFIG / f"{exe.removesuffix('_node')}.yaml", exe
        if exe == "benchmark_node":
            assert overrides["limit"] == 3 and overrides["min_subscribers"] == 1
            assert overrides["output_dir"] == str(out) and overrides["model"] == "gemma3-270m-q4km"
        elif exe == "agent_node":
            assert overrides == {"autostart": True}
    (record,) = processes
    cmd = [perform_substitutions(ctx, part) for part in record.cmd]
    assert cmd[cmd.index("-o") + 1] == str(out / "bag_2")
    assert cmd[cmd.index("--topics") + 1:] == list(PACKAGE_TOPICS)
