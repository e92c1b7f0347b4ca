"""Benchmark logic shared by the benchmark node, the gold agent and the CLI (no ROS imports).

* which cases run (:func:`select_scenarios`: categories, ids, a limit *per
  category*, BFCL's stable order);
* what the agent is sent per turn (:func:`turn_messages`, :func:`turn_tools`;
  task ids are ``<case_id>#<turn>``, :func:`task_id`/:func:`parse_task_id`);
* how the agent's answer is scored (:func:`score_single_turn`: the calls of
  the first response; :func:`score_multi_turn`: per turn, the calls grouped
  by their agent-loop ``step``) with BFCL's own checkers;
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
from dataclasses import asdict, dataclass, field
from typing import Any, Iterable, Optional, Sequence

from slm_agent.bench.scenario import CaseResult, Scenario

TASK_SEP = "#"
INVOKE_TOOL_TYPE = "slm_agent/srv/InvokeTool"
SUITES = ("bfcl",)


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


@dataclass
class BenchConfig:
    """What a run measures; the benchmark node's parameters, written to run.json."""

    suite: str = "bfcl"
    categories: list[str] = field(default_factory=lambda: ["simple_python"])
    ids: list[str] = field(default_factory=list)
    limit: int = 0                    # cases per category, 0 = all
    strategy: str = "direct"
    serialization: str = "json"
    max_steps: int = 0                # 0 = agent default
    model: str = ""                   # profile name (label)
    power_mode: str = ""              # label; "" = from /telemetry/power
    output_dir: str = "runs/latest"
    run_id: str = ""
    case_timeout_s: float = 300.0
    agent_action: str = "/agent/run_task"
    agent_wait_s: float = 300.0
    tool_namespace: str = "/bfcl"
    tool_timeout_s: float = 10.0
    power_topic: str = "/telemetry/power"
    seed: int = 0

    #: fields that must match when a run directory is resumed (slm_agent.bench.rundir);
    #: the case set (categories, ids, limit) must match unless explicitly allowed
    IDENTITY = ("suite", "model", "strategy", "serialization", "max_steps")

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


#: RunTask.Goal.max_steps is a uint32
MAX_STEPS_MAX = 2**32 - 1


def validate_config(cfg: BenchConfig) -> list[tuple[str, str]]:
    """Problems of a run's parameters, ``(field, one-line message)`` each (empty: fine).

    Strategy and serialization are checked against the agent's own registries
    (``slm_agent.agent.STRATEGIES`` / ``get_serializer``) and normalized in
    place (stripped, lower case) the way the agent reads them.  Categories
    are checked against BFCL's supported set; case ids are checked when the
    cases are selected (:func:`select_scenarios` raises ``KeyError``).
    """
    from slm_agent.agent.serializers import get_serializer
    from slm_agent.agent.strategies import STRATEGIES

    problems: list[tuple[str, str]] = []
    if cfg.suite not in SUITES:
        problems.append(("suite", f"unknown suite {cfg.suite!r}; valid: {', '.join(SUITES)}"))
    strategy = str(cfg.strategy or "").strip().lower()
    if strategy not in STRATEGIES:
        problems.append(("strategy", f"unknown strategy {cfg.strategy!r}; valid: {', '.join(sorted(STRATEGIES))}"))
    else:
        cfg.strategy = strategy
    serialization = str(cfg.serialization or "").strip().lower()
    try:
        get_serializer(serialization)
        cfg.serialization = serialization
    except ValueError as exc:
        problems.append(("serialization", str(exc).replace(f"'{serialization}'", repr(cfg.serialization))))
    if not cfg.ids:
        if not cfg.categories:
            problems.append(("categories", "no category given"))
        else:
            from slm_agent.bench.bfcl.loader import resolve_category

            for cat in cfg.categories:
                try:
                    resolve_category(cat)
                except (KeyError, ValueError) as exc:
                    problems.append(("categories", str(exc.args[0] if exc.args else exc)))
    if not isinstance(cfg.limit, int) or cfg.limit < 0:
        problems.append(("limit", f"limit must be >= 1 cases per category, or 0 for all (got {cfg.limit})"))
    if not isinstance(cfg.max_steps, int) or not 0 <= cfg.max_steps <= MAX_STEPS_MAX:
        problems.append(("max_steps", f"max_steps must be >= 1, or 0 for the agent's default (got {cfg.max_steps})"))
    for name, value in (("case_timeout_s", cfg.case_timeout_s), ("tool_timeout_s", cfg.tool_timeout_s)):
        if not (isinstance(value, (int, float)) and math.isfinite(value) and value > 0):
            problems.append((name, f"{name} must be a number of seconds > 0 (got {value})"))
    if not (isinstance(cfg.agent_wait_s, (int, float)) and math.isfinite(cfg.agent_wait_s)
            and cfg.agent_wait_s >= 0):
        problems.append(("agent_wait_s", f"agent_wait_s must be a number of seconds >= 0 (got {cfg.agent_wait_s})"))
    if not str(cfg.output_dir or "").strip():
        problems.append(("output_dir", "output_dir is empty"))
    return problems


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
    """Cases of a run: ``limit`` per category (0 = all), in BFCL's stable order."""
    if suite not in SUITES:
        raise ValueError(f"unknown suite {suite!r}; supported: {', '.join(SUITES)}")
    from slm_agent.bench.bfcl.loader import load_scenarios, resolve_category

    cats = [resolve_category(c) for c in categories]
    if ids:
        chosen = load_scenarios(categories=cats or None, ids=ids)
        if limit > 0:
            per: dict[str, int] = {}
            out = []
            for sc in chosen:
                per[sc.category] = per.get(sc.category, 0) + 1
                if per[sc.category] <= limit:
                    out.append(sc)
            chosen = out
        return chosen
    out: list[Scenario] = []
    for cat in cats:
        out.extend(load_scenarios(categories=[cat], limit=limit if limit > 0 else None))
    return out


# --------------------------------------------------------------------------- goals

def is_multi_turn(scenario: Scenario) -> bool:
    from slm_agent.bench.bfcl.loader import MULTI_TURN_CATEGORIES

    return scenario.category in MULTI_TURN_CATEGORIES


def chat_message(msg: dict[str, Any]) -> dict[str, Any]:
    """A BFCL/OpenAI message dict as ChatMessage fields."""
    content = msg.get("content", "")
    if not isinstance(content, str):
        import json

        content = json.dumps(content, ensure_ascii=False)
    return {"role": str(msg.get("role", "user")), "content": content,
            "name": str(msg.get("name", "") or ""), "tool_call_id": str(msg.get("tool_call_id", "") or ""),
            "tool_calls": []}


def turn_messages(scenario: Scenario, turn: int) -> list[dict[str, Any]]:
    return [chat_message(m) for m in scenario.turns[turn]]


def turn_tools(scenario: Scenario, turn: int, service_names: Optional[dict[str, str]] = None,
               timeout_s: float = 10.0) -> list[dict[str, Any]]:
    """ToolSpec fields for ``turn``: sanitized names, JSON schemas and, for
    multi-turn, the InvokeTool service that executes each function."""
    import json

    from slm_agent.bench.bfcl.loader import tools_for

    toolset = tools_for(scenario, turn)
    out = []
    for tool in toolset.tools:
        spec = {"name": tool["name"], "description": tool.get("description", ""),
                "parameters_json_schema": json.dumps(tool["parameters"], ensure_ascii=False),
                "service_name": "", "service_type": "", "timeout_s": float(timeout_s),
                "requires_confirmation": False, "max_rate_hz": 0.0}
        if service_names is not None:
            spec["service_name"] = service_names[toolset.original_name(tool["name"])]
            spec["service_type"] = INVOKE_TOOL_TYPE
        out.append(spec)
    return out


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


def _checker_call(c: dict[str, Any]) -> dict[str, Any]:
    return {"name": c["name"], "arguments": c["arguments"]}


def raw_model_output(transcript: Sequence[Any], sent: int = 0) -> str:
    """The model's own text of every step of one goal, for the record.

    ``transcript`` is the RunTask result's ``messages``; the first ``sent``
    are what the goal carried in (earlier turns), so they are skipped.  A
    case's calls are parsed from this text; keeping it lets a reader see
    *why* a case failed (wrong value, wrong format, no call at all).
    """
    return "\n".join(m.content for m in list(transcript)[sent:] if m.role == "assistant" and m.content)


def score_single_turn(scenario: Scenario, calls: Sequence[dict[str, Any]], final_text: str) -> CaseResult:
    from slm_agent.bench.bfcl.checker import check_single_turn
    from slm_agent.bench.bfcl.loader import tools_for

    return check_single_turn(scenario, [_checker_call(c) for c in calls], final_text or "",
                             tools_for(scenario, 0))


def score_multi_turn(scenario: Scenario, turn_steps: Sequence[Sequence[Sequence[dict[str, Any]]]],
                     raw_output: str = "") -> CaseResult:
    from slm_agent.bench.bfcl.checker import check_multi_turn

    steps = [[[_checker_call(c) for c in step] for step in turn] for turn in turn_steps]
    return check_multi_turn(scenario, steps, raw_output)


# --------------------------------------------------------------------------- records

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
                agent_errors: list[str]) -> dict[str, Any]:
    """The results.jsonl line of a case (fields of ScenarioResult plus run labels)."""
    return {
        "run_id": config.run_id,
        "suite": scenario.suite,
        "category": scenario.category,
        "case_id": scenario.case_id,
        "model": config.model,
        "power_mode": power_mode,
        "strategy": config.strategy,
        "serialization": config.serialization,
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
        "turns": scenario.num_turns,
        "turns_run": turns_run,
        "agent_errors": agent_errors,
        **metrics_totals(metrics),
    }


def versions() -> dict[str, str]:
    from importlib import metadata

    out = {"python": platform.python_version(), "platform": platform.platform(),
           "hostname": socket.gethostname()}
    for dist in ("slm_agent", "bfcl-eval", "llama_cpp_python", "rosbags"):
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
    for key in ("name", "model", "backend"):
        val = getattr(prof, key, None)
        if val is None:
            continue
        try:
            out[key] = asdict(val) if hasattr(val, "__dataclass_fields__") else val
        except TypeError:
            out[key] = str(val)
    return out


# --------------------------------------------------------------------------- progress

class Progress:
    """done/total, accuracy so far and an ETA from the mean case time of this session."""

    def __init__(self, total: int, already_done: int = 0, already_passed: int = 0) -> None:
        self.total = total
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
        return (self.total - self.done) * self._session_time / self._session_cases

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


def summary_lines(records: Sequence[dict[str, Any]]) -> list[str]:
    """Per-category accuracy of a run, for the end-of-run log."""
    by_cat: dict[str, list[dict[str, Any]]] = {}
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
