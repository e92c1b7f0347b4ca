"""GoalQueue (slm_agent.ros.goal_queue) in plain Python: FIFO dispatch of up to
``parallel`` goals at once, cancel and deactivate of waiting goals.

The goal handles are stand-ins with the duck-typed surface GoalQueue uses
(``execute()``, ``is_cancel_requested``, ``goal_id.uuid``, ``request.task_id``);
``execute()`` does what rclpy's does for the agent node: the execute callback
runs on another thread, looks its job up and calls ``finished`` when it returns.
Each goal's callback blocks until the test releases it, so "running at once"
is observed, not inferred from timing.
"""
from __future__ import annotations

import threading
import time
import uuid
from types import SimpleNamespace

from slm_agent.ros.goal_queue import GoalQueue

WAIT_S = 5.0


class FakeGoal:
    def __init__(self, queue: GoalQueue, task_id: str, log: list, lock: threading.Lock) -> None:
        self.queue = queue
        self.goal_id = SimpleNamespace(uuid=uuid.uuid4().bytes)
        self.request = SimpleNamespace(task_id=task_id)
        self.is_cancel_requested = False
        self.release = threading.Event()
        self.started = threading.Event()     # the execute callback began
        self.ran: bool | None = None         # the job's verdict: run (True) or ended unrun (False)
        self.done = threading.Event()
        self._log, self._lock = log, lock

    def execute(self) -> None:
        with self._lock:   # the dispatcher thread calls execute() in dispatch order
            self._log.append(("dispatch", self.request.task_id))
        threading.Thread(target=self._callback, daemon=True).start()

    def _callback(self) -> None:
        job = self.queue.job(self)
        assert job is not None, "execute without a dispatched job"
        self.ran = job.run
        with self._lock:
            self._log.append(("start" if job.run else "ended", self.request.task_id))
        self.started.set()
        if job.run:
            self.release.wait(WAIT_S)
        self.queue.finished(job)
        self.done.set()


def _queue(parallel: int, active: bool = True):
    state = {"active": active}
    abort = threading.Event()
    errors: list[str] = []
    q = GoalQueue(lambda: state["active"], abort, errors.append)
    q.parallel = parallel
    return q, state, errors


def _goals(q: GoalQueue, names: str):
    log: list = []
    lock = threading.Lock()
    goals = [FakeGoal(q, n, log, lock) for n in names]
    for g in goals:
        assert q.admit(limit=16) is None
        q.accepted(g)
    return goals, log


def _wait(cond, timeout: float = WAIT_S) -> bool:
    end = time.monotonic() + timeout
    while time.monotonic() < end:
        if cond():
            return True
        time.sleep(0.005)
    return cond()


def test_two_goals_run_at_once_with_parallel_2_and_the_third_waits_in_order():
    q, _state, errors = _queue(parallel=2)
    try:
        a, b, c = goals = _goals(q, "abc")[0]
        assert a.started.wait(WAIT_S) and b.started.wait(WAIT_S)
        assert q.running == 2 and a.ran and b.ran
        time.sleep(0.2)                       # several dispatcher polls: c must still wait
        assert not c.started.is_set(), "a third goal started while two ran (parallel=2)"
        b.release.set()                       # the second ends first: c takes its place
        assert c.started.wait(WAIT_S) and c.ran
        assert not a.done.is_set(), "a is still running beside c"
        assert q.running == 2
        for g in goals:
            g.release.set()
        assert all(g.done.wait(WAIT_S) for g in goals)
        assert _wait(lambda: q.running == 0)
        assert errors == []
    finally:
        q.close()


def test_parallel_1_runs_one_goal_at_a_time_in_fifo_order():
    q, _state, _errors = _queue(parallel=1)
    try:
        goals, log = _goals(q, "abc")
        for i, g in enumerate(goals):
            assert g.started.wait(WAIT_S)
            time.sleep(0.1)
            later = goals[i + 1:]
            assert not any(x.started.is_set() for x in later), "a later goal started before this one ended"
            assert q.running == 1
            g.release.set()
            assert g.done.wait(WAIT_S)
        assert [x for x in log if x[0] == "start"] == [("start", "a"), ("start", "b"), ("start", "c")]
    finally:
        q.close()


def test_fifo_start_order_with_parallel_2():
    q, _state, _errors = _queue(parallel=2)
    try:
        goals, log = _goals(q, "abcdef")
        for g in goals:          # release in order as they start: starts must follow admission order
            assert g.started.wait(WAIT_S)
            g.release.set()
        assert all(g.done.wait(WAIT_S) for g in goals)
        assert [name for kind, name in log if kind == "dispatch"] == list("abcdef")
        assert sorted(name for kind, name in log if kind == "start") == list("abcdef")
    finally:
        q.close()


def test_cancelled_waiting_goal_ends_at_once_while_two_run():
    q, _state, _errors = _queue(parallel=2)
    try:
        a, b, c, d = _goals(q, "abcd")[0]
        assert a.started.wait(WAIT_S) and b.started.wait(WAIT_S)
        c.is_cancel_requested = True
        q.wake()
        assert c.done.wait(WAIT_S) and c.ran is False, "a cancelled waiting goal must end unrun"
        assert not d.started.is_set() and q.running == 2
        a.release.set()
        assert d.started.wait(WAIT_S) and d.ran, "the next waiting goal runs after the cancelled one"
        for g in (b, d):
            g.release.set()
        assert b.done.wait(WAIT_S) and d.done.wait(WAIT_S)
    finally:
        q.close()


def test_deactivate_ends_every_waiting_goal_and_running_ones_finish():
    q, state, _errors = _queue(parallel=2)
    try:
        a, b, c, d = _goals(q, "abcd")[0]
        assert a.started.wait(WAIT_S) and b.started.wait(WAIT_S)
        state["active"] = False
        q.end_waiting()
        assert c.done.wait(WAIT_S) and d.done.wait(WAIT_S)
        assert c.ran is False and d.ran is False
        a.release.set()
        b.release.set()
        assert a.done.wait(WAIT_S) and b.done.wait(WAIT_S) and a.ran and b.ran
        assert _wait(lambda: q.running == 0)
    finally:
        q.close()


def test_admission_limit_counts_running_and_waiting():
    q, _state, _errors = _queue(parallel=2)
    try:
        goals, _log = _goals(q, "abc")           # 3 admitted with limit 16
        assert q.admit(limit=3) is not None, "a 4th goal over max_queued_goals=3 must be refused"
        for g in goals:
            g.release.set()
        assert all(g.done.wait(WAIT_S) for g in goals)
        assert _wait(lambda: q.admit(limit=1) is None), "ended goals no longer count"
    finally:
        q.close()
