"""Playing one case through an agent, for any suite (no ROS imports).

:func:`play_case` runs a suite's :class:`~slm_agent.bench.suite.Episode`:
turn after turn it publishes and sends what the episode asks for, hands the
answer back, then scores with the suite's checker.  It adds the harness's own
verdicts, the same for every suite:

* the goal was not answered within the case deadline: ``bench:case_timeout``
  (scored on what came before, then failed);
* the agent rejected a goal: invalid, ``harness:goal_rejected``;
* anything raised by the suite while playing or scoring: invalid,
  ``harness:exception`` (logged with its traceback; the run goes on);
* errors the agent reported are kept (``agent_errors``) and, for a failed
  case, prefixed to ``error`` so a reader sees why nothing usable came.

:class:`Interrupted` and :class:`AgentUnavailable` (raised by ``send``) end
the run, not the case.  The caller (the benchmark node) turns goals into
messages, measures time and energy, and writes :meth:`CasePlay.record`.
"""
from __future__ import annotations

import traceback
from dataclasses import dataclass, field
from typing import Any, Callable, Optional

from slm_agent.bench.scenario import CaseResult, Scenario
from slm_agent.bench.suite import CaseContext, Episode, Suite, Turn, TurnOutcome


class AgentUnavailable(RuntimeError):
    """The agent cannot be reached: the run stops (rerun to resume)."""


class Interrupted(RuntimeError):
    """SIGINT/SIGTERM or shutdown: the run stops (rerun to resume)."""


#: ``send(turn) -> (outcome, "")``; ``(None, "timeout")`` when the case deadline passed;
#: ``(None, why)`` when the goal was rejected.  May raise Interrupted / AgentUnavailable.
SendTurn = Callable[[Turn], "tuple[Optional[TurnOutcome], str]"]


@dataclass
class CasePlay:
    """What playing a case produced (plain data; ``outcomes[i].source`` is the agent's own answer)."""

    scenario: Scenario
    result: CaseResult
    calls: list[dict[str, Any]] = field(default_factory=list)
    outcomes: list[TurnOutcome] = field(default_factory=list)
    agent_errors: list[str] = field(default_factory=list)
    planned_turns: int = 0
    fields: dict[str, Any] = field(default_factory=dict)
    turns: list[Turn] = field(default_factory=list)   # the goals sent, in order (for the conversation log)

    def conversation(self) -> list[dict[str, Any]]:
        """Per goal: the tools offered, how many messages were sent and the agent's transcript
        (those, then every assistant message with its tool calls and every tool result): the logged LLM
        calls that ``slm-agent dataset`` turns into fine-tuning records."""
        return [{"turn": t.index, "tools": t.tools, "sent": len(t.messages), "messages": o.messages}
                for t, o in zip(self.turns, self.outcomes)]

    @property
    def turns_run(self) -> int:
        return len(self.outcomes)

    def counted_sources(self, attr: str = "tool_calls") -> list[Any]:
        """The counted tool calls as the agent returned them (``source.<attr>[i]`` per counted index)."""
        return [getattr(o.source, attr)[i] for o in self.outcomes if o.source is not None for i in o.counted]

    def record(self, config: Any, *, power_mode: str, metrics: list[dict[str, Any]], wall_time_s: float,
               energy_j: float, energy_covered_s: float, started_at: float) -> dict[str, Any]:
        """The results.jsonl line of this case (:func:`slm_agent.bench.runner.case_record`
        plus the suite's extra fields; the goal settings the agent reported in force)."""
        from slm_agent.bench.runner import case_record, reported_settings, step_records

        in_force = reported_settings(o.source for o in self.outcomes if o.source is not None)
        steps = step_records(o.source for o in self.outcomes if o.source is not None)
        return case_record(config, self.scenario, self.result, power_mode=power_mode, calls=self.calls,
                           metrics=metrics, wall_time_s=wall_time_s, energy_j=energy_j,
                           energy_covered_s=energy_covered_s, started_at=started_at, turns_run=self.turns_run,
                           agent_errors=self.agent_errors, turns=self.planned_turns,
                           extra={"conversation": self.conversation(), **self.fields},
                           in_force=in_force, steps=steps)


def play_case(suite: Suite, scenario: Scenario, ctx: CaseContext, send: SendTurn,
              publish: Optional[Callable[[Turn], None]] = None, *, case_timeout_s: float = 0.0,
              log_error: Optional[Callable[[str], None]] = None) -> CasePlay:
    """Play and score ``scenario``; see the module docstring."""
    episode: Optional[Episode] = None
    agent_errors: list[str] = []
    timed_out = False
    invalid_error = ""
    fields: dict[str, Any] = {}
    sent: list[Turn] = []
    try:
        episode = suite.episode(scenario, ctx)
        try:
            episode.start()
            while (turn := episode.next_turn()) is not None:
                if publish is not None:
                    publish(turn)
                outcome, err = send(turn)
                sent.append(turn)
                if outcome is None:
                    timed_out = err == "timeout"
                    invalid_error = "" if timed_out else err
                    break
                episode.outcomes.append(outcome)
                outcome.counted = list(episode.observe(turn, outcome))
                if not outcome.success and outcome.error:
                    agent_errors.append(f"turn {turn.index}: {outcome.error}" if episode.multi_turn
                                        else outcome.error)
            result = episode.score()
            fields = dict(episode.record_fields() or {})
        finally:
            episode.close()
    except (Interrupted, AgentUnavailable):
        raise
    except Exception as exc:  # noqa: BLE001 - a broken case must not end the run
        if log_error is not None:
            log_error(f"{scenario.case_id}: harness error {type(exc).__name__}: {exc}\n"
                      + "".join(traceback.format_exception(exc)))
        result = CaseResult(scenario.case_id, scenario.category, valid=False, passed=False,
                            error_type="harness:exception", error=f"{type(exc).__name__}: {exc}")
    if invalid_error:
        result = CaseResult(scenario.case_id, scenario.category, valid=False, passed=False,
                            error_type="harness:goal_rejected", error=invalid_error,
                            raw_output=result.raw_output, calls=result.calls)
    elif timed_out:
        result.passed = False
        result.error_type = "bench:case_timeout"
        result.error = f"no answer within case_timeout_s={case_timeout_s:g}"
    if agent_errors and not result.passed:
        # keep the checker's error_type, but say why the model produced nothing usable
        result.error = f"agent: {agent_errors[0]}" + (f" | {result.error}" if result.error else "")
    return CasePlay(scenario, result, calls=list(episode.calls) if episode is not None else [],
                    outcomes=list(episode.outcomes) if episode is not None else [], agent_errors=agent_errors,
                    planned_turns=episode.planned_turns if episode is not None else scenario.num_turns,
                    fields=fields, turns=sent)
