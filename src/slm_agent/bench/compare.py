"""One comparison report across run directories (``slm-agent compare``).

Input: run directories, bags, or a grid directory (``slm-agent grid``: its
cells are ``GRID/cells/<name>``).  Every number is recomputed from each run's
``results.jsonl`` (+ ``run.json``), or with ``--source bag`` from its rosbag2
bag alone (:func:`slm_agent.bench.report.load_run`: the recorded
ScenarioResult messages; a bag carries no case start time, so time to first
action is n/a from a bag without results.jsonl):

* the seed table per power mode and per cell: **Model | TTFT ms | Prefill
  tok/s | Decode tok/s | Accuracy** with the accuracy's 95 % Wilson interval
  (``statsmodels.stats.proportion.proportion_confint(method="wilson")``);
* paired comparisons of cells that ran the same cases (same power mode):
  McNemar's exact test on pass/fail of the shared cases
  (``statsmodels.stats.contingency_tables.mcnemar(exact=True)``); with many
  pairs the p-values are adjusted for multiple comparisons
  (``statsmodels.stats.multitest.multipletests``: Holm's step-down method by
  default, Benjamini-Hochberg with ``--p-adjust fdr_bh``) over all pairs of
  the report, and a pair is called significant when its *adjusted* p-value is
  below 0.05; both p-values are reported;
* token accounting per cell: prompt and output tokens per LLM call,
  tool-spec tokens of the cases the cell ran (their first turn's tools, as
  the cell's suite gives them), rendered with the cell's serializer, and
  reasoning tokens per step (each recorded reply read back by the cell's
  strategy), both counted with the cell's model's own tokenizer
  (GGUF loaded with ``llama_cpp.Llama(vocab_only=True)``; n/a for other
  backends);
* time to first action (case start -> end of the first LLM call that produced
  tool calls) and wall time per case;
* energy per call and per correct answer where power was measured;
* plots: accuracy vs median wall time per case and vs energy per case, with
  the Pareto front (higher accuracy, lower cost) marked; per-cell TTFT
  distributions.

* accuracy per category of each cell (with its Wilson interval): a format
  that is strong on one category and fails another shows here.

Files: ``compare.md``, ``compare.csv`` (one row per cell x power mode),
``categories.csv`` (one row per cell x power mode x category),
``pairs.csv``, ``accuracy_vs_latency.png``, ``accuracy_vs_energy.png``,
``ttft_by_cell.png`` (per-cell TTFT distributions).
"""
from __future__ import annotations

import csv
import math
import os
import statistics
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Optional, Sequence

from slm_agent.bench.escalation import cascade_summary, counts_text
from slm_agent.bench.report import (NA, NA_POWER, ReportError, _fmt, _table, aggregate, find_bag, group, is_bag,
                                    load_run, skipped_section, skipped_text)
from slm_agent.bench.results import RESULTS_FILE, RUN_FILE, num, read_json, read_results_checked

ALPHA = 0.05
GRID_CELLS = "cells"
#: --p-adjust choices: statsmodels multipletests method -> how the report names it
P_ADJUST = {"holm": "Holm's step-down method", "fdr_bh": "Benjamini-Hochberg (false discovery rate)",
            "none": "no adjustment"}


class CompareError(RuntimeError):
    pass


@dataclass
class Cell:
    """One run directory."""

    name: str
    path: Path
    info: dict[str, Any]
    records: list[dict[str, Any]]
    skipped_lines: list[str] = field(default_factory=list)   # results.jsonl lines left out, "line N: why"

    @property
    def config(self) -> dict[str, Any]:
        return self.info.get("config") or {}

    def label(self, key: str) -> str:
        cfg = self.config
        if key == "model":
            return str(cfg.get("model") or (self.records[0].get("model") if self.records else "") or "?")
        return str(cfg.get(key) or (self.records[0].get(key) if self.records else "") or "")


def timing_basis(cell: Cell) -> str:
    """The CPU build a local llama.cpp cell was timed on ("llama.cpp zen4, 2 CPUs"), "" when
    its run.json does not say (a server, the gold agent, an older run).

    Why: one llama.cpp wheel per CPU generation (haswell = AVX2, zen4 = AVX-512, ...) is
    chosen at set-up, and machines of one kind differ in generation.  TTFT and tok/s of
    cells timed on different builds are not like for like, and greedy outputs can differ
    too (other kernels, other rounding): a comparison across them must say so.
    """
    build = (cell.info.get("llama_cpp_build") or {}).get("build") or {}
    variant = str(build.get("variant") or "")
    if not variant:
        return ""
    cpus = (cell.info.get("llama_cpp_threads") or {}).get("cpus")
    return f"llama.cpp {variant}" + (f", {cpus} CPUs" if cpus else "")


def timing_basis_note(cells: Sequence[Cell]) -> list[str]:
    """Markdown lines warning that the cells were timed on more than one CPU build ([] when
    they all share one, or none says)."""
    groups: dict[str, list[str]] = {}
    for c in cells:
        basis = timing_basis(c)
        if basis:
            groups.setdefault(basis, []).append(c.name)
    if len(groups) < 2:
        return []
    lines = [f"**Timed on {len(groups)} different CPU builds**: TTFT, tok/s and seconds compare only within "
             "one build, and greedy outputs may differ between builds (other kernels, other rounding).", ""]
    lines += [f"- {basis}: " + ", ".join(f"`{n}`" for n in names) for basis, names in sorted(groups.items())]
    return lines + [""]


def _is_run(p: Path) -> bool:
    return (p / RESULTS_FILE).exists() or find_bag(p) is not None


def find_run_dirs(paths: Sequence[os.PathLike | str]) -> list[Path]:
    """Run directories (or bags) of ``paths`` (a grid directory stands for its cells, in name order)."""
    out: list[Path] = []
    for p in map(Path, paths):
        if (p / GRID_CELLS).is_dir() and not _is_run(p):
            out += sorted(c for c in (p / GRID_CELLS).iterdir() if _is_run(c))
        elif _is_run(p):
            out.append(p)
        else:
            raise CompareError(f"{p}: neither a run directory (no {RESULTS_FILE}, no bag) nor a grid directory "
                               f"(no {GRID_CELLS}/)")
    if not out:
        raise CompareError("no run directory with results found")
    return out


def load_cells(paths: Sequence[os.PathLike | str], source: str = "auto") -> list[Cell]:
    """One :class:`Cell` per run, its records from results.jsonl or the bag (``source``: auto | jsonl | bag)."""
    cells = []
    names: dict[str, int] = {}
    for d in find_run_dirs(paths):
        # a bag directory is named after its run directory when that holds run.json
        name = d.parent.name if is_bag(d) and (d.parent / RUN_FILE).exists() else d.name
        if name in names:  # two runs with the same folder name: qualify by the parent
            name = f"{d.parent.name}/{d.name}"
        names[name] = 1
        if source != "bag" and (d / RESULTS_FILE).exists():
            records, skipped = read_results_checked(d / RESULTS_FILE)
            if not records:   # started, no case finished yet (or nothing readable: said so)
                cells.append(Cell(name, d, read_json(d / RUN_FILE) or {}, [], [skipped_text(x) for x in skipped]))
                continue
        try:
            data = load_run(d, source)
        except ReportError as exc:
            raise CompareError(str(exc)) from None
        cells.append(Cell(name, d, data.run_info or read_json(d / RUN_FILE) or {}, data.records,
                          list(data.skipped_lines)))
    return cells


# --------------------------------------------------------------------------- statistics (libraries)

def wilson(passed: int, n: int, alpha: float = ALPHA) -> tuple[float, float]:
    """95 % Wilson score interval of passed/n (statsmodels)."""
    if n <= 0:
        return math.nan, math.nan
    from statsmodels.stats.proportion import proportion_confint

    lo, hi = proportion_confint(passed, n, alpha=alpha, method="wilson")
    return float(lo), float(hi)


def mcnemar_exact(a: dict[str, bool], b: dict[str, bool]) -> dict[str, Any]:
    """McNemar's exact test of two pass/fail maps on their shared case ids."""
    shared = sorted(set(a) & set(b))
    both = sum(1 for c in shared if a[c] and b[c])
    only_a = sum(1 for c in shared if a[c] and not b[c])
    only_b = sum(1 for c in shared if b[c] and not a[c])
    neither = len(shared) - both - only_a - only_b
    p = math.nan
    if shared:
        from statsmodels.stats.contingency_tables import mcnemar

        p = float(mcnemar([[both, only_a], [only_b, neither]], exact=True).pvalue)
    return {"shared": len(shared), "both": both, "only_a": only_a, "only_b": only_b, "neither": neither,
            "p_value": p, "p_adjusted": p, "significant": bool(math.isfinite(p) and p < ALPHA)}


def adjust_p_values(pairs: list[dict[str, Any]], method: str = "holm", alpha: float = ALPHA) -> None:
    """Set each pair's ``p_adjusted`` and ``significant`` (adjusted p < alpha) over the family of all
    ``pairs`` with a p-value (statsmodels ``multipletests``; ``none`` keeps the raw p-values)."""
    if method not in P_ADJUST:
        raise CompareError(f"--p-adjust: unknown method {method!r} (known: {', '.join(P_ADJUST)})")
    idx = [i for i, p in enumerate(pairs) if math.isfinite(p["p_value"])]
    if method == "none" or not idx:
        for p in pairs:
            p["p_adjusted"] = p["p_value"]
            p["significant"] = bool(math.isfinite(p["p_value"]) and p["p_value"] < alpha)
        return
    from statsmodels.stats.multitest import multipletests

    reject, adjusted, _s, _b = multipletests([pairs[i]["p_value"] for i in idx], alpha=alpha, method=method)
    for i, rej, adj in zip(idx, reject, adjusted):
        pairs[i]["p_adjusted"] = float(adj)
        pairs[i]["significant"] = bool(rej)


# --------------------------------------------------------------------------- per cell figures

def first_action_s(rec: dict[str, Any]) -> float:
    """Case start -> end of the first LLM call that produced tool calls (NaN if none recorded)."""
    start = num(rec.get("started_at"))
    steps = {(c.get("turn", 0), c.get("step")) for c in rec.get("calls") or [] if isinstance(c, dict)}
    for m in rec.get("metrics") or []:
        turn = int(str(m.get("task_id", "#0")).rpartition("#")[2] or 0) if "#" in str(m.get("task_id", "")) else 0
        if m.get("finish_reason") == "tool_calls" or (turn, m.get("step")) in steps:
            end = m.get("end_stamp") or {}
            t = num(end.get("sec")) + num(end.get("nanosec")) * 1e-9
            if math.isfinite(t) and math.isfinite(start) and t > 0:
                return max(0.0, t - start)
    return math.nan


def _median(values: Sequence[float]) -> float:
    vals = [v for v in values if math.isfinite(v)]
    return statistics.median(vals) if vals else math.nan


def cell_row(cell: Cell, mode: str, records: list[dict[str, Any]],
             spec_tokens: Optional[float] = None, tokenize=None) -> dict[str, Any]:
    a = aggregate(records)
    lo, hi = wilson(a["passed"], a["cases"])
    calls = [m for r in records for m in (r.get("metrics") or [])]
    energies = [num(r.get("energy_j")) for r in records]
    return {
        "cell": cell.name, "power_mode": mode, "model": cell.label("model"), "strategy": cell.label("strategy"),
        "serialization": cell.label("serialization"), "chat_format": cell.label("chat_format"),
        "constrained": cell.label("constrained"), "protocol": cell.label("protocol"),
        "cases": a["cases"], "passed": a["passed"], "invalid": a["invalid"], "accuracy": a["accuracy"],
        "ci_low": lo, "ci_high": hi, "llm_calls": a["llm_calls"],
        "ttft_ms_median": a["ttft_ms_median"], "prefill_tps_median": a["prefill_tps_median"],
        "decode_tps_median": a["decode_tps_median"],
        "prompt_tokens_per_call": (sum(int(m.get("prompt_tokens") or 0) for m in calls) / len(calls)
                                   if calls else math.nan),
        "output_tokens_per_call": (sum(int(m.get("decode_tokens") or 0) for m in calls) / len(calls)
                                   if calls else math.nan),
        "toolspec_tokens_median": math.nan if spec_tokens is None else spec_tokens,
        "reasoning_tokens_per_step": (statistics.fmean(rt) if tokenize is not None and (
            rt := reasoning_token_counts(records, cell.label("strategy"), tokenize)) else math.nan),
        "first_action_s_median": _median([first_action_s(r) for r in records]),
        "wall_s_median": a["wall_s_median"], "wall_s_total": a["wall_s_total"],
        "energy_j_per_call": a["energy_j_per_call"], "energy_j_per_correct": a["energy_j_per_correct"],
        "energy_j_per_case": (statistics.fmean([e for e in energies if math.isfinite(e)])
                              if any(math.isfinite(e) for e in energies) else math.nan),
    }


# --------------------------------------------------------------------------- tool-spec tokens

def model_tokenizer(profile_name: str):
    """A tokenize(text) -> int for the profile's GGUF (vocab only), or None (no GGUF, other backend)."""
    try:
        from slm_agent.profiles import load_profile

        prof = load_profile(profile_name)
        if prof.backend.type != "llama_cpp":
            return None
        from llama_cpp import Llama

        llm = Llama(prof.resolved_model_path(), vocab_only=True, verbose=False)
    except Exception:  # noqa: BLE001 - gold agent, missing model, ...: no token count
        return None
    return lambda text: len(llm.tokenize(text.encode("utf-8"), add_bos=False, special=False))


def spec_texts(case_ids: Sequence[str], serialization: str, suite: str = "bfcl") -> list[str]:
    """The first-turn tool specs of the cases ``case_ids`` of ``suite``, rendered with
    ``serialization``; the tools are the suite's (:meth:`~slm_agent.bench.suite.Suite.first_turn_tools`),
    so this holds for any suite.  A case (or a suite) not known here is left out."""
    from slm_agent.agent.serializers import get_serializer
    from slm_agent.agent.types import ToolSpec
    from slm_agent.bench.suite import get_suite

    try:
        owner = get_suite(suite or "bfcl")
    except ValueError:   # a suite of a package not installed here: no token count
        return []
    ser = get_serializer(serialization)
    out = []
    for cid in case_ids:
        try:
            tools = owner.first_turn_tools(cid)
        except Exception:  # noqa: BLE001 - a case this suite version does not have
            continue
        if not tools:
            continue
        specs = [ToolSpec(name=t["name"], description=t.get("description", ""),
                          parameters=t.get("parameters") or {"type": "object", "properties": {}})
                 for t in tools]
        out.append(ser.tools(specs))
    return out


def reasoning_token_counts(records: Sequence[dict[str, Any]], strategy: str, tokenize) -> list[int]:
    """Reasoning tokens of every LLM step of ``records``: each assistant message of the recorded
    conversation (``results.jsonl`` ``conversation``) read back by the cell's own strategy
    (``Strategy.interpret``: ReAct's thought, ReflAct's reflection, the text beside the call for
    direct) and counted with the model's tokenizer.  Empty when no conversation was recorded."""
    from slm_agent.agent.strategies import get_strategy
    from slm_agent.agent.types import ToolSpec

    try:
        strat = get_strategy(strategy or "direct")
    except ValueError:
        return []
    counts = []
    for rec in records:
        for turn in rec.get("conversation") or []:
            tools = [ToolSpec(name=t.get("name", ""), description="", parameters={"type": "object"})
                     for t in turn.get("tools") or [] if isinstance(t, dict)]
            steps = [m for m in turn.get("messages") or [] if isinstance(m, dict) and m.get("role") == "assistant"]
            for step, msg in enumerate(steps):
                reasoning = strat.interpret(str(msg.get("content") or ""), tools, step=step).reasoning
                counts.append(tokenize(reasoning) if reasoning.strip() else 0)
    return counts


def toolspec_token_stats(tokenize, texts: Sequence[str]) -> dict[str, float]:
    import numpy as np

    counts = [tokenize(t) for t in texts]
    if not counts:
        return {"n": 0, "median": math.nan, "q1": math.nan, "q3": math.nan}
    q1, med, q3 = np.percentile(counts, [25, 50, 75])
    return {"n": len(counts), "median": float(med), "q1": float(q1), "q3": float(q3), "counts": counts}


# --------------------------------------------------------------------------- report

@dataclass
class Comparison:
    rows: list[dict[str, Any]]
    pairs: list[dict[str, Any]]
    markdown: str
    files: dict[str, Path] = field(default_factory=dict)
    p_adjust: str = "holm"
    #: per cell name: results.jsonl lines left out ("line N: why"); also in compare.md
    skipped_lines: dict[str, list[str]] = field(default_factory=dict)
    #: per row (same order as ``rows``): the TTFT of every LLM call, for the distribution plot
    ttft_ms: list[list[float]] = field(default_factory=list)
    #: one row per cell x power mode x category
    categories: list[dict[str, Any]] = field(default_factory=list)
    #: one row per cell x power mode whose records carry per-step data (the cascade, issue 26:
    #: bench/escalation.py's cascade_summary); empty for runs recorded without it
    cascade: list[dict[str, Any]] = field(default_factory=list)


def _ci(r: dict[str, Any]) -> str:
    if not r["cases"]:
        return NA
    return (f"{r['accuracy'] * 100:.1f}% [{r['ci_low'] * 100:.1f}, {r['ci_high'] * 100:.1f}] "
            f"({r['passed']}/{r['cases']})")


def _p(p: dict[str, Any]) -> str:
    """The verdict, stated with the adjusted p-value it rests on."""
    if not math.isfinite(p["p_adjusted"]):
        return NA
    return "significant" if p["significant"] else "not significant"


def _pv(v: float) -> str:
    return f"{v:.3g}" if math.isfinite(v) else NA


def compare(paths: Sequence[os.PathLike | str], *, tokens: bool = True, p_adjust: str = "holm",
            source: str = "auto") -> Comparison:
    """Every figure of the report, recomputed from the runs' records (``source``: auto = results.jsonl
    where a run has one, else its bag; jsonl; bag)."""
    if p_adjust not in P_ADJUST:
        raise CompareError(f"--p-adjust: unknown method {p_adjust!r} (known: {', '.join(P_ADJUST)})")
    cells = load_cells(paths, source)
    tokenizers: dict[str, Any] = {}
    rows: list[dict[str, Any]] = []
    ttft_ms: list[list[float]] = []
    outcomes: dict[tuple[str, str], dict[str, bool]] = {}
    cat_rows: list[dict[str, Any]] = []
    cascade_rows: list[dict[str, Any]] = []
    for cell in cells:
        spec, tok = None, None
        if tokens and cell.records:
            model = cell.label("model")
            if model not in tokenizers:
                tokenizers[model] = model_tokenizer(model)
            tok = tokenizers[model]
            if tok is not None:
                texts = spec_texts([r["case_id"] for r in cell.records], cell.label("serialization") or "json",
                                   cell.label("suite") or "bfcl")
                spec = toolspec_token_stats(tok, texts)["median"]
        for (mode,), recs in sorted(group(cell.records, lambda r: (r.get("power_mode") or "unknown",)).items()):
            rows.append(cell_row(cell, mode, recs, spec, tok))
            ttft_ms.append([t for t in (num(m.get("ttft_ms")) for r in recs for m in r.get("metrics") or [])
                            if math.isfinite(t)])
            outcomes[(cell.name, mode)] = {r["case_id"]: bool(r.get("passed")) for r in recs}
            cat_rows += category_rows(cell.name, mode, recs)
            summary = cascade_summary(recs)
            if summary is not None:
                cascade_rows.append({"cell": cell.name, "power_mode": mode, **summary})
    pairs = []
    keys = list(outcomes)
    for i, ka in enumerate(keys):
        for kb in keys[i + 1:]:
            if ka[1] != kb[1]:
                continue
            res = mcnemar_exact(outcomes[ka], outcomes[kb])
            if res["shared"]:
                pairs.append({"power_mode": ka[1], "a": ka[0], "b": kb[0], **res})
    adjust_p_values(pairs, p_adjust)
    skipped = {c.name: c.skipped_lines for c in cells if c.skipped_lines}
    markdown = render_markdown(cells, rows, pairs, p_adjust, cat_rows, cascade_rows) + cascade_section(cascade_rows)
    return Comparison(rows, pairs, markdown + skipped_section(skipped),
                      p_adjust=p_adjust, ttft_ms=ttft_ms, skipped_lines=skipped, categories=cat_rows,
                      cascade=cascade_rows)


def cascade_section(rows: Sequence[dict[str, Any]]) -> str:
    """The cascade table (issue 26), only where runs recorded per-step data ("" otherwise, so a
    comparison of runs without it reads exactly as before)."""
    if not rows:
        return ""
    lines = ["", "## Cascade: steps escalated to the fallback model", ""]
    lines += _table(["Cell", "Power mode", "LLM steps", "Escalated steps", "Cases escalated", "Triggers",
                     "LLM calls by model", "Wall s/case (mean)", "Tokens/case (mean)"],
                    [[r["cell"], r["power_mode"], str(r["steps"]),
                      f"{r['steps_escalated']} ({_fmt(100 * r['escalated_share'])} %)",
                      f"{r['cases_escalated']}/{r['cases']}", counts_text(r["triggers"]),
                      counts_text(r["calls_by_model"]), _fmt(r["wall_s_per_case"], 2), _fmt(r["tokens_per_case"])]
                     for r in rows])
    lines += ["", "Tokens/case: prompt + output tokens of every LLM call of a case, the primary's discarded "
              "calls included."]
    return "\n".join(lines) + "\n"


def category_rows(cell: str, mode: str, records: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """Accuracy of one cell per category, with its Wilson interval."""
    out = []
    for (cat,), recs in sorted(group(records, lambda r: (str(r.get("category") or "?"),)).items()):
        passed = sum(1 for r in recs if r.get("passed"))
        lo, hi = wilson(passed, len(recs))
        out.append({"cell": cell, "power_mode": mode, "category": cat, "cases": len(recs), "passed": passed,
                    "accuracy": passed / len(recs) if recs else math.nan, "ci_low": lo, "ci_high": hi})
    return out


def _category_table(rows: list[dict[str, Any]], mode: str) -> list[str]:
    """Cells down, categories across: ``passed/cases (accuracy)``."""
    mine = [r for r in rows if r["power_mode"] == mode]
    cats = sorted({r["category"] for r in mine})
    cells = list(dict.fromkeys(r["cell"] for r in mine))
    at = {(r["cell"], r["category"]): r for r in mine}
    body = [[c] + [(f"{at[c, k]['passed']}/{at[c, k]['cases']} ({100 * at[c, k]['accuracy']:.0f}%)"
                    if (c, k) in at else NA) for k in cats] for c in cells]
    return _table(["Cell", *cats], body)


def render_markdown(cells: list[Cell], rows: list[dict[str, Any]], pairs: list[dict[str, Any]],
                    p_adjust: str = "holm", categories: Sequence[dict[str, Any]] = (),
                    cascade: Sequence[dict[str, Any]] = ()) -> str:
    measured = any(math.isfinite(r["energy_j_per_call"]) for r in rows)
    lines = ["# Comparison report", "", f"{len(cells)} runs: " + ", ".join(f"`{c.path}`" for c in cells) + ".",
             "Accuracy with its 95 % Wilson interval; TTFT, prefill and decode are medians over LLM calls.", ""]
    lines += timing_basis_note(cells)
    for mode in sorted({r["power_mode"] for r in rows}):
        lines += [f"## Power mode {mode}", ""]
        lines += _table(["Cell", "Model", "TTFT ms", "Prefill tok/s", "Decode tok/s", "Accuracy [95 % CI]"],
                        [[r["cell"], r["model"], _fmt(r["ttft_ms_median"]), _fmt(r["prefill_tps_median"]),
                          _fmt(r["decode_tps_median"]), _ci(r)] for r in rows if r["power_mode"] == mode])
        lines.append("")
        if len({c["category"] for c in categories if c["power_mode"] == mode}) > 1:
            lines += ["Accuracy by category (passed/cases):", ""]
            lines += _category_table(list(categories), mode)
            lines.append("")
    lines += ["## Paired comparisons (McNemar's exact test on the shared cases)", ""]
    if pairs:
        n = sum(1 for p in pairs if math.isfinite(p["p_value"]))
        lines += [f"p-values adjusted for {n} comparison{'s' if n != 1 else ''} with {P_ADJUST[p_adjust]} "
                  f"(statsmodels multipletests, method `{p_adjust}`); a difference is significant when its "
                  f"adjusted p-value is below {ALPHA:g}.", ""]
        lines += _table(["Power mode", "A", "B", "Shared", "A only passed", "B only passed", "p (raw)",
                         f"p ({p_adjust})", "Result"],
                        [[p["power_mode"], p["a"], p["b"], str(p["shared"]), str(p["only_a"]), str(p["only_b"]),
                          _pv(p["p_value"]), _pv(p["p_adjusted"]), _p(p)] for p in pairs])
    else:
        lines.append("No two runs share cases.")
    lines += ["", "## Tokens, time and energy per cell", ""]
    # the cascade's escalated share (issue 26): a column only when some run recorded per-step data
    share = {(c["cell"], c["power_mode"]): c["escalated_share"] for c in cascade}
    extra = ["Escalated steps"] if share else []
    lines += _table(["Cell", "Power mode", "Prompt tok/call", "Output tok/call", "Reasoning tok/step",
                     "Tool-spec tokens (median)", "First action s (median)", "Wall s/case (median)",
                     "Energy J/call", "Energy J/correct", *extra],
                    [[r["cell"], r["power_mode"], _fmt(r["prompt_tokens_per_call"]),
                      _fmt(r["output_tokens_per_call"]), _fmt(r["reasoning_tokens_per_step"]),
                      _fmt(r["toolspec_tokens_median"]),
                      _fmt(r["first_action_s_median"], 2), _fmt(r["wall_s_median"], 2),
                      _energy(r["energy_j_per_call"], measured), _energy(r["energy_j_per_correct"], measured)]
                     + ([f"{_fmt(100 * share[r['cell'], r['power_mode']])} %"
                         if (r["cell"], r["power_mode"]) in share else NA] if share else [])
                     for r in rows])
    lines += ["", "Tool-spec tokens: the first-turn tool specs of the cell's cases rendered with its serializer and "
              "counted with its model's own tokenizer (n/a: no GGUF tokenizer, e.g. the gold agent). "
              "Reasoning tok/step: mean over LLM steps of the reasoning its strategy reads from each recorded "
              "reply (ReAct thought, ReflAct reflection, text beside the call for direct), same tokenizer "
              "(n/a: no tokenizer or no recorded conversation)."]
    return "\n".join(lines) + "\n"


def _energy(v: float, measured: bool) -> str:
    if not measured:
        return NA_POWER
    return f"{v:.3g}" if math.isfinite(v) else NA


def pareto_front(points: Sequence[tuple[float, float]]) -> list[int]:
    """Indices of the points no other point beats (cost x lower or equal, accuracy y higher or equal, one strictly)."""
    front = []
    for i, (x, y) in enumerate(points):
        if not (math.isfinite(x) and math.isfinite(y)):
            continue
        dominated = any(math.isfinite(x2) and math.isfinite(y2) and x2 <= x and y2 >= y and (x2 < x or y2 > y)
                        for j, (x2, y2) in enumerate(points) if j != i)
        if not dominated:
            front.append(i)
    return front


def _label(r: dict[str, Any]) -> str:
    return f"{r['cell']} ({r['power_mode']})"


def _plot(rows: list[dict[str, Any]], xkey: str, xlabel: str, path: Path) -> Optional[Path]:
    """Accuracy (with its Wilson interval) against a cost; points numbered, the key beside the axes
    (cell names are too long to print at the points), the Pareto front in red."""
    pts = [(r[xkey], r["accuracy"]) for r in rows]
    if not any(math.isfinite(x) and math.isfinite(y) for x, y in pts):
        return None
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    front = pareto_front(pts)
    fig, ax = plt.subplots(figsize=(11, 5))
    for i, (r, (x, y)) in enumerate(zip(rows, pts)):
        if math.isfinite(x) and math.isfinite(y):
            ax.errorbar([x], [y * 100], yerr=[[max(0.0, (y - r["ci_low"]) * 100)], [max(0.0, (r["ci_high"] - y) * 100)]],
                        fmt="o", color="tab:red" if i in front else "tab:blue", capsize=3,
                        label=f"{i + 1}: {_label(r)}")
            ax.annotate(str(i + 1), (x, y * 100), fontsize=8, xytext=(4, 3 + 9 * (i % 3)),
                        textcoords="offset points")
    fx = sorted((pts[i][0], pts[i][1] * 100) for i in front)
    if fx:
        ax.step([p[0] for p in fx], [p[1] for p in fx], where="post", color="tab:red", label="Pareto front")
    ax.legend(fontsize=7, loc="upper left", bbox_to_anchor=(1.01, 1.0), frameon=False)
    ax.set_xlabel(xlabel)
    ax.set_ylabel("accuracy % (95 % Wilson CI)")
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return path


def _plot_ttft(rows: list[dict[str, Any]], ttft_ms: list[list[float]], path: Path) -> Optional[Path]:
    """Per-cell TTFT distributions (box: quartiles, whiskers 1.5 IQR, every call as a dot)."""
    data = [(r, v) for r, v in zip(rows, ttft_ms) if v]
    if not data:
        return None
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(9, 1.2 + 0.45 * len(data)))
    ax.boxplot([v for _r, v in data], orientation="horizontal", showfliers=False)
    for k, (_r, v) in enumerate(data, 1):
        ax.plot(v, [k] * len(v), "o", color="tab:blue", alpha=0.5, markersize=3)
    ax.set_yticks(range(1, len(data) + 1), [_label(r) for r, _v in data], fontsize=7)
    ax.invert_yaxis()
    ax.set_xlabel("TTFT per LLM call (ms)")
    if max(max(v) for _r, v in data) > 20 * max(1e-9, min(min(v) for _r, v in data)):
        ax.set_xscale("log")
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return path


def write_comparison(cmp: Comparison, out_dir: os.PathLike | str, plots: bool = True) -> Comparison:
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    md = out / "compare.md"
    md.write_text(cmp.markdown, encoding="utf-8")
    cmp.files["markdown"] = md
    cascade = [{**r, "triggers": counts_text(r["triggers"]), "calls_by_model": counts_text(r["calls_by_model"])}
               for r in cmp.cascade]
    for name, rows in (("compare.csv", cmp.rows), ("pairs.csv", cmp.pairs), ("categories.csv", cmp.categories),
                       ("cascade.csv", cascade)):
        if name == "cascade.csv" and not rows:   # runs without per-step data: no file, as before
            continue
        path = out / name
        with path.open("w", newline="", encoding="utf-8") as fh:
            if rows:
                w = csv.DictWriter(fh, fieldnames=list(rows[0]))
                w.writeheader()
                for r in rows:
                    w.writerow({k: ("" if isinstance(v, float) and not math.isfinite(v) else v)
                                for k, v in r.items()})
        cmp.files[name] = path
    if plots:
        for key, label, name in (("wall_s_median", "median wall time per case (s)", "accuracy_vs_latency.png"),
                                 ("energy_j_per_case", "energy per case (J)", "accuracy_vs_energy.png")):
            p = _plot(cmp.rows, key, label, out / name)
            if p is not None:
                cmp.files[name] = p
        p = _plot_ttft(cmp.rows, cmp.ttft_ms, out / "ttft_by_cell.png")
        if p is not None:
            cmp.files["ttft_by_cell.png"] = p
    return cmp
