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


# --------------------------------------------------------------------------- bfcl and native


class _Replay:
    """The logged results, returned in order as the agent's tool host would return them."""

    def __init__(self, results: list[str]) -> None:
        self.results = list(results)

    def invoke(self, spec, call):
        from slm_agent.dataset.render import tool_result

        r = tool_result(self.results.pop(0), call.name)
        r.call_id = call.id
        return r


OWNED = [("bfcl", None), ("native", "json_list"), ("native", "tool_call_tags")]


@pytest.mark.parametrize("strategy", ["direct", "react", "reflact"])
@pytest.mark.parametrize("serialization, native_calls", OWNED)
def test_owned_formats_render_exactly_what_the_agent_sends_and_reads(strategy, serialization, native_calls):
    """bfcl and native: the real AgentLoop, given the rendered assistant steps as the model's
    outputs and the logged results as the tools' results, sends at every step exactly the
    rendered messages before that step (and, for native, the rendered tools to the template),
    and reads each step back as the logged calls and answer."""
    if serialization == "bfcl":
        pytest.importorskip("bfcl_eval", reason="bfcl_eval not installed (pip install --no-deps bfcl-eval==2026.3.23)")
    sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "bench"))
    from loop_agent import Script

    from slm_agent.agent.loop import AgentLoop

    sample = _sample()
    rec = render(sample, strategy, serialization, native_calls)
    msgs = rec["messages"]
    assert rec["meta"]["strategy"] == strategy and rec["meta"]["serialization"] == serialization
    steps = [k for k, m in enumerate(msgs) if m["role"] == "assistant"]
    assert len(steps) == 3, "the two parallel calls are one reply in these syntaxes"
    strat = make_strategy(strategy, serialization, "chat", None, 256, native_calls=native_calls)
    specs = specs_of(sample)
    engine = Script([msgs[k]["content"] for k in steps])
    logged = [m["content"] for m in sample.messages if m["role"] == "tool"]
    res = AgentLoop(engine, specs, _Replay(logged), strategy=strat, max_steps=6).run(
        messages=[{"role": "user", "content": sample.messages[0]["content"]}])
    assert res.success and res.final_text == "Battery 80%, visited both points.", res
    assert [(c.name, c.arguments) for c, _ in res.calls] == [
        ("get_battery", {}), ("move_to", {"x": 1, "y": 2}), ("move_to", {"x": 3, "y": 4})]
    assert len(engine.requests) == 3
    for req, k in zip(engine.requests, steps):
        assert req.messages == msgs[:k], "the agent's request is the rendered conversation before the step"
        if serialization == "native":
            assert req.tools == rec["tools"] and rec["meta"]["template_tools"]
        else:
            assert req.tools is None
    if serialization == "bfcl":
        assert msgs[steps[1]]["content"].endswith("[move_to(x=1, y=2), move_to(x=3, y=4)]")
    elif native_calls == "tool_call_tags":
        assert msgs[steps[0]]["content"].endswith('<tool_call>\n{"name": "get_battery", "arguments": {}}\n</tool_call>')
    if strategy == "reflact":
        assert "Done so far: get_battery, move_to 2 times." in msgs[steps[2]]["content"]


def test_a_step_that_does_not_read_back_is_a_render_error():
    pytest.importorskip("bfcl_eval", reason="bfcl_eval not installed (pip install --no-deps bfcl-eval==2026.3.23)")
    from slm_agent.dataset.render import RenderError

    sample = _sample()
    sample.messages[-1]["content"] = "[get_battery()]"     # an "answer" BFCL's decoder reads as a call
    with pytest.raises(RenderError, match="reads as a call in bfcl"):
        render(sample, "direct", "bfcl")
    with pytest.raises(ValueError, match="native needs the student's call syntax"):
        render(_sample(), "direct", "native")


def _bfcl_record(reply: str) -> dict:
    tool = {"name": "str_to_int", "description": "Converts a string to an integer.",
            "parameters_json_schema": json.dumps({"type": "object", "properties": {"value": {"type": "string"}},
                                                  "required": ["value"]})}
    return {"suite": "bfcl", "category": "live_irrelevance", "case_id": "live_irrelevance_0-0-0", "model": "teacher",
            "strategy": "direct", "serialization": "bfcl", "chat_format": "chat", "valid": True, "passed": True,
            "conversation": [{"turn": 0, "tools": [tool], "sent": 1, "messages": [
                {"role": "user", "content": "Find the integral of x^3 from 1 to 5", "tool_calls": []},
                {"role": "assistant", "content": reply, "tool_calls": []}]}]}


def test_an_irrelevance_answer_is_kept_and_a_broken_call_list_is_not():
    """Under bfcl a reply that does not decode is an answer (BFCL passes irrelevance on it); an
    answer in words is kept as an answer without a call, a call list cut at the token limit is
    removed (counted), not taught as an answer."""
    pytest.importorskip("bfcl_eval", reason="bfcl_eval not installed (pip install --no-deps bfcl-eval==2026.3.23)")
    from collections import Counter

    from slm_agent.dataset.rundir import case_sample

    fixes: Counter = Counter()
    s = case_sample(_bfcl_record("None of the functions can compute an integral."), fixes)
    assert s is not None and s.calls() == [] and not fixes
    assert s.messages[-1] == {"role": "assistant", "content": "None of the functions can compute an integral."}
    assert render(s, "direct", "bfcl")["messages"][-1]["content"] == "None of the functions can compute an integral."
    assert case_sample(_bfcl_record('[str_to_int(value="1"), str_to_int(value="x^3"), str_to_in'), fixes) is None
    assert fixes == {"call-like replies that did not decode removed": 1}


@pytest.mark.parametrize("strategy", ["direct", "react", "reflact"])
@pytest.mark.parametrize("serialization", ["json", "toon", "natural"])
@pytest.mark.parametrize("layout", ["tools_first", "shared_prefix"])
def test_the_agents_own_syntaxes_render_what_the_agent_sends_in_the_students_layout(strategy, serialization, layout):
    """json / toon / natural in chat: replayed through the real AgentLoop (built as the agent node
    builds it for a profile with that chat.prompt_layout), every request is the rendered
    conversation before that step."""
    sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "bench"))
    from loop_agent import Script

    from slm_agent.agent.loop import AgentLoop

    sample = _sample()
    rec = render(sample, strategy, serialization, prompt_layout=layout)
    assert rec["meta"]["prompt_layout"] == layout
    msgs = rec["messages"]
    steps = [k for k, m in enumerate(msgs) if m["role"] == "assistant"]
    strat = make_strategy(strategy, serialization, "chat", None, 256, prompt_layout=layout)
    engine = Script([msgs[k]["content"] for k in steps])
    logged = [m["content"] for m in sample.messages if m["role"] == "tool"]
    res = AgentLoop(engine, specs_of(sample), _Replay(logged), strategy=strat, max_steps=6).run(
        messages=[{"role": "user", "content": sample.messages[0]["content"]}])
    assert res.success and res.final_text == "Battery 80%, visited both points.", res
    assert [req.messages for req in engine.requests] == [msgs[:k] for k in steps]
