"""The run directory under a hostile user, with real processes and real DDS.

* kill -9 of ``slm-agent bench`` (the CLI alone, then its whole process
  group) leaves no node running, the bag closed, and a rerun records every
  case exactly once;
* a second writer (CLI or a bare benchmark node) is refused with the
  holder's pid;
* a corrupt line in the middle of results.jsonl loses only that case;
* bad run parameters, unusable directories, a different run in the
  directory and an agent that cannot configure: exit 2 and one line, before
  any node starts.
"""
from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import tempfile
from pathlib import Path

import pytest
import yaml

pytest.importorskip("bfcl_eval", reason="bfcl_eval not installed (pip install --no-deps bfcl-eval==2026.3.23)")
pytest.importorskip("rclpy", reason="rclpy (ROS 2 Python client) not installed")
pytest.importorskip("slm_agent.action", reason="slm_agent interfaces not generated/installed")
pytest.importorskip("rosbags", reason="rosbags not installed (pip install rosbags==0.11.9)")

sys.path.insert(0, str(Path(__file__).resolve().parent))
from bench_helpers import (REPO, Proc, bench_params, jsonl_lines, jsonl_records, terminal_signals,  # noqa: E402
                           uid, wait_until)

from slm_agent.bench import rundir  # noqa: E402
from slm_agent.bench.bag import is_closed_bag  # noqa: E402
from slm_agent.bench.results import QUARANTINE_FILE  # noqa: E402

CLI = [sys.executable, "-m", "slm_agent.cli", "bench"]
WARNING = "never retrieved"


class Cli:
    """``slm-agent bench`` in a session of its own (so its process group can be killed
    without killing pytest); stdout and stderr captured in separate temp files."""

    def __init__(self, *args: str) -> None:
        self.out = tempfile.NamedTemporaryFile(prefix="cli_", suffix=".out", delete=False)
        self.err = tempfile.NamedTemporaryFile(prefix="cli_", suffix=".err", delete=False)
        self.proc = subprocess.Popen([*CLI, *args], stdout=self.out, stderr=self.err, cwd=str(REPO),
                                     env=dict(os.environ, PYTHONUNBUFFERED="1"), start_new_session=True,
                                     preexec_fn=terminal_signals)

    @property
    def pid(self) -> int:
        return self.proc.pid

    def text(self) -> str:
        return Path(self.out.name).read_text(errors="replace") + Path(self.err.name).read_text(errors="replace")

    def stderr(self) -> str:
        return Path(self.err.name).read_text(errors="replace")

    def wait(self, timeout_s: float) -> int:
        try:
            return self.proc.wait(timeout=timeout_s)
        except subprocess.TimeoutExpired:
            self.kill_group()
            pytest.fail(f"slm-agent bench did not finish within {timeout_s} s:\n{self.text()[-4000:]}")

    def kill_group(self) -> None:
        try:
            os.killpg(self.proc.pid, signal.SIGKILL)
        except ProcessLookupError:
            pass
        self.proc.wait(timeout=10)

    def close(self) -> None:
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGINT)
            try:
                self.proc.wait(timeout=30)
            except subprocess.TimeoutExpired:
                self.kill_group()
        for f in (self.out, self.err):
            f.close()
            os.unlink(f.name)


def run_cli(*args: str, timeout_s: float = 120) -> tuple[int, str, str]:
    res = subprocess.run([*CLI, *args], capture_output=True, text=True, timeout=timeout_s, cwd=REPO)
    return res.returncode, res.stdout, res.stderr


def node_pids(out: Path) -> dict[int, str]:
    """Live node processes started for run directory ``out`` (a /proc scan: each node's
    command line names ``out/params.yaml``)."""
    marker = str(out / "params.yaml").encode()
    found = {}
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            cmd = Path(f"/proc/{entry}/cmdline").read_bytes()
            state = Path(f"/proc/{entry}/stat").read_bytes().rsplit(b")", 1)[1].split()[0]
        except (OSError, IndexError):
            continue
        if b"slm_agent.nodes." in cmd and marker in cmd and state != b"Z":
            found[int(entry)] = cmd.replace(b"\0", b" ").decode(errors="replace")
    return found


def lock_is_free(out: Path) -> bool:
    try:
        rundir.RunLock(out).acquire("test").release()
        return True
    except rundir.RunDirLocked:
        return False


def _logs(out: Path) -> str:
    return "\n".join(f"--- {p.name}\n" + p.read_text(errors="replace")[-3000:]
                     for p in sorted((out / "logs").glob("*.log")))


# --------------------------------------------------------------------------- kill -9

def test_kill9_of_the_cli_or_its_group_leaves_no_node_and_rerun_records_each_case_once(tmp_path):
    from slm_agent.bench.runner import select_scenarios

    out = tmp_path / "run"
    results = out / "results.jsonl"
    expected = [s.case_id for s in select_scenarios("bfcl", ["simple_python"], (), 12)]
    argv = ["--agent", "gold", "--gold-delay", "0.3", "--categories", "simple_python", "--limit", "12",
            "--output-dir", str(out)]

    # 1. kill -9 of the CLI process alone
    first = Cli(*argv)
    try:
        assert wait_until(lambda: len(jsonl_lines(results)) >= 2, 120), first.text()[-4000:]
        nodes = node_pids(out)
        assert len(nodes) == 4, nodes                       # telemetry, recorder, gold agent, benchmark
        os.kill(first.pid, signal.SIGKILL)
        first.proc.wait(timeout=10)
        assert wait_until(lambda: not node_pids(out), 30), f"nodes outlived the CLI: {node_pids(out)}"
    finally:
        first.close()
    done1 = jsonl_records(results)
    assert 2 <= len(done1) < 12
    logs = _logs(out)
    assert "interrupted; finished cases are in results.jsonl" in logs, logs   # the benchmark stopped cleanly
    assert "bag closed" in logs, logs                                           # ... and the recorder
    assert is_closed_bag(out / "bag")
    # a node's /proc cmdline reads empty once its memory is released, a moment before the
    # kernel closes its files (and drops the inherited flock): the lock follows within seconds
    assert wait_until(lambda: lock_is_free(out), 10), "run.lock still held after every node exited"

    # 2. kill -9 of the CLI's whole process group (the nodes run in sessions of their own) ...
    second = Cli(*argv)
    try:
        assert wait_until(lambda: len(jsonl_lines(results)) >= len(done1) + 2, 120), second.text()[-4000:]
        assert len(node_pids(out)) == 4
        second.kill_group()
        orphans = node_pids(out)
    finally:
        second.close()

    # 3. ... and rerun at once: it waits for the old nodes to let go of the directory, then finishes
    third = Cli(*argv)
    try:
        assert wait_until(lambda: not set(orphans) & set(node_pids(out)), 30), \
            f"nodes outlived the CLI: {set(orphans) & set(node_pids(out))}"
        assert third.wait(180) == 0, third.text()[-4000:]
        console = third.text()
    finally:
        third.close()
    assert is_closed_bag(out / "bag_2")
    records = jsonl_records(results)
    ids = [r["case_id"] for r in records]
    assert ids == expected, "each case exactly once, in order"
    assert len(done1) + 2 <= int(console.split(" of 12 cases already done")[0].rsplit(" ", 1)[1]) < 12
    assert all(r["passed"] for r in records)
    assert not (out / QUARANTINE_FILE).exists()
    assert WARNING not in console and WARNING not in _logs(out)
    assert not node_pids(out)


# --------------------------------------------------------------------------- one writer

def test_a_second_writer_is_refused_with_the_holders_pid(tmp_path):
    out = tmp_path / "run"
    argv = ["--agent", "gold", "--gold-delay", "0.3", "--categories", "simple_python", "--limit", "12",
            "--no-record", "--no-telemetry", "--output-dir", str(out)]
    first = Cli(*argv)
    try:
        assert wait_until(lambda: len(jsonl_lines(out / "results.jsonl")) >= 1, 120), first.text()[-4000:]
        code, stdout, stderr = run_cli(*argv, timeout_s=60)
        assert code == 2, stdout + stderr
        assert len(stderr.splitlines()) == 1, stderr
        assert f"pid {first.pid} (slm-agent bench)" in stderr and "in use" in stderr
        # a bare benchmark node (the ros2 launch route) is refused too
        ns = "/" + uid("second")
        node = Proc.node("benchmark_node", bench_params(out, f"{ns}/agent/run_task", f"{ns}/bfcl",
                                                        categories="simple_python", limit=12))
        try:
            assert node.wait(60) == 2, node.log()
            assert "in use by" in node.log()
        finally:
            node.close()
        assert first.wait(120) == 0, first.text()[-4000:]
    finally:
        first.close()
    ids = [r["case_id"] for r in jsonl_records(out / "results.jsonl")]
    assert len(ids) == 12 == len(set(ids))


# --------------------------------------------------------------------------- corrupt line

def test_a_corrupt_middle_line_loses_only_that_case(tmp_path):
    ns = "/" + uid("corrupt")
    action = f"{ns}/agent/run_task"
    gold = Proc.node("gold_agent_node", {"action_name": action, "metrics_topic": f"{ns}/agent/metrics",
                                         "tool_calls_topic": f"{ns}/agent/tool_calls"})
    out = tmp_path / "run"
    results = out / "results.jsonl"

    def bench() -> Proc:
        return Proc.node("benchmark_node", bench_params(out, action, f"{ns}/bfcl", categories="simple_python",
                                                        limit=12), namespace=ns)
    try:
        first = bench()
        try:
            assert first.wait(120) == 0, first.log()
        finally:
            first.close()
        lines = jsonl_lines(results)
        assert len(lines) == 12
        damaged_case = json.loads(lines[2])["case_id"]
        lines[2] = lines[2][: len(lines[2]) // 2] + "#!garbage"     # line 3 of 12
        results.write_text("\n".join(lines) + "\n", encoding="utf-8")

        second = bench()
        try:
            assert second.wait(120) == 0, second.log()
            log = second.log(10**6)
        finally:
            second.close()
    finally:
        gold.close()
    assert "results.jsonl line 3: not JSON" in log and f"case {damaged_case}" in log, log
    assert "11 of 12 cases already done" in log, log
    after = jsonl_lines(results)
    assert after[:11] == lines[:2] + lines[3:], "every intact line kept as written"
    records = jsonl_records(results)
    assert [r["case_id"] for r in records][-1] == damaged_case, "only the damaged case ran again"
    assert len({r["case_id"] for r in records}) == 12 == len(records)
    q = [json.loads(x) for x in (out / QUARANTINE_FILE).read_text().splitlines()]
    assert [(e["line"], e["case_id"], e["text"]) for e in q] == [(3, damaged_case, lines[2])]


# --------------------------------------------------------------------------- refused before any node

# the words of slm_agent.settings (the same a node logs for the same value as a parameter)
BAD = [
    (["--strategy", "foo"], "--strategy: must be one of direct, react, reflact (got 'foo')"),
    (["--serialization", "yaml"], "--serialization: must be one of bfcl, json, native, natural, toon (got 'yaml')"),
    (["--limit", "-3"], "--limit: must be an integer (>= 0) (got -3)"),
    (["--limit", "x"], "--limit: must be an integer (>= 0) (got 'x')"),
    (["--max-steps", "-1"], "--max-steps: must be an integer (>= 0, <= 64) (got -1)"),
    (["--case-timeout", "-1"], "--case-timeout: must be a number (> 0) (got -1.0)"),
    (["--output-dir", ""], "--output-dir: must not be empty"),
    (["--categories", "nope"], "--categories: unknown BFCL category 'nope'"),
    (["--ids", "simple_python_0,nosuch_7"], "--ids: "),
    (["--gold-delay", "-1"], "--gold-delay: must be a number (>= 0) (got -1.0)"),
    (["--telemetry-reader", "bogus"], "--telemetry-reader: must be one of auto, "),
    (["--constrained", "maybe"], "--constrained: must be one of , on, off (got 'maybe')"),
    (["--chat-format", "yaml"], "--chat-format: must be one of , raw, chat (got 'yaml')"),
    # a tau2 setting on a BFCL run would be ignored silently
    (["--tau2-judge-model", "x"], "--tau2-judge-model: only for --suite tau2 (this run is --suite bfcl)"),
]


@pytest.mark.parametrize("extra,line", BAD, ids=[" ".join(b[0]) for b in BAD])
def test_a_bad_run_parameter_exits_2_with_one_line_before_any_node(tmp_path, extra, line):
    out = tmp_path / "run"
    code, stdout, stderr = run_cli("--agent", "gold", "--output-dir", str(out), *extra, timeout_s=60)
    assert code == 2, stdout + stderr
    assert stderr.splitlines() == [stderr.strip()] and stderr.startswith("slm-agent bench: " + line), stderr
    assert "Traceback" not in stdout + stderr
    assert not out.exists(), "nothing written, no node started"


def test_every_bad_value_gets_its_line_and_a_bad_model_profile_too(tmp_path):
    out = tmp_path / "run"
    code, stdout, stderr = run_cli("--strategy", "foo", "--serialization", "yaml", "--limit", "-3",
                                   "--max-steps", "-1", "--case-timeout", "-1", "--model", "no-such-profile",
                                   "--output-dir", str(out), timeout_s=60)
    assert code == 2, stdout + stderr
    opts = [line.split(":")[1].strip() for line in stderr.splitlines()]
    assert opts == ["--limit", "--strategy", "--serialization", "--max-steps", "--case-timeout", "--model"], stderr
    assert "no profile named 'no-such-profile'" in stderr
    assert not out.exists()


def test_unusable_output_directories_exit_2_with_one_line(tmp_path):
    a_file = tmp_path / "file"
    a_file.write_text("x")
    busy = tmp_path / "resdir"
    (busy / "results.jsonl").mkdir(parents=True)
    damaged = tmp_path / "damaged"
    damaged.mkdir()
    (damaged / "run.json").write_text("{not json")
    for path, text in ((a_file, "exists and is not a directory"),
                       (a_file / "sub", "cannot create output directory"),
                       (busy, "results.jsonl is a directory"),
                       (damaged, "run.json is damaged")):
        code, stdout, stderr = run_cli("--agent", "gold", "--ids", "simple_python_0", "--output-dir", str(path),
                                       timeout_s=60)
        assert code == 2, stdout + stderr
        assert len(stderr.splitlines()) == 1 and text in stderr, stderr
        assert "Traceback" not in stdout + stderr
    assert not (busy / "logs").exists() and not (damaged / "logs").exists()


def test_a_different_run_in_the_directory_is_refused_unless_allowed(tmp_path):
    out = tmp_path / "run"
    fast = ["--agent", "gold", "--no-record", "--no-telemetry", "--no-report", "--output-dir", str(out)]
    code, stdout, stderr = run_cli(*fast, "--ids", "simple_python_0", timeout_s=120)
    assert code == 0, stdout + stderr
    run_json = (out / "run.json").read_text()
    # the nodes read params.yaml (real YAML, ros__parameters) with --params-file
    params = yaml.safe_load((out / "params.yaml").read_text())
    assert set(params) == {"benchmark", "gold_agent"}, params
    bench = params["benchmark"]["ros__parameters"]
    assert (bench["ids"], bench["model"], bench["output_dir"]) == ("simple_python_0", "gold", str(out.resolve()))
    assert json.loads(run_json)["config"]["ids"] == ["simple_python_0"]

    code, stdout, stderr = run_cli(*fast, "--categories", "multiple", "--limit", "1", timeout_s=60)
    assert code == 2 and len(stderr.splitlines()) == 1, stderr
    assert "holds a run with a different case set (ids simple_python_0 there, categories multiple limit 1 now)" \
        in stderr
    assert "--allow-different-run" in stderr
    code, stdout, stderr = run_cli(*fast, "--ids", "simple_python_0", "--strategy", "react", timeout_s=60)
    assert code == 2 and len(stderr.splitlines()) == 1, stderr
    assert "different strategy ('direct' there, 'react' now)" in stderr and "--allow-different-run" not in stderr
    assert (out / "run.json").read_text() == run_json, "a refused run changes nothing"

    code, stdout, stderr = run_cli(*fast, "--categories", "multiple", "--limit", "1", "--allow-different-run",
                                   timeout_s=120)
    assert code == 0, stdout + stderr
    info = json.loads((out / "run.json").read_text())
    assert info["categories"] == ["multiple", "simple_python"] and info["cases_planned"] == 2
    assert [s["cases"] for s in info["sessions"]] == ["ids simple_python_0", "categories multiple limit 1"]
    assert [r["case_id"] for r in jsonl_records(out / "results.jsonl")] == ["simple_python_0", "multiple_0"]


# --------------------------------------------------------------------------- agent that cannot configure

def test_an_agent_that_fails_to_configure_exits_2_and_says_why_even_quiet(tmp_path):
    pytest.importorskip("llama_cpp", reason="llama-cpp-python not installed")
    garbage = tmp_path / "broken.gguf"
    garbage.write_bytes(b"this is not a GGUF file\n" * 64)
    profile = tmp_path / "broken.yaml"
    profile.write_text(f"name: broken\nmodel:\n  name: broken\n  path: {garbage}\nbackend:\n  type: llama_cpp\n")
    out = tmp_path / "run"
    code, stdout, stderr = run_cli("--model", str(profile), "--ids", "simple_python_0", "--quiet", "--no-record",
                                   "--no-telemetry", "--agent-wait", "60", "--output-dir", str(out), timeout_s=180)
    assert code == 2, stdout + stderr
    assert "the agent could not start (status 2)" in stderr and "configure failed" in stderr, stderr
    assert "resume" not in stderr and "interrupted" not in stderr
    assert not node_pids(out)


@pytest.mark.parametrize("extra,words", [
    (["--serialization", "native", "--chat-format", "raw"], "chat_format raw is not available with it"),
    (["--serialization", "bfcl", "--chat-format", "raw"], "chat_format raw is not available with it"),
    (["--serialization", "native", "--model", "openai-local"], "declares none (chat.native_calls"),
])
def test_a_prompt_the_agent_would_refuse_for_every_case_is_refused_before_any_node(tmp_path, extra, words):
    out = tmp_path / "run"
    code, stdout, stderr = run_cli("--output-dir", str(out), "--limit", "1", *extra, timeout_s=60)
    assert code == 2, stdout + stderr
    assert stderr.splitlines() == [stderr.strip()] and stderr.startswith("slm-agent bench: --serialization: ")
    assert words in stderr, stderr
    assert not out.exists(), "nothing written, no node started"
