"""Reply syntaxes: native (the model's own) and bfcl (BFCL's prompt mode), and the
agent's own JSON-list-or-text syntax -- several calls parse into several calls, a
plain-text reply is an answer, and each constrained grammar admits both."""
from __future__ import annotations

import json

import pytest

from slm_agent.agent.call_formats import MAX_REASONING_CHARS, BfclFormat, NativeFormat, split_reasoning
from slm_agent.agent.strategies import get_strategy, make_strategy
from slm_agent.agent.types import ToolSpec

TOOLS = [
    ToolSpec(name="spotify_play", description="Play songs of an artist.",
             parameters={"type": "object", "properties": {"artist": {"type": "string"},
                                                           "duration": {"type": "integer"}},
                         "required": ["artist", "duration"]}),
    ToolSpec(name="get_time", description="Current time.",
             parameters={"type": "object", "properties": {}}),
]
USER = [{"role": "user", "content": "Play Taylor Swift for 20 minutes and Maroon 5 for 15 minutes."}]
TWO_TAGS = ('<tool_call>\n{"name": "spotify_play", "arguments": {"artist": "Taylor Swift", "duration": 20}}\n'
            '</tool_call>\n<tool_call>\n{"name": "spotify_play", "arguments": {"artist": "Maroon 5", '
            '"duration": 15}}\n</tool_call>')


def calls_of(decision):
    return [(c.name, c.arguments) for c in decision.calls]


# ------------------------------------------------------------------ native

def test_native_tags_several_calls_and_text_answer():
    s = make_strategy("direct", "native", "chat", None, 256, native_calls="tool_call_tags")
    d = s.interpret(TWO_TAGS, TOOLS)
    assert calls_of(d) == [("spotify_play", {"artist": "Taylor Swift", "duration": 20}),
                           ("spotify_play", {"artist": "Maroon 5", "duration": 15})]
    assert [c.id for c in d.calls] == ["call_0_0", "call_0_1"]
    answer = s.interpret("None of the tools can tell the weather.", TOOLS)
    assert answer.is_final and answer.final_text == "None of the tools can tell the weather."
    # string arguments (OpenAI style) decode too
    d = s.interpret('<tool_call>{"name": "get_time", "arguments": "{}"}</tool_call>', TOOLS)
    assert calls_of(d) == [("get_time", {})]


def test_native_tags_opening_tag_optional_at_the_start():
    """Qwen2.5-Coder writes the first call without its opening tag; llama.cpp's own parser
    for Hermes-style templates takes it, and so do we (only at the start of the reply)."""
    s = make_strategy("direct", "native", "chat", None, 256, native_calls="tool_call_tags")
    bare = TWO_TAGS.replace("<tool_call>\n", "", 1)
    assert [c.arguments["artist"] for c in s.interpret(bare, TOOLS).calls] == ["Taylor Swift", "Maroon 5"]
    fenced = '```json\n{"name": "get_time", "arguments": {}}\n```'
    assert [c.name for c in s.interpret(fenced, TOOLS).calls] == ["get_time"]
    later = 'I would call {"name": "get_time", "arguments": {}} but will not.'
    assert s.interpret(later, TOOLS).is_final  # a call object inside prose is not a call
    assert s.interpret("{not json at all", TOOLS).is_final


def test_native_tags_broken_block_is_an_error_not_a_call():
    s = make_strategy("direct", "native", "chat", None, 256, native_calls="tool_call_tags")
    echo = s.interpret('<tool_call>{"name": "spotify_play", "parameters": {"type": "object"}}</tool_call>', TOOLS)
    assert not echo.calls and not echo.is_final and echo.errors
    cut = s.interpret('<tool_call>{"name": "spotify_play", "arguments": {"artist": "A", "dur', TOOLS)
    assert not cut.calls and any("not closed" in e for e in cut.errors)


def test_native_request_uses_the_template_tools_and_no_prompt_of_ours():
    s = make_strategy("direct", "native", "chat", None, 256, native_calls="tool_call_tags")
    req = s.build_request(USER + [{"role": "assistant", "content": TWO_TAGS},
                                  {"role": "tool", "content": '{"ok":true}'}], TOOLS, constrained=True)
    assert [m["role"] for m in req.messages] == ["user", "assistant", "tool"]  # no system text of ours
    assert req.messages[1]["content"] == TWO_TAGS
    assert [t["function"]["name"] for t in req.tools] == ["spotify_play", "get_time"]
    assert req.grammar_trigger == "<tool_call>" and req.grammar_end == "</tool_call>"
    assert {o["properties"]["name"]["const"] for o in req.json_schema["anyOf"]} == {"spotify_play", "get_time"}
    assert req.stop == []
    free = s.build_request(USER, TOOLS, constrained=False)
    assert free.json_schema is None and free.grammar_trigger == ""


def test_native_json_list_syntax():
    s = make_strategy("direct", "native", "chat", None, 256, native_calls="json_list")
    d = s.interpret('[{"name": "spotify_play", "arguments": {"artist": "A", "duration": 1}}, '
                    '{"name": "get_time", "arguments": {}}]', TOOLS)
    assert calls_of(d) == [("spotify_play", {"artist": "A", "duration": 1}), ("get_time", {})]
    assert s.interpret("It is noon.", TOOLS).final_text == "It is noon."
    req = s.build_request(USER, TOOLS, constrained=True)
    assert req.allow_text and req.json_schema["type"] == "array" and not req.grammar_trigger


def test_native_refused_without_a_declared_syntax_and_in_raw_mode():
    with pytest.raises(ValueError, match="native_calls"):
        make_strategy("direct", "native", "chat", None, 256, native_calls=None)
    with pytest.raises(ValueError, match="chat_format raw"):
        make_strategy("direct", "native", "raw", None, 256, native_calls="tool_call_tags")
    with pytest.raises(ValueError, match="chat_format raw"):
        make_strategy("direct", "bfcl", "raw", None, 256)


def test_react_reasoning_line_before_a_native_call():
    s = make_strategy("react", "native", "chat", None, 256, native_calls="tool_call_tags")
    req = s.build_request(USER, TOOLS)
    assert req.messages[0]["role"] == "system" and "Thought:" in req.messages[0]["content"]
    d = s.interpret("Thought: two artists, two calls.\n" + TWO_TAGS, TOOLS)
    assert d.reasoning == "two artists, two calls." and len(d.calls) == 2
    assert split_reasoning("no label here", "Thought:") == ("", "no label here")


# ------------------------------------------------------------------ bfcl

def test_bfcl_prompt_is_bfcls_own_and_decoder_reads_python_calls():
    from bfcl_eval.constants.default_prompts import DEFAULT_SYSTEM_PROMPT_FORMAT
    from bfcl_eval.model_handler.utils import formulate_system_prompt

    s = make_strategy("direct", "bfcl", "chat", None, 256)
    req = s.build_request(USER, TOOLS)
    funcs = [{"name": t.name, "description": t.description, "parameters": t.parameters} for t in TOOLS]
    assert req.messages[0] == {"role": "system", "content": formulate_system_prompt(DEFAULT_SYSTEM_PROMPT_FORMAT,
                                                                                     funcs)}
    assert req.tools is None and req.messages[1] == USER[0]
    assert req.cache_anchor and req.messages[0]["content"].startswith(req.cache_anchor)
    d = s.interpret("[spotify_play(artist='Taylor Swift', duration=20), spotify_play(artist='Maroon 5', "
                    "duration=15)]", TOOLS)
    assert calls_of(d) == [("spotify_play", {"artist": "Taylor Swift", "duration": 20}),
                           ("spotify_play", {"artist": "Maroon 5", "duration": 15})]
    text = s.interpret("None of the functions can be used here.", TOOLS)
    assert text.is_final and not text.calls  # BFCL: does not decode = no call


def test_bfcl_react_and_result_text():
    s = make_strategy("reflact", "bfcl", "chat", None, 256)
    d = s.interpret("Reflection: nothing is done yet.\n[get_time()]", TOOLS)
    assert d.reasoning == "nothing is done yet." and calls_of(d) == [("get_time", {})]
    grammar = BfclFormat.grammar(TOOLS, "Reflection:")
    assert grammar.startswith('root ::= "Reflection: "')


# ------------------------------------------------------------------ ours (json / toon / natural)

@pytest.mark.parametrize("serialization", ["json", "toon", "natural"])
def test_direct_rules_are_neutral_and_list_or_text(serialization):
    s = get_strategy("direct", serialization=serialization, chat_format="chat")
    req = s.build_request(USER, TOOLS, constrained=True)
    system = req.messages[0]["content"]
    assert "one or more" in system and "plain text" in system and "one JSON object" not in system
    assert req.allow_text and req.json_schema["type"] == "array" and req.json_schema["maxItems"] >= 4
    d = s.interpret(json.dumps([{"name": "spotify_play", "arguments": {"artist": "A", "duration": 1}},
                                {"name": "spotify_play", "arguments": {"artist": "B", "duration": 2}}]), TOOLS)
    assert [c.arguments["artist"] for c in d.calls] == ["A", "B"]
    assert s.interpret("I cannot do that with these tools.", TOOLS).final_text == "I cannot do that with these tools."


# ------------------------------------------------------------------ grammars admit both (llama.cpp)

def _admits(engine, request, text: str) -> bool:
    """Walk ``text``'s tokens through the request's grammar as the engine builds it."""
    import llama_cpp

    grammar = engine._grammar_for(request)
    gram = engine._grammar_sampler(grammar)
    try:
        for tok in engine.llama.tokenize(text.encode(), add_bos=False, special=True):
            if not engine._admits(gram, [tok])[0]:
                return False
            llama_cpp.llama_sampler_accept(gram, tok)
        return True
    finally:
        llama_cpp.llama_sampler_free(gram)


@pytest.fixture(scope="module")
def engine():
    pytest.importorskip("llama_cpp", reason="llama-cpp-python not installed")
    from slm_agent.engines.llama_cpp import LlamaCppEngine
    from slm_agent.profiles import load_profile

    eng = LlamaCppEngine(load_profile("smollm2-135m-q4_1"))
    yield eng
    eng.close()


def test_constrained_grammars_admit_calls_and_text(engine):
    direct = get_strategy("direct", serialization="json", chat_format="chat").build_request(USER, TOOLS, True)
    assert _admits(engine, direct, '[{"name": "spotify_play", "arguments": {"artist": "A", "duration": 2}}]')
    assert _admits(engine, direct, "I cannot do that.")
    assert not _admits(engine, direct, '[{"name": "play", "arguments": {}}]')  # no such tool
    bfcl = make_strategy("direct", "bfcl", "chat", None, 256).build_request(USER, TOOLS, True)
    assert _admits(engine, bfcl, "[spotify_play(artist='A', duration=2), get_time()]")
    assert _admits(engine, bfcl, "None of the functions fit.")
    assert not _admits(engine, bfcl, "[spotify_play(singer='A')]")  # not a parameter
    # a reasoning strategy: one bounded line, then the call list (or text)
    reflact = make_strategy("reflact", "bfcl", "chat", None, 256).build_request(USER, TOOLS, True)
    assert _admits(engine, reflact, "Reflection: nothing is done yet.\n[get_time()]")
    assert _admits(engine, reflact, "Reflection: " + "x" * MAX_REASONING_CHARS + "\n[get_time()]")
    assert not _admits(engine, reflact, "Reflection: " + "x" * (MAX_REASONING_CHARS + 1))
    native = make_strategy("direct", "native", "chat", None, 256, native_calls="tool_call_tags")
    req = native.build_request(USER, TOOLS, True)
    # the lazily triggered block: what follows <tool_call> must be a call, then </tool_call>
    assert _admits(engine, req, '\n{"name": "get_time", "arguments": {}}\n</tool_call>')
    assert not _admits(engine, req, '\n{"name": "weather", "arguments": {}}\n</tool_call>')


def test_lazy_constraint_waits_for_the_trigger_and_ends_with_the_block(engine):
    from slm_agent.engines.llama_cpp import _Lazy

    native = make_strategy("direct", "native", "chat", None, 256, native_calls="tool_call_tags")
    req = native.build_request(USER, TOOLS, True)
    lazy = _Lazy.of(req, engine._grammar_for(req))
    gram = lazy.step(engine, None, b"Sure, ")
    assert gram is None
    gram = lazy.step(engine, None, b"<tool_")
    assert gram is None
    gram = lazy.step(engine, None, b"call>")
    assert gram is not None  # triggered
    gram = lazy.step(engine, gram, b'\n{"name": "get_time", "arguments": {}}\n</tool_call>')
    assert gram is None  # closed: free text again
