"""Benchmark report: Markdown, CSV and PNG plots from a run directory or a bag.

Sources (:func:`load_run`):

* a run directory's ``results.jsonl`` (+ ``run.json``), as the benchmark node
  writes them;
* a rosbag2 bag alone (the recorder's, or ``ros2 bag record``'s): the
  ``slm_agent/msg/ScenarioResult`` messages (each carries its cases'
  InferenceMetrics), decoded with the **bag's own message definitions**
  (``rosbags``; slm_agent's interfaces need not be installed), plus the
  ``slm_agent/msg/PowerState`` samples, integrated to fill energies the
  results left NaN (:class:`~slm_agent.telemetry.energy.PowerLog` with the
  run's ``energy_max_gap_s`` from run.json, else the declared default).  An unclosed bag (killed recorder) is salvaged first.

Tables (Markdown ``report.md``; all numbers also in ``report.csv``, one row per
group with a ``level`` column, and per case in ``cases.csv``):

* the summary, **Model | TTFT ms | Prefill tok/s | Decode tok/s | Accuracy**
  (medians over LLM calls; accuracy = passed / cases, a case that could not be
  run counts as failed and is listed as invalid), then the same per category
  (plus the suite's own columns, :meth:`slm_agent.bench.suite.Suite.report_columns`,
  e.g. mean reward) and per power mode;
* details: p50/p95 TTFT, energy per LLM call, energy per correct answer
  (all energy of the cases / passed cases), tokens per case, wall time per
  case and in total; energy reads "n/a (power not measured)" when no power
  was measured.

Plots (matplotlib, Agg): ``ttft.png`` (TTFT distribution), ``decode_rate.png``
(decode tokens/s per call), ``accuracy_vs_latency.png`` (accuracy against median
case wall time, one point per model and category).
"""
from __future__ import annotations

import csv
import math
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Iterable, Optional, Sequence

from slm_agent.bench.escalation import cascade_summary, counts_text
from slm_agent.bench.results import RESULTS_FILE, RUN_FILE, msg_to_dict, num, read_json, read_results_checked
from slm_agent.telemetry.energy import PowerLog, stamp_seconds

NA_POWER = "n/a (power not measured)"
NA = "n/a"


class ReportError(RuntimeError):
    pass


@dataclass
class RunData:
    records: list[dict[str, Any]]
    source: str                          # "results.jsonl" | "bag"
    path: Path
    run_info: dict[str, Any] = field(default_factory=dict)
    power_samples: int = 0
    power_measured_samples: int = 0
    notes: list[str] = field(default_factory=list)
    #: lines of results.jsonl that are not complete records, skipped ("line N: why")
    skipped_lines: list[str] = field(default_factory=list)


# --------------------------------------------------------------------------- loading

def is_bag(path: Path) -> bool:
    return path.is_dir() and ((path / "metadata.yaml").exists() or any(path.glob("*.mcap")))


def find_bag(run_dir: Path) -> Optional[Path]:
    for cand in (run_dir / "bag", run_dir):
        if is_bag(cand):
            return cand
    return None


def load_run(path: os.PathLike | str, source: str = "auto") -> RunData:
    """Records of a run from ``results.jsonl`` or a bag (``source``: auto | jsonl | bag)."""
    path = Path(path)
    if not path.exists():
        raise ReportError(f"{path} does not exist")
    if path.is_file() and path.name.endswith(".jsonl"):
        path = path.parent
    if source == "auto":
        source = "bag" if is_bag(path) or not (path / RESULTS_FILE).exists() else "jsonl"
    if source == "jsonl":
        records, skipped = read_results_checked(path / RESULTS_FILE)
        if not records:
            raise ReportError(f"no results in {path / RESULTS_FILE}"
                              + (f" ({len(skipped)} unreadable line(s) skipped)" if skipped else ""))
        return RunData(records, "results.jsonl", path, read_json(path / RUN_FILE) or {},
                       skipped_lines=[skipped_text(d) for d in skipped])
    bag = path if is_bag(path) else find_bag(path)
    if bag is None:
        raise ReportError(f"{path} has neither {RESULTS_FILE} nor a bag")
    return load_bag(bag)


def skipped_text(d: Any) -> str:
    """One skipped line of results.jsonl (a :class:`~slm_agent.bench.results.DamagedLine`) in words."""
    return f"line {d.line}: {d.reason}" + (f" (case {d.case_id})" if d.case_id else "")


def skipped_section(skipped: dict[str, list[str]]) -> str:
    """The report's words on skipped lines (\"\" when none): never a silent drop."""
    total = sum(len(v) for v in skipped.values())
    if not total:
        return ""
    out = ["", "## Skipped lines", "",
           f"**{total} line(s) of results.jsonl were skipped** (not complete case records); "
           "the figures above leave them out."]
    for where, lines in skipped.items():
        out += [f"- {where}: {line}" for line in lines]
    return "\n".join(out) + "\n"


def _t(stamp: dict[str, Any]) -> float:
    return stamp_seconds(stamp.get("sec", 0), stamp.get("nanosec", 0))


def load_bag(bag: os.PathLike | str) -> RunData:
    """Rebuild the run's records from a bag using only its embedded definitions; energy the
    run left NaN is integrated from the bag's PowerState with the run's ``energy_max_gap_s``
    (run.json next to the bag; else the declared default)."""
    from slm_agent.bench.bag import read_messages
    from slm_agent.bench.runner import call_dict
    from slm_agent.settings import BenchmarkSettings

    bag = Path(bag)
    run_json = read_json(bag.parent / RUN_FILE)
    gap = (run_json or {}).get("config", {}).get("energy_max_gap_s",
                                                 BenchmarkSettings.defaults()["energy_max_gap_s"])
    results: list[dict[str, Any]] = []
    power = PowerLog(max_gap_s=float(gap), horizon_s=10 * 86400.0)
    for m in read_messages(bag, msgtypes=["slm_agent/msg/ScenarioResult", "slm_agent/msg/PowerState"]):
        d = msg_to_dict(m.msg)
        if m.msgtype.endswith("/PowerState"):
            power.add(_t(d["header"]["stamp"]), num(d.get("total_power_w")), bool(d.get("total_available")),
                      d.get("power_mode", ""))
        else:
            results.append(d)
    n_power, n_measured = power.samples, power.measured_samples
    if not results:
        raise ReportError(f"{bag}: no slm_agent/msg/ScenarioResult messages")
    records: list[dict[str, Any]] = []
    seen: set[str] = set()
    for d in results:
        if d["case_id"] in seen:   # a resumed run can publish a case once per session at most; keep first
            continue
        seen.add(d["case_id"])
        metrics = d.get("metrics") or []
        if n_measured:
            for mm in metrics:
                if not math.isfinite(num(mm.get("energy_j"))):
                    mm["energy_j"] = power.joules(_t(mm["header"]["stamp"]), _t(mm["end_stamp"]))
        energy = num(d.get("energy_j"))
        wall = num(d.get("wall_time_s"))
        # cases in flight together (concurrency > 1) share the power samples: no case energy
        if n_measured and not math.isfinite(energy) and math.isfinite(wall) and _concurrency(run_json) == 1:
            t1 = _t(d["header"]["stamp"])
            energy = power.joules(t1 - wall, t1)
        records.append({
            "run_id": d.get("run_id", ""), "suite": d.get("suite", ""), "category": d.get("category", ""),
            "case_id": d["case_id"], "model": d.get("model", ""),
            "power_mode": d.get("power_mode") or power.power_mode,
            "valid": bool(d.get("valid")), "passed": bool(d.get("passed")),
            "error_type": d.get("error_type", ""), "error": d.get("error", ""),
            "raw_output": d.get("raw_output", ""), "calls": [call_dict(c) for c in d.get("calls") or []],
            "metrics": metrics, "wall_time_s": wall, "energy_j": energy,
            "prompt_tokens": sum(int(m.get("prompt_tokens", 0)) for m in metrics),
            "decode_tokens": sum(int(m.get("decode_tokens", 0)) for m in metrics),
            "llm_calls": len(metrics),
        })
    data = RunData(records, "bag", bag, power_samples=n_power, power_measured_samples=n_measured)
    if run_json:
        data.run_info = run_json
    return data


# --------------------------------------------------------------------------- statistics

def _finite(values: Iterable[Any]) -> list[float]:
    out = []
    for v in values:
        f = num(v)
        if math.isfinite(f):
            out.append(f)
    return out


def percentile(values: Sequence[float], q: float) -> float:
    """Linear-interpolated percentile (numpy's default); NaN for no values."""
    vals = sorted(values)
    if not vals:
        return math.nan
    pos = (len(vals) - 1) * q / 100.0
    lo, hi = math.floor(pos), math.ceil(pos)
    return vals[lo] + (vals[hi] - vals[lo]) * (pos - lo)


def aggregate(records: Sequence[dict[str, Any]]) -> dict[str, Any]:
    """Every figure of one group of cases (NaN where nothing was measured)."""
    n = len(records)
    passed = sum(1 for r in records if r.get("passed"))
    invalid = sum(1 for r in records if not r.get("valid", True))
    calls = [m for r in records for m in (r.get("metrics") or [])]
    ttft = _finite(m.get("ttft_ms") for m in calls)
    prefill = _finite(m.get("prefill_tokens_per_s") for m in calls)
    decode = _finite(m.get("decode_tokens_per_s") for m in calls)
    call_energy = _finite(m.get("energy_j") for m in calls)
    with_energy = [r for r in records if math.isfinite(num(r.get("energy_j")))]
    passed_with_energy = sum(1 for r in with_energy if r.get("passed"))
    walls = _finite(r.get("wall_time_s") for r in records)
    tokens = [int(r.get("prompt_tokens", 0) or 0) + int(r.get("decode_tokens", 0) or 0) for r in records]
    return {
        "cases": n, "passed": passed, "invalid": invalid,
        "accuracy": passed / n if n else math.nan,
        "llm_calls": len(calls),
        "ttft_ms_median": percentile(ttft, 50), "ttft_ms_p50": percentile(ttft, 50),
        "ttft_ms_p95": percentile(ttft, 95),
        "prefill_tps_median": percentile(prefill, 50), "decode_tps_median": percentile(decode, 50),
        "energy_j_per_call": sum(call_energy) / len(call_energy) if call_energy else math.nan,
        "energy_j_per_correct": (sum(num(r["energy_j"]) for r in with_energy) / passed_with_energy
                                 if passed_with_energy else math.nan),
        "energy_cases_measured": len(with_energy),
        "tokens_per_case": sum(tokens) / n if n else math.nan,
        "wall_s_per_case": sum(walls) / len(walls) if walls else math.nan,
        "wall_s_median": percentile(walls, 50),
        "wall_s_total": sum(walls),
    }


def group(records: Sequence[dict[str, Any]], key: Callable[[dict[str, Any]], tuple]) -> dict[tuple, list]:
    out: dict[tuple, list] = {}
    for r in records:
        out.setdefault(key(r), []).append(r)
    return out


def _model(r: dict[str, Any]) -> str:
    return r.get("model") or "(unlabelled)"


def _mode(r: dict[str, Any]) -> str:
    return r.get("power_mode") or "unknown"


# --------------------------------------------------------------------------- formatting

def _fmt(v: float, digits: int = 1) -> str:
    if not math.isfinite(v):
        return NA
    if abs(v) < 10 and digits < 2:
        digits = 2
    return f"{v:.{digits}f}"


def _energy(v: float, measured: bool) -> str:
    if not measured:
        return NA_POWER
    return f"{v:.3g}" if math.isfinite(v) else NA


def _acc(a: dict[str, Any]) -> str:
    s = f"{a['accuracy'] * 100:.1f}% ({a['passed']}/{a['cases']})" if a["cases"] else NA
    return s + (f", {a['invalid']} invalid" if a["invalid"] else "")


def _table(header: list[str], rows: list[list[str]]) -> list[str]:
    out = ["| " + " | ".join(header) + " |", "|" + "|".join(["---"] * len(header)) + "|"]
    out += ["| " + " | ".join(r) + " |" for r in rows]
    return out


def _seed_row(label: list[str], a: dict[str, Any]) -> list[str]:
    return label + [_fmt(a["ttft_ms_median"]), _fmt(a["prefill_tps_median"]), _fmt(a["decode_tps_median"]), _acc(a)]


def suite_columns(records: Sequence[dict[str, Any]], suite: Optional[str] = None) -> list:
    """The report columns of the suites of ``records`` (:class:`slm_agent.bench.suite.ReportColumn`);
    a suite that is not registered or does not load adds none."""
    from slm_agent.bench.suite import get_suite

    names = sorted({str(r.get("suite")) for r in records if r.get("suite")} or ({suite} if suite else set()))
    out: list = []
    seen: set[str] = set()
    for name in names:
        try:
            cols = get_suite(name).report_columns()
        except Exception:  # noqa: BLE001 - a report never fails for a suite it cannot load
            continue
        for c in cols:
            if c.name not in seen:
                seen.add(c.name)
                out.append(c)
    return out


@dataclass
class Report:
    markdown: str
    rows: list[dict[str, Any]]
    files: dict[str, Path] = field(default_factory=dict)
    columns: list[str] = field(default_factory=list)   # the suite's own columns (per-category rows)
    skipped_lines: list[str] = field(default_factory=list)   # results.jsonl lines left out, "line N: why"


def protocol_line(info: dict[str, Any]) -> str:
    """The report's line on the agent-loop rules of the run (run.json ``loop_protocol``):
    whether its scores are comparable with the suite's own; empty when unknown."""
    cfg = info.get("config") or {}
    lp = info.get("loop_protocol")
    if not isinstance(lp, dict):
        if not cfg:
            return ""
        # run.json from before goals carried a protocol: the agent's robot rules ran
        lp = {"setting": cfg.get("protocol", "robot"), "rules": "robot", "suite_protocol": "?",
              "comparable_with_suite": False, "description": "recorded before loop protocols existed"}
    suite = str(cfg.get("suite") or "the suite")
    try:
        from slm_agent.bench.suite import get_suite

        suite = get_suite(suite).title or suite
    except (ValueError, ImportError):
        pass
    head = f"Loop protocol: **{lp.get('rules')}** (setting protocol={lp.get('setting')})"
    if lp.get("comparable_with_suite"):
        return f"{head}: the suite's own protocol; scores are comparable with {suite}'s own scores."
    return (f"{head}: **NOT comparable with {suite}'s own scores** (the suite's protocol is "
            f"{lp.get('suite_protocol')}; {lp.get('description', '')}).")


def _concurrency(run_json: Optional[dict[str, Any]]) -> int:
    """Cases in flight at once in the run (run.json ``config.concurrency``; 1 before it existed)."""
    try:
        return max(1, int(((run_json or {}).get("config") or {}).get("concurrency", 1)))
    except (TypeError, ValueError):
        return 1


def build_report(data: RunData) -> Report:
    recs = data.records
    measured = any(math.isfinite(num(m.get("energy_j"))) for r in recs for m in r.get("metrics") or []) \
        or any(math.isfinite(num(r.get("energy_j"))) for r in recs)
    rows: list[dict[str, Any]] = []
    lines = [f"# Benchmark report", ""]
    info = data.run_info or {}
    cfg = info.get("config", {})
    lines.append(f"Source: `{data.path}` ({data.source}); {len(recs)} cases.")
    if cfg:
        lines.append(f"Run `{info.get('run_id', '')}`: suite {cfg.get('suite')}, strategy {cfg.get('strategy')}, "
                     f"serialization {cfg.get('serialization')}, started {info.get('started_at_iso', '?')}.")
    protocol = protocol_line(info)
    if protocol:
        lines.append(protocol)
    concurrency = _concurrency(info)
    if info:
        lines.append(f"Concurrency {concurrency}: " + (
            "one case at a time (as the seed's table)." if concurrency == 1 else
            f"up to {concurrency} cases in flight at once against the model server; per-call metrics (TTFT, "
            "rates) are per call, measured while other calls ran; case energy is not attributable "
            "(energy_j NaN per case)."))
    if data.source == "bag":
        lines.append(f"Power samples in the bag: {data.power_samples} ({data.power_measured_samples} with a "
                     "measured total).")
    if not measured:
        lines.append(f"Energy: {NA_POWER} on this machine for this run.")
    lines.append("")

    by_model = group(recs, lambda r: (_model(r),))
    lines += ["## Summary", "", "TTFT, prefill and decode rates are medians over LLM calls; accuracy is "
              "passed / cases.", ""]
    seed_rows = []
    for (model,), rs in sorted(by_model.items()):
        a = aggregate(rs)
        seed_rows.append(_seed_row([model], a))
        rows.append({"level": "model", "model": model, "category": "", "power_mode": "", **a})
    lines += _table(["Model", "TTFT ms", "Prefill tok/s", "Decode tok/s", "Accuracy"], seed_rows) + [""]

    columns = suite_columns(recs, cfg.get("suite"))
    cat_rows = []
    for (model, cat), rs in sorted(group(recs, lambda r: (_model(r), r.get("category", ""))).items()):
        a = aggregate(rs)
        cat_rows.append(_seed_row([model, cat], a) + [c.text(rs) for c in columns])
        rows.append({"level": "category", "model": model, "category": cat, "power_mode": "", **a,
                     **{c.name: c.compute(rs) for c in columns}})
    lines += ["## Per category", ""]
    lines += _table(["Model", "Category", "TTFT ms", "Prefill tok/s", "Decode tok/s", "Accuracy",
                     *(c.name for c in columns)], cat_rows) + [""]

    mode_rows = []
    for (model, mode), rs in sorted(group(recs, lambda r: (_model(r), _mode(r))).items()):
        a = aggregate(rs)
        mode_rows.append(_seed_row([model, mode], a))
        rows.append({"level": "power_mode", "model": model, "category": "", "power_mode": mode, **a})
    lines += ["## Per power mode", ""]
    lines += _table(["Model", "Power mode", "TTFT ms", "Prefill tok/s", "Decode tok/s", "Accuracy"], mode_rows)
    lines.append("")

    det_rows = []
    for (model, mode), rs in sorted(group(recs, lambda r: (_model(r), _mode(r))).items()):
        a = aggregate(rs)
        det_rows.append([model, mode, str(a["cases"]), str(a["llm_calls"]), _fmt(a["ttft_ms_p50"]),
                         _fmt(a["ttft_ms_p95"]), _energy(a["energy_j_per_call"], measured),
                         _energy(a["energy_j_per_correct"], measured), _fmt(a["tokens_per_case"]),
                         _fmt(a["wall_s_per_case"], 2), _fmt(a["wall_s_total"], 1)])
    lines += ["## Details", "", "Energy per correct answer = all energy of the measured cases / their passed "
              "cases.", ""]
    lines += _table(["Model", "Power mode", "Cases", "LLM calls", "p50 TTFT ms", "p95 TTFT ms", "J per call",
                     "J per correct answer", "Tokens per case", "Wall s per case", "Wall s total"], det_rows)
    lines.append("")

    cascade_rows = []
    for (model,), rs in sorted(by_model.items()):
        c = cascade_summary(rs)
        if c is not None:
            cascade_rows.append([model, str(c["steps"]),
                                 f"{c['steps_escalated']} ({_fmt(100 * c['escalated_share'])} %)",
                                 f"{c['cases_escalated']}/{c['cases']}", counts_text(c["triggers"]),
                                 counts_text(c["calls_by_model"]), _fmt(c["wall_s_per_case"], 2),
                                 _fmt(c["tokens_per_case"])])
    if cascade_rows:   # issue 26: only runs that recorded per-step models and triggers
        lines += ["## Cascade", "", "Steps asked again of the fallback model (agent settings fallback_model, "
                  "escalate_on), by trigger; LLM calls per model (the primary's discarded calls included).", ""]
        lines += _table(["Model", "LLM steps", "Escalated steps", "Cases escalated", "Triggers", "LLM calls by model",
                         "Wall s per case", "Tokens per case"], cascade_rows)
        lines.append("")

    failures = [r for r in recs if not r.get("passed")]
    if failures:
        lines += ["## Failure types", ""]
        counts: dict[str, int] = {}
        for r in failures:
            counts[r.get("error_type") or "?"] = counts.get(r.get("error_type") or "?", 0) + 1
        lines += _table(["Error type", "Cases"], [[k, str(v)] for k, v in sorted(counts.items(), key=lambda x: -x[1])])
        lines.append("")
    return Report("\n".join(lines), rows, columns=[c.name for c in columns])


# --------------------------------------------------------------------------- files

CSV_COLUMNS = ["level", "model", "category", "power_mode", "cases", "passed", "invalid", "accuracy", "llm_calls",
               "ttft_ms_median", "ttft_ms_p50", "ttft_ms_p95", "prefill_tps_median", "decode_tps_median",
               "energy_j_per_call", "energy_j_per_correct", "energy_cases_measured", "tokens_per_case",
               "wall_s_per_case", "wall_s_median", "wall_s_total"]
CASE_COLUMNS = ["case_id", "category", "model", "power_mode", "valid", "passed", "error_type", "llm_calls",
                "prompt_tokens", "decode_tokens", "wall_time_s", "energy_j"]


def _csv_value(v: Any) -> Any:
    if isinstance(v, float) and not math.isfinite(v):
        return ""
    return v


def write_report(data: RunData, out_dir: os.PathLike | str, plots: bool = True) -> Report:
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    rep = build_report(data)
    rep.skipped_lines = list(data.skipped_lines)
    rep.markdown += skipped_section({str(data.path / RESULTS_FILE): data.skipped_lines})
    files = {"markdown": out / "report.md", "csv": out / "report.csv", "cases_csv": out / "cases.csv"}
    if plots:
        files.update(write_plots(data.records, out))
        rep.markdown += "\n## Plots\n\n" + "\n".join(
            f"![{k}]({p.name})" for k, p in files.items() if p.suffix == ".png") + "\n"
    files["markdown"].write_text(rep.markdown, encoding="utf-8")
    with files["csv"].open("w", newline="", encoding="utf-8") as fh:
        extra = [name for name in rep.columns if name not in CSV_COLUMNS]
        w = csv.DictWriter(fh, fieldnames=CSV_COLUMNS + extra, extrasaction="ignore")
        w.writeheader()
        for row in rep.rows:
            w.writerow({k: _csv_value(v) for k, v in row.items()})
    with files["cases_csv"].open("w", newline="", encoding="utf-8") as fh:
        w = csv.DictWriter(fh, fieldnames=CASE_COLUMNS, extrasaction="ignore")
        w.writeheader()
        for r in data.records:
            w.writerow({k: _csv_value(num(r.get(k)) if k in ("wall_time_s", "energy_j") else r.get(k, ""))
                        for k in CASE_COLUMNS})
    rep.files = files
    return rep


def write_plots(records: Sequence[dict[str, Any]], out: Path) -> dict[str, Path]:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    from matplotlib.ticker import MaxNLocator

    files: dict[str, Path] = {}
    models = sorted({_model(r) for r in records})

    def series(field_name: str) -> dict[str, list[float]]:
        return {m: _finite(x.get(field_name) for r in records if _model(r) == m for x in r.get("metrics") or [])
                for m in models}

    for key, fname, field_name, xlabel, title in (
            ("ttft_plot", "ttft.png", "ttft_ms", "time to first token [ms]", "TTFT distribution per LLM call"),
            ("decode_plot", "decode_rate.png", "decode_tokens_per_s", "decode rate [tokens/s]",
             "Decode rate per LLM call")):
        fig, ax = plt.subplots(figsize=(7, 4))
        data = series(field_name)
        if any(data.values()):
            ax.hist([v for v in data.values()], bins=30, label=list(data.keys()), alpha=0.8)
            ax.legend()
        else:
            ax.text(0.5, 0.5, "not measured in this run", ha="center", va="center", transform=ax.transAxes)
        ax.set_xlabel(xlabel)
        ax.set_ylabel("LLM calls")
        ax.yaxis.set_major_locator(MaxNLocator(integer=True))
        ax.set_title(title)
        fig.tight_layout()
        files[key] = out / fname
        fig.savefig(files[key], dpi=100)
        plt.close(fig)

    fig, ax = plt.subplots(figsize=(7, 4))
    for model in models:
        pts = []
        for (cat,), rs in sorted(group([r for r in records if _model(r) == model],
                                       lambda r: (r.get("category", ""),)).items()):
            a = aggregate(rs)
            if math.isfinite(a["wall_s_median"]):
                pts.append((a["wall_s_median"], a["accuracy"] * 100, cat))
        if pts:
            ax.scatter([p[0] for p in pts], [p[1] for p in pts], label=model)
            for x, y, cat in pts:
                ax.annotate(cat, (x, y), fontsize=7, xytext=(3, 3), textcoords="offset points")
    ax.set_xlabel("median wall time per case [s]")
    ax.set_ylabel("accuracy [%]")
    ax.set_ylim(-5, 105)
    ax.set_title("Accuracy vs latency (one point per model and category)")
    if models:
        ax.legend()
    fig.tight_layout()
    files["accuracy_latency_plot"] = out / "accuracy_vs_latency.png"
    fig.savefig(files["accuracy_latency_plot"], dpi=100)
    plt.close(fig)
    return files


def default_output(path: Path, data: RunData) -> Path:
    if data.source == "bag":
        bag = data.path
        return bag.parent / f"{bag.name}_report" if bag.name != "bag" else bag.parent / "report_from_bag"
    return path / "report"


def make_report(path: os.PathLike | str, out_dir: Optional[os.PathLike | str] = None, source: str = "auto",
                plots: bool = True) -> Report:
    """Load a run (dir, results.jsonl or bag) and write its report; returns it with file paths."""
    p = Path(path)
    data = load_run(p, source)
    base = p.parent if p.is_file() else p
    return write_report(data, Path(out_dir) if out_dir else default_output(base, data), plots=plots)
