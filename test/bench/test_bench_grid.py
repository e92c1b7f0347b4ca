"""slm-agent grid end to end with the gold agent: stable cells, kill -9 in the
middle of a cell and resume without a lost or repeated case, one agent node
per (power mode, model) shared by its cells, --shard, the power-mode axis
refused on a machine that cannot switch modes and switched in order (fixture
Orin tree + fake nvpmodel) with each result labelled, the ETA's prior."""
from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import yaml

from slm_agent.bench.grid import GridError, GridProgress, GridSpec, format_duration, parse_shard, shard_cells
from slm_agent.bench.results import read_results
from slm_agent.cli import main
sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "telemetry"))
from telemetry_fixtures import build_jetson_tree, write_fake_nvpmodel  # noqa: E402

pytestmark = pytest.mark.timeout(600)
CLI = [sys.executable, "-m", "slm_agent.cli"]


def _grid(tmp_path: Path, **extra) -> Path:
    data = {"agent": "gold", "strategies": ["direct", "react"], "serializations": ["json"],
            "categories": ["simple_python"], "limit": 3, **extra}
    path = tmp_path / "grid.yaml"
    path.write_text(yaml.safe_dump(data))
    return path


def test_cells_are_stable_and_sharded() -> None:
    spec = GridSpec.parse({"models": ["a", "b"], "strategies": ["direct", "react"], "serializations": ["json", "toon"],
                           "seeds": [0, 1]})
    names = [c.name for c in spec.cells()]
    assert len(names) == 16 and names[0] == "a__direct__json__seed0" and names[1] == "a__direct__json__seed1"
    assert names == [c.name for c in GridSpec.parse(spec.to_dict()).cells()]
    shards = [shard_cells(spec.cells(), (i, 3)) for i in (1, 2, 3)]
    assert sorted(c.name for s in shards for c in s) == sorted(names) and len(shards[0]) == 6
    with pytest.raises(GridError):
        parse_shard("4/3")
    with pytest.raises(GridError) as err:
        GridSpec.parse({"models": ["a"], "strategy": ["x"]})
    assert "unknown key 'strategy'" in str(err.value)


def test_chat_format_and_constrained_axes() -> None:
    # YAML reads on/off as booleans: the grid takes them back as the goal's texts
    spec = GridSpec.parse(yaml.safe_load("models: [a]\nchat_formats: [raw, chat]\nconstrained: [on, off]\n"))
    cells = spec.cells()
    assert [c.name for c in cells] == ["a__direct__json__raw__constrained-on", "a__direct__json__raw__constrained-off",
                                       "a__direct__json__chat__constrained-on", "a__direct__json__chat__constrained-off"]
    values = cells[1].run_values(spec, Path("/tmp/x"))
    assert values["chat_format"] == "raw" and values["constrained"] == "off" and values["output_dir"] == "/tmp/x"
    assert len({c.agent_key for c in cells}) == 1            # one model: one agent for all four cells
    plain = GridSpec.parse({"models": ["a"]}).cells()[0]       # no values: no suffix, no flag
    assert plain.name == "a__direct__json" and "constrained" not in plain.run_values(spec, Path("/x"))
    with pytest.raises(GridError) as err:
        GridSpec.parse({"models": ["a"], "constrained": ["maybe"], "chat_formats": ["xml"]})
    assert len(err.value.args) == 2 and "constrained: expected on and/or off" in err.value.args[0]
    assert "chat_formats: unknown 'xml'" in err.value.args[1]


def _write_results(cell_dir: Path, walls: list[float]) -> None:
    cell_dir.mkdir(parents=True)
    with (cell_dir / "results.jsonl").open("w") as fh:
        for i, w in enumerate(walls):
            fh.write(json.dumps({"case_id": f"c{i}", "category": "c", "model": "m", "valid": True,
                                 "passed": True, "wall_time_s": w}) + "\n")


def test_eta_from_finished_cases_cell_overheads_and_agent_starts(tmp_path: Path) -> None:
    spec = GridSpec.parse({"models": ["a", "b", "c"], "strategies": ["direct", "react"]})
    cells = {c.name: c for c in spec.cells()}     # order: a d, a r, b d, b r, c d, c r
    now = [100.0]
    fresh = GridProgress(tmp_path, spec.cells(), 3, clock=lambda: now[0])
    assert "0/18 cases over 6 cells, ETA ?" in fresh.line()        # nothing finished anywhere yet
    _write_results(tmp_path / "cells" / "a__direct__json", [10.0, 20.0, 30.0])   # a: median 20 s
    _write_results(tmp_path / "cells" / "b__direct__json", [4.0])                # b: 4 s
    (tmp_path / "agents.jsonl").write_text('{"ready_s": 6.0}\n{"ready_s": 8.0}\n')   # agent start: 7 s
    prog = GridProgress(tmp_path, spec.cells(), 3, overheads=[5.0], clock=lambda: now[0])
    # cases: a r 3 x 20, b 2 x 4 + 3 x 4, c (not seen: median of all = 15) 6 x 15 -> 170
    # 5 cells to start x 5 s overhead; agent starts ahead: a, b, c -> 3 x 7 s
    assert prog.eta_s() == pytest.approx(170 + 25 + 21)
    assert "4/18 cases over 6 cells, ETA 0:03:36" in prog.line()
    prog.cell_started(cells["a__react__json"])
    now[0] += 2.0     # 2 of the running cell's 5 s overhead spent: 3 s left of it; its 3 cases, 4 cells, 2 starts
    assert prog.eta_s() == pytest.approx(3 * 20 + 3 + 8 + 12 + 90 + 4 * 5 + 2 * 7)
    now[0] += 68.0
    _write_results(tmp_path / "cells" / "a__react__json", [20.0, 20.0, 20.0])
    assert prog.cell_finished(cells["a__react__json"]) == pytest.approx(10.0)   # 70 s spent, 60 s in cases
    # cases: b 8 + 12, c 2 x 3 x median(10,20,30,20,20,20,4)=20 -> 140; 4 cells x median(5, 10);
    # agent starts: b, c -> 2 x 7
    assert prog.eta_s() == pytest.approx(140 + 4 * 7.5 + 2 * 7)
    assert format_duration(90061) == "25:01:01" and format_duration(float("nan")) == "?"


def test_gold_grid_killed_mid_cell_resumes_without_loss_or_repeat(tmp_path: Path) -> None:
    grid = _grid(tmp_path, bench_args=["--gold-delay", "1.0"])
    out = tmp_path / "g"
    proc = subprocess.Popen([*CLI, "grid", str(grid), "--output-dir", str(out)], stdout=subprocess.PIPE,
                            stderr=subprocess.STDOUT, start_new_session=True)
    first = out / "cells" / "gold__direct__json" / "results.jsonl"
    end = time.monotonic() + 120
    while time.monotonic() < end and not (first.exists() and len(first.read_text().splitlines()) >= 1):
        time.sleep(0.2)
    assert first.exists(), proc.communicate()[0].decode()[-2000:]
    os.kill(proc.pid, signal.SIGKILL)    # the grid CLI; its nodes get SIGTERM from the kernel
    proc.wait()
    assert len(first.read_text().splitlines()) < 3
    res = subprocess.run([*CLI, "grid", str(grid), "--output-dir", str(out)], capture_output=True, text=True,
                         timeout=400)
    assert res.returncode == 0, res.stdout[-3000:] + res.stderr[-2000:]
    assert "6/6 cases over 2 cells" in res.stdout
    assert "ETA ?" not in res.stdout.splitlines()[0]    # priced from the case(s) the killed run finished
    # one gold agent per grid session (the killed one and the resumed one), shared by both cells:
    # no cell started an agent of its own
    starts = [json.loads(line) for line in (out / "agents.jsonl").read_text().splitlines()]
    assert [(s["model"], s["first_cell"]) for s in starts] == [("gold", "gold__direct__json")] * 2
    assert res.stdout.count("grid: starting the gold agent") == 1
    for cell in ("gold__direct__json", "gold__react__json"):
        logs = {p.name for p in (out / "cells" / cell / "logs").iterdir()}
        assert "benchmark.log" in logs and not any(n.startswith("agent") for n in logs), logs
    for cell in ("gold__direct__json", "gold__react__json"):
        recs = read_results(out / "cells" / cell)
        lines = (out / "cells" / cell / "results.jsonl").read_text().splitlines()
        assert len(lines) == len(recs) == 3 and len({r["case_id"] for r in recs}) == 3
        assert all(r["passed"] for r in recs)
    state = json.loads((out / "grid_state.json").read_text())
    assert state["finished"] == ["gold__direct__json", "gold__react__json"]
    # compare across the grid
    assert main(["compare", str(out), "--no-tokens", "--no-plots"]) == 0
    assert (out / "compare" / "compare.md").exists()


@pytest.mark.skipif(os.path.exists("/etc/nvpmodel.conf"), reason="this machine can switch power modes")
def test_power_modes_refused_where_modes_cannot_be_switched(tmp_path: Path, capsys) -> None:
    grid = _grid(tmp_path, power_modes=["MODE_15W"])
    assert main(["grid", str(grid), "--output-dir", str(tmp_path / "g")]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "cannot switch power modes" in err[0]
    assert not (tmp_path / "g").exists()   # refused before anything ran


def test_power_modes_switched_in_order_on_fixture_orin(tmp_path: Path, monkeypatch) -> None:
    spec = build_jetson_tree(tmp_path / "root")
    bin_dir = tmp_path / "bin"
    write_fake_nvpmodel(bin_dir, spec.root, reboot_id=0, broken_id=3)
    monkeypatch.setenv("PATH", f"{bin_dir}{os.pathsep}{os.environ['PATH']}")
    grid = _grid(tmp_path, limit=1, power_modes=["MODE_15W", "MODE_30W"],
                 telemetry={"root": str(spec.root), "reader": "jetson_sysfs"})
    out = tmp_path / "g"
    assert main(["grid", str(grid), "--output-dir", str(out)]) == 0
    calls = (spec.root / "nvpmodel.calls").read_text().splitlines()
    sets = [c for c in calls if c.startswith("-m")]
    assert sets == ["-m 1", "-m 2"]
    for mode in ("MODE_15W", "MODE_30W"):
        for strategy in ("direct", "react"):
            (rec,) = read_results(out / "cells" / f"gold__{strategy}__json__{mode}")
            assert rec["power_mode"] == mode
    # the agent is restarted when the power mode changes, not per cell: 4 cells, 2 agents
    starts = [json.loads(line) for line in (out / "agents.jsonl").read_text().splitlines()]
    assert [(s["power_mode"], s["first_cell"]) for s in starts] == [
        ("MODE_15W", "gold__direct__json__MODE_15W"), ("MODE_30W", "gold__direct__json__MODE_30W")]
