"""Cascade settings (issue 26) through the generated routes: `slm-agent bench` flags, the
agent's params.yaml section, the grid's fallback_models axis (plain Python, no node started)."""
from __future__ import annotations

from pathlib import Path

import pytest

from slm_agent.bench.grid import GridError, GridSpec
from slm_agent.launcher.bench import BenchError, BenchRun, check_run, parse_run_flags, run_flags
from slm_agent.settings import AgentSettings, SettingsError


def test_bench_flags_are_generated_from_the_declarations():
    assert {"fallback_model", "escalate_on", "escalate_signal", "escalate_threshold"} <= set(run_flags()[AgentSettings])
    values = parse_run_flags(["--fallback-model", "qwen2.5-coder-0.5b", "--escalate-on", "invalid, low_confidence",
                              "--escalate-threshold", "-1.5", "--escalate-signal", "top_margin"])
    run = BenchRun.from_values({**values, "output_dir": "x"}, record=False)
    assert run.agent.escalate_on == "invalid,low_confidence"
    section = run.params()[AgentSettings]
    assert section["fallback_model"] == "qwen2.5-coder-0.5b" and section["escalate_threshold"] == -1.5
    assert section["escalate_signal"] == "top_margin"
    # a run without them writes the agent's section exactly as before
    assert BenchRun.from_values({"model": "m"}, record=False).params()[AgentSettings] == {"model": "m",
                                                                                         "autostart": True}


def test_bad_cascade_values_are_one_line_each():
    with pytest.raises(BenchError) as err:
        BenchRun.from_values({"escalate_on": "invalid,sometimes", "escalate_signal": "entropy",
                              "escalate_threshold": 3.0})
    text = "\n".join(err.value.args)
    assert "--escalate-on: unknown trigger(s) 'sometimes'" in text
    assert "--escalate-signal: must be one of min_logprob, top_margin" in text
    assert "--escalate-threshold: must be a number (>= -100, <= 1)" in text
    with pytest.raises(SettingsError):
        AgentSettings.parse({"escalate_on": "never"})


def test_a_fallback_profile_that_cannot_load_is_refused_before_any_node_starts(tmp_path):
    run = BenchRun.from_values({"output_dir": str(tmp_path / "o"), "fallback_model": "no-such-profile",
                                "categories": "simple_python", "limit": 1}, record=False)
    with pytest.raises(BenchError) as err:
        check_run(run)
    line = next(a for a in err.value.args if a.startswith("--fallback-model:"))
    assert "no-such-profile" in line and "\n" not in line


def test_fallback_models_axis_keeps_other_grids_cell_names():
    plain = GridSpec.parse({"models": ["a"], "strategies": ["direct", "react"]})
    with_axis = GridSpec.parse({"models": ["a"], "fallback_models": ["", "big"], "strategies": ["direct", "react"]})
    assert [c.name for c in plain.cells()] == ["a__direct__json", "a__react__json"]
    names = [c.name for c in with_axis.cells()]
    assert names == ["a__direct__json", "a__react__json", "a__direct__json__fb-big", "a__react__json__fb-big"]
    cells = with_axis.cells()
    assert cells[0].agent_key == plain.cells()[0].agent_key        # no fallback: the same agent as before
    assert cells[2].agent_key != cells[0].agent_key and cells[2].agent_key == cells[3].agent_key
    assert cells[2].run_values(with_axis, Path("/x"))["fallback_model"] == "big"
    assert "fallback_model" not in cells[0].run_values(with_axis, Path("/x"))
    # a grid.json written before the axis existed reads as the same grid
    old = {k: v for k, v in plain.to_dict().items() if k != "fallback_models"}
    assert GridSpec.parse(old).to_dict() == plain.to_dict()
    with pytest.raises(GridError, match="fallback_models: the gold agent has no fallback"):
        GridSpec.parse({"agent": "gold", "fallback_models": ["big"]})
