"""Tool-call parsing: every supported shape, and fuzzing that nothing escapes."""
from __future__ import annotations

import json

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from slm_agent.agent.parsing import MAX_CHARS, parse_tool_calls

KNOWN = {"gripper", "move_to", "get_battery", "lookup_location", "final_answer"}


def names_args(result):
    return [(c.name, c.arguments) for c in result.calls]


@pytest.mark.parametrize(
    "text, expected",
    [
        ('{"name": "gripper", "arguments": {"data": true}}', [("gripper", {"data": True})]),
        # a tool spec echoed back ("parameters") is text, not a call (as BFCL's decoders read it)
        ('{"name": "gripper", "parameters": {"data": false}}', []),
        ('{"type": "function", "function": {"name": "move_to", "arguments": "{\\"speed\\": 0.5}"}}',
         [("move_to", {"speed": 0.5})]),
        ('{"tool_calls": [{"id": "x", "function": {"name": "get_battery", "arguments": "{}"}}]}',
         [("get_battery", {})]),
        ('[{"name": "get_battery", "arguments": {}}, {"name": "gripper", "arguments": {"data": true}}]',
         [("get_battery", {}), ("gripper", {"data": True})]),
        ('Sure.\n```json\n{"name": "lookup_location", "arguments": {"name": "kitchen"}}\n```\nDone.',
         [("lookup_location", {"name": "kitchen"})]),
        ('<tool_call>\n{"name": "gripper", "arguments": {"data": true}}\n</tool_call>', [("gripper", {"data": True})]),
        ("Thought: I should check.\nAction: get_battery\nAction Input: {}\nObservation: 50%",
         [("get_battery", {})]),
        ('Thought: go\nAction: `move_to`\nAction Input: {"goal": {"x": 1, "y": 2}, "speed": 1}',
         [("move_to", {"goal": {"x": 1, "y": 2}, "speed": 1})]),
        ("Action: get_battery\n", [("get_battery", {})]),
        ('[move_to(goal={"x": 1, "y": -2}, speed=0.5), gripper(data=true)]',
         [("move_to", {"goal": {"x": 1, "y": -2}, "speed": 0.5}), ("gripper", {"data": True})]),
        ("get_battery()", [("get_battery", {})]),
        ("lookup_location(name='lab')", [("lookup_location", {"name": "lab"})]),
        ('{"name": "gripper", "arguments": {"data": true}} }}] trailing garbage ((', [("gripper", {"data": True})]),
        ('{"thought": "t", "action": "gripper", "action_input": {"data": true}}', [("gripper", {"data": True})]),
        ('{"name": "get_battery"}', []),  # only a name: text, no invented {} arguments
        ('{"name": "get_battery", "arguments": {}}', [("get_battery", {})]),
        ('{"name": "self_destruct", "arguments": {}}', [("self_destruct", {})]),  # the envelope refuses it
        ("<tool_call>\n<function=move_to>\n<parameter=goal>\n{\"x\": 1, \"y\": 2}\n</parameter>\n"
         "<parameter=speed>\n0.5\n</parameter>\n</function>\n</tool_call>",
         [("move_to", {"goal": {"x": 1, "y": 2}, "speed": 0.5})]),                          # Qwen3-Coder
        ("<function=lookup_location><parameter=name>the lab</parameter></function>",
         [("lookup_location", {"name": "the lab"})]),
        ("<|channel|>commentary to=functions.gripper <|constrain|>json<|message|>{\"data\": true}<|call|>",
         [("gripper", {"data": True})]),                                                      # gpt-oss harmony
    ],
)
def test_formats(text, expected):
    r = parse_tool_calls(text, KNOWN, step=3)
    assert names_args(r) == expected
    assert all(c.step == 3 and c.id for c in r.calls)
    assert len({c.id for c in r.calls}) == len(r.calls)


def test_leftover_keeps_the_prose():
    r = parse_tool_calls('I will open it. {"name": "gripper", "arguments": {"data": true}} Then done.', KNOWN)
    assert r.leftover == "I will open it.  Then done."
    r = parse_tool_calls("The robot is at (1, 2). All good.", KNOWN)
    assert r.calls == [] and r.leftover == "The robot is at (1, 2). All good." and r.errors == []


def test_truncated_list_keeps_complete_calls_and_reports_the_cut():
    r = parse_tool_calls('[{"name": "get_battery", "arguments": {}}, {"name": "lookup_location", "argu', KNOWN)
    assert names_args(r) == [("get_battery", {})]
    assert any("truncated" in e for e in r.errors)


def test_truncated_call_is_not_executed_half_done():
    # the outer call is cut; the inner {"name": "kitchen"} must not become a call
    r = parse_tool_calls('{"name": "lookup_location", "arguments": {"name": "kitchen"}', KNOWN)
    assert r.calls == [] and any("truncated" in e for e in r.errors)
    r = parse_tool_calls('{"name": "move_to", "arguments": {"goal": {"x": 1', KNOWN)
    assert r.calls == [] and r.errors


def test_bad_arguments_are_reported_not_raised():
    r = parse_tool_calls('{"function": {"name": "gripper", "arguments": "{data: yes"}}', KNOWN)
    assert r.calls == [] and "not valid JSON" in r.errors[0]
    r = parse_tool_calls('{"name": "gripper", "arguments": [1, 2]}', KNOWN)
    assert r.calls == [] and "must be a JSON object" in r.errors[0]
    r = parse_tool_calls("gripper(True)", KNOWN)
    assert r.calls == [] and "positional" in r.errors[0]
    r = parse_tool_calls("gripper(data=__import__('os'))", KNOWN)
    assert r.calls == [] and "not a literal" in r.errors[0]


def test_python_calls_are_never_evaluated(tmp_path):
    marker = tmp_path / "pwned"
    text = f"move_to(goal=open({str(marker)!r}, 'w').write('x'))"
    parse_tool_calls(text, KNOWN)
    assert not marker.exists()


def test_surrogates_are_replaced_so_ros_strings_stay_encodable():
    r = parse_tool_calls('\ud800 {"name": "lookup_location", "arguments": {"name": "\\ud800lab"}}', KNOWN)
    assert r.calls[0].arguments["name"] == "\ufffdlab"
    r.calls[0].arguments["name"].encode("utf-8")
    r.leftover.encode("utf-8")


def test_pathological_inputs_are_bounded():
    assert parse_tool_calls("[" * 100_000, KNOWN).calls == []
    assert parse_tool_calls('{"a":' * 5000, KNOWN).calls == []
    huge = '{"name": "move_to", "arguments": {"speed": 1' + "9" * 5000 + "}}"
    r = parse_tool_calls(huge, KNOWN)
    assert r.calls == []
    r = parse_tool_calls("x" * (MAX_CHARS + 10), KNOWN)
    assert "longer than" in r.errors[0]
    deep_args = '{"name": "gripper", "arguments": ' + '{"a": ' * 100 + "1" + "}" * 100 + "}"
    r = parse_tool_calls(deep_args, KNOWN)
    assert r.calls == [] and any("nested" in e for e in r.errors)
    assert parse_tool_calls(None, KNOWN).calls == []
    assert names_args(parse_tool_calls(b'{"name": "gripper", "arguments": {}} \xff', KNOWN)) == [("gripper", {})]


# ----------------------------------------------------------------------------- fuzz

_any_char = st.one_of(st.characters(), st.integers(0xD800, 0xDFFF).map(chr))
# generation, not parsing, dominates the run time: keep the value strategies flat and cheap
_keys = st.sampled_from(["data", "x", "y", "name", "speed", "goal", "mode", "via", "a_b"])
_json_scalars = st.one_of(
    st.none(), st.booleans(), st.integers(-(10**30), 10**30),
    st.floats(allow_nan=False, allow_infinity=False), st.text(max_size=10),
)
_json_values = st.recursive(
    _json_scalars,
    lambda inner: st.one_of(st.lists(inner, max_size=3), st.dictionaries(_keys, inner, max_size=3)),
    max_leaves=6,
)
_tool_names = st.sampled_from(sorted(KNOWN - {"final_answer"}))
_calls = st.builds(
    lambda n, a: {"name": n, "arguments": a},
    _tool_names,
    st.dictionaries(_keys, _json_values, max_size=3),
)


def _render(call: dict, style: int) -> str:
    if style == 0:
        return json.dumps(call)
    if style == 1:
        return "<tool_call>" + json.dumps(call) + "</tool_call>"
    if style == 2:
        return "```json\n" + json.dumps(call, indent=2) + "\n```"
    if style == 3:
        return f"Action: {call['name']}\nAction Input: {json.dumps(call['arguments'])}\n"
    if style == 5:
        params = "".join(f"<parameter={k}>\n{json.dumps(v)}\n</parameter>\n" for k, v in call["arguments"].items())
        return f"<tool_call>\n<function={call['name']}>\n{params}</function>\n</tool_call>"
    if style == 6:
        return (f"<|channel|>commentary to=functions.{call['name']} <|constrain|>json"
                f"<|message|>{json.dumps(call['arguments'])}<|call|>")
    return json.dumps({"type": "function", "function": {"name": call["name"],
                                                        "arguments": json.dumps(call["arguments"])}})


@st.composite
def _mutated(draw) -> str:
    text = _render(draw(_calls), draw(st.integers(0, 6)))
    for _ in range(draw(st.integers(1, 4))):
        op = draw(st.integers(0, 5))
        i = draw(st.integers(0, len(text)))
        if op == 0:
            text = text[:i]                                           # truncation
        elif op == 1:
            text = text[:i] + draw(st.text(_any_char, max_size=8)) + text[i:]
        elif op == 2:
            j = draw(st.integers(i, len(text)))
            text = text[:i] + text[j:]                                 # deletion
        elif op == 3:
            text = text[:i] + draw(st.sampled_from(["{", "}", "[", "]", '"', "\\", "(", ")", ",", ":"])) * \
                draw(st.integers(1, 50)) + text[i:]
        elif op == 4:
            text = text + text[:i]                                     # repetition
        else:
            text = text[:i] + str(draw(st.integers(10**40, 10**60))) + text[i:]
    return text


_pathological = st.one_of(
    st.integers(1, 3000).map(lambda n: "[" * n),
    st.integers(1, 3000).map(lambda n: '{"name": "gripper", "arguments": ' + '{"a": [' * n),
    st.integers(1, 300).map(lambda n: "f(" * n + ")" * n),
    st.integers(1, 5000).map(lambda n: '{"name":"move_to","arguments":{"speed":' + "9" * n + "}}"),
    st.integers(1, 400).map(lambda n: "Action: gripper\nAction Input: " + "{" * n),
    st.integers(1, 400).map(lambda n: "<tool_call>" * n),
    st.integers(1, 400).map(lambda n: "```" * n),
)

FUZZ = settings(max_examples=1500, deadline=None, database=None,
                suppress_health_check=[HealthCheck.too_slow])


def _check_result(r) -> None:
    assert isinstance(r.leftover, str) and isinstance(r.errors, list)
    for c in r.calls:
        assert isinstance(c.name, str) and isinstance(c.arguments, dict)
        json.dumps(c.arguments, ensure_ascii=False).encode("utf-8")  # JSON-able, no lone surrogates left
        c.name.encode("utf-8")
    r.leftover.encode("utf-8")


@settings(max_examples=2000, deadline=None, database=None)
@given(st.text(_any_char, max_size=300))
def test_fuzz_random_text_never_raises(text):
    _check_result(parse_tool_calls(text, KNOWN))
    _check_result(parse_tool_calls(text, None))


@FUZZ
@given(st.one_of(_mutated(), _pathological))
def test_fuzz_mutated_and_pathological_never_raise(text):
    _check_result(parse_tool_calls(text, KNOWN))
    _check_result(parse_tool_calls(text, None))


_noise = st.text(st.sampled_from(list("abcdefghijklmnopqrstuvwxyz ABCXYZ0123456789.!?-\n\u00e9\u4e2d")),
                 max_size=40)


@settings(max_examples=1000, deadline=None, database=None, suppress_health_check=[HealthCheck.too_slow])
@given(_noise, _calls, _noise, st.integers(0, 6))
def test_fuzz_valid_call_in_noise_is_recovered(before, call, after, style):
    text = f"{before} {_render(call, style)}\n{after}"
    r = parse_tool_calls(text, KNOWN)
    assert (call["name"], call["arguments"]) in names_args(r)
