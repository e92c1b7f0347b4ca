"""The node processes an ``slm-agent grid`` keeps across its cells.

Why: starting an agent node per cell reloads the model for every cell (most
of a small cell's time on a slow machine).  A grid instead starts one
telemetry node for the whole grid and one agent node per run of consecutive
cells with the same model and power mode (:attr:`GridCell.agent_key`); each
cell is a typed bench run (:class:`~slm_agent.launcher.bench.BenchRun`, built
from the cell's values, never from command-line text) run in-process by
:func:`~slm_agent.launcher.bench.run_bench`, which starts only its benchmark
node (and recorder) and sends the cell's strategy, serialization, chat
format and constrained switch in every RunTask goal.  An agent is ready when
ROS says so (lifecycle state ``active``; the gold agent's action server),
not when its log says so.

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
from slm_agent.isolation import DomainLease
from slm_agent.launcher.bench import (SWITCHES, BenchError, BenchRun, SharedNodes, check_run, parse_run_flags,
                                     run_bench)
from slm_agent.launcher.processes import NodeProcess, node_command
from slm_agent.settings import AgentSettings, GoldAgentSettings, params_yaml

AGENTS_FILE = "agents.jsonl"
GRID_HOLDER = "slm-agent grid"
#: how long a rerun waits for the nodes of a killed earlier grid to let go of the directory
ORPHAN_WAIT_S = 30.0


def _slug(text: str) -> str:
    return re.sub(r"[^A-Za-z0-9._-]+", "-", text)


def cell_run(spec: GridSpec, cell: GridCell, cell_dir: Path) -> BenchRun:
    """The bench run of ``cell`` in ``cell_dir``: the cell's values, then the grid's
    ``bench_args`` on top; quiet, no telemetry node of its own (the grid's serves).
    :class:`BenchError` (one line each) for a bad value."""
    extra = parse_run_flags(spec.bench_args)
    switches = {k: extra.pop(k) for k in SWITCHES if k in extra}
    return BenchRun.from_values({**cell.run_values(spec, cell_dir), **extra},
                                agent=switches.get("agent", spec.agent), record=switches.get("record", spec.record),
                                telemetry=False, report=not switches.get("no_report", False),
                                quiet=switches.get("quiet", True))


def check_grid_cells(spec: GridSpec, out: Path) -> list[str]:
    """Every cell's bench run checked by the bench's own validators (settings, strategies,
    serializations, models, categories, ids, ``bench_args``) before anything is written; one
    line per distinct problem, naming the first cell that has it."""
    from slm_agent.bench import runner

    problems: dict[str, list[str]] = {}
    try:   # the case set is every cell's: checked once, even where a cell's values fail first
        if not runner.select_scenarios(spec.suite, [] if spec.ids else spec.categories, spec.ids, spec.limit):
            problems[f"{'--ids' if spec.ids else '--categories'}: no case selected"] = []
    except Exception as exc:  # noqa: BLE001 - UnknownCategoryError, KeyError, ValueError: one line
        problems[f"{'--ids' if spec.ids else '--categories'}: {exc.args[0] if exc.args else exc}"] = []
    for cell in spec.cells():
        try:
            check_run(cell_run(spec, cell, out / "cells" / cell.name))
        except BenchError as exc:
            for line in exc.args:
                problems.setdefault(str(line), []).append(cell.name)
    return [text if not cells else f"{text} (cell {cells[0]}" + (f" and {len(cells) - 1} more)" if len(cells) > 1
                                                                   else ")")
            for text, cells in problems.items()]


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
        self.telemetry: Optional[NodeProcess] = None
        self.agent: Optional[NodeProcess] = None
        self.agent_key: Optional[tuple[str, ...]] = None
        self._graph: Any = None          # launcher.ready.RosGraph in the grid's domain
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

    @property
    def graph(self):
        """The grid's :class:`~slm_agent.launcher.ready.RosGraph` (started on first use)."""
        if self._graph is None:
            from slm_agent.launcher.ready import RosGraph

            assert self.domain is not None, "open() first"
            self._graph = RosGraph(self.domain.domain_id, "slm_agent_grid")
        return self._graph

    def _start(self, name: str, argv: list[str]) -> NodeProcess:
        child = NodeProcess(name, argv, self.log_dir, echo=False, pass_fds=self.fds, env=self.env)
        if self.lock is not None:
            self.lock.add_holder(child.pid, name)
        return child

    def close(self) -> None:
        self.stop_agent()
        if self._graph is not None:
            self._graph.close()
            self._graph = None
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

    def ensure_agent(self, cell: GridCell, run: BenchRun) -> NodeProcess:
        """The agent for ``cell``: the running one when it has the cell's model and power mode,
        else a new one (the old one stopped first: one model in memory at a time)."""
        # the gold agent answers for one suite (its parameter): cells of another suite need their own
        key = (*cell.agent_key, run.benchmark.suite) if run.gold else cell.agent_key
        if self.agent is not None and self.agent_key == key and self.agent.alive():
            return self.agent
        self.stop_agent()
        cls = GoldAgentSettings if run.gold else AgentSettings
        section = run.params()[cls]   # the values a bench run gives its own agent
        name = ("agent-" + _slug(cell.model) + (f"__{_slug(cell.power_mode)}" if cell.power_mode else "")
                + (f"__fb-{_slug(cell.fallback_model)}" if cell.fallback_model else ""))
        params = self.out / "agents" / f"{name}.params.yaml"
        params.parent.mkdir(parents=True, exist_ok=True)
        params.write_text(params_yaml({cls: section}, header="Parameters of a grid's shared agent node "
                                                             "(written by slm-agent grid)."), encoding="utf-8")
        t0 = time.monotonic()
        child = self._start(name, node_command("gold_agent_node" if run.gold else "agent_node",
                                               ["--ros-args", "--params-file", str(params)]))
        self.print(f"grid: starting {'the gold agent' if run.gold else 'the agent for model ' + cell.model}"
                   + (f" in power mode {cell.power_mode}" if cell.power_mode else "")
                   + f" (pid {child.pid}, log {child.log_path})")
        wait_s = float(run.benchmark.agent_wait_s)
        ready = (self.graph.wait_action_server(run.agent.action_name, wait_s, child.alive) if run.gold  # type: ignore[union-attr]
                 else self.graph.wait_active(f"/{AgentSettings.NODE}", wait_s, child.alive))
        if not ready:
            why = child.error_text() or ("exited" if not child.alive() else "not ready in time")
            child.stop(signal.SIGTERM)
            raise GridError(f"the agent for {cell.model} did not start: {why} (log: {child.log_path})")
        ready_s = time.monotonic() - t0
        self.print(f"grid: agent for {cell.model} serving goals after {ready_s:.1f} s")
        with (self.out / AGENTS_FILE).open("a", encoding="utf-8") as fh:
            fh.write(json.dumps({"model": cell.model, "power_mode": cell.power_mode, "pid": child.pid,
                                 "first_cell": cell.name, "ready_s": round(ready_s, 3),
                                 "started_at": time.time()}) + "\n")
        self.agent, self.agent_key = child, key
        return child

    def run_cell(self, cell: GridCell, cell_dir: Path) -> int:
        """One cell's bench run, in-process, against the shared agent and telemetry."""
        try:
            run = cell_run(self.spec, cell, cell_dir)
        except BenchError as exc:   # checked before the grid started: only a changed grid file gets here
            for line in exc.args:
                self.print(f"slm-agent bench: {line}")
            return 2
        agent = self.ensure_agent(cell, run)
        code = run_bench(run, shared=SharedNodes(agent=agent, env=self.env, fds=self.fds))
        if not agent.alive():   # died during the cell: the next cell starts a new one
            self.agent, self.agent_key = None, None
        return code

    # ------------------------------------------------------------------ power modes
    def set_mode(self, mode: str) -> str:
        """Switch the power mode through the grid's telemetry node (``/telemetry/power_mode``);
        GridError when it was not set.  The service answers once the mode is confirmed."""
        from rclpy.executors import SingleThreadedExecutor

        from slm_agent.srv import PowerMode

        if self._mode_client is None:
            assert self.telemetry is not None, "open() first"
            self._mode_client = self.graph.node.create_client(PowerMode, "/telemetry/power_mode")
            end = time.monotonic() + 60.0
            while not self._mode_client.wait_for_service(timeout_sec=0.5):
                if not self.telemetry.alive() or time.monotonic() > end:
                    raise GridError(f"the grid's telemetry node did not offer /telemetry/power_mode: "
                                    f"{self.telemetry.error_text() or 'no error logged'} "
                                    f"(log: {self.telemetry.log_path})")
        future = self._mode_client.call_async(PowerMode.Request(mode=mode))
        ex = SingleThreadedExecutor(context=self.graph.context)
        ex.add_node(self.graph.node)
        ex.spin_until_future_complete(future, timeout_sec=60.0)
        ex.remove_node(self.graph.node)
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
