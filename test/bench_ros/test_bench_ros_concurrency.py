"""``slm-agent bench --concurrency``: cases in flight at once against a real model server.

The server is llama-cpp-python's own (``python -m llama_cpp.server``) on
loopback with the embedded SmolLM2 135M model (chatml; it answers all three
cases with real calls, and its 49k vocabulary keeps the server's
schema-constrained sampling cheap: Gemma 3's 262k made one run take minutes);
the agent reaches it through a temporary ``openai_http`` profile.  The server
runs ONE llama.cpp thread: on two cores shared with other work, two threads
spin-waiting on each other made single calls 10x slower (94 s instead of 8 s
measured for one case), with one thread a run of three cases takes ~20-25 s.  The same three BFCL simple_python cases
run at ``--concurrency 1`` and then ``--concurrency 2`` (the agent then runs
two goals at once, ``max_parallel_goals`` 2), and each case's parsed calls,
raw output and verdict must equal its concurrency-1 result.

Determinism: the server is started with ``--interrupt_requests False`` (its
default, True, aborts the streaming request in progress when the next one
arrives) and evaluates one request at a time on one model; it reuses the KV
prefix of the request before, so at concurrency 2 the prompts reach it in
another order than at concurrency 1.  Greedy outputs were compared across
these orders by hand first (same calls, same raw text, 3 of 3 cases, with
Gemma 3 270M and SmolLM2 135M) and are
compared here on every run: a difference would fail this test, not be
averaged away.  The two goals of the concurrency-2 run really overlapped:
checked on the per-call metrics' start/end stamps in results.jsonl.

Also here, without a server: the gold agent (answers every goal at once,
``--gold-delay`` inside each reported call) at concurrency 3 stopped by
Ctrl-C and resumed (each case once, calls overlapped); the refusals in one
line (exit 2, nothing started) and the resume rule.
"""
from __future__ import annotations

import json
import signal
import subprocess
import sys
from pathlib import Path
from typing import Iterator

import pytest

pytest.importorskip("bfcl_eval", reason="bfcl_eval not installed (pip install --no-deps bfcl-eval==2026.3.23)")
pytest.importorskip("rclpy", reason="rclpy (ROS 2 Python client) not installed")
pytest.importorskip("slm_agent.action", reason="slm_agent interfaces not generated/installed")

sys.path.insert(0, str(Path(__file__).resolve().parent))
from bench_helpers import REPO, Proc, jsonl_lines, jsonl_records, wait_until  # noqa: E402

from slm_agent.bench import rundir  # noqa: E402

CLI = [sys.executable, "-m", "slm_agent.cli"]
CASES = ["simple_python_0", "simple_python_1", "simple_python_2"]
RUN_TIMEOUT_S = 280


def _stamp(s: dict) -> float:
    return s["sec"] + s["nanosec"] / 1e9


@pytest.fixture(scope="module")
def server_url() -> Iterator[str]:
    pytest.importorskip("httpx", reason="the agent's openai_http engine needs httpx")
    pytest.importorskip("llama_cpp.server.app", reason="llama-cpp-python's server extra (fastapi, uvicorn, "
                                                       "sse-starlette) is not installed")
    from llama_server import llama_server

    from slm_agent.profiles import load_profile

    model = load_profile("smollm2-135m-q4_1").model_path
    assert model is not None
    with llama_server(model, "--n_ctx", "4096", "--n_threads", "1", "--n_threads_batch", "1",
                      "--chat_format", "chatml", "--interrupt_requests", "False") as url:
        yield url


def _profile(path: Path, url: str) -> Path:
    """openai_http profile for llama-cpp-python's server: no usage in streams, the schema
    in response_format json_object; greedy, few tokens (the calls here take <= 23)."""
    path.write_text(f"""\
name: concurrency-test-http
description: llama-cpp-python server on loopback (test)
model:
  name: smollm2
backend:
  type: openai_http
  openai_http:
    base_url: {url}
    connect_timeout_s: 5.0
    read_timeout_s: 120.0
    include_usage: false
    structured_output: json_object_schema
    grammar_field: grammar
chat:
  mode: template
  stop: ["<|im_end|>"]
sampling:
  temperature: 0.0
  top_p: 1.0
  max_tokens: 64
  seed: 0
""", encoding="utf-8")
    return path


def _bench(out: Path, *extra: str, timeout: float = RUN_TIMEOUT_S) -> subprocess.CompletedProcess:
    return subprocess.run([*CLI, "bench", "--suite", "bfcl", "--ids", ",".join(CASES), "--output-dir", str(out),
                           "--no-record", "--no-telemetry", "--no-report", "--quiet", *extra],
                          capture_output=True, text=True, timeout=timeout, cwd=REPO)


def _by_case(out: Path) -> dict[str, dict]:
    records = jsonl_records(out / "results.jsonl")
    ids = [r["case_id"] for r in records]
    assert sorted(ids) == sorted(CASES), f"each case exactly once: {ids}"
    return {r["case_id"]: r for r in records}


def test_concurrency_2_gives_each_case_its_concurrency_1_result(server_url, tmp_path):
    profile = _profile(tmp_path / "http.yaml", server_url)
    runs = {}
    for n in (1, 2):
        out = tmp_path / f"c{n}"
        res = _bench(out, "--model", str(profile), "--concurrency", str(n))
        logs = "\n".join(p.read_text(errors="replace")[-3000:] for p in sorted((out / "logs").glob("*.log")))
        assert res.returncode == 0, f"concurrency {n}: exit {res.returncode}\n{res.stderr[-2000:]}\n{logs}"
        runs[n] = _by_case(out)
        run_json = json.loads((out / "run.json").read_text())
        assert run_json["config"]["concurrency"] == n
        if n == 2:
            assert "max_parallel_goals=2" in (out / "logs" / "agent.log").read_text(), "the agent ran 2 at once"

    one, two = runs[1], runs[2]
    assert any(r["calls"] for r in one.values()), "the model emitted no call at all: the comparison is empty"
    for case in CASES:
        a, b = one[case], two[case]
        assert [(c["name"], json.loads(c["arguments"])) for c in b["calls"]] == \
               [(c["name"], json.loads(c["arguments"])) for c in a["calls"]], case
        assert (b["passed"], b["valid"], b["error_type"]) == (a["passed"], a["valid"], a["error_type"]), case
        assert b["raw_output"] == a["raw_output"], case
        assert len(b["metrics"]) == len(a["metrics"]) >= 1, case
        assert b["energy_j"] is None, "a case's energy is not attributable at concurrency 2 (NaN)"

    # the goals of the concurrency-2 run were in flight together: some two LLM calls overlap
    windows = sorted((_stamp(m["header"]["stamp"]), _stamp(m["end_stamp"]), case)
                     for case, r in two.items() for m in r["metrics"])
    overlaps = [(x[2], y[2]) for i, x in enumerate(windows) for y in windows[i + 1:] if y[0] < x[1]]
    assert overlaps, f"no two calls overlapped at concurrency 2: {windows}"
    # at concurrency 1 none did (the check above can fail)
    windows1 = sorted((_stamp(m["header"]["stamp"]), _stamp(m["end_stamp"])) for r in one.values()
                      for m in r["metrics"])
    assert all(b0 >= a1 for (_a0, a1), (b0, _b1) in zip(windows1, windows1[1:])), windows1

    from slm_agent.bench.report import make_report

    text = make_report(tmp_path / "c2", plots=False).markdown
    assert "Concurrency 2:" in text and "energy_j NaN per case" in text
    assert "Concurrency 1: one case at a time" in make_report(tmp_path / "c1", plots=False).markdown

    # a resume into the concurrency-1 directory at concurrency 2 is refused in one line
    res = _bench(tmp_path / "c1", "--model", str(profile), "--concurrency", "2", timeout=60)
    assert res.returncode == 2 and "concurrency (1 there, 2 now)" in res.stderr, res.stderr


def test_gold_concurrency_3_ctrl_c_then_resume_writes_each_case_once(tmp_path):
    out = tmp_path / "gold"
    argv = [*CLI, "bench", "--agent", "gold", "--gold-delay", "0.6", "--categories", "simple_python", "--limit", "9",
            "--concurrency", "3", "--output-dir", str(out), "--no-record", "--no-telemetry", "--no-report"]
    first = Proc(argv, "cli")
    try:
        assert wait_until(lambda: len(jsonl_lines(out / "results.jsonl")) >= 2, 120.0), first.log()
        code = first.terminate(signal.SIGINT, timeout_s=60)
        log = first.log(10**6)
    finally:
        first.close()
    assert code == 130, log
    done = [r["case_id"] for r in jsonl_records(out / "results.jsonl")]
    assert 2 <= len(done) < 9 and len(set(done)) == len(done), done

    second = Proc(argv, "cli")
    try:
        assert second.wait(180) == 0, second.log()
    finally:
        second.close()
    records = jsonl_records(out / "results.jsonl")
    ids = [r["case_id"] for r in records]
    assert sorted(ids) == sorted(f"simple_python_{i}" for i in range(9)) and len(ids) == 9, ids
    assert all(r["passed"] for r in records), "gold answers pass"
    windows = sorted((_stamp(m["header"]["stamp"]), _stamp(m["end_stamp"])) for r in records for m in r["metrics"])
    assert any(b0 < a1 for i, (_a0, a1) in enumerate(windows) for b0, _b1 in windows[i + 1:]), windows
    assert all(r["energy_j"] is None for r in records)


def _gpu_profile(path: Path) -> Path:
    """The embedded SmolLM2 profile with every layer offloaded to a GPU (never loaded here)."""
    return _smollm2_profile(path, gpu={"n_gpu_layers": -1})


def test_concurrency_is_refused_for_gpu_offload_in_process_and_for_hosted_tools(tmp_path):
    gpu = _gpu_profile(tmp_path / "gpu.yaml")
    res = _bench(tmp_path / "a", "--model", str(gpu), "--concurrency", "2", timeout=60)
    assert res.returncode == 2, res.stderr
    lines = [ln for ln in res.stderr.splitlines() if ln.strip()]
    assert len(lines) == 1 and "--concurrency: 2 llama.cpp slots would each load" in lines[0], lines
    assert not (tmp_path / "a").exists(), "nothing written before the refusal"

    res = subprocess.run([*CLI, "bench", "--agent", "gold", "--ids", "multi_turn_base_0", "--concurrency", "3",
                          "--output-dir", str(tmp_path / "b"), "--no-record", "--no-telemetry"],
                         capture_output=True, text=True, timeout=60, cwd=REPO)
    assert res.returncode == 2, res.stderr
    assert "--concurrency: 3 cases at once cannot run multi_turn_base" in res.stderr, res.stderr
    assert not (tmp_path / "b").exists()


def test_agent_refuses_parallel_goals_with_a_gpu_offloaded_in_process_engine(tmp_path):
    gpu = _gpu_profile(tmp_path / "gpu.yaml")
    res = subprocess.run([sys.executable, "-m", "slm_agent.nodes.agent_node", "--ros-args", "-p", "autostart:=true",
                          "-p", f"model:={gpu}", "-p", "max_parallel_goals:=2"],
                         capture_output=True, text=True, timeout=60, cwd=REPO)
    out = res.stdout + res.stderr
    assert res.returncode == 2, out[-2000:]
    assert "max_parallel_goals=2: 2 llama.cpp slots would each load" in out, out[-2000:]
    assert "loaded in" not in out, "refused before the model was loaded"


def _smollm2_profile(path: Path, **changes: dict) -> Path:
    """The embedded SmolLM2 profile with ``changes`` merged into its groups (skips if not installed)."""
    import yaml

    from slm_agent.profiles import load_profile

    try:
        prof = load_profile("smollm2-135m-q4_1")
        prof.resolved_model_path()
    except Exception as exc:  # noqa: BLE001 - not installed: say so
        pytest.skip(f"smollm2-135m-q4_1 not installed: {exc}")
    data = yaml.safe_load(Path(prof.source).read_text())
    data["name"] = path.stem
    data["chat"]["template_file"] = str(Path(prof.source).parent / data["chat"]["template_file"])
    for group, values in changes.items():
        node = data.setdefault(group, {})
        for key, val in values.items():
            if isinstance(val, dict):
                node.setdefault(key, {}).update(val)
            else:
                node[key] = val
    path.write_text(yaml.safe_dump(data))
    return path


@pytest.mark.parametrize("parallel", ["contexts", "batched"])
def test_in_process_model_at_concurrency_2(tmp_path, parallel):
    """The embedded SmolLM2 in the agent's process at --concurrency 2 (engines/llama_pool.py):
    with ``parallel: contexts`` two contexts, each case's output equal to concurrency 1; with
    ``batched`` one context whose two sequences decode together (outputs may flip a near-tie:
    not compared), each case once, both sequences used, the calls overlapping."""
    profile = _smollm2_profile(tmp_path / f"smollm2-{parallel}.yaml", backend={"llama_cpp": {"parallel": parallel}})
    runs = {}
    for n in (1, 2):
        out = tmp_path / f"c{n}"
        res = _bench(out, "--model", str(profile), "--serialization", "json", "--concurrency", str(n))
        logs = "\n".join(p.read_text(errors="replace")[-3000:] for p in sorted((out / "logs").glob("*.log")))
        assert res.returncode == 0, f"concurrency {n}: exit {res.returncode}\n{res.stderr[-2000:]}\n{logs}"
        runs[n] = _by_case(out)
        threads = json.loads((out / "run.json").read_text())["llama_cpp_threads"]
        contexts = n if parallel == "contexts" else 1
        assert threads["slots"] == contexts and threads["n_threads"] >= 1, threads
    one, two = runs[1], runs[2]
    if parallel == "contexts":
        for case in CASES:
            a, b = one[case], two[case]
            assert b["raw_output"] == a["raw_output"], case
            assert (b["passed"], b["valid"], b["error_type"]) == (a["passed"], a["valid"], a["error_type"]), case
    counters = [dict(zip(m["engine_counter_names"], m["engine_counter_values"])) for r in two.values()
                for m in r["metrics"]]
    assert {c["slot"] for c in counters} == {0.0, 1.0}, "both slots served calls"
    assert {c["slots_batched"] for c in counters} == {1.0 if parallel == "batched" else 0.0}
    windows = sorted((_stamp(m["header"]["stamp"]), _stamp(m["end_stamp"])) for r in two.values()
                     for m in r["metrics"])
    assert any(y[0] < x[1] for i, x in enumerate(windows) for y in windows[i + 1:]), windows


def test_resume_with_another_concurrency_needs_allow_different_run():
    old = {"suite": "bfcl", "model": "m", "categories": ["simple_python"], "ids": [], "limit": 3}
    diffs, identity_ok = rundir.run_differences(old, {**old, "concurrency": 2})
    assert diffs == ["concurrency (1 there, 2 now)"] and identity_ok   # allowed with the flag only
    assert rundir.run_differences({**old, "concurrency": 2}, {**old, "concurrency": 2}) == ([], True)
