"""One declaration per setting (slm_agent.settings): the documented YAML
defaults, the ROS descriptors and the CLI flags all follow it."""
from __future__ import annotations

import argparse
from pathlib import Path

import pytest
import yaml

from slm_agent.settings import (NODE_SETTINGS, AgentSettings, BenchmarkSettings, SettingsError,
                                TelemetrySettings, add_cli_arguments)

ROOT = Path(__file__).resolve().parents[1]
#: config file -> the nodes it documents
CONFIG_FILES = {"agent.yaml": ["agent"], "telemetry.yaml": ["telemetry"],
                "benchmark.yaml": ["benchmark", "gold_agent", "recorder"]}


@pytest.mark.parametrize("file,node", [(f, n) for f, ns in CONFIG_FILES.items() for n in ns])
def test_config_yaml_documents_exactly_the_declared_defaults(file, node):
    data = yaml.safe_load((ROOT / "config" / file).read_text())
    params = data[node]["ros__parameters"]
    cls = NODE_SETTINGS[node]
    assert set(params) == set(cls.defaults()), (
        f"config/{file} [{node}] drifted from slm_agent.settings.{cls.__name__}: "
        f"only in YAML {sorted(set(params) - set(cls.defaults()))}, "
        f"only declared {sorted(set(cls.defaults()) - set(params))}")
    for name, default in cls.defaults().items():
        assert params[name] == default and type(params[name]) is type(default), (
            f"config/{file} [{node}] {name}: YAML says {params[name]!r}, declared default {default!r}")


def test_every_node_settings_file_is_checked():
    assert sorted(n for ns in CONFIG_FILES.values() for n in ns) == sorted(NODE_SETTINGS)


def test_defaults_are_valid():
    for cls in NODE_SETTINGS.values():
        cls.parse(cls.defaults())


def test_every_bad_value_is_named_at_once():
    with pytest.raises(SettingsError) as err:
        BenchmarkSettings.parse({"strategy": "foo", "serialization": "yaml", "limit": -3, "max_steps": -1,
                                 "case_timeout_s": -1.0})
    text = "\n".join(err.value.problems)
    for needle in ("strategy='foo': must be one of direct, react, reflact",
                   "serialization='yaml': must be one of", "limit=-3", "max_steps=-1",
                   "case_timeout_s=-1.0: must be a number (> 0)"):
        assert needle in text, text
    assert len(err.value.problems) == 5


def test_cross_setting_rule():
    with pytest.raises(SettingsError, match="temp_warn_c .* must be < temp_error_c"):
        TelemetrySettings.parse({"temp_warn_c": 99.0})


def test_unknown_and_wrongly_typed_settings_are_refused():
    with pytest.raises(SettingsError, match="max_stpes"):
        AgentSettings.parse({"max_stpes": 3})
    with pytest.raises(SettingsError, match="constrained.*true or false"):
        AgentSettings.parse({"constrained": "yes"})
    assert AgentSettings.parse({"feedback_max_delay_s": 1}).feedback_max_delay_s == 1.0  # ROS ints for floats


def test_choices_come_from_the_agent_registries():
    from slm_agent.agent.serializers import SERIALIZERS
    from slm_agent.agent.strategies import STRATEGIES

    assert set(AgentSettings.declared("strategy").choices) == set(STRATEGIES)
    assert set(BenchmarkSettings.declared("serialization").choices) == set(SERIALIZERS)


@pytest.mark.parametrize("argv,needle", [
    (["--strategy", "foo"], "argument --strategy: must be one of"),
    (["--limit", "-3"], "argument --limit"),
    (["--limit", "x"], "argument --limit"),
    (["--case-timeout", "-1"], "argument --case-timeout: must be a number (> 0)"),
])
def test_cli_flags_are_generated_and_validated(argv, needle, capsys):
    ap = argparse.ArgumentParser(prog="slm-agent bench")
    add_cli_arguments(ap, BenchmarkSettings, ["strategy", "limit", "case_timeout_s"])
    with pytest.raises(SystemExit) as exc:
        ap.parse_args(argv)
    assert exc.value.code == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert needle in err[-1], err


def test_cli_defaults_and_help_follow_the_declaration():
    ap = argparse.ArgumentParser()
    add_cli_arguments(ap, BenchmarkSettings, ["case_timeout_s", "allow_different_run"])
    ns = ap.parse_args([])
    assert ns.case_timeout_s == BenchmarkSettings.defaults()["case_timeout_s"]
    assert ns.allow_different_run is False
    assert "per-case deadline" in ap.format_help()


def test_ros_descriptors_follow_the_declaration():
    from rcl_interfaces.msg import ParameterType

    from slm_agent.ros.params import descriptor

    d = descriptor(AgentSettings.declared("max_steps"), read_only=True)
    assert d.type == ParameterType.PARAMETER_INTEGER and d.read_only
    assert (d.integer_range[0].from_value, d.integer_range[0].to_value) == (1, 64)
    live = AgentSettings.declared("autostart")
    assert live.live and descriptor(live, read_only=False).type == ParameterType.PARAMETER_BOOL
    s = descriptor(BenchmarkSettings.declared("strategy"), read_only=True)
    assert "one of: direct" in s.additional_constraints


@pytest.mark.parametrize("node", sorted(NODE_SETTINGS))
def test_generated_params_file_holds_the_declared_defaults(node):
    """``slm-agent config --print NODE``: a --params-file generated from the declaration."""
    from slm_agent.settings import params_yaml

    cls = NODE_SETTINGS[node]
    data = yaml.safe_load(params_yaml({cls: None}))
    params = data[node]["ros__parameters"]
    assert params == cls.defaults()
    assert all(type(params[n]) is type(v) for n, v in cls.defaults().items())


def test_config_command_prints_every_node(capsys):
    from slm_agent.cli import main

    assert main(["config", "--print", "telemetry", "benchmark"]) == 0
    out = capsys.readouterr().out
    data = yaml.safe_load(out)
    assert set(data) == {"telemetry", "benchmark"}
    assert "# diagnostics WARN when any thermal zone reaches this" in out
    assert main(["config"]) == 0
    assert set(yaml.safe_load(capsys.readouterr().out)) == set(NODE_SETTINGS)


def test_params_file_values_are_validated_and_keep_their_types():
    from slm_agent.settings import GoldAgentSettings, params_yaml

    text = params_yaml({BenchmarkSettings: {"run_id": "15", "ids": "", "case_timeout_s": 600},
                        GoldAgentSettings: {"corrupt": True}})
    data = yaml.safe_load(text)
    assert data["benchmark"]["ros__parameters"] == {"ids": "", "run_id": "15", "case_timeout_s": 600.0}
    assert data["gold_agent"]["ros__parameters"] == {"corrupt": True}
    with pytest.raises(SettingsError, match="limit=-1"):
        params_yaml({BenchmarkSettings: {"limit": -1}})


def test_launch_texts_take_the_declared_types():
    from slm_agent.settings import from_texts

    assert from_texts(BenchmarkSettings, {"case_timeout_s": "600", "run_id": "15", "allow_different_run": "True",
                                          "strategy": " ReAct "}) == {
        "case_timeout_s": 600.0, "run_id": "15", "allow_different_run": True, "strategy": "react"}
    with pytest.raises(SettingsError) as err:
        from_texts(BenchmarkSettings, {"limit": "x", "allow_different_run": "maybe", "max_steps": "99"})
    assert {p.name for p in err.value.items} == {"limit", "allow_different_run", "max_steps"}


def test_bad_values_as_flag_lines():
    with pytest.raises(SettingsError) as err:
        BenchmarkSettings.parse({"strategy": "foo", "limit": -3, "output_dir": " "})
    lines = [p.for_flag(BenchmarkSettings.declared(p.name).flag) for p in err.value.items]
    assert lines == ["--limit: must be an integer (>= 0) (got -3)",
                     "--strategy: must be one of direct, react, reflact (got 'foo')",
                     "--output-dir: must not be empty (got ' ')"]


def test_every_settings_help_renders_even_with_a_percent_sign():
    """argparse %-formats help texts: a description saying "10 %" once crashed `slm-agent bench --help`."""
    for cls in NODE_SETTINGS.values():
        ap = argparse.ArgumentParser()
        add_cli_arguments(ap, cls, list(cls.defaults()))
        assert "--" in ap.format_help()
    ap = argparse.ArgumentParser()
    add_cli_arguments(ap, AgentSettings, ["escalate_threshold"])
    assert "10 % of cases" in ap.format_help()


def test_every_cli_command_prints_its_help():
    from slm_agent.cli import build_parser

    parser = build_parser()
    sub = next(a for a in parser._actions if isinstance(a, argparse._SubParsersAction))
    assert {"bench", "grid", "compare", "report", "dataset", "finetune"} <= set(sub.choices)
    for name, p in sub.choices.items():
        assert p.format_help().startswith("usage:"), name
