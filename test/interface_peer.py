"""The far side of test_interfaces_cross_process: a separate process that checks
every custom message, service request and action goal it receives against the
deterministic values, reports on /slm_if/report, echoes messages back and
answers with deterministic responses."""
import sys
import threading

import rclpy
from rclpy.action import ActionServer
from rclpy.node import Node
from rclpy.qos import DurabilityPolicy, QoSProfile, ReliabilityPolicy
from std_msgs.msg import String

sys.path.insert(0, __import__("os").path.dirname(__file__))
from interface_values import all_types, diff, fill, plain  # noqa: E402

SEED = int(sys.argv[1]) if len(sys.argv) > 1 else 7
QOS = QoSProfile(depth=10, reliability=ReliabilityPolicy.RELIABLE, durability=DurabilityPolicy.TRANSIENT_LOCAL)


def main() -> int:
    rclpy.init()
    node = Node("interface_peer")
    report = node.create_publisher(String, "/slm_if/report", QoSProfile(
        depth=200, reliability=ReliabilityPolicy.RELIABLE, durability=DurabilityPolicy.TRANSIENT_LOCAL))
    lock = threading.Lock()

    def say(kind: str, name: str, problems: list[str]) -> None:
        with lock:
            report.publish(String(data=f"{kind} {name} " + ("OK" if not problems else "FAIL " + "; ".join(problems[:5]))))

    keep = []
    for name, cls in all_types("msg"):
        echo = node.create_publisher(cls, f"/slm_if/echo/{name}", QOS)

        def on_msg(msg, name=name, cls=cls, echo=echo):
            say("msg", name, diff(plain(fill(cls, SEED)), plain(msg)))
            echo.publish(msg)

        keep.append(node.create_subscription(cls, f"/slm_if/msg/{name}", on_msg, QOS))

    for name, cls in all_types("srv"):
        def on_call(request, response, name=name, cls=cls):
            say("srv", name, diff(plain(fill(cls.Request, SEED)), plain(request)))
            return fill(cls.Response, SEED + 1)

        keep.append(node.create_service(cls, f"/slm_if/srv/{name}", on_call))

    for name, cls in all_types("action"):
        def execute(goal_handle, name=name, cls=cls):
            say("action", name, diff(plain(fill(cls.Goal, SEED)), plain(goal_handle.request)))
            goal_handle.publish_feedback(fill(cls.Feedback, SEED + 2))
            goal_handle.succeed()
            return fill(cls.Result, SEED + 3)

        keep.append(ActionServer(node, cls, f"/slm_if/action/{name}", execute))

    print("READY", flush=True)
    try:
        rclpy.spin(node)
    except (KeyboardInterrupt, rclpy.executors.ExternalShutdownException):
        pass
    rclpy.try_shutdown()
    return 0


if __name__ == "__main__":
    sys.exit(main())
