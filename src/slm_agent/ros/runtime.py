"""rclpy process plumbing shared by nodes, the CLI and tests.

Why a spinning thread: rclpy 7.1's ``spin_until_future_complete`` busy-loops
(about 10 ms per call here), so every client in this package waits on futures
while an executor spins in its own daemon thread (about 0.4 ms service round
trips across processes).
"""
from __future__ import annotations

import os
import sys
import threading
import time
from contextlib import contextmanager
from typing import Callable, Iterator, Optional, Sequence

import rclpy
from rclpy.executors import ExternalShutdownException, MultiThreadedExecutor
from rclpy.node import Node
from rclpy.signals import SignalHandlerOptions


#: longest a node process waits before re-checking for shutdown
SHUTDOWN_POLL_S = 1.0


class SpinThread:
    """An executor spinning ``nodes`` in a daemon thread until :meth:`stop`."""

    def __init__(self, *nodes: Node, num_threads: int = 4, context=None) -> None:
        self.executor = MultiThreadedExecutor(num_threads=num_threads, context=context)
        for node in nodes:
            self.executor.add_node(node)
        self._stopping = threading.Event()
        self._thread = threading.Thread(target=self._spin, name="slm-agent-spin", daemon=True)
        self._thread.start()

    def _spin(self) -> None:
        # not executor.spin(): stop() must be able to end the dispatching *before*
        # Executor.shutdown destroys the guard condition that in-flight callbacks trigger
        try:
            while not self._stopping.is_set() and self.executor.context.ok():
                self.executor.spin_once(timeout_sec=SHUTDOWN_POLL_S)
        except (ExternalShutdownException, KeyboardInterrupt):
            pass
        except RuntimeError:  # "context is not valid": shut down between the check and the wait
            if self.executor.context.ok() and not self._stopping.is_set():
                raise

    def add_node(self, node: Node) -> None:
        self.executor.add_node(node)

    def stop(self) -> None:
        """Stop dispatching, let the callbacks in flight finish, then shut the executor down."""
        self._stopping.set()
        try:
            self.executor.wake()
        except Exception:  # noqa: BLE001 - already shut down
            pass
        self._thread.join(timeout=SHUTDOWN_POLL_S + 2.0)
        drain_executor(self.executor)


def drain_executor(executor, timeout_s: float = 5.0) -> None:
    """Wait for the callbacks ``executor`` already dispatched, then shut it down, so no
    callback runs on a node (or a guard condition) being destroyed.  Call once nothing
    spins the executor any more, before ``destroy_node``.

    Why: rclpy 7.1's ``Executor.shutdown(timeout_sec)`` does not wait (it tests
    the flag it has just set) and destroys the executor's guard condition at
    once, while a MultiThreadedExecutor's thread pool may still hold handlers
    dispatched just before.  Such a handler triggers that guard, or takes from
    a subscription whose node is being destroyed, and fails with InvalidHandle
    ("cannot use Destroyable because destruction was requested") into a Task
    nobody reads: "The following exception was never retrieved" at exit.  A
    callback error found here is printed, not dropped.
    """
    if executor is None:
        return
    pool = getattr(executor, "_executor", None)  # MultiThreadedExecutor's ThreadPoolExecutor
    if pool is not None:
        waiter = threading.Thread(target=pool.shutdown, kwargs={"wait": True}, name="slm-agent-drain",
                                  daemon=True)
        waiter.start()
        waiter.join(timeout_s)
    for task in list(getattr(executor, "_futures", ())):
        if task.done():
            exc = task.exception()  # marks it retrieved
            if exc is not None:
                print(f"slm-agent: a callback failed while the node was stopping: {type(exc).__name__}: {exc}",
                      file=sys.stderr, flush=True)
    try:
        executor.shutdown(timeout_sec=0)
    except Exception:  # noqa: BLE001 - already shut down / context gone
        pass


@contextmanager
def ros_context(args: Optional[Sequence[str]] = None) -> Iterator[None]:
    """rclpy.init/shutdown for code that is not already inside a node process."""
    rclpy.init(args=list(args) if args is not None else None)
    try:
        yield
    finally:
        if rclpy.ok():
            rclpy.shutdown()


def spin_until_shutdown(executor) -> None:
    """Spin until the context is shut down (SIGINT/SIGTERM or rclpy.shutdown).

    Not ``executor.spin()``: on SIGTERM rclpy 7.1 wakes the executor and
    shuts the context down from its signal thread; under CPU load the
    executor can re-check the context before the shutdown lands and then wait
    forever (the node ignores SIGTERM).  A bounded wait re-checks.  The
    shutdown can also land between the check and the next wait, which then
    fails with "context is not valid": that is a normal exit too.
    """
    while rclpy.ok():
        try:
            executor.spin_once(timeout_sec=SHUTDOWN_POLL_S)
        except RuntimeError:  # rclpy._rclpy_pybind11.RCLError, not exported by rclpy
            if rclpy.ok():
                raise
            return


def run_node(factory: Callable[[], Node], args: Optional[Sequence[str]] = None) -> int:
    """Entry point body of every node executable: init, spin, clean exit.

    SIGINT and SIGTERM (sent by ``ros2 launch`` and by the CLI on stop) are
    handled by rclpy's own C-level handlers, which wake the executor's wait;
    a Python ``signal.signal`` handler would not run while the main thread is
    blocked in ``rcl_wait``. The node's ``close()`` then runs so nodes that
    write files (bags, results) close them.
    """
    rclpy.init(args=list(args) if args is not None else None,
               signal_handler_options=SignalHandlerOptions.ALL)
    node = None
    executor = None
    try:
        node = factory()
        executor = MultiThreadedExecutor(num_threads=max(4, (os.cpu_count() or 2)))
        executor.add_node(node)
        spin_until_shutdown(executor)
    except (KeyboardInterrupt, ExternalShutdownException):
        pass
    finally:
        drain_executor(executor)  # no callback may run on the node close() and destroy_node() tear down
        shutdown_node(node)
    return 0


def shutdown_node(node: Optional[Node], spin: Optional["SpinThread"] = None) -> None:
    """End of every node process: the node's ``close()`` first (it flushes
    files: results, bags), then the executor (drained: :func:`drain_executor`),
    the node and the context.  Without ``spin``, the executor the node was
    spun by (already stopped spinning) is drained."""
    if node is not None:
        close = getattr(node, "close", None)
        if callable(close):
            close()
    if spin is not None:
        spin.stop()
    elif node is not None:
        try:
            drain_executor(node.executor)
        except Exception:  # noqa: BLE001 - no executor / already gone
            pass
    if node is not None:
        try:
            node.destroy_node()
        except Exception:  # noqa: BLE001 - context may already be gone
            pass
    rclpy.try_shutdown()


def wait_for(predicate: Callable[[], bool], timeout_s: float, period_s: float = 0.01) -> bool:
    """Poll ``predicate`` (e.g. a publisher's match count) until true or timeout."""
    end = time.monotonic() + timeout_s
    while time.monotonic() < end:
        if predicate():
            return True
        time.sleep(period_s)
    return predicate()
