"""Serializers and prompt strategies: registries, formats, constrained schemas."""
from __future__ import annotations

import json

import jsonschema
import pytest

from slm_agent.agent.serializers import SERIALIZERS, get_serializer, prompt_schema
from slm_agent.agent.strategies import (
    STRATEGIES,
    StepDecision,
    default_example,
    example_arguments,
    get_strategy,
)
from slm_agent.agent.types import Status, ToolResult

RESULT_OK = ToolResult("c1", "move_to", Status.OK, content={"success": True, "reached": {"x": 1.5, "y": 2.0}})
RESULT_BAD = ToolResult("c2", "move_to", Status.INVALID_ARGUMENTS, error="goal.x: 12 is above the maximum 10")


def test_serializer_registry():
    assert set(SERIALIZERS) == {"json", "toon", "natural", "native", "bfcl"}
    with pytest.raises(ValueError, match="valid: bfcl, json, native, natural, toon"):
        get_serializer("yaml")


def test_json_serializer(demo_tool_set):
    s = get_serializer("json")
    lines = s.tools(demo_tool_set.tools).splitlines()
    assert len(lines) == 4
    tools = [json.loads(line) for line in lines]
    assert tools[0] == {"name": "get_battery", "description": demo_tool_set.tools[0].description}
    move = tools[1]["parameters"]
    assert "additionalProperties" not in json.dumps(move)  # validator-only key not shown
    assert move["properties"]["goal"]["properties"]["x"]["maximum"] == 10
    assert " " not in s.result(RESULT_OK).replace("move_to", "")  # compact separators
    assert json.loads(s.result(RESULT_OK)) == {"status": "ok", "result": RESULT_OK.content}
    assert json.loads(s.result(RESULT_BAD)) == {"status": "invalid_arguments", "error": RESULT_BAD.error}


def test_toon_serializer_round_trips(demo_tool_set):
    toon_format = pytest.importorskip("toon_format", reason="toon-format is not installed")
    s = get_serializer("toon")
    text = s.tools(demo_tool_set.tools)
    decoded = toon_format.decode(text)
    assert [t["name"] for t in decoded["tools"]] == [t.name for t in demo_tool_set.tools]
    assert decoded["tools"][1]["parameters"] == prompt_schema(demo_tool_set.tools[1].parameters)
    assert toon_format.decode(s.result(RESULT_OK)) == {"status": "ok", "result": RESULT_OK.content}
    assert toon_format.decode(s.result(RESULT_BAD))["error"] == RESULT_BAD.error
    # TOON is the compact one for tabular data
    assert len(text) < len(get_serializer("json").tools(demo_tool_set.tools)) * 1.5


def test_natural_serializer(demo_tool_set):
    s = get_serializer("natural")
    text = s.tools(demo_tool_set.tools)
    assert "- get_battery: Read the battery" in text and "No arguments." in text
    assert "x: a number from -10 to 10 (metres)" in text
    assert "speed: a number greater than 0 and at most 1.5 (m/s)" in text
    assert "via (optional): a list of up to 8 items" in text
    assert "data: true or false (true opens the gripper, false closes it)" in text
    assert s.result(RESULT_OK) == "move_to succeeded: success true, reached x 1.5, y 2.0."
    assert s.result(RESULT_BAD) == "move_to invalid arguments: goal.x: 12 is above the maximum 10."


def test_strategy_registry():
    assert set(STRATEGIES) == {"direct", "react", "reflact"}
    with pytest.raises(ValueError, match="valid: direct, react, reflact"):
        get_strategy("cot")
    with pytest.raises(ValueError, match="chat_format"):
        get_strategy("direct", chat_format="jinja")


def test_example_arguments_are_valid(demo_tool_set):
    for t in demo_tool_set.tools:
        jsonschema.validate(example_arguments(t.parameters), t.parameters)
    ex = default_example()
    # a fixed demonstration tool whose argument values visibly come from its request
    assert ex["call"]["name"] not in {t.name for t in demo_tool_set.tools}
    assert all(str(v) in ex["user"] for v in ex["call"]["arguments"].values())


@pytest.mark.parametrize("name", sorted(STRATEGIES))
@pytest.mark.parametrize("constrained", [False, True])
def test_raw_prompt_shape(demo_tool_set, name, constrained):
    st = get_strategy(name, serialization="json", example=demo_tool_set.example)
    transcript = [
        {"role": "system", "content": "Be brief."},
        {"role": "user", "content": "Open the gripper."},
    ]
    req = st.build_request(transcript, demo_tool_set.tools, constrained=constrained)
    assert req.prompt is not None and not req.messages
    assert "Be brief." in req.prompt and '"name":"gripper"' in req.prompt
    assert req.prompt.rstrip().endswith(st.cue(constrained))
    assert demo_tool_set.example["user"] in req.prompt  # the one-shot example
    assert req.stop and all(s.startswith("\n") for s in req.stop)
    assert (req.json_schema is not None) == constrained
    if constrained:
        jsonschema.Draft202012Validator.check_schema(req.json_schema)


@pytest.mark.parametrize("name", sorted(STRATEGIES))
def test_constrained_example_steps_match_the_output_schema(demo_tool_set, name):
    """The format shown to the model is the format the grammar allows."""
    st = get_strategy(name, example=demo_tool_set.example)
    schema = st.output_schema(demo_tool_set.tools)
    call = demo_tool_set.example["call"]
    steps = [st.render_step(call, None, True, "r")]
    if not st.allows_text:  # direct: the final answer is plain text, admitted beside the schema (allow_text)
        steps.append(st.render_step(None, "done", True, "r"))
    else:
        assert st.render_step(None, "done", True, "r").split(":", 1)[-1].strip() == "done"
    for step in steps:
        body = step.split(":", 1)[1].strip() if step.startswith(("Assistant:", "Step:")) else step
        jsonschema.validate(json.loads(body), schema)
    bad_call = {"name": "gripper", "arguments": {"data": "yes"}}
    with pytest.raises(jsonschema.ValidationError):
        jsonschema.validate(json.loads(st.render_step(bad_call, None, True, "r").split(":", 1)[1]), schema)


@pytest.mark.parametrize("name", sorted(STRATEGIES))
def test_output_schemas_compile_to_llama_cpp_grammars(demo_tool_set, name):
    llama_grammar = pytest.importorskip("llama_cpp.llama_grammar", reason="llama-cpp-python is not installed")
    schema = get_strategy(name).output_schema(demo_tool_set.tools)
    gbnf = llama_grammar.json_schema_to_gbnf(json.dumps(schema))
    assert "root ::=" in gbnf and "gripper" in gbnf


def test_chat_format_messages(demo_tool_set):
    st = get_strategy("react", chat_format="chat")
    transcript = [
        {"role": "user", "content": "Battery?"},
        {"role": "assistant", "content": "Thought: check\nAction: get_battery\nAction Input: {}",
         "tool_calls": [{"id": "call_0_0", "type": "function",
                         "function": {"name": "get_battery", "arguments": "{}"}}]},
        {"role": "tool", "tool_call_id": "call_0_0", "name": "get_battery", "content": '{"status":"ok"}'},
    ]
    req = st.build_request(transcript, demo_tool_set.tools)
    assert req.prompt is None
    roles = [m["role"] for m in req.messages]
    assert roles == ["system", "user", "assistant", "user"]
    assert req.messages[1]["content"] == "Question: Battery?"
    assert req.messages[3]["content"] == 'Observation: {"status":"ok"}'
    assert "Tools:" in req.messages[0]["content"] and req.tools is None
    native = get_strategy("direct", chat_format="chat", native_tools=True).build_request(transcript, demo_tool_set.tools)
    assert [m["role"] for m in native.messages] == ["system", "user", "assistant", "tool"]
    assert native.tools[0]["function"]["name"] == "get_battery"


def test_direct_interpret(demo_tool_set):
    st = get_strategy("direct")
    d = st.interpret('[{"name":"get_battery","arguments":{}},{"name":"gripper","arguments":{"data":true}}]',
                     demo_tool_set.tools, step=2)
    assert [c.name for c in d.calls] == ["get_battery", "gripper"] and d.final_text is None
    d = st.interpret('{"name":"final_answer","arguments":{"text":"All done."}}', demo_tool_set.tools)
    assert d.is_final and d.final_text == "All done."
    d = st.interpret("The gripper is open.", demo_tool_set.tools)
    assert d.is_final and d.final_text == "The gripper is open."
    d = st.interpret('{"name": "gripper", "arguments": {"data": tr', demo_tool_set.tools)
    assert not d.calls and d.final_text is None and d.errors  # broken call: feed back, do not finish


@pytest.mark.parametrize("name, label, key", [("react", "Thought:", "thought"), ("reflact", "Reflection:", "reflection")])
def test_react_family_interpret(demo_tool_set, name, label, key):
    st = get_strategy(name)
    d = st.interpret(' The gripper must open.\nAction: gripper\nAction Input: {"data": true}\nObservation: fake',
                     demo_tool_set.tools, step=1)
    assert [(c.name, c.arguments) for c in d.calls] == [("gripper", {"data": True})]
    assert d.reasoning == "The gripper must open."
    d = st.interpret(" Goal reached.\nFinal Answer: It is open.", demo_tool_set.tools)
    assert d == StepDecision(final_text="It is open.", reasoning="Goal reached.")
    d = st.interpret(json.dumps({key: "state", "action": "gripper", "action_input": {"data": False}}),
                     demo_tool_set.tools, constrained=True)
    assert d.calls[0].arguments == {"data": False} and d.reasoning == "state"
    d = st.interpret(json.dumps({key: "done", "final_answer": "ok"}), demo_tool_set.tools, constrained=True)
    assert d.final_text == "ok" and d.reasoning == "done"
    d = st.interpret(" I am not sure what to do.", demo_tool_set.tools)
    assert d.final_text is None and not d.calls and "no Action and no Final Answer" in d.errors[0]
    # one action per step
    d = st.interpret("Action: get_battery\nAction Input: {}\nAction: gripper\nAction Input: {\"data\": true}",
                     demo_tool_set.tools)
    assert [c.name for c in d.calls] == ["get_battery"]
    assert label in st.format_rules(demo_tool_set.tools, False)


def test_reflact_prompt_asks_for_goal_state_reflection(demo_tool_set):
    req = get_strategy("reflact", example=demo_tool_set.example).build_request(
        [{"role": "user", "content": "Go to the lab."}], demo_tool_set.tools)
    assert "relative to the goal" in req.prompt
    assert "Reflection: Nothing is done yet" in req.prompt  # the example reflects before acting
    assert req.prompt.endswith("Question: Go to the lab.\nReflection:")


def test_example_for_a_tool_not_offered_is_replaced(demo_tool_set):
    gripper_only = [demo_tool_set.by_name()["gripper"]]
    st = get_strategy("direct", example=demo_tool_set.example)  # the example calls get_battery
    prompt = st.build_request([{"role": "user", "content": "Open."}], gripper_only).prompt
    assert "get_battery" not in prompt
    # replaced by the fixed demonstration (its values come from its own request)
    assert 'Assistant: [{"name":"get_weather","arguments":{"city":"Lisbon","unit":"celsius"}}]' in prompt


def test_strategy_hooks_are_abstract():
    import inspect

    from slm_agent.agent.strategies import ReActStrategy, ReflActStrategy, Strategy

    assert inspect.isabstract(Strategy)
    assert {"cue", "format_rules", "render_step", "output_schema", "interpret"} <= Strategy.__abstractmethods__
    # ReflAct differs from ReAct by overridden attributes, not by branching on its name
    assert "I now know the final answer" in ReActStrategy().format_rules([], constrained=False)
    assert "the goal is reached" in ReflActStrategy().format_rules([], constrained=False)
