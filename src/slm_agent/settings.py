"""Every node setting, declared once.

Why one module: a setting used to be written in up to five places (a node's
``PARAMETERS``, ``BenchConfig``, ``config/*.yaml``, the CLI's argparse
options and the launch file's arguments) and they drifted.  Here each node's
parameters are one pydantic model -- name, type, default, bounds, choices,
description, and whether it is read at configure time or live -- and the
rest is derived from it, as llama-cpp-python's server derives its CLI from
its pydantic settings:

* ROS parameters with descriptors: :func:`slm_agent.ros.params.declare_settings`;
* ``slm-agent`` flags: :func:`add_cli_arguments` (bad values exit 2 with one
  line, before any node starts);
* launch arguments: ``launch/bench.launch.py`` reads :func:`launch_defaults`;
* the documented defaults in ``config/<node>.yaml``: checked against the
  models by ``test/test_settings.py``, which fails when they drift.

Plain Python (pydantic only): importable without rclpy.
"""
from __future__ import annotations

import argparse
from dataclasses import dataclass
from typing import Any, Callable, ClassVar, Iterable, Mapping, NamedTuple, Optional, Sequence

from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator, model_validator

from slm_agent.profiles import DEFAULT_PROFILE

__all__ = [
    "AgentSettings", "BenchmarkSettings", "Declared", "GoldAgentSettings", "NODE_SETTINGS",
    "NodeSettings", "PACKAGE_TOPICS", "Problem", "RecorderSettings", "SettingsError", "TelemetrySettings",
    "add_cli_arguments", "from_texts", "launch_defaults", "params_yaml", "run_argument_name", "run_settings",
    "setting",
]

#: the package's topics: what a run records (recorder_node's default and the
#: launch file's ``ros2 bag record --topics``)
PACKAGE_TOPICS: tuple[str, ...] = (
    "/telemetry/power", "/telemetry/thermal", "/telemetry/system", "/diagnostics",
    "/agent/metrics", "/agent/tool_calls", "/benchmark/scenarios", "/benchmark/results",
)

#: the bundled default model profile, named once (:data:`slm_agent.profiles.DEFAULT_PROFILE`)
DEFAULT_MODEL = DEFAULT_PROFILE


_NOTHING = object()


class Problem(NamedTuple):
    """One bad setting: its name ("" for a rule across settings), what it
    must be, and the value given (``_NOTHING`` when none was)."""

    name: str
    text: str
    got: Any = _NOTHING

    def __str__(self) -> str:
        if not self.name:
            return self.text
        return f"{self.name}={self.got!r}: {self.text}" if self.got is not _NOTHING else f"{self.name}: {self.text}"

    def for_flag(self, flag: str) -> str:
        """The same problem as a line about a command-line flag."""
        return f"{flag}: {self.text}" + (f" (got {self.got!r})" if self.got is not _NOTHING else "")


class SettingsError(ValueError):
    """Invalid setting values; the message names every problem (``problems``:
    one text each, ``items``: the same as :class:`Problem`)."""

    def __init__(self, node: str, problems: "Sequence[Problem | str]") -> None:
        self.node = node
        self.items = [p if isinstance(p, Problem) else Problem("", str(p)) for p in problems]
        self.problems = [str(p) for p in self.items]
        super().__init__(f"{node}: " + "; ".join(self.problems))


def setting(default: Any, description: str, *, ge: Optional[float] = None, le: Optional[float] = None,
            gt: Optional[float] = None, choices: Optional[str] = None, live: bool = False,
            cli: Optional[str] = None, unit: str = "", run: bool = False) -> Any:
    """A field with what ROS descriptors, CLI help and the YAML comment need.

    ``live``: may change while the node runs (else read at configure/start).
    ``choices``: the name of a registry (:func:`choices_of`), looked up
    lazily so this module imports fast.  ``cli``: the flag of ``slm-agent``
    if it differs from ``--<name-with-dashes>``.  ``run``: a setting of a
    benchmark run, the one mark from which both ``slm-agent bench``'s flags
    and ``bench.launch.py``'s launch arguments are generated
    (:func:`run_settings`), so the two routes cannot drift apart.
    """
    extra = {"x-live": live, "x-choices": choices, "x-cli": cli, "x-unit": unit, "x-run": run}
    return Field(default, description=description, ge=ge, le=le, gt=gt, json_schema_extra=extra)


@dataclass(frozen=True)
class Declared:
    """One setting as the adapters see it."""

    name: str
    type: type
    default: Any
    description: str
    ge: Optional[float]
    le: Optional[float]
    gt: Optional[float]
    choices: Optional[tuple[str, ...]]
    live: bool
    cli: Optional[str]
    unit: str
    run: bool = False

    @property
    def flag(self) -> str:
        return self.cli or "--" + self.name.replace("_", "-")

    def constraint_text(self) -> str:
        parts = []
        if self.choices:
            parts.append("one of: " + ", ".join(self.choices))
        if self.gt is not None:
            parts.append(f"> {self.gt:g}")
        if self.ge is not None:
            parts.append(f">= {self.ge:g}")
        if self.le is not None:
            parts.append(f"<= {self.le:g}")
        return ", ".join(parts)

    def help(self) -> str:
        unit = f" [{self.unit}]" if self.unit else ""
        cons = self.constraint_text()
        return f"{self.description}{unit}" + (f" ({cons})" if cons else "") + f"; default {self.default!r}"


class NodeSettings(BaseModel):
    """Base of every node's settings: frozen, unknown names refused."""

    model_config = ConfigDict(extra="forbid", frozen=True, strict=True)

    #: the node's ROS name (config/<NODE>.yaml top-level key)
    NODE: ClassVar[str] = ""

    @classmethod
    def declarations(cls) -> list[Declared]:
        out = []
        for name, f in cls.model_fields.items():
            extra = f.json_schema_extra if isinstance(f.json_schema_extra, dict) else {}
            meta = {type(m).__name__: m for m in f.metadata}
            choices = choices_of(extra["x-choices"]) if extra.get("x-choices") else None
            out.append(Declared(
                name=name, type=type(f.default), default=f.default, description=f.description or "",
                ge=getattr(meta.get("Ge"), "ge", None), le=getattr(meta.get("Le"), "le", None),
                gt=getattr(meta.get("Gt"), "gt", None),
                choices=tuple(choices) if choices is not None else None, live=bool(extra.get("x-live")),
                cli=extra.get("x-cli"), unit=extra.get("x-unit") or "", run=bool(extra.get("x-run"))))
        return out

    @classmethod
    def declared(cls, name: str) -> Declared:
        return next(d for d in cls.declarations() if d.name == name)

    @classmethod
    def defaults(cls) -> dict[str, Any]:
        return {name: f.default for name, f in cls.model_fields.items()}

    @classmethod
    def parse(cls, values: dict[str, Any]) -> "NodeSettings":
        """Validate ``values`` (ROS parameter values, CLI values); raises
        :class:`SettingsError` naming every bad setting and what it wants.

        A registry value is matched as the agent reads goals: surrounding
        blanks and case do not matter (`` ReAct `` is ``react``)."""
        problems: list[Problem] = []
        values = dict(values)
        for d in cls.declarations():
            if d.choices and d.name in values and values[d.name] not in d.choices:
                v = values[d.name]
                match = [c for c in d.choices if isinstance(v, str) and c.lower() == v.strip().lower()]
                if match:
                    values[d.name] = match[0]
                else:
                    problems.append(Problem(d.name, f"must be one of {', '.join(d.choices)}", v))
        try:
            obj = cls.model_validate(_coerce_ints(cls, values))
        except ValidationError as exc:
            obj = None
            for err in exc.errors():
                where = ".".join(str(x) for x in err["loc"])
                if not where:  # a rule across settings (model_validator)
                    problems.append(Problem("", err["msg"].removeprefix("Value error, ")))
                    continue
                if any(p.name == where for p in problems):
                    continue
                problems.append(Problem(where, _wants(cls, where, err), values[where] if where in values
                                        else _NOTHING))
        if problems:  # in declaration order, rules across settings last
            order = {name: i for i, name in enumerate(cls.model_fields)}
            problems.sort(key=lambda p: order.get(p.name, len(order)))
            raise SettingsError(cls.NODE, problems)
        return obj


def _coerce_ints(cls: type[NodeSettings], values: dict[str, Any]) -> dict[str, Any]:
    """ROS and YAML give ``300`` for a float setting: accept an int there (only)."""
    out = dict(values)
    for name, f in cls.model_fields.items():
        if isinstance(f.default, float) and isinstance(out.get(name), int) and not isinstance(out[name], bool):
            out[name] = float(out[name])
    return out


def _wants(cls: type[NodeSettings], name: str, err: dict[str, Any]) -> str:
    if err.get("type") == "value_error":  # a field_validator's own words
        return str(err["msg"]).removeprefix("Value error, ")
    try:
        d = cls.declared(name)
    except StopIteration:
        return err["msg"]
    kind = {bool: "true or false", int: "an integer", float: "a number", str: "a string"}.get(d.type, d.type.__name__)
    cons = d.constraint_text()
    return f"must be {kind}" + (f" ({cons})" if cons else "")


def choices_of(kind: str) -> list[str]:
    """The allowed values of a ``choices=`` registry, from the module that
    owns it (the plain-Python agent, telemetry and bench packages)."""
    if kind == "strategy":
        from slm_agent.agent.strategies import STRATEGIES
        return sorted(STRATEGIES)
    if kind == "serialization":
        from slm_agent.agent.serializers import SERIALIZERS
        return sorted(SERIALIZERS)
    if kind == "chat_format":
        from slm_agent.agent.strategies import CHAT_FORMATS
        return ["", *CHAT_FORMATS]
    if kind == "switch":
        from slm_agent.agent.goal_options import SWITCH_VALUES
        return list(SWITCH_VALUES)
    if kind == "confidence_signal":
        from slm_agent.agent.cascade import SIGNALS
        return list(SIGNALS)
    if kind == "reader":
        from slm_agent.telemetry import valid_reader_names
        return list(valid_reader_names())
    if kind == "suite":
        from slm_agent.bench.suite import suite_names
        return suite_names()
    if kind == "tau2_user":
        from slm_agent.bench.tau2.data import USER_MODES
        return list(USER_MODES)
    if kind == "bench_protocol":
        from slm_agent.bench.suite import BENCH_PROTOCOLS
        return list(BENCH_PROTOCOLS)
    raise KeyError(f"no registry named {kind!r}")


# ------------------------------------------------------------------ nodes

class RecordedSettings(NodeSettings):
    """Settings of a node whose topics a recorder records: wait for it before the first message,
    so the bag has every case (discovery between two processes can take seconds on a loaded
    machine; a message published before the match is never delivered to a VOLATILE reader)."""

    min_subscribers: int = setting(0, "before its first case (benchmark: ~/scenarios, ~/results) or goal (agent: "
                                      "its metrics and tool-call topics), wait until each of those topics has "
                                      "this many matched subscriptions (a recorder), at most subscriber_wait_s; "
                                      "slm-agent bench and the launch file set 1 when they record", ge=0)
    subscriber_wait_s: float = setting(15.0, "how long to wait for min_subscribers", ge=0.0, unit="s")


class AgentSettings(RecordedSettings):
    """``agent_node``: everything but ``autostart`` is read at configure."""

    NODE: ClassVar[str] = "agent"

    model: str = setting(DEFAULT_MODEL, "model profile: a name under config/models/ or a YAML path", run=True)
    tool_set: str = setting("", "tool set: a name under config/tool_sets/ (e.g. demo_robot) or a YAML "
                                "path; empty = no tools of its own (goals bring theirs)")
    strategy: str = setting("direct", "default prompt strategy", choices="strategy")
    serialization: str = setting("json", "default tool-spec serialization (json, toon, natural: the agent's "
                                         "reply rules; native: the model's own template and call syntax; "
                                         "bfcl: BFCL's prompt mode)", choices="serialization")
    chat_format: str = setting("", "how prompts are sent: raw (one completion prompt) or chat (messages "
                                   "through the chat template); empty = from the profile (raw if its "
                                   "chat.mode is raw, else chat)", choices="chat_format")
    constrained: bool = setting(True, "JSON-schema constrained decoding of every step's output")
    max_steps: int = setting(4, "default LLM calls per goal", ge=1, le=64)
    max_tokens: int = setting(0, "generated tokens per LLM call; 0 = the profile's sampling.max_tokens",
                              ge=0, le=1_000_000)
    autostart: bool = setting(False, "configure and activate at startup (exit with status 2 if that fails)",
                              live=True)
    telemetry_topic: str = setting("/telemetry/power", "PowerState topic integrated for energy_j and power_mode")
    feedback_batch: int = setting(4, "text deltas per KIND_TEXT feedback message after the first of each "
                                     "LLM call", ge=1, le=10_000)
    feedback_max_delay_s: float = setting(0.1, "longest a text delta waits in the feedback batch",
                                          ge=0.0, le=10.0, unit="s")
    metrics_energy_wait_s: float = setting(1.0, "how long a ~/metrics message waits for the power sample "
                                                "after its call's end before publishing energy_j as NaN",
                                           ge=0.0, le=60.0, unit="s")
    energy_max_gap_s: float = setting(1.0, "power samples further apart than this are not bridged: a call "
                                           "spanning such a gap gets energy_j NaN", ge=0.01, le=60.0, unit="s")
    max_queued_goals: int = setting(4, "goals accepted at once (running + waiting); more are rejected",
                                    ge=1, le=64)
    max_parallel_goals: int = setting(1, "goals run at once (the rest wait in FIFO order); > 1 for a server "
                                         "backend (openai_http) or llama_cpp (that many contexts or sequences, "
                                         "backend.llama_cpp.parallel); refused at configure for tensorrt_llm and "
                                         "GPU-offloaded llama_cpp; at most max_queued_goals", ge=1, le=64)

    fallback_model: str = setting("", "cascade (issue 26): a second model profile (a name under config/models/ or a "
                                      "YAML path, any backend) loaded next to model at configure; a step whose "
                                      "reply fires a trigger of escalate_on is asked again of it with the same "
                                      "conversation, then the goal goes on with model; empty = off", run=True)
    escalate_on: str = setting("undecodable,invalid,tool_error", "cascade: comma-separated triggers that send a "
                               "step to fallback_model: undecodable (the reply decodes as neither calls nor an "
                               "answer), invalid (a call fails its tool's schema or the safety envelope), "
                               "tool_error (a tool answered FAILED: the next step goes to the fallback), "
                               "low_confidence (escalate_signal below escalate_threshold)", run=True)
    escalate_signal: str = setting("min_logprob", "cascade: the confidence low_confidence reads: min_logprob (lowest "
                                   "token log-probability of the reply) or top_margin (p1 - p2 at its first "
                                   "token); min_logprob measured: it separates wrong from right cases (ROC area "
                                   "0.70, Mann-Whitney p = 0.0006; top_margin 0.55, p = 0.41) for "
                                   "Qwen2.5-Coder-0.5B in bfcl on the study's held-out set (results/cascade-*)",
                                   choices="confidence_signal", run=True)
    escalate_threshold: float = setting(-3.3, "cascade: low_confidence fires below this value of escalate_signal "
                                        "(min_logprob: a natural log, <= 0; top_margin: 0-1); -3.3 measured for "
                                        "Qwen2.5-Coder-0.5B in bfcl under a budget of 10 % of cases escalated "
                                        "(measure your primary: benchmarks/escalation_roc.py --max-share)",
                                        ge=-100.0, le=1.0, run=True)

    @field_validator("escalate_on")
    @classmethod
    def _triggers(cls, v: str) -> str:
        from slm_agent.agent.cascade import parse_triggers

        return ",".join(parse_triggers(v))   # ValueError names the unknown one and the valid ones

    @model_validator(mode="after")
    def _parallel_within_queue(self) -> "AgentSettings":
        if self.max_parallel_goals > self.max_queued_goals:
            raise ValueError(f"max_parallel_goals ({self.max_parallel_goals}) must be <= max_queued_goals "
                             f"({self.max_queued_goals})")
        return self


def agent_for_concurrency(concurrency: int, max_queued_goals: int) -> dict[str, int]:
    """Agent settings for a benchmark keeping ``concurrency`` cases in flight: as many goals run
    at once, and at least as many are admitted ({} for 1).  One rule for ``slm-agent bench``
    and the launch file."""
    if concurrency <= 1:
        return {}
    return {"max_parallel_goals": concurrency, "max_queued_goals": max(concurrency, max_queued_goals)}


class TelemetrySettings(NodeSettings):
    """``telemetry_node``: the temperature thresholds may change live."""

    NODE: ClassVar[str] = "telemetry"

    reader: str = setting("auto", "telemetry source (auto = jtop, jetson_sysfs, nvml, linux, first that works)",
                          choices="reader", cli="--telemetry-reader", run=True)
    root: str = setting("/", "filesystem root the readers and nvpmodel.conf are read under "
                             "(tests use a fixture tree)")
    rate_hz: float = setting(2.0, "publish rate of ~/system, ~/thermal and /diagnostics", ge=0.01, le=100.0,
                             unit="Hz")
    power_rate_hz: float = setting(10.0, "publish rate of ~/power and energy integration samples (rate_hz "
                                         "when the machine has no power sensor: nothing to integrate)",
                                   ge=0.1, le=1000.0, unit="Hz")
    temp_warn_c: float = setting(85.0, "diagnostics WARN when any thermal zone reaches this; < temp_error_c",
                                 ge=-40.0, le=200.0, live=True, unit="degC")
    temp_error_c: float = setting(95.0, "diagnostics ERROR when any thermal zone reaches this; > temp_warn_c",
                                  ge=-40.0, le=200.0, live=True, unit="degC")
    energy_horizon_s: float = setting(3600.0, "how far back energy_between() can integrate", ge=1.0,
                                      le=86400.0, unit="s")
    power_mode_poll_s: float = setting(5.0, "re-query the current power mode (nvpmodel -q) this often, so "
                                            "~/power reports a mode changed outside this node; 0 disables",
                                       ge=0.0, le=3600.0, unit="s")

    @model_validator(mode="after")
    def _thresholds(self) -> "TelemetrySettings":
        if not self.temp_warn_c < self.temp_error_c:
            raise ValueError(f"temp_warn_c ({self.temp_warn_c}) must be < temp_error_c ({self.temp_error_c})")
        return self


class BenchmarkSettings(RecordedSettings):
    """``benchmark_node``: what a run measures (written to run.json)."""

    NODE: ClassVar[str] = "benchmark"

    suite: str = setting("bfcl", "benchmark suite", choices="suite", run=True)
    categories: str = setting("", "comma-separated suite categories (BFCL aliases simple, java, js accepted); "
                                  "empty = the suite's default categories (BFCL: simple_python, tau2: mock); "
                                  "ignored when ids is set", run=True)
    ids: str = setting("", "comma-separated case ids to run (empty: all cases of the categories)", run=True)
    limit: int = setting(0, "cases per category, 0 = all", ge=0, run=True)
    strategy: str = setting("direct", "prompt strategy sent in each goal", choices="strategy", run=True)
    serialization: str = setting("json", "tool-spec serialization sent in each goal (json, toon, natural: "
                                         "the agent's reply rules; native: the model's own template and "
                                         "call syntax; bfcl: BFCL's prompt mode)", choices="serialization", run=True)
    chat_format: str = setting("", "per-goal override sent to the agent: raw or chat prompts; empty = the "
                                   "agent's own setting", choices="chat_format", run=True)
    constrained: str = setting("", "per-goal override sent to the agent: JSON-schema constrained decoding on "
                                   "or off; empty = the agent's own setting", choices="switch", run=True)
    max_steps: int = setting(0, "agent loop step limit per goal, 0 = the agent's default (protocol robot "
                                "only: the suite's protocol fixes its own)", ge=0, le=64, run=True)
    protocol: str = setting("suite", "agent loop rules sent in each goal: suite = the suite's own protocol "
                                     "(BFCL: bfcl-eval's inference loop, scores comparable with BFCL), robot = "
                                     "the agent's robot-facing rules (retries, stop on repeat; NOT comparable)",
                            choices="bench_protocol", run=True)
    model: str = setting("", "model profile name (label in results; run.json lists the profile)")
    power_mode: str = setting("", "power-mode label; empty = from the latest power_topic message", run=True)
    output_dir: str = setting("runs/latest", "directory for results.jsonl and run.json (resumed if it exists)", run=True)
    run_id: str = setting("", "run label; empty = taken from run.json on resume, else generated", run=True)
    case_timeout_s: float = setting(300.0, "per-case deadline over all its goals; the case fails on timeout",
                                    gt=0.0, unit="s", cli="--case-timeout", run=True)
    agent_action: str = setting("/agent/run_task", "RunTask action of the agent")
    agent_wait_s: float = setting(300.0, "how long to wait for the agent's action server at start",
                                  gt=0.0, unit="s", cli="--agent-wait", run=True)
    tool_namespace: str = setting("", "namespace of the InvokeTool services (multi-turn BFCL functions, tau2 "
                                      "domain tools) hosted by this node; empty = /<suite>")
    tool_timeout_s: float = setting(10.0, "per-call timeout given to the agent for each InvokeTool service",
                                    gt=0.0, unit="s")
    power_topic: str = setting("/telemetry/power", "PowerState topic integrated for energy")
    energy_max_gap_s: float = setting(1.0, "power samples further apart than this are not bridged: a case or call "
                                           "spanning such a gap gets energy_j NaN (the report reads it from "
                                           "run.json)", ge=0.01, le=60.0, unit="s")
    seed: int = setting(0, "seed of Python's RNG in this process (recorded in run.json); tau2: the simulated "
                           "user's seed is seed + trial", run=True)
    power_wait_s: float = setting(5.0, "if power_topic has a publisher, wait this long at start for its "
                                       "first sample", ge=0.0, unit="s")
    allow_different_run: bool = setting(False, "resume into an output_dir whose run.json has another case "
                                               "set (else refused)", run=True)
    concurrency: int = setting(1, "cases in flight at once: a server backend with parallel slots, or a local "
                                  "GGUF (N llama.cpp contexts, backend.llama_cpp.parallel); 1 = one case after the "
                                  "other, what the seed's table measures; > 1: case energy_j is NaN (not "
                                  "attributable), refused for TensorRT-LLM in-process, GPU-offloaded llama.cpp and "
                                  "cases whose tools this node hosts", ge=1, le=64, run=True)
    tau2_user: str = setting("auto", "tau2: who plays the user: auto = solo where tau2 allows it (mock, telecom), "
                                     "else simulated; solo = no user, the agent works from the task's ticket; "
                                     "simulated = tau2's UserSimulator on tau2_user_model; scripted = the task's "
                                     "instructions as the only user message (harness checks, no LLM)",
                             choices="tau2_user", run=True)
    tau2_user_model: str = setting("", "tau2: model profile (name or YAML path) of the simulated user, run in "
                                       "the benchmark node's process; an openai_http profile calls an "
                                       "OpenAI-compatible endpoint; empty = the run's model", run=True)
    tau2_judge_model: str = setting("", "tau2: model profile (name or YAML path) of the LLM judge of NL "
                                        "assertions (tau2's own NLAssertionsEvaluator, run in the benchmark "
                                        "node's process); empty = no judge: NL assertions are reported 'not "
                                        "evaluated' and a task whose reward basis has them cannot pass", run=True)
    tau2_trials: int = setting(1, "tau2: trials per task (case ids <domain>/<task>@<trial>); the report gives "
                                  "pass^k over them", ge=1, run=True)
    tau2_max_user_turns: int = setting(30, "tau2: user messages per case at most (then the case ends as "
                                           "max_steps)", ge=1, run=True)
    suite_options: str = setting("", "the suite's own settings that are not benchmark settings, as comma-separated "
                                     "name=value pairs, checked against the suite's settings model "
                                     "(Suite.settings_model)", run=True)

    @field_validator("categories", "ids")
    @classmethod
    def _comma_list(cls, v: str) -> str:
        return ",".join(x.strip() for x in v.split(",") if x.strip())

    @field_validator("output_dir")
    @classmethod
    def _not_blank(cls, v: str) -> str:
        if not v.strip():
            raise ValueError("must not be empty")
        return v


class RecorderSettings(NodeSettings):
    """``recorder_node`` (the pip route's stand-in for ``ros2 bag record``)."""

    NODE: ClassVar[str] = "recorder"

    topics: str = setting(",".join(PACKAGE_TOPICS), "comma-separated topics to record")
    output: str = setting("bag", "bag directory to create (must not exist)")
    flush_period_s: float = setting(1.0, "write buffered messages to the file this often; bounds the loss "
                                         "on kill -9", gt=0.0, unit="s")
    discovery_period_s: float = setting(0.5, "how often to look for the type of topics not yet subscribed",
                                        gt=0.0, unit="s")
    qos_depth: int = setting(200, "subscription queue depth (reliable, volatile)", ge=1)


class GoldAgentSettings(RecordedSettings):
    """``gold_agent_node``: answers every goal with the suite's gold calls."""

    NODE: ClassVar[str] = "gold_agent"

    suite: str = setting("bfcl", "suite whose gold answers are given (Suite.gold_answer); slm-agent bench "
                                 "sets the run's suite", choices="suite")
    action_name: str = setting("/agent/run_task", "RunTask action served")
    metrics_topic: str = setting("/agent/metrics", "InferenceMetrics topic")
    tool_calls_topic: str = setting("/agent/tool_calls", "ToolCallRecord topic")
    corrupt: bool = setting(False, "change one argument value of the first gold call of every case (the "
                                   "checker must fail)", cli="--corrupt-gold", run=True)
    corrupt_ids: str = setting("", "comma-separated case ids to corrupt (in addition to corrupt=true for all)")
    delay_s: float = setting(0.0, "sleep this long per answer, inside the reported LLM-call window (tests of "
                                  "timing and energy)", ge=0.0, unit="s", cli="--gold-delay", run=True)
    tool_timeout_s: float = setting(10.0, "InvokeTool call timeout when the goal's ToolSpec has none",
                                    gt=0.0, unit="s")


def settings_subset(cls: type[NodeSettings], names: Sequence[str], model_name: str) -> type[NodeSettings]:
    """A model of the settings ``names`` of ``cls``, with their declarations (type, default,
    bounds, description: the same field infos): a suite's own settings that are node parameters of the benchmark
    (``Tau2Suite.settings_model``), declared once here and claimed by the suite there."""
    from pydantic import create_model

    return create_model(model_name, __base__=NodeSettings,  # type: ignore[call-overload]
                        **{n: (cls.model_fields[n].annotation, cls.model_fields[n]) for n in names})


#: every node's settings by ROS node name
NODE_SETTINGS: dict[str, type[NodeSettings]] = {
    cls.NODE: cls for cls in (AgentSettings, TelemetrySettings, BenchmarkSettings, RecorderSettings,
                              GoldAgentSettings)
}

#: the nodes whose settings name their run arguments without a prefix (the agent's model
#: and the benchmark's settings: ``model:=``, ``limit:=``); others are ``<node>_<name>``
_UNPREFIXED = (AgentSettings, BenchmarkSettings)


def run_settings(nodes: Optional[Sequence[type[NodeSettings]]] = None) -> dict[type[NodeSettings], tuple[str, ...]]:
    """The settings marked ``run=True`` (the settings of one benchmark run), by node class in
    :data:`NODE_SETTINGS` order; ``nodes`` keeps only those classes.  ``slm-agent bench`` makes
    a flag of each, ``bench.launch.py`` a launch argument of each one of the nodes it starts."""
    out = {}
    for cls in NODE_SETTINGS.values():
        if nodes is not None and cls not in nodes:
            continue
        names = tuple(d.name for d in cls.declarations() if d.run)
        if names:
            out[cls] = names
    return out


def run_argument_name(cls: type[NodeSettings], name: str) -> str:
    """A run setting's launch-argument name: its own name for the agent and the benchmark
    (``model``, ``limit``), ``<node>_<name>`` for another node's (``telemetry_reader``)."""
    return name if cls in _UNPREFIXED else f"{cls.NODE}_{name}"


# -------------------------------------------------------------------- CLI

def _cli_type(d: Declared, cls: type[NodeSettings], validate: bool) -> Callable[[str], Any]:
    """argparse ``type=``: parse (and with ``validate``, check) one value, so a
    bad one is an argparse error (exit 2 naming the flag) before anything starts."""
    def convert(text: str) -> Any:
        try:
            value: Any = {int: int, float: float, str: str}[d.type](text)
        except (KeyError, ValueError):
            raise argparse.ArgumentTypeError(f"{_wants(cls, d.name, {'msg': ''})} (got {text!r})") from None
        if not validate:
            return value
        try:
            return getattr(cls.parse({d.name: value}), d.name)
        except SettingsError as exc:
            mine = [p for p in exc.items if p.name == d.name] or exc.items
            raise argparse.ArgumentTypeError(f"{mine[0].text} (got {text!r})") from None
    convert.__name__ = d.type.__name__  # argparse names the type in its message
    return convert


def add_cli_arguments(parser: argparse.ArgumentParser, cls: type[NodeSettings], names: Sequence[str],
                      overrides: Optional[dict[str, Any]] = None, *, validate: bool = True) -> None:
    """Add ``--flag`` options for ``names`` of ``cls`` (dest = the setting's
    name); ``overrides`` changes a default for this command only (e.g. the
    CLI's ``model``).  ``validate=False``: argparse only converts the text
    (int, float); the caller validates every value at once with
    ``cls.parse`` and reports each bad one (:meth:`Problem.for_flag`)."""
    overrides = overrides or {}
    for name in names:
        d = cls.declared(name)
        default = overrides.get(name, d.default)
        text = d.help().replace("%", "%%")   # argparse %-formats help: "10 %" in a description is text
        if d.type is bool:
            parser.add_argument(d.flag, dest=name, action=argparse.BooleanOptionalAction, default=default,
                                help=text)
        else:
            parser.add_argument(d.flag, dest=name, type=_cli_type(d, cls, validate), default=default,
                                help=text.replace(f"default {d.default!r}", f"default {default!r}"),
                                metavar=d.flag.lstrip("-").replace("-", "_").upper())


def flag_of(cls: type[NodeSettings], name: str) -> str:
    """The ``slm-agent`` flag of setting ``name`` of ``cls``."""
    return cls.declared(name).flag


# ----------------------------------------------------------------- launch

def launch_defaults(cls: type[NodeSettings], names: Sequence[str],
                    overrides: Optional[dict[str, Any]] = None) -> list[tuple[str, str, str]]:
    """(name, default as launch text, description) for DeclareLaunchArgument."""
    overrides = overrides or {}
    out = []
    for name in names:
        d = cls.declared(name)
        v = overrides.get(name, d.default)
        text = ("true" if v else "false") if isinstance(v, bool) else str(v)
        out.append((name, text, d.help()))
    return out


_TRUE, _FALSE = ("true", "1", "yes", "on"), ("false", "0", "no", "off")


def from_texts(cls: type[NodeSettings], texts: Mapping[str, str]) -> dict[str, Any]:
    """Launch-argument texts (``limit:=5``, ``record:=true``) as the declared
    types, validated: ``{name: value}`` for ``texts``' names, or a
    :class:`SettingsError` naming every bad one.  ``"600"`` for a float
    setting is 600.0 and ``"15"`` for a string setting stays ``"15"``
    (the YAML rules of a launch substitution would make both ints)."""
    values: dict[str, Any] = {}
    problems: list[Problem] = []
    for name, text in texts.items():
        d = cls.declared(name)
        try:
            if d.type is bool:
                if text.strip().lower() not in _TRUE + _FALSE:
                    raise ValueError(text)
                values[name] = text.strip().lower() in _TRUE
            else:
                values[name] = d.type(text.strip() if d.type in (int, float) else text)
        except ValueError:
            problems.append(Problem(name, _wants(cls, name, {"msg": ""}), text))
    try:
        parsed = cls.parse(values)
    except SettingsError as exc:
        problems += exc.items
    if problems:
        raise SettingsError(cls.NODE, problems)
    return {name: getattr(parsed, name) for name in values}


# ---------------------------------------------------------------- params files

def params_yaml(sections: Mapping[type[NodeSettings], Optional[Mapping[str, Any]]], *,
                comments: bool = True, header: str = "") -> str:
    """A ROS 2 parameters file (``--ros-args --params-file``): one
    ``<node>: ros__parameters:`` section per class with ``values`` (None: the
    declared defaults), each value preceded by its declaration as a comment.
    Values are validated first (:class:`SettingsError`)."""
    import yaml  # PyYAML: a dependency of the profiles and tool sets

    lines = [f"# {line}".rstrip() for line in header.splitlines()]
    for cls, values in sections.items():
        values = cls.defaults() if values is None else dict(values)
        parsed = cls.parse({**cls.defaults(), **values})
        lines += ([""] if lines else []) + [f"{cls.NODE}:", "  ros__parameters:"]
        for d in cls.declarations():
            if d.name not in values:
                continue
            if comments:
                cons = d.constraint_text()
                text = d.description + (f" [{d.unit}]" if d.unit else "") + (f" ({cons})" if cons else "")
                lines += [f"    # {t}" for t in _wrap(text, 74)]
            dumped = yaml.safe_dump({d.name: getattr(parsed, d.name)}, default_flow_style=False, width=10**6)
            lines.append("    " + dumped.strip())
    return "\n".join(lines) + "\n"


def _wrap(text: str, width: int) -> list[str]:
    import textwrap

    return textwrap.wrap(text, width) or [""]
