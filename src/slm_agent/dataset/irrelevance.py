"""Answers without a call, synthesised from the kept calls (``slm-agent dataset --irrelevance-share``).

Why: a teacher that calls a function on nearly every request logs almost no
answers without a call -- Qwen2.5-Coder-1.5B-Instruct in BFCL's format passed 1
of 20 held-out irrelevance cases and 1 of the first 9 live_irrelevance cases
(that one only because its call list did not decode, which the dataset drops).
A student trained on such logs only learns to always call, and BFCL's
irrelevance category, a fifth of the held-out set, then fails.  The usual
remedy in tool-calling data (the irrelevance augmentation of xLAM's and
ToolACE's pipelines): pair a kept question with the tools of an unrelated task
and teach the decline.

Here "unrelated" means a donor record from *another task cluster* whose tool
names share none with the question's own tools.  The reply is the gold agent's
decline sentence (:data:`DECLINE`; any reply without a call passes BFCL's
irrelevance checker).  A synthesised record takes its question's cluster label,
so it lands on the question's side of the train/validation split and no
validation question reaches training.  Records are marked
``meta.synthesised = "irrelevance"`` with the donor's case id, and counted
under the source ``irrelevance`` in report.json.
"""
from __future__ import annotations

import random
from typing import Any, Sequence

from slm_agent.dataset.records import Sample, tool_name

#: the reply of a synthesised record (the same sentence as the BFCL gold agent's decline)
DECLINE = "None of the available functions is relevant to this request."
SOURCE = "irrelevance"
#: meta of the question's record that described the logged call, not the synthesised reply
MEASURED = ("passed", "latency_ms", "prompt_tokens", "decode_tokens", "cluster")


def _question(messages: Sequence[dict[str, Any]]) -> list[dict[str, Any]]:
    """The messages up to and including the first user message (system prompt, question)."""
    out: list[dict[str, Any]] = []
    for m in messages:
        out.append(dict(m))
        if m.get("role") == "user":
            return out
    return []


def synthesise_irrelevance(samples: Sequence[Sample], labels: Sequence[int], share: float,
                           seed: int = 0) -> list[tuple[Sample, int]]:
    """About ``share`` x (records with calls) declines, each a kept question with a donor's tools
    (another cluster, no tool name in common) and :data:`DECLINE` as the reply; returns
    (sample, its question's cluster label) pairs.  Questions without a donor are skipped."""
    if share <= 0:
        return []
    rng = random.Random(seed)
    calling = [i for i, s in enumerate(samples) if s.calls() and s.tools and _question(s.messages)]
    wanted = min(len(calling), round(share * len(calling)))
    out: list[tuple[Sample, int]] = []
    for i in rng.sample(calling, len(calling)):
        if len(out) >= wanted:
            break
        s = samples[i]
        own = {tool_name(t) for t in s.tools}
        donors = [j for j in calling if labels[j] != labels[i] and not own & {tool_name(t) for t in samples[j].tools}]
        if not donors:
            continue
        d = samples[rng.choice(donors)]
        meta = {k: v for k, v in s.meta.items() if k not in MEASURED}
        meta.update(synthesised=SOURCE, tools_from=d.meta.get("case_id", ""))
        out.append((Sample(messages=_question(s.messages) + [{"role": "assistant", "content": DECLINE}],
                           tools=[dict(t) for t in d.tools], source=SOURCE, meta=meta), labels[i]))
    return out


__all__ = ["DECLINE", "SOURCE", "synthesise_irrelevance"]
