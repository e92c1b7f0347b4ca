"""Ablation grid (``slm-agent grid GRID.yaml --output-dir DIR``).

A grid file names the axes; every combination is a *cell*, a normal run
directory ``DIR/cells/<name>`` run by the same code as ``slm-agent bench``
(:func:`slm_agent.launcher.bench.run_bench`, in-process), so a cell resumes exactly as a
run directory does (no case lost or repeated after Ctrl-C or ``kill -9``);
the grid reruns the cells not marked finished in ``DIR/grid_state.json`` (and those marked
finished whose directory was removed: deleting a cell's directory is how to rerun it).

A model is loaded once per run of consecutive cells with the same model and
power mode: the grid starts one agent node (and one telemetry node) and every
cell's benchmark sends its strategy, serialization, chat format and
constrained switch in each RunTask goal (see :mod:`slm_agent.launcher.grid`).

Grid file (YAML)::

    agent: model               # model | gold
    models: [gemma3-270m-q4km, smollm2-135m-q4_1]
    fallback_models: []        # cascade (issue 26): the agent's fallback_model per cell; "" = none
    strategies: [direct, react]
    serializations: [json, toon]
    chat_formats: []           # raw | chat per goal; empty = the agent's default
    constrained: []            # on | off per goal (JSON-schema constrained decoding); empty = default
    power_modes: []            # Jetson nvpmodel modes, switched in this order
    suite: bfcl
    categories: [simple_python]
    ids: []
    limit: 2
    seeds: [0]                 # one repeat per seed (benchmark node's seed)
    protocol: suite
    record: false              # rosbag2 bag per cell
    bench_args: []             # more `slm-agent bench` flags for every cell
    telemetry: {root: /, reader: auto}

Cells are ordered power mode, model, fallback model, strategy, serialization,
chat format, constrained, seed (each mode is switched to once; each model
and fallback pair is loaded once per mode); names are stable
(``<model>__<strategy>__<serialization>`` plus ``__<chat format>``,
``__constrained-<on|off>``, ``__<mode>``, ``__seed<N>`` when those axes have
values and ``__fb-<fallback model>`` for a cell with a fallback, so a grid
without the ``fallback_models`` axis keeps its cell names and resumes).
Other cascade settings (``--escalate-on``, ``--escalate-threshold``,
``--escalate-signal``) go in ``bench_args``.  ``--shard i/n`` runs cells
``i-1, i-1+n, ...`` of that order.
"""
from __future__ import annotations

import itertools
import json
import math
import re
import statistics
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Optional, Sequence

import yaml

from slm_agent.bench.results import RESULTS_FILE, num, read_results, write_json_atomic

GRID_KEYS = {"agent", "models", "fallback_models", "strategies", "serializations", "chat_formats", "constrained", "power_modes",
             "suite", "categories", "ids", "limit", "seeds", "protocol", "record", "bench_args", "telemetry",
             "case_timeout_s"}
#: the per-goal switch values of the ``constrained`` axis (agent/goal_options.py's SWITCH_VALUES less "")
CONSTRAINED_VALUES = ("on", "off")
STATE_FILE = "grid_state.json"
SPEC_FILE = "grid.json"


class GridError(Exception):
    """The grid cannot run: each arg is one line (exit 2)."""


@dataclass(frozen=True)
class GridCell:
    index: int
    name: str
    model: str
    strategy: str
    serialization: str
    power_mode: str
    seed: int
    chat_format: str = ""     # "" = the agent's default
    constrained: str = ""     # "" | on | off
    fallback_model: str = ""  # "" = no cascade (issue 26)

    @property
    def agent_key(self) -> tuple[str, ...]:
        """Cells with the same key share one agent node (one model load, and its fallback's)."""
        return (self.power_mode, self.model, self.fallback_model) if self.fallback_model else (
            self.power_mode, self.model)

    def run_values(self, spec: "GridSpec", out: Path) -> dict[str, Any]:
        """This cell's run settings by name (what :class:`slm_agent.launcher.bench.BenchRun`
        is built from), with ``output_dir`` = ``out``; the grid's ``bench_args`` come on top."""
        values: dict[str, Any] = {"output_dir": str(out), "suite": spec.suite, "strategy": self.strategy,
                                  "serialization": self.serialization, "seed": self.seed,
                                  "protocol": spec.protocol, "limit": spec.limit, "power_mode": self.power_mode}
        values.update({"ids": ",".join(spec.ids)} if spec.ids else {"categories": ",".join(spec.categories)})
        if spec.agent != "gold":
            values["model"] = self.model
        if self.fallback_model:
            values["fallback_model"] = self.fallback_model
        if self.chat_format:   # "": the agent's default, nothing sent
            values["chat_format"] = self.chat_format
        if self.constrained:
            values["constrained"] = self.constrained
        if spec.case_timeout_s:
            values["case_timeout_s"] = spec.case_timeout_s
        return values


def _bench_default(name: str) -> Any:
    """A grid axis or value not given is the bench run's default: the benchmark node's
    declaration (:class:`slm_agent.settings.BenchmarkSettings`), not a copy of it."""
    from slm_agent.settings import BenchmarkSettings

    return BenchmarkSettings.model_fields[name].default


def _list(value: Any, key: str, errors: list[str], default: Sequence[Any] = ()) -> list[Any]:
    if value is None:
        return list(default)
    if isinstance(value, (str, int)):
        return [value]
    if not isinstance(value, list):
        errors.append(f"{key}: expected a list, got {type(value).__name__}")
        return list(default)
    return value


def _switch(value: Any) -> str:
    """YAML reads ``on``/``off`` as booleans: take them back as the goal's texts."""
    if isinstance(value, bool):
        return "on" if value else "off"
    return str(value).strip().lower()


@dataclass
class GridSpec:
    agent: str = "model"
    models: list[str] = field(default_factory=list)
    fallback_models: list[str] = field(default_factory=list)
    strategies: list[str] = field(default_factory=lambda: [_bench_default("strategy")])
    serializations: list[str] = field(default_factory=lambda: [_bench_default("serialization")])
    chat_formats: list[str] = field(default_factory=list)
    constrained: list[str] = field(default_factory=list)
    power_modes: list[str] = field(default_factory=list)
    suite: str = field(default_factory=lambda: _bench_default("suite"))
    categories: list[str] = field(default_factory=lambda: [c for c in _bench_default("categories").split(",") if c])
    ids: list[str] = field(default_factory=list)
    limit: int = field(default_factory=lambda: _bench_default("limit"))
    seeds: list[int] = field(default_factory=lambda: [_bench_default("seed")])
    protocol: str = field(default_factory=lambda: _bench_default("protocol"))
    record: bool = False
    bench_args: list[str] = field(default_factory=list)
    telemetry: dict[str, Any] = field(default_factory=dict)
    case_timeout_s: float = 0.0

    @classmethod
    def load(cls, path: str | Path) -> "GridSpec":
        try:
            data = yaml.safe_load(Path(path).read_text(encoding="utf-8")) or {}
        except OSError as exc:
            raise GridError(f"{path}: {exc.strerror or exc}") from None
        except yaml.YAMLError as exc:
            raise GridError(f"{path}: not YAML ({str(exc).splitlines()[0]})") from None
        return cls.parse(data, str(path))

    @classmethod
    def parse(cls, data: Any, where: str = "grid") -> "GridSpec":
        if not isinstance(data, dict):
            raise GridError(f"{where}: expected a mapping of axes")
        errors = [f"{where}: unknown key {k!r} (known: {', '.join(sorted(GRID_KEYS))})"
                  for k in data if k not in GRID_KEYS]
        s = cls()
        s.agent = str(data.get("agent", "model"))
        if s.agent not in ("model", "gold"):
            errors.append(f"agent: expected model or gold, got {s.agent!r}")
        for key in ("models", "fallback_models", "strategies", "serializations", "chat_formats", "power_modes",
                    "categories", "ids", "bench_args"):
            setattr(s, key, [str(v) for v in _list(data.get(key), key, errors, getattr(s, key))])
        s.chat_formats = [v.strip().lower() for v in s.chat_formats]
        s.constrained = [_switch(v) for v in _list(data.get("constrained"), "constrained", errors)]
        bad = [v for v in s.constrained if v not in CONSTRAINED_VALUES]
        if bad:
            errors.append(f"constrained: expected on and/or off, got {', '.join(map(repr, bad))}")
        if s.chat_formats:
            from slm_agent.settings import choices_of

            known = [c for c in choices_of("chat_format") if c]   # "" is the agent's default, not a value
            bad = [v for v in s.chat_formats if v not in known]
            if bad:
                errors.append(f"chat_formats: unknown {', '.join(map(repr, bad))} (known: {', '.join(known)})")
        seeds, s.seeds = s.seeds, []
        for v in _list(data.get("seeds"), "seeds", errors, seeds):
            if isinstance(v, bool) or not isinstance(v, int):
                errors.append(f"seeds: expected integers, got {v!r}")
            else:
                s.seeds.append(v)
        s.suite = str(data.get("suite", s.suite))
        s.protocol = str(data.get("protocol", s.protocol))
        limit = data.get("limit", s.limit)
        if isinstance(limit, bool) or not isinstance(limit, int) or limit < 0:
            errors.append(f"limit: expected an integer >= 0, got {limit!r}")
        else:
            s.limit = limit
        s.record = bool(data.get("record", False))
        s.case_timeout_s = float(data.get("case_timeout_s", 0.0) or 0.0)
        tel = data.get("telemetry") or {}
        if not isinstance(tel, dict) or set(tel) - {"root", "reader"}:
            errors.append("telemetry: expected a mapping with root and/or reader")
        else:
            s.telemetry = dict(tel)
        if s.agent == "model" and not s.models:
            errors.append("models: at least one model profile (or agent: gold)")
        if s.agent == "gold":
            s.models = ["gold"]
            if any(s.fallback_models):
                errors.append("fallback_models: the gold agent has no fallback (agent: model only)")
        for key in ("models", "fallback_models", "strategies", "serializations", "chat_formats", "constrained", "power_modes", "seeds"):
            vals = getattr(s, key)
            if len(set(vals)) != len(vals):
                errors.append(f"{key}: a value is listed twice")
        if errors:
            raise GridError(*errors)
        return s

    def to_dict(self) -> dict[str, Any]:
        return {k: getattr(self, k) for k in sorted(GRID_KEYS)}

    def cells(self) -> list[GridCell]:
        out = []
        for i, (mode, model, fb, strat, ser, fmt, con, seed) in enumerate(itertools.product(
                self.power_modes or [""], self.models, self.fallback_models or [""], self.strategies,
                self.serializations, self.chat_formats or [""], self.constrained or [""], self.seeds)):
            parts = ([model, strat, ser] + ([fmt] if fmt else []) + ([f"constrained-{con}"] if con else [])
                     + ([mode] if mode else []) + ([f"seed{seed}"] if len(self.seeds) > 1 else [])
                     + ([f"fb-{fb}"] if fb else []))
            name = "__".join(re.sub(r"[^A-Za-z0-9._-]+", "-", p) for p in parts)
            out.append(GridCell(i, name, model, strat, ser, mode, seed, fmt, con, fb))
        return out


def parse_shard(text: Optional[str]) -> tuple[int, int]:
    if not text:
        return 1, 1
    m = re.fullmatch(r"\s*(\d+)\s*/\s*(\d+)\s*", text)
    if not m or not 1 <= int(m.group(1)) <= int(m.group(2)):
        raise GridError(f"--shard: expected i/n with 1 <= i <= n, got {text!r}")
    return int(m.group(1)), int(m.group(2))


def shard_cells(cells: Sequence[GridCell], shard: tuple[int, int]) -> list[GridCell]:
    i, n = shard
    return [c for c in cells if c.index % n == i - 1]


def cell_records(out: Path, cell: GridCell) -> list[dict[str, Any]]:
    path = out / "cells" / cell.name / RESULTS_FILE
    return read_results(path) if path.exists() else []


def format_duration(seconds: float) -> str:
    """``1:02:03`` (hours not wrapped at a day); ``?`` when unknown."""
    if not math.isfinite(seconds) or seconds < 0:
        return "?"
    s = int(round(seconds))
    return f"{s // 3600}:{s // 60 % 60:02d}:{s % 60:02d}"


class GridProgress:
    """Cases done over the (shard of the) grid, counted in the cells' results.jsonl, and an ETA.

    The ETA is a sum of measured parts, so it has a value before the first
    case of this session finishes (when an earlier session or another cell
    finished one):

    * each remaining case at the median ``wall_time_s`` of its model's cases
      already in the grid directory (the median over all models for a model
      not seen yet; ``?`` while no case finished anywhere);
    * each cell not started yet at the median time a cell spent beyond its
      cases (nodes starting, report), measured per finished cell and kept in
      ``grid_state.json`` for later sessions (0 until one was measured); the
      running cell at what of that median it has not spent yet;
    * each agent start ahead (a change of model or power mode in the
      remaining order) at the median seconds until an agent served goals
      (``agents.jsonl``)."""

    def __init__(self, out: Path, cells: Sequence[GridCell], cases_per_cell: int,
                 overheads: Sequence[float] = (), clock: Callable[[], float] = time.monotonic) -> None:
        self.out, self.cells, self.per_cell = out, list(cells), cases_per_cell
        self.total = cases_per_cell * len(self.cells)
        self.clock = clock
        self.overheads = [float(v) for v in overheads if math.isfinite(num(v))]
        self.current: Optional[GridCell] = None
        self._current_t0 = 0.0
        self._current_walls = 0.0
        self._done: dict[str, int] = {}
        self._times: dict[str, list[float]] = {}   # model -> wall times of its finished cases
        self._walls: dict[str, float] = {}         # cell -> sum of its cases' wall times
        self._lock = threading.RLock()             # the progress ticker thread reads while a cell ends
        self.refresh()

    def refresh(self) -> None:
        times: dict[str, list[float]] = {}
        for c in self.cells:
            recs = cell_records(self.out, c)
            walls = [t for t in (num(r.get("wall_time_s")) for r in recs) if math.isfinite(t) and t >= 0]
            with self._lock:
                self._done[c.name] = min(self.per_cell, len(recs))
                self._walls[c.name] = sum(walls)
            times.setdefault(c.model, []).extend(walls)
        with self._lock:
            self._times = times

    def done(self) -> int:
        return sum(self._done.values())

    def case_s(self, model: str) -> float:
        """Prior seconds per case of ``model`` (NaN before any case finished anywhere in the grid)."""
        own = self._times.get(model) or []
        pool = own or [t for ts in self._times.values() for t in ts]
        return statistics.median(pool) if pool else math.nan

    def agent_start_s(self) -> float:
        try:
            lines = (self.out / "agents.jsonl").read_text(encoding="utf-8").splitlines()
        except OSError:
            return 0.0
        vals = []
        for line in lines:
            try:
                vals.append(float(json.loads(line)["ready_s"]))
            except (ValueError, KeyError, TypeError):
                continue
        return statistics.median(vals) if vals else 0.0

    def cell_started(self, cell: GridCell) -> None:
        self.refresh()
        with self._lock:
            self.current, self._current_t0 = cell, self.clock()
            self._current_walls = self._walls.get(cell.name, 0.0)

    def cell_finished(self, cell: GridCell) -> float:
        """Record the cell's time beyond its cases' wall times; returns it (seconds)."""
        self.refresh()
        with self._lock:
            spent = self.clock() - self._current_t0
            overhead = max(0.0, spent - (self._walls.get(cell.name, 0.0) - self._current_walls))
            self.overheads.append(overhead)
            self.current = None
        return overhead

    def eta_s(self) -> float:
        with self._lock:
            return self._eta_s()

    def _eta_s(self) -> float:
        open_cells = [c for c in self.cells if self._done[c.name] < self.per_cell]
        if not open_cells:
            return 0.0
        cases = sum((self.per_cell - self._done[c.name]) * self.case_s(c.model) for c in open_cells)
        running = self.current.name if self.current is not None else None
        pending = [c for c in open_cells if c.name != running]
        overhead = statistics.median(self.overheads) if self.overheads else 0.0
        keys = ([self.current.agent_key] if self.current is not None else []) + [c.agent_key for c in pending]
        starts = sum(1 for i, k in enumerate(keys) if i > 0 and k != keys[i - 1]) + (self.current is None)
        current = 0.0   # the running cell's overhead not spent yet (its nodes stopping, its report)
        if self.current is not None:
            spent = self.clock() - self._current_t0 - (self._walls.get(self.current.name, 0.0) - self._current_walls)
            current = max(0.0, overhead - spent)
        return cases + current + len(pending) * overhead + starts * self.agent_start_s()

    def line(self, prefix: str = "") -> str:
        self.refresh()
        return (f"grid: {prefix}{self.done()}/{self.total} cases over {len(self.cells)} cells, "
                f"ETA {format_duration(self.eta_s())}")


def check_power_modes(spec: GridSpec) -> Any:
    """The power-mode controller the telemetry node will use, or GridError (one line)."""
    if not spec.power_modes:
        return None
    from slm_agent.telemetry.power_mode import PowerModeController

    root = str(spec.telemetry.get("root", "/"))
    info = PowerModeController(root).info()
    if not info.supported:
        raise GridError(f"power_modes: this machine's telemetry cannot switch power modes "
                        f"({info.message or 'nvpmodel unsupported'}); remove power_modes from the grid")
    names = {n.upper() for _i, n in info.modes} | {str(i) for i, _n in info.modes}
    bad = [m for m in spec.power_modes if m.upper() not in names]
    if bad:
        raise GridError(f"power_modes: unknown mode(s) {', '.join(bad)}; this machine has "
                        + ", ".join(f"{i}={n}" for i, n in info.modes))
    return info


def check_grid_dir(spec: GridSpec, out: Path) -> None:
    """Refuse a directory that holds another grid (GridError); write grid.json in a new one."""
    out.mkdir(parents=True, exist_ok=True)
    spec_path = out / SPEC_FILE
    now = json.loads(json.dumps(spec.to_dict()))
    if spec_path.exists():
        try:
            old = json.loads(spec_path.read_text(encoding="utf-8"))
        except (OSError, ValueError):
            old = None
        if isinstance(old, dict):
            # keys added after that grid was written read as their defaults
            old = {**json.loads(json.dumps(GridSpec().to_dict())), **old}
            diff = sorted(k for k in now if old.get(k) != now[k])
            if diff:
                raise GridError(f"{out} holds another grid (differs in {', '.join(diff)}); use another --output-dir")
            return
    write_json_atomic(spec_path, now)


#: runs one cell: (cell, its run directory) -> exit status
CellRunner = Callable[[GridCell, Path], int]


def run_grid(spec: GridSpec, out: Path, run_cell: CellRunner, *, shard: tuple[int, int] = (1, 1),
             set_mode: Optional[Callable[[str], str]] = None, print_fn: Callable[[str], None] = print) -> int:
    """Run the (shard of the) grid; returns the exit status (0, 2, 3, 130).

    ``run_cell`` runs one cell's benchmark against the grid's nodes
    (:meth:`slm_agent.launcher.grid.GridNodes.run_cell`: one agent node
    per model and power mode, one telemetry node); ``set_mode`` switches the
    power mode.  Plain Python: the nodes are the caller's."""
    from slm_agent.bench.runner import select_scenarios

    check_grid_dir(spec, out)
    scenarios = select_scenarios(spec.suite, [] if spec.ids else spec.categories, spec.ids, spec.limit)
    cells = shard_cells(spec.cells(), shard)
    state_path = out / STATE_FILE
    try:
        state = json.loads(state_path.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        state = {}
    # a cell marked finished whose directory was removed (to rerun it, e.g. after a fix) runs again
    marked = set(state.get("finished", []))
    finished = {name for name in marked if (out / "cells" / name / RESULTS_FILE).exists()}
    overheads = state.setdefault("cell_overhead_s", {})
    for name in sorted(marked - finished):
        overheads.pop(name, None)
        print_fn(f"grid: cell {name} was finished but its directory is gone: it runs again")
    progress = GridProgress(out, cells, len(scenarios), overheads=list(overheads.values()))
    print_fn(f"grid: {len(cells)} cells" + (f" (shard {shard[0]}/{shard[1]})" if shard != (1, 1) else "")
             + f", {len(scenarios)} cases each; {sum(c.name in finished for c in cells)} finished earlier; "
             + progress.line().removeprefix("grid: "))
    stop = threading.Event()

    def ticker() -> None:
        while not stop.wait(15.0):
            print_fn(progress.line())

    threading.Thread(target=ticker, daemon=True, name="grid-progress").start()
    mode_now = None
    try:
        for k, cell in enumerate(cells, 1):
            if cell.name in finished:
                continue
            if cell.power_mode and cell.power_mode != mode_now:
                if set_mode is None:
                    raise GridError("power modes need a telemetry node to switch them (set_mode)")
                print_fn(f"grid: power mode -> {cell.power_mode}: {set_mode(cell.power_mode)}")
                mode_now = cell.power_mode
            print_fn(f"grid: cell {k}/{len(cells)} {cell.name}")
            progress.cell_started(cell)
            code = run_cell(cell, out / "cells" / cell.name)
            if code != 0:
                if code == 2:   # could not start: the same command would fail the same way
                    print_fn(f"grid: cell {cell.name} could not start (status 2, its reason above); "
                             f"fix that before rerunning")
                else:
                    print_fn(f"grid: cell {cell.name} ended with status {code}; rerun the same command to resume")
                return code
            finished.add(cell.name)
            overheads[cell.name] = round(progress.cell_finished(cell), 3)
            state["finished"] = sorted(finished)
            write_json_atomic(state_path, state)
            print_fn(progress.line(f"cell {k}/{len(cells)} finished; "))
    except KeyboardInterrupt:
        print_fn("grid: interrupted; rerun the same command to resume")
        return 130
    finally:
        stop.set()
    print_fn(f"grid: done; compare with: slm-agent compare {out}")
    return 0
