"""Every comparison published under ``results/`` is rebuilt from its committed per-case
records: ``slm-agent compare <dir>/cells/* --no-tokens`` gives byte-identical
compare.csv, pairs.csv and categories.csv (so each number in the README can be checked)."""
from __future__ import annotations

from pathlib import Path

import pytest

from slm_agent.bench.compare import compare, write_comparison

ROOT = Path(__file__).resolve().parents[2]
PUBLISHED = sorted(p.parent.parent for p in (ROOT / "results").glob("*/compare/compare.csv"))


def test_results_are_published():
    assert PUBLISHED, "no results/<run>/compare/compare.csv in the repository"


@pytest.mark.parametrize("run", PUBLISHED, ids=lambda p: p.name)
def test_published_comparison_rebuilds_unchanged(run: Path, tmp_path: Path) -> None:
    cells = sorted((run / "cells").iterdir())
    assert cells and all((c / "results.jsonl").is_file() and (c / "run.json").is_file() for c in cells)
    write_comparison(compare(cells, tokens=False), tmp_path, plots=False)
    for name in ("compare.csv", "pairs.csv", "categories.csv"):
        assert (tmp_path / name).read_bytes() == (run / "compare" / name).read_bytes(), name
