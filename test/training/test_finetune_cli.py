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


def test_finetune_flags_are_generated_from_the_declared_options():
    """Every flag's default is the declaration's (FinetuneOptions, declared once: issue 22), and
    a value given reaches the option of that name."""
    from slm_agent.cli import build_parser
    from slm_agent.training.commands import finetune_options
    from slm_agent.training.sft import FinetuneOptions

    args = build_parser().parse_args(["finetune", "ds", "-o", "out"])
    assert finetune_options(args) == FinetuneOptions(dataset="ds", out="out")
    args = build_parser().parse_args(["finetune", "ds", "-o", "out", "--lr", "0.01", "--targets", "q_proj, v_proj",
                                      "--qlora", "off", "--quiet"])
    opts = finetune_options(args)
    assert (opts.learning_rate, opts.targets, opts.qlora, opts.progress) == (0.01, ("q_proj", "v_proj"), "off", False)
    assert FinetuneOptions(rank=0, dropout=1.0).problems() == ["--rank: must be an integer >= 1 (got 0)",
                                                               "--dropout: must be a number in [0, 1) (got 1.0)"]
