"""The LLM-to-SLM loop end to end on a tiny fixture (issue 25), every step through its CLI.

1. teacher stand-in: ``slm-agent bench --agent gold`` on BFCL live cases (live_simple 3,
   live_irrelevance 2) in the bfcl serialization -- the suite's gold answers play the teacher;
2. ``slm-agent dataset --allow-bfcl``: the live cases kept (irrelevance ones as answers without
   a call), rendered in the run's own format (direct / bfcl), report.json saying what was kept;
3. ``slm-agent finetune --max-steps 2`` on the default Gemma 3 270M with
   ``--eval-categories simple_python,irrelevance --eval-limit 1`` and ``--eval-with`` a gold run
   of the same eval cases (the teacher's cell): base and adapter run in the dataset's format
   into OUTPUT/eval/<profile> and OUTPUT/eval/<profile>-lora;
4. ``benchmarks/llm_to_slm_check.py`` prints the headline with ``train/eval overlap 0``.

And a held-out case (simple_python_0) planted in train.jsonl makes finetune refuse the dataset
in one line before any model loads.
"""
from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

pytest.importorskip("torch", reason="torch not installed (requirements/base.txt)")
pytest.importorskip("peft", reason="peft not installed (requirements/base.txt)")
pytest.importorskip("trl", reason="trl not installed (requirements/base.txt)")
pytest.importorskip("llama_cpp", reason="llama-cpp-python not installed (tools/bootstrap.py)")
pytest.importorskip("bfcl_eval", reason="bfcl_eval not installed (pip install --no-deps bfcl-eval==2026.3.23)")
pytest.importorskip("statsmodels", reason="statsmodels not installed (requirements/base.txt)")

ROOT = Path(__file__).resolve().parents[2]
CHECK = ROOT / "benchmarks" / "llm_to_slm_check.py"
PROFILE = "gemma3-270m-q4km"
TEACHER_IDS = ["live_simple_0-0-0", "live_simple_1-1-0", "live_simple_2-2-0",
               "live_irrelevance_0-0-0", "live_irrelevance_1-0-1"]
EVAL_CATEGORIES = "simple_python,irrelevance"


def _cli(*args: str, timeout: float = 900) -> subprocess.CompletedProcess:
    env = {**os.environ, "PYTHONUNBUFFERED": "1"}
    return subprocess.run([sys.executable, "-m", "slm_agent.cli", *args], capture_output=True, text=True,
                          timeout=timeout, env=env, cwd=ROOT)


def _ok(res: subprocess.CompletedProcess) -> str:
    assert res.returncode == 0, f"exit {res.returncode}\n{res.stdout[-3000:]}\n{res.stderr[-3000:]}"
    return res.stdout


def _gold(out: Path, *selection: str) -> Path:
    _ok(_cli("bench", "--agent", "gold", *selection, "--serialization", "bfcl", "--no-record",
             "--no-telemetry", "--no-report", "--quiet", "--output-dir", str(out)))
    return out


@pytest.fixture(scope="module")
def loop(tmp_path_factory):
    root = tmp_path_factory.mktemp("llm2slm")
    teacher = _gold(root / "teacher_logs", "--ids", ",".join(TEACHER_IDS))
    out = root / "result"
    dataset = out / "dataset"
    built = _ok(_cli("dataset", str(teacher), "--allow-bfcl", "-o", str(dataset)))
    teacher_eval = _gold(root / "teacher_eval", "--categories", EVAL_CATEGORIES, "--limit", "1")
    tuned = _cli("finetune", str(dataset), "-o", str(out), "--model", PROFILE, "--max-steps", "2",
                 "--max-length", "3072", "--threads", "2", "--qlora", "off", "--quiet",
                 "--eval-categories", EVAL_CATEGORIES, "--eval-limit", "1", "--eval-with", str(teacher_eval),
                 timeout=1500)
    return {"root": root, "out": out, "dataset": dataset, "built": built, "tuned": _ok(tuned)}


def test_the_dataset_keeps_the_live_cases_and_says_what_and_why(loop):
    report = json.loads((loop["dataset"] / "report.json").read_text())
    assert report["kept"] == {"rundir": {"with tool calls": 3, "answer without a call": 2}}
    assert "passed cases" in report["kept_because"]["rundir"]
    assert report["formats"] == {"direct/bfcl": 5} and report["dropped_total"] == 0
    assert report["train"] + report["validation"] == 5
    records = [json.loads(line) for name in ("train.jsonl", "validation.jsonl")
               for line in (loop["dataset"] / name).read_text().splitlines() if line.strip()]
    by_id = {r["meta"]["case_id"]: r for r in records}
    assert set(by_id) == set(TEACHER_IDS)
    for cid in TEACHER_IDS[3:]:            # irrelevance: the answer is words, no call
        last = by_id[cid]["messages"][-1]
        assert last["role"] == "assistant" and not last["content"].startswith("[") and "tool_calls" not in last
    assert by_id["live_simple_0-0-0"]["messages"][-1]["content"] == "[get_user_info(user_id=7890, special='black')]"
    assert "kept 2 (rundir" in loop["built"] and "answer without a call" in loop["built"]


def test_finetune_evaluates_in_the_datasets_format_into_the_check_layout(loop):
    out = loop["out"]
    assert "before/after in strategy direct, serialization bfcl, chat format chat" in loop["tuned"]
    cells = {p.name for p in (out / "eval").iterdir() if (p / "run.json").is_file()}
    assert cells == {PROFILE, f"{PROFILE}-lora", "gold"}
    for cell in (PROFILE, f"{PROFILE}-lora"):
        run = json.loads((out / "eval" / cell / "run.json").read_text())
        assert run["config"]["serialization"] == "bfcl" and run["config"]["strategy"] == "direct"
        records = [json.loads(x) for x in (out / "eval" / cell / "results.jsonl").read_text().splitlines() if x]
        assert sorted(r["case_id"] for r in records) == ["irrelevance_0", "simple_python_0"]
        assert all(r["serialization"] == "bfcl" for r in records)
    lora = json.loads((out / "eval" / f"{PROFILE}-lora" / "run.json").read_text())["model_profile"]
    assert lora["name"] == f"{PROFILE}-lora" and lora["adapter"]["sha256"]
    assert (out / "eval" / "compare" / "compare.md").is_file()


def test_llm_to_slm_check_prints_the_headline(loop):
    res = subprocess.run([sys.executable, str(CHECK), str(loop["out"]), "--teacher", "gold"], capture_output=True,
                         text=True, timeout=300)
    assert res.returncode == 0, res.stdout + res.stderr
    last = res.stdout.strip().splitlines()[-1]
    assert last.startswith(f"student {PROFILE}: base ") and "/2, teacher 2/2, McNemar p=" in last, res.stdout
    assert last.endswith("train/eval overlap 0"), res.stdout


def test_a_held_out_case_planted_in_the_training_data_is_refused(loop, tmp_path):
    from slm_agent.bench.suite import get_suite

    planted = tmp_path / "planted"
    planted.mkdir()
    case = get_suite("bfcl").select(["simple_python"], (), 1)[0]
    assert case.case_id == "simple_python_0"
    question = next(m["content"] for m in case.turns[0] if m["role"] == "user")
    record = {"messages": [{"role": "user", "content": question},
                           {"role": "assistant", "content": "[calculate_triangle_area(base=10, height=5)]"}],
              "meta": {"case_id": case.case_id}}
    train = (loop["dataset"] / "train.jsonl").read_text() + json.dumps(record) + "\n"
    (planted / "train.jsonl").write_text(train)
    res = _cli("finetune", str(planted), "-o", str(tmp_path / "out"), "--max-steps", "2", timeout=300)
    assert res.returncode == 2
    [line] = res.stderr.strip().splitlines()
    assert "are in the held-out evaluation set" in line and "case id simple_python_0" in line, line
    assert not (tmp_path / "out").exists(), "refused before anything was written"
