"""LoRA supervised fine-tuning with peft + trl (``slm-agent finetune``).

Examples are the dataset's LLM calls: every assistant message of a record
becomes one prompt/completion example (the conversation before it is the
prompt, the message itself the completion), which is exactly what the agent
sends and gets back per step.  trl's ``SFTTrainer`` formats them with the
tokenizer's chat template (the profile's, for GGUFs without one) and puts
the loss on the completion only.  Examples longer than ``max_length`` are
dropped (counted) rather than truncated, which would cut the completion.

QLoRA (base weights in 4-bit NF4 via bitsandbytes) is used only when CUDA is
present; on CPU the dequantized fp32 model gets a plain LoRA.  Checkpoints go
to ``<out>/checkpoints`` every ``save_steps``; a rerun with the same output
directory resumes from the last one.  The result is the peft adapter
(``<out>/adapter``) and its GGUF form (``<out>/adapter.gguf``) for the
llama.cpp engine.
"""
from __future__ import annotations

import json
import math
import time
from dataclasses import asdict, dataclass, field, fields
from pathlib import Path
from typing import Any, Optional, Sequence

from slm_agent.profiles import DEFAULT_PROFILE
from slm_agent.training.base_model import TrainingError

ADAPTER_DIR = "adapter"
GGUF_ADAPTER = "adapter.gguf"
CHECKPOINTS = "checkpoints"
SUMMARY = "finetune.json"
DEFAULT_TARGETS = ("q_proj", "k_proj", "v_proj", "o_proj", "gate_proj", "up_proj", "down_proj")
#: auto: 4-bit NF4 base weights when CUDA is present
QLORA_CHOICES = ("auto", "on", "off")


def _finite(v: Any) -> bool:
    return isinstance(v, (int, float)) and not isinstance(v, bool) and math.isfinite(v)


def _holdout_ok(text: str) -> bool:
    from slm_agent.training.holdout import parse_holdout

    try:
        parse_holdout(text)
    except ValueError:
        return False
    return True


def _run_dirs_ok(text: str) -> bool:
    """Comma-separated run directories, each with run.json and results.jsonl ("" = none)."""
    return all((Path(d) / "run.json").is_file() and (Path(d) / "results.jsonl").is_file()
               for d in (x.strip() for x in text.split(",")) if d)


def _eval_choices(kind: str) -> tuple[str, ...]:
    """"" (= the dataset's format) and the agent's strategies or serializations."""
    if kind == "strategy":
        from slm_agent.agent.strategies import STRATEGIES as names
    else:
        from slm_agent.agent.serializers import SERIALIZERS as names
    return ("", *names)


def option(default: Any, help: str, *, flag: str = "", rule: str = "", check: Any = None,
           choices: Sequence[str] = ()) -> Any:
    """A fine-tuning option declared once: its default, and for ``slm-agent finetune`` its
    ``flag`` (none: not a flag), help, ``choices``, and the ``check`` a value must pass with
    the ``rule`` a refusal names (``--rank: must be an integer >= 1 (got 0)``)."""
    return field(default=default, metadata={"flag": flag, "help": help, "rule": rule, "check": check,
                                            "choices": tuple(choices)})


@dataclass
class FinetuneOptions:
    """Every option of a LoRA run; ``slm-agent finetune``'s flags, defaults, help and checks
    are generated from these declarations (:mod:`slm_agent.training.commands`)."""

    profile: str = option(DEFAULT_PROFILE, "llama_cpp profile whose GGUF is the base", flag="--model")
    #: a dataset directory (train.jsonl [+ validation.jsonl]) or a JSONL file (the positional argument)
    dataset: str = option("", "dataset directory from slm-agent dataset (or a JSONL file)")
    out: str = option("", "output directory (adapter/, adapter.gguf, checkpoints/)")
    max_steps: int = option(100, "optimizer steps (0 = --epochs)", flag="--max-steps",
                            rule="an integer >= 0 (0 = --epochs)", check=lambda v: v >= 0)
    epochs: float = option(1.0, "epochs, used when --max-steps is 0", flag="--epochs", rule="a number > 0",
                           check=lambda v: _finite(v) and v > 0)
    learning_rate: float = option(2e-4, "learning rate", flag="--lr", rule="a number > 0",
                                  check=lambda v: _finite(v) and v > 0)
    batch_size: int = option(1, "examples per step", flag="--batch-size", rule="an integer >= 1",
                             check=lambda v: v >= 1)
    grad_accum: int = option(1, "gradient accumulation steps", flag="--grad-accum", rule="an integer >= 1",
                             check=lambda v: v >= 1)
    rank: int = option(8, "LoRA rank", flag="--rank", rule="an integer >= 1", check=lambda v: v >= 1)
    alpha: float = option(16.0, "LoRA alpha", flag="--alpha", rule="a number > 0",
                          check=lambda v: _finite(v) and v > 0)
    dropout: float = option(0.0, "LoRA dropout", flag="--dropout", rule="a number in [0, 1)",
                            check=lambda v: _finite(v) and 0 <= v < 1)
    targets: Sequence[str] = option(DEFAULT_TARGETS, "comma-separated module names for LoRA", flag="--targets",
                                    rule="comma-separated module names, none empty",
                                    check=lambda v: bool(v) and all(t.strip() for t in v))
    max_length: int = option(1024, "longer examples are dropped (counted)", flag="--max-length",
                             rule="an integer >= 1", check=lambda v: v >= 1)
    save_steps: int = option(50, "checkpoint every N steps", flag="--save-steps", rule="an integer >= 1",
                             check=lambda v: v >= 1)
    logging_steps: int = option(1, "log the loss every N steps")
    loss_examples: int = option(64, "training examples the loss is measured on before and after training "
                                    "(a seeded sample; 0 = all: one forward pass per example each time, "
                                    "two thirds of an epoch's cost)", flag="--loss-examples",
                                rule="an integer >= 0 (0 = all)", check=lambda v: v >= 0)
    seed: int = option(0, "seed of the data order and LoRA initialisation", flag="--seed")
    threads: int = option(0, "torch CPU threads (0 = default)", flag="--threads",
                          rule="an integer >= 0 (0 = default)", check=lambda v: v >= 0)
    qlora: str = option("auto", "4-bit QLoRA: auto = when CUDA is present; on without CUDA is refused",
                        flag="--qlora", choices=QLORA_CHOICES)
    progress: bool = option(True, "progress bar (off: --quiet)")
    holdout: str = option("study", "evaluation cases the training data must not contain, checked before "
                                   "training: study = the study's held-out set (training/holdout.py), "
                                   "suite:cat1,cat2:limit, or none", flag="--holdout",
                          rule="'study', 'none' or 'suite:cat1,cat2:limit'", check=lambda v: _holdout_ok(v))
    eval_strategy: str = option("", "strategy of the before/after run (default: the one the dataset was "
                                    "rendered in, read from its records)", flag="--eval-strategy",
                                choices=_eval_choices("strategy"))
    eval_serialization: str = option("", "serialization of the before/after run (default: the dataset's)",
                                     flag="--eval-serialization", choices=_eval_choices("serialization"))
    eval_with: str = option("", "run directories (comma-separated) of the same cases copied into OUTPUT/eval/ "
                                "as cells beside base and adapter (e.g. the teacher's run), compared with them",
                            flag="--eval-with", rule="comma-separated run directories with run.json and "
                                                     "results.jsonl", check=lambda v: _run_dirs_ok(v))
    eval_base: str = option("", "a run directory of the base profile on the same cases, in the same format "
                                "and --eval-concurrency (e.g. the study's cell), used as the base cell instead "
                                "of running the base again; refused when its run differs from the adapter's "
                                "in anything but the model", flag="--eval-base",
                            rule="a run directory with run.json and results.jsonl",
                            check=lambda v: "," not in v and _run_dirs_ok(v))
    eval_concurrency: int = option(1, "cases in flight in the before/after runs (slm-agent bench --concurrency; "
                                      "seconds per case compare only between runs at the same value)",
                                   flag="--eval-concurrency", rule="an integer >= 1", check=lambda v: v >= 1)

    @classmethod
    def flags(cls) -> list[Any]:
        """The declared options that are ``slm-agent finetune`` flags (dataclass fields)."""
        return [f for f in fields(cls) if f.metadata.get("flag")]

    def problems(self) -> list[str]:
        """One line per option that fails its check, naming its flag."""
        out = []
        for f in self.flags():
            check, value = f.metadata["check"], getattr(self, f.name)
            if check is not None and not check(value):
                shown = ",".join(value) if f.name == "targets" else value
                out.append(f"{f.metadata['flag']}: must be {f.metadata['rule']} (got {shown!r})")
        return out


@dataclass
class FinetuneResult:
    adapter_dir: str
    gguf_adapter: str
    losses: list[float] = field(default_factory=list)
    #: mean completion loss over the training examples (at most ``loss_examples`` of them) before
    #: and after this run's steps (the same examples both times, so it shows learning; per-step
    #: losses are noisy)
    train_loss_before: Optional[float] = None
    train_loss_after: Optional[float] = None
    eval_loss: Optional[float] = None
    examples: int = 0
    dropped_too_long: int = 0
    steps: int = 0
    seconds: float = 0.0
    qlora: bool = False
    resumed_from: str = ""
    #: the trained peft model and its tokenizer, in memory (not serialized)
    model: Any = field(default=None, repr=False)
    tokenizer: Any = field(default=None, repr=False)

    def to_json(self) -> dict[str, Any]:
        return {f.name: getattr(self, f.name) for f in fields(self) if f.name not in ("model", "tokenizer")}


def cuda_available() -> bool:
    import torch

    return bool(torch.cuda.is_available())


def use_qlora(mode: str) -> bool:
    """Whether to train 4-bit QLoRA: ``on`` needs CUDA (:class:`TrainingError` without it)."""
    if mode not in QLORA_CHOICES:
        raise TrainingError(f"qlora must be auto, on or off, got {mode!r}")
    if mode == "off":
        return False
    has_cuda = cuda_available()
    if mode == "on" and not has_cuda:
        raise TrainingError("QLoRA (4-bit) needs CUDA (bitsandbytes kernels); none here: use --qlora off")
    return has_cuda


def call_examples(records: Sequence[dict[str, Any]]) -> list[dict[str, Any]]:
    """One prompt/completion example per assistant message of each record."""
    out = []
    for rec in records:
        msgs = rec["messages"]
        for i, m in enumerate(msgs):
            if m.get("role") == "assistant" and i > 0:
                ex: dict[str, Any] = {"prompt": msgs[:i], "completion": [m]}
                templated = (rec.get("meta") or {}).get("template_tools") or any(x.get("tool_calls") for x in msgs)
                if rec.get("tools") and templated:
                    ex["tools"] = rec["tools"]  # native records: the template shows the tools
                out.append(ex)
    return out


def dataset_files(path: str) -> tuple[Path, Optional[Path]]:
    p = Path(path)
    if p.is_dir():
        train, val = p / "train.jsonl", p / "validation.jsonl"
        if not train.is_file():
            raise TrainingError(f"{p} has no train.jsonl (build one with slm-agent dataset)")
        return train, (val if val.is_file() and val.stat().st_size else None)
    if not p.is_file():
        raise TrainingError(f"dataset not found: {p}")
    return p, None


def _read(path: Path) -> list[dict[str, Any]]:
    rows = []
    for n, line in enumerate(path.read_text(encoding="utf-8").splitlines(), 1):
        if line.strip():
            try:
                row = json.loads(line)
            except ValueError:
                raise TrainingError(f"{path}:{n}: not JSON") from None
            if not isinstance(row, dict) or not isinstance(row.get("messages"), list):
                raise TrainingError(f"{path}:{n}: no 'messages' list")
            rows.append(row)
    return rows


def _fits(tokenizer: Any, ex: dict[str, Any], max_length: int) -> bool:
    ids = tokenizer.apply_chat_template(ex["prompt"] + ex["completion"], tools=ex.get("tools"), tokenize=True)
    if isinstance(ids, dict) or hasattr(ids, "keys"):
        ids = ids["input_ids"]
    return len(ids) <= max_length


def loss_sample(examples: list[dict[str, Any]], n: int, seed: int) -> list[dict[str, Any]]:
    """At most ``n`` of ``examples`` (0 = all), drawn with ``seed`` and kept in their order: the
    training-set loss before and after is measured on the same ones, at a bounded cost."""
    if n <= 0 or len(examples) <= n:
        return list(examples)
    import random

    picked = sorted(random.Random(seed).sample(range(len(examples)), n))
    return [examples[i] for i in picked]


def _loss(trainer: Any, name: str) -> float:
    """Mean completion loss of the evaluation set ``name`` (``train`` or ``validation``)."""
    metrics = trainer.evaluate(eval_dataset=name, metric_key_prefix=name)
    return float(metrics[f"{name}_loss"])


def last_checkpoint(out: Path) -> Optional[str]:
    ckpts = sorted((out / CHECKPOINTS).glob("checkpoint-*"), key=lambda p: int(p.name.split("-")[-1]))
    return str(ckpts[-1]) if ckpts else None


def finetune(opts: FinetuneOptions, profile: Any = None) -> FinetuneResult:
    """Train, save the peft adapter and write its GGUF form; resumes from ``<out>/checkpoints``."""
    from datasets import Dataset
    from peft import LoraConfig
    from trl import SFTConfig, SFTTrainer

    from slm_agent.profiles import load_profile
    from slm_agent.training.base_model import load_base, set_threads
    from slm_agent.training.gguf_adapter import convert_peft_to_gguf

    if not opts.out:
        raise TrainingError("no output directory given")
    out = Path(opts.out)
    out.mkdir(parents=True, exist_ok=True)
    train_file, val_file = dataset_files(opts.dataset)
    qlora = use_qlora(opts.qlora)
    set_threads(opts.threads)
    profile = profile or load_profile(opts.profile)
    t0 = time.monotonic()
    base = load_base(profile, quantize_4bit=qlora, dtype="bfloat16" if qlora else "float32")
    examples = call_examples(_read(train_file))
    kept = [e for e in examples if _fits(base.tokenizer, e, opts.max_length)]
    if not kept:
        raise TrainingError(f"no training example fits max_length={opts.max_length} "
                            f"({len(examples)} examples in {train_file})")
    val = [e for e in call_examples(_read(val_file)) if _fits(base.tokenizer, e, opts.max_length)] if val_file else []
    if qlora:
        from peft import prepare_model_for_kbit_training

        base.model = prepare_model_for_kbit_training(base.model)
    lora = LoraConfig(r=opts.rank, lora_alpha=opts.alpha, lora_dropout=opts.dropout,
                      target_modules=list(opts.targets), bias="none", task_type="CAUSAL_LM")
    args = SFTConfig(
        output_dir=str(out / CHECKPOINTS), max_steps=opts.max_steps or -1, num_train_epochs=opts.epochs,
        per_device_train_batch_size=opts.batch_size, gradient_accumulation_steps=opts.grad_accum,
        learning_rate=opts.learning_rate, lr_scheduler_type="constant", warmup_steps=0,
        logging_steps=opts.logging_steps, save_steps=opts.save_steps, save_total_limit=2,
        max_length=opts.max_length, seed=opts.seed, report_to="none", use_cpu=not qlora,
        bf16=qlora, fp16=False, disable_tqdm=not opts.progress, dataloader_num_workers=0,
        eval_strategy="no", completion_only_loss=True, packing=False, gradient_checkpointing=False,
    )
    scored = loss_sample(kept, opts.loss_examples, opts.seed)
    evals = {"train": Dataset.from_list(scored), **({"validation": Dataset.from_list(val)} if val else {})}
    trainer = SFTTrainer(model=base.model, args=args, train_dataset=Dataset.from_list(kept), eval_dataset=evals,
                         processing_class=base.tokenizer, peft_config=lora)
    resume = last_checkpoint(out)
    before = None if resume else _loss(trainer, "train")
    trainer.train(resume_from_checkpoint=resume)
    after = _loss(trainer, "train")
    eval_loss = _loss(trainer, "validation") if val else None
    adapter_dir = out / ADAPTER_DIR
    trainer.model.save_pretrained(str(adapter_dir))
    info = convert_peft_to_gguf(adapter_dir, base.gguf_path, out / GGUF_ADAPTER)
    losses = [float(h["loss"]) for h in trainer.state.log_history if "loss" in h]
    result = FinetuneResult(adapter_dir=str(adapter_dir), gguf_adapter=info.path, losses=losses,
                            train_loss_before=before, train_loss_after=after, eval_loss=eval_loss,
                            examples=len(kept), dropped_too_long=len(examples) - len(kept),
                            steps=int(trainer.state.global_step), seconds=time.monotonic() - t0, qlora=qlora,
                            resumed_from=resume or "", model=trainer.model, tokenizer=base.tokenizer)
    summary = {"options": {**asdict(opts), "targets": list(opts.targets)}, "profile": profile.name,
               "base_gguf": base.gguf_path, **result.to_json()}
    (out / SUMMARY).write_text(json.dumps(summary, indent=2) + "\n")
    return result
