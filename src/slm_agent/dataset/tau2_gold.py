"""tau2 train-split tasks -> :class:`Sample` (gold actions as conversations).

Only ``<domain>:train`` task sets are read (:data:`TRAIN_SPLITS`); asking for
any other split is refused, so neither tau2's test split nor any BFCL case
can reach a training set through this source.  Each task becomes: the user's
scripted request (tau2's user instructions), then every gold action of the
assistant, executed in the task's own tau2 environment (so each call is
followed by the real tool result), then a short final answer listing what
the task must communicate.  Tasks without assistant actions are dropped
(counted).
"""
from __future__ import annotations

import json
from typing import Any, Iterator, Sequence

from slm_agent.dataset.records import Drops, Sample, assistant_call_message, function_tool

SOURCE = "tau2"
TRAIN_SPLITS = {"airline": "train", "retail": "train", "telecom": "train"}


def _domain(name: str) -> str:
    domain, _, split = name.partition(":")
    if domain not in TRAIN_SPLITS:
        raise ValueError(f"tau2 domain {domain!r} has no train split; valid: {', '.join(TRAIN_SPLITS)}")
    if split and split != "train":
        raise ValueError(f"only tau2 train splits are used for training (got {name!r})")
    return domain


def task_sample(domain: str, task: Any) -> Sample | None:
    """The conversation of one task's gold actions (None when it has no assistant action)."""
    from slm_agent.bench.tau2 import data
    from slm_agent.bench.tau2.suite import DomainExecutor, scripted_user_message

    actions = [(name, args) for who, name, args in data.gold_actions(task) if who == "assistant"]
    if not actions:
        return None
    executor = DomainExecutor(domain, task, solo=False)
    tools = [function_tool(s["name"], s.get("description", ""), s.get("parameters")) for s in executor.schemas()]
    messages: list[dict[str, Any]] = [{"role": "user", "content": scripted_user_message(task)}]
    for i, (name, args) in enumerate(actions):
        messages.append(assistant_call_message([(name, args)], id_prefix=f"call_{i}"))
        try:
            result = executor.execute(name, args)
        except Exception as exc:  # noqa: BLE001 - a gold action the environment refuses: keep its error
            result = f"Error: {exc}"
        messages.append({"role": "tool", "tool_call_id": f"call_{i}_0",
                         "content": result if isinstance(result, str) else json.dumps(result)})
    info = data.communicate_info(task)
    messages.append({"role": "assistant", "content": "Done." + (" " + "; ".join(info) if info else "")})
    return Sample(messages=messages, tools=tools, source=SOURCE,
                  meta={"suite": "tau2", "case_id": data.case_id(domain, str(task.id)), "split": "train"})


def read_tau2(domains: Sequence[str], drops: Drops, limit: int = 0) -> Iterator[Sample]:
    """Samples of the train-split tasks of ``domains`` (``limit`` per domain, 0 = all)."""
    from slm_agent.bench.tau2 import data

    for name in domains:
        domain = _domain(name)
        tasks = data.tasks(domain, TRAIN_SPLITS[domain])
        for task in tasks[:limit] if limit else tasks:
            sample = task_sample(domain, task)
            if sample is None:
                drops.add(SOURCE, "no assistant gold action")
                continue
            yield sample
