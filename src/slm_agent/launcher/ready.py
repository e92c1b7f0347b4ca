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

import math
import time
from typing import Callable, Optional, Sequence

#: lifecycle_msgs/State id of ``active``
ACTIVE = 3
POLL_S = 0.1
#: a get_state request unanswered this long is given up and asked again
REASK_S = 5.0


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

    def wait_active(self, node: str, timeout_s: float, alive: Callable[[], bool] = lambda: True) -> bool:
        """``node`` (a lifecycle node) reached ``active`` within ``timeout_s``; False early when
        ``alive()`` says its process ended.

        One ``get_state`` client lives for the whole wait, and a request is re-sent only
        after ``REASK_S`` without an answer: a node loading its model cannot answer until
        configure returns, and a client destroyed before that answer came made the node
        log "failed to send response (timeout): client will not receive response".
        The executor waits on the wait set (``spin_once``), not in a busy loop.
        """
        from lifecycle_msgs.srv import GetState
        from rclpy.executors import SingleThreadedExecutor

        client = self.node.create_client(GetState, f"{node}/get_state")
        executor = SingleThreadedExecutor(context=self.context)
        executor.add_node(self.node)
        end = time.monotonic() + timeout_s
        future, asked = None, -math.inf
        try:
            while True:
                now = time.monotonic()
                if future is not None and not future.done() and now - asked > REASK_S:
                    client.remove_pending_request(future)   # a late answer is dropped, not kept
                    future = None
                if future is None and client.service_is_ready():
                    future, asked = client.call_async(GetState.Request()), now
                executor.spin_once(timeout_sec=POLL_S)
                if future is not None and future.done():
                    res = future.result()
                    if res is not None and int(res.current_state.id) == ACTIVE:
                        return True
                    future = None
                if not alive() or time.monotonic() > end:
                    return False
        finally:
            executor.remove_node(self.node)
            executor.shutdown()
            self.node.destroy_client(client)

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
