"""``slm-agent dataset``: sources -> curated, clustered, split, rendered JSONL.

Order of work: read every source (:mod:`.rundir`, :mod:`.toolmind`,
:mod:`.tau2_gold`; each counts what it drops and why), scrub personal data
(:mod:`.scrub`), de-duplicate (after scrubbing, so records differing only in
personal data count as duplicates), cluster into tasks and split by cluster
(:mod:`.cluster`), optionally add declines to unrelated tools
(:mod:`.irrelevance`), render (:mod:`.render`), write ``train.jsonl``,
``validation.jsonl`` and ``report.json`` into the output directory.
"""
from __future__ import annotations

import json
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Optional, Sequence

from slm_agent.dataset.cluster import Cluster, cluster_samples, split_by_cluster
from slm_agent.dataset.irrelevance import SOURCE as SYNTH_SOURCE
from slm_agent.dataset.irrelevance import synthesise_irrelevance
from slm_agent.dataset.records import Drops, Sample
from slm_agent.dataset.render import NATIVE, RenderError, render
from slm_agent.dataset.scrub import Scrubber

TRAIN_FILE = "train.jsonl"
VALIDATION_FILE = "validation.jsonl"
REPORT_FILE = "report.json"


#: why a source's records are kept (report.json ``kept_because``)
KEPT_BECAUSE = {"rundir": "passed cases of run directories, failed steps and unparsed replies removed",
                "toolmind": "ToolMind rows, normalised", "tau2": "tau2 train-split tasks, gold actions executed",
                SYNTH_SOURCE: "synthesised: a kept question with another task cluster's tools (no tool name in "
                               "common), the reply declines (--irrelevance-share)"}
WITH_CALLS = "with tool calls"
ANSWER_ONLY = "answer without a call"


@dataclass
class DatasetOptions:
    run_dirs: Sequence[str] = ()
    toolmind: Sequence[str] = ()
    tau2_domains: Sequence[str] = ()
    tau2_limit: int = 0
    allow_bfcl: bool = False
    #: "" = each record in its run's strategy/serialization (native for other sources)
    strategy: str = ""
    serialization: str = ""
    #: the student's call syntax for serialization native (its profile's chat.native_calls)
    native_calls: str = ""
    #: the student's system-prompt order for json/toon/natural (its profile's chat.prompt_layout;
    #: shared_prefix in every shipped profile)
    prompt_layout: str = "shared_prefix"
    val_fraction: float = 0.2
    clusters: int = 0
    seed: int = 0
    scrub: bool = True
    #: answers without a call synthesised from the kept calls, as a share of them (dataset/irrelevance.py)
    irrelevance_share: float = 0.0


@dataclass
class DatasetReport:
    read: Counter = field(default_factory=Counter)        # samples read per source
    drops: Drops = field(default_factory=Drops)
    fixes: Counter = field(default_factory=Counter)       # normalisations applied (not drops)
    scrubbed: Counter = field(default_factory=Counter)    # replacements per kind
    clusters: list[Cluster] = field(default_factory=list)
    train: int = 0
    validation: int = 0
    #: records written per source and kind (with tool calls / an answer without a call)
    kept: Counter = field(default_factory=Counter)
    #: records written per rendered format ("<strategy>/<serialization>", "native" = canonical)
    formats: Counter = field(default_factory=Counter)

    @property
    def unreadable(self) -> int:
        """Lines of the sources that could not be read as records (counted in ``drops``)."""
        return sum(n for (_, reason), n in self.drops.counts.items() if reason.startswith("unreadable line"))

    def to_json(self) -> dict[str, Any]:
        kept: dict[str, dict[str, int]] = {}
        for (source, kind), n in sorted(self.kept.items()):
            kept.setdefault(source, {})[kind] = n
        return {"read": dict(self.read), "unreadable_lines": self.unreadable, "kept": kept,
                "kept_because": {src: KEPT_BECAUSE.get(src, "read") for src in kept}, "formats": dict(self.formats),
                "dropped": self.drops.as_dict(), "dropped_total": self.drops.total(),
                "normalised": dict(self.fixes), "scrubbed": dict(self.scrubbed), "train": self.train,
                "validation": self.validation, "clusters": [c.to_json() for c in self.clusters]}

    def lines(self) -> list[str]:
        out = [f"kept {self.train + self.validation} records: {self.train} train, {self.validation} validation "
               f"({len(self.clusters)} task clusters)"]
        for source, n in sorted(self.read.items()):
            out.append(f"  read {n} from {source}")
        for (source, kind), n in sorted(self.kept.items()):
            out.append(f"  kept {n} ({source}, {KEPT_BECAUSE.get(source, 'read')}): {kind}")
        if self.formats:
            out.append("  rendered as " + ", ".join(f"{f} {n}" for f, n in sorted(self.formats.items()))
                       + " (strategy/serialization)")
        if self.unreadable:
            out.append(f"  WARNING: {self.unreadable} unreadable line(s) skipped (see 'dropped' below)")
        for source, reasons in self.drops.as_dict().items():
            for reason, n in reasons.items():
                out.append(f"  dropped {n} ({source}): {reason}")
        for what, n in sorted(self.fixes.items()):
            out.append(f"  normalised {n}: {what}")
        if self.scrubbed:
            out.append("  scrubbed: " + ", ".join(f"{n} {k}" for k, n in sorted(self.scrubbed.items())))
        for c in sorted(self.clusters, key=lambda c: -c.size):
            out.append(f"  cluster {c.id} [{c.split}] {c.size}: {', '.join(c.top_terms[:4])} | "
                       f"tools {', '.join(c.top_tools) or '-'}")
        return out


def collect(opts: DatasetOptions, report: DatasetReport) -> list[Sample]:
    """Every sample of every source (drops and fixes counted in ``report``)."""
    from slm_agent.dataset.rundir import read_run_dir
    from slm_agent.dataset.tau2_gold import read_tau2
    from slm_agent.dataset.toolmind import read_toolmind

    samples: list[Sample] = []
    for d in opts.run_dirs:
        samples.extend(read_run_dir(d, report.drops, report.fixes, allow_bfcl=opts.allow_bfcl))
    for f in opts.toolmind:
        if not Path(f).is_file():
            raise FileNotFoundError(f"ToolMind file not found: {f}")
        samples.extend(read_toolmind(f, report.drops, report.fixes))
    if opts.tau2_domains:
        samples.extend(read_tau2(opts.tau2_domains, report.drops, opts.tau2_limit))
    report.read.update(s.source for s in samples)
    return samples


def curate(samples: list[Sample], opts: DatasetOptions, report: DatasetReport) -> list[Sample]:
    """Scrub, then drop exact duplicates (counted)."""
    scrubber = Scrubber()
    seen: set[str] = set()
    out = []
    for s in samples:
        if opts.scrub:
            s.messages = scrubber.messages(s.messages)
        key = s.key()
        if key in seen:
            report.drops.add(s.source, "duplicate")
            continue
        seen.add(key)
        out.append(s)
    report.scrubbed.update(scrubber.counts)
    return out


def sample_format(s: Sample, opts: DatasetOptions) -> tuple[str, str]:
    """(strategy, serialization) a sample is rendered in: the options', else its run's own."""
    return (opts.strategy or str(s.meta.get("strategy") or NATIVE),
            opts.serialization or str(s.meta.get("serialization") or "json"))


def render_sample(s: Sample, opts: DatasetOptions) -> dict[str, Any]:
    strategy, serialization = sample_format(s, opts)
    return render(s, strategy, serialization, opts.native_calls or None, opts.prompt_layout)


def check_native_calls(opts: DatasetOptions, samples: Sequence[Sample]) -> None:
    """Serialization native needs the student's call syntax: refused in one line before anything
    is written (ValueError) when a sample would be rendered in it without ``native_calls``."""
    from slm_agent.dataset.render import NATIVE_CALLS

    if opts.native_calls and opts.native_calls not in NATIVE_CALLS:
        raise ValueError(f"native_calls must be one of {', '.join(NATIVE_CALLS)}, got {opts.native_calls!r}")
    formats = {sample_format(s, opts) for s in samples}
    if not opts.native_calls and any(ser == "native" and strat != NATIVE for strat, ser in formats):
        raise ValueError("serialization native is the student's own call syntax: name it with --native-calls "
                         f"({', '.join(NATIVE_CALLS)}: the student profile's chat.native_calls)")


def build_dataset(opts: DatasetOptions, out_dir: Path | str) -> DatasetReport:
    """Build and write the dataset; returns the report (also written as report.json)."""
    if not (opts.run_dirs or opts.toolmind or opts.tau2_domains):
        raise ValueError("no source given: name run directories, --toolmind files or --tau2 domains")
    if not 0.0 <= opts.val_fraction < 1.0:
        raise ValueError(f"val_fraction must be in [0, 1), got {opts.val_fraction}")
    if not 0.0 <= opts.irrelevance_share <= 1.0:
        raise ValueError(f"irrelevance_share must be in [0, 1], got {opts.irrelevance_share}")
    report = DatasetReport()
    samples = curate(collect(opts, report), opts, report)
    check_native_calls(opts, samples)
    labels, clusters = cluster_samples(samples, opts.clusters, opts.seed)
    val = split_by_cluster(labels, clusters, opts.val_fraction, opts.seed)
    report.clusters = clusters
    synthesised = synthesise_irrelevance(samples, labels, opts.irrelevance_share, opts.seed)
    if synthesised:
        report.read[SYNTH_SOURCE] += len(synthesised)
        samples = [*samples, *(s for s, _ in synthesised)]
        labels = [*labels, *(lab for _, lab in synthesised)]
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    with (out / TRAIN_FILE).open("w", encoding="utf-8") as tr, (out / VALIDATION_FILE).open("w", encoding="utf-8") as va:
        for s, lab in zip(samples, labels):
            try:
                rec = render_sample(s, opts)
            except RenderError:   # the agent would not read the step back as logged: not taught
                report.drops.add(s.source, "does not read back in the rendered format (%s/%s)" % sample_format(s, opts))
                continue
            report.kept[(s.source, WITH_CALLS if s.calls() else ANSWER_ONLY)] += 1
            fmt = rec["meta"].get("strategy")
            report.formats[f"{fmt}/{rec['meta']['serialization']}" if fmt else NATIVE] += 1
            rec["meta"]["cluster"] = lab
            fh = va if lab in val else tr
            fh.write(json.dumps(rec, ensure_ascii=False) + "\n")
            if lab in val:
                report.validation += 1
            else:
                report.train += 1
    (out / REPORT_FILE).write_text(json.dumps(report.to_json(), indent=2, ensure_ascii=False) + "\n")
    return report


def read_jsonl(path: Path | str, limit: Optional[int] = None) -> list[dict[str, Any]]:
    rows = []
    with Path(path).open(encoding="utf-8") as fh:
        for line in fh:
            if line.strip():
                rows.append(json.loads(line))
                if limit and len(rows) >= limit:
                    break
    return rows
