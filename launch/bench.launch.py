"""Benchmark a model profile on a ROS 2 install.

    ros2 launch slm_agent bench.launch.py model:=gemma3-270m-q4km suite:=bfcl \
        categories:=simple_python limit:=20 output_dir:=runs/demo record:=true

On a machine without ROS tooling, ``slm-agent bench`` runs the same nodes with
the same arguments.
"""
from launch import LaunchDescription
from launch.actions import DeclareLaunchArgument, ExecuteProcess
from launch.conditions import IfCondition
from launch.substitutions import LaunchConfiguration, PathJoinSubstitution
from launch_ros.actions import Node

ARGUMENTS = [
    ("model", "gemma3-270m-q4km", "model profile: a name under config/models/ or a YAML path"),
    ("suite", "bfcl", "benchmark suite"),
    ("categories", "simple_python", "comma-separated suite categories"),
    ("limit", "0", "cases per category, 0 for all"),
    ("strategy", "direct", "prompt strategy: direct | react | reflact"),
    ("serialization", "json", "tool-spec serialization: json | toon | natural"),
    ("output_dir", "runs/latest", "directory for results, bag and report"),
    ("record", "false", "record every topic to a rosbag2 MCAP bag in output_dir/bag"),
    ("telemetry_reader", "auto", "telemetry source: auto | jtop | jetson_sysfs | linux | nvml"),
]

#: topics recorded to the bag (all of the package's own traffic)
RECORD_TOPICS = [
    "/telemetry/power", "/telemetry/thermal", "/telemetry/system", "/diagnostics",
    "/agent/metrics", "/agent/tool_calls", "/benchmark/scenarios", "/benchmark/results",
]


def generate_launch_description() -> LaunchDescription:
    cfg = {name: LaunchConfiguration(name) for name, _, _ in ARGUMENTS}
    actions = [DeclareLaunchArgument(n, default_value=d, description=desc) for n, d, desc in ARGUMENTS]
    actions += [
        Node(package="slm_agent", executable="telemetry_node", name="telemetry", namespace="/",
             parameters=[{"reader": cfg["telemetry_reader"]}], output="screen"),
        Node(package="slm_agent", executable="demo_robot_node", name="demo_robot",
             namespace="/demo_robot", output="screen"),
        ExecuteProcess(
            cmd=["ros2", "bag", "record", "-s", "mcap", "-o",
                 PathJoinSubstitution([cfg["output_dir"], "bag"]), *RECORD_TOPICS],
            condition=IfCondition(cfg["record"]), output="screen"),
    ]
    return LaunchDescription(actions)
