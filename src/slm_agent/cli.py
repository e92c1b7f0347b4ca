"""``slm-agent``: the same nodes as ``ros2 launch``/``ros2 run``, without ROS tooling.

On a ROS 2 install use ``ros2 launch slm_agent bench.launch.py``; on a plain
Python machine (the pip route) this CLI starts the very same node classes.
"""
from __future__ import annotations

import argparse
import importlib
import os
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path
from typing import Optional, Sequence

#: executable name -> module with ``main(args)``; scripts/ has one file per entry
NODES: dict[str, str] = {
    "agent_node": "slm_agent.nodes.agent_node",
    "demo_robot_node": "slm_agent.nodes.demo_robot_node",
    "telemetry_node": "slm_agent.nodes.telemetry_node",
    "benchmark_node": "slm_agent.nodes.benchmark_node",
    "gold_agent_node": "slm_agent.nodes.gold_agent_node",
    "recorder_node": "slm_agent.nodes.recorder_node",
}


def node_command(name: str, ros_args: Sequence[str] = ()) -> list[str]:
    """argv that runs node ``name`` in a fresh interpreter (used by bench/demo)."""
    return [sys.executable, "-m", NODES[name], *ros_args]


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
  slm-agent bench --model gemma3-270m-q4km --categories simple_python,multiple --limit 5
  slm-agent bench --agent gold --categories simple_python,multi_turn_base --limit 3 --output-dir runs/gold
  slm-agent report runs/x            # rebuild report from runs/x/results.jsonl
  slm-agent report runs/x/bag        # rebuild it from the bag alone

The run directory gets results.jsonl (one line per case, resumable: rerun the
same command to continue after a crash or Ctrl-C), run.json, params.yaml,
logs/<node>.log, bag/ (with --record) and report/.
"""


class _Child:
    """A node process whose output is streamed to the console and logs/<name>.log."""

    def __init__(self, name: str, argv: list[str], log_dir: Path, echo: bool = True) -> None:
        self.name = name
        self.lines: list[str] = []
        self._ready = threading.Event()
        self._ready_text: Optional[str] = None
        self.log = (log_dir / f"{name}.log").open("a", encoding="utf-8")
        env = dict(os.environ, PYTHONUNBUFFERED="1")
        # own session: Ctrl-C reaches only the CLI, which stops the nodes in order
        self.proc = subprocess.Popen(argv, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
                                     env=env, start_new_session=True, bufsize=1)
        self._echo = echo
        self._thread = threading.Thread(target=self._pump, daemon=True)
        self._thread.start()

    def _pump(self) -> None:
        assert self.proc.stdout is not None
        for line in self.proc.stdout:
            self.log.write(line)
            self.log.flush()
            self.lines.append(line)
            if self._ready_text and self._ready_text in line:
                self._ready.set()
            if self._echo:
                sys.stdout.write(f"{self.name:>10s} | {line}")
                sys.stdout.flush()

    def wait_for_text(self, text: str, timeout_s: float) -> bool:
        self._ready_text = text
        if any(text in line for line in list(self.lines)):
            return True
        end = time.monotonic() + timeout_s
        while time.monotonic() < end and self.proc.poll() is None:
            if self._ready.wait(0.1):
                return True
        return any(text in line for line in list(self.lines))

    def stop(self, sig: int = signal.SIGTERM, timeout_s: float = 20.0) -> Optional[int]:
        if self.proc.poll() is None:
            try:
                self.proc.send_signal(sig)
                self.proc.wait(timeout=timeout_s)
            except subprocess.TimeoutExpired:
                print(f"slm-agent: {self.name} ignored {signal.Signals(sig).name} for {timeout_s:.0f} s; killing it",
                      file=sys.stderr)
                self.proc.kill()
                self.proc.wait(timeout=10)
        self._thread.join(timeout=5)
        self.log.close()
        return self.proc.returncode


def _agent_module_params() -> Optional[set[str]]:
    """Parameter names of slm_agent.nodes.agent_node (None if it does not exist)."""
    try:
        mod = importlib.import_module("slm_agent.nodes.agent_node")
    except ImportError:
        return None
    params = getattr(mod, "PARAMETERS", None)
    return set(params) if isinstance(params, dict) else set()


def _activate_lifecycle(node_name: str, timeout_s: float) -> tuple[bool, str]:
    """configure + activate ``node_name`` through its lifecycle services."""
    from lifecycle_msgs.msg import Transition
    from lifecycle_msgs.srv import ChangeState
    from rclpy.node import Node

    from slm_agent.ros.clients import ServiceCallError, call
    from slm_agent.ros.runtime import SpinThread, ros_context

    with ros_context([]):
        node = Node("slm_agent_bench_cli")
        spin = SpinThread(node)
        try:
            client = node.create_client(ChangeState, f"{node_name}/change_state")
            if not client.wait_for_service(timeout_sec=timeout_s):
                return False, f"{node_name}/change_state not available after {timeout_s:.0f} s"
            for tid, label in ((Transition.TRANSITION_CONFIGURE, "configure"),
                               (Transition.TRANSITION_ACTIVATE, "activate")):
                try:
                    res, _ = call(client, ChangeState.Request(transition=Transition(id=tid)), timeout_s)
                except (ServiceCallError, TimeoutError) as exc:
                    return False, f"{label} failed: {exc}"
                if not res.success:
                    return False, f"{label} refused by {node_name} (see its log)"
            return True, "active"
        finally:
            spin.stop()
            node.destroy_node()


def _free_bag_dir(out: Path) -> Path:
    bag = out / "bag"
    n = 2
    while bag.exists():
        bag = out / f"bag_{n}"
        n += 1
    return bag


def bench_params(args: argparse.Namespace, out: Path) -> dict[str, dict]:
    """The params file of a bench run (one section per node)."""
    bench = {
        "suite": args.suite, "categories": args.categories, "ids": args.ids or "", "limit": int(args.limit),
        "strategy": args.strategy, "serialization": args.serialization, "max_steps": int(args.max_steps),
        "model": args.model if args.agent == "model" else "gold", "power_mode": args.power_mode or "",
        "output_dir": str(out), "run_id": args.run_id or "", "case_timeout_s": float(args.case_timeout),
        "agent_wait_s": float(args.agent_wait), "seed": int(args.seed),
        # with a recorder: start only once it is matched, so the bag has every case
        "min_subscribers": 1 if args.record else 0,
    }
    return {
        "benchmark": {"ros__parameters": bench},
        "telemetry": {"ros__parameters": {"reader": args.telemetry_reader}},
        "gold_agent": {"ros__parameters": {"corrupt": bool(args.corrupt_gold), "delay_s": float(args.gold_delay)}},
    }


def cmd_bench(args: argparse.Namespace) -> int:
    """Start telemetry, agent (or gold agent), recorder and benchmark nodes; report at the end."""
    import json

    out = Path(args.output_dir).resolve()
    (out / "logs").mkdir(parents=True, exist_ok=True)
    params_file = out / "params.yaml"
    params_file.write_text(json.dumps(bench_params(args, out), indent=2) + "\n", encoding="utf-8")
    ros = ["--ros-args", "--params-file", str(params_file)]
    children: dict[str, _Child] = {}
    bag: Optional[Path] = None
    code = 1

    def start(name: str, node: str, extra: Sequence[str] = ()) -> _Child:
        children[name] = _Child(name, node_command(node, [*ros, *extra]), out / "logs", echo=not args.quiet)
        return children[name]

    def on_term(_sig, _frame):
        raise KeyboardInterrupt

    old_term = signal.signal(signal.SIGTERM, on_term)
    try:
        if args.telemetry:
            start("telemetry", "telemetry_node")
        if args.record:
            bag = _free_bag_dir(out)
            rec = start("recorder", "recorder_node", ["-p", f"output:={bag}"])
            if not rec.wait_for_text("recording", 30.0):
                print(f"slm-agent: recorder did not start (see {out / 'logs' / 'recorder.log'})", file=sys.stderr)
                return 1
        if args.agent == "gold":
            start("agent", "gold_agent_node")
        else:
            names = _agent_module_params()
            if names is None:
                print("slm-agent: the agent node (slm_agent.nodes.agent_node) is not installed; "
                      "use --agent gold for a harness run", file=sys.stderr)
                return 2
            extra = ["-p", f"{'profile' if 'profile' in names else 'model'}:={args.model}"]
            if "autostart" in names:
                extra += ["-p", "autostart:=true"]
            agent = _Child("agent", [sys.executable, "-m", "slm_agent.nodes.agent_node", *ros, *extra],
                           out / "logs", echo=not args.quiet)
            children["agent"] = agent
            if "autostart" not in names:
                ok, why = _activate_lifecycle("/agent", args.agent_wait)
                if not ok:
                    print(f"slm-agent: agent not activated: {why}", file=sys.stderr)
                    return 3
        if args.record:
            for topic in ("/agent/metrics", "/agent/tool_calls"):
                if not children["recorder"].wait_for_text(f"matched a publisher on {topic}", 20.0):
                    print(f"slm-agent: the recorder sees no publisher on {topic} yet; its first messages "
                          "may be missing from the bag", file=sys.stderr)
        bench = start("benchmark", "benchmark_node")
        while bench.proc.poll() is None:
            agent = children.get("agent")
            if agent is not None and agent.proc.poll() is not None:
                print(f"slm-agent: the agent exited (status {agent.proc.returncode}) during the run; "
                      "stopping the benchmark (rerun the same command to resume)", file=sys.stderr)
                bench.stop(signal.SIGINT)
                break
            time.sleep(0.2)
        code = bench.proc.returncode if bench.proc.returncode is not None else 1
    except KeyboardInterrupt:
        print("\nslm-agent: interrupted; stopping the nodes (finished cases are kept; rerun to resume)",
              file=sys.stderr)
        code = 130
    finally:
        signal.signal(signal.SIGTERM, old_term)
        for name in ("benchmark", "agent", "telemetry", "recorder"):  # recorder last: it sees everything
            if name in children:
                children[name].stop(signal.SIGINT if name == "benchmark" else signal.SIGTERM)
    results = out / "results.jsonl"
    print(f"\nresults: {results}" + ("" if results.exists() else " (none)"))
    if bag is not None:
        print(f"bag:     {bag}")
    if results.exists() and not args.no_report:
        from slm_agent.bench.report import ReportError, make_report

        try:
            rep = make_report(out, out / "report")
            summary = rep.markdown.split("## Summary", 1)[1].split("## Per category", 1)[0]
            print(f"report:  {rep.files['markdown']}\n{summary.strip()}")
        except ReportError as exc:
            print(f"report:  not built ({exc})")
    print(f"logs:    {out / 'logs'}")
    return code


def cmd_report(args: argparse.Namespace) -> int:
    from slm_agent.bench.report import ReportError, make_report

    try:
        rep = make_report(args.path, args.output, source=args.source, plots=not args.no_plots)
    except ReportError as exc:
        print(f"slm-agent report: {exc}", file=sys.stderr)
        return 2
    print(rep.markdown.split("## Details", 1)[0].rstrip())
    print("\nwritten: " + ", ".join(str(p) for p in rep.files.values()))
    return 0


def _add_bench_parser(sub) -> None:
    p = sub.add_parser(
        "bench", help="benchmark a model on BFCL through the ROS nodes (telemetry, agent, recorder, benchmark)",
        description="Run telemetry_node, the agent (agent_node, or gold_agent_node with --agent gold), "
                    "recorder_node and benchmark_node as separate processes, wait for the benchmark to finish, "
                    "stop the others (bag closed) and write the report. Ctrl-C stops everything cleanly.",
        epilog=BENCH_EPILOG, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--model", default="gemma3-270m-q4km", help="model profile (config/models/NAME.yaml or a path)")
    p.add_argument("--suite", default="bfcl", choices=["bfcl"], help="benchmark suite")
    p.add_argument("--categories", default="simple_python",
                   help="comma-separated BFCL categories, e.g. simple_python,multiple,multi_turn_base")
    p.add_argument("--ids", default="", help="comma-separated case ids (overrides --categories)")
    p.add_argument("--limit", type=int, default=0, help="cases per category, 0 = all (default 0)")
    p.add_argument("--strategy", default="direct", help="prompt strategy: direct | react | reflact")
    p.add_argument("--serialization", default="json", help="tool-spec serialization: json | toon | natural")
    p.add_argument("--max-steps", type=int, default=0, help="agent steps per goal, 0 = agent default")
    p.add_argument("--output-dir", default="runs/latest", help="run directory (reused = resumed)")
    p.add_argument("--record", dest="record", action="store_true", default=True,
                   help="record the topics to a rosbag2 MCAP bag in OUTPUT_DIR/bag (default)")
    p.add_argument("--no-record", dest="record", action="store_false", help="do not record a bag")
    p.add_argument("--agent", choices=["model", "gold"], default="model",
                   help="model: agent_node with --model; gold: BFCL's gold answers (harness fidelity run)")
    p.add_argument("--corrupt-gold", action="store_true", help="with --agent gold: change one argument (must fail)")
    p.add_argument("--gold-delay", type=float, default=0.0,
                   help="with --agent gold: seconds the gold agent waits per answer (demos, tests)")
    p.add_argument("--power-mode", default="", help="power mode label (default: from /telemetry/power)")
    p.add_argument("--telemetry-reader", default="auto", help="telemetry reader: auto | jtop | jetson_sysfs | linux | nvml")
    p.add_argument("--no-telemetry", dest="telemetry", action="store_false", help="do not start telemetry_node")
    p.add_argument("--case-timeout", type=float, default=300.0, help="seconds per case before it fails (300)")
    p.add_argument("--agent-wait", type=float, default=300.0, help="seconds to wait for the agent to come up (300)")
    p.add_argument("--run-id", default="", help="run label (default: generated, kept on resume)")
    p.add_argument("--seed", type=int, default=0, help="seed recorded in run.json (default 0)")
    p.add_argument("--no-report", action="store_true", help="skip the report at the end")
    p.add_argument("--quiet", action="store_true", help="do not stream the nodes' console (still in logs/)")
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
    p.set_defaults(func=cmd_report)


def cmd_ask(args: argparse.Namespace) -> int:
    """Demo robot + agent node + one RunTask goal, streamed to the console."""
    from slm_agent.ros.ask import run_ask

    return run_ask(args.prompt, args.model, args.strategy, args.timeout)


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
    p.add_argument("--model", default="gemma3-270m-q4km", help="model profile (default gemma3-270m-q4km)")
    p.add_argument("--strategy", default="direct", help="direct | react | reflact")
    p.add_argument("--timeout", type=float, default=300.0, help="seconds for the model to load and answer")
    p.set_defaults(func=cmd_ask)

    _add_bench_parser(sub)
    return ap


def main(argv: Optional[Sequence[str]] = None) -> int:
    args = build_parser().parse_args(argv)
    return args.func(args)


if __name__ == "__main__":
    sys.exit(main())
