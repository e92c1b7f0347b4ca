"""Benchmark a model profile on a ROS 2 install.

    ros2 launch slm_agent bench.launch.py model:=gemma3-270m-q4km \
        categories:=simple_python,multiple limit:=5 output_dir:=runs/demo record:=true

Starts telemetry_node, agent_node (configured and activated at start-up),
benchmark_node and, with record:=true, ``ros2 bag record`` (MCAP) of every
package topic; the launch ends when the benchmark has scored its last case.
Then ``ros2 run slm_agent ...``-free: ``slm-agent report <output_dir>``.
On a machine without ROS tooling, ``slm-agent bench`` runs the same nodes with
the same arguments (and its own recorder).
"""
from launch import LaunchDescription
from launch.actions import DeclareLaunchArgument, EmitEvent, ExecuteProcess, RegisterEventHandler
from launch.conditions import IfCondition
from launch.event_handlers import OnProcessExit
from launch.events import Shutdown
from launch.substitutions import LaunchConfiguration, PathJoinSubstitution
from launch_ros.actions import Node

ARGUMENTS = [
    ("model", "gemma3-270m-q4km", "model profile: a name under config/models/ or a YAML path"),
    ("suite", "bfcl", "benchmark suite"),
    ("categories", "simple_python", "comma-separated suite categories"),
    ("ids", "", "comma-separated case ids (overrides categories)"),
    ("limit", "0", "cases per category, 0 for all"),
    ("strategy", "direct", "prompt strategy: direct | react | reflact"),
    ("serialization", "json", "tool-spec serialization: json | toon | natural"),
    ("max_steps", "0", "agent steps per goal, 0 = the agent's default"),
    ("power_mode", "", "power-mode label; empty = read from /telemetry/power"),
    ("output_dir", "runs/latest", "results.jsonl, run.json and bag/ go here (reused = resumed)"),
    ("record", "false", "record every package topic to a rosbag2 MCAP bag in output_dir/bag"),
    ("telemetry_reader", "auto", "telemetry source: auto | jtop | jetson_sysfs | linux | nvml"),
]

#: the package's topics, recorded to the bag
RECORD_TOPICS = [
    "/telemetry/power", "/telemetry/thermal", "/telemetry/system", "/diagnostics",
    "/agent/metrics", "/agent/tool_calls", "/benchmark/scenarios", "/benchmark/results",
]


def generate_launch_description() -> LaunchDescription:
    cfg = {name: LaunchConfiguration(name) for name, _, _ in ARGUMENTS}
    actions = [DeclareLaunchArgument(n, default_value=d, description=desc) for n, d, desc in ARGUMENTS]
    benchmark = Node(
        package="slm_agent", executable="benchmark_node", name="benchmark", output="screen",
        parameters=[{
            "suite": cfg["suite"], "categories": cfg["categories"], "ids": cfg["ids"],
            "limit": cfg["limit"], "strategy": cfg["strategy"], "serialization": cfg["serialization"],
            "max_steps": cfg["max_steps"], "model": cfg["model"], "power_mode": cfg["power_mode"],
            "output_dir": cfg["output_dir"],
        }])
    actions += [
        Node(package="slm_agent", executable="telemetry_node", name="telemetry", output="screen",
             parameters=[{"reader": cfg["telemetry_reader"]}]),
        Node(package="slm_agent", executable="agent_node", name="agent", output="screen",
             parameters=[{"model": cfg["model"], "autostart": True}]),
        ExecuteProcess(
            cmd=["ros2", "bag", "record", "-s", "mcap", "-o",
                 PathJoinSubstitution([cfg["output_dir"], "bag"]), *RECORD_TOPICS],
            condition=IfCondition(cfg["record"]), output="screen", sigterm_timeout="10"),
        benchmark,
        # The benchmark node exits after its last case: stop everything (the
        # bag recorder gets SIGINT and closes the bag).
        RegisterEventHandler(OnProcessExit(target_action=benchmark,
                                           on_exit=[EmitEvent(event=Shutdown(reason="benchmark finished"))])),
    ]
    return LaunchDescription(actions)
