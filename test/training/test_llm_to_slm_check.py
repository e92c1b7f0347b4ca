"""benchmarks/llm_to_slm_check.py recomputes the LLM-to-SLM headline from committed records:
base / LoRA / teacher on their shared cases, McNemar's exact p, and the training examples that
are in the held-out set (counted, not trusted)."""
from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

pytest.importorskip("bfcl_eval", reason="bfcl_eval not installed (pip install --no-deps bfcl-eval==2026.3.23)")
pytest.importorskip("statsmodels", reason="statsmodels not installed (requirements/base.txt)")

SCRIPT = Path(__file__).resolve().parents[2] / "benchmarks" / "llm_to_slm_check.py"
CASES = [f"simple_python_{i}" for i in range(20)]


def _cell(root: Path, name: str, profile: str, passed: set[int], adapter: bool = False) -> None:
    cell = root / "eval" / name
    cell.mkdir(parents=True)
    prof = {"name": profile, **({"adapter": {"path": "a.gguf", "scale": 1.0, "sha256": "0" * 64}} if adapter else {})}
    (cell / "run.json").write_text(json.dumps({"config": {"model": profile}, "model_profile": prof}))
    (cell / "results.jsonl").write_text("".join(
        json.dumps({"case_id": c, "category": "simple_python", "model": profile, "valid": True,
                    "passed": i in passed, "wall_time_s": 2.0 if "1.5b" in profile else 0.5}) + "\n"
        for i, c in enumerate(CASES)))


def _dataset(root: Path, records: list[dict]) -> None:
    (root / "dataset").mkdir(parents=True)
    (root / "dataset" / "train.jsonl").write_text("".join(json.dumps(r) + "\n" for r in records))


def _run(root: Path) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, str(SCRIPT), str(root)], capture_output=True, text=True, timeout=120)


def test_headline_from_records(tmp_path):
    _cell(tmp_path, "teacher", "qwen2.5-coder-1.5b", set(range(18)))
    _cell(tmp_path, "base", "gemma3-270m-q4km", set(range(6)))
    _cell(tmp_path, "lora", "gemma3-270m-q4km-lora", set(range(15)) | {19}, adapter=True)
    _dataset(tmp_path, [{"messages": [{"role": "user", "content": "Book a table for two."},
                                      {"role": "assistant", "content": "x"}], "meta": {"case_id": "live_simple_1"}}])
    res = _run(tmp_path)
    assert res.returncode == 0, res.stderr
    last = res.stdout.strip().splitlines()[-1]
    # 10 cases only the LoRA student passed, 0 only the base: exact two-sided p = 2 * 0.5**10
    assert last == "student gemma3-270m-q4km: base 6/20, lora 16/20, teacher 18/20, McNemar p=0.001953, " \
                   "train/eval overlap 0", res.stdout
    assert "s/case base 0.50, lora 0.50, teacher 2.00" in res.stdout


def _no_gain_cells(root: Path) -> None:
    """Teacher 18/20, student base and LoRA 6/20 each."""
    _cell(root, "teacher", "qwen2.5-coder-1.5b", set(range(18)))
    _cell(root, "base", "gemma3-270m-q4km", set(range(6)))
    _cell(root, "lora", "gemma3-270m-q4km-lora", set(range(6)), adapter=True)


def _record(case_id: str) -> dict:
    return {"messages": [{"role": "user", "content": "q"}, {"role": "assistant", "content": "x"}],
            "meta": {"case_id": case_id}}


def test_training_data_in_the_held_out_set_is_counted(tmp_path):
    _no_gain_cells(tmp_path)
    _dataset(tmp_path, [_record("simple_python_3")])
    res = _run(tmp_path)
    assert res.returncode == 0, res.stderr
    assert res.stdout.strip().splitlines()[-1].endswith("McNemar p=1, train/eval overlap 1"), res.stdout


def test_every_dataset_directory_is_checked_for_overlap(tmp_path):
    """A second mix (dataset-<variant>/) is counted too: a held-out id there is not hidden."""
    _no_gain_cells(tmp_path)
    _dataset(tmp_path, [_record("live_simple_1")])
    (tmp_path / "dataset-more").mkdir()
    (tmp_path / "dataset-more" / "train.jsonl").write_text(
        "".join(json.dumps(_record(c)) + "\n" for c in ("live_simple_1", "multiple_2")))
    res = _run(tmp_path)
    assert res.returncode == 0, res.stderr
    assert "dataset: 1 examples, of them in the held-out set" in res.stdout, res.stdout
    assert "dataset-more: 2 examples" in res.stdout, res.stdout
    assert res.stdout.strip().splitlines()[-1].endswith("train/eval overlap 1"), res.stdout


def test_missing_parts_are_one_line(tmp_path):
    (tmp_path / "eval").mkdir()
    res = _run(tmp_path)
    assert res.returncode == 2 and "expected eval/<cell>/ run directories and dataset/train.jsonl" in res.stderr


def test_the_student_closest_to_the_goal_is_the_headline(tmp_path):
    """Two students: the one whose adapter meets the goal is printed last, whatever the names' order."""
    _cell(tmp_path, "teacher", "qwen2.5-coder-1.5b", set(range(18)))
    _cell(tmp_path, "a-base", "gemma3-270m-q4km", set(range(6)))
    _cell(tmp_path, "a-lora", "gemma3-270m-q4km-lora", set(range(5)), adapter=True)
    _cell(tmp_path, "b-base", "qwen2.5-coder-0.5b", set(range(4)))
    _cell(tmp_path, "b-lora", "qwen2.5-coder-0.5b-lora", set(range(16)), adapter=True)
    _dataset(tmp_path, [_record("live_simple_1")])
    res = _run(tmp_path)
    assert res.returncode == 0, res.stderr
    lines = res.stdout.strip().splitlines()
    assert lines[-1].startswith("student qwen2.5-coder-0.5b: base 4/20, lora 16/20, teacher 18/20"), res.stdout
    assert lines[-2].startswith("student gemma3-270m-q4km: base 6/20, lora 5/20"), res.stdout
    assert "student qwen2.5-coder-0.5b (b-lora): 20 shared cases" in res.stdout and "goal met" in res.stdout
    assert "student gemma3-270m-q4km (a-lora): 20 shared cases" in res.stdout and "goal not met" in res.stdout
