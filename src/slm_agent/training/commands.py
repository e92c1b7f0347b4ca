"""``slm-agent dataset`` and ``slm-agent finetune``: argument parsing and one-line errors.

Kept out of ``slm_agent/cli.py`` so that file only registers the parsers;
the work is in :mod:`slm_agent.dataset.build`, :mod:`slm_agent.training.sft`
and :mod:`slm_agent.training.evaluate`.
"""
from __future__ import annotations

import argparse
import sys
from dataclasses import fields
from pathlib import Path

from slm_agent.training.sft import FinetuneOptions, _run_dirs_ok


def _clusters(text: str) -> int:
    """``--clusters``: 0 (automatic) or a count >= 1."""
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"must be an integer >= 1, or 0 for about sqrt(n/2) (got {text!r})")
    if value < 0:
        raise argparse.ArgumentTypeError(f"must be an integer >= 1, or 0 for about sqrt(n/2) (got {value})")
    return value


def _share(text: str) -> float:
    """``--irrelevance-share``: a number in [0, 1]."""
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"must be a number in [0, 1] (got {text!r})")
    if not 0.0 <= value <= 1.0:
        raise argparse.ArgumentTypeError(f"must be a number in [0, 1] (got {value})")
    return value


def cmd_dataset(args: argparse.Namespace) -> int:
    from slm_agent.dataset.build import DatasetOptions, build_dataset

    opts = DatasetOptions(run_dirs=args.run_dirs, toolmind=args.toolmind or [], tau2_domains=args.tau2 or [],
                          tau2_limit=args.tau2_limit, allow_bfcl=args.allow_bfcl, strategy=args.strategy,
                          serialization=args.serialization, native_calls=args.native_calls,
                          prompt_layout=args.prompt_layout,
                          val_fraction=args.val_fraction,
                          clusters=args.clusters, seed=args.seed, scrub=not args.no_scrub,
                          irrelevance_share=args.irrelevance_share)
    try:
        report = build_dataset(opts, args.output)
    except (ValueError, FileNotFoundError, UnicodeDecodeError) as exc:
        print(f"slm-agent dataset: {exc}", file=sys.stderr)
        return 2
    except OSError as exc:
        print(f"slm-agent dataset: cannot write {exc.filename or args.output}: {exc.strerror or exc}",
              file=sys.stderr)
        return 4
    print("\n".join(report.lines()))
    print(f"written: {Path(args.output) / 'train.jsonl'}, validation.jsonl, report.json")
    if report.unreadable:
        print(f"slm-agent dataset: {report.unreadable} unreadable line(s) skipped (report.json unreadable_lines)",
              file=sys.stderr)
        if args.strict:
            return 2
    if report.train + report.validation == 0:
        print("slm-agent dataset: no record kept (see the counts above); nothing to train on", file=sys.stderr)
        return 2
    return 0


def finetune_options(args: argparse.Namespace) -> FinetuneOptions:
    """The options of ``slm-agent finetune``'s flags (dest = the option's name)."""
    values = {f.name: getattr(args, f.name) for f in FinetuneOptions.flags()}
    values["targets"] = tuple(t.strip() for t in str(args.targets).split(","))
    return FinetuneOptions(dataset=args.dataset, out=args.output, progress=not args.quiet, **values)


def finetune_input_problems(args: argparse.Namespace) -> list[str]:
    """Every finetune option and the dataset, checked before any model is loaded
    (one line per problem): the declared checks of :class:`FinetuneOptions`, the
    before/after run's numbers, the profile, and that the training set has at least one
    example (an assistant step after a prompt)."""
    import math

    problems = finetune_options(args).problems()
    if args.eval_limit < 0:
        problems.append(f"--eval-limit: must be an integer >= 0 (0 = all) (got {args.eval_limit!r})")
    if not math.isfinite(args.lora_scale):
        problems.append(f"--lora-scale: must be a finite number (got {args.lora_scale!r})")
    try:
        from slm_agent.profiles import load_profile

        load_profile(args.profile)
    except Exception as exc:  # noqa: BLE001 - ProfileError, YAML errors: one line
        problems.append(f"--model: {'; '.join(x.strip() for x in str(exc).splitlines() if x.strip())}")
    evaluating = bool(args.eval_ids or args.eval_categories)
    if (args.eval_strategy or args.eval_serialization or args.eval_with or args.eval_base
            or args.eval_concurrency != 1) and not evaluating:
        problems.append("--eval-strategy/--eval-serialization/--eval-with/--eval-base/--eval-concurrency: "
                        "only with --eval-ids or --eval-categories")
    if evaluating:
        problems += eval_format_input_problems(args)
    if not args.eval_only:
        from slm_agent.training.base_model import TrainingError
        from slm_agent.training.sft import _read, call_examples, dataset_files

        try:
            train_file, val_file = dataset_files(args.dataset)
            if not call_examples(_read(train_file)):
                problems.append(f"{train_file}: no training example (no assistant message after a prompt); "
                                f"build a dataset with slm-agent dataset")
            problems += holdout_problems(args.holdout, [f for f in (train_file, val_file) if f is not None])
        except (TrainingError, OSError, UnicodeDecodeError, ValueError) as exc:
            problems.append(str(exc))
    return problems


def eval_format_input_problems(args: argparse.Namespace) -> list[str]:
    """The before/after format (training/evaluate.py), checked before training: a dataset in
    several formats needs the flags, a native dataset the student's own call syntax."""
    from slm_agent.training.base_model import TrainingError
    from slm_agent.training.evaluate import eval_format, eval_format_problems

    if not Path(args.dataset).exists():
        return []   # reported by the dataset check
    try:
        fmt = eval_format(args.dataset, args.eval_strategy, args.eval_serialization)
    except (TrainingError, OSError, UnicodeDecodeError, ValueError) as exc:
        return [str(exc)]
    try:
        from slm_agent.profiles import load_profile

        profile = load_profile(args.profile)
    except Exception:  # noqa: BLE001 - reported by the --model check
        return []
    problems = eval_format_problems(profile, fmt)
    if args.eval_base and args.eval_concurrency >= 1 and _run_dirs_ok(args.eval_base):
        from slm_agent.training.evaluate import base_run_problems

        problems += base_run_problems(args.eval_base, profile, fmt, ids=args.eval_ids,
                                      categories=args.eval_categories, limit=args.eval_limit,
                                      concurrency=args.eval_concurrency)
    return problems


def holdout_problems(holdout: str, files: list[Path]) -> list[str]:
    """The dataset files' examples that are in the held-out evaluation set (training/holdout.py)."""
    from slm_agent.training.holdout import HoldoutSet, overlap_problems, parse_holdout

    try:
        spec = parse_holdout(holdout)
    except ValueError:
        return []  # reported by the option's own check
    return overlap_problems(files, HoldoutSet.load(spec)) if spec is not None else []


def cmd_finetune(args: argparse.Namespace) -> int:
    from slm_agent.profiles import ProfileError
    from slm_agent.training.base_model import TrainingError
    from slm_agent.training.sft import finetune

    problems = finetune_input_problems(args)
    if problems:
        for line in problems:
            print(f"slm-agent finetune: {line}", file=sys.stderr)
        return 2

    opts = finetune_options(args)
    try:
        if args.eval_only:
            result = None
        else:
            result = finetune(opts)
            scored = min(result.examples, opts.loss_examples) if opts.loss_examples else result.examples
            losses = (f"; training-set loss ({scored} examples) {result.train_loss_before:.3f} -> "
                      f"{result.train_loss_after:.3f}"
                      if result.train_loss_before is not None else "")
            print(f"trained {result.steps} steps on {result.examples} examples in {result.seconds:.0f} s "
                  f"(QLoRA: {result.qlora}){losses}"
                  + (f", validation loss {result.eval_loss:.3f}" if result.eval_loss is not None else ""))
            print(f"written: {result.adapter_dir} (peft), {result.gguf_adapter} (GGUF LoRA adapter)")
        if args.eval_ids or args.eval_categories:
            from slm_agent.training.evaluate import before_after

            table = before_after(args.profile, Path(args.output), ids=args.eval_ids,
                                 categories=args.eval_categories, limit=args.eval_limit, scale=args.lora_scale,
                                 dataset=args.dataset, strategy=args.eval_strategy,
                                 serialization=args.eval_serialization, with_runs=args.eval_with,
                                 base_run=args.eval_base, concurrency=args.eval_concurrency)
            print(table)
    except (TrainingError, ProfileError, ValueError) as exc:
        print(f"slm-agent finetune: {exc}", file=sys.stderr)
        return 2
    return 0


def _one_line_usage_errors(parser: argparse.ArgumentParser) -> None:
    """A usage error is one line (``slm-agent dataset: --clusters: ...``), exit status 2."""
    def error(message: str) -> None:
        parser.exit(2, f"{parser.prog}: {message.removeprefix('argument ')}\n")
    parser.error = error  # type: ignore[method-assign]


def add_parsers(sub: argparse._SubParsersAction) -> None:
    from slm_agent.agent.strategies import PROMPT_LAYOUTS
    from slm_agent.dataset.render import NATIVE_CALLS, RENDER_SERIALIZATIONS, RENDER_STRATEGIES

    p = sub.add_parser("dataset", help="build a fine-tuning set (JSONL messages+tools) from runs, ToolMind, tau2 train",
                       description="Curate logged LLM calls into an SFT dataset: keep passed cases only, "
                                   "scrub personal data, de-duplicate, cluster into tasks (TF-IDF + k-means), "
                                   "split train/validation by cluster, render in a strategy/serialization.")
    _one_line_usage_errors(p)
    p.add_argument("run_dirs", nargs="*", help="run directories of slm-agent bench (results.jsonl)")
    p.add_argument("--toolmind", action="append", metavar="JSONL", help="ToolMind-format JSONL file (repeatable)")
    p.add_argument("--tau2", action="append", metavar="DOMAIN",
                   help="tau2 domain whose TRAIN split gold actions become conversations (airline, retail, telecom)")
    p.add_argument("--tau2-limit", type=int, default=0, help="tasks per tau2 domain (0 = all)")
    p.add_argument("--allow-bfcl", action="store_true",
                   help="keep BFCL cases from run directories (off: BFCL is the held-out judge)")
    p.add_argument("--strategy", default="", choices=["", *RENDER_STRATEGIES],
                   help="render records in this strategy (default: each run's own; native for other sources)")
    p.add_argument("--serialization", default="", choices=["", *RENDER_SERIALIZATIONS],
                   help="serialization (default: each run's own, else json); bfcl and native write the "
                        "steps in their own call syntax, as the agent sends and reads them")
    p.add_argument("--native-calls", default="", choices=["", *NATIVE_CALLS],
                   help="the student's call syntax for serialization native (its profile's chat.native_calls: "
                        "json_list for gemma3-270m-q4km, tool_call_tags for the Qwen2.5 profiles)")
    p.add_argument("--prompt-layout", default="shared_prefix", choices=list(PROMPT_LAYOUTS),
                   help="system-prompt order of json/toon/natural records: the student profile's "
                        "chat.prompt_layout (default shared_prefix, as in every shipped profile)")
    p.add_argument("--val-fraction", type=float, default=0.2, help="share of records (whole clusters) for validation")
    p.add_argument("--clusters", type=_clusters, default=0, help="number of task clusters (0 = about sqrt(n/2))")
    p.add_argument("--irrelevance-share", type=_share, default=0.0,
                   help="answers without a call synthesised from the kept calls, as a share of them: a kept "
                        "question with another task cluster's tools (no tool name in common), replying that no "
                        "function is relevant (a teacher that always calls logs none; default 0)")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--no-scrub", action="store_true", help="do not replace e-mails, phone numbers, names")
    p.add_argument("--strict", action="store_true", help="exit 2 when any source line could not be read")
    p.add_argument("--output", "-o", required=True, help="output directory")
    p.set_defaults(func=cmd_dataset)

    p = sub.add_parser("finetune", help="LoRA-fine-tune a model profile on a dataset; writes peft + GGUF adapters",
                       description="LoRA with peft + trl SFT (QLoRA 4-bit when CUDA is present). Resumes from "
                                   "OUTPUT/checkpoints. With --eval-ids/--eval-categories it then runs the "
                                   "benchmark on base and adapter, in the strategy and serialization the dataset "
                                   "was rendered in, into OUTPUT/eval/<profile> and OUTPUT/eval/<profile>-lora "
                                   "(the cells benchmarks/llm_to_slm_check.py reads), and writes the comparison "
                                   "to OUTPUT/eval/compare.")
    _one_line_usage_errors(p)
    declared = {f.name: f for f in fields(FinetuneOptions)}
    p.add_argument("dataset", help=declared["dataset"].metadata["help"])
    p.add_argument("--output", "-o", required=True, help=declared["out"].metadata["help"])
    for f in FinetuneOptions.flags():   # flag, default, help and choices from the declaration
        meta, default = f.metadata, f.default
        if f.name == "targets":
            default = ",".join(default)
        p.add_argument(meta["flag"], dest=f.name, type=type(default), default=default, choices=meta["choices"] or None,
                       metavar=None if meta["choices"] else meta["flag"].lstrip("-").replace("-", "_").upper(),
                       help=f"{meta['help']} (default {default})" if default != "" else meta["help"])
    p.add_argument("--quiet", action="store_true", help="no progress bar")
    p.add_argument("--eval-ids", default="", help="BFCL case ids (comma-separated) for the before/after run")
    p.add_argument("--eval-categories", default="", help="BFCL categories for the before/after run")
    p.add_argument("--eval-limit", type=int, default=0, help="cases per category for the before/after run")
    p.add_argument("--lora-scale", type=float, default=1.0, help="adapter scale in the before/after run")
    p.add_argument("--eval-only", action="store_true", help="skip training: evaluate OUTPUT/adapter.gguf")
    p.set_defaults(func=cmd_finetune)


__all__ = ["add_parsers", "cmd_dataset", "cmd_finetune"]
