"""The personal-data scrubber (seeded data, exact counts) and rendering in each strategy.

Rendering is checked by round trip: each rendered assistant step, read back
by the same strategy the agent runs (``Strategy.interpret``), gives the
original call or final answer, so a model trained on it learns outputs the
agent can parse.
"""
from __future__ import annotations

import json
import sys
from pathlib import Path

import pytest

from slm_agent.agent.strategies import make_strategy
from slm_agent.dataset.cluster import cluster_samples, split_by_cluster
from slm_agent.dataset.records import Sample, assistant_call_message, function_tool
from slm_agent.dataset.render import render, specs_of
from slm_agent.dataset.scrub import EMAIL, NAME, PHONE, Scrubber


def test_scrubber_replaces_seeded_personal_data_and_counts_it():
    s = Scrubber()
    text = ("Hi, my name is Laura Smith. Write to laura.smith@example.com or j.doe+bills@mail.co.uk, "
            "call +1 (555) 123-4567 or 0151 496 0000. Mr. Jones and Peter were there.")
    out = s.text(text)
    assert out == (f"Hi, my name is {NAME}. Write to {EMAIL} or {EMAIL}, call {PHONE} or {PHONE}. "
                   f"Mr. {NAME} and {NAME} were there.")
    assert dict(s.counts) == {"email": 2, "phone": 2, "name": 3}


@pytest.mark.parametrize("text", [
    "Move to x=1.5 y=-2.0 on 2024-05-17 at 10:30, order #W2378156, 3 items, room 101.",
    "Call get_weather for Paris; the Final Answer is 42.",
])
def test_scrubber_leaves_non_personal_text_alone(text):
    s = Scrubber()
    assert s.text(text) == text and sum(s.counts.values()) == 0


def test_scrubber_keeps_tool_names_and_keys_and_scrubs_argument_values():
    s = Scrubber()
    msgs = s.messages([{"role": "user", "content": "email anna@x.org"},
                       assistant_call_message([("send_mail", {"to": "anna@x.org", "cc": ["Peter"], "n": 2})])])
    fn = msgs[1]["tool_calls"][0]["function"]
    assert fn["name"] == "send_mail" and fn["arguments"] == {"to": EMAIL, "cc": [NAME], "n": 2}
    assert msgs[0]["content"] == f"email {EMAIL}"
    assert dict(s.counts) == {"email": 2, "name": 1}


def _sample() -> Sample:
    tools = [function_tool("move_to", "Drive to a point", {"type": "object", "properties": {
        "x": {"type": "number"}, "y": {"type": "number"}}, "required": ["x", "y"]}),
        function_tool("get_battery", "Battery level", {"type": "object", "properties": {}})]
    return Sample(messages=[
        {"role": "user", "content": "Check the battery, then drive to (1, 2) and (3, 4)."},
        assistant_call_message([("get_battery", {})], id_prefix="a"),
        {"role": "tool", "tool_call_id": "a_0", "content": json.dumps({"percent": 80})},
        assistant_call_message([("move_to", {"x": 1, "y": 2}), ("move_to", {"x": 3, "y": 4})], id_prefix="b"),
        {"role": "tool", "tool_call_id": "b_0", "content": json.dumps({"status": "ok", "result": "arrived"})},
        {"role": "tool", "tool_call_id": "b_1", "content": "arrived"},
        {"role": "assistant", "content": "Battery 80%, visited both points."}], tools=tools, source="test")


@pytest.mark.parametrize("strategy", ["direct", "react", "reflact"])
@pytest.mark.parametrize("serialization", ["json", "toon", "natural"])
def test_rendered_steps_read_back_by_the_agents_strategy(strategy, serialization):
    sample = _sample()
    rec = render(sample, strategy, serialization)
    strat = make_strategy(strategy, serialization, "chat", None, 256)
    specs = specs_of(sample)
    msgs = rec["messages"]
    assert msgs[0]["role"] == "system" and strat.serializer.tools(specs) in msgs[0]["content"]
    calls, finals = [], []
    for m in msgs:
        if m["role"] == "assistant":
            d = strat.interpret(m["content"], specs)
            assert not d.errors, (m["content"], d.errors)
            calls += [(c.name, c.arguments) for c in d.calls]
            if d.final_text is not None:
                finals.append(d.final_text)
    assert calls == [("get_battery", {}), ("move_to", {"x": 1, "y": 2}), ("move_to", {"x": 3, "y": 4})]
    assert finals == ["Battery 80%, visited both points."]
    # results fed back the way the agent feeds them back (this serialization, with a status)
    observed = [m["content"] for m in msgs[1:] if m["role"] == "user" and m is not msgs[1]]
    assert len(observed) == 3 and all("arrived" in o or "80" in o for o in observed)
    if strategy == "reflact":
        assert "Done so far: get_battery, move_to 2 times." in msgs[-1]["content"]
    if strategy == "direct":   # parallel calls stay one step
        assert sum(m["role"] == "assistant" for m in msgs) == 3


def test_native_rendering_keeps_messages_and_tools():
    sample = _sample()
    rec = render(sample, "native")
    assert rec["messages"] == sample.messages and rec["tools"] == sample.tools


def test_near_duplicates_share_a_cluster_and_never_straddle_the_split():
    def task(city: str, tool: str, verb: str) -> Sample:
        return Sample([{"role": "user", "content": f"{verb} {city}"}, assistant_call_message([(tool, {"c": city})])],
                      source="t")

    samples = [task(c, "get_weather", "What is the weather forecast in") for c in ("Paris", "Rome", "Oslo", "Nice")]
    samples += [task(c, "book_hotel", "Book a hotel room for two nights in") for c in ("Paris", "Rome", "Lima")]
    samples += [task(c, "find_flight", "Find the cheapest flight ticket to") for c in ("Oslo", "Lima", "Kyiv")]
    labels, clusters = cluster_samples(samples, k=3, seed=0)
    by_tool: dict[str, set[int]] = {}
    for s, lab in zip(samples, labels):
        by_tool.setdefault(s.calls()[0]["name"], set()).add(lab)
    assert all(len(v) == 1 for v in by_tool.values()) and len({min(v) for v in by_tool.values()}) == 3
    val = split_by_cluster(labels, clusters, 0.3, seed=0)
    assert len(val) == 1
    assert {c.split for c in clusters} == {"train", "validation"}
    assert {c.id: c.top_tools for c in clusters}[next(iter(val))][0] in by_tool
