"""Per-goal overrides (slm_agent.agent.goal_options) and how the benchmark
records what was in force (slm_agent.bench.runner); plain Python, no ROS."""
from __future__ import annotations

from types import SimpleNamespace

import pytest

from slm_agent.agent.goal_options import GoalOptions, resolve_goal_options, resolve_switch
from slm_agent.bench import runner
from slm_agent.settings import BenchmarkSettings, SettingsError

NODE = GoalOptions(strategy="direct", serialization="json", chat_format="raw", constrained=False)
PROFILE_CHAT = SimpleNamespace(chat=SimpleNamespace(mode="chat"))


def test_empty_goal_fields_keep_the_node_settings():
    assert resolve_goal_options(NODE, PROFILE_CHAT) == NODE


def test_goal_fields_override_each_setting():
    got = resolve_goal_options(NODE, PROFILE_CHAT, strategy=" ReAct", serialization="TOON", chat_format="Chat ",
                               constrained=" on")
    assert got == GoalOptions("react", "toon", "chat", True)
    assert resolve_goal_options(GoalOptions("direct", "json", "chat", True), PROFILE_CHAT,
                                constrained="OFF").constrained is False


def test_native_and_bfcl_use_the_chat_template_unless_the_goal_says_raw():
    for ser in ("native", "bfcl"):
        assert resolve_goal_options(NODE, PROFILE_CHAT, serialization=ser).chat_format == "chat"
        assert resolve_goal_options(NODE, PROFILE_CHAT, serialization=ser, chat_format="raw").chat_format == "raw"
    assert resolve_goal_options(NODE, PROFILE_CHAT, serialization="toon").chat_format == "raw"


def test_empty_chat_format_follows_the_profile():
    from slm_agent.agent.strategies import resolve_chat_format

    assert resolve_chat_format("", SimpleNamespace(chat=SimpleNamespace(mode="raw", default_format="chat"))) == "raw"
    assert resolve_chat_format("", SimpleNamespace(chat=SimpleNamespace(mode="template", default_format="raw"))) == "raw"
    assert resolve_chat_format("", SimpleNamespace(chat=SimpleNamespace(mode="template", default_format="chat"))) == "chat"


@pytest.mark.parametrize("field, value, needle", [
    ("chat_format", "xml", "unknown chat_format 'xml'; valid: raw, chat"),
    ("constrained", "true", "unknown constrained 'true'; valid: on, off"),
])
def test_bad_goal_value_is_one_line_naming_the_valid_ones(field, value, needle):
    with pytest.raises(ValueError) as err:
        resolve_goal_options(NODE, PROFILE_CHAT, **{field: value})
    assert needle in str(err.value) and "\n" not in str(err.value)


def test_switch_default():
    assert resolve_switch("x", "", True) is True and resolve_switch("x", "  ", False) is False


def test_benchmark_declares_the_overrides_with_the_agent_choices():
    s = BenchmarkSettings.parse({"chat_format": " RAW", "constrained": "Off"})
    assert (s.chat_format, s.constrained) == ("raw", "off")
    with pytest.raises(SettingsError) as err:
        BenchmarkSettings.parse({"chat_format": "xml", "constrained": "maybe"})
    assert err.value.problems == ["chat_format='xml': must be one of , raw, chat",
                                  "constrained='maybe': must be one of , on, off"]


def test_record_says_what_the_agent_reported_else_the_override_sent():
    # no override sent: what the agent reported (a generator, as CasePlay.record passes them)
    reported = runner.reported_settings(r for r in [SimpleNamespace(chat_format="chat", constrained="on"),
                                                    SimpleNamespace(chat_format="chat", constrained="on")])
    assert reported == {"chat_format": "chat", "constrained": "on"}
    assert runner.goal_settings_in_force(runner.BenchConfig(), reported) == reported
    cfg = runner.BenchConfig(constrained="off")
    # the gold agent reports nothing: the record keeps what the goals carried ("" = agent's own)
    silent = runner.reported_settings([SimpleNamespace(chat_format="", constrained="")])
    assert silent == {} and runner.goal_settings_in_force(cfg, silent) == {"chat_format": "",
                                                                           "constrained": "off"}
    mixed = runner.reported_settings([SimpleNamespace(chat_format="raw", constrained="on"),
                                      SimpleNamespace(chat_format="chat", constrained="on")])
    assert mixed == {"chat_format": "raw,chat", "constrained": "on"}
