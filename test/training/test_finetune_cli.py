"""``slm-agent finetune`` refuses bad input in one line (exit 2) before loading any model."""
from __future__ import annotations

import json

import pytest

pytest.importorskip("torch", reason="torch not installed (requirements/base.txt)")

from slm_agent.cli import main  # noqa: E402


def _dataset(tmp_path):
    ds = tmp_path / "ds"
    ds.mkdir()
    (ds / "train.jsonl").write_text(json.dumps({"messages": [{"role": "user", "content": "hi"},
                                                             {"role": "assistant", "content": "hello"}]}) + "\n")
    return ds


@pytest.mark.parametrize("args, text", [
    (["{tmp}/nope"], "dataset not found: {tmp}/nope"),
    (["{tmp}"], "has no train.jsonl (build one with slm-agent dataset)"),
    (["{ds}", "--eval-only", "--eval-ids", "simple_python_0"], "adapter.gguf not found: train first"),
])
def test_bad_finetune_input_is_one_line(tmp_path, capsys, args, text):
    ds = _dataset(tmp_path)
    argv = ["finetune", *[a.format(tmp=tmp_path, ds=ds) for a in args], "-o", str(tmp_path / "out")]
    assert main(argv) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and err[0].startswith("slm-agent finetune: ")
    assert text.format(tmp=tmp_path) in err[0]


def test_qlora_on_without_cuda_is_one_line(tmp_path, capsys):
    import torch

    if torch.cuda.is_available():
        pytest.skip("CUDA present: QLoRA would run (covered by test_training_lora)")
    assert main(["finetune", str(_dataset(tmp_path)), "-o", str(tmp_path / "out"), "--qlora", "on"]) == 2
    assert "QLoRA (4-bit) needs CUDA" in capsys.readouterr().err
