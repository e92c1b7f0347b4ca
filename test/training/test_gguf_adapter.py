"""peft LoRA weights -> llama.cpp GGUF adapter: names, orientation, metadata, refusals (no training).

A synthetic peft adapter (random A/B of the shapes peft makes for the bundled
Gemma 3 270M) is converted against the real base GGUF; the result is read
back with the ``gguf`` package.  llama.cpp's own checks (``a.ne[0] ==
base.ne[0]``, ``b.ne[1] == base.ne[1]``) are asserted on the written tensors.
That llama.cpp loads it and matches torch+peft is shown in
``test_training_lora.py``.
"""
from __future__ import annotations

import json

import numpy as np
import pytest

gguf = pytest.importorskip("gguf", reason="gguf not installed (requirements/base.txt)")
safetensors_numpy = pytest.importorskip("safetensors.numpy", reason="safetensors not installed")

from slm_agent.profiles import load_profile  # noqa: E402
from slm_agent.training.base_model import TrainingError  # noqa: E402
from slm_agent.training.gguf_adapter import convert_peft_to_gguf, read_adapter, read_header  # noqa: E402

RANK = 4


@pytest.fixture(scope="module")
def base_gguf():
    path = load_profile("gemma3-270m-q4km").resolved_model_path()
    kv, shapes = read_header(path)
    assert kv["general.architecture"] == "gemma3" and kv["gemma3.block_count"] == 18
    return path, shapes


def _adapter(tmp_path, shapes, modules, bad_shape=False):
    rng = np.random.default_rng(0)
    weights = {}
    for hf, gg in modules.items():
        n_in, n_out = shapes[gg]
        a = rng.standard_normal((RANK, n_in + (1 if bad_shape else 0))).astype(np.float32)
        weights[f"base_model.model.{hf}.lora_A.weight"] = a
        weights[f"base_model.model.{hf}.lora_B.weight"] = rng.standard_normal((n_out, RANK)).astype(np.float32)
    safetensors_numpy.save_file(weights, str(tmp_path / "adapter_model.safetensors"))
    (tmp_path / "adapter_config.json").write_text(json.dumps({"r": RANK, "lora_alpha": 8}))
    return weights


MODULES = {"model.layers.0.self_attn.q_proj": "blk.0.attn_q.weight",
           "model.layers.17.mlp.down_proj": "blk.17.ffn_down.weight"}


def test_written_adapter_has_llama_cpp_names_orientation_and_metadata(tmp_path, base_gguf):
    path, shapes = base_gguf
    weights = _adapter(tmp_path, shapes, MODULES)
    info = convert_peft_to_gguf(tmp_path, path, tmp_path / "a.gguf")
    assert (info.architecture, info.alpha, info.tensors, info.rank) == ("gemma3", 8.0, 4, RANK)
    reader = gguf.GGUFReader(str(tmp_path / "a.gguf"))
    assert reader.get_field("general.type").contents() == "adapter"
    assert reader.get_field("adapter.type").contents() == "lora"
    written = {t.name: t for t in reader.tensors}
    assert set(written) == {f"{g}.lora_{x}" for g in MODULES.values() for x in "ab"}
    for hf, gg in MODULES.items():
        a, b, base = written[gg + ".lora_a"], written[gg + ".lora_b"], shapes[gg]
        # llama-adapter.cpp: a.ne[0] == base.ne[0], b.ne[1] == base.ne[1], a.ne[1] == b.ne[0] == rank
        assert int(a.shape[0]) == base[0] and int(b.shape[1]) == base[1]
        assert int(a.shape[1]) == int(b.shape[0]) == RANK
        np.testing.assert_array_equal(np.asarray(a.data).reshape(RANK, base[0]),
                                      weights[f"base_model.model.{hf}.lora_A.weight"])
    assert read_adapter(tmp_path / "a.gguf").rank == RANK


def test_shapes_that_do_not_fit_the_base_are_refused(tmp_path, base_gguf):
    path, shapes = base_gguf
    _adapter(tmp_path, shapes, MODULES, bad_shape=True)
    with pytest.raises(TrainingError, match="do not fit the base tensor"):
        convert_peft_to_gguf(tmp_path, path, tmp_path / "a.gguf")


def test_rslora_and_non_lora_weights_are_refused(tmp_path, base_gguf):
    path, shapes = base_gguf
    _adapter(tmp_path, shapes, MODULES)
    (tmp_path / "adapter_config.json").write_text(json.dumps({"r": RANK, "lora_alpha": 8, "use_rslora": True}))
    with pytest.raises(TrainingError, match="rsLoRA/DoRA"):
        convert_peft_to_gguf(tmp_path, path, tmp_path / "a.gguf")


def test_read_adapter_refuses_a_base_model_a_non_gguf_and_a_missing_file(tmp_path, base_gguf):
    path, shapes = base_gguf
    with pytest.raises(ValueError, match="not a LoRA adapter"):
        read_adapter(path)
    (tmp_path / "x.gguf").write_text("hello")
    with pytest.raises(ValueError, match="not a GGUF file"):
        read_adapter(tmp_path / "x.gguf")
    with pytest.raises(ValueError, match="LoRA adapter not found"):
        read_adapter(tmp_path / "none.gguf")


def test_header_reader_agrees_with_the_gguf_package_on_an_adapter(tmp_path, base_gguf):
    path, shapes = base_gguf
    _adapter(tmp_path, shapes, MODULES)
    convert_peft_to_gguf(tmp_path, path, tmp_path / "a.gguf")
    kv, tensors = read_header(tmp_path / "a.gguf")
    reader = gguf.GGUFReader(str(tmp_path / "a.gguf"))
    assert tensors == {t.name: tuple(int(x) for x in t.shape) for t in reader.tensors}
    assert kv["adapter.lora.alpha"] == reader.get_field("adapter.lora.alpha").contents() == 8.0


@pytest.mark.parametrize("lora, backend, text", [
    ({"scale": 1.0}, "llama_cpp", "model.lora.path: required (the GGUF LoRA adapter file)"),
    ({"path": "a.gguf", "scale": -1.0}, "llama_cpp", "model.lora.scale: must be >= 0, got -1.0"),
    ({"path": "a.gguf"}, "openai_http", "model.lora: only the llama_cpp backend takes a LoRA adapter, not openai_http"),
])
def test_profile_lora_settings_are_checked_in_one_line(lora, backend, text):
    from slm_agent.profiles import ProfileError, parse_profile

    data = {"model": {"name": "m", "path": "m.gguf", "lora": lora}, "backend": {"type": backend}}
    with pytest.raises(ProfileError) as exc:
        parse_profile(data, name="t", validate_files=False)
    assert text in exc.value.problems
