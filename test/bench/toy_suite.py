"""A two-case suite that is not BFCL, for the suite-interface tests (plain Python, no ROS).

* ``single_0`` (category ``single``): one goal, nothing executed; passes when
  the first response calls ``greet(name="Ann")``.
* ``chat_0`` (category ``chat``): a simulated user with a per-case counter
  environment served as a tool (``add``); the user asks to add 2, and only
  after seeing the counter at 2 asks to add 3 more, then stops.  Passes when
  the environment's counter ends at 5 (state check, like tau2's database
  check); records ``reward`` and ``reward_components`` per case; the report
  gets a "Mean reward" column.

:class:`FakeHost` serves tools without ROS; :func:`fake_agent` answers goals
like an agent would (a first response with the calls, tools invoked through
the host's "services" when the goal executes tools).  :func:`run_toy` runs the
whole run-directory path (select, RunSession, play_case, results.jsonl, report).
"""
from __future__ import annotations

import json
import math
import re
from pathlib import Path
from typing import Any, Optional, Sequence

from slm_agent.bench.play import play_case
from slm_agent.bench.runner import BenchConfig, call_dict, carry_conversation, chat_message
from slm_agent.bench.scenario import CaseResult, Scenario
from slm_agent.bench.session import RunSession
from slm_agent.bench.suite import (INVOKE_TOOL_TYPE, CaseContext, Episode, ReportColumn, Suite, SuiteError, Turn,
                                   TurnOutcome, get_suite, tool_spec)

GREET = {"type": "object", "properties": {"name": {"type": "string"}}, "required": ["name"]}
ADD = {"type": "object", "properties": {"n": {"type": "integer"}}, "required": ["n"]}


def _case(category: str, n: int) -> Scenario:
    if category == "single":
        turns = [[{"role": "user", "content": "Greet Ann."}]]
        functions = [{"name": "greet", "description": "Greet someone", "parameters": GREET}]
    else:
        turns = [[{"role": "user", "content": "add 2"}]]          # later user turns are simulated
        functions = [{"name": "add", "description": "Add n to the counter", "parameters": ADD}]
    return Scenario(suite="toy", category=category, case_id=f"{category}_{n}", turns=turns, functions=functions,
                    ground_truth={"single": "greet Ann", "chat": 5}[category])


class CounterEnv:
    """Executable per-case state behind the ``add`` tool."""

    def __init__(self) -> None:
        self.counter = 0
        self.closed = False

    def execute(self, name: str, arguments: dict[str, Any]) -> str:
        if self.closed:
            raise RuntimeError("environment closed")
        if name != "add":
            return f"Error: no function {name}"
        self.counter += int(arguments["n"])
        return f"counter={self.counter}"


class SingleEpisode(Episode):
    def __init__(self, scenario: Scenario, ctx: CaseContext) -> None:
        super().__init__(scenario, ctx)
        self._sent = False

    def next_turn(self) -> Optional[Turn]:
        if self._sent:
            return None
        self._sent = True
        tools = [tool_spec(f["name"], f["description"], f["parameters"]) for f in self.scenario.functions]
        return Turn(0, [chat_message(m) for m in self.scenario.turns[0]], tools, execute_tools=False)

    def observe(self, turn: Turn, outcome: TurnOutcome) -> list[int]:
        counted = [i for i, r in enumerate(outcome.tool_calls) if call_dict(r)["step"] == 0]
        self.calls.extend(call_dict(outcome.tool_calls[i]) for i in counted)
        return counted

    def score(self) -> CaseResult:
        calls = [(c["name"], json.loads(c["arguments"])) for c in self.calls]
        ok = calls == [("greet", {"name": "Ann"})]
        return CaseResult(self.scenario.case_id, self.scenario.category, valid=True, passed=ok, suite="toy",
                          error_type="" if ok else "toy:wrong_call", error="" if ok else f"got {calls}")


class ChatEpisode(Episode):
    """A conversation with a simulated user; the environment lives for one case."""

    multi_turn = True
    environments: list[CounterEnv] = []      # every environment made, for the tests

    def __init__(self, scenario: Scenario, ctx: CaseContext) -> None:
        super().__init__(scenario, ctx)
        self.env: Optional[CounterEnv] = None
        self.names: dict[str, str] = {}
        self._sent: list[dict[str, Any]] = []

    @property
    def planned_turns(self) -> int:
        return max(1, len(self.outcomes))     # decided by the user simulator as it goes

    def start(self) -> None:
        self.env = CounterEnv()
        ChatEpisode.environments.append(self.env)
        self.names = self.serve_tools(self.env, ["add"])

    def _user(self) -> Optional[str]:
        """The simulated user: reads the transcript so far."""
        if not self.outcomes:
            return self.scenario.turns[0][0]["content"]
        said = " ".join(m.get("content", "") for m in self.outcomes[-1].messages if m.get("role") == "tool")
        if len(self.outcomes) == 1 and "counter=2" in said:
            return "now add 3 more"
        return None                          # satisfied (or gave up): the case is over

    def next_turn(self) -> Optional[Turn]:
        text = self._user()
        if text is None:
            return None
        before = carry_conversation(self._sent, self.outcomes[-1].messages) if self.outcomes else []
        spec = tool_spec("add", "Add n to the counter", ADD, service_name=self.names["add"],
                         service_type=self.ctx.tool_host.service_type, timeout_s=self.ctx.tool_timeout_s)
        self._sent = before + [chat_message({"role": "user", "content": text})]
        return Turn(len(self.outcomes), self._sent, [spec], execute_tools=True)

    def observe(self, turn: Turn, outcome: TurnOutcome) -> list[int]:
        self.calls.extend(call_dict(r, turn.index) for r in outcome.tool_calls)
        return list(range(len(outcome.tool_calls)))

    def score(self) -> CaseResult:
        ok = self.env is not None and self.env.counter == self.scenario.ground_truth
        return CaseResult(self.scenario.case_id, self.scenario.category, valid=True, passed=ok, suite="toy",
                          error_type="" if ok else "toy:wrong_state",
                          error="" if ok else f"counter {self.env.counter if self.env else None}")

    def record_fields(self) -> dict[str, Any]:
        ok = self.env is not None and self.env.counter == self.scenario.ground_truth
        return {"reward": 1.0 if ok else 0.0,
                "reward_components": {"state": 1.0 if ok else 0.0, "turns": float(len(self.outcomes))},
                "passed": "never replaces a standard field"}

    def close(self) -> None:
        super().close()
        if self.env is not None:
            self.env.closed = True


def _mean_reward(records: Sequence[dict[str, Any]]) -> float:
    vals = [float(r["reward"]) for r in records if isinstance(r.get("reward"), (int, float))]
    return sum(vals) / len(vals) if vals else math.nan


class ToySuite(Suite):
    name = "toy"
    title = "Toy"

    def categories(self) -> Sequence[str]:
        return ("single", "chat")

    def aliases(self):
        return {"s": "single"}

    def load(self, categories: Sequence[str], ids: Sequence[str], limit: int) -> list[Scenario]:
        every = [_case(c, n) for c in (categories or self.categories()) for n in range(3)]
        if ids:
            known = {s.case_id: s for s in every}
            missing = [i for i in ids if i not in known]
            if missing:
                raise SuiteError(f"unknown Toy case id {missing[0]!r}")
            return [s for s in every if s.case_id in set(ids)]
        out = []
        for cat in categories:
            out.extend([s for s in every if s.category == cat][: limit or None])
        return out

    def episode(self, scenario: Scenario, ctx: CaseContext) -> Episode:
        return SingleEpisode(scenario, ctx) if scenario.category == "single" else ChatEpisode(scenario, ctx)

    def report_columns(self) -> list[ReportColumn]:
        return [ReportColumn("Mean reward", _mean_reward, "{:.2f}")]


# --------------------------------------------------------------------------- stand-ins for the node's side

class FakeHost:
    """A ToolHost without ROS: 'services' are names looked up in a dict."""

    service_type = INVOKE_TOOL_TYPE

    def __init__(self) -> None:
        self.served: dict[str, tuple[Any, str]] = {}
        self.cleared = 0

    def serve(self, executor: Any, functions: Sequence[str]) -> dict[str, str]:
        self.served = {f"/toy/{f}": (executor, f) for f in functions}
        return {f: f"/toy/{f}" for f in functions}

    def clear(self) -> None:
        self.served = {}
        self.cleared += 1

    def call(self, service: str, arguments: dict[str, Any]) -> str:
        executor, name = self.served[service]
        return executor.execute(name, arguments)


def _record(name: str, args: dict[str, Any], step: int, i: int) -> dict[str, Any]:
    return {"task_id": "", "call": {"id": f"c{i}", "name": name, "arguments_json": json.dumps(args), "step": step},
            "result": {}}


def fake_agent(host: FakeHost, sent: list[Turn]):
    """``send(turn)`` of an agent that does what the user asks, through the host's services."""

    def send(turn: Turn):
        sent.append(turn)
        user = turn.messages[-1]["content"]
        transcript = list(turn.messages)
        if not turn.execute_tools:
            calls = [_record("greet", {"name": "Ann"}, 0, 0), _record("greet", {"name": "Bob"}, 1, 1)]
            transcript.append({"role": "assistant", "content": 'greet(name="Ann")', "tool_calls": []})
            return TurnOutcome(turn.index, True, "", "", transcript, calls, source={"metrics": [1]}), ""
        n = int(re.findall(r"\d+", user)[0])
        spec = turn.tools[0]
        result = host.call(spec["service_name"], {"n": n})
        transcript += [{"role": "assistant", "content": "", "tool_calls": []},
                       {"role": "tool", "content": result, "name": "add"},
                       {"role": "assistant", "content": f"Done: {result}"}]
        return TurnOutcome(turn.index, True, "", f"Done: {result}", transcript, [_record("add", {"n": n}, 0, 0)],
                           source={"metrics": [1, 2]}), ""

    return send


def run_toy(out: Path, categories: Sequence[str] = ("s", "chat"), limit: int = 1) -> dict[str, Any]:
    """One run of the toy suite through the harness path the benchmark node uses; returns what it saw."""
    cfg = BenchConfig(suite="toy", categories=list(categories), limit=limit, output_dir=str(out), model="toy-model")
    suite = get_suite("toy")
    scenarios = suite.select(cfg.categories, cfg.ids, cfg.limit)
    warnings: list[str] = []
    session = RunSession(cfg, suite, scenarios, warn=warnings.append)
    session.lock_dir("toy test")
    session.open(power_mode="TOY_MODE")
    host, sent, published, lines, plays = FakeHost(), [], [], [], []
    try:
        for sc in session.todo:
            play = play_case(suite, sc, CaseContext(tool_host=host, tool_timeout_s=3.0), fake_agent(host, sent),
                             published.append, case_timeout_s=5.0)
            plays.append(play)
            record = play.record(cfg, power_mode="TOY_MODE", metrics=[], wall_time_s=0.01, energy_j=math.nan,
                                 energy_covered_s=0.0, started_at=0.0)
            lines.append(session.append(record))
        summary = session.summary_lines()
    finally:
        session.close()
    return {"cfg": cfg, "scenarios": scenarios, "host": host, "sent": sent, "published": published,
            "lines": lines, "plays": plays, "summary": summary, "warnings": warnings}
