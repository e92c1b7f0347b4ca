"""Is a node ready?  Asked of ROS, not read from its log.

Why: the CLI and the grid used to wait for a line such as ``active:
serving`` in a node's console; a reworded log message then broke the
start-up silently.  Here a small node of the launching process, in the
run's DDS domain, asks ROS itself:

* the agent node (a lifecycle node): its state is ``active``
  (``<node>/get_state``), which it reaches only after configure loaded the
  model and activate opened the action server;
* the gold agent: its ``RunTask`` action server is available;
* the recorder: it subscribes to the topics it must record, and the
  agent's topics have a publisher in the graph.

It uses its own rclpy context (never the process-wide default), without
rclpy's signal handlers: Ctrl-C stays the launching process's
``KeyboardInterrupt``.
"""
from __future__ import annotations

import time
from typing import Callable, Optional, Sequence

#: lifecycle_msgs/State id of ``active``
ACTIVE = 3
POLL_S = 0.1


class RosGraph:
    """A node of this process in DDS domain ``domain_id`` that checks other nodes' readiness."""

    def __init__(self, domain_id: int, name: str = "slm_agent_launcher") -> None:
        import rclpy
        from rclpy.context import Context
        from rclpy.signals import SignalHandlerOptions

        self.context = Context()
        rclpy.init(context=self.context, domain_id=domain_id, signal_handler_options=SignalHandlerOptions.NO)
        self.node = rclpy.create_node(name, context=self.context, start_parameter_services=False,
                                      enable_rosout=False)

    def close(self) -> None:
        self.node.destroy_node()
        self.context.try_shutdown()

    def __enter__(self) -> "RosGraph":
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    # ------------------------------------------------------------------ checks
    def _until(self, check: Callable[[], bool], timeout_s: float, alive: Callable[[], bool]) -> bool:
        end = time.monotonic() + timeout_s
        while True:
            if check():
                return True
            if not alive() or time.monotonic() > end:
                return False
            time.sleep(POLL_S)

    def lifecycle_state(self, node: str, timeout_s: float = 5.0) -> Optional[int]:
        """The lifecycle state id of ``node`` (``/agent``), None when it did not answer."""
        from lifecycle_msgs.srv import GetState
        from rclpy.executors import SingleThreadedExecutor

        client = self.node.create_client(GetState, f"{node}/get_state")
        try:
            if not client.wait_for_service(timeout_sec=timeout_s):
                return None
            future = client.call_async(GetState.Request())
            executor = SingleThreadedExecutor(context=self.context)
            executor.add_node(self.node)
            try:
                executor.spin_until_future_complete(future, timeout_sec=timeout_s)
            finally:
                executor.remove_node(self.node)
                executor.shutdown()
            res = future.result() if future.done() else None
            return int(res.current_state.id) if res is not None else None
        finally:
            self.node.destroy_client(client)

    def wait_active(self, node: str, timeout_s: float, alive: Callable[[], bool] = lambda: True) -> bool:
        """``node`` (a lifecycle node) reached ``active`` within ``timeout_s``; False early when
        ``alive()`` says its process ended."""
        return self._until(lambda: self.lifecycle_state(node, timeout_s=1.0) == ACTIVE, timeout_s, alive)

    def wait_action_server(self, action: str, timeout_s: float, alive: Callable[[], bool] = lambda: True) -> bool:
        """A ``RunTask`` action server answers at ``action`` (the graph shows all its services)."""
        from rclpy.action import ActionClient

        from slm_agent.action import RunTask

        client = ActionClient(self.node, RunTask, action)
        try:
            return self._until(client.server_is_ready, timeout_s, alive)
        finally:
            client.destroy()

    def subscribes(self, node: str, topics: Sequence[str], namespace: str = "/") -> bool:
        """``node`` has a subscription on every topic of ``topics``."""
        try:
            have = {name for name, _types in self.node.get_subscriber_names_and_types_by_node(node, namespace)}
        except Exception:  # noqa: BLE001 - NodeNameNonExistentError: not discovered yet
            return False
        return set(topics) <= have

    def wait_subscribed(self, node: str, topics: Sequence[str], timeout_s: float,
                        alive: Callable[[], bool] = lambda: True) -> bool:
        return self._until(lambda: self.subscribes(node, topics), timeout_s, alive)

    def wait_publishers(self, topics: Sequence[str], timeout_s: float,
                        alive: Callable[[], bool] = lambda: True) -> bool:
        """Every topic of ``topics`` has a publisher in the graph."""
        return self._until(lambda: all(self.node.count_publishers(t) > 0 for t in topics), timeout_s, alive)
