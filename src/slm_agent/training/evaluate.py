"""Before/after: the same held-out benchmark cases on the base profile and on base + adapter.

The adapter gets its own profile file (``<out>/<profile>-lora.yaml``: the
base profile with ``model.lora`` set), so the two runs differ only in the
adapter and run.json records which one each used.  Both runs go through
``slm-agent bench`` (the ROS nodes, as any benchmark run), then
``slm-agent compare``'s report is written to ``<out>/eval/compare``.

Held-out means: no evaluated case id may appear in the training dataset
(checked when the dataset is given; such a run is refused).
"""
from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path
from typing import Any, Optional

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


def run_bench(model: str, out_dir: Path, ids: str, categories: str, limit: int) -> int:
    cmd = [sys.executable, "-m", "slm_agent.cli", "bench", "--model", model, "--output-dir", str(out_dir),
           "--no-record", "--no-telemetry", "--no-report", "--quiet"]
    if ids:
        cmd += ["--ids", ids]
    else:
        cmd += ["--categories", categories]
    if limit:
        cmd += ["--limit", str(limit)]
    return subprocess.call(cmd)


def before_after(profile_name: str, out: Path, *, ids: str = "", categories: str = "", limit: int = 0,
                 scale: float = 1.0, dataset: Optional[str] = None) -> str:
    """Run base and adapter on the same cases; returns the comparison's Markdown."""
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
    lora_profile = adapter_profile(profile, adapter, scale, out)
    load_profile(str(lora_profile))  # refuse a broken adapter before starting any node
    runs = [out / "eval" / "base", out / "eval" / "adapter"]
    for model, run in ((profile_name, runs[0]), (str(lora_profile), runs[1])):
        code = run_bench(model, run, ids, categories, limit)
        if code != 0:
            raise TrainingError(f"slm-agent bench --model {model} failed (exit {code}); see {run}/logs")
    cmp = compare([str(r) for r in runs], tokens=False)
    write_comparison(cmp, out / "eval" / "compare", plots=False)
    return cmp.markdown
