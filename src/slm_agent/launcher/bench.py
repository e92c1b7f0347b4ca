"""One benchmark run: typed, checked before anything starts, then run with its nodes.

Why typed: the CLI, a grid's cells and tests describe a run as a
:class:`BenchRun` (every node's settings, validated) instead of
``slm-agent bench`` text; :func:`run_bench` starts telemetry, the agent (or
the gold agent), the recorder and the benchmark node, waits for the
benchmark, stops the rest in order and writes the report.

The run's settings are the ones marked ``run=True`` in
:mod:`slm_agent.settings` (:func:`~slm_agent.settings.run_settings`): the
same list makes the CLI's flags (:func:`add_run_arguments`) and the launch
file's arguments.

Exit status: 0 done; 2 bad setting, unusable or busy output directory,
different run there, or an agent that could not start; 3 the agent went away
during the run (rerun to resume); 4 the output could not be written;
130 interrupted.
"""
from __future__ import annotations

import argparse
import os
import signal
import sys
import time
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any, Mapping, Optional, Sequence, Union

from slm_agent.isolation import DomainLease
from slm_agent.launcher.processes import NodeProcess, free_bag_dir, node_command, write_problem
from slm_agent.settings import (AgentSettings, BenchmarkSettings, GoldAgentSettings, NodeSettings, RecorderSettings,
                                SettingsError, TelemetrySettings, add_cli_arguments, agent_for_concurrency, flag_of,
                                params_yaml, run_settings)

#: how long a run waits for the nodes of a dead earlier run to release the run directory
ORPHAN_WAIT_S = 30.0
#: exit status when the run's output could not be written during or after the run
#: (disk full, read-only): README "Exit status"; the benchmark node's EXIT_WRITE
EXIT_WRITE = 4
#: the agent's topics the recorder must see a publisher of before the benchmark starts
AGENT_TOPICS = ("/agent/metrics", "/agent/tool_calls")
#: how long to wait for the recorder to subscribe, and for the agent's topics to appear
RECORDER_WAIT_S = 30.0
AGENT_TOPICS_WAIT_S = 20.0

PARAMS_HEADER = """\
Parameters of this run, written by slm-agent bench (the nodes read it with
--ros-args --params-file; every setting is declared in slm_agent/settings.py).
"""


class BenchError(Exception):
    """A bench run that cannot start: each arg is one line for stderr (exit 2)."""


def run_flags() -> dict[type[NodeSettings], tuple[str, ...]]:
    """The settings a bench run takes, by node class: the settings marked ``run=True`` of
    the nodes a bench run starts."""
    return run_settings((AgentSettings, BenchmarkSettings, GoldAgentSettings, TelemetrySettings))


def add_run_arguments(parser: argparse.ArgumentParser) -> None:
    """The flags of one bench run (``slm-agent bench``, a grid's ``bench_args``): every run
    setting (flag, help and default from its declaration; checked all at once by
    :meth:`BenchRun.from_values`) and the run's own switches."""
    for cls, names in run_flags().items():
        group = parser.add_argument_group(f"{cls.NODE} settings" + (" (with --agent gold)"
                                                                     if cls is GoldAgentSettings else ""))
        add_cli_arguments(group, cls, names, validate=False)
    parser.add_argument("--record", dest="record", action="store_true", default=True,
                        help="record the topics to a rosbag2 MCAP bag in OUTPUT_DIR/bag (default)")
    parser.add_argument("--no-record", dest="record", action="store_false", help="do not record a bag")
    parser.add_argument("--agent", choices=["model", "gold"], default="model",
                        help="model: agent_node with --model; gold: the suite's gold answers (harness fidelity run)")
    parser.add_argument("--no-telemetry", dest="telemetry", action="store_false",
                        help="do not start telemetry_node")
    parser.add_argument("--no-report", action="store_true", help="skip the report at the end")
    parser.add_argument("--quiet", action="store_true",
                        help="do not stream the nodes' console (still in logs/; errors are still printed)")


#: the run's own switches among the flags of :func:`add_run_arguments` (not node settings)
SWITCHES = ("record", "agent", "telemetry", "no_report", "quiet")


@dataclass(frozen=True)
class BenchRun:
    """One bench run: the settings each node gets, validated, and the run's switches.

    ``benchmark.model`` is the label in results (the agent's model, or ``gold``);
    ``agent`` is :class:`AgentSettings` or, for a gold run, :class:`GoldAgentSettings`;
    ``telemetry`` None starts no telemetry node (a grid's shared one serves)."""

    benchmark: BenchmarkSettings
    agent: Union[AgentSettings, GoldAgentSettings]
    telemetry: Optional[TelemetrySettings] = None
    record: bool = True
    report: bool = True
    quiet: bool = False

    @property
    def gold(self) -> bool:
        return isinstance(self.agent, GoldAgentSettings)

    @property
    def model(self) -> str:
        """The model profile of a model run ("" for a gold run)."""
        return "" if self.gold else self.agent.model   # type: ignore[union-attr]

    @property
    def out(self) -> Path:
        return Path(self.benchmark.output_dir)

    def with_output(self, out: Path) -> "BenchRun":
        return replace(self, benchmark=self.benchmark.model_copy(update={"output_dir": str(out)}))

    @classmethod
    def from_values(cls, values: Mapping[str, Any], *, agent: str = "model", record: bool = True,
                    telemetry: bool = True, report: bool = True, quiet: bool = False) -> "BenchRun":
        """A run from run-setting values by name (``{"limit": 5, "model": ...}``; a missing one
        is its declared default).  :class:`BenchError` with one line per bad value, naming its
        flag, all at once."""
        errors: list[str] = []
        parsed: dict[type[NodeSettings], Any] = {}
        for klass, names in run_flags().items():
            given = {name: values[name] for name in names if name in values}
            try:
                parsed[klass] = klass.parse(given)
            except SettingsError as exc:
                errors += [p.for_flag(flag_of(klass, p.name)) if p.name in names else str(p) for p in exc.items]
        if errors:   # the profile too, so one attempt shows every problem
            model = parsed.get(AgentSettings)
            raise BenchError(*errors, *(_profile_problem(model.model) if model is not None and agent == "model"
                                        else []))
        label = parsed[AgentSettings].model if agent == "model" else "gold"
        # with a recorder: the benchmark's first case and the agent's first goal wait for its match,
        # so the bag has every case and every call
        recorded = {"min_subscribers": 1 if record else 0}
        bench = parsed[BenchmarkSettings].model_copy(update={"model": label, **recorded})
        agent_settings = parsed[AgentSettings if agent == "model" else GoldAgentSettings].model_copy(update=recorded)
        return cls(benchmark=bench, agent=agent_settings,
                   telemetry=parsed[TelemetrySettings] if telemetry else None, record=record, report=report,
                   quiet=quiet)

    @classmethod
    def from_args(cls, args: argparse.Namespace) -> "BenchRun":
        """A run from the flags of :func:`add_run_arguments`."""
        names = {n for ns in run_flags().values() for n in ns}
        return cls.from_values({n: getattr(args, n) for n in names if hasattr(args, n)}, agent=args.agent,
                               record=args.record, telemetry=args.telemetry, report=not args.no_report,
                               quiet=args.quiet)

    def config(self):
        """The :class:`~slm_agent.bench.runner.BenchConfig` the benchmark node will build."""
        from slm_agent.bench import runner

        return runner.BenchConfig(self.benchmark)

    def params(self, bag: Optional[Path] = None) -> dict[type[NodeSettings], dict[str, Any]]:
        """What each node gets from params.yaml: this run's settings and the values it sets
        (run directory, bag, autostart); everything else is the declared default."""
        flags = run_flags()
        bench_names = (*flags[BenchmarkSettings], "model", "min_subscribers")
        sections: dict[type[NodeSettings], dict[str, Any]] = {
            BenchmarkSettings: {n: getattr(self.benchmark, n) for n in bench_names}}
        if self.telemetry is not None:
            sections[TelemetrySettings] = {n: getattr(self.telemetry, n) for n in flags[TelemetrySettings]}
        # recorded: the agent's first goal waits for the recorder too (left out when not recorded)
        recorded = {"min_subscribers": self.agent.min_subscribers} if self.agent.min_subscribers else {}
        if self.gold:   # the gold agent answers with the run's suite's gold answers
            sections[GoldAgentSettings] = {"suite": self.benchmark.suite, **recorded,
                                           **{n: getattr(self.agent, n) for n in flags[GoldAgentSettings]}}
        else:
            # the agent's other run settings (the cascade's, issue 26) where they differ from the default,
            # so a run without them writes the same parameters file as before
            own = {n: getattr(self.agent, n) for n in flags[AgentSettings]
                   if n != "model" and getattr(self.agent, n) != AgentSettings.model_fields[n].default}
            sections[AgentSettings] = {"model": self.model, "autostart": True, **own, **recorded,
                                       # as many goals at once as cases
                                       **agent_for_concurrency(self.benchmark.concurrency,
                                                               self.agent.max_queued_goals)}  # type: ignore[union-attr]
        if bag is not None:
            sections[RecorderSettings] = {"output": str(bag)}
        return sections


def parse_run_flags(argv: Sequence[str]) -> dict[str, Any]:
    """The run flags given in ``argv`` (a grid's ``bench_args``), by setting or switch name;
    flags not given are left out.  :class:`BenchError` (one line) for text argparse refuses."""
    import contextlib
    import io

    parser = argparse.ArgumentParser(prog="slm-agent bench", add_help=False)
    add_run_arguments(parser)
    for action in parser._actions:   # a flag not given is left out (set_defaults would store the marker)
        action.default = argparse.SUPPRESS
    err = io.StringIO()
    try:
        with contextlib.redirect_stderr(err):
            return vars(parser.parse_args(list(argv)))
    except SystemExit:
        lines = [ln.split(": error: ", 1)[-1] for ln in err.getvalue().splitlines() if ln.strip()]
        raise BenchError(f"bench_args: {(lines[-1:] or ['refused'])[0]}") from None


# --------------------------------------------------------------------------- checks

def _one_line(text: str) -> str:
    """Several lines as one ("head:" then items: "head: a; b")."""
    parts = [part.strip() for part in text.splitlines() if part.strip()]
    if len(parts) > 1 and parts[0].endswith(":"):
        return parts[0] + " " + "; ".join(parts[1:])
    return "; ".join(parts)


def _other_suite_settings(settings: BenchmarkSettings) -> list[str]:
    """A setting that a suite declares as its own (``Suite.settings_model``: tau2's ``tau2_*``)
    given a value on a run of another suite would be ignored silently, so it is refused
    instead.  Ownership is read from the suites' declarations, never from the name."""
    from slm_agent.bench.suite import setting_owners

    owners = setting_owners()
    return [f"{flag_of(BenchmarkSettings, name)}: only for --suite {' or '.join(owners[name])} "
            f"(this run is --suite {settings.suite})"
            for name, field in type(settings).model_fields.items()
            if name in owners and settings.suite not in owners[name] and getattr(settings, name) != field.default]


def _profile_problem(model: str) -> list[str]:
    """Model profile ``model``, loaded as the agent will load it: [] or its one line."""
    from slm_agent.profiles import load_profile

    try:
        load_profile(model)
    except Exception as exc:  # noqa: BLE001 - ProfileError, YAML errors: one line each
        return [f"--model: {_one_line(str(exc))}"]
    return []


def _profile_errors(run: BenchRun) -> list[str]:
    if run.gold:
        return []
    fallback = run.agent.fallback_model.strip()   # type: ignore[union-attr]
    return _profile_problem(run.model) + [p.replace("--model:", "--fallback-model:", 1)
                                          for p in (_profile_problem(fallback) if fallback else [])]


def _prompt_errors(run: BenchRun) -> list[str]:
    """The goals' prompt settings with the model profile, built as the agent builds them: a
    combination the agent would refuse for every case (``native`` on a profile without a call
    syntax, ``native``/``bfcl`` with ``--chat-format raw``) is refused before any node starts."""
    if run.gold:
        return []
    from slm_agent.agent.goal_options import GoalOptions, resolve_goal_options
    from slm_agent.agent.strategies import make_strategy, resolve_chat_format
    from slm_agent.profiles import load_profile

    try:
        profile = load_profile(run.model)
    except Exception:  # noqa: BLE001 - reported by _profile_errors
        return []
    b = run.benchmark
    try:
        opts = resolve_goal_options(GoalOptions(b.strategy, b.serialization, resolve_chat_format("", profile), False),
                                    profile, chat_format=b.chat_format or "")
        make_strategy(opts.strategy, opts.serialization, opts.chat_format, None, 16,
                      profile.chat.prompt_layout, profile.chat.native_calls)
    except ValueError as exc:
        return [f"{flag_of(BenchmarkSettings, 'serialization')}: {_one_line(str(exc))}"]
    return []


def _concurrency_backend_errors(run: BenchRun) -> list[str]:
    """More than one case in flight needs an agent that runs goals in parallel (the engines
    say which: :func:`slm_agent.engines.parallel_calls_problem`; the gold agent answers every
    goal at once)."""
    if run.benchmark.concurrency <= 1 or run.gold:
        return []
    from slm_agent.engines import parallel_calls_problem
    from slm_agent.profiles import load_profile

    try:
        problem = parallel_calls_problem(load_profile(run.model), run.benchmark.concurrency)
    except Exception:  # noqa: BLE001 - reported by _profile_errors
        return []
    return [f"{flag_of(BenchmarkSettings, 'concurrency')}: {problem}"] if problem else []


def check_run(run: BenchRun) -> list:
    """Every run parameter checked before anything is written or started; returns the
    selected scenarios.  Raises :class:`BenchError` with one line per bad value."""
    from slm_agent.bench import runner

    cfg = run.config()
    errors = [f"{flag_of(BenchmarkSettings, name)}: {text}" for name, text in runner.validate_config(cfg)]
    errors += _profile_errors(run)
    errors += _other_suite_settings(cfg.settings)
    errors += _concurrency_backend_errors(run)
    errors += _prompt_errors(run)
    scenarios: list = []
    if not any(e.startswith(("--suite", "--categories", "--limit")) for e in errors):
        try:
            suite = runner.get_suite(cfg.suite).configure(cfg.settings.model_dump())
        except (KeyError, ValueError) as exc:   # the suite's own settings (its SuiteError names them)
            errors.append(f"--suite {cfg.suite}: {exc.args[0] if exc.args else exc}")
            raise BenchError(*errors) from None
        try:
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


def check_resume(run: BenchRun, out: Path, allow_different_run: bool) -> None:
    """Refuse (BenchError) a run directory that holds a different run, unless
    ``allow_different_run`` and only the case set differs."""
    from slm_agent.bench import rundir, runner
    from slm_agent.bench.results import RUN_FILE, read_json

    run_path = out / RUN_FILE
    previous = read_json(run_path)
    if previous is None:
        if run_path.exists() and run_path.stat().st_size > 0:
            raise BenchError(f"{run_path} is damaged (not JSON); move it away to start this directory afresh, "
                             "or use another --output-dir")
        return
    cfg = run.with_output(out).config()
    diffs, identity_ok = rundir.resume_differences(previous, cfg.to_dict(), runner.model_info(cfg.model))
    if diffs and not (identity_ok and allow_different_run):
        raise BenchError(rundir.refusal(out, diffs, identity_ok, "--allow-different-run"))


# --------------------------------------------------------------------------- running

@dataclass
class SharedNodes:
    """Nodes a caller keeps across bench runs (a grid: one agent per model): the running
    agent, the environment (DDS domain) they run in, and descriptors (the caller's lock,
    domain lease) each run's nodes hold too.  The bench run neither starts nor stops them."""

    agent: NodeProcess
    env: dict[str, str]
    fds: tuple[int, ...] = ()


def run_bench(run: BenchRun, shared: Optional[SharedNodes] = None) -> int:
    """Check ``run``, take its run directory, start its nodes, wait for the benchmark, stop the
    rest (bag closed) and write the report; returns the exit status (module docstring).  With
    ``shared``, the agent is ``shared.agent`` (already serving goals) and none is started."""
    from slm_agent.bench import rundir

    lock: Optional[rundir.RunLock] = None
    try:
        check_run(run)
        out = rundir.prepare_run_dir(run.benchmark.output_dir)
        try:
            lock = rundir.RunLock(out).acquire("slm-agent bench")
        except rundir.RunDirLocked as exc:
            if not rundir.orphaned(exc.holders):
                raise
            # right after a kill -9 of an earlier run its nodes are still stopping: wait for them a little
            pids = [h.get("pid") for h in exc.holders if h.get("what") != "slm-agent bench"
                    and rundir.pid_alive(int(h.get("pid", 0) or 0))]
            print(f"slm-agent bench: waiting up to {ORPHAN_WAIT_S:.0f} s for the nodes of a killed earlier run "
                  f"(pids {', '.join(map(str, pids)) or '?'}) to release {out}", file=sys.stderr)
            lock = rundir.RunLock(out).acquire("slm-agent bench", orphan_wait_s=ORPHAN_WAIT_S)
        run = run.with_output(out)
        check_resume(run, out, run.benchmark.allow_different_run)
        params_file = out / "params.yaml"
        bag = free_bag_dir(out) if run.record else None
        try:
            (out / "logs").mkdir(exist_ok=True)
            params_file.write_text(params_yaml(run.params(bag), header=PARAMS_HEADER), encoding="utf-8")
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
    try:   # the report too is written while the run directory is held
        return _finish(run, out, bag, _run_nodes(run, out, params_file, bag, lock, shared))
    finally:
        lock.release()


def _domain_env(lock, shared: Optional[SharedNodes]) -> tuple[Optional[DomainLease], dict[str, str],
                                                               tuple[int, ...]]:
    """The DDS domain, environment and held descriptors of a run's nodes (ValueError,
    RuntimeError: no domain)."""
    from slm_agent.bench.rundir import LOCK_FD_ENV

    if shared is not None:   # the caller's agent, DDS domain and lease: this run's nodes join them
        return None, {**shared.env, LOCK_FD_ENV: str(lock.fd)}, (lock.fd, *shared.fds)
    domain = DomainLease()   # a DDS domain of its own: a second run here cannot take this run's goals
    if domain.shared:
        print(f"slm-agent bench: warning: another slm-agent run uses DDS domain {domain.domain_id} "
              "(ROS_DOMAIN_ID); their goals and topics will mix. Unset ROS_DOMAIN_ID to get a free one",
              file=sys.stderr)
    elif not domain.explicit and domain.domain_id != 0:
        print(f"slm-agent bench: DDS domain 0 is busy with another slm-agent run; this run uses "
              f"ROS_DOMAIN_ID={domain.domain_id}", file=sys.stderr)
    # every node holds the run directory's lock and the domain lease too: both stay held until the last is gone
    env = domain.env({**os.environ, LOCK_FD_ENV: str(lock.fd)})
    return domain, env, (lock.fd,) + ((domain.fd,) if domain.fd >= 0 else ())


def _start_recorder(graph, start, topics: Sequence[str]) -> Optional[NodeProcess]:
    """The recorder, once ROS shows it subscribed to ``topics`` (None when it did not start)."""
    rec = start("recorder", node_command("recorder_node"))
    if not graph.wait_subscribed("recorder", topics, RECORDER_WAIT_S, rec.alive):
        print(f"slm-agent: recorder did not start: {rec.error_text() or 'no error logged'} "
              f"(see {rec.log_path})", file=sys.stderr)
        return None
    return rec


def _run_nodes(run: BenchRun, out: Path, params_file: Path, bag: Optional[Path], lock,
               shared: Optional[SharedNodes]) -> int:
    from slm_agent.bench.bag import KNOWN_TOPIC_TYPES
    from slm_agent.launcher.ready import RosGraph

    ros = ["--ros-args", "--params-file", str(params_file)]
    children: dict[str, NodeProcess] = {}
    code = 1
    try:
        domain, env, held_fds = _domain_env(lock, shared)
    except (ValueError, RuntimeError) as exc:
        print(f"slm-agent bench: {exc}", file=sys.stderr)
        return 2
    graph: Optional[RosGraph] = None

    def start(name: str, argv: list[str]) -> NodeProcess:
        children[name] = NodeProcess(name, argv + ros, out / "logs", echo=not run.quiet, pass_fds=held_fds,
                                     env=env)
        lock.add_holder(children[name].pid, name)
        return children[name]

    def on_term(_sig, _frame):
        raise KeyboardInterrupt

    old_handlers = {sig: signal.signal(sig, on_term) for sig in (signal.SIGTERM, signal.SIGHUP)}
    try:
        if run.telemetry is not None:
            start("telemetry", node_command("telemetry_node"))
        if bag is not None:   # readiness asked of ROS in the run's domain, not read from the logs
            graph = RosGraph(int(env.get("ROS_DOMAIN_ID", "0") or 0))
            known = [t for t in RecorderSettings().topics.split(",") if t in KNOWN_TOPIC_TYPES]
            if _start_recorder(graph, start, known) is None:
                return 1
        if shared is None:   # the agent's model and autostart come from params.yaml
            start("agent", node_command("gold_agent_node" if run.gold else "agent_node"))
        if graph is not None and not graph.wait_publishers(AGENT_TOPICS, AGENT_TOPICS_WAIT_S,
                                                           (children.get("agent") or shared.agent).alive):
            print(f"slm-agent: no publisher on {' and '.join(AGENT_TOPICS)} yet; the first messages may be "
                  "missing from the bag", file=sys.stderr)
        bench = start("benchmark", node_command("benchmark_node"))
        agent = children["agent"] if shared is None else shared.agent
        while bench.alive() and agent.alive():
            time.sleep(0.2)
        code = _outcome(bench, agent, out)
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
        if graph is not None:
            graph.close()
        if domain is not None:
            domain.release()
    return code


def _outcome(bench: NodeProcess, agent: NodeProcess, out: Path) -> int:
    """The run's exit status once the benchmark or the agent ended, with its one-line reason."""
    if bench.alive():  # the agent ended first
        bench.stop(signal.SIGINT)
        why = agent.error_text() or "no error logged"
        if agent.proc.returncode == 2:  # bad parameters or a failed configure/activate: nothing ran
            print(f"slm-agent: the agent could not start (status 2): {why}. Fix the model profile "
                  f"(--model) or the agent's parameters and rerun (log: {agent.log_path})", file=sys.stderr)
            return 2
        print(f"slm-agent: the agent exited (status {agent.proc.returncode}) during the run: {why}. "
              f"Finished cases are kept; rerun the same command to resume (log: {agent.log_path})",
              file=sys.stderr)
        return 3
    code = bench.proc.returncode if bench.proc.returncode is not None else 1
    if code == EXIT_WRITE:   # one line with the path and the OS error, even when the log lost it
        said = [e for e in bench.error_text(limit=5).split("; ") if e.startswith("cannot write")]
        print(f"slm-agent: {(said[0] if said else '') or write_problem(out) or f'cannot write {out}'}; "
              f"finished cases are kept, free space and rerun to resume", file=sys.stderr)
    elif code not in (0, 130):
        print(f"slm-agent: the benchmark ended with status {code}: "
              f"{bench.error_text() or 'no error logged'} (log: {bench.log_path})", file=sys.stderr)
    return code


def _finish(run: BenchRun, out: Path, bag: Optional[Path], code: int) -> int:
    """Where the results are, the report, and a bag the recorder closed without metadata."""
    results = out / "results.jsonl"
    print(f"\nresults: {results}" + ("" if results.exists() else " (none)"))
    if bag is not None:
        print(f"bag:     {bag}")
    if results.exists() and run.report:
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
