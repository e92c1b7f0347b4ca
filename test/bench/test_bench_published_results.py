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


#: the run whose seed table README's "Results" section shows
STUDY = ROOT / "results" / "study-x86_64-2cpu-2026-12-07"


def test_compare_cli_on_the_study_prints_readmes_table(tmp_path: Path, capsys) -> None:
    """``slm-agent compare results/<study> --output-dir X`` (as README says to run it) gives
    the committed compare.csv byte for byte and prints every row of README's seed table and
    accuracy-by-category table."""
    from slm_agent.cli import main

    assert main(["compare", str(STUDY), "--no-tokens", "--no-plots", "--output-dir", str(tmp_path)]) == 0
    printed = capsys.readouterr().out
    assert (tmp_path / "compare.csv").read_bytes() == (STUDY / "compare" / "compare.csv").read_bytes()
    readme = (ROOT / "README.md").read_text(encoding="utf-8")
    section = readme[readme.index("### Results"):]
    rows = [line for line in printed.splitlines() if line.startswith("| ") and "__" in line.split("|")[1]]
    # the seed table (Cell | Model | TTFT | Prefill | Decode | Accuracy) and the table by category
    # (Cell and the five categories) have six columns
    seed = [r for r in rows if r.count("|") == 7]
    assert seed, printed
    missing = [r for r in seed if r not in section]
    assert not missing, missing
