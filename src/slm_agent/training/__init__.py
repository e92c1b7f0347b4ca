"""LoRA fine-tuning of a profile's model (``slm-agent finetune``; no ROS imports).

:mod:`.base_model` loads a profile's GGUF into transformers (dequantized,
trainable on CPU); :mod:`.sft` builds per-call examples from a dataset and
trains a peft LoRA with trl's ``SFTTrainer`` (QLoRA 4-bit only with CUDA);
:mod:`.gguf_adapter` writes the trained adapter as a llama.cpp GGUF LoRA
adapter; :mod:`.evaluate` runs the before/after comparison.  torch,
transformers, peft and trl are imported inside functions, so importing this
package stays cheap.
"""
