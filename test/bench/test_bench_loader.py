"""Loader, filters, tool specs and the model_config shim."""
import json
import sys

import pytest

pytest.importorskip(
    "bfcl_eval", reason="bfcl_eval not installed (pip install --no-deps bfcl-eval==2026.3.23)"
)
pytest.importorskip("filelock", reason="filelock (imported by bfcl_eval.utils) not installed")

from bfcl_eval.constants.eval_config import PROMPT_PATH  # noqa: E402

from slm_agent.bench.bfcl import compat  # noqa: E402
from slm_agent.bench.bfcl.loader import (  # noqa: E402
    MULTI_TURN_CATEGORIES,
    SINGLE_TURN_CATEGORIES,
    SUPPORTED_CATEGORIES,
    UnknownCategoryError,
    deterministic_sample,
    load_scenario,
    load_scenarios,
    tools_for,
)
from slm_agent.bench.bfcl.tools import NOT_SHOWN, sanitize_tool_name  # noqa: E402

JSON_SCHEMA_TYPES = {"string", "integer", "number", "boolean", "array", "object", "null"}


def _file_ids(category: str) -> list[str]:
    with open(PROMPT_PATH / f"BFCL_v4_{category}.json") as fh:
        return [json.loads(line)["id"] for line in fh if line.strip()]


@pytest.mark.parametrize("category", SUPPORTED_CATEGORIES)
def test_every_case_of_every_category_loads_in_numeric_order(category):
    scenarios = load_scenarios([category])
    ids = [s.case_id for s in scenarios]
    assert sorted(ids) == sorted(_file_ids(category))
    index = [int(i.rsplit("_", 1)[1].split("-")[0]) for i in ids]
    assert index == sorted(index)
    assert all(s.category == category and s.suite == "bfcl" for s in scenarios)
    if category in MULTI_TURN_CATEGORIES:
        assert all(s.is_multi_turn and len(s.ground_truth) == s.num_turns for s in scenarios)
    else:
        assert all(s.num_turns == 1 and not s.is_multi_turn for s in scenarios)


def test_order_is_stable_across_loads_and_follows_category_order():
    a = [s.case_id for s in load_scenarios(["live_simple", "simple_python"], limit=500)]
    b = [s.case_id for s in load_scenarios(["simple_python", "live_simple"], limit=500)]
    assert a == b
    assert a[0] == "simple_python_0" and a[400] == "live_simple_0-0-0"


def test_filters_categories_ids_limit():
    assert len(load_scenarios(["parallel"], limit=7)) == 7
    assert load_scenarios(["parallel"], limit=0) == []
    got = load_scenarios(ids=["multiple_3", "simple_python_10", "live_simple_1-1-0"])
    # categories inferred from the ids; order is the stable order, not the argument order
    assert [s.case_id for s in got] == ["simple_python_10", "multiple_3", "live_simple_1-1-0"]
    assert [s.case_id for s in load_scenarios(["multiple"], ids=["multiple_3"])] == ["multiple_3"]
    with pytest.raises(KeyError, match="simple_python_99999"):
        load_scenarios(ids=["simple_python_99999"])
    with pytest.raises(ValueError):
        load_scenarios(["parallel"], limit=-1)


def test_aliases_resolve_to_bfcl_names():
    assert load_scenarios(["java"], limit=1)[0].category == "simple_java"
    assert load_scenarios(["javascript"], limit=1)[0].language == "javascript"


def test_unknown_category_error_lists_valid_ones():
    with pytest.raises(UnknownCategoryError) as info:
        load_scenarios(["simple_pyhton"])
    msg = str(info.value)
    assert "simple_pyhton" in msg
    for cat in SUPPORTED_CATEGORIES:
        assert cat in msg
    with pytest.raises(UnknownCategoryError):
        load_scenarios(ids=["web_search_base_0"])  # a BFCL category we do not support


def test_deterministic_sample_is_even_and_reproducible():
    items = list(range(100))
    assert deterministic_sample(items, 4) == [0, 25, 50, 75]
    assert deterministic_sample(items, 200) == items
    assert deterministic_sample(items, 0) == []


def _walk_types(schema, seen):
    if isinstance(schema, dict):
        if "type" in schema and isinstance(schema["type"], str):
            seen.add(schema["type"])
        for key in ("properties",):
            for sub in (schema.get(key) or {}).values():
                _walk_types(sub, seen)
        if isinstance(schema.get("items"), dict):
            _walk_types(schema["items"], seen)


@pytest.mark.parametrize("category", SINGLE_TURN_CATEGORIES + ("multi_turn_base",))
def test_tool_specs_are_json_schema_with_api_safe_names(category):
    seen: set = set()
    for sc in load_scenarios([category]):
        ts = tools_for(sc, 0)
        assert len(ts.tools) == len({d["name"] for d in sc.functions})
        for tool in ts.tools:
            assert set(tool) == {"name", "description", "parameters"}
            assert tool["parameters"]["type"] == "object"
            assert all(c.isalnum() or c in "_-" for c in tool["name"]) and len(tool["name"]) <= 64
            assert ts.original_name(tool["name"]) in {d["name"] for d in sc.functions}
            _walk_types(tool["parameters"], seen)
    assert seen <= JSON_SCHEMA_TYPES, seen - JSON_SCHEMA_TYPES


def test_dotted_names_map_back_and_types_convert():
    sc = load_scenario("simple_java_0")
    ts = tools_for(sc)
    assert ts.names == ["GeometryPresentation_createPresentation"]
    assert ts.original_name("GeometryPresentation_createPresentation") == (
        "GeometryPresentation.createPresentation"
    )
    # strict, as BFCL: an original name the model was not shown matches no function;
    # hallucinated names pass through unchanged
    assert ts.original_name("GeometryPresentation.createPresentation") == (
        "GeometryPresentation.createPresentation" + NOT_SHOWN
    )
    assert ts.any_name("GeometryPresentation.createPresentation") == "GeometryPresentation.createPresentation"
    assert ts.original_name("no_such_tool") == "no_such_tool"
    # the model sees BFCL's hinted docs (Java params as strings), the checker the raw ones
    assert sc.functions[0]["parameters"]["properties"]["controller"]["type"] == "string"
    assert sc.checker_functions[0]["parameters"]["properties"]["controller"]["type"] == "any"
    assert "Java 8 SDK" in ts.tools[0]["description"]


def test_float_dict_tuple_types_are_converted():
    # find a case with each Gorilla type and check its converted schema
    wanted = {"float": "number", "dict": "object", "tuple": "array", "any": "string"}
    found = {}
    for sc in load_scenarios(["simple_python", "multiple", "parallel", "live_multiple"]):
        for raw, tool in zip(sc.functions, tools_for(sc).tools):
            for pname, pspec in raw["parameters"]["properties"].items():
                src = pspec.get("type")
                if src in wanted and src not in found:
                    found[src] = tool["parameters"]["properties"][pname]
    assert set(found) == set(wanted)
    for src, converted in found.items():
        assert converted["type"] == wanted[src]
    assert found["float"]["format"] == "float"


def test_sanitize_tool_name():
    assert sanitize_tool_name("a.b.c") == "a_b_c"
    assert sanitize_tool_name("x" * 80) == "x" * 64
    assert sanitize_tool_name("we ird/name") == "we_ird_name"


def test_miss_func_docs_appear_at_reveal_turn_with_bfcl_prompt():
    sc = load_scenario("multi_turn_miss_func_0")
    assert sc.missed_functions and list(sc.missed_functions) == [3]
    assert [d["name"] for d in sc.missed_functions[3]] == ["sort"]
    assert "sort" not in tools_for(sc, 2).names
    assert "sort" in tools_for(sc, 3).names and "sort" in tools_for(sc, 4).names
    # BFCL's dataset leaves the reveal turn empty and sends this fixed prompt
    assert sc.turns[3] == [
        {
            "role": "user",
            "content": "I have updated some more functions you can choose from. What about now?",
        }
    ]
    with pytest.raises(IndexError):
        tools_for(sc, sc.num_turns)


def test_long_context_flag():
    assert load_scenario("multi_turn_long_context_0").long_context
    assert not load_scenario("multi_turn_base_0").long_context


def test_model_config_shim_keeps_provider_sdks_out():
    """In a fresh interpreter: other tests (the bfcl-format fidelity test runs BFCL's own
    eval_runner) may have imported more of bfcl_eval into this one."""
    import subprocess
    import textwrap

    code = textwrap.dedent("""
        import sys
        from slm_agent.bench.bfcl import compat
        compat.ensure_bfcl()
        from bfcl_eval.eval_checker.ast_eval import ast_checker
        assert compat.is_shimmed()
        assert ast_checker.MODEL_CONFIG_MAPPING[compat.CHECKER_MODEL_NAME].underscore_to_dot is False
        for sdk in ("openai", "anthropic", "google.genai", "mistralai", "cohere", "boto3"):
            assert sdk not in sys.modules, f"{sdk} got imported"
        assert "bfcl_eval.model_handler.base_handler" not in sys.modules
    """)
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr[-2000:]
