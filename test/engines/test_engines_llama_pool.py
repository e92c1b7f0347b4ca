"""Several calls at once on one local GGUF (engines/llama_pool.py) and the thread policy
(engines/threads.py).

The pool's promise: N contexts over one set of weights, each call served by a free
slot, every output the one a single engine gives (greedy, same prefill chunks) -- so
``--concurrency N`` on an in-process model changes speed, not results.  Checked with
the embedded SmolLM2 135M (small vocabulary: cheap constrained sampling)."""
from __future__ import annotations

import threading
from pathlib import Path
from typing import Iterator

import pytest

from engines_fixtures import SYSTEM, TOOL_CALL_SCHEMA, tool_specs
from slm_agent.engines import ChatRequest, EngineError, create_engine, parallel_calls_problem
from slm_agent.engines.threads import thread_policy, usable_cpus
from slm_agent.profiles import load_profile

pytestmark = [pytest.mark.timeout(300), pytest.mark.isolated]

PROFILE = "smollm2-135m-q4_1"
QUESTIONS = ["Drive to the door slowly.", "Open the gripper.", "What is the capital of France?",
             "Turn left by 90 degrees."]


def _request(question: str) -> ChatRequest:
    return ChatRequest(messages=[SYSTEM, {"role": "user", "content": question}], tools=tool_specs(),
                       json_schema=TOOL_CALL_SCHEMA, max_tokens=48)


def _text(engine, req: ChatRequest) -> tuple[str, dict[str, float]]:
    chunks = list(engine.stream(req))
    metrics = chunks[-1].metrics
    assert metrics is not None
    return "".join(c.text for c in chunks), metrics.engine_counters


# ----------------------------------------------------------------------------- thread policy


def test_policy_leaves_one_cpu_for_decode_and_splits_between_slots() -> None:
    p = thread_policy(cpus=2)
    assert (p.n_threads, p.n_threads_batch) == (1, 2)
    p = thread_policy(cpus=16)
    assert (p.n_threads, p.n_threads_batch) == (15, 16)
    p = thread_policy(cpus=2, slots=2)
    assert (p.n_threads, p.n_threads_batch) == (1, 1)
    p = thread_policy(cpus=8, slots=2)
    assert (p.n_threads, p.n_threads_batch) == (3, 4)
    p = thread_policy(cpus=1, slots=4)
    assert (p.n_threads, p.n_threads_batch) == (1, 1)
    assert "slot" in p.reason


def test_profile_values_win_over_the_policy() -> None:
    p = thread_policy(8, 12, cpus=2, slots=2)
    assert (p.n_threads, p.n_threads_batch) == (8, 12)
    assert "from the profile" in p.reason


def test_usable_cpus_honours_a_cgroup_quota(tmp_path: Path) -> None:
    limit = tmp_path / "cpu.max"
    limit.write_text("100000 100000\n")
    assert usable_cpus(limit) == 1
    limit.write_text("max 100000\n")
    assert usable_cpus(limit) == usable_cpus(tmp_path / "missing") >= 1
    limit.write_text("250000 100000\n")
    assert usable_cpus(limit) == min(3, usable_cpus(tmp_path / "missing"))


# ----------------------------------------------------------------------------- the pool


@pytest.fixture(scope="module")
def single() -> Iterator:
    eng = create_engine(load_profile(PROFILE))
    yield eng
    eng.close()


@pytest.fixture(scope="module")
def pool() -> Iterator:
    eng = create_engine(load_profile(PROFILE), slots=2)
    yield eng
    eng.close()


def test_the_single_engine_records_its_threads(single) -> None:
    _, counters = _text(single, _request(QUESTIONS[0]))
    policy = thread_policy()
    assert counters["llama_threads"] == policy.n_threads
    assert counters["llama_threads_batch"] == policy.n_threads_batch


def test_calls_at_once_give_the_single_engines_outputs(single, pool) -> None:
    expected = [_text(single, _request(q))[0] for q in QUESTIONS]
    assert any(expected), "the model produced nothing: the comparison would be empty"
    got: dict[int, tuple[str, dict[str, float]]] = {}
    errors: list[BaseException] = []

    def run(i: int) -> None:
        try:
            got[i] = _text(pool, _request(QUESTIONS[i]))
        except BaseException as exc:  # noqa: BLE001 - reported below
            errors.append(exc)

    threads = [threading.Thread(target=run, args=(i,)) for i in range(len(QUESTIONS))]
    for t in threads:
        t.start()
    for t in threads:
        t.join(240)
    assert not errors, errors
    assert [got[i][0] for i in range(len(QUESTIONS))] == expected
    assert {got[i][1]["slot"] for i in got} == {0.0, 1.0}, "both slots served calls"
    assert all(got[i][1]["slots"] == 2.0 for i in got)
    policy = thread_policy(slots=2)
    assert all(got[i][1]["llama_threads"] == policy.n_threads for i in got)


def test_gpu_offload_with_slots_is_refused_before_loading() -> None:
    prof = load_profile(PROFILE)
    gpu = prof.__class__(**{**prof.__dict__, "gpu": prof.gpu.__class__(n_gpu_layers=-1)})
    assert "each load" in parallel_calls_problem(gpu, 2)
    assert parallel_calls_problem(gpu, 1) == ""
    assert parallel_calls_problem(prof, 4) == ""
    with pytest.raises(EngineError, match="slots would each load"):
        create_engine(gpu, slots=2)
