"""slm-agent grid end to end with the gold agent: stable cells, kill -9 in the
middle of a cell and resume without a lost or repeated case, --shard, the
power-mode axis refused on a machine that cannot switch modes and switched
in order (fixture Orin tree + fake nvpmodel) with each result labelled."""
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

from slm_agent.bench.grid import GridError, GridSpec, parse_shard, shard_cells
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
    grid = _grid(tmp_path, strategies=["direct"], limit=1, power_modes=["MODE_15W", "MODE_30W"],
                 telemetry={"root": str(spec.root), "reader": "jetson_sysfs"})
    out = tmp_path / "g"
    assert main(["grid", str(grid), "--output-dir", str(out)]) == 0
    calls = (spec.root / "nvpmodel.calls").read_text().splitlines()
    sets = [c for c in calls if c.startswith("-m")]
    assert sets == ["-m 1", "-m 2"]
    for mode in ("MODE_15W", "MODE_30W"):
        (rec,) = read_results(out / "cells" / f"gold__direct__json__{mode}")
        assert rec["power_mode"] == mode
