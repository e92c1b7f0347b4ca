"""Loop rules: how many LLM calls a goal may take, what ends it and what is recorded.

The agent loop (:mod:`slm_agent.agent.loop`) runs one goal under a
:class:`LoopRules`.  A goal names its rules by preset name
(``RunTask.Goal.protocol``; empty = ``robot``):

* ``robot`` - the robot-facing rules the loop was built with.  A reply that
  looks like a call but does not parse is answered ``Error: ...`` and the
  model is asked again; re-issuing the previous step's successful calls ends
  the goal without running them again (a robot should not open a gripper
  twice because a small model repeats itself); the step limit is the goal's
  ``max_steps`` (0 = the node's), and reaching it is an error ("no final
  answer").
* ``bfcl`` - the generation loop of bfcl-eval's own model handlers
  (``bfcl_eval/model_handler/base_handler.py``: ``inference_single_turn_*``,
  ``inference_multi_turn_*``), so benchmark scores mean what BFCL's scores
  mean.  Every reply is recorded as it came: one that is empty, has no call,
  or does not decode ends the goal (single-turn: the first reply is the
  answer; multi-turn: "Proceed to next turn"); calls are always executed and
  recorded, repeats included (a repeated ``cd`` changes the state); a goal
  may execute :data:`BFCL_MAXIMUM_STEP_LIMIT` steps with calls, and one more
  force-terminates it (``AgentResult.force_terminated``; BFCL then stops the
  case, which fails as ``multi_turn:force_terminated`` unless it was the last
  turn).  The step limit is BFCL's: a goal may not set ``max_steps``.

Plain Python, no ROS and no bfcl_eval import: the agent node validates a
goal's protocol with :func:`rules_for_goal` before any LLM call.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Optional

#: bfcl-eval's ``constants.default_prompts.MAXIMUM_STEP_LIMIT`` (a test checks it
#: against the installed bfcl-eval): steps with calls one user turn may execute
BFCL_MAXIMUM_STEP_LIMIT = 20

DEFAULT_PROTOCOL = "robot"


@dataclass(frozen=True)
class LoopRules:
    """What ends a goal and what is recorded (see the module docstring)."""

    name: str
    #: a reply that looks like a call but does not parse: True = answer "Error: ..."
    #: and ask again (within the step limit); False = it ends the goal, recorded as it came
    retry_unparsed: bool
    #: the model re-issues the previous step's successful calls: True = the goal ends
    #: without running them again; False = they are executed and recorded like any call
    stop_on_repeated_calls: bool
    #: LLM calls per goal fixed by the protocol (a goal's max_steps is then refused);
    #: None = the goal's max_steps, else the node's default
    max_steps: Optional[int] = None
    #: the last allowed step still made calls (they were executed): True = the goal is
    #: force-terminated (``AgentResult.force_terminated``); False = "no final answer" error
    force_terminate_at_limit: bool = False
    #: one line for logs, run.json and reports
    description: str = ""

    @property
    def fixed_steps(self) -> bool:
        return self.max_steps is not None


ROBOT = LoopRules(
    name="robot", retry_unparsed=True, stop_on_repeated_calls=True, max_steps=None,
    force_terminate_at_limit=False,
    description="the agent's robot-facing rules: unparsed replies are retried, a repeat of the last "
                "successful calls ends the goal unexecuted, the goal's max_steps (default 4) limits the LLM calls")

BFCL = LoopRules(
    name="bfcl", retry_unparsed=False, stop_on_repeated_calls=False,
    max_steps=BFCL_MAXIMUM_STEP_LIMIT + 1, force_terminate_at_limit=True,
    description=f"bfcl-eval's own inference loop: the first reply without a decodable call ends the turn "
                f"(single-turn: the first reply is scored), repeated calls are executed, more than "
                f"{BFCL_MAXIMUM_STEP_LIMIT} steps with calls force-terminate the case")

PRESETS: dict[str, LoopRules] = {ROBOT.name: ROBOT, BFCL.name: BFCL}


def protocol_names() -> list[str]:
    return sorted(PRESETS)


def get_rules(name: str) -> LoopRules:
    """The preset called ``name`` (blanks and case ignored; empty = ``robot``);
    ``ValueError`` naming the valid ones otherwise."""
    key = (name or "").strip().lower() or DEFAULT_PROTOCOL
    rules = PRESETS.get(key)
    if rules is None:
        raise ValueError(f"unknown protocol {name!r}; valid: {', '.join(protocol_names())} "
                         f"(empty = {DEFAULT_PROTOCOL})")
    return rules


def rules_for_goal(protocol: str, max_steps: int = 0) -> LoopRules:
    """The rules a goal runs under; ``ValueError`` (one line) for an unknown
    protocol or a ``max_steps`` that the protocol fixes itself."""
    rules = get_rules(protocol)
    if rules.fixed_steps and int(max_steps or 0) != 0:
        raise ValueError(f"protocol {rules.name!r} fixes its own step limit ({rules.max_steps} LLM calls); "
                         f"max_steps must be 0 (got {int(max_steps)})")
    return rules


__all__ = ["BFCL", "BFCL_MAXIMUM_STEP_LIMIT", "DEFAULT_PROTOCOL", "LoopRules", "PRESETS", "ROBOT",
           "get_rules", "protocol_names", "rules_for_goal"]
