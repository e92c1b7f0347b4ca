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
import struct
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


_SCALARS = {0: "<B", 1: "<b", 2: "<H", 3: "<h", 4: "<I", 5: "<i", 6: "<f", 7: "<?", 10: "<Q", 11: "<q", 12: "<d"}
_STRING, _ARRAY = 8, 9


def read_header(path: Path | str) -> tuple[dict[str, Any], dict[str, tuple[int, ...]]]:
    """(scalar and string metadata, {tensor name: ggml ne}) of a GGUF file, from its header only.

    ``gguf.GGUFReader`` maps every array element of the metadata (a 262k-token
    vocabulary) into numpy objects, which takes minutes on a loaded CPU; this
    reads the same header with ``struct`` and skips arrays."""
    import mmap

    with open(path, "rb") as fh, mmap.mmap(fh.fileno(), 0, access=mmap.ACCESS_READ) as buf:
        if buf[:4] != b"GGUF":
            raise ValueError(f"{path} is not a GGUF file (no GGUF magic)")
        _version, n_tensors, n_kv = struct.unpack_from("<IQQ", buf, 4)
        pos = 24

        def string(at: int) -> tuple[str, int]:
            (n,) = struct.unpack_from("<Q", buf, at)
            return bytes(buf[at + 8:at + 8 + n]).decode("utf-8", "replace"), at + 8 + n

        def skip(vtype: int, at: int) -> int:
            if vtype in _SCALARS:
                return at + struct.calcsize(_SCALARS[vtype])
            if vtype == _STRING:
                return string(at)[1]
            if vtype == _ARRAY:
                etype, count = struct.unpack_from("<IQ", buf, at)
                at += 12
                if etype in _SCALARS:
                    return at + count * struct.calcsize(_SCALARS[etype])
                for _ in range(count):
                    at = skip(etype, at)
                return at
            raise ValueError(f"{path}: unknown GGUF value type {vtype}")

        kv: dict[str, Any] = {}
        for _ in range(n_kv):
            key, pos = string(pos)
            (vtype,) = struct.unpack_from("<I", buf, pos)
            pos += 4
            if vtype in _SCALARS:
                kv[key] = struct.unpack_from(_SCALARS[vtype], buf, pos)[0]
            elif vtype == _STRING:
                kv[key] = string(pos)[0]
            pos = skip(vtype, pos)
        tensors: dict[str, tuple[int, ...]] = {}
        for _ in range(n_tensors):
            name, pos = string(pos)
            (n_dims,) = struct.unpack_from("<I", buf, pos)
            dims = struct.unpack_from(f"<{n_dims}Q", buf, pos + 4)
            pos += 4 + 8 * n_dims + 4 + 8     # dims, ggml type, data offset
            tensors[name] = tuple(int(d) for d in dims)
    return kv, tensors


def _base_shapes(base_gguf: str) -> tuple[str, int, dict[str, tuple[int, ...]]]:
    """(architecture, block count, {tensor name: ggml ne}) of the base model."""
    kv, shapes = read_header(base_gguf)
    arch = kv.get("general.architecture")
    if not arch:
        raise TrainingError(f"{base_gguf}: no general.architecture")
    return str(arch), int(kv.get(f"{arch}.block_count", 0)), shapes


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
    path = Path(path)
    if not path.is_file():
        raise ValueError(f"LoRA adapter not found: {path}")
    try:
        kv, tensors = read_header(path)
    except (OSError, ValueError, UnicodeDecodeError, struct.error) as exc:
        raise ValueError(f"{path} is not a GGUF file ({exc})") from None
    if kv.get("general.type") != "adapter" or kv.get("adapter.type") != "lora":
        raise ValueError(f"{path} is a GGUF file but not a LoRA adapter "
                         f"(general.type={kv.get('general.type')!r}, adapter.type={kv.get('adapter.type')!r})")
    ranks = {dims[1] for name, dims in tensors.items() if name.endswith(".lora_a") and len(dims) > 1}
    return AdapterInfo(str(path), str(kv.get("general.architecture")), float(kv.get("adapter.lora.alpha") or 0.0),
                       len(tensors), max(ranks) if ranks else 0)
