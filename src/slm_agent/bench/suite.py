"""Benchmark suites as plug-ins (no ROS imports).

A :class:`Suite` is everything the harness knows about one benchmark: which
cases exist and how to pick them, what the agent is sent for each turn of a
case and when the case is over, which tools a case offers (and the executable
state behind them), how the agent's answers are scored (the suite's own
checker), and what the suite adds to the summary and the report.  The
benchmark node, :mod:`~slm_agent.bench.runner`, :mod:`~slm_agent.bench.session`,
:mod:`~slm_agent.bench.results`, :mod:`~slm_agent.bench.bag` and
:mod:`~slm_agent.bench.report` work through this interface only; BFCL
(:mod:`slm_agent.bench.bfcl.suite`) is the first implementation.

Playing a case (:func:`slm_agent.bench.play.play_case` drives it)::

    episode = suite.episode(scenario, CaseContext(tool_host, tool_timeout_s))
    episode.start()                      # per-case set-up: environments, tool services
    while (turn := episode.next_turn()) is not None:
        outcome = <send turn.messages/turn.tools as one RunTask goal>
        if outcome is None: break        # timeout / rejected goal
        counted = episode.observe(turn, outcome)
    result = episode.score()             # the suite's own checker
    fields = episode.record_fields()     # extra results.jsonl fields (e.g. reward components)
    episode.close()                      # teardown, always

``next_turn`` sees every outcome observed so far, so a suite can decide the
next user message from the transcript (a simulated user, tau2-bench) and end
the case whenever it likes; BFCL replays its fixed user turns.

Tools that must *run* (multi-turn BFCL, a tau2 domain) are served by the
benchmark node through a :class:`ToolHost` (``slm_agent/srv/InvokeTool``
services, :class:`slm_agent.ros.tool_services.ToolServiceHost`): the episode
hands it an :class:`Executor` and the function names, and gets the service
names to put in the turn's tool specs.

Suites are found by name in a registry (:func:`get_suite`, :func:`suite_names`,
:func:`register_suite`); a registered suite is imported only when first used.

A suite owns its protocol (:attr:`Suite.protocol`): the agent-loop rules
(:mod:`slm_agent.agent.protocol` preset) under which its own scores were
made, which every goal of a run carries (``RunTask.Goal.protocol``) unless
the run asks for the agent's robot-facing rules instead (benchmark setting
``protocol``: ``suite`` or ``robot``; :func:`loop_protocol`).  BFCL's is
``bfcl``: bfcl-eval's own inference loop.
"""
from __future__ import annotations

import difflib
import importlib
import math
from abc import ABC, abstractmethod
from dataclasses import dataclass, field
from typing import Any, Callable, ClassVar, Iterable, Mapping, Optional, Protocol, Sequence, Union

from slm_agent.agent.types import INVOKE_TOOL_TYPE  # noqa: F401 - re-exported for the suites
from slm_agent.bench.scenario import CaseResult, Scenario

#: values of the benchmark setting ``protocol``: the suite's own loop rules, or the agent's robot-facing ones
BENCH_PROTOCOLS = ("suite", "robot")
ROBOT_PROTOCOL = "robot"


class SuiteError(ValueError):
    """An unknown suite, category or case id; the message is one line (with a did-you-mean)."""


def did_you_mean(name: str, choices: Iterable[str], n: int = 3, cutoff: float = 0.6) -> str:
    """`` (did you mean 'x'?)`` for the closest ``choices`` to ``name``, or ``""``."""
    close = difflib.get_close_matches(str(name), list(choices), n=n, cutoff=cutoff)
    if not close:
        return ""
    return " (did you mean " + " or ".join(repr(c) for c in close) + "?)"


# --------------------------------------------------------------------------- tools

class Executor(Protocol):
    """Executable state behind a case's tools (BFCL: a MultiTurnEnvironment)."""

    def execute(self, name: str, arguments: dict[str, Any]) -> Any:
        """Run one call; the result (a string for BFCL) goes back to the agent as JSON."""


class ToolHost(Protocol):
    """What the benchmark node offers a case to serve its tools to the agent.

    The node implements it with ``slm_agent/srv/InvokeTool`` services
    (:class:`slm_agent.ros.tool_services.ToolServiceHost`); a test can use a
    plain-Python stand-in.
    """

    #: ToolSpec.service_type of the served tools
    service_type: str

    def serve(self, executor: Executor, functions: Sequence[str]) -> dict[str, str]:
        """Serve ``functions`` (names as ``executor`` knows them), replacing what was
        served before; returns function name -> service name."""

    def clear(self) -> None:
        """Stop serving (the executor is the caller's to close)."""


def tool_spec(name: str, description: str, parameters: Mapping[str, Any], *, service_name: str = "",
              service_type: str = "", timeout_s: float = 10.0) -> dict[str, Any]:
    """ToolSpec fields of one tool (``parameters`` is a JSON schema)."""
    import json

    return {"name": name, "description": description,
            "parameters_json_schema": json.dumps(parameters, ensure_ascii=False),
            "service_name": service_name, "service_type": service_type, "timeout_s": float(timeout_s),
            "requires_confirmation": False, "max_rate_hz": 0.0}


# --------------------------------------------------------------------------- one case

@dataclass(frozen=True)
class CaseContext:
    """What the run gives an episode."""

    tool_host: Optional[ToolHost] = None     # None: this run cannot execute tools (a suite that needs it fails)
    tool_timeout_s: float = 10.0             # per-call timeout to put in served tools' specs
    seed: int = 0
    protocol: str = ""                       # loop rules every goal carries (agent/protocol.py); "" = robot


@dataclass
class Turn:
    """One RunTask goal: the conversation it carries and the tools it offers."""

    index: int
    messages: list[dict[str, Any]]           # ChatMessage fields (role, content, name, tool_call_id, tool_calls)
    tools: list[dict[str, Any]]              # ToolSpec fields (:func:`tool_spec`)
    execute_tools: bool                      # False: the agent returns its first response's calls unexecuted


@dataclass
class TurnOutcome:
    """The agent's answer to one turn (the RunTask result as plain dicts)."""

    turn: int
    success: bool
    error: str
    final_text: str
    messages: list[dict[str, Any]]           # the transcript (ChatMessage dicts), starting with what was sent
    tool_calls: list[dict[str, Any]]         # ToolCallRecord dicts, in the agent's order
    source: Any = None                       # what the agent returned, untouched (the node's RunTask.Result)
    counted: list[int] = field(default_factory=list)   # indices of tool_calls that count (set by play_case)
    force_terminated: bool = False           # the protocol's step limit ended the goal


class Episode(ABC):
    """One case being played; see the module docstring for the sequence of calls."""

    #: errors of the agent are labelled with their turn (``"turn 2: ..."``) in results.jsonl
    multi_turn: bool = False

    def __init__(self, scenario: Scenario, ctx: CaseContext) -> None:
        self.scenario = scenario
        self.ctx = ctx
        #: the case's calls as results.jsonl records them (the suite's shape)
        self.calls: list[dict[str, Any]] = []
        #: outcomes observed so far, in order
        self.outcomes: list[TurnOutcome] = []
        self._serving = False

    @property
    def planned_turns(self) -> int:
        """Turns the case is expected to take (``turns`` in results.jsonl)."""
        return self.scenario.num_turns

    def start(self) -> None:
        """Per-case set-up (environments, tool services).  Default: nothing."""

    @abstractmethod
    def next_turn(self) -> Optional[Turn]:
        """The next goal to send, or None when the case is over."""

    @abstractmethod
    def observe(self, turn: Turn, outcome: TurnOutcome) -> list[int]:
        """Take the agent's answer to ``turn``; returns the indices of
        ``outcome.tool_calls`` that count for this case (echoed in
        ``ScenarioResult.calls``).  ``play_case`` has already appended
        ``outcome`` to :attr:`outcomes`, where :meth:`next_turn` sees it."""

    @abstractmethod
    def score(self) -> CaseResult:
        """Score what was observed (also after a timeout: with what came so far)."""

    def record_fields(self) -> dict[str, Any]:
        """Extra fields of this case's results.jsonl line (e.g. reward components);
        they never replace a standard field.  Default: none."""
        return {}

    def close(self) -> None:
        """Per-case teardown; always called.  Default: stop serving tools."""
        if self._serving and self.ctx.tool_host is not None:
            self.ctx.tool_host.clear()
        self._serving = False

    # ------------------------------------------------------------------ helpers
    def serve_tools(self, executor: Executor, functions: Sequence[str]) -> dict[str, str]:
        """Serve ``functions`` through the run's :class:`ToolHost` (cleared by :meth:`close`)."""
        if self.ctx.tool_host is None:
            raise RuntimeError(f"{self.scenario.case_id} needs executable tools but this run serves none")
        names = self.ctx.tool_host.serve(executor, list(functions))
        self._serving = True
        return names


# --------------------------------------------------------------------------- reports

@dataclass(frozen=True)
class ReportColumn:
    """A suite-specific column of the report's per-category table and report.csv.

    ``compute`` gets a group's records (results.jsonl dicts; from a bag only the
    ScenarioResult fields are there) and returns a number, NaN for n/a.
    """

    name: str
    compute: Callable[[Sequence[dict[str, Any]]], float]
    fmt: str = "{:.3g}"

    def text(self, records: Sequence[dict[str, Any]]) -> str:
        v = self.compute(records)
        return "n/a" if not (isinstance(v, (int, float)) and math.isfinite(v)) else self.fmt.format(v)


def category_summary_lines(records: Sequence[Mapping[str, Any]]) -> list[str]:
    """Per-category accuracy of a run, for the end-of-run log (every suite's summary starts
    with it)."""
    by_cat: dict[str, list[Mapping[str, Any]]] = {}
    for r in records:
        by_cat.setdefault(r.get("category", "?"), []).append(r)
    lines = [f"{'category':26s} {'passed':>6s} {'cases':>6s} {'invalid':>7s} {'accuracy':>9s}"]
    tp = tn = ti = 0
    for cat, rs in by_cat.items():
        p = sum(1 for r in rs if r.get("passed"))
        inv = sum(1 for r in rs if not r.get("valid", True))
        tp, tn, ti = tp + p, tn + len(rs), ti + inv
        lines.append(f"{cat:26s} {p:6d} {len(rs):6d} {inv:7d} {p / len(rs):9.1%}")
    if tn:
        lines.append(f"{'total':26s} {tp:6d} {tn:6d} {ti:7d} {tp / tn:9.1%}")
    return lines


# --------------------------------------------------------------------------- the suite

class Suite(ABC):
    """A benchmark suite.  Subclasses set :attr:`name` and implement
    :meth:`categories`, :meth:`load` and :meth:`episode`."""

    name: ClassVar[str] = ""
    #: how messages name the suite ("unknown BFCL category ...")
    title: ClassVar[str] = ""
    #: Python distributions whose versions run.json records
    distributions: ClassVar[tuple[str, ...]] = ()
    #: the agent-loop rules (an ``agent/protocol.py`` preset) the suite's own scores assume
    protocol: ClassVar[str] = ROBOT_PROTOCOL

    # ------------------------------------------------------------------ run settings
    def configure(self, settings: Mapping[str, Any]) -> "Suite":
        """This suite set up for a run whose benchmark settings are ``settings``
        (``BenchmarkSettings`` as a dict), for a suite whose cases or play depend
        on them (tau2: trials per task, who plays the user).  Returns the suite
        to use (may be a new instance); :class:`SuiteError` (one line) for a bad
        value.  Default: ``self``."""
        return self

    # ------------------------------------------------------------------ cases
    @abstractmethod
    def categories(self) -> Sequence[str]:
        """Canonical category names, in the suite's order."""

    def aliases(self) -> Mapping[str, str]:
        """Short names accepted on input -> canonical category."""
        return {}

    def resolve_category(self, name: str) -> str:
        """The canonical category for ``name``; :class:`SuiteError` (one line, did-you-mean) otherwise."""
        aliases = self.aliases()
        canonical = aliases.get(name, name)
        cats = list(self.categories())
        if canonical in cats:
            return canonical
        alias_txt = (" (aliases: " + ", ".join(f"{a}={c}" for a, c in aliases.items()) + ")") if aliases else ""
        raise SuiteError(f"unknown {self.title or self.name} category {name!r}"
                         f"{did_you_mean(name, [*cats, *aliases])}; valid categories: {', '.join(cats)}{alias_txt}")

    def category_problems(self, names: Sequence[str]) -> list[str]:
        """One line per name in ``names`` that is not a category (empty: all fine)."""
        out = []
        for name in names:
            try:
                self.resolve_category(name)
            except (KeyError, ValueError) as exc:
                out.append(str(exc.args[0] if exc.args else exc))
        return out

    @abstractmethod
    def load(self, categories: Sequence[str], ids: Sequence[str], limit: int) -> list[Scenario]:
        """Cases in the suite's stable order.

        Without ``ids``: the first ``limit`` cases (0 = all) of each canonical
        category in ``categories``.  With ``ids``: exactly those cases (from
        ``categories`` when given; ``limit`` is applied by :meth:`select`);
        an unknown id raises :class:`SuiteError` (or ``KeyError``).
        """

    def select(self, categories: Sequence[str] = (), ids: Sequence[str] = (), limit: int = 0) -> list[Scenario]:
        """Cases of a run: ``limit`` per category (0 = all), in the suite's order."""
        cats = [self.resolve_category(c) for c in categories]
        if not ids:
            return self.load(cats, (), limit)
        chosen = self.load(cats, list(ids), 0)
        if limit > 0:
            per: dict[str, int] = {}
            out = []
            for sc in chosen:
                per[sc.category] = per.get(sc.category, 0) + 1
                if per[sc.category] <= limit:
                    out.append(sc)
            chosen = out
        return chosen

    def canonical_category(self, name: str) -> str:
        """``name`` made canonical when it is a category, else as written (for comparing case sets)."""
        try:
            return self.resolve_category(name)
        except (KeyError, ValueError):
            return name

    # ------------------------------------------------------------------ playing and scoring
    @abstractmethod
    def episode(self, scenario: Scenario, ctx: CaseContext) -> Episode:
        """A fresh :class:`Episode` that plays and scores ``scenario``."""

    def hosts_tools(self, scenario: Scenario) -> bool:
        """True when playing ``scenario`` serves tools through the run's :class:`ToolHost`
        (one set of services per run: such cases cannot be in flight together).  Default: no."""
        return False

    # ------------------------------------------------------------------ summaries
    def summary_lines(self, records: Sequence[dict[str, Any]]) -> list[str]:
        """End-of-run log lines.  Default: accuracy per category."""
        return category_summary_lines(records)

    def close(self) -> None:
        """End of the run in this process (the benchmark node calls it once, after the last
        case): release what the suite loaded for all its cases (tau2: the simulated user's and
        judge's engines), so a model is not left in memory until the process exits.  Default:
        nothing to release."""

    def report_columns(self) -> list[ReportColumn]:
        """Suite-specific columns of the report's per-category table.  Default: none."""
        return []


def loop_protocol(suite: Suite, setting: str = "suite") -> str:
    """The loop protocol goals carry: the suite's own for ``suite``, ``robot`` for ``robot``."""
    value = (setting or "suite").strip().lower()
    if value not in BENCH_PROTOCOLS:
        raise SuiteError(f"unknown protocol setting {setting!r}; valid: {', '.join(BENCH_PROTOCOLS)}")
    return suite.protocol if value == "suite" else ROBOT_PROTOCOL


def comparable_with_suite(suite: Suite, protocol: str) -> bool:
    """Whether scores made under loop ``protocol`` mean what the suite's own scores mean."""
    return (protocol or ROBOT_PROTOCOL) == suite.protocol


# --------------------------------------------------------------------------- registry

#: name -> ``"module:Class"`` (imported on first use) or a factory
_REGISTRY: dict[str, Union[str, Callable[[], Suite]]] = {
    "bfcl": "slm_agent.bench.bfcl.suite:BfclSuite",
    "tau2": "slm_agent.bench.tau2.suite:Tau2Suite",
}
_INSTANCES: dict[str, Suite] = {}


def register_suite(name: str, factory: Union[str, Callable[[], Suite]]) -> None:
    """Add (or replace) a suite: a factory, or ``"module:Class"`` imported on first use."""
    _REGISTRY[name] = factory
    _INSTANCES.pop(name, None)


def unregister_suite(name: str) -> None:
    _REGISTRY.pop(name, None)
    _INSTANCES.pop(name, None)


def suite_names() -> list[str]:
    return sorted(_REGISTRY)


def get_suite(name: str) -> Suite:
    """The suite registered as ``name`` (one instance per name); :class:`SuiteError` otherwise."""
    if name in _INSTANCES:
        return _INSTANCES[name]
    factory = _REGISTRY.get(name)
    if factory is None:
        raise SuiteError(f"unknown suite {name!r}{did_you_mean(name, _REGISTRY)}; valid: {', '.join(suite_names())}")
    if isinstance(factory, str):
        module, _, attr = factory.partition(":")
        factory = getattr(importlib.import_module(module), attr)
    suite = factory()
    _INSTANCES[name] = suite
    return suite
