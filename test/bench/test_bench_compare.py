"""slm-agent compare: every number recomputed from synthetic run directories
and checked against their results.jsonl by hand (counts, Wilson interval by
its formula, McNemar's exact p-value as a two-sided binomial test on the
discordant pairs), plus the CLI's files."""
from __future__ import annotations

import csv
import json
import math
from pathlib import Path

import pytest
from scipy.stats import binom

from slm_agent.bench.compare import compare, pareto_front, write_comparison
from slm_agent.cli import main


def _rec(case: str, passed: bool, *, model: str, mode: str, ttft: float, wall: float, energy=None,
         prompt=100, decode=10, start=1000.0) -> dict:
    end = start + 0.5
    return {"case_id": case, "category": "simple_python", "suite": "bfcl", "model": model, "power_mode": mode,
            "strategy": "direct", "serialization": "json", "valid": True, "passed": passed,
            "wall_time_s": wall, "energy_j": energy, "started_at": start, "prompt_tokens": prompt,
            "decode_tokens": decode,
            "metrics": [{"ttft_ms": ttft, "prefill_tokens_per_s": 1000.0, "decode_tokens_per_s": 50.0,
                         "prompt_tokens": prompt, "decode_tokens": decode, "energy_j": None if energy is None
                         else energy, "finish_reason": "tool_calls",
                         "end_stamp": {"sec": int(end), "nanosec": int((end % 1) * 1e9)}}]}


def _run(d: Path, model: str, outcomes: list[bool], mode: str = "MAXN", energy=None) -> Path:
    d.mkdir(parents=True)
    (d / "run.json").write_text(json.dumps({"config": {"model": model, "strategy": "direct",
                                                       "serialization": "json", "suite": "bfcl"}}))
    with (d / "results.jsonl").open("w") as fh:
        for i, ok in enumerate(outcomes):
            fh.write(json.dumps(_rec(f"simple_python_{i}", ok, model=model, mode=mode, ttft=10.0 + i,
                                     wall=1.0 + i, energy=energy)) + "\n")
    return d


def _wilson(k: int, n: int, z: float = 1.959963984540054) -> tuple[float, float]:
    p = k / n
    centre = (p + z * z / (2 * n)) / (1 + z * z / n)
    half = z * math.sqrt(p * (1 - p) / n + z * z / (4 * n * n)) / (1 + z * z / n)
    return centre - half, centre + half


def test_numbers_recomputed_from_results_jsonl(tmp_path: Path) -> None:
    a_out = [True] * 14 + [False] * 6            # 14/20
    b_out = [True] * 6 + [False] * 14            # 6/20: 8 cases A passes and B fails, none the other way
    a = _run(tmp_path / "a", "m1", a_out, energy=2.0)
    b = _run(tmp_path / "b", "m2", b_out, energy=1.0)
    cmp = compare([a, b], tokens=False)
    rows = {r["cell"]: r for r in cmp.rows}
    for d in (a, b):
        recs = [json.loads(line) for line in (d / "results.jsonl").read_text().splitlines()]
        k, n = sum(r["passed"] for r in recs), len(recs)
        row = rows[d.name]
        assert (row["passed"], row["cases"]) == (k, n) and row["accuracy"] == pytest.approx(k / n)
        lo, hi = _wilson(k, n)
        assert (row["ci_low"], row["ci_high"]) == (pytest.approx(lo), pytest.approx(hi))
        ttfts = sorted(m["ttft_ms"] for r in recs for m in r["metrics"])
        assert row["ttft_ms_median"] == pytest.approx((ttfts[9] + ttfts[10]) / 2)
        assert row["prompt_tokens_per_call"] == 100 and row["output_tokens_per_call"] == 10
        assert row["first_action_s_median"] == pytest.approx(0.5)
        assert row["energy_j_per_call"] == pytest.approx(recs[0]["energy_j"])
        assert row["energy_j_per_correct"] == pytest.approx(sum(r["energy_j"] for r in recs) / k)
        assert row["power_mode"] == "MAXN"
        assert sorted(cmp.ttft_ms[cmp.rows.index(row)]) == ttfts    # what the TTFT distribution plot draws
    (pair,) = cmp.pairs
    disc_a = sum(x and not y for x, y in zip(a_out, b_out))
    disc_b = sum(y and not x for x, y in zip(a_out, b_out))
    assert (pair["only_a"], pair["only_b"], pair["shared"]) == (disc_a, disc_b, 20)
    expected_p = min(1.0, 2 * binom.cdf(min(disc_a, disc_b), disc_a + disc_b, 0.5))
    assert pair["p_value"] == pytest.approx(expected_p) and pair["significant"]  # 2 * 0.5**8 = 0.0078
    assert pair["p_adjusted"] == pytest.approx(expected_p)   # one comparison: nothing to adjust
    assert f"| {expected_p:.3g} | {expected_p:.3g} | significant |" in cmp.markdown
    assert "[50.0" not in cmp.markdown and f"{lo * 100:.1f}" in cmp.markdown


def test_unshared_or_equal_runs_and_power_modes(tmp_path: Path) -> None:
    a = _run(tmp_path / "a", "m1", [True, False, True], mode="MODE_15W")
    b = _run(tmp_path / "b", "m1", [True, False, False], mode="MODE_15W")
    c = _run(tmp_path / "c", "m1", [True, True, True], mode="MODE_30W")
    cmp = compare([a, b, c], tokens=False)
    assert [(p["a"], p["b"]) for p in cmp.pairs] == [("a", "b")]   # c ran in another power mode
    assert "| 1 | 1 | not significant |" in cmp.markdown
    assert "## Power mode MODE_15W" in cmp.markdown and "## Power mode MODE_30W" in cmp.markdown
    assert "n/a (power not measured)" in cmp.markdown


def test_p_values_adjusted_for_multiple_comparisons(tmp_path: Path) -> None:
    """Three cells -> three pairs; Holm by hand: sort raw p ascending, p_(i) * (m - i), running max, cap 1."""
    base = [True] * 8 + [False] * 12
    runs = {"a": base, "b": [not x for x in base[:8]] + base[8:],          # 8 discordant, all A
            "c": [True] * 6 + [False] * 2 + base[8:]}                       # 2 discordant vs a
    dirs = [_run(tmp_path / k, "m1", v) for k, v in runs.items()]
    cmp = compare(dirs, tokens=False)
    raw = {(p["a"], p["b"]): p["p_value"] for p in cmp.pairs}
    assert len(raw) == 3
    order = sorted(raw, key=raw.get)
    holm, running = {}, 0.0
    for i, key in enumerate(order):
        running = max(running, min(1.0, raw[key] * (len(order) - i)))
        holm[key] = running
    for p in cmp.pairs:
        key = (p["a"], p["b"])
        assert p["p_adjusted"] == pytest.approx(holm[key]) and p["significant"] == (holm[key] < 0.05)
        disc_a = sum(x and not y for x, y in zip(runs[key[0]], runs[key[1]]))
        disc_b = sum(y and not x for x, y in zip(runs[key[0]], runs[key[1]]))
        assert p["p_value"] == pytest.approx(min(1.0, 2 * binom.cdf(min(disc_a, disc_b), disc_a + disc_b, 0.5)))
    assert any(p["p_adjusted"] > p["p_value"] for p in cmp.pairs)
    assert "adjusted for 3 comparisons with Holm's step-down method" in cmp.markdown
    bh = compare(dirs, tokens=False, p_adjust="fdr_bh")
    m = len(order)
    expected_bh = {}
    running = 1.0
    for i in range(m - 1, -1, -1):                     # BH: p_(i) * m / (i + 1), running min from the top
        running = min(running, raw[order[i]] * m / (i + 1))
        expected_bh[order[i]] = running
    for p in bh.pairs:
        assert p["p_adjusted"] == pytest.approx(expected_bh[(p["a"], p["b"])])
    assert "Benjamini-Hochberg" in bh.markdown


def test_pareto_front() -> None:
    pts = [(1.0, 0.5), (2.0, 0.8), (3.0, 0.7), (0.5, 0.2), (float("nan"), 1.0)]
    assert pareto_front(pts) == [0, 1, 3]


def test_cli_writes_markdown_csv_png(tmp_path: Path, capsys) -> None:
    grid = tmp_path / "grid"
    _run(grid / "cells" / "x", "m1", [True, False, True, True], energy=3.0)
    _run(grid / "cells" / "y", "m2", [False, False, True, True], energy=1.0)
    assert main(["compare", str(grid), "--no-tokens", "--output", str(tmp_path / "out")]) == 0
    files = {p.name for p in (tmp_path / "out").iterdir()}
    assert {"compare.md", "compare.csv", "pairs.csv", "accuracy_vs_latency.png", "accuracy_vs_energy.png",
            "ttft_by_cell.png"} <= files
    rows = list(csv.DictReader((tmp_path / "out" / "compare.csv").open()))
    assert [(r["cell"], r["passed"], r["cases"]) for r in rows] == [("x", "3", "4"), ("y", "2", "4")]
    assert main(["compare", str(tmp_path / "nothing")]) == 2
    assert "neither a run directory" in capsys.readouterr().err


def test_numbers_from_a_bag_alone_equal_those_from_results_jsonl(tmp_path: Path) -> None:
    """A recorded gold run with its first call corrupted in every case; the comparison rebuilt from a copy
    of its bag alone (no results.jsonl, no run.json) has the same numbers as the one from results.jsonl."""
    import shutil
    import subprocess
    import sys

    out = tmp_path / "run"
    res = subprocess.run([sys.executable, "-m", "slm_agent.cli", "bench", "--agent", "gold", "--categories",
                          "simple_python", "--limit", "3", "--gold-delay", "0.2", "--output-dir", str(out),
                          "--record", "--quiet", "--no-report", "--corrupt-gold"], capture_output=True, text=True,
                         timeout=300)
    assert res.returncode == 0, res.stdout[-2000:] + res.stderr[-2000:]
    shutil.copytree(out / "bag", tmp_path / "bag_copy")
    from_jsonl = compare([out], tokens=False, source="jsonl")
    from_bag = compare([tmp_path / "bag_copy"], tokens=False, source="bag")
    (a,), (b,) = from_jsonl.rows, from_bag.rows
    keys = ["cases", "passed", "invalid", "accuracy", "ci_low", "ci_high", "llm_calls", "ttft_ms_median",
            "prefill_tps_median", "decode_tps_median", "prompt_tokens_per_call", "output_tokens_per_call",
            "wall_s_median", "wall_s_total"]
    for k in keys:
        assert (a[k] == pytest.approx(b[k])) or (math.isnan(a[k]) and math.isnan(b[k])), k
    recs = [json.loads(line) for line in (out / "results.jsonl").read_text().splitlines()]
    assert (b["passed"], b["cases"]) == (sum(r["passed"] for r in recs), len(recs)) == (0, 3)
    assert b["model"] == "gold" and b["ttft_ms_median"] >= 200.0   # the gold delay is inside the reported call
    # the run against its own bag: the pair is built from bag records on one side, all concordant
    both = compare([out, tmp_path / "bag_copy"], tokens=False)
    (pair,) = both.pairs
    assert (pair["shared"], pair["only_a"], pair["only_b"], pair["p_value"]) == (3, 0, 0, 1.0)


def test_reasoning_tokens_per_step_read_back_by_the_cells_strategy() -> None:
    from slm_agent.bench.compare import reasoning_token_counts

    def turn(*replies: str) -> dict:
        return {"turn": 0, "tools": [{"name": "area"}],
                "messages": [{"role": "user", "content": "q"}] + [{"role": "assistant", "content": r} for r in replies]}

    recs = [{"conversation": [turn('{"thought": "I need the area of it", "action": "area", "action_input": {"b": 1}}',
                                   "Thought: the area is known\nFinal Answer: 5")]},
            {"conversation": [turn("Thought: call it now\nAction: area\nAction Input: {\"b\": 2}")]},
            {"case_id": "no transcript recorded"}]
    words = lambda text: len(text.split())   # noqa: E731 - a whitespace tokenizer keeps the counts readable
    assert reasoning_token_counts(recs, "react", words) == [6, 4, 3]
    # ReflAct reads its own key; direct counts only text beside the call
    refl = [{"conversation": [turn('{"reflection": "nothing done yet", "action": "area", "action_input": {}}')]}]
    assert reasoning_token_counts(refl, "reflact", words) == [3]
    assert reasoning_token_counts([{"conversation": [turn('{"name": "area", "arguments": {"b": 1}}')]}],
                                  "direct", words) == [0]


def test_shards_of_a_grid_merge_into_one_comparison(tmp_path: Path) -> None:
    """Each device ran its shard into a grid directory of its own; compare takes them all."""
    _run(tmp_path / "shard1" / "cells" / "m1__direct__json", "m1", [True, True, False])
    _run(tmp_path / "shard2" / "cells" / "m2__direct__json", "m2", [False, True, False])
    cmp = compare([tmp_path / "shard1", tmp_path / "shard2"], tokens=False)
    assert [(r["cell"], r["passed"]) for r in cmp.rows] == [("m1__direct__json", 2), ("m2__direct__json", 1)]
    (pair,) = cmp.pairs
    assert (pair["a"], pair["b"], pair["shared"], pair["only_a"], pair["only_b"]) == (
        "m1__direct__json", "m2__direct__json", 3, 1, 0)


def test_accuracy_per_category(tmp_path: Path) -> None:
    """Per category: passed/cases and the Wilson interval of each, in categories.csv and compare.md."""
    a = _run(tmp_path / "a", "m1", [True, True, False, True])
    lines = [json.loads(x) for x in (a / "results.jsonl").read_text().splitlines()]
    lines[2]["category"] = lines[3]["category"] = "irrelevance"     # simple_python 2/2, irrelevance 1/2
    (a / "results.jsonl").write_text("".join(json.dumps(x) + "\n" for x in lines))
    cmp = write_comparison(compare([a], tokens=False), tmp_path / "out", plots=False)
    got = {r["category"]: (r["passed"], r["cases"]) for r in cmp.categories}
    assert got == {"simple_python": (2, 2), "irrelevance": (1, 2)}
    irr = next(r for r in cmp.categories if r["category"] == "irrelevance")
    assert (irr["ci_low"], irr["ci_high"]) == (pytest.approx(_wilson(1, 2)[0]), pytest.approx(_wilson(1, 2)[1]))
    assert "| a | 1/2 (50%) | 2/2 (100%) |" in cmp.markdown
    with (tmp_path / "out" / "categories.csv").open() as fh:
        assert [(r["category"], r["passed"]) for r in csv.DictReader(fh)] == [("irrelevance", "1"),
                                                                              ("simple_python", "2")]


def test_cells_timed_on_different_cpu_builds_are_flagged(tmp_path: Path) -> None:
    """Cells whose run.json names different llama.cpp CPU builds get a note naming each
    build's cells; cells of one build (or runs that do not say) get none."""
    def build(d: Path, variant: str) -> Path:
        info = json.loads((d / "run.json").read_text())
        info["llama_cpp_build"] = {"build": {"variant": variant}}
        info["llama_cpp_threads"] = {"cpus": 2}
        (d / "run.json").write_text(json.dumps(info))
        return d

    a = build(_run(tmp_path / "a", "m1", [True, False]), "haswell")
    b = build(_run(tmp_path / "b", "m2", [True, True]), "zen4")
    c = build(_run(tmp_path / "c", "m3", [False, True]), "zen4")
    md = compare([a, b, c], tokens=False).markdown
    assert "Timed on 2 different CPU builds" in md
    assert "- llama.cpp haswell, 2 CPUs: `a`" in md and "- llama.cpp zen4, 2 CPUs: `b`, `c`" in md
    assert "different CPU builds" not in compare([b, c], tokens=False).markdown
    plain = _run(tmp_path / "d", "m4", [True, True])   # no build recorded: nothing claimed
    assert "different CPU builds" not in compare([b, plain], tokens=False).markdown
