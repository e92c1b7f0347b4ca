"""Several calls at once on one local GGUF (engines/llama_pool.py) and the thread policy
(engines/threads.py).

The pool's promise: N contexts over one set of weights, each call served by a free
slot, every output the one a single engine gives (greedy, same prefill chunks) -- so
``--concurrency N`` on an in-process model changes speed, not results.  Checked with
the embedded SmolLM2 135M (small vocabulary: cheap constrained sampling)."""
from __future__ import annotations

import json
import threading
from pathlib import Path
from typing import Iterator

import pytest

from engines_fixtures import SYSTEM, TOOL_CALL_SCHEMA, tool_specs
from slm_agent.engines import ChatRequest, EngineError, create_engine, parallel_calls_problem
from slm_agent.engines.threads import choose, decode_candidates, thread_policy, usable_cpus
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
    p = thread_policy(8, 12, cpus=2, slots=2, key="k", measure=lambda n: pytest.fail("measured"))
    assert (p.n_threads, p.n_threads_batch) == (8, 12)
    assert "from the profile" in p.reason


def test_candidates_and_choice_prefer_fewer_threads_when_as_fast() -> None:
    assert decode_candidates(1) == [1]
    assert decode_candidates(4) == [1, 2, 3, 4]
    assert decode_candidates(16) == [1, 4, 8, 15, 16]
    assert choose({1: 41.5, 2: 32.4}) == 1          # Gemma 3 270M on this VM
    assert choose({1: 10.8, 2: 13.6}) == 2          # Qwen2.5-Coder 1.5B on this VM
    assert choose({1: 10.0, 2: 10.2}) == 1          # within 3 %: the CPU is left to the rest


def test_decode_threads_are_measured_once_per_machine_key_then_cached(tmp_path: Path, monkeypatch) -> None:
    monkeypatch.setattr("slm_agent.engines.threads.busy_load", lambda: 0.0)
    cache = tmp_path / "threads.json"
    calls: list[int] = []

    def measure(n: int) -> float:
        calls.append(n)
        return {1: 10.0, 2: 14.0}[n]

    p = thread_policy(cpus=2, key="m1", measure=measure, cache=cache)
    assert (p.n_threads, p.n_threads_batch, calls) == (2, 2, [1, 2])
    assert p.decode_rates == {1: 10.0, 2: 14.0} and "measured now" in p.reason
    again = thread_policy(cpus=2, key="m1", measure=measure, cache=cache)
    assert again.n_threads == 2 and calls == [1, 2] and "cached" in again.reason, "not measured twice"
    other = thread_policy(cpus=2, key="m2", measure=lambda n: {1: 5.0, 2: 4.0}[n], cache=cache)
    assert other.n_threads == 1, "another model (key) is measured on its own"
    assert set(json.loads(cache.read_text())) == {"m1", "m2"}
    cache.write_text("not json")
    assert thread_policy(cpus=2, key="m1", measure=measure, cache=cache).n_threads == 2, "a bad cache is remeasured"


def test_a_measurement_under_load_is_used_but_not_cached(tmp_path: Path, monkeypatch) -> None:
    cache = tmp_path / "threads.json"
    monkeypatch.setattr("slm_agent.engines.threads.busy_load", lambda: 1.5)
    busy = thread_policy(cpus=2, key="m", measure=lambda n: {1: 44.0, 2: 39.0}[n], cache=cache)
    assert busy.n_threads == 1 and "not cached: load 1.5" in busy.reason
    assert not cache.exists()
    monkeypatch.setattr("slm_agent.engines.threads.busy_load", lambda: 0.2)
    quiet = thread_policy(cpus=2, key="m", measure=lambda n: {1: 43.0, 2: 72.0}[n], cache=cache)
    assert quiet.n_threads == 2 and "m" in json.loads(cache.read_text())


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


def _profile(parallel: str):
    prof = load_profile(PROFILE)
    lc = prof.backend.llama_cpp
    backend = prof.backend.__class__(**{**prof.backend.__dict__, "llama_cpp": lc.__class__(
        **{**lc.__dict__, "parallel": parallel})})
    return prof.__class__(**{**prof.__dict__, "backend": backend})


@pytest.fixture(scope="module")
def pool() -> Iterator:
    """Two whole contexts (parallel: contexts): outputs exactly as one engine's."""
    eng = create_engine(_profile("contexts"), slots=2)
    yield eng
    eng.close()


@pytest.fixture(scope="module")
def batched() -> Iterator:
    """Three sequences of one context decoded together (parallel: batched, the default)."""
    eng = create_engine(_profile("batched"), slots=3)
    yield eng
    eng.close()


def _at_once(engine, questions: list[str]) -> dict[int, tuple[str, dict[str, float]]]:
    got: dict[int, tuple[str, dict[str, float]]] = {}
    errors: list[BaseException] = []

    def run(i: int) -> None:
        try:
            got[i] = _text(engine, _request(questions[i]))
        except BaseException as exc:  # noqa: BLE001 - reported below
            errors.append(exc)

    threads = [threading.Thread(target=run, args=(i,)) for i in range(len(questions))]
    for t in threads:
        t.start()
    for t in threads:
        t.join(240)
    assert not errors, errors
    assert len(got) == len(questions)
    return got


def test_the_single_engine_measures_and_records_its_threads(single) -> None:
    _, counters = _text(single, _request(QUESTIONS[0]))
    policy = single.threads
    assert set(policy.decode_rates) == set(decode_candidates(usable_cpus())), policy
    assert policy.n_threads == choose(policy.decode_rates)
    assert counters["llama_threads"] == policy.n_threads
    assert counters["llama_threads_batch"] == policy.n_threads_batch == usable_cpus()


def test_contexts_at_once_give_the_single_engines_outputs(single, pool) -> None:
    expected = [_text(single, _request(q))[0] for q in QUESTIONS]
    assert any(expected), "the model produced nothing: the comparison would be empty"
    got = _at_once(pool, QUESTIONS)
    assert [got[i][0] for i in range(len(QUESTIONS))] == expected
    assert {got[i][1]["slot"] for i in got} == {0.0, 1.0}, "both slots served calls"
    assert all(got[i][1]["slots"] == 2.0 and got[i][1]["slots_batched"] == 0.0 for i in got)
    assert pool.threads.slots == 2 and pool.threads.n_threads_batch == max(1, usable_cpus() // 2)
    assert all(got[i][1]["llama_threads"] == pool.threads.n_threads for i in got)


def test_batched_one_call_at_a_time_gives_the_single_engines_outputs(single, batched) -> None:
    """Alone in its rounds, a sequence of the shared context runs the batches a context of its
    own would: the same outputs, token for token."""
    for q in QUESTIONS:
        assert _text(batched, _request(q))[0] == _text(single, _request(q))[0], q


def test_batched_calls_at_once_decode_together_and_stay_schema_valid(single, batched) -> None:
    import jsonschema

    expected = {i: _text(single, _request(q))[0] for i, q in enumerate(QUESTIONS)}
    rounds0, rows0 = batched._shared.rounds, batched._shared.rows
    got = _at_once(batched, QUESTIONS)
    assert {got[i][1]["slot"] for i in got} == {0.0, 1.0, 2.0}, "every sequence served a call"
    assert all(got[i][1]["slots_batched"] == 1.0 for i in got)
    rounds, rows = batched._shared.rounds - rounds0, batched._shared.rows - rows0
    assert rounds > 0 and rows > rounds, "rounds held more than one row: sequences decoded together"
    for i, (text, _) in got.items():
        # a row rounded next to other rows may flip a near-tie (module doc); the grammar still holds
        jsonschema.validate(json.loads(text), TOOL_CALL_SCHEMA)
    same = sum(got[i][0] == expected[i] for i in got)
    print(f"batched at once: {same}/{len(got)} outputs identical to one engine's; {rows} rows in {rounds} rounds")


def test_gpu_offload_with_slots_is_refused_before_loading() -> None:
    prof = load_profile(PROFILE)
    gpu = prof.__class__(**{**prof.__dict__, "gpu": prof.gpu.__class__(n_gpu_layers=-1)})
    assert "each load" in parallel_calls_problem(gpu, 2)
    assert parallel_calls_problem(gpu, 1) == ""
    assert parallel_calls_problem(prof, 4) == ""
    with pytest.raises(EngineError, match="slots would each load"):
        create_engine(gpu, slots=2)
