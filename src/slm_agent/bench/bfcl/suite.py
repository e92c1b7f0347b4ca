"""BFCL as a :class:`~slm_agent.bench.suite.Suite` (registered as ``bfcl``).

* Cases: :mod:`.loader` (BFCL's own data loading, stable order, aliases
  ``simple``, ``java``, ``js``...); unknown names get a did-you-mean.
* Protocol (:attr:`BfclSuite.protocol` = ``bfcl``, ``agent/protocol.py``):
  goals run under bfcl-eval's own inference loop (``base_handler``'s
  ``inference_single_turn_*`` / ``inference_multi_turn_*``), so what is
  recorded is what BFCL records: single-turn, the model's first reply only;
  multi-turn, per user turn every reply until one that is empty or does not
  decode, repeated calls executed, more than ``MAXIMUM_STEP_LIMIT`` (20)
  steps with calls force-terminate the case (no further turns, so it fails
  as ``multi_turn:force_terminated`` unless it was the last turn, exactly as
  BFCL's evaluator decides).  With the run setting ``protocol=robot`` the
  agent's robot rules run instead; such scores are not comparable with BFCL.
* Single-turn categories (:class:`SingleTurnEpisode`): one goal,
  ``execute_tools=false`` (the agent returns the calls of its first response
  without invoking anything); scored on the calls of the lowest ``step``
  (under the bfcl protocol: of step 0, the first reply, only) with BFCL's
  AST / relevance checkers.
* Multi-turn categories (:class:`MultiTurnEpisode`): the case's executable
  environment (:class:`.environment.MultiTurnEnvironment`) is served through
  the run's tool host (``slm_agent/srv/InvokeTool`` services, one per
  function, named by :func:`slm_agent.ros.tool_services.service_names`), so
  every call crosses DDS; one goal per user turn carrying the conversation so
  far (the previous goal's transcript plus the next user message; held-out
  functions appear at their turn), ``execute_tools=true``; scored per turn
  on the calls grouped by ``step`` with BFCL's ``multi_turn_checker``.

This module imports ``bfcl_eval`` only when a case is loaded or scored, so
the registry can list it cheaply.
"""
from __future__ import annotations

import functools
from typing import Any, Mapping, Optional, Sequence

from slm_agent.bench.runner import (call_dict, carry_conversation, chat_message, first_response_calls,
                                    group_steps, raw_model_output)
from slm_agent.bench.scenario import CaseResult, Scenario
from slm_agent.bench.suite import (INVOKE_TOOL_TYPE, CaseContext, Episode, GoldAnswer, Suite, SuiteError, Turn,
                                   TurnOutcome, did_you_mean, tool_spec)


# --------------------------------------------------------------------------- goals

def is_multi_turn(scenario: Scenario) -> bool:
    from slm_agent.bench.bfcl.loader import MULTI_TURN_CATEGORIES

    return scenario.category in MULTI_TURN_CATEGORIES


def turn_messages(scenario: Scenario, turn: int) -> list[dict[str, Any]]:
    """The user message(s) of ``turn`` as ChatMessage fields."""
    return [chat_message(m) for m in scenario.turns[turn]]


def turn_tools(scenario: Scenario, turn: int, service_names: Optional[dict[str, str]] = None,
               timeout_s: float = 10.0) -> list[dict[str, Any]]:
    """ToolSpec fields for ``turn``: sanitized names, JSON schemas and, for
    multi-turn, the InvokeTool service that executes each function."""
    from slm_agent.bench.bfcl.loader import tools_for

    toolset = tools_for(scenario, turn)
    out = []
    for tool in toolset.tools:
        service = service_names[toolset.original_name(tool["name"])] if service_names is not None else ""
        out.append(tool_spec(tool["name"], tool.get("description", ""), tool["parameters"],
                             service_name=service, service_type=INVOKE_TOOL_TYPE if service_names is not None
                             else "", timeout_s=timeout_s))
    return out


# --------------------------------------------------------------------------- scoring

def _checker_call(c: dict[str, Any]) -> dict[str, Any]:
    return {"name": c["name"], "arguments": c["arguments"]}


def score_single_turn(scenario: Scenario, calls: Sequence[dict[str, Any]], final_text: str) -> CaseResult:
    """BFCL's AST / relevance checker on the calls of the first response (arguments as raw JSON text)."""
    from slm_agent.bench.bfcl.checker import check_single_turn
    from slm_agent.bench.bfcl.loader import tools_for

    return check_single_turn(scenario, [_checker_call(c) for c in calls], final_text or "",
                             tools_for(scenario, 0))


def score_multi_turn(scenario: Scenario, turn_steps: Sequence[Sequence[Sequence[dict[str, Any]]]],
                     raw_output: str = "") -> CaseResult:
    """BFCL's multi_turn_checker on the calls of each turn, grouped by agent-loop step."""
    from slm_agent.bench.bfcl.checker import check_multi_turn

    steps = [[[_checker_call(c) for c in step] for step in turn] for turn in turn_steps]
    return check_multi_turn(scenario, steps, raw_output)


# --------------------------------------------------------------------------- episodes

class SingleTurnEpisode(Episode):
    """One goal, nothing executed; the first response's calls are scored."""

    def __init__(self, scenario: Scenario, ctx: CaseContext) -> None:
        super().__init__(scenario, ctx)
        self._sent = False
        self._final_text = ""

    def next_turn(self) -> Optional[Turn]:
        if self._sent:
            return None
        self._sent = True
        return Turn(0, turn_messages(self.scenario, 0), turn_tools(self.scenario, 0), execute_tools=False)

    def observe(self, turn: Turn, outcome: TurnOutcome) -> list[int]:
        first = first_response_calls(outcome.tool_calls)
        if self.ctx.protocol == BfclSuite.protocol:
            first = [c for c in first if c["step"] == 0]   # BFCL scores the first reply, nothing later
        counted = []
        if first:
            step = first[0]["step"]
            counted = [i for i, r in enumerate(outcome.tool_calls) if call_dict(r)["step"] == step]
        self.calls.extend(first)
        self._final_text = raw_model_output(outcome.messages, len(turn.messages)) or outcome.final_text
        return counted

    def score(self) -> CaseResult:
        return score_single_turn(self.scenario, self.calls, self._final_text)


class MultiTurnEpisode(Episode):
    """One goal per user turn against the case's environment, served as tool services."""

    multi_turn = True

    def __init__(self, scenario: Scenario, ctx: CaseContext) -> None:
        super().__init__(scenario, ctx)
        self._env = None
        self._names: dict[str, str] = {}
        self._conversation: list[dict[str, Any]] = []
        self._turn_steps: list[list[list[dict[str, Any]]]] = []
        self._texts: list[str] = []
        self._next = 0
        self._stopped = False

    def start(self) -> None:
        from slm_agent.bench.bfcl.environment import MultiTurnEnvironment

        self._env = MultiTurnEnvironment(self.scenario)
        self._names = self.serve_tools(self._env, [d["name"] for d in self.scenario.all_functions()])

    def next_turn(self) -> Optional[Turn]:
        if self._stopped or self._next >= self.scenario.num_turns:
            return None
        turn = self._next
        self._next += 1
        sent = self._conversation + turn_messages(self.scenario, turn)
        tools = turn_tools(self.scenario, turn, self._names, self.ctx.tool_timeout_s)
        return Turn(turn, sent, tools, execute_tools=True)

    def observe(self, turn: Turn, outcome: TurnOutcome) -> list[int]:
        steps = group_steps(outcome.tool_calls, turn.index)
        self._turn_steps.append(steps)
        self.calls.extend(c for step in steps for c in step)
        self._texts.append(raw_model_output(outcome.messages, len(turn.messages)) or outcome.final_text)
        self._conversation = carry_conversation(turn.messages, outcome.messages)
        if outcome.force_terminated:
            # bfcl-eval stops the case here: the turns not played make it fail as
            # multi_turn:force_terminated (on the last turn it is scored as it stands)
            self._stopped = True
        return list(range(len(outcome.tool_calls)))

    def score(self) -> CaseResult:
        return score_multi_turn(self.scenario, self._turn_steps, "\n".join(self._texts))

    def close(self) -> None:
        try:
            super().close()
        finally:
            if self._env is not None:
                self._env.close()
                self._env = None


# --------------------------------------------------------------------------- the suite

class BfclSuite(Suite):
    """The Berkeley Function Calling Leaderboard (``bfcl-eval``), scored with its own checkers."""

    name = "bfcl"
    title = "BFCL"
    distributions = ("bfcl-eval",)
    protocol = "bfcl"

    def categories(self) -> Sequence[str]:
        from slm_agent.bench.bfcl.loader import SUPPORTED_CATEGORIES

        return SUPPORTED_CATEGORIES

    def aliases(self) -> Mapping[str, str]:
        from slm_agent.bench.bfcl.loader import CATEGORY_ALIASES

        return CATEGORY_ALIASES

    def default_categories(self) -> Sequence[str]:
        return ("simple_python",)   # the category every published BFCL table has

    def resolve_category(self, name: str) -> str:
        from slm_agent.bench.bfcl.loader import resolve_category

        return resolve_category(name)

    def load(self, categories: Sequence[str], ids: Sequence[str], limit: int) -> list[Scenario]:
        from slm_agent.bench.bfcl.loader import load_scenarios

        if not ids:
            out: list[Scenario] = []
            for cat in categories:
                out.extend(load_scenarios(categories=[cat], limit=limit if limit > 0 else None))
            return out
        self._check_ids(categories, ids)
        return load_scenarios(categories=list(categories) or None, ids=ids)

    def _check_ids(self, categories: Sequence[str], ids: Sequence[str]) -> None:
        """:class:`SuiteError` naming the first unknown id (with a did-you-mean), before any loading fails."""
        from slm_agent.bench.bfcl.loader import _entries, category_of, resolve_category

        for cid in ids:
            try:
                cat = category_of(cid)
            except Exception:  # noqa: BLE001 - BFCL cannot even parse it
                cat = ""
            try:
                cat = resolve_category(cat)
            except SuiteError:
                raise SuiteError(f"unknown BFCL case id {cid!r}: no BFCL category {cat or cid!r}"
                                 f"{did_you_mean(cat or cid, self.categories())}") from None
            if categories and cat not in categories:
                raise SuiteError(f"case id {cid!r} is in category {cat}, not in the categories given "
                                 f"({', '.join(categories)})")
            known = [e["id"] for e in _entries(cat, True)]
            if cid not in known:
                span = f"{known[0]} .. {known[-1]}" if known else "none"
                # a typo gets a suggestion; a well-formed index past the end does not
                typo = any(ch not in "0123456789-_" for ch in cid[len(cat):])
                hint = did_you_mean(cid, known, n=1, cutoff=0.9) if typo else ""
                raise SuiteError(f"unknown BFCL case id {cid!r}{hint}; {cat} has {len(known)} cases ({span})")

    def episode(self, scenario: Scenario, ctx: CaseContext) -> Episode:
        return MultiTurnEpisode(scenario, ctx) if is_multi_turn(scenario) else SingleTurnEpisode(scenario, ctx)

    def hosts_tools(self, scenario: Scenario) -> bool:
        return is_multi_turn(scenario)   # MultiTurnEpisode serves the case's classes as InvokeTool services

    def gold_answer(self, case_id: str, turn: int, tools: Sequence[str], corrupt: bool = False) -> GoldAnswer:
        """BFCL's ground truth.  Single-turn: the gold calls (tool names as the goal names them)
        returned unexecuted; relevance cases call the first tool, irrelevance cases answer in
        text.  Multi-turn: the gold calls of ``turn``, executed one per step."""
        from slm_agent.bench.bfcl.environment import class_method_signatures
        from slm_agent.bench.bfcl.gold import gold_calls, gold_turns
        from slm_agent.bench.bfcl.loader import MULTI_TURN_CATEGORIES, RELEVANCE_CATEGORIES, tools_for
        from slm_agent.bench.corrupt import corrupt_calls, corrupt_turns

        sc = _scenario(case_id)
        if sc.category in MULTI_TURN_CATEGORIES:
            sanitized: dict[str, str] = {}
            for t in range(sc.num_turns):
                sanitized.update(tools_for(sc, t).to_sanitized)
            turns = [[(sanitized.get(n, n), a) for n, a in calls]
                     for calls in gold_turns(sc, class_method_signatures(sc.involved_classes).__getitem__)]
            if corrupt:
                turns = corrupt_turns(turns)
            return GoldAnswer(turns[turn], "Done.", execute=True)
        if sc.category in RELEVANCE_CATEGORIES:
            calls = [] if "irrelevance" in sc.category else [(tools[0], {})]
        else:
            calls = [(c["name"], c["arguments"]) for c in gold_calls(sc, tools_for(sc, 0))]
        if corrupt:
            calls = corrupt_calls(calls, tools[0] if tools else "")
        return GoldAnswer(calls, "" if calls else "None of the available functions is relevant to this request.")

    def first_turn_tools(self, case_id: str) -> list[dict[str, Any]]:
        """The first turn's tools as the agent sees them (sanitized names, JSON schemas)."""
        from slm_agent.bench.bfcl.loader import tools_for

        return [dict(t) for t in tools_for(_scenario(case_id), 0).tools]


@functools.lru_cache(maxsize=64)
def _scenario(case_id: str) -> Scenario:
    """One BFCL case by id (the gold agent asks for each turn of a case; loading is not free)."""
    from slm_agent.bench.bfcl.loader import load_scenario

    return load_scenario(case_id)
