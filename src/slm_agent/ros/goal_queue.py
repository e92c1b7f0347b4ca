"""The agent node's goal admission and FIFO dispatch (RunTask goal handles).

Why not rclpy's default: an action server runs each accepted goal's execute
callback on an executor thread at once, so queued goals would each hold a
thread while they wait for the one engine, and tool-service responses,
cancel requests and lifecycle calls could starve.  Here accepted goals wait
in a plain FIFO and hold no thread; a dispatcher thread starts the next goal
(``goal_handle.execute()``) when a running one ends, and ends at once a
waiting goal that is cancelled (or every waiting goal while the node is not
active).  At most ``limit`` goals are admitted at once (running + waiting);
at most :attr:`GoalQueue.parallel` run at once (default 1: one after the
other; more only for an engine that serves concurrent calls).

Goal handles are duck-typed (``execute()``, ``is_cancel_requested``,
``goal_id.uuid``, ``request.task_id``): no rclpy import.
"""
from __future__ import annotations

import threading
from collections import deque
from dataclasses import dataclass
from typing import Any, Callable, Optional

#: how often the dispatcher re-checks waiting goals for cancel requests (the
#: goal's state changes only after the cancel callback returned)
DISPATCH_POLL_S = 0.02


class CancelFlag:
    """``threading.Event``-like view of "stop this goal" for AgentLoop.run."""

    def __init__(self, goal_handle: Any, abort: threading.Event) -> None:
        self._gh = goal_handle
        self._abort = abort

    def is_set(self) -> bool:
        return self._gh.is_cancel_requested or self._abort.is_set()


@dataclass(eq=False)
class Job:
    """An accepted goal: waiting in the FIFO, then dispatched to run or to end."""

    goal_handle: Any
    task_id: str
    cancel: CancelFlag
    run: bool = False   # set by the dispatcher: True = run it, False = end it unrun


def _key(goal_handle: Any) -> bytes:
    return bytes(goal_handle.goal_id.uuid)


class GoalQueue:
    """Admission, FIFO and dispatcher thread; ``active()`` and ``abort`` are the node's state."""

    def __init__(self, active: Callable[[], bool], abort: threading.Event,
                 log_error: Callable[[str], None]) -> None:
        self._active = active
        self._abort = abort
        self._log_error = log_error
        self._cv = threading.Condition(threading.Lock())
        self._queued = 0                        # admitted and not ended (running + waiting)
        self._waiting: "deque[Job]" = deque()   # accepted, not yet dispatched (FIFO)
        self._jobs: dict[bytes, Job] = {}       # dispatched, execute callback not yet returned
        self._running: set[Job] = set()         # dispatched to run, execute callback not yet returned
        self.parallel = 1                       # goals run at once (set at configure, while none runs)
        self._closing = False
        self._task_seq = 0
        self._thread = threading.Thread(target=self._loop, name="agent-dispatch", daemon=True)
        self._thread.start()

    def admit(self, limit: int) -> Optional[str]:
        """Count a new goal in; returns why it is refused instead (``limit`` reached)."""
        with self._cv:
            if self._queued >= limit:
                return f"{self._queued} goals already queued (max_queued_goals)"
            self._queued += 1
        return None

    def accepted(self, goal_handle: Any) -> None:
        """Queue an admitted goal (its task id: the goal's, else ``task-<n>``)."""
        with self._cv:
            task_id = goal_handle.request.task_id
            if not task_id:
                self._task_seq += 1
                task_id = f"task-{self._task_seq}"
            self._waiting.append(Job(goal_handle, task_id, CancelFlag(goal_handle, self._abort)))
            self._cv.notify_all()

    def wake(self) -> None:
        """Re-check the waiting goals now (a cancel request, a state change)."""
        with self._cv:
            self._cv.notify_all()

    def job(self, goal_handle: Any) -> Optional[Job]:
        """The dispatched job of ``goal_handle`` (the execute callback's view)."""
        with self._cv:
            return self._jobs.get(_key(goal_handle))

    def finished(self, job: Job) -> None:
        """The job's execute callback returned: the next goal may start."""
        with self._cv:
            if self._jobs.pop(_key(job.goal_handle), None) is not None:
                self._queued -= 1
            self._running.discard(job)
            self._cv.notify_all()

    def end_waiting(self) -> None:
        """End every waiting goal unrun (deactivate, shutdown)."""
        with self._cv:
            ended = list(self._waiting)
            self._waiting.clear()
            self._cv.notify_all()
        for job in ended:
            self._dispatch(job, run=False)

    def close(self) -> None:
        """Stop the dispatcher thread (process exit)."""
        with self._cv:
            self._closing = True
            self._cv.notify_all()

    def _dispatch(self, job: Job, run: bool) -> None:
        """Hand a goal to the action server's execute path (an executor task)."""
        job.run = run
        with self._cv:
            self._jobs[_key(job.goal_handle)] = job
        try:
            try:
                job.goal_handle.execute()
            except Exception:  # noqa: BLE001
                # a cancel that lands between execute()'s check and its EXECUTE transition makes
                # that transition invalid; the goal is CANCELING now and execute() skips it
                if not job.goal_handle.is_cancel_requested:
                    raise
                job.goal_handle.execute()
        except Exception as exc:  # noqa: BLE001 - e.g. the goal handle was destroyed at shutdown
            self._log_error(f"goal {job.task_id!r} could not be dispatched: {type(exc).__name__}: {exc}")
            self.finished(job)

    @property
    def running(self) -> int:
        """Goals dispatched to run whose execute callback has not returned."""
        with self._cv:
            return len(self._running)

    def _loop(self) -> None:
        """Dispatcher thread: FIFO order, up to ``parallel`` goals running at a time; waiting
        goals that are cancelled (or all of them while inactive) end at once, without running."""
        while True:
            start: list[Job] = []
            with self._cv:
                if self._closing:
                    return
                inactive = not self._active() or self._abort.is_set()
                ended = [j for j in self._waiting if inactive or j.goal_handle.is_cancel_requested]
                for j in ended:
                    self._waiting.remove(j)
                while not ended and self._waiting and len(self._running) < max(1, self.parallel):
                    job = self._waiting.popleft()
                    self._running.add(job)
                    start.append(job)
                if not ended and not start:
                    self._cv.wait(DISPATCH_POLL_S if self._waiting else None)
            for j in ended:
                self._dispatch(j, run=False)
            for j in start:
                self._dispatch(j, run=True)


__all__ = ["CancelFlag", "GoalQueue", "Job"]
