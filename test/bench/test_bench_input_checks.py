"""Issue 23 items 3-5: every command checks all its input before it starts work or
writes anything, and no line is dropped silently.  Real CLI processes (``python -m
slm_agent.cli``) where the point is the exit status, the time and what was written."""
from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from pathlib import Path

import pytest

SRC = str(Path(__file__).resolve().parents[2] / "src")


def _cli(*argv: str, cwd: Path, timeout: float = 120) -> tuple[int, str, str, float]:
    env = {**os.environ, "PYTHONPATH": SRC + os.pathsep + os.environ.get("PYTHONPATH", "")}
    t0 = time.monotonic()
    p = subprocess.run([sys.executable, "-m", "slm_agent.cli", *argv], cwd=cwd, env=env, capture_output=True,
                       text=True, timeout=timeout)
    return p.returncode, p.stdout, p.stderr, time.monotonic() - t0


def _rec(case: str, passed: bool, model: str = "m1") -> dict:
    return {"case_id": case, "category": "simple_python", "suite": "bfcl", "model": model, "power_mode": "MAXN",
            "strategy": "direct", "serialization": "json", "valid": True, "passed": passed, "wall_time_s": 1.0,
            "energy_j": None, "started_at": 1000.0, "metrics": [{"ttft_ms": 10.0, "prompt_tokens": 5,
                                                                "decode_tokens": 2}]}


def _run_dir(d: Path, outcomes: list[bool], extra_lines: list[str] = ()) -> Path:
    d.mkdir(parents=True)
    (d / "run.json").write_text(json.dumps({"config": {"model": "m1", "strategy": "direct",
                                                       "serialization": "json", "suite": "bfcl"}}))
    lines = [json.dumps(_rec(f"simple_python_{i}", ok)) for i, ok in enumerate(outcomes)]
    (d / "results.jsonl").write_text("".join(x + "\n" for x in [*lines[:3], *extra_lines, *lines[3:]]))
    return d


# --------------------------------------------------------------------------- grid

@pytest.mark.parametrize("axes, expected", [
    ({"strategies": ["direct", "foo"]}, ["--strategy: must be one of", "'foo'"]),
    ({"categories": ["simple_pythn"]}, ["--categories: unknown BFCL category 'simple_pythn'"]),
    ({"bench_args": ["--case-timeout", "-3"]}, ["--case-timeout: must be a number (> 0)"]),
    ({"bench_args": ["--no-such-flag"]}, ["bench_args: unrecognized arguments: --no-such-flag"]),
    ({"models": ["no-such-model"]}, ["--model:"]),
])
def test_a_grid_with_a_bad_value_exits_2_at_once_and_writes_nothing(tmp_path, axes, expected):
    spec = {"models": ["gemma3-270m-q4km"], "strategies": ["direct"], "categories": ["simple_python"],
            "limit": 1, **axes}
    (tmp_path / "grid.yaml").write_text(json.dumps(spec))
    out = tmp_path / "out"
    code, _, err, took = _cli("grid", "grid.yaml", "--output-dir", str(out), cwd=tmp_path)
    assert code == 2, err
    assert took < 10, f"took {took:.1f} s"
    assert not out.exists(), f"written: {sorted(p.name for p in out.rglob('*'))}"
    lines = err.strip().splitlines()
    assert lines and all(line.startswith("slm-agent grid: ") for line in lines), err
    assert "Traceback" not in err
    for text in expected:
        assert text in err, err


def test_a_cell_that_cannot_start_is_not_called_resumable():
    from slm_agent.bench.grid import GridSpec, run_grid

    said: list[str] = []
    spec = GridSpec.parse({"agent": "gold", "categories": ["simple_python"], "limit": 1})
    import tempfile

    with tempfile.TemporaryDirectory() as d:
        assert run_grid(spec, Path(d), lambda cell, argv: 2, print_fn=said.append) == 2
        assert run_grid(spec, Path(d), lambda cell, argv: 3, print_fn=said.append) == 3
    cant = [s for s in said if "status 2" in s]
    assert cant and "rerun the same command" not in cant[0] and "could not start" in cant[0]
    assert any("status 3" in s and "rerun the same command to resume" in s for s in said)


def test_a_finished_cell_whose_directory_was_removed_runs_again(tmp_path):
    """Deleting a cell's directory is how to rerun it (e.g. after a fix): the grid must not
    skip it because grid_state.json still lists it as finished."""
    from slm_agent.bench.grid import GridSpec, run_grid

    spec = GridSpec.parse({"agent": "gold", "strategies": ["direct", "react"], "categories": ["simple_python"],
                           "limit": 1})
    ran: list[str] = []

    def run_cell(cell, run_dir: Path) -> int:
        ran.append(cell.name)
        run_dir.mkdir(parents=True, exist_ok=True)
        (run_dir / "results.jsonl").write_text(json.dumps(_rec("simple_python_0", True)) + "\n")
        return 0

    said: list[str] = []
    assert run_grid(spec, tmp_path, run_cell, print_fn=said.append) == 0
    assert len(ran) == 2
    assert run_grid(spec, tmp_path, run_cell, print_fn=said.append) == 0
    assert len(ran) == 2                                   # all finished: nothing reruns
    first = ran[0]
    import shutil
    shutil.rmtree(tmp_path / "cells" / first)
    assert run_grid(spec, tmp_path, run_cell, print_fn=said.append) == 0
    assert ran[2:] == [first]
    assert any(first in s and "runs again" in s for s in said)
    assert sorted(json.loads((tmp_path / "grid_state.json").read_text())["finished"]) == sorted(set(ran))


# --------------------------------------------------------------------------- compare / report

def test_compare_and_report_say_how_many_lines_they_skipped(tmp_path):
    run = _run_dir(tmp_path / "grid" / "cells" / "x", [True] * 11,
                   extra_lines=['{"case_id": "simple_python_99", "pass', "\x00\x01garbage",
                                json.dumps({"case_id": "simple_python_50"})])
    code, out, err, _ = _cli("compare", str(tmp_path / "grid"), "--no-tokens", "--no-plots", "--output",
                             str(tmp_path / "cmp"), cwd=tmp_path)
    assert code == 0, err
    assert "3 unreadable line(s)" in err
    md = (tmp_path / "cmp" / "compare.md").read_text()
    assert "3 line(s) of results.jsonl were skipped" in md and "line 4:" in md and "line 6:" in md
    assert "(11/11)" in md
    code, _, err, _ = _cli("compare", str(tmp_path / "grid"), "--no-tokens", "--no-plots", "--strict",
                           "--output", str(tmp_path / "cmp2"), cwd=tmp_path)
    assert code == 2 and "3 unreadable line(s)" in err
    code, _, err, _ = _cli("report", str(run), "--no-plots", cwd=tmp_path)
    assert code == 0 and "3 unreadable line(s)" in err, err
    assert "3 line(s) of results.jsonl were skipped" in (run / "report" / "report.md").read_text()
    code, _, err, _ = _cli("report", str(run), "--no-plots", "--strict", cwd=tmp_path)
    assert code == 2


# --------------------------------------------------------------------------- dataset

def test_dataset_counts_unreadable_lines_and_refuses_an_empty_result(tmp_path):
    run = tmp_path / "run"
    run.mkdir()
    (run / "results.jsonl").write_bytes(b"\n".join(os.urandom(n).replace(b"\n", b"x") for n in (4096, 300)) + b"\n")
    code, out, err, _ = _cli("dataset", str(run), "-o", str(tmp_path / "ds"), cwd=tmp_path)
    assert code == 2, (out, err)
    assert "2 unreadable line(s)" in out + err and "no record kept" in err
    report = json.loads((tmp_path / "ds" / "report.json").read_text())
    assert report["unreadable_lines"] == 2
    code, _, err, _ = _cli("dataset", str(run), "-o", str(tmp_path / "ds2"), "--clusters", "-1", cwd=tmp_path)
    assert code == 2 and "--clusters" in err and "must be an integer >= 1" in err
    assert len(err.strip().splitlines()) == 1, err
    assert not (tmp_path / "ds2").exists()


# --------------------------------------------------------------------------- finetune

@pytest.mark.parametrize("flags, text", [
    (["--max-steps", "-1"], "--max-steps: must be an integer >= 0"),
    (["--lr", "-1"], "--lr: must be a number > 0"),
    (["--rank", "0"], "--rank: must be an integer >= 1"),
    (["--dropout", "1.5"], "--dropout: must be a number in [0, 1)"),
    (["--save-steps", "0"], "--save-steps: must be an integer >= 1"),
])
def test_finetune_refuses_a_bad_option_in_seconds(tmp_path, flags, text):
    ds = tmp_path / "ds"
    ds.mkdir()
    (ds / "train.jsonl").write_text(json.dumps({"messages": [{"role": "user", "content": "hi"},
                                                             {"role": "assistant", "content": "hello"}]}) + "\n")
    code, out, err, took = _cli("finetune", str(ds), "-o", str(tmp_path / "ft"), *flags, cwd=tmp_path)
    assert code == 2, (out, err)
    assert took < 10, f"took {took:.1f} s"
    assert err.strip().splitlines() == [f"slm-agent finetune: {err.strip().split(': ', 1)[1]}"]
    assert text in err
    assert not (tmp_path / "ft").exists()


def test_finetune_refuses_an_empty_dataset_before_loading_a_model(tmp_path):
    ds = tmp_path / "ds"
    ds.mkdir()
    (ds / "train.jsonl").write_text(json.dumps({"messages": [{"role": "user", "content": "only a prompt"}]}) + "\n")
    code, _, err, took = _cli("finetune", str(ds), "-o", str(tmp_path / "ft"), cwd=tmp_path)
    assert code == 2 and "no training example" in err, err
    assert took < 10 and not (tmp_path / "ft").exists()
