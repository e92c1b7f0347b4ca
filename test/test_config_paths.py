"""config_paths: one name-or-path lookup for model profiles and tool sets."""
from __future__ import annotations

from slm_agent.agent.toolset import resolve_tool_set
from slm_agent.config_paths import find_config, looks_like_path, names_in, search_dirs
from slm_agent.profiles import find_profile


def test_name_searches_dirs_in_order_path_is_taken_as_is(tmp_path):
    first, second = tmp_path / "a", tmp_path / "b"
    first.mkdir()
    second.mkdir()
    (second / "arm.yaml").write_text("x: 1\n")
    (second / "base.yml").write_text("x: 1\n")
    (first / "base.yaml").write_text("x: 1\n")
    assert find_config("arm", [first, second]) == second / "arm.yaml"
    assert find_config("base", [first, second]) == first / "base.yaml"
    assert find_config("base", [second]) == second / "base.yml"
    assert find_config(str(second / "arm.yaml"), [first]) == second / "arm.yaml"
    assert find_config("arm.yaml", [second]) is None      # a path, not a name: relative to the cwd
    assert find_config("missing", [first, second]) is None
    assert looks_like_path("x/y") and looks_like_path("y.yml") and not looks_like_path("gemma3-270m-q4km")
    assert names_in([first, second, tmp_path / "absent"]) == ["arm", "base"]


def test_env_dirs_come_first_for_profiles_and_tool_sets(tmp_path, monkeypatch):
    (tmp_path / "demo_robot.yaml").write_text("tools: []\n")
    monkeypatch.setenv("SLM_AGENT_TOOL_SETS", str(tmp_path))
    assert resolve_tool_set("demo_robot") == tmp_path / "demo_robot.yaml"
    assert search_dirs("models", "NO_SUCH_ENV_VAR")[0].parts[-2:] == ("config", "models")
    assert find_profile("gemma3-270m-q4km").name == "gemma3-270m-q4km.yaml"
