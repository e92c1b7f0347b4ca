"""Benchmark a model profile on a ROS 2 install.

    ros2 launch slm_agent bench.launch.py model:=<profile> \
        categories:=simple_python,multiple limit:=5 output_dir:=runs/demo record:=true

Starts telemetry_node, agent_node (configured and activated at start-up),
benchmark_node and, with record:=true, ``ros2 bag record`` (MCAP) of every
package topic into a fresh ``<output_dir>/bag`` (``bag_2``, ... when a
resumed run already has one); the launch ends when the benchmark has scored
its last case.  Then: ``slm-agent report <output_dir>``.

Parameters.  Each node reads its parameters file (``config/<node>.yaml``,
installed under ``share/slm_agent/config``; ``config_dir:=`` for another
directory), then the launch arguments given on the command line.  Every
argument is a setting declared in ``slm_agent/settings.py`` (its default,
bounds and description come from there: ``ros2 launch slm_agent
bench.launch.py --show-args``) and is checked against it before any node
starts.  On a machine without ROS tooling, ``slm-agent bench`` runs the same
nodes with the same settings (and its own recorder).

The plain-Python part (:func:`plan`) imports no launch package, so it is
tested without a ROS install (``test/test_launch.py``).
"""
from __future__ import annotations

import os
from pathlib import Path
from typing import Any, Optional

from slm_agent.settings import (PACKAGE_TOPICS, AgentSettings, BenchmarkSettings, NodeSettings, SettingsError,
                                TelemetrySettings, agent_for_concurrency, from_texts, launch_defaults,
                                run_argument_name, run_settings)

#: launch argument -> (settings class, setting): every setting marked ``run=True`` (the one
#: list ``slm-agent bench`` makes its flags from) of the nodes this launch starts, named
#: after the setting (``<node>_<setting>`` for the telemetry node's); ``model`` is also the
#: benchmark's label in results, ``concurrency`` gives the agent as many parallel goals
ARGUMENTS: tuple[tuple[str, type[NodeSettings], str], ...] = tuple(
    (run_argument_name(cls, name), cls, name)
    for cls, names in run_settings((AgentSettings, BenchmarkSettings, TelemetrySettings)).items()
    for name in names)

#: arguments of the launch itself (not node settings): name, default, description
LAUNCH_ONLY: tuple[tuple[str, str, str], ...] = (
    ("record", "false", "record every package topic (ros2 bag record, MCAP) to a new bag folder in "
                        "output_dir (bag, or bag_2, ... if a resumed run has one)"),
    ("config_dir", "", "directory with agent.yaml, telemetry.yaml and benchmark.yaml (default: "
                       "the installed share/slm_agent/config)"),
)

#: node (settings NODE) -> its parameters file in config_dir
PARAMS_FILES = {"agent": "agent.yaml", "telemetry": "telemetry.yaml", "benchmark": "benchmark.yaml"}


def declared_arguments() -> list[tuple[str, str, str]]:
    """(name, default text, description) of every launch argument."""
    out = []
    for arg, cls, name in ARGUMENTS:
        (_name, default, description), = launch_defaults(cls, [name])
        out.append((arg, default, description))
    return out + list(LAUNCH_ONLY)


def record_command(bag: Path) -> list[str]:
    """``ros2 bag record`` of the package's topics into ``bag`` (must not exist)."""
    return ["ros2", "bag", "record", "-s", "mcap", "-o", str(bag), "--topics", *PACKAGE_TOPICS]


def plan(texts: dict[str, str], config_dir: Path, given: Optional[set[str]] = None) -> dict[str, Any]:
    """What the launch starts, from the launch arguments' texts.

    ``given``: the arguments set on the command line (None: every argument
    whose text differs from the declared default); only those override the
    parameters files.  Returns ``{"parameters": {node: [params file,
    overrides]}, "bag": Path or None, "record_cmd": [...] or None}``; raises
    ``ValueError`` (one line per bad argument) before anything starts.
    """
    defaults = {name: default for name, default, _ in declared_arguments()}
    if given is None:
        given = {name for name, text in texts.items() if text != defaults.get(name)}
    record_text = texts.get("record", "false").strip().lower()
    if record_text not in ("true", "false", "1", "0", "yes", "no", "on", "off"):
        raise ValueError(f"launch argument record:={texts['record']!r}: must be true or false")
    record = record_text in ("true", "1", "yes", "on")
    overrides: dict[str, dict[str, Any]] = {node: {} for node in PARAMS_FILES}
    problems: list[str] = []
    by_class: dict[type[NodeSettings], dict[str, str]] = {}
    for arg, cls, name in ARGUMENTS:
        if arg in given:
            by_class.setdefault(cls, {})[name] = texts.get(arg, defaults[arg])
    for cls, values in by_class.items():
        try:
            overrides[cls.NODE].update(from_texts(cls, values))
        except SettingsError as exc:
            arg_of = {(c, n): a for a, c, n in ARGUMENTS}
            problems += [p.for_flag(f"launch argument {arg_of.get((cls, p.name), p.name)}") for p in exc.items]
    if problems:
        raise ValueError("\n".join(problems))
    overrides["agent"]["autostart"] = True                  # configured and activated at start-up
    concurrency = int(overrides["benchmark"].get("concurrency")
                      or _file_value(config_dir, BenchmarkSettings, "concurrency"))
    overrides["agent"].update(agent_for_concurrency(  # as slm-agent bench: as many goals at once as cases
        concurrency, int(_file_value(config_dir, AgentSettings, "max_queued_goals"))))
    # the benchmark labels its results with the agent's model
    overrides["benchmark"]["model"] = overrides["agent"].get("model") or _file_value(config_dir, AgentSettings,
                                                                                      "model")
    bag = None
    if record:
        from slm_agent.launcher.processes import free_bag_dir  # the CLI's rule: never an existing folder

        out = overrides["benchmark"].get("output_dir") or _file_value(config_dir, BenchmarkSettings, "output_dir")
        bag = free_bag_dir(Path(out))
        overrides["benchmark"]["min_subscribers"] = 1       # first case and first goal wait until
        overrides["agent"]["min_subscribers"] = 1           # the recorder is matched
    return {"parameters": {node: [str(config_dir / PARAMS_FILES[node]), overrides[node]] for node in PARAMS_FILES},
            "bag": bag, "record_cmd": record_command(bag) if bag is not None else None}


def _file_value(config_dir: Path, cls: type[NodeSettings], name: str) -> Any:
    """A setting as the node's parameters file sets it (else its declared default)."""
    import yaml

    try:
        data = yaml.safe_load((config_dir / PARAMS_FILES[cls.NODE]).read_text()) or {}
        return data[cls.NODE]["ros__parameters"][name]
    except (OSError, KeyError, TypeError):
        return cls.defaults()[name]


def _config_dir(text: str) -> Path:
    if text:
        return Path(os.path.expanduser(text))
    from ament_index_python.packages import get_package_share_directory

    return Path(get_package_share_directory("slm_agent")) / "config"


def _setup(context, *args, **kwargs):
    from launch.actions import EmitEvent, ExecuteProcess, RegisterEventHandler
    from launch.event_handlers import OnProcessExit
    from launch.events import Shutdown
    from launch_ros.actions import Node

    texts = {name: context.launch_configurations.get(name, default) for name, default, _ in declared_arguments()}
    p = plan(texts, _config_dir(texts["config_dir"]))
    params = p["parameters"]
    benchmark = Node(package="slm_agent", executable="benchmark_node", name="benchmark", output="screen",
                     parameters=params["benchmark"])
    actions = [
        Node(package="slm_agent", executable="telemetry_node", name="telemetry", output="screen",
             parameters=params["telemetry"]),
        Node(package="slm_agent", executable="agent_node", name="agent", output="screen",
             parameters=params["agent"]),
    ]
    if p["record_cmd"]:
        actions.append(ExecuteProcess(cmd=p["record_cmd"], output="screen", sigterm_timeout="10"))
    actions += [
        benchmark,
        # The benchmark node exits after its last case: stop everything (the
        # bag recorder gets SIGINT and closes the bag).
        RegisterEventHandler(OnProcessExit(target_action=benchmark,
                                           on_exit=[EmitEvent(event=Shutdown(reason="benchmark finished"))])),
    ]
    return actions


def generate_launch_description():
    from launch import LaunchDescription
    from launch.actions import DeclareLaunchArgument, OpaqueFunction

    return LaunchDescription(
        [DeclareLaunchArgument(name, default_value=default, description=description)
         for name, default, description in declared_arguments()]
        + [OpaqueFunction(function=_setup)])
