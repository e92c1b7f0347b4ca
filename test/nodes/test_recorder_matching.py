"""A recorded node's first message waits for the recorder's match (slm_agent.ros.matching).

CI once recorded 6 of a gold run's 28 InferenceMetrics: the benchmark waited for the
recorder on its own topics, but the agent's process had not yet matched the recorder
when the first (fast, gold) goals published their metrics, and a VOLATILE subscription
never receives what was published before the match.  Now the agent waits too.
"""
from __future__ import annotations

import threading
import time

import pytest

from slm_agent.ros.matching import RecorderGate, wait_for_subscriptions


class _Pub:
    """A publisher whose subscriptions match at ``at`` (monotonic time)."""

    def __init__(self, at: float) -> None:
        self.at = at

    def get_subscription_count(self) -> int:
        return int(time.monotonic() >= self.at)


def test_waits_until_every_publisher_is_matched():
    now = time.monotonic()
    t0 = time.monotonic()
    assert wait_for_subscriptions([_Pub(now + 0.1), None, _Pub(now + 0.3)], 1, 5.0, poll_s=0.01)
    assert 0.29 <= time.monotonic() - t0 < 2.0


def test_runs_out_or_stops_and_says_so():
    never = _Pub(float("inf"))
    t0 = time.monotonic()
    assert not wait_for_subscriptions([never], 1, 0.2, poll_s=0.01)
    assert time.monotonic() - t0 >= 0.2
    assert not wait_for_subscriptions([never], 1, 60.0, stop=lambda: True)
    assert wait_for_subscriptions([never], 0, 60.0), "no recorder asked for: no wait"


class _Count:
    """A publisher whose matched count the test sets."""

    def __init__(self, n: int = 0) -> None:
        self.n = n

    def get_subscription_count(self) -> int:
        return self.n


def test_the_gate_warns_once_then_rearms_for_the_next_recorder():
    warnings: list[str] = []
    pub = _Count(0)
    gate = RecorderGate(1, 0.2, warnings.append)
    t0 = time.monotonic()
    gate.wait([pub], "~/metrics")
    assert time.monotonic() - t0 >= 0.2 and len(warnings) == 1
    assert "~/metrics" in warnings[0] and "0.2 s" in warnings[0]
    t0 = time.monotonic()
    gate.wait([pub], "~/metrics")
    assert time.monotonic() - t0 < 0.1 and len(warnings) == 1, "disarmed: a later goal passes at once"
    pub.n = 1
    gate.wait([pub], "~/metrics")      # matched: passes, and re-arms
    pub.n = 0                          # that recorder went (a grid cell ended); the next is not matched yet
    threading.Timer(0.1, lambda: setattr(pub, "n", 1)).start()
    t0 = time.monotonic()
    gate.wait([pub], "~/metrics")
    assert 0.05 <= time.monotonic() - t0 < 0.2 + 0.1 and len(warnings) == 1, "waited for the new recorder"
    stopped = RecorderGate(1, 60.0, warnings.append)
    stopped.wait([_Count(0)], "x", stop=lambda: True)
    assert len(warnings) == 1 and stopped._armed, "a cancelled goal is not a timeout: the next goal waits"
    assert RecorderGate(0, 60.0, warnings.append).wait([_Count(0)], "x") is None   # no recorder: no wait


def test_a_real_publisher_waits_for_a_late_subscription_and_it_gets_the_message():
    rclpy = pytest.importorskip("rclpy", reason="rclpy (ROS 2 Python client) not installed")
    from rclpy.context import Context
    from rclpy.executors import SingleThreadedExecutor
    from std_msgs.msg import String

    ctx = Context()
    rclpy.init(context=ctx)
    try:
        pub_node = rclpy.create_node("gate_pub", context=ctx)
        pub = pub_node.create_publisher(String, "/gate_test/metrics", 10)
        got: list[str] = []
        opened = threading.Event()

        def late_subscriber() -> None:
            time.sleep(0.5)
            sub_node = rclpy.create_node("gate_sub", context=ctx)
            sub_node.create_subscription(String, "/gate_test/metrics", lambda m: got.append(m.data), 10)
            exe = SingleThreadedExecutor(context=ctx)
            exe.add_node(sub_node)
            opened.set()
            end = time.monotonic() + 20
            while not got and time.monotonic() < end:
                exe.spin_once(timeout_sec=0.05)
            exe.shutdown()
            sub_node.destroy_node()

        th = threading.Thread(target=late_subscriber)
        t0 = time.monotonic()
        th.start()
        warnings: list[str] = []
        RecorderGate(1, 20.0, warnings.append).wait([pub], "/gate_test/metrics")
        assert time.monotonic() - t0 >= 0.5 and not warnings, "the gate waited for the late subscription"
        assert opened.wait(10.0)
        pub.publish(String(data="first call"))
        th.join(30)
        assert got == ["first call"], "the first message after the gate reached the late subscriber"
        pub_node.destroy_node()
    finally:
        rclpy.shutdown(context=ctx)


def test_the_agents_first_goal_and_the_benchmark_wait_with_a_recorder():
    """slm-agent bench sets min_subscribers on both when it records (and the launch file)."""
    from slm_agent.launcher.bench import BenchRun
    from slm_agent.settings import AgentSettings, GoldAgentSettings

    run = BenchRun.from_values({"model": "m"})
    assert run.benchmark.min_subscribers == 1 and run.agent.min_subscribers == 1
    assert run.params(None)[AgentSettings]["min_subscribers"] == 1
    gold = BenchRun.from_values({}, agent="gold", record=False)
    assert gold.agent.min_subscribers == 0 and "min_subscribers" not in gold.params()[GoldAgentSettings]
