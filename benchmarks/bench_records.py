"""Reading a run directory's per-case records, shared by the benchmark scripts here."""
from __future__ import annotations

import json
from pathlib import Path
from typing import Any


def records(out_dir: Path) -> dict[str, dict[str, Any]]:
    """``results.jsonl`` of ``out_dir`` by case id (the last record of a case wins)."""
    out = {}
    with (out_dir / "results.jsonl").open(encoding="utf-8") as fh:
        for line in fh:
            if line.strip():
                r = json.loads(line)
                out[r["case_id"]] = r
    return out


def counters(metric: dict[str, Any]) -> dict[str, float]:
    """A call metric's engine counters as a dict (they travel as two parallel lists)."""
    return dict(zip(metric.get("engine_counter_names") or [], metric.get("engine_counter_values") or []))


def parsed_calls(r: dict[str, Any]) -> list[tuple[str, Any]]:
    """A case's calls as (name, parsed arguments): what two runs must agree on."""
    out = []
    for c in r.get("calls") or []:
        try:
            args = json.loads(c.get("arguments") or "{}")
        except ValueError:
            args = c.get("arguments")
        out.append((c.get("name"), args))
    return out
