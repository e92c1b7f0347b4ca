"""Harness fidelity of the tau2 suite through ROS: the gold agent replays each task's gold
actions through the domain tools served as InvokeTool services (separate processes:
gold_agent_node, benchmark_node), tau2's evaluator scores every case.  Prints reward 1.0
counts per category, the cases that did not reach it and the wall time.  Too slow for the
test budget on a loaded 2-core machine (two tau2 imports of ~20 s plus the tasks), hence a
script:

    .venv/bin/python benchmarks/tau2_gold_fidelity.py                      # telecom:small
    .venv/bin/python benchmarks/tau2_gold_fidelity.py airline retail mock  # any categories

User side: ``auto`` (solo where tau2 has it; telecom tasks without a solo mode and the
airline/retail tasks run ``scripted``: the gold agent needs no user LLM).
"""
from __future__ import annotations

import json
import subprocess
import sys
import tempfile
import time
from collections import Counter
from pathlib import Path


def main(categories: list[str]) -> int:
    with tempfile.TemporaryDirectory(prefix="tau2_gold_") as tmp:
        out = Path(tmp) / "run"
        user = "auto" if all(c.split(":")[0] in ("mock", "telecom") for c in categories) else "scripted"
        cmd = [sys.executable, "-m", "slm_agent.cli", "bench", "--suite", "tau2", "--agent", "gold",
               "--no-telemetry", "--no-record", "--no-report", "--quiet", "--tau2-user", user,
               "--categories", ",".join(categories), "--output-dir", str(out), "--case-timeout", "300"]
        t0 = time.monotonic()
        proc = subprocess.run(cmd, capture_output=True, text=True)
        wall = time.monotonic() - t0
        results = out / "results.jsonl"
        if proc.returncode != 0 or not results.exists():
            print(proc.stdout[-3000:], proc.stderr[-3000:], sep="\n")
            print(f"slm-agent bench exited {proc.returncode}")
            return 1
        records = [json.loads(line) for line in results.read_text().splitlines() if line.strip()]
    total, ok = Counter(), Counter()
    for r in records:
        total[r["category"]] += 1
        ok[r["category"]] += r["reward"] == 1.0
    for cat in total:
        print(f"{cat:16s} reward 1.0: {ok[cat]}/{total[cat]}")
    for r in records:
        if r["reward"] != 1.0:
            print(f"  {r['case_id']} ({r['user_mode']}): reward {r['reward']}: {r['error_type']} {r['error'][:200]}")
    modes = Counter(r["user_mode"] for r in records)
    print(f"user modes: {dict(modes)}; {len(records)} cases in {wall:.0f} s wall (incl. node start-up)")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:] or ["telecom:small"]))
