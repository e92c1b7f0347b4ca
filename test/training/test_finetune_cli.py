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


# --------------------------------------------------------------------------- held-out set


def _problems(tmp_path, records, *flags):
    from slm_agent.cli import build_parser
    from slm_agent.training.commands import finetune_input_problems

    ds = tmp_path / "ds"
    ds.mkdir(exist_ok=True)
    (ds / "train.jsonl").write_text("".join(json.dumps(r) + "\n" for r in records))
    return finetune_input_problems(build_parser().parse_args(["finetune", str(ds), "-o", str(tmp_path / "o"),
                                                              *flags]))


def _held_out_case():
    pytest.importorskip("bfcl_eval", reason="bfcl_eval not installed (pip install --no-deps bfcl-eval==2026.3.23)")
    from slm_agent.bench.suite import get_suite
    from slm_agent.training.holdout import STUDY_HOLDOUT

    case = get_suite("bfcl").select([STUDY_HOLDOUT.categories[2]], (), STUDY_HOLDOUT.limit)[-1]
    question = next(m["content"] for m in case.turns[0] if m["role"] == "user")
    return case.case_id, question


def test_training_data_in_the_held_out_set_is_refused(tmp_path):
    case_id, question = _held_out_case()
    ok = {"messages": [{"role": "user", "content": "What is the weather in Berlin?"},
                       {"role": "assistant", "content": "I cannot look that up."}], "meta": {"case_id": "live_simple_3-1-0"}}
    by_id = {"messages": [{"role": "user", "content": "something else"}, {"role": "assistant", "content": "x"}],
             "meta": {"case_id": case_id}}
    by_question = {"messages": [{"role": "user", "content": "  " + question.upper() + "\n"},
                                {"role": "assistant", "content": "x"}], "meta": {"case_id": "mine_1"}}
    assert _problems(tmp_path, [ok]) == []
    [line] = _problems(tmp_path, [ok, by_id])
    assert "1 of 2 examples are in the held-out evaluation set" in line and f"case id {case_id}" in line
    [line] = _problems(tmp_path, [by_question, ok])
    assert "1 of 2 examples" in line and "question" in line, "the same question under another id"
    assert _problems(tmp_path, [ok, by_id], "--holdout", "none") == []
    assert _problems(tmp_path, [by_id], "--holdout", "bfcl:simple_python:1") == [], "another held-out set"


def test_a_bad_holdout_is_one_line(tmp_path):
    problems = _problems(tmp_path, [{"messages": [{"role": "user", "content": "hi"},
                                                  {"role": "assistant", "content": "hello"}]}],
                         "--holdout", "bfcl:simple")
    assert problems == ["--holdout: must be 'study', 'none' or 'suite:cat1,cat2:limit' (got 'bfcl:simple')"]


def test_the_study_grid_scores_exactly_the_held_out_set():
    from pathlib import Path

    import yaml

    from slm_agent.training.holdout import STUDY_HOLDOUT

    for stage in ("study.yaml", "study-stage2.yaml"):
        grid = yaml.safe_load((Path(__file__).resolve().parents[2] / "config" / "grids" / stage).read_text())
        assert (grid["suite"], tuple(grid["categories"]), grid["limit"]) == \
            (STUDY_HOLDOUT.suite, STUDY_HOLDOUT.categories, STUDY_HOLDOUT.limit), stage


# --------------------------------------------------------------------------- the before/after format


def _formatted(tmp_path, formats, layout=""):
    ds = tmp_path / "fmt"
    ds.mkdir(exist_ok=True)
    rows = [{"messages": [{"role": "user", "content": f"q{i}"}, {"role": "assistant", "content": "a"}],
             "meta": {"strategy": s, "serialization": z, **({"native_calls": n} if n else {}),
                      **({"prompt_layout": layout} if layout else {})}}
            for i, (s, z, n) in enumerate(formats)]
    (ds / "train.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows))
    return ds


def _eval_problems(tmp_path, ds, *flags):
    from slm_agent.cli import build_parser
    from slm_agent.training.commands import finetune_input_problems

    return finetune_input_problems(build_parser().parse_args(
        ["finetune", str(ds), "-o", str(tmp_path / "o"), "--eval-categories", "simple_python", *flags]))


def test_the_before_after_runs_in_the_format_the_dataset_was_rendered_in(tmp_path, monkeypatch):
    from slm_agent.training import evaluate

    ds = _formatted(tmp_path, [("reflact", "bfcl", "")] * 2)
    fmt = evaluate.eval_format(str(ds))
    assert (fmt.strategy, fmt.serialization, fmt.chat_format) == ("reflact", "bfcl", "chat")
    assert evaluate.eval_format(str(ds), "direct").strategy == "direct", "a flag wins"
    sent = []
    monkeypatch.setattr(evaluate.subprocess, "call", lambda cmd: sent.append(cmd) or 0)
    evaluate.run_bench("m", tmp_path / "r", "", "simple_python", 1, fmt)
    cmd = sent[0]
    assert cmd[cmd.index("--strategy") + 1] == "reflact" and cmd[cmd.index("--serialization") + 1] == "bfcl"
    assert cmd[cmd.index("--chat-format") + 1] == "chat", "datasets are rendered as chat messages"
    canonical = evaluate.eval_format(str(_dataset(tmp_path)))
    assert canonical.bench_args() == [] and "canonical" in canonical.source
    assert _eval_problems(tmp_path, ds) == []


def test_a_dataset_in_several_formats_needs_the_eval_flags(tmp_path):
    ds = _formatted(tmp_path, [("direct", "bfcl", ""), ("reflact", "bfcl", "")])
    [line] = _eval_problems(tmp_path, ds)
    assert "several formats (direct/bfcl 1, reflact/bfcl 1)" in line and "--eval-strategy" in line
    assert _eval_problems(tmp_path, ds, "--eval-strategy", "direct", "--eval-serialization", "bfcl") == []


def test_a_native_dataset_in_another_call_syntax_than_the_students_is_refused(tmp_path):
    ds = _formatted(tmp_path, [("direct", "native", "tool_call_tags")])
    [line] = _eval_problems(tmp_path, ds)      # the default student, Gemma 3 270M: json_list
    assert "native call syntax tool_call_tags" in line and "--native-calls json_list" in line
    assert _eval_problems(tmp_path, _formatted(tmp_path, [("direct", "native", "json_list")])) == []


def test_a_dataset_in_another_prompt_layout_than_the_students_is_refused(tmp_path):
    ds = _formatted(tmp_path, [("direct", "json", "")], layout="tools_first")
    [line] = _eval_problems(tmp_path, ds)      # every shipped profile prompts in shared_prefix
    assert "in the order tools_first" in line and "--prompt-layout shared_prefix" in line
    assert _eval_problems(tmp_path, _formatted(tmp_path, [("direct", "json", "")], layout="shared_prefix")) == []


def test_eval_with_names_run_directories(tmp_path):
    ds = _formatted(tmp_path, [("direct", "bfcl", "")])
    [line] = _eval_problems(tmp_path, ds, "--eval-with", str(tmp_path / "nope"))
    assert line.startswith("--eval-with: must be comma-separated run directories with run.json and results.jsonl")


def test_the_teacher_grid_logs_live_cases_outside_the_held_out_set(tmp_path):
    """config/grids/teacher.yaml (issue 25): the teacher over BFCL live, about 600 cases per cell,
    in bfcl, direct and reflact; every cell passes the bench's own checks; no case of it is in the
    held-out set (ids or questions)."""
    pytest.importorskip("bfcl_eval", reason="bfcl_eval not installed (pip install --no-deps bfcl-eval==2026.3.23)")
    from pathlib import Path

    from slm_agent.bench.grid import GridSpec
    from slm_agent.bench.runner import select_scenarios
    from slm_agent.launcher.grid import check_grid_cells
    from slm_agent.training.holdout import STUDY_HOLDOUT, HoldoutSet, fold

    spec = GridSpec.load(Path(__file__).resolve().parents[2] / "config" / "grids" / "teacher.yaml")
    assert spec.models == ["qwen2.5-coder-1.5b"] and spec.serializations == ["bfcl"]
    assert spec.strategies == ["direct", "reflact"] and not spec.record
    assert all(c.startswith("live_") for c in spec.categories) and len(spec.categories) == 6
    assert check_grid_cells(spec, tmp_path / "grid") == []
    cases = select_scenarios(spec.suite, spec.categories, [], spec.limit)
    assert len(cases) == 596
    held = HoldoutSet.load(STUDY_HOLDOUT)
    assert not {c.case_id for c in cases} & held.ids
    questions = {fold(str(m["content"])) for c in cases for turn in c.turns for m in turn
                 if m.get("role") == "user" and m.get("content")}
    assert not questions & held.questions


# --------------------------------------------------------------------------- --eval-base


def _run_dir(path, model="gemma3-270m-q4km", **config):
    """A run directory as slm-agent bench writes it (run.json config + one result)."""
    cfg = {"suite": "bfcl", "model": model, "strategy": "direct", "serialization": "bfcl", "chat_format": "chat",
           "constrained": "", "max_steps": 0, "protocol": "suite", "concurrency": 1, "ids": [],
           "categories": ["simple_python"], "limit": 0, **config}
    path.mkdir(parents=True)
    (path / "run.json").write_text(json.dumps({"config": cfg, "model_profile": {"name": model}}))
    (path / "results.jsonl").write_text(json.dumps({"case_id": "simple_python_0", "passed": True}) + "\n")
    return path


@pytest.mark.parametrize("config, text", [
    ({"model": "qwen2.5-coder-0.5b"}, "it runs qwen2.5-coder-0.5b, not the student gemma3-270m-q4km"),
    ({"concurrency": 2}, "its concurrency is 2, the before/after runs 1 (--eval-concurrency)"),
    ({"chat_format": ""}, "its chat_format is 'raw', the before/after runs 'chat'"),   # Gemma 3's default: raw
    ({"serialization": "json"}, "its serialization is 'json', the before/after runs 'bfcl'"),
    ({"limit": 20}, "it ran categories simple_python limit 20, the before/after runs categories simple_python"),
])
def test_an_eval_base_of_another_run_is_refused_before_training(tmp_path, config, text):
    """--eval-base (the study's cell as the base) must be the student on the same cases, in the
    format the dataset was rendered in and at the same concurrency: else seconds per case or
    verdicts would not compare."""
    ds = _formatted(tmp_path, [("direct", "bfcl", "")])
    base = _run_dir(tmp_path / "base", **config)
    [line] = _eval_problems(tmp_path, ds, "--eval-base", str(base))
    assert line.startswith(f"--eval-base {base}: ") and text in line
    assert _eval_problems(tmp_path, ds, "--eval-base", str(_run_dir(tmp_path / "same"))) == []
    [line] = _eval_problems(tmp_path, ds, "--eval-base", str(tmp_path / "same"), "--eval-concurrency", "0")
    assert line == "--eval-concurrency: must be an integer >= 1 (got 0)"


def test_eval_base_and_concurrency_need_an_evaluation(tmp_path):
    from slm_agent.cli import build_parser
    from slm_agent.training.commands import finetune_input_problems

    ds = _formatted(tmp_path, [("direct", "bfcl", "")])
    problems = finetune_input_problems(build_parser().parse_args(
        ["finetune", str(ds), "-o", str(tmp_path / "o"), "--eval-concurrency", "2"]))
    assert problems == ["--eval-strategy/--eval-serialization/--eval-with/--eval-base/--eval-concurrency: "
                        "only with --eval-ids or --eval-categories"]


def test_eval_base_stands_for_the_base_run(tmp_path, monkeypatch):
    """With --eval-base only the adapter runs (at --eval-concurrency); the base cell is the given
    run, copied under the student's name; an adapter run that differs from it is refused."""
    from slm_agent.training import evaluate

    ds = _formatted(tmp_path, [("direct", "bfcl", "")])
    out = tmp_path / "out"
    out.mkdir()
    (out / "adapter.gguf").write_bytes(b"")
    import slm_agent.profiles as profiles

    real = profiles.load_profile     # the adapter profile loads as its base (the empty adapter file is no GGUF)
    monkeypatch.setattr(profiles, "load_profile", lambda name: real("gemma3-270m-q4km") if name.endswith(".yaml")
                        else real(name))
    sent = []

    def bench(model, run, ids, categories, limit, fmt, concurrency, **kw):
        sent.append((model, run.name, concurrency))
        _run_dir(run, model="gemma3-270m-q4km-lora", concurrency=concurrency, categories=[categories])
        rj = json.loads((run / "run.json").read_text())
        rj["model_profile"]["adapter"] = {"path": "adapter.gguf"}
        (run / "run.json").write_text(json.dumps(rj))
        return 0

    monkeypatch.setattr(evaluate, "run_bench", bench)
    base = _run_dir(tmp_path / "study_cell", concurrency=2)
    table = evaluate.before_after("gemma3-270m-q4km", out, categories="simple_python", dataset=str(ds),
                                  base_run=str(base), concurrency=2)
    assert sent == [(str(out / "gemma3-270m-q4km-lora.yaml"), "gemma3-270m-q4km-lora", 2)]
    copied = out / "eval" / "gemma3-270m-q4km"
    assert (copied / "results.jsonl").read_text() == (base / "results.jsonl").read_text()
    assert "gemma3-270m-q4km-lora" in table

    monkeypatch.setattr(evaluate, "run_bench", lambda *a, **k: bench(*a[:6], 1))   # the bench ran otherwise
    import shutil

    shutil.rmtree(out / "eval")
    with pytest.raises(evaluate.TrainingError, match=r"differs from the adapter's run .* concurrency \(2 there, 1 now\)"):
        evaluate.before_after("gemma3-270m-q4km", out, categories="simple_python", dataset=str(ds),
                              base_run=str(base), concurrency=2)


def test_the_training_loss_is_measured_on_a_bounded_seeded_sample():
    """--loss-examples: the before/after training-set loss costs one forward pass per scored
    example; a sample of the same N examples both times (in their order) bounds that cost."""
    from slm_agent.training.sft import FinetuneOptions, loss_sample

    rows = [{"i": i} for i in range(100)]
    picked = loss_sample(rows, 10, seed=0)
    assert len(picked) == 10 and picked == sorted(picked, key=lambda r: r["i"])
    assert picked == loss_sample(rows, 10, seed=0) and picked != loss_sample(rows, 10, seed=1)
    assert loss_sample(rows, 0, seed=0) == rows and loss_sample(rows[:5], 10, seed=0) == rows[:5]
    assert FinetuneOptions(loss_examples=-1).problems() == ["--loss-examples: must be an integer >= 0 (0 = all) "
                                                            "(got -1)"]


def test_an_empty_setting_of_the_base_run_compares_as_the_agent_resolves_it(tmp_path):
    """The study's cells record chat_format "" (the profile's default: chat for Qwen2.5, raw for
    Gemma 3) and the before/after runs "chat": the same run for Qwen2.5, another for Gemma 3."""
    from slm_agent.profiles import load_profile
    from slm_agent.training.evaluate import EvalFormat, base_run_problems, same_run_problems

    fmt = EvalFormat("direct", "bfcl", "chat")
    base = _run_dir(tmp_path / "qwen", model="qwen2.5-coder-0.5b", chat_format="", strategy="")
    lora = _run_dir(tmp_path / "qwen-lora", model="qwen2.5-coder-0.5b-lora")
    qwen, gemma = load_profile("qwen2.5-coder-0.5b"), load_profile("gemma3-270m-q4km")
    assert base_run_problems(str(base), qwen, fmt, ids="", categories="simple_python", limit=0, concurrency=1) == []
    assert same_run_problems(base, lora, qwen) == []
    assert same_run_problems(base, lora, gemma) == ["chat_format ('raw' there, 'chat' now)"]
