"""A peft LoRA adapter written as a llama.cpp GGUF LoRA adapter (and checked when read).

llama.cpp's adapter format (``llama-adapter.cpp``): metadata
``general.type = adapter``, ``adapter.type = lora``, ``adapter.lora.alpha``
(f32), ``general.architecture`` of the base; for every adapted weight
``<gguf base tensor name>.lora_a`` and ``.lora_b``.  llama.cpp checks
``a.ne[0] == base.ne[0]`` (input features), ``b.ne[1] == base.ne[1]``
(output features) and ``a.ne[1] == b.ne[0]`` (rank), and scales by
``alpha / rank * user_scale``, which is peft's ``lora_alpha / r``.  GGUF
stores dims reversed from numpy, so peft's ``lora_A.weight`` (r, in) and
``lora_B.weight`` (out, r) are written as they are.

Hugging Face module names are mapped to GGUF names with the ``gguf``
package's tensor maps (``model.layers.3.self_attn.q_proj`` ->
``blk.3.attn_q``).  Architectures whose converter permutes weights (Llama's
q/k rows for RoPE) would need the same permutation applied to ``lora_b``;
they are refused here rather than written wrong (:data:`PERMUTED_ARCHS`).
"""
from __future__ import annotations

import json
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from slm_agent.training.base_model import TrainingError

#: architectures whose HF->GGUF conversion permutes attention weights (not supported here)
PERMUTED_ARCHS = {"llama", "llama4", "mistral", "granite", "granitemoe"}
ADAPTER_FILE = "adapter_model.safetensors"
CONFIG_FILE = "adapter_config.json"
_KEY_RE = re.compile(r"^(?:base_model\.model\.)?(?P<module>.+)\.lora_(?P<ab>[AB])(?:\.default)?\.weight$")


@dataclass
class AdapterInfo:
    """What a GGUF adapter file says about itself (:func:`read_adapter`)."""

    path: str
    architecture: str
    alpha: float
    tensors: int
    rank: int


def _base_shapes(base_gguf: str) -> tuple[str, int, dict[str, tuple[int, ...]]]:
    """(architecture, block count, {tensor name: ggml ne}) of the base model."""
    import gguf

    reader = gguf.GGUFReader(base_gguf)
    arch_field = reader.get_field("general.architecture")
    if arch_field is None:
        raise TrainingError(f"{base_gguf}: no general.architecture")
    arch = arch_field.contents()
    blocks_field = reader.get_field(f"{arch}.block_count")
    blocks = int(blocks_field.contents()) if blocks_field is not None else 0
    shapes = {t.name: tuple(int(x) for x in t.shape) for t in reader.tensors}
    return arch, blocks, shapes


def convert_peft_to_gguf(adapter_dir: Path | str, base_gguf: str, out_path: Path | str) -> AdapterInfo:
    """Write the peft adapter in ``adapter_dir`` as a GGUF LoRA adapter for ``base_gguf``."""
    import gguf
    from safetensors.numpy import load_file

    adapter_dir = Path(adapter_dir)
    cfg = json.loads((adapter_dir / CONFIG_FILE).read_text())
    if cfg.get("use_rslora") or cfg.get("use_dora"):
        raise TrainingError("rsLoRA/DoRA adapters have no llama.cpp GGUF form; train plain LoRA")
    if cfg.get("rank_pattern") or cfg.get("alpha_pattern"):
        raise TrainingError("per-module rank/alpha patterns are not supported in one GGUF adapter")
    alpha, rank = float(cfg["lora_alpha"]), int(cfg["r"])
    arch, blocks, shapes = _base_shapes(base_gguf)
    if arch in PERMUTED_ARCHS:
        raise TrainingError(f"{arch}: its GGUF conversion permutes q/k weights; GGUF adapters for it are "
                            "not supported yet (use the peft adapter)")
    arch_enum = next((k for k, v in gguf.MODEL_ARCH_NAMES.items() if v == arch), None)
    if arch_enum is None:
        raise TrainingError(f"{arch}: unknown to the gguf package")
    tmap = gguf.get_tensor_name_map(arch_enum, blocks)
    weights = load_file(str(adapter_dir / ADAPTER_FILE))
    pairs: dict[str, dict[str, np.ndarray]] = {}
    for key, value in weights.items():
        m = _KEY_RE.match(key)
        if not m:
            raise TrainingError(f"{key}: not a LoRA A/B weight (only LoRA on linear layers is supported)")
        module = m.group("module")
        for prefix in ("model.language_model.", ):  # multimodal wrappers name the text model differently
            if module.startswith(prefix):
                module = "model." + module[len(prefix):]
        name = tmap.get_name(module)
        if name is None:
            raise TrainingError(f"{module}: no GGUF tensor name for it in {arch}")
        pairs.setdefault(name + ".weight", {})[m.group("ab")] = value.astype(np.float32)
    writer = gguf.GGUFWriter(str(out_path), arch)
    writer.add_type(gguf.GGUFType.ADAPTER)
    writer.add_string(gguf.Keys.Adapter.TYPE, "lora")
    writer.add_float32(gguf.Keys.Adapter.LORA_ALPHA, alpha)
    for base_name in sorted(pairs):
        ab = pairs[base_name]
        if set(ab) != {"A", "B"}:
            raise TrainingError(f"{base_name}: LoRA A or B missing")
        a, b = ab["A"], ab["B"]
        base = shapes.get(base_name)
        if base is None:
            raise TrainingError(f"{base_name}: not a tensor of {base_gguf}")
        # numpy (r, in) / (out, r) ; ggml ne of the base = (in, out)
        if a.shape != (rank, base[0]) or b.shape != (base[1], rank):
            raise TrainingError(f"{base_name}: LoRA shapes A{a.shape} B{b.shape} do not fit the base "
                                f"tensor ne={base} with rank {rank}")
        writer.add_tensor(base_name + ".lora_a", np.ascontiguousarray(a))
        writer.add_tensor(base_name + ".lora_b", np.ascontiguousarray(b))
    writer.write_header_to_file()
    writer.write_kv_data_to_file()
    writer.write_tensors_to_file()
    writer.close()
    return AdapterInfo(str(out_path), arch, alpha, 2 * len(pairs), rank)


def read_adapter(path: Path | str) -> AdapterInfo:
    """Check that ``path`` is a GGUF LoRA adapter; :class:`ValueError` with one line if not."""
    import gguf

    path = Path(path)
    if not path.is_file():
        raise ValueError(f"LoRA adapter not found: {path}")
    try:
        reader = gguf.GGUFReader(str(path))
    except Exception as exc:  # noqa: BLE001 - any parse failure: not a GGUF
        raise ValueError(f"{path} is not a GGUF file ({exc})") from None

    def field(key: str) -> Any:
        f = reader.get_field(key)
        return f.contents() if f is not None else None

    if field("general.type") != "adapter" or field("adapter.type") != "lora":
        raise ValueError(f"{path} is a GGUF file but not a LoRA adapter "
                         f"(general.type={field('general.type')!r}, adapter.type={field('adapter.type')!r})")
    ranks = {int(t.shape[1]) for t in reader.tensors if t.name.endswith(".lora_a")}
    return AdapterInfo(str(path), str(field("general.architecture")), float(field("adapter.lora.alpha") or 0.0),
                       len(reader.tensors), max(ranks) if ranks else 0)
