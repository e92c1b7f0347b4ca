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
The built-in suites are registered here, in code (:data:`BUILTIN_SUITES`), so
they resolve from a source tree whose installed metadata is stale; another
Python distribution adds a suite with an entry point in the group
``slm_agent.suites`` (:data:`ENTRY_POINT_GROUP`), ``name = "module:Class"``,
found with :mod:`importlib.metadata` without editing this package.

Hooks a suite may fill in besides playing and scoring (each has a default, so
a suite only writes what it needs):

* its own run settings (:attr:`Suite.settings_model`, a pydantic model): the
  launcher accepts a setting only on a run of the suite that declares it, and
  :meth:`Suite.suite_settings` validates the values (from benchmark settings
  of the same name, or ``name=value`` pairs of the benchmark setting
  ``suite_options`` for settings that are not node parameters);
* the gold answer of a goal (:meth:`Suite.gold_answer`), which the gold agent
  plays instead of guessing the suite from the case id;
* a world the run owns and every case reads and resets
  (:meth:`Suite.make_world` -> :attr:`CaseContext.world`, a :class:`World`):
  a case scored by a system's final state (a robot's) reads it there;
* the first-turn tools of a case (:meth:`Suite.first_turn_tools`), from which
  ``slm-agent compare`` counts tool-spec tokens for any suite.

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

class World(Protocol):
    """State that outlives a case and that cases are scored on (a simulated robot, say).
    The run owns it (:meth:`Suite.make_world`) and hands it to every case in
    :attr:`CaseContext.world`: an episode resets it to the case's initial state at the start
    and reads it to score, so a score is the world's final state, not what the agent said."""

    def read(self) -> dict[str, Any]:
        """The world's state now, as plain JSON-able data."""

    def reset(self, state: Optional[Mapping[str, Any]] = None) -> None:
        """Put the world in ``state`` (a :meth:`read`-shaped mapping, missing keys at their
        initial values; None: the initial state)."""


@dataclass(frozen=True)
class CaseContext:
    """What the run gives an episode."""

    tool_host: Optional[ToolHost] = None     # None: this run cannot execute tools (a suite that needs it fails)
    tool_timeout_s: float = 10.0             # per-call timeout to put in served tools' specs
    seed: int = 0
    protocol: str = ""                       # loop rules every goal carries (agent/protocol.py); "" = robot
    world: Optional[World] = None            # the run's world (Suite.make_world); None: the suite has none


@dataclass(frozen=True)
class GoldAnswer:
    """What the gold agent answers to one goal (:meth:`Suite.gold_answer`).

    ``calls``: ``(tool name as the goal names it, arguments)``, in order.  ``execute``: the
    calls are run one per agent-loop step through the goal's tool services (when the goal
    executes tools) and ``text`` closes the answer; otherwise they are returned as the first
    response's calls, unexecuted, and ``text`` is the answer when there are none."""

    calls: list[tuple[str, dict[str, Any]]]
    text: str = ""
    execute: bool = False


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
    #: the suite's own run settings, a pydantic model (None: it has none).  A field named like a
    #: benchmark setting (tau2's ``tau2_trials``: a node parameter with its own flag) takes that
    #: setting's value; any other field is given in the benchmark setting ``suite_options``
    #: (``name=value,...``), so a suite from another package declares settings without editing
    #: ``slm_agent.settings``.  Only a run of this suite may set them (the launcher refuses the
    #: rest): which suite owns a setting is read from here, never guessed from its name.
    settings_model: ClassVar[Optional[type]] = None
    #: this suite's settings in a configured suite (:meth:`configure`); None before
    settings: Any = None

    # ------------------------------------------------------------------ run settings
    @classmethod
    def setting_names(cls) -> tuple[str, ...]:
        """Names of the suite's own settings (the fields of :attr:`settings_model`)."""
        return tuple(cls.settings_model.model_fields) if cls.settings_model is not None else ()

    def suite_settings(self, settings: Mapping[str, Any]) -> Any:
        """The suite's own settings for a run whose benchmark settings are ``settings``: each
        field from the benchmark setting of its name, else from ``suite_options``, else its
        default; None for a suite without :attr:`settings_model`.  :class:`SuiteError` (one line
        naming every bad value) for an unknown option, a bad value, or options given to a suite
        that has none."""
        from pydantic import ValidationError

        options = parse_suite_options(settings.get("suite_options", ""))
        label = self.title or self.name
        model = self.settings_model
        if model is None:
            if options:
                raise SuiteError(f"suite_options: the {label} suite has no settings of its own "
                                 f"(got {', '.join(options)})")
            return None
        fields = list(model.model_fields)
        bad = [f"{k!r} is not a {label} setting{did_you_mean(k, fields)}" for k in options if k not in fields]
        bad += [f"{k!r} is a benchmark setting of its own: set it as {k}" for k in options
                if k in fields and k in settings]
        if bad:
            raise SuiteError(f"suite_options: {'; '.join(bad)} ({label} settings: {', '.join(fields) or 'none'})")
        values = {k: settings[k] for k in fields if k in settings}
        values.update(options)
        try:   # not strict: suite_options values are text ("0.1", "true")
            return model.model_validate(values, strict=False)
        except ValidationError as exc:
            raise SuiteError(f"{label} settings: " + "; ".join(
                f"{'.'.join(str(x) for x in e['loc'])}={values.get(e['loc'][0], '') if e['loc'] else ''!r}: "
                f"{str(e['msg']).removeprefix('Value error, ')}" for e in exc.errors())) from None

    def configure(self, settings: Mapping[str, Any]) -> "Suite":
        """This suite set up for a run whose benchmark settings are ``settings``
        (``BenchmarkSettings`` as a dict), for a suite whose cases or play depend
        on them (tau2: trials per task, who plays the user).  Returns the suite
        to use (may be a new instance: the registered one is shared);
        :class:`SuiteError` (one line) for a bad value.  Default: a copy holding
        :meth:`suite_settings` in :attr:`settings` (``self`` when it has none)."""
        own = self.suite_settings(settings)
        if own is None:
            return self
        import copy

        configured = copy.copy(self)
        configured.settings = own
        return configured

    # ------------------------------------------------------------------ cases
    @abstractmethod
    def categories(self) -> Sequence[str]:
        """Canonical category names, in the suite's order."""

    def aliases(self) -> Mapping[str, str]:
        """Short names accepted on input -> canonical category."""
        return {}

    def default_categories(self) -> Sequence[str]:
        """The categories a run of this suite plays when it names none (no categories, no ids),
        so ``slm-agent bench --suite <name>`` runs something sensible.  Default: all of them."""
        return tuple(self.categories())

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
        """Cases of a run: ``limit`` per category (0 = all), in the suite's order; neither
        categories nor ids: the suite's :meth:`default_categories`."""
        if not categories and not ids:
            categories = self.default_categories()
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

    def make_world(self) -> Optional[World]:
        """The world of a run (called once per run on the configured suite; the run puts it in
        every case's :attr:`CaseContext.world`), for a suite scored on a system's final state.
        Default: None (BFCL and tau2 build their state per case)."""
        return None

    def gold_answer(self, case_id: str, turn: int, tools: Sequence[str], corrupt: bool = False) -> GoldAnswer:
        """What the gold agent answers to turn ``turn`` of case ``case_id`` (``tools``: the tool
        names the goal offers, in order); with ``corrupt`` a deliberately wrong answer that the
        checker must fail.  Called on the registered suite, not a configured one (the gold agent
        does not know the run's settings), so it depends on the case id alone.  The gold agent
        makes a goal it cannot answer a failed goal (any exception).  Default: no gold answers."""
        raise SuiteError(f"the {self.title or self.name} suite has no gold answers")

    def first_turn_tools(self, case_id: str) -> list[dict[str, Any]]:
        """The tools the first goal of ``case_id`` offers, as ``{"name", "description",
        "parameters"}`` dicts: ``slm-agent compare`` renders them with a cell's serialization to
        count tool-spec tokens.  Default: the case's :attr:`Scenario.functions` (empty: n/a)."""
        found = self.load((), [case_id], 0)
        return [dict(f) for f in (found[0].functions if found else [])]

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


# --------------------------------------------------------------------------- suite options

def parse_suite_options(text: Any) -> dict[str, str]:
    """``"a=1, b=x"`` -> ``{"a": "1", "b": "x"}`` (the benchmark setting ``suite_options``);
    :class:`SuiteError` (one line) for an item without ``=`` or a name given twice."""
    out: dict[str, str] = {}
    for item in str(text or "").split(","):
        if not item.strip():
            continue
        name, sep, value = item.partition("=")
        name = name.strip()
        if not sep or not name:
            raise SuiteError(f"suite_options: {item.strip()!r} is not name=value")
        if name in out:
            raise SuiteError(f"suite_options: {name!r} given twice")
        out[name] = value.strip()
    return out


# --------------------------------------------------------------------------- registry

#: the suites of this package, registered in code so they resolve from a source tree whose
#: installed entry-point metadata is stale (an editable install made before a suite was added)
BUILTIN_SUITES: dict[str, str] = {
    "bfcl": "slm_agent.bench.bfcl.suite:BfclSuite",
    "tau2": "slm_agent.bench.tau2.suite:Tau2Suite",
    "robot": "slm_agent.bench.robot.suite:RobotSuite",
}
#: the entry-point group through which another distribution adds a suite:
#: ``entry_points={"slm_agent.suites": ["name = package.module:SuiteClass"]}``
ENTRY_POINT_GROUP = "slm_agent.suites"

#: name -> ``"module:Class"`` (imported on first use) or a factory: the built-ins and
#: :func:`register_suite`'s; they win over an entry point of the same name
_REGISTRY: dict[str, Union[str, Callable[[], Suite]]] = dict(BUILTIN_SUITES)
_INSTANCES: dict[str, Suite] = {}
_ENTRY_POINTS: Optional[dict[str, Any]] = None


def _entry_points() -> dict[str, Any]:
    """name -> EntryPoint of the group :data:`ENTRY_POINT_GROUP`, read once per process
    (:func:`refresh_entry_points` reads them again)."""
    global _ENTRY_POINTS
    if _ENTRY_POINTS is None:
        from importlib.metadata import entry_points

        _ENTRY_POINTS = {ep.name: ep for ep in entry_points(group=ENTRY_POINT_GROUP)}
    return _ENTRY_POINTS


def refresh_entry_points() -> None:
    """Read the installed entry points again (after installing a distribution in this process)."""
    global _ENTRY_POINTS
    for name in list(_ENTRY_POINTS or ()):
        if name not in _REGISTRY:
            _INSTANCES.pop(name, None)
    _ENTRY_POINTS = None


def register_suite(name: str, factory: Union[str, Callable[[], Suite]]) -> None:
    """Add (or replace) a suite in this process: a factory, or ``"module:Class"`` imported on
    first use (a distribution uses the entry-point group instead)."""
    _REGISTRY[name] = factory
    _INSTANCES.pop(name, None)


def unregister_suite(name: str) -> None:
    """Forget a suite registered in code (an entry point of that name becomes visible again)."""
    _REGISTRY.pop(name, None)
    _INSTANCES.pop(name, None)


def suite_names() -> list[str]:
    """Every suite name: the built-ins, those registered in code, those of entry points."""
    return sorted({*_REGISTRY, *_entry_points()})


def get_suite(name: str) -> Suite:
    """The suite registered as ``name`` (one instance per name); :class:`SuiteError` (one line
    listing the known names) for an unknown name or an entry point that does not load."""
    if name in _INSTANCES:
        return _INSTANCES[name]
    factory: Any = _REGISTRY.get(name)
    if factory is None:
        ep = _entry_points().get(name)
        if ep is None:
            raise SuiteError(f"unknown suite {name!r}{did_you_mean(name, suite_names())}; "
                             f"valid: {', '.join(suite_names())}")
        where = f"entry point {ep.name} = {ep.value}" + (f" of {ep.dist.name}" if getattr(ep, "dist", None) else "")
        try:
            factory = ep.load()
            suite = factory()
        except Exception as exc:  # noqa: BLE001 - another package's suite: one line, not a traceback
            raise SuiteError(f"suite {name!r} ({where}) does not load: {type(exc).__name__}: {exc}") from None
        if not isinstance(suite, Suite):
            raise SuiteError(f"suite {name!r} ({where}) is a {type(suite).__name__}, not a "
                             "slm_agent.bench.suite.Suite")
        _INSTANCES[name] = suite
        return suite
    if isinstance(factory, str):
        module, _, attr = factory.partition(":")
        factory = getattr(importlib.import_module(module), attr)
    suite = factory()
    _INSTANCES[name] = suite
    return suite


def setting_owners() -> dict[str, list[str]]:
    """Setting name -> the suites that declare it (:attr:`Suite.settings_model`), over every
    suite that loads here (one that does not is skipped: it can own nothing on this run)."""
    owners: dict[str, list[str]] = {}
    for name in suite_names():
        try:
            suite = get_suite(name)
        except Exception:  # noqa: BLE001 - a broken plug-in must not block runs of other suites
            continue
        for setting_name in suite.setting_names():
            owners.setdefault(setting_name, []).append(name)
    return owners
