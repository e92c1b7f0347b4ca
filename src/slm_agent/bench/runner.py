"""Benchmark logic shared by the benchmark node, the gold agent and the CLI (no ROS imports).

Suite-neutral: what a suite does (cases, turns, tools, scoring) is behind
:class:`slm_agent.bench.suite.Suite`.

* which cases run (:func:`select_scenarios`: the suite's categories, ids, a
  limit *per category*, the suite's stable order);
* task ids ``<case_id>#<turn>`` (:func:`task_id`/:func:`parse_task_id`);
* pieces suites use to read the agent's answer: calls of the first response
  (:func:`first_response_calls`), calls grouped by agent-loop ``step``
  (:func:`group_steps`), the model's own text (:func:`raw_model_output`), the
  conversation to continue from (:func:`carry_conversation`);
* the JSONL record of a case (:func:`case_record`), progress/ETA and the
  end-of-run summary.

Everything here works on plain dicts (``slm_agent.bench.results.msg_to_dict``
of the action result), so it is tested without DDS.
"""
from __future__ import annotations

import math
import platform
import socket
import time
from dataclasses import asdict
from typing import TYPE_CHECKING, Any, Iterable, Optional, Sequence

from slm_agent.bench.scenario import CaseResult, Scenario

if TYPE_CHECKING:
    from slm_agent.settings import BenchmarkSettings

from slm_agent.bench.suite import INVOKE_TOOL_TYPE, get_suite  # noqa: F401 - INVOKE_TOOL_TYPE re-exported

TASK_SEP = "#"


# --------------------------------------------------------------------------- config

def split_list(text: Any) -> list[str]:
    """``"a, b,,c"`` or ``["a", "b"]`` -> ``["a", "b", "c"]``."""
    if text is None:
        return []
    if isinstance(text, (list, tuple)):
        items = [str(t) for t in text]
    else:
        items = str(text).split(",")
    return [t.strip() for t in items if t.strip()]


class BenchConfig:
    """What a run measures, as run.json records it (``"config"``): the
    benchmark node's settings (:class:`slm_agent.settings.BenchmarkSettings`,
    where each is declared once with its default, bounds and registry) with
    ``categories`` and ``ids`` as lists, and a ``run_id`` that a resume may
    take from run.json.

    ``BenchConfig(**values)`` validates (``slm_agent.settings.SettingsError``
    names every bad value); ``BenchConfig(settings)`` wraps validated ones.
    Registry values come back normalized (`` ReAct `` -> ``react``).
    """

    #: fields that must match when a run directory is resumed (slm_agent.bench.rundir);
    #: the case set (categories, ids, limit) must match unless explicitly allowed.
    #: ``suite_options`` holds any suite's own settings that are not benchmark settings, so a
    #: suite added later (a plug-in) is covered without a name here
    IDENTITY = ("suite", "model", "strategy", "serialization", "chat_format", "constrained", "max_steps",
                "protocol", "tau2_user", "tau2_user_model", "tau2_judge_model", "tau2_trials", "suite_options")

    def __init__(self, settings: Optional["BenchmarkSettings"] = None, **values: Any) -> None:
        from slm_agent.settings import BenchmarkSettings

        for key in ("categories", "ids"):
            if isinstance(values.get(key), (list, tuple)):
                values[key] = ",".join(split_list(values[key]))
        if settings is None or values:
            base = settings.model_dump() if settings is not None else {}
            settings = BenchmarkSettings.parse({**base, **values})  # type: ignore[assignment]
        self.settings: BenchmarkSettings = settings  # type: ignore[assignment]
        self.run_id: str = settings.run_id

    def __getattr__(self, name: str) -> Any:
        """Every other setting, as declared (``cfg.strategy``, ``cfg.case_timeout_s``, ...)."""
        settings = self.__dict__.get("settings")
        if settings is None or name.startswith("_"):
            raise AttributeError(name)
        return getattr(settings, name)

    @property
    def categories(self) -> list[str]:
        """The categories given, else (no ids either) the suite's default ones
        (:meth:`~slm_agent.bench.suite.Suite.default_categories`): what run.json records."""
        cats = split_list(self.settings.categories)
        if cats or self.ids:
            return cats
        try:
            return list(get_suite(self.settings.suite).default_categories())
        except ValueError:   # an unknown suite is refused by its declaration
            return []

    @property
    def ids(self) -> list[str]:
        return split_list(self.settings.ids)

    def to_dict(self) -> dict[str, Any]:
        return {**self.settings.model_dump(), "categories": self.categories, "ids": self.ids,
                "run_id": self.run_id}


def validate_config(cfg: BenchConfig) -> list[tuple[str, str]]:
    """What the declaration cannot check alone, ``(field, one-line message)``
    each (empty: fine): the categories exist in the suite; ``max_steps`` is 0
    when the protocol in force fixes its own step limit.  The values
    themselves (registries such as strategy and serialization, bounds) were
    checked when ``cfg`` was built; case ids are checked when the cases are
    selected (:func:`select_scenarios` raises ``KeyError``).
    """
    problems: list[tuple[str, str]] = []
    if not cfg.ids:
        if not cfg.categories:
            problems.append(("categories", "no category given"))
        else:
            try:
                suite = get_suite(cfg.suite)
            except ValueError:
                suite = None  # the suite itself is refused by its declaration (registry choices)
            if suite is not None:
                problems.extend(("categories", text) for text in suite.category_problems(cfg.categories))
    if cfg.max_steps:
        from slm_agent.agent.protocol import get_rules
        from slm_agent.bench.suite import loop_protocol

        try:
            rules = get_rules(loop_protocol(get_suite(cfg.suite), cfg.protocol))
        except ValueError:
            rules = None  # an unknown suite or protocol is refused by its declaration
        if rules is not None and rules.fixed_steps:
            problems.append(("max_steps", f"must be 0 with protocol {cfg.protocol} ({rules.name}: "
                                          f"{rules.max_steps} LLM calls per turn at most, as BFCL); "
                                          "use protocol robot to set a step limit"))
    return problems


def concurrency_problem(cfg: BenchConfig, suite: Any, scenarios: Sequence[Any]) -> str:
    """Why ``cfg.concurrency`` cannot run these cases (one line), or "".  Cases that serve
    tools through the benchmark's one tool host (BFCL multi-turn, tau2) need it alone."""
    if cfg.concurrency <= 1:
        return ""
    hosted = sorted({sc.category for sc in scenarios if suite.hosts_tools(sc)})
    if not hosted:
        return ""
    return (f"{cfg.concurrency} cases at once cannot run {', '.join(hosted)}: their tools are served by the "
            "benchmark's one tool host (one case at a time); use concurrency 1 for these categories")


def protocol_info(cfg: BenchConfig, suite: Any) -> dict[str, Any]:
    """What run.json records about the loop rules the goals carried (``loop_protocol``)."""
    from slm_agent.agent.protocol import get_rules
    from slm_agent.bench.suite import comparable_with_suite, loop_protocol

    name = loop_protocol(suite, cfg.protocol)
    return {"setting": cfg.protocol, "rules": name, "suite_protocol": suite.protocol,
            "comparable_with_suite": comparable_with_suite(suite, name),
            "description": get_rules(name).description}


def task_id(case_id: str, turn: int) -> str:
    return f"{case_id}{TASK_SEP}{int(turn)}"


def parse_task_id(text: str) -> tuple[str, int]:
    """``multi_turn_base_3#2`` -> ``("multi_turn_base_3", 2)``; no ``#`` means turn 0."""
    case_id, sep, turn = text.rpartition(TASK_SEP)
    if not sep:
        return text, 0
    try:
        return case_id, int(turn)
    except ValueError:
        return text, 0


def select_scenarios(suite: str, categories: Sequence[str], ids: Sequence[str] = (),
                     limit: int = 0) -> list[Scenario]:
    """Cases of a run: ``limit`` per category (0 = all), in the suite's stable order
    (:meth:`slm_agent.bench.suite.Suite.select`); ``ValueError``/``KeyError`` for
    an unknown suite, category or id."""
    return get_suite(suite).select(categories, ids, limit)


# --------------------------------------------------------------------------- goals

def chat_message(msg: dict[str, Any]) -> dict[str, Any]:
    """An OpenAI-style message dict as ChatMessage fields."""
    content = msg.get("content", "")
    if not isinstance(content, str):
        import json

        content = json.dumps(content, ensure_ascii=False)
    return {"role": str(msg.get("role", "user")), "content": content,
            "name": str(msg.get("name", "") or ""), "tool_call_id": str(msg.get("tool_call_id", "") or ""),
            "tool_calls": []}


def carry_conversation(sent: list[dict[str, Any]], transcript: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """The conversation to continue from after a turn: the agent's transcript,
    minus system messages it added itself (it adds them again next turn)."""
    if not transcript:
        return list(sent)
    own_system = [m for m in sent if m.get("role") == "system"]
    out = []
    for m in transcript:
        if m.get("role") == "system" and m not in own_system:
            continue
        out.append(m)
    return out


# --------------------------------------------------------------------------- scoring

def call_dict(record: dict[str, Any], turn: int = 0) -> dict[str, Any]:
    """A ToolCallRecord dict -> the checker's call shape (arguments kept as the raw JSON text)."""
    call = record.get("call", record)
    return {"name": call.get("name", ""), "arguments": call.get("arguments_json", "") or "{}",
            "step": int(call.get("step", 0)), "turn": turn, "id": call.get("id", "")}


def first_response_calls(records: Sequence[dict[str, Any]]) -> list[dict[str, Any]]:
    """Calls of the agent's first response (lowest step), in order."""
    calls = [call_dict(r) for r in records]
    if not calls:
        return []
    first = min(c["step"] for c in calls)
    return [c for c in calls if c["step"] == first]


def group_steps(records: Sequence[dict[str, Any]], turn: int = 0) -> list[list[dict[str, Any]]]:
    """Calls per agent-loop step, steps in order (responses without calls do
    not appear; BFCL drops empty steps anyway)."""
    by_step: dict[int, list[dict[str, Any]]] = {}
    for r in records:
        c = call_dict(r, turn)
        by_step.setdefault(c["step"], []).append(c)
    return [by_step[s] for s in sorted(by_step)]


def raw_model_output(transcript: Sequence[Any], sent: int = 0) -> str:
    """The model's own text of every step of one goal, for the record.

    ``transcript`` is the RunTask result's ``messages`` (messages or their
    dicts); the first ``sent`` are what the goal carried in (earlier turns),
    so they are skipped.  A case's calls are parsed from this text; keeping
    it lets a reader see *why* a case failed (wrong value, wrong format, no
    call at all).
    """
    def get(m: Any, key: str) -> Any:
        return m.get(key) if isinstance(m, dict) else getattr(m, key, None)

    return "\n".join(get(m, "content") for m in list(transcript)[sent:]
                     if get(m, "role") == "assistant" and get(m, "content"))


# --------------------------------------------------------------------------- records

#: goal settings whose value in force the agent reports in each RunTask result
REPORTED_GOAL_SETTINGS = ("chat_format", "constrained")


def reported_settings(results: Iterable[Any]) -> dict[str, str]:
    """What the agent says was in force over a case's goals (RunTask results, or
    anything with those attributes): ``{name: value}`` for each of
    :data:`REPORTED_GOAL_SETTINGS` it reported, values of different goals joined
    with ``,`` (empty when none reported, e.g. the gold agent)."""
    results = list(results)  # read once per setting
    out: dict[str, str] = {}
    for name in REPORTED_GOAL_SETTINGS:
        seen: list[str] = []
        for res in results:
            value = str(getattr(res, name, "") or "")
            if value and value not in seen:
                seen.append(value)
        if seen:
            out[name] = ",".join(seen)
    return out


def goal_settings_in_force(config: Any, reported: Optional[dict[str, str]] = None) -> dict[str, str]:
    """The record's ``chat_format``/``constrained``: what the agent reported in
    force, else the override the goals carried (``""`` = the agent's own,
    unreported)."""
    reported = reported or {}
    return {name: reported.get(name) or str(getattr(config, name, "") or "") for name in REPORTED_GOAL_SETTINGS}


def step_records(results: Iterable[Any]) -> list[dict[str, Any]]:
    """Per LLM step of a case's goals (RunTask results, or anything with those attributes),
    in order: ``{"turn", "step", "model", "trigger"}`` -- the model whose reply the step used
    and the cascade's trigger that sent it to the fallback ("" = not escalated; issue 26).
    Empty when the agent reports no steps (the gold agent; interfaces built before issue 26)."""
    out: list[dict[str, Any]] = []
    for turn, res in enumerate(results):
        models = list(getattr(res, "step_models", None) or [])
        triggers = list(getattr(res, "step_escalations", None) or getattr(res, "step_triggers", None) or [])
        for step, model in enumerate(models):
            out.append({"turn": turn, "step": step, "model": str(model),
                        "trigger": str(triggers[step]) if step < len(triggers) else ""})
    return out


def escalation_totals(steps: Sequence[dict[str, Any]]) -> dict[str, int]:
    """``llm_steps`` and ``steps_escalated`` of a case's :func:`step_records` (issue 26)."""
    return {"llm_steps": len(steps), "steps_escalated": sum(1 for s in steps if s.get("trigger"))}


def metrics_totals(metrics: Iterable[dict[str, Any]]) -> dict[str, float]:
    ms = list(metrics)
    return {
        "llm_calls": len(ms),
        "prompt_tokens": sum(int(m.get("prompt_tokens", 0) or 0) for m in ms),
        "decode_tokens": sum(int(m.get("decode_tokens", 0) or 0) for m in ms),
    }


def case_record(config: BenchConfig, scenario: Scenario, result: CaseResult, *, power_mode: str,
                calls: list[dict[str, Any]], metrics: list[dict[str, Any]], wall_time_s: float,
                energy_j: float, energy_covered_s: float, started_at: float, turns_run: int,
                agent_errors: list[str], turns: Optional[int] = None,
                extra: Optional[dict[str, Any]] = None,
                in_force: Optional[dict[str, str]] = None,
                steps: Optional[list[dict[str, Any]]] = None) -> dict[str, Any]:
    """The results.jsonl line of a case (fields of ScenarioResult plus run labels);
    ``turns`` defaults to the scenario's; ``extra`` (a suite's own fields, e.g.
    reward components) is appended and never replaces a standard field;
    ``in_force``: the agent's report of its goal settings (:func:`goal_settings_in_force`);
    ``steps``: per LLM step, the model that answered and the cascade's trigger
    (:func:`step_records`; written with ``llm_steps``/``steps_escalated`` when the agent reported them)."""
    record = {
        "run_id": config.run_id,
        "suite": scenario.suite,
        "category": scenario.category,
        "case_id": scenario.case_id,
        "model": config.model,
        "power_mode": power_mode,
        "strategy": config.strategy,
        "serialization": config.serialization,
        **goal_settings_in_force(config, in_force),
        "valid": bool(result.valid),
        "passed": bool(result.passed),
        "error_type": result.error_type,
        "error": result.error,
        "raw_output": result.raw_output,
        "calls": calls,
        "metrics": metrics,
        "wall_time_s": wall_time_s,
        "energy_j": energy_j,
        "energy_covered_s": energy_covered_s,
        "started_at": started_at,
        "finished_at": time.time(),
        "turns": scenario.num_turns if turns is None else int(turns),
        "turns_run": turns_run,
        "agent_errors": agent_errors,
        **metrics_totals(metrics),
    }
    if steps:
        record["steps"] = steps
        record.update(escalation_totals(steps))
    for key, value in (extra or {}).items():
        record.setdefault(key, value)
    return record


def versions(suite_dists: Sequence[str] = ()) -> dict[str, str]:
    """Versions for run.json: Python, the platform, our packages and ``suite_dists``
    (the suite's own, :attr:`slm_agent.bench.suite.Suite.distributions`)."""
    from importlib import metadata

    out = {"python": platform.python_version(), "platform": platform.platform(),
           "hostname": socket.gethostname()}
    for dist in ("slm_agent", *suite_dists, "llama_cpp_python", "rosbags"):
        try:
            out[dist] = metadata.version(dist)
        except metadata.PackageNotFoundError:
            pass
    try:
        import rclpy  # noqa: F401

        out["rclpy"] = metadata.version("rclpy") if _has_dist("rclpy") else "installed"
    except ImportError:
        pass
    import os

    out["ros_distro"] = os.environ.get("ROS_DISTRO", "")
    out["rmw_implementation"] = os.environ.get("RMW_IMPLEMENTATION", "")
    return out


def _has_dist(name: str) -> bool:
    from importlib import metadata

    try:
        metadata.version(name)
        return True
    except metadata.PackageNotFoundError:
        return False


def model_info(profile_name: str) -> dict[str, Any]:
    """What run.json says about the model: the profile's model fields if it loads."""
    if not profile_name:
        return {}
    try:
        from slm_agent.profiles import load_profile

        prof = load_profile(profile_name)
    except Exception as exc:  # noqa: BLE001 - a label that is not a profile is fine
        return {"profile": profile_name, "note": f"profile not loaded: {exc}"}
    out: dict[str, Any] = {"profile": profile_name}
    for key in ("name", "model", "backend", "chat", "context", "cpu"):  # backend/chat/context/cpu: throughput switches
        val = getattr(prof, key, None)
        if val is None:
            continue
        try:
            out[key] = asdict(val) if hasattr(val, "__dataclass_fields__") else val
        except TypeError:
            out[key] = str(val)
    lora = prof.model.lora
    if lora is not None:  # a fine-tuned run: which adapter (tells base and adapter runs apart)
        import hashlib
        from pathlib import Path

        out["adapter"] = {"path": lora.path, "scale": lora.scale,
                          "sha256": hashlib.sha256(Path(lora.path).read_bytes()).hexdigest()}
    return out


# --------------------------------------------------------------------------- progress

class Progress:
    """done/total, accuracy so far and an ETA from the mean case time of this session
    (divided by ``concurrency``: that many cases are in flight at once)."""

    def __init__(self, total: int, already_done: int = 0, already_passed: int = 0, concurrency: int = 1) -> None:
        self.total = total
        self.concurrency = max(1, int(concurrency))
        self.done = already_done
        self.passed = already_passed
        self._session_cases = 0
        self._session_time = 0.0

    def add(self, passed: bool, wall_s: float) -> None:
        self.done += 1
        self.passed += int(bool(passed))
        self._session_cases += 1
        self._session_time += max(0.0, wall_s)

    @property
    def accuracy(self) -> float:
        return self.passed / self.done if self.done else math.nan

    @property
    def eta_s(self) -> float:
        if not self._session_cases:
            return math.nan
        return (self.total - self.done) * self._session_time / self._session_cases / self.concurrency

    def line(self, case_id: str, passed: bool) -> str:
        eta = self.eta_s
        eta_txt = "?" if math.isnan(eta) else _duration(eta)
        acc = self.accuracy
        return (f"[{self.done}/{self.total}] {case_id}: {'PASS' if passed else 'FAIL'} | "
                f"accuracy {self.passed}/{self.done} = {acc:.1%} | ETA {eta_txt}")


def _duration(s: float) -> str:
    s = int(round(s))
    if s < 60:
        return f"{s}s"
    if s < 3600:
        return f"{s // 60}m{s % 60:02d}s"
    return f"{s // 3600}h{(s % 3600) // 60:02d}m"
