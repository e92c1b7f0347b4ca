"""The launcher's typed bench run (issue 22), without starting a node: a run is built from
setting values (all bad values refused at once, named by flag), params.yaml gets what the
run sets, and a grid cell is a typed run whose ``bench_args`` come on top of its axes."""
from pathlib import Path

import pytest

from slm_agent.bench.grid import GridSpec
from slm_agent.launcher.bench import BenchError, BenchRun, parse_run_flags, run_flags
from slm_agent.launcher.grid import cell_run
from slm_agent.settings import (AgentSettings, BenchmarkSettings, GoldAgentSettings, RecorderSettings,
                                TelemetrySettings)


def test_a_run_from_values_is_typed_and_labelled():
    run = BenchRun.from_values({"limit": 3, "strategy": " ReAct ", "concurrency": 2, "model": "m"})
    assert isinstance(run.agent, AgentSettings) and run.model == "m" and not run.gold
    assert run.benchmark.strategy == "react" and run.benchmark.limit == 3
    assert run.benchmark.model == "m" and run.benchmark.min_subscribers == 1   # recorded: wait for the recorder
    params = run.params(Path("/r/bag"))
    assert params[AgentSettings] == {"model": "m", "autostart": True, "max_parallel_goals": 2,
                                     "max_queued_goals": 4, "min_subscribers": 1}   # its first goal waits too
    assert params[RecorderSettings] == {"output": "/r/bag"} and TelemetrySettings in params
    assert set(params[BenchmarkSettings]) == {*run_flags()[BenchmarkSettings], "model", "min_subscribers"}
    gold = BenchRun.from_values({"delay_s": 0.5}, agent="gold", record=False, telemetry=False)
    assert gold.gold and gold.benchmark.model == "gold" and gold.benchmark.min_subscribers == 0
    assert gold.params()[GoldAgentSettings] == {"suite": "bfcl", "corrupt": False, "delay_s": 0.5}  # the run's suite
    recorded_gold = BenchRun.from_values({}, agent="gold").params(Path("/r/bag"))[GoldAgentSettings]
    assert recorded_gold["min_subscribers"] == 1
    assert set(gold.params()) == {BenchmarkSettings, GoldAgentSettings}


def test_every_bad_value_is_one_line_naming_its_flag():
    with pytest.raises(BenchError) as err:
        BenchRun.from_values({"limit": -1, "strategy": "foo", "reader": "nope"})
    lines = err.value.args
    assert len(lines) == 3, lines
    assert "--limit: must be an integer (>= 0) (got -1)" in lines
    assert "--strategy: must be one of direct, react, reflact (got 'foo')" in lines


def test_bench_args_are_parsed_once_and_override_the_cells_axes(tmp_path):
    assert parse_run_flags([]) == {}
    assert parse_run_flags(["--strategy", "react", "--no-record"]) == {"strategy": "react", "record": False}
    with pytest.raises(BenchError, match="bench_args: unrecognized arguments: --nope"):
        parse_run_flags(["--nope"])
    spec = GridSpec.parse({"models": ["a"], "strategies": ["direct"], "limit": 2,
                           "bench_args": ["--strategy", "react", "--no-report"]})
    (cell,) = spec.cells()
    run = cell_run(spec, cell, tmp_path / "c")
    assert run.benchmark.strategy == "react", "bench_args come after the cell's axes"
    assert run.benchmark.limit == 2 and run.model == "a" and run.out == tmp_path / "c"
    assert run.telemetry is None and run.quiet and not run.report and not run.record
