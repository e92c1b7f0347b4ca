"""What one agent goal runs with, decided before its first LLM call.

Why a separate step: a goal names its loop rules, a tool set, extra tools and
prompt overrides; every one of them can be wrong, and a wrong one must fail
*that goal* with one line (the node keeps serving) before any model time is
spent.  :class:`GoalPlanner` holds what configure loaded (profile, tool set,
defaults) and two small caches that must outlive a goal:

* tool sets named by goals, loaded once (at most ``MAX_TOOL_SETS``);
* one :class:`~slm_agent.agent.safety.SafetyEnvelope` per distinct tool
  list, so a tool's ``max_rate_hz`` holds across goals that offer the same
  tools (at most ``MAX_ENVELOPES``).

Plain Python: the agent node builds the planner at configure
(:func:`load_planner`), converts each goal's messages and passes the fields in
(:meth:`GoalPlanner.plan`).
"""
from __future__ import annotations

import json
from collections import OrderedDict
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Callable, Optional, Sequence

from slm_agent.agent.goal_options import GoalOptions, resolve_goal_options
from slm_agent.agent.protocol import LoopRules, rules_for_goal
from slm_agent.agent.safety import SafetyEnvelope
from slm_agent.agent.strategies import Strategy, make_strategy
from slm_agent.agent.toolset import ToolSet, ToolSetError, load_tool_set, resolve_tool_set
from slm_agent.agent.types import ToolSpec

if TYPE_CHECKING:
    from slm_agent.settings import AgentSettings

MAX_TOOL_SETS = 16
MAX_ENVELOPES = 32


def spec_key(spec: ToolSpec) -> str:
    """Everything that makes two specs different tools (keys envelopes and tool clients)."""
    return json.dumps([spec.name, spec.service_name, spec.service_type, spec.parameters, spec.timeout_s,
                       spec.requires_confirmation, spec.max_rate_hz, spec.defaults],
                      sort_keys=True, default=str)


class GoalError(ValueError):
    """A goal cannot run; the text (one line) goes into the result's ``error``."""


@dataclass(frozen=True)
class GoalPlan:
    """A goal's tools, prompt strategy, settings, step limit, envelope and loop rules."""

    tools: list[ToolSpec]
    strategy: Strategy
    options: GoalOptions
    max_steps: int
    envelope: SafetyEnvelope
    rules: LoopRules
    #: the goal's strategy and serialization rendered for the fallback model's profile
    #: (None: no fallback_model configured; agent/cascade.py)
    fallback_strategy: Optional[Strategy] = None


class GoalPlanner:
    """Configured defaults plus the caches goals share; :meth:`plan` checks one goal."""

    def __init__(self, profile: Any, tool_set: Optional[ToolSet], options: GoalOptions, max_steps: int,
                 max_tokens: int, fallback: Optional["FallbackPlan"] = None) -> None:
        self.profile = profile
        self.tool_set = tool_set
        self.options = options
        self.max_steps = max_steps
        self.max_tokens = max_tokens
        self.fallback = fallback
        self._tool_sets: "OrderedDict[str, ToolSet]" = OrderedDict()
        self._envelopes: "OrderedDict[str, SafetyEnvelope]" = OrderedDict()

    @property
    def tools(self) -> list[ToolSpec]:
        """The loaded tool set's tools (a goal's default)."""
        return list(self.tool_set.tools) if self.tool_set else []

    def named_tool_set(self, name: str) -> ToolSet:
        """A tool set by name or path, loaded once; :class:`GoalError` when it cannot be."""
        ts = self._tool_sets.get(name)
        if ts is None:
            try:
                ts = load_tool_set(resolve_tool_set(name))
            except ToolSetError as exc:
                raise GoalError(f"tool_set {name!r}: {exc}") from exc
            self._tool_sets[name] = ts
            while len(self._tool_sets) > MAX_TOOL_SETS:
                self._tool_sets.popitem(last=False)
        return ts

    def envelope(self, tools: Sequence[ToolSpec]) -> SafetyEnvelope:
        """One envelope per tool list, so rate limits hold across goals with the same tools."""
        key = json.dumps([spec_key(t) for t in tools])
        env = self._envelopes.get(key)
        if env is None:
            env = self._envelopes[key] = SafetyEnvelope(tools)
            while len(self._envelopes) > MAX_ENVELOPES:
                self._envelopes.popitem(last=False)
        self._envelopes.move_to_end(key)
        return env

    def plan(self, *, protocol: str = "", max_steps: int = 0, tool_set: str = "", extras: Sequence[Any] = (),
             convert: Callable[[Any], ToolSpec] = lambda spec: spec, strategy: str = "", serialization: str = "",
             chat_format: str = "", constrained: str = "") -> GoalPlan:
        """Check a goal's fields in order (rules, tool set, extra tools, prompt settings);
        raises :class:`GoalError` with one line for the first problem.

        ``extras``: the goal's extra tools, each turned into a ToolSpec by
        ``convert`` (a ValueError there names the tool); one with the name of
        a set tool replaces it.
        """
        try:
            rules = rules_for_goal(protocol, max_steps)
        except ValueError as exc:
            raise GoalError(str(exc)) from exc
        ts = self.named_tool_set(tool_set.strip()) if tool_set.strip() else self.tool_set
        try:
            specs = [convert(m) for m in extras]
        except ValueError as exc:
            raise GoalError(str(exc)) from exc
        names = [t.name for t in specs]
        dupes = sorted({n for n in names if names.count(n) > 1})
        if dupes:
            raise GoalError(f"goal tools repeat the name(s) {', '.join(dupes)}")
        tools = [t for t in (ts.tools if ts else []) if t.name not in set(names)] + specs
        def rendered(model: Any) -> tuple[Any, Strategy]:
            """The goal's prompt settings resolved and rendered for ``model`` (the primary
            planner, or the fallback's plan: both carry options, profile and max_tokens)."""
            opts = resolve_goal_options(model.options, model.profile, strategy=strategy, serialization=serialization,
                                        chat_format=chat_format, constrained=constrained)
            return opts, make_strategy(opts.strategy, opts.serialization, opts.chat_format,
                                       ts.example if ts else None, model.max_tokens, model.profile.chat.prompt_layout,
                                       model.profile.chat.native_calls)

        try:
            opts, prompt = rendered(self)
        except ValueError as exc:
            raise GoalError(str(exc)) from exc
        fallback = None
        if self.fallback is not None:
            try:
                fallback = rendered(self.fallback)[1]
            except ValueError as exc:
                raise GoalError(f"fallback model {self.fallback.profile.name}: {exc}") from exc
        return GoalPlan(tools, prompt, opts, int(max_steps) or self.max_steps, self.envelope(tools), rules,
                        fallback)


@dataclass(frozen=True)
class FallbackPlan:
    """The cascade's fallback model as configure loaded it (agent/cascade.py): its profile,
    the node's prompt defaults resolved for that profile, and its tokens per call."""

    profile: Any
    options: GoalOptions
    max_tokens: int


def _one_line(exc: Exception) -> str:
    return "; ".join(line.strip() for line in str(exc).splitlines() if line.strip())


def load_fallback(settings: "AgentSettings", tool_set: Optional[ToolSet]) -> Optional[FallbackPlan]:
    """The fallback model's plan (None when ``fallback_model`` is empty); ValueError with
    one line naming the setting when its profile cannot load (an unknown name, a missing
    model file) or the node's prompt settings cannot render for it."""
    from slm_agent.agent.strategies import resolve_chat_format
    from slm_agent.profiles import load_profile

    s = settings
    name = s.fallback_model.strip()
    if not name:
        return None
    try:
        profile = load_profile(name)
        options = GoalOptions(s.strategy, s.serialization, resolve_chat_format(s.chat_format, profile),
                              s.constrained)
        if not s.chat_format.strip():
            options = resolve_goal_options(options, profile)
        max_tokens = s.max_tokens or profile.sampling.max_tokens
        make_strategy(options.strategy, options.serialization, options.chat_format,
                      tool_set.example if tool_set else None, max_tokens, profile.chat.prompt_layout,
                      profile.chat.native_calls)
    except ValueError as exc:   # ProfileError lists its problems one per line
        raise ValueError(f"fallback_model {name!r}: {_one_line(exc)}") from exc
    return FallbackPlan(profile, options, max_tokens)


def load_planner(settings: "AgentSettings") -> tuple[GoalPlanner, str]:
    """The planner of the agent's configured ``settings`` (validated already) and a label of its
    tool set: loads the tool set and the model profile, and builds the default strategy once so
    a combination that cannot work fails at configure.  ValueError (one message) otherwise."""
    from slm_agent.agent.strategies import resolve_chat_format
    from slm_agent.profiles import load_profile

    s = settings
    tool_set: Optional[ToolSet] = None
    label = "(none)"
    if s.tool_set.strip():
        try:
            path = resolve_tool_set(s.tool_set.strip())
            tool_set = load_tool_set(path)
        except ToolSetError as exc:
            raise ValueError(f"tool_set {s.tool_set!r}: {exc}") from exc
        label = f"{tool_set.name} ({path})"
    profile = load_profile(s.model)  # ProfileError is a ValueError listing every problem
    options = GoalOptions(s.strategy, s.serialization, resolve_chat_format(s.chat_format, profile), s.constrained)
    if not s.chat_format.strip():  # native / bfcl: the chat template, whatever the profile's default format
        options = resolve_goal_options(options, profile)
    max_tokens = s.max_tokens or profile.sampling.max_tokens
    make_strategy(options.strategy, options.serialization, options.chat_format,
                  tool_set.example if tool_set else None, max_tokens, profile.chat.prompt_layout,
                  profile.chat.native_calls)
    fallback = load_fallback(s, tool_set)
    return GoalPlanner(profile, tool_set, options, s.max_steps, max_tokens, fallback), label


__all__ = ["FallbackPlan", "GoalError", "GoalPlan", "GoalPlanner", "MAX_ENVELOPES", "MAX_TOOL_SETS", "load_fallback",
           "load_planner", "spec_key"]
