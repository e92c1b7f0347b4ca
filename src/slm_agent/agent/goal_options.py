"""Per-goal overrides of the agent's prompt settings (RunTask goal fields).

Why here: a goal may override the node's ``strategy``, ``serialization``,
``chat_format`` and ``constrained`` settings, and an ablation sends many goals
with different values to one loaded model.  The agent node resolves the goal's
texts against its configured defaults with :func:`resolve_goal_options` (an
unknown value raises ``ValueError`` with one line naming the valid ones, and
the node fails only that goal); the benchmark declares the same choices for
what it sends (:data:`SWITCH_VALUES`, via ``settings.choices_of``).

Plain Python: importable without rclpy.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Any

#: values of a tri-state goal switch: "" = the node's setting, "on", "off"
SWITCH_VALUES: tuple[str, ...] = ("", "on", "off")


@dataclass(frozen=True)
class GoalOptions:
    """The prompt settings one goal runs with (all resolved, never empty)."""

    strategy: str
    serialization: str
    chat_format: str      # raw | chat
    constrained: bool     # JSON-schema constrained decoding


def resolve_switch(name: str, value: str, default: bool) -> bool:
    """A goal's tri-state switch text -> bool (``""`` = ``default``; blanks and case ignored)."""
    text = (value or "").strip().lower()
    if not text:
        return default
    if text in ("on", "off"):
        return text == "on"
    raise ValueError(f"unknown {name} {value!r}; valid: on, off (or empty: the agent's setting)")


def switch_text(value: bool) -> str:
    """``True`` -> ``"on"``: how a result reports a switch in force."""
    return "on" if value else "off"


def resolve_goal_options(defaults: GoalOptions, profile: Any, *, strategy: str = "", serialization: str = "",
                         chat_format: str = "", constrained: str = "") -> GoalOptions:
    """``defaults`` (the node's configured values) with a goal's non-empty overrides.

    Strategy and serialization names are checked when the strategy is built
    (``strategies.make_strategy``); ``chat_format`` and ``constrained`` here.
    ``profile``: the loaded model profile (only its type matters to
    ``resolve_chat_format``, which maps an empty value from ``chat.mode``; an
    empty goal value keeps the node's resolved one instead).
    """
    from slm_agent.agent.serializers import SERIALIZERS
    from slm_agent.agent.strategies import resolve_chat_format

    ser = (serialization or "").strip().lower() or defaults.serialization
    fmt = defaults.chat_format
    if (chat_format or "").strip():
        fmt = resolve_chat_format(chat_format, profile)
    elif getattr(SERIALIZERS.get(ser), "reply_format", ""):
        fmt = "chat"  # native / bfcl render with the chat template, whatever the node's default
    return GoalOptions(
        strategy=(strategy or "").strip().lower() or defaults.strategy,
        serialization=ser,
        chat_format=fmt,
        constrained=resolve_switch("constrained", constrained, defaults.constrained),
    )


__all__ = ["GoalOptions", "SWITCH_VALUES", "resolve_goal_options", "resolve_switch", "switch_text"]
