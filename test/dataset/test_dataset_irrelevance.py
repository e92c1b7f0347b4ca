"""``slm-agent dataset --irrelevance-share``: declines synthesised from kept calls (issue 25).

A teacher that always calls logs no answer without a call; the dataset pairs kept questions
with another task cluster's tools and teaches the decline (dataset/irrelevance.py)."""
from __future__ import annotations

import json
from pathlib import Path

from slm_agent.dataset.irrelevance import DECLINE, synthesise_irrelevance
from slm_agent.dataset.records import Sample, function_tool, tool_name

FIXTURE = Path(__file__).resolve().parent / "fixtures" / "toolmind_quirks.jsonl"


def _sample(i: int, tools: list[str]) -> Sample:
    return Sample(messages=[{"role": "system", "content": "sys"}, {"role": "user", "content": f"question {i}"},
                            {"role": "assistant", "content": "",
                             "tool_calls": [{"type": "function", "function": {"name": tools[0], "arguments": {}}}]}],
                  tools=[function_tool(t, t, {"type": "object", "properties": {}}) for t in tools], source="rundir",
                  meta={"case_id": f"case_{i}", "passed": True, "latency_ms": [1.0], "strategy": "direct"})


def test_declines_pair_a_question_with_an_unrelated_clusters_tools():
    samples = [_sample(0, ["weather"]), _sample(1, ["weather", "map"]), _sample(2, ["book"]),
               _sample(3, ["book", "weather"]), _sample(4, ["pay"]), _sample(5, ["pay"])]
    labels = [0, 0, 1, 1, 2, 2]
    out = synthesise_irrelevance(samples, labels, share=0.5, seed=0)
    assert len(out) == 3
    by_question = {s.meta["case_id"]: (s, lab) for s, lab in out}
    assert len(by_question) == 3, "each question declined once"
    for case_id, (s, lab) in by_question.items():
        i = int(case_id.split("_")[1])
        assert lab == labels[i], "a decline stays on its question's side of the split"
        assert [m["role"] for m in s.messages] == ["system", "user", "assistant"]
        assert s.messages[1]["content"] == f"question {i}" and s.messages[-1] == {"role": "assistant",
                                                                               "content": DECLINE}
        assert not s.calls() and s.source == "irrelevance"
        assert not {tool_name(t) for t in s.tools} & {tool_name(t) for t in samples[i].tools}
        donor = int(s.meta["tools_from"].split("_")[1])
        assert labels[donor] != lab and s.tools == samples[donor].tools
        assert s.meta["synthesised"] == "irrelevance" and "passed" not in s.meta and "latency_ms" not in s.meta
    assert synthesise_irrelevance(samples, labels, share=0.5, seed=0) == out, "seeded"
    assert len(synthesise_irrelevance(samples, labels, share=1.0, seed=0)) == 6
    assert synthesise_irrelevance(samples, labels, share=0.0) == []
    # every other cluster shares a tool name with the question: no donor, no decline
    assert synthesise_irrelevance([_sample(0, ["a"]), _sample(1, ["a"])], [0, 1], share=1.0) == []


def test_the_builder_renders_declines_as_answers_without_a_call(tmp_path):
    """Through the CLI, rendered in BFCL's format: counted under their own source, read back by
    the agent's decoder as no call (render drops what does not read back), split with their
    question."""
    from slm_agent.cli import main
    from slm_agent.dataset.build import read_jsonl

    out = tmp_path / "ds"
    assert main(["dataset", "--toolmind", str(FIXTURE), "--clusters", "3", "--val-fraction", "0.3",
                 "--strategy", "direct", "--serialization", "bfcl", "--irrelevance-share", "1", "-o", str(out)]) == 0
    report = json.loads((out / "report.json").read_text())
    made = report["read"]["irrelevance"]
    assert made >= 2
    assert report["kept"]["irrelevance"] == {"answer without a call": made}
    assert "another task cluster's tools" in report["kept_because"]["irrelevance"]
    rows = read_jsonl(out / "train.jsonl") + read_jsonl(out / "validation.jsonl")
    declines = [r for r in rows if r["meta"].get("synthesised") == "irrelevance"]
    assert len(declines) == made
    for r in declines:
        assert r["messages"][-1] == {"role": "assistant", "content": DECLINE}
        assert r["meta"]["serialization"] == "bfcl"
    val = {r["meta"]["cluster"] for r in read_jsonl(out / "validation.jsonl")}
    train = {r["meta"]["cluster"] for r in read_jsonl(out / "train.jsonl")}
    assert not val & train


def test_a_bad_irrelevance_share_is_one_line(tmp_path, capsys):
    import pytest

    from slm_agent.cli import main

    with pytest.raises(SystemExit) as exc:
        main(["dataset", "--toolmind", str(FIXTURE), "--irrelevance-share", "1.5", "-o", str(tmp_path / "o")])
    assert exc.value.code == 2
    [line] = capsys.readouterr().err.strip().splitlines()
    assert line == "slm-agent dataset: --irrelevance-share: must be a number in [0, 1] (got 1.5)"
