"""The node processes an ``slm-agent grid`` keeps across its cells.

Why: starting an agent node per cell reloads the model for every cell (most
of a small cell's time on a slow machine).  A grid instead starts one
telemetry node for the whole grid and one agent node per run of consecutive
cells with the same model and power mode (:attr:`GridCell.agent_key`); each
cell's ``slm-agent bench`` (in-process) starts only its benchmark node (and
recorder) and sends its strategy, serialization, chat format and
constrained switch in every RunTask goal.

What still holds:

* one grid per directory: ``DIR/run.lock`` (:class:`RunLock`), handed to
  every node the grid starts, so a rerun after ``kill -9`` waits for the old
  nodes (they get SIGTERM from the kernel) before starting new ones;
* one DDS domain per grid (:class:`DomainLease`), also held by every node,
  so another run on this machine cannot answer this grid's goals;
* no case lost or repeated: cells are run directories and resume as such.

``DIR/agents.jsonl`` gets one line per agent process started (model, power
mode, pid, seconds until it served goals); ``DIR/logs/agent-<model>.log``
its log (``model ... loaded in`` once per load).
"""
from __future__ import annotations

import json
import os
import re
import signal
import time
from pathlib import Path
from typing import Any, Callable, Optional

from slm_agent.bench.grid import GridCell, GridError, GridSpec
from slm_agent.bench.rundir import RunDirError, RunDirLocked, RunLock, pid_alive
from slm_agent.cli import SharedNodes, _Child, bench_params, build_parser, cmd_bench, node_command
from slm_agent.isolation import DomainLease
from slm_agent.settings import AgentSettings, GoldAgentSettings, params_yaml

AGENTS_FILE = "agents.jsonl"
GRID_HOLDER = "slm-agent grid"
#: how long a rerun waits for the nodes of a killed earlier grid to let go of the directory
ORPHAN_WAIT_S = 30.0
#: log text of an agent that serves goals (agent_node when active, gold_agent_node when up)
READY_TEXT = {"model": "active: serving", "gold": "gold agent ready at"}


def _slug(text: str) -> str:
    return re.sub(r"[^A-Za-z0-9._-]+", "-", text)


def lock_grid_dir(out: Path, print_fn: Callable[[str], None] = print) -> RunLock:
    """``out/run.lock`` for this grid: RunDirLocked (one line) while another live grid holds it;
    nodes left by a killed grid (their CLI dead) are waited for, at most :data:`ORPHAN_WAIT_S`."""
    out.mkdir(parents=True, exist_ok=True)
    end = time.monotonic() + ORPHAN_WAIT_S
    told = False
    while True:
        try:
            return RunLock(out).acquire(GRID_HOLDER)
        except RunDirLocked as exc:
            clis = [h for h in exc.holders if h.get("what") == GRID_HOLDER]
            orphans = clis and not any(pid_alive(int(h.get("pid", 0) or 0)) for h in clis)
            if not orphans or time.monotonic() > end:
                raise
            if not told:
                print_fn(f"grid: waiting up to {ORPHAN_WAIT_S:.0f} s for the nodes of a killed earlier grid "
                         f"to stop")
                told = True
        time.sleep(0.2)


class GridNodes:
    """Telemetry for the whole grid, one agent per (power mode, model); :meth:`run_cell` runs a cell."""

    def __init__(self, spec: GridSpec, out: Path, print_fn: Callable[[str], None] = print) -> None:
        self.spec, self.out, self.print = spec, out, print_fn
        self.log_dir = out / "logs"
        self.lock: Optional[RunLock] = None
        self.domain: Optional[DomainLease] = None
        self.telemetry: Optional[_Child] = None
        self.agent: Optional[_Child] = None
        self.agent_key: Optional[tuple[str, str]] = None
        self._ros_node: Any = None
        self._mode_client: Any = None

    # ------------------------------------------------------------------ lifetime
    def open(self) -> "GridNodes":
        try:
            self.lock = lock_grid_dir(self.out, self.print)
        except RunDirError as exc:
            raise GridError(str(exc)) from None
        try:
            self.domain = DomainLease()
        except (ValueError, RuntimeError) as exc:
            raise GridError(str(exc)) from None
        if self.domain.shared:
            self.print(f"grid: warning: another slm-agent run uses DDS domain {self.domain.domain_id} "
                       "(ROS_DOMAIN_ID); their goals and topics will mix")
        self.log_dir.mkdir(parents=True, exist_ok=True)
        tel = self.spec.telemetry
        ros = ["--ros-args", "-r", "__node:=telemetry", "-p", f"root:={tel.get('root', '/')}"]
        if tel.get("reader"):
            ros += ["-p", f"reader:={tel['reader']}"]
        self.telemetry = self._start("telemetry", node_command("telemetry_node", ros))
        return self

    @property
    def fds(self) -> tuple[int, ...]:
        """Descriptors every node of the grid inherits (grid lock, DDS domain lease)."""
        out = []
        if self.lock is not None and self.lock.fd is not None:
            out.append(self.lock.fd)
        if self.domain is not None and self.domain.fd >= 0:
            out.append(self.domain.fd)
        return tuple(out)

    @property
    def env(self) -> dict[str, str]:
        """This process's environment with the grid's DDS domain (every node of the grid runs in it)."""
        assert self.domain is not None, "open() first"
        return self.domain.env(dict(os.environ))

    def _start(self, name: str, argv: list[str]) -> _Child:
        child = _Child(name, argv, self.log_dir, echo=False, pass_fds=self.fds, env=self.env)
        if self.lock is not None:
            self.lock.add_holder(child.pid, name)
        return child

    def close(self) -> None:
        self.stop_agent()
        if self._ros_node is not None:
            import rclpy

            self._ros_node.destroy_node()
            rclpy.try_shutdown()
            self._ros_node = None
        if self.telemetry is not None:
            self.telemetry.stop(signal.SIGTERM)
            self.telemetry = None
        if self.domain is not None:
            self.domain.release()
        if self.lock is not None:
            self.lock.release()

    def __enter__(self) -> "GridNodes":
        return self.open()

    def __exit__(self, *exc: object) -> None:
        self.close()

    # ------------------------------------------------------------------ agent
    def stop_agent(self) -> None:
        if self.agent is not None:
            self.agent.stop(signal.SIGTERM)
        self.agent, self.agent_key = None, None

    def ensure_agent(self, cell: GridCell, args: Any) -> _Child:
        """The agent for ``cell``: the running one when it has the cell's model and power mode,
        else a new one (the old one stopped first: one model in memory at a time)."""
        if self.agent is not None and self.agent_key == cell.agent_key and self.agent.proc.poll() is None:
            return self.agent
        self.stop_agent()
        gold = args.agent == "gold"
        cls = GoldAgentSettings if gold else AgentSettings
        section = bench_params(args, self.out, None)[cls]   # the values `slm-agent bench` would give it
        name = "agent-" + _slug(cell.model) + (f"__{_slug(cell.power_mode)}" if cell.power_mode else "")
        params = self.out / "agents" / f"{name}.params.yaml"
        params.parent.mkdir(parents=True, exist_ok=True)
        params.write_text(params_yaml({cls: section}, header="Parameters of a grid's shared agent node "
                                                             "(written by slm-agent grid)."), encoding="utf-8")
        t0 = time.monotonic()
        child = self._start(name, node_command("gold_agent_node" if gold else "agent_node",
                                               ["--ros-args", "--params-file", str(params)]))
        self.print(f"grid: starting {'the gold agent' if gold else 'the agent for model ' + cell.model}"
                   + (f" in power mode {cell.power_mode}" if cell.power_mode else "")
                   + f" (pid {child.pid}, log {child.log_path})")
        if not child.wait_for_text(READY_TEXT["gold" if gold else "model"], float(args.agent_wait_s)):
            why = child.error_text() or ("exited" if child.proc.poll() is not None else "not ready in time")
            child.stop(signal.SIGTERM)
            raise GridError(f"the agent for {cell.model} did not start: {why} (log: {child.log_path})")
        ready_s = time.monotonic() - t0
        self.print(f"grid: agent for {cell.model} serving goals after {ready_s:.1f} s")
        with (self.out / AGENTS_FILE).open("a", encoding="utf-8") as fh:
            fh.write(json.dumps({"model": cell.model, "power_mode": cell.power_mode, "pid": child.pid,
                                 "first_cell": cell.name, "ready_s": round(ready_s, 3),
                                 "started_at": time.time()}) + "\n")
        self.agent, self.agent_key = child, cell.agent_key
        return child

    def run_cell(self, cell: GridCell, argv: list[str]) -> int:
        """``slm-agent bench`` for one cell, in-process, against the shared agent and telemetry."""
        args = build_parser().parse_args(argv)
        agent = self.ensure_agent(cell, args)
        code = cmd_bench(args, shared=SharedNodes(agent=agent, env=self.env, fds=self.fds))
        if agent.proc.poll() is not None:   # died during the cell: the next cell starts a new one
            self.agent, self.agent_key = None, None
        return code

    # ------------------------------------------------------------------ power modes
    def set_mode(self, mode: str) -> str:
        """Switch the power mode through the grid's telemetry node (``/telemetry/power_mode``);
        GridError when it was not set.  The service answers once the mode is confirmed."""
        import rclpy
        from rclpy.executors import SingleThreadedExecutor

        from slm_agent.srv import PowerMode

        if self._ros_node is None:
            assert self.domain is not None and self.telemetry is not None, "open() first"
            rclpy.init(domain_id=self.domain.domain_id)
            self._ros_node = rclpy.create_node("slm_agent_grid")
            self._mode_client = self._ros_node.create_client(PowerMode, "/telemetry/power_mode")
            end = time.monotonic() + 60.0
            while not self._mode_client.wait_for_service(timeout_sec=0.5):
                if self.telemetry.proc.poll() is not None or time.monotonic() > end:
                    raise GridError(f"the grid's telemetry node did not offer /telemetry/power_mode: "
                                    f"{self.telemetry.error_text() or 'no error logged'} "
                                    f"(log: {self.telemetry.log_path})")
        future = self._mode_client.call_async(PowerMode.Request(mode=mode))
        ex = SingleThreadedExecutor()
        ex.add_node(self._ros_node)
        ex.spin_until_future_complete(future, timeout_sec=60.0)
        ex.remove_node(self._ros_node)
        res = future.result()
        if res is None or not res.success:
            raise GridError(f"power mode {mode}: not set ({res.message if res is not None else 'no answer'})")
        return res.message


def main_grid(spec: GridSpec, out: Path, shard: tuple[int, int], print_fn: Callable[[str], None] = print) -> int:
    """What ``slm-agent grid`` runs once the grid file and the power modes were checked."""
    from slm_agent.bench.grid import check_grid_dir, run_grid

    check_grid_dir(spec, out)   # before any node starts: another grid here is refused at once
    with GridNodes(spec, out, print_fn) as nodes:
        return run_grid(spec, out, nodes.run_cell, shard=shard,
                        set_mode=nodes.set_mode if spec.power_modes else None, print_fn=print_fn)
