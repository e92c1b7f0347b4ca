"""Tool-spec tokens per serialization on BFCL's tool specs, counted with each bundled
model's own tokenizer (GGUF, vocab only): median and quartiles, and the saving of TOON vs JSON.

    .venv/bin/python benchmarks/toolspec_tokens.py
"""
import numpy as np
from slm_agent.bench.runner import select_scenarios
from slm_agent.bench.compare import model_tokenizer, spec_texts
ids=[s.case_id for s in select_scenarios("bfcl", ["simple_python","multiple","parallel","parallel_multiple","multi_turn_base"], (), 0)]
for m in ["gemma3-270m-q4km","smollm2-135m-q4_1"]:
    tok=model_tokenizer(m)
    j=[tok(t) for t in spec_texts(ids,"json")]; t=[tok(x) for x in spec_texts(ids,"toon")]
    sav=[100*(a-b)/a for a,b in zip(j,t)]
    q=lambda v: "median %.1f [Q1 %.1f, Q3 %.1f]"%tuple(np.percentile(v,[50,25,75]))
    print(m, "n=%d"%len(j), "json tokens", q(j), "| toon tokens", q(t), "| saving %", q(sav))
