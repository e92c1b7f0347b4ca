"""``slm-agent dataset`` sources and curation (issue 15), no model, no ROS.

* ToolMind: a fixture with every known quirk (``<think>``, string arguments,
  results paired by position, Python type names, flat property maps,
  ``arguments`` for ``parameters``, double wrapping, tools as a JSON string)
  and rows that must be dropped, each for its own reason;
* a run directory written by the real harness path (toy suite, real agent
  loop, scripted outputs): passed cases only, duplicates and unparsed
  replies removed, the multi-goal conversation joined with its tool calls;
* the builder end to end through the CLI: counts in report.json, whole
  clusters on one side of the split.
"""
from __future__ import annotations

import json
import sys
from collections import Counter
from pathlib import Path

import pytest

from slm_agent.dataset.build import DatasetOptions, build_dataset, read_jsonl
from slm_agent.dataset.records import Drops
from slm_agent.dataset.rundir import read_run_dir
from slm_agent.dataset.toolmind import RowError, json_type, normalize_row, read_toolmind

HERE = Path(__file__).resolve().parent
FIXTURE = HERE / "fixtures" / "toolmind_quirks.jsonl"
sys.path.insert(0, str(HERE))
from rundir_fixture import make_run_dir  # noqa: E402


def test_toolmind_fixture_every_quirk_normalised_and_every_bad_row_dropped_with_its_reason():
    drops, fixes = Drops(), Counter()
    samples = list(read_toolmind(FIXTURE, drops, fixes))
    assert len(samples) == 6          # 5 distinct good rows + 1 duplicate (dropped later, by the builder)
    assert drops.as_dict() == {"toolmind": {
        "unreadable line: not JSON": 1,
        "tool call arguments are not JSON": 1,
        "tool results do not pair with the calls by position": 1,
        "unknown role 'function'": 1,
        "calls a tool that is not in its tools": 1}}
    assert fixes["<think> removed"] == 5                  # 2 in row 1, 1 in row 3, 2 in the duplicate of row 1
    assert fixes["string arguments parsed"] == 2
    assert fixes["flat property map wrapped"] == 1
    assert fixes["tool 'arguments' used as 'parameters'"] == 1
    assert fixes["tool double-wrapped"] == 1 and fixes["tools given as a JSON string"] == 1

    weather, booking, convert = samples[0], samples[1], samples[2]
    assert "<think>" not in json.dumps(weather.messages)
    assert weather.messages[-1]["content"] == "It is 18 C and clear in Paris."
    props = weather.tools[0]["function"]["parameters"]["properties"]
    assert props["city"] == {"type": "string", "description": "city name"}
    assert props["units"] == {"type": "array", "items": {"type": "string"}}
    params = booking.tools[0]["function"]["parameters"]
    assert params == {"type": "object", "properties": {"restaurant": {"type": "string"},
                                                       "people": {"type": "integer"}, "time": {"type": "string"}}}
    assert booking.calls() == [{"name": "book_table", "arguments": {"restaurant": "Luigi's", "people": 4,
                                                                    "time": "19:00"}}]
    # two calls answered by position: each result names its call
    assert convert.tools[0]["function"]["name"] == "convert"
    ids = [c["id"] for c in convert.messages[1]["tool_calls"]]
    assert [m["tool_call_id"] for m in convert.messages[2:4]] == ids
    assert convert.calls()[1]["arguments"] == {"amount": 5, "from": "GBP", "to": "EUR"}


@pytest.mark.parametrize("text, schema", [
    ("str", {"type": "string"}), ("int", {"type": "integer"}), ("Optional[float]", {"type": "number"}),
    ("List[int]", {"type": "array", "items": {"type": "integer"}}), ("Dict[str, Any]", {"type": "object"}),
    ("bool", {"type": "boolean"}), ("Widget", {}),
])
def test_python_type_names_map_to_json_schema(text, schema):
    assert json_type(text) == schema


def test_a_row_without_conversations_is_refused_in_one_line():
    with pytest.raises(RowError, match="no 'conversations' list"):
        normalize_row({"messages": []})


def test_run_directory_keeps_passed_cases_and_joins_the_goals_with_their_calls(tmp_path):
    run = make_run_dir(tmp_path / "run")
    drops, fixes = Drops(), Counter()
    samples = {s.meta["case_id"]: s for s in read_run_dir(run, drops, fixes)}
    assert set(samples) == {"single_0", "single_2", "chat_0", "chat_1"}
    assert drops.as_dict() == {"rundir": {"case failed": 1}}
    assert fixes["unparsed replies removed"] == 1             # chat_0's first reply
    chat = samples["chat_0"]
    assert [m["role"] for m in chat.messages] == ["user", "assistant", "tool", "assistant",
                                                  "user", "assistant", "tool", "assistant"]
    assert chat.calls() == [{"name": "add", "arguments": {"n": 2}}, {"name": "add", "arguments": {"n": 3}}]
    assert [m["content"] for m in chat.messages if m["role"] == "assistant" and not m.get("tool_calls")] == [
        "counter is 2", "counter is 5"]
    assert chat.messages[4]["content"] == "now add 3 more"
    assert chat.meta["passed"] is True and chat.meta["strategy"] == "direct"
    # the unparsed reply and the error fed back are gone, so chat_0 equals chat_1
    assert chat.messages == samples["chat_1"].messages


def test_bfcl_cases_are_held_out_unless_asked(tmp_path):
    run = make_run_dir(tmp_path / "run")
    lines = [json.loads(x) for x in (run / "results.jsonl").read_text().splitlines()]
    for rec in lines:
        rec["suite"] = "bfcl"
    (run / "results.jsonl").write_text("".join(json.dumps(r) + "\n" for r in lines))
    drops = Drops()
    assert list(read_run_dir(run, drops)) == []
    assert drops.as_dict()["rundir"]["BFCL case (held-out benchmark; --allow-bfcl to keep)"] == 4
    assert len(list(read_run_dir(run, Drops(), allow_bfcl=True))) == 4


def test_builder_through_the_cli_counts_everything_and_splits_by_cluster(tmp_path, capsys):
    from slm_agent.cli import main

    run = make_run_dir(tmp_path / "run")
    out = tmp_path / "ds"
    code = main(["dataset", str(run), "--toolmind", str(FIXTURE), "--val-fraction", "0.3", "--clusters", "3",
                 "--strategy", "direct", "--serialization", "json", "--output", str(out)])
    assert code == 0
    report = json.loads((out / "report.json").read_text())
    assert report["read"] == {"rundir": 4, "toolmind": 6}
    assert report["dropped"]["rundir"] == {"case failed": 1, "duplicate": 2}   # single_2 and chat_1
    assert report["dropped"]["toolmind"]["duplicate"] == 1
    assert report["dropped_total"] == 9
    assert report["train"] + report["validation"] == 7 and report["validation"] > 0
    assert report["scrubbed"]["email"] >= 3 and report["scrubbed"]["phone"] == 1
    train, val = read_jsonl(out / "train.jsonl"), read_jsonl(out / "validation.jsonl")
    assert len(train) == report["train"] and len(val) == report["validation"]
    # no cluster on both sides
    assert not {r["meta"]["cluster"] for r in train} & {r["meta"]["cluster"] for r in val}
    sizes = {c["id"]: c["size"] for c in report["clusters"]}
    assert sum(sizes.values()) == 7
    printed = capsys.readouterr().out
    assert "kept 7 records" in printed and "dropped 1 (rundir): case failed" in printed


def test_builder_refuses_no_source_and_a_missing_file(tmp_path):
    with pytest.raises(ValueError, match="no source given"):
        build_dataset(DatasetOptions(), tmp_path)
    with pytest.raises(FileNotFoundError, match="ToolMind file not found"):
        build_dataset(DatasetOptions(toolmind=[str(tmp_path / "nope.jsonl")]), tmp_path)
