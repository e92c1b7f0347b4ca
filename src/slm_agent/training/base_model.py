"""A profile's GGUF model, loaded into transformers for training.

transformers dequantizes a GGUF (needs the ``gguf`` package) into a normal
trainable model; float32 on CPU (bfloat16 matmuls are slow on CPUs without
AMX, and fp32 keeps the comparison with llama.cpp tight).  The tokenizer
comes from the same file; when the GGUF carries no chat template, the
profile's template (``chat.template_file``) is used, so training formats
conversations exactly like the llama.cpp engine does.
"""
from __future__ import annotations

import os
from dataclasses import dataclass
from typing import Any, Optional


class TrainingError(RuntimeError):
    """A fine-tuning problem a user can act on (one line)."""


@dataclass
class BaseModel:
    profile: Any
    gguf_path: str
    model: Any
    tokenizer: Any


def gguf_path_of(profile: Any) -> str:
    """The GGUF behind a llama_cpp profile (:class:`TrainingError` otherwise)."""
    if profile.backend_type != "llama_cpp":
        raise TrainingError(f"profile {profile.name}: fine-tuning needs a llama_cpp (GGUF) profile, "
                            f"not {profile.backend_type}")
    path = profile.resolved_model_path()
    if not str(path).endswith(".gguf") or not os.path.isfile(path):
        raise TrainingError(f"profile {profile.name}: {path} is not a GGUF file")
    return str(path)


def set_threads(n: Optional[int]) -> None:
    import torch

    if n:
        torch.set_num_threads(int(n))


def load_base(profile: Any, *, dtype: str = "float32", device: str = "cpu", quantize_4bit: bool = False) -> BaseModel:
    """Tokenizer + causal LM of ``profile``'s GGUF (dequantized; optionally re-quantized 4-bit for QLoRA)."""
    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer

    path = gguf_path_of(profile)
    folder, name = os.path.split(path)
    tokenizer = AutoTokenizer.from_pretrained(folder, gguf_file=name)
    if not getattr(tokenizer, "chat_template", None):
        template = profile.chat_template_text()
        if template:
            tokenizer.chat_template = template
    if tokenizer.pad_token_id is None:
        tokenizer.pad_token = tokenizer.eos_token
    kwargs: dict[str, Any] = {"gguf_file": name, "dtype": getattr(torch, dtype)}
    if quantize_4bit:
        from transformers import BitsAndBytesConfig

        kwargs["quantization_config"] = BitsAndBytesConfig(
            load_in_4bit=True, bnb_4bit_quant_type="nf4", bnb_4bit_compute_dtype=torch.bfloat16)
        kwargs["device_map"] = {"": 0}
    model = AutoModelForCausalLM.from_pretrained(folder, **kwargs)
    if not quantize_4bit:
        # the GGUF weights were dequantized on load: a plain float model, but transformers still
        # labels it "quantized with GGUF" and the Trainer refuses to train such a model
        model.hf_quantizer = None
        model.is_quantized = False
        if hasattr(model.config, "quantization_config"):
            del model.config.quantization_config
        model.to(device)
    freeze_routers(model)
    return BaseModel(profile, path, model, tokenizer)


def freeze_routers(model: Any) -> int:
    """Keep MoE routers (``*.gate`` / ``*router*`` linear layers) frozen; returns how many were found."""
    n = 0
    for name, module in model.named_modules():
        leaf = name.rsplit(".", 1)[-1]
        if leaf in ("gate", "router") or leaf.endswith("router"):
            for p in module.parameters():
                p.requires_grad_(False)
            n += 1
    return n

