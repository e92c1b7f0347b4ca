"""Before/after: the same held-out benchmark cases on the base profile and on base + adapter.

The adapter gets its own profile file (``<out>/<profile>-lora.yaml``: the
base profile with ``model.lora`` set, named ``<profile>-lora``), so the two
runs differ only in the adapter and run.json records which one each used
(``model_profile.name`` and ``model_profile.adapter``).  Both runs go through
``slm-agent bench`` (the ROS nodes, as any benchmark run) into
``<out>/eval/<profile>`` and ``<out>/eval/<profile>-lora`` -- the cell layout
``benchmarks/llm_to_slm_check.py`` reads -- and run directories given with
``--eval-with`` (the teacher's run of the same cases) are copied beside them;
then ``slm-agent compare``'s report of all cells is written to
``<out>/eval/compare``.

Both runs use the format the student was trained in: the strategy and
serialization the dataset's records were rendered in (``meta.strategy`` /
``meta.serialization``; one format per dataset, or name it), as chat
messages (datasets are rendered as chat); ``--eval-strategy`` /
``--eval-serialization`` win.  A dataset in the canonical (``native``
strategy) rendering has no agent format: the bench defaults are used.

Held-out means: no evaluated case id may appear in the training dataset
(checked when the dataset is given; such a run is refused).
"""
from __future__ import annotations

import json
import shutil
import subprocess
import sys
from collections import Counter
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Optional, Sequence

import yaml

from slm_agent.training.base_model import TrainingError
from slm_agent.training.sft import GGUF_ADAPTER


def adapter_profile(profile: Any, adapter: Path, scale: float, out: Path) -> Path:
    """Write the base profile plus ``model.lora`` to ``out``; returns the file."""
    if not profile.source:
        raise TrainingError(f"profile {profile.name} has no YAML file to derive the adapter profile from")
    data = yaml.safe_load(Path(profile.source).read_text(encoding="utf-8")) or {}
    data["name"] = f"{profile.name}-lora"
    data.setdefault("model", {})["lora"] = {"path": str(adapter.resolve()), "scale": float(scale)}
    chat = data.get("chat") or {}
    if chat.get("template_file"):  # relative to the base profile's folder: make it absolute
        chat["template_file"] = profile.chat.template_file
    path = out / f"{profile.name}-lora.yaml"
    path.write_text("# written by slm-agent finetune: the base profile plus its LoRA adapter\n"
                    + yaml.safe_dump(data, sort_keys=False), encoding="utf-8")
    return path


def training_case_ids(dataset: str) -> set[str]:
    """Case ids the training data came from (meta.case_id of every record)."""
    p = Path(dataset)
    files = [p / "train.jsonl", p / "validation.jsonl"] if p.is_dir() else [p]
    ids = set()
    for f in files:
        if f.is_file():
            for line in f.read_text(encoding="utf-8").splitlines():
                if line.strip():
                    cid = (json.loads(line).get("meta") or {}).get("case_id")
                    if cid:
                        ids.add(str(cid))
    return ids


@dataclass(frozen=True)
class EvalFormat:
    """What the before/after runs send in each goal ("" = the bench's default)."""

    strategy: str = ""
    serialization: str = ""
    chat_format: str = ""
    #: the call syntax the dataset was written in (serialization native): the student's must match
    native_calls: str = ""
    #: the system-prompt order the dataset was written in (json/toon/natural): the student's must match
    prompt_layout: str = ""
    #: where the format came from, for the printed line
    source: str = "bench defaults"

    def bench_args(self) -> list[str]:
        out = []
        for flag, value in (("--strategy", self.strategy), ("--serialization", self.serialization),
                            ("--chat-format", self.chat_format)):
            if value:
                out += [flag, value]
        return out

    def describe(self) -> str:
        chat = self.chat_format or "(the agent's)"
        return (f"before/after in strategy {self.strategy or '(bench default)'}, serialization "
                f"{self.serialization or '(bench default)'}, chat format {chat} ({self.source})")


def dataset_formats(dataset: str) -> Counter:
    """(strategy, serialization, native_calls, prompt_layout) of every record of the dataset (train
    and validation); ("", "", "", "") for a record in the canonical rendering (no agent format)."""
    p = Path(dataset)
    files = [p / "train.jsonl", p / "validation.jsonl"] if p.is_dir() else [p]
    formats: Counter = Counter()
    for f in files:
        if f.is_file():
            for line in f.read_text(encoding="utf-8").splitlines():
                if line.strip():
                    meta = json.loads(line).get("meta") or {}
                    strategy = str(meta.get("strategy") or "")
                    if strategy == "native":
                        strategy = ""
                    formats[(strategy, str(meta.get("serialization") or "") if strategy else "",
                             str(meta.get("native_calls") or "") if strategy else "",
                             str(meta.get("prompt_layout") or "") if strategy else "")] += 1
    return formats


def eval_format(dataset: Optional[str], strategy: str = "", serialization: str = "") -> EvalFormat:
    """The before/after format: the flags, else the dataset's one rendered format (TrainingError
    when the dataset mixes formats and the flags do not name one)."""
    formats = dataset_formats(dataset) if dataset else Counter()
    rendered = {k: n for k, n in formats.items() if k[0]}
    if strategy and serialization:
        chat = "chat" if rendered else ""
        same = [k for k in rendered if k[:2] == (strategy, serialization)]   # the dataset's syntax/order, if its
        extra = same[0][2:] if len(same) == 1 else ("", "")
        return EvalFormat(strategy, serialization, chat, *extra, source="--eval-strategy/--eval-serialization")
    if len(formats) > 1:
        listed = ", ".join(f"{k[0] or 'canonical'}/{k[1] or '-'}" + (f" ({k[3]})" if k[3] else "") + f" {n}"
                           for k, n in formats.most_common())
        raise TrainingError(f"the dataset's records are in several formats ({listed}): name the before/after "
                            f"format with --eval-strategy and --eval-serialization")
    if not rendered:
        return EvalFormat(strategy, serialization,
                          source="flags" if strategy or serialization else
                          "bench defaults: the dataset is in the canonical rendering")
    (d_strategy, d_serialization, native_calls, layout), = rendered
    return EvalFormat(strategy or d_strategy, serialization or d_serialization, "chat", native_calls, layout,
                      source="the format the dataset was rendered in" + (", flags win" if strategy or serialization
                                                                           else ""))


def eval_format_problems(profile: Any, fmt: EvalFormat) -> list[str]:
    """A dataset written in another call syntax (native) or system-prompt order (json, toon,
    natural) than the student's own: the before/after would not be in the trained format."""
    own = getattr(profile.chat, "native_calls", None)
    if fmt.serialization == "native" and fmt.native_calls and fmt.native_calls != own:
        return [f"the dataset is written in the native call syntax {fmt.native_calls}, but {profile.name}'s own "
                f"is {own or 'none'} (chat.native_calls): rebuild it with slm-agent dataset --native-calls {own}"]
    layout = getattr(profile.chat, "prompt_layout", "tools_first")
    if fmt.prompt_layout and fmt.serialization not in ("native", "bfcl") and fmt.prompt_layout != layout:
        return [f"the dataset's system prompts are in the order {fmt.prompt_layout}, but {profile.name} prompts in "
                f"{layout} (chat.prompt_layout): rebuild it with slm-agent dataset --prompt-layout {layout}"]
    return []


def run_bench(model: str, out_dir: Path, ids: str, categories: str, limit: int,
              fmt: EvalFormat = EvalFormat(), concurrency: int = 1) -> int:
    cmd = [sys.executable, "-m", "slm_agent.cli", "bench", "--model", model, "--output-dir", str(out_dir),
           "--no-record", "--no-telemetry", "--no-report", "--quiet", *fmt.bench_args()]
    if concurrency != 1:
        cmd += ["--concurrency", str(concurrency)]
    if ids:
        cmd += ["--ids", ids]
    else:
        cmd += ["--categories", categories]
    if limit:
        cmd += ["--limit", str(limit)]
    return subprocess.call(cmd)


def run_name(run_dir: Path) -> str:
    """A run directory's model as llm_to_slm_check names it: run.json model_profile.name, else
    config.model, else the directory's name."""
    run = json.loads((run_dir / "run.json").read_text(encoding="utf-8"))
    prof = run.get("model_profile") or {}
    return str(prof.get("name") or (run.get("config") or {}).get("model") or run_dir.name)


def copy_cell(run_dir: Path, eval_dir: Path, taken: Sequence[str]) -> Path:
    """Copy a run directory's run.json, results.jsonl (and params.yaml) to ``eval_dir/<its model>``."""
    name = run_name(run_dir)
    if name in taken:
        raise TrainingError(f"--eval-with {run_dir}: its model {name} is already a cell of this evaluation")
    cell = eval_dir / name
    cell.mkdir(parents=True, exist_ok=True)
    for f in ("run.json", "results.jsonl", "params.yaml"):
        if (run_dir / f).is_file():
            shutil.copyfile(run_dir / f, cell / f)
    return cell


def _with_defaults(cfg: dict[str, Any], profile: Any) -> dict[str, Any]:
    """A bench config with the agent's defaults filled in: an empty strategy or serialization is
    the agent's own setting, an empty chat format resolved as the agent does for ``profile``."""
    from slm_agent.agent.strategies import resolve_chat_format
    from slm_agent.settings import AgentSettings

    out = dict(cfg)
    for key in ("strategy", "serialization"):
        out[key] = out.get(key) or AgentSettings.model_fields[key].default
    out["chat_format"] = resolve_chat_format(str(out.get("chat_format") or ""), profile)
    out["concurrency"] = int(out.get("concurrency") or 1)
    return out


def _config(run_dir: Path, profile: Any) -> dict[str, Any]:
    """run.json's config, with the agent's defaults filled in (:func:`_with_defaults`)."""
    cfg = json.loads((Path(run_dir) / "run.json").read_text(encoding="utf-8")).get("config") or {}
    return _with_defaults(cfg, profile)


def base_run_problems(base_run: str, profile: Any, fmt: EvalFormat, *, ids: str, categories: str, limit: int,
                      concurrency: int) -> list[str]:
    """Why ``--eval-base`` cannot stand for the base's before/after run (one line each): it must
    run the student's profile on the same cases, in the same strategy, serialization, effective
    chat format (raw/chat, as the profile resolves an empty one) and concurrency -- a cell in
    another format or concurrency would make the before/after an unfair comparison."""
    from slm_agent.bench import rundir

    base = Path(base_run)
    name = run_name(base)
    if name != profile.name:
        return [f"--eval-base {base_run}: it runs {name}, not the student {profile.name}"]
    cfg = _config(base, profile)
    planned = {**_with_defaults({"strategy": fmt.strategy, "serialization": fmt.serialization,
                                 "chat_format": fmt.chat_format, "concurrency": concurrency}, profile),
               "ids": [i.strip() for i in ids.split(",") if i.strip()],
               "categories": [c.strip() for c in categories.split(",") if c.strip()], "limit": limit}
    out = [f"--eval-base {base_run}: its {k} is {cfg[k]!r}, the before/after runs {planned[k]!r}"
           + (" (--eval-concurrency)" if k == "concurrency" else "")
           for k in ("strategy", "serialization", "chat_format", "concurrency") if cfg[k] != planned[k]]
    if rundir.case_set(cfg) != rundir.case_set({**cfg, **{k: planned[k] for k in ("ids", "categories", "limit")}}):
        out.append(f"--eval-base {base_run}: it ran {rundir.describe_case_set(cfg)}, the before/after runs "
                   f"{rundir.describe_case_set(planned)}")
    return out


def same_run_problems(base: Path, lora: Path, profile: Any) -> list[str]:
    """Differences between the base cell (from ``--eval-base``) and the adapter's run in anything
    but the model (rundir's identity and measurement settings, the case set; empty settings
    compared as the agent resolves them, so the study's chat_format "" equals "chat" for a chat
    profile)."""
    from slm_agent.bench import rundir

    before, now = _config(base, profile), _config(lora, profile)
    before["model"] = now.get("model")
    diffs, _ = rundir.run_differences(before, now)
    return diffs


def check_cells(base: Path, lora: Path, profile_name: str) -> None:
    """The two cells name each other as llm_to_slm_check pairs them: base profile P, adapter
    profile P-lora with model_profile.adapter recorded."""
    names = (run_name(base), run_name(lora))
    adapter = (json.loads((lora / "run.json").read_text(encoding="utf-8")).get("model_profile") or {}).get("adapter")
    if names != (profile_name, f"{profile_name}-lora") or not adapter:
        raise TrainingError(f"the evaluation cells do not pair up: {base} runs {names[0]}, {lora} runs {names[1]} "
                            f"(adapter recorded: {bool(adapter)})")


def before_after(profile_name: str, out: Path, *, ids: str = "", categories: str = "", limit: int = 0,
                 scale: float = 1.0, dataset: Optional[str] = None, strategy: str = "", serialization: str = "",
                 with_runs: str = "", base_run: str = "", concurrency: int = 1) -> str:
    """Run base and adapter on the same cases in the dataset's format (see the module text),
    copy the ``with_runs`` cells beside them; returns the format line and the comparison's Markdown.
    With ``base_run`` (``--eval-base``) that run directory is the base cell: checked before and
    after the adapter's run to differ from it only in the model, then copied."""
    from slm_agent.bench.compare import compare, write_comparison
    from slm_agent.profiles import load_profile

    adapter = out / GGUF_ADAPTER
    if not adapter.is_file():
        raise TrainingError(f"{adapter} not found: train first (slm-agent finetune without --eval-only)")
    if dataset and ids:
        leaked = training_case_ids(dataset) & {i.strip() for i in ids.split(",") if i.strip()}
        if leaked:
            raise TrainingError(f"evaluation cases are in the training data: {', '.join(sorted(leaked))}")
    profile = load_profile(profile_name)
    fmt = eval_format(dataset, strategy, serialization)
    problems = eval_format_problems(profile, fmt)
    if base_run:
        problems += base_run_problems(base_run, profile, fmt, ids=ids, categories=categories, limit=limit,
                                      concurrency=concurrency)
    if problems:
        raise TrainingError(problems[0])
    lora_profile = adapter_profile(profile, adapter, scale, out)
    load_profile(str(lora_profile))  # refuse a broken adapter before starting any node
    eval_dir = out / "eval"
    runs = [eval_dir / profile.name, eval_dir / f"{profile.name}-lora"]
    todo = [(str(lora_profile), runs[1])] if base_run else [(profile_name, runs[0]), (str(lora_profile), runs[1])]
    for model, run in todo:
        code = run_bench(model, run, ids, categories, limit, fmt, concurrency)
        if code != 0:
            raise TrainingError(f"slm-agent bench --model {model} failed (exit {code}); see {run}/logs")
    if base_run:
        diffs = same_run_problems(Path(base_run), runs[1], profile)
        if diffs:
            raise TrainingError(f"--eval-base {base_run} differs from the adapter's run {runs[1]} in "
                                + ", ".join(diffs))
        if runs[0].exists():
            shutil.rmtree(runs[0])
        copy_cell(Path(base_run), eval_dir, [runs[1].name])
    check_cells(runs[0], runs[1], profile.name)
    for d in (x.strip() for x in with_runs.split(",")):
        if d:
            runs.append(copy_cell(Path(d), eval_dir, [r.name for r in runs]))
    cmp = compare([str(r) for r in runs], tokens=False)
    write_comparison(cmp, eval_dir / "compare", plots=False)
    return fmt.describe() + "\n\n" + cmp.markdown
