"""``slm-agent bench`` as a user runs it: what reaches the console with ``--quiet``, and a full disk.

Issue 23: quarantine and drop warnings reach the console with ``--quiet``
(the nodes' other lines do not); a disk that fills during the run ends it
with exit status 4 and one line naming the path and the OS error, every
finished case kept, no ``*.tmp`` left, and a rerun after freeing space
resumes (README "Exit status").  The full disk is a small tmpfs mounted for
the test (needs root, or CAP_SYS_ADMIN; skipped with the reason otherwise).
"""
from __future__ import annotations

import errno
import os
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest

pytest.importorskip("bfcl_eval", reason="bfcl_eval not installed (pip install --no-deps bfcl-eval==2026.3.23)")
pytest.importorskip("rclpy", reason="rclpy (ROS 2 Python client) not installed")
pytest.importorskip("slm_agent.action", reason="slm_agent interfaces not generated/installed")

sys.path.insert(0, str(Path(__file__).resolve().parent))
from bench_helpers import REPO, jsonl_lines, jsonl_records, terminal_signals, wait_until  # noqa: E402

from slm_agent.bench.results import ResultsLog  # noqa: E402

CLI = [sys.executable, "-m", "slm_agent.cli"]


def _bench(out: Path, *args: str, timeout: int = 300) -> subprocess.CompletedProcess:
    return subprocess.run([*CLI, "bench", "--agent", "gold", "--no-telemetry", "--categories", "simple_python",
                           "--output-dir", str(out), "--quiet", *args], capture_output=True, text=True,
                          timeout=timeout, cwd=REPO, preexec_fn=terminal_signals)


def test_quarantine_and_drop_warnings_reach_the_console_with_quiet(tmp_path):
    out = tmp_path / "run"
    first = _bench(out, "--limit", "3")
    assert first.returncode == 0, first.stdout[-3000:] + first.stderr[-3000:]
    assert "benchmark |" not in first.stdout + first.stderr, "--quiet: no node lines in a clean run"
    lines = (out / "results.jsonl").read_text().splitlines()
    assert len(lines) == 3
    lines[1] = "garbage"                                   # a damaged line in the middle
    (out / "results.jsonl").write_text("\n".join(lines) + "\n" + '{"case_id": "simple_python_9", "pas')

    second = _bench(out, "--limit", "3")
    console = second.stdout + second.stderr
    assert second.returncode == 0, console[-4000:]
    shown = [x for x in console.splitlines() if x.lstrip().startswith("benchmark |")]
    assert any("results.jsonl line 2" in x and "moved to results.quarantine.jsonl" in x
               and "that case runs again" in x for x in shown), console[-4000:]
    assert any("dropped a torn last line" in x for x in shown), console[-4000:]
    assert all("[WARN]" in x or "[ERROR]" in x for x in shown), f"--quiet let other node lines through: {shown}"
    assert [r["case_id"] for r in jsonl_records(out / "results.jsonl")] == \
        ["simple_python_0", "simple_python_2", "simple_python_1"], "only the damaged case ran again"
    assert len(jsonl_lines(out / "results.quarantine.jsonl")) == 2


@pytest.fixture
def small_disk(tmp_path):
    """A 4 MiB tmpfs at ``tmp_path/disk``, unmounted afterwards."""
    disk = tmp_path / "disk"
    disk.mkdir()
    if os.geteuid() != 0:
        pytest.skip("a full disk needs a tmpfs mount, which needs root (CAP_SYS_ADMIN); not root here")
    p = subprocess.run(["mount", "-t", "tmpfs", "-o", "size=4m", "tmpfs", str(disk)], capture_output=True,
                       text=True)
    if p.returncode != 0:
        pytest.skip(f"cannot mount a tmpfs for the full-disk test: {(p.stderr or p.stdout).strip()}")
    try:
        yield disk
    finally:
        subprocess.run(["umount", "-l", str(disk)], capture_output=True)


def _fill(disk: Path) -> Path:
    """Write until the disk is full (ENOSPC); returns the filler file."""
    filler = disk / "filler"
    with filler.open("wb", buffering=0) as fh:
        try:
            while True:
                fh.write(b"\0" * 65536)
        except OSError as exc:
            assert exc.errno == errno.ENOSPC, exc
        try:
            while True:
                fh.write(b"\0" * 512)
        except OSError:
            pass
    return filler


@pytest.mark.timeout(900)
def test_a_disk_that_fills_during_the_run_exits_4_with_one_line_and_a_rerun_resumes(small_disk):
    out = small_disk / "run"
    argv = [*CLI, "bench", "--agent", "gold", "--no-telemetry", "--gold-delay", "0.5", "--categories",
            "simple_python", "--limit", "12", "--output-dir", str(out), "--quiet"]
    proc = subprocess.Popen(argv, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, cwd=REPO,
                            preexec_fn=terminal_signals)
    captured: dict[str, str] = {}
    readers = [threading.Thread(target=lambda k=k, f=f: captured.__setitem__(k, f.read()), daemon=True)
               for k, f in (("out", proc.stdout), ("err", proc.stderr))]
    for t in readers:
        t.start()
    try:
        assert wait_until(lambda: len(jsonl_lines(out / "results.jsonl")) >= 2 or proc.poll() is not None, 240.0)
        assert proc.poll() is None, "the run ended before the disk was filled"
        filler = _fill(small_disk)
        code = proc.wait(300)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait(20)
        for t in readers:
            t.join(20)
    stdout, stderr = captured.get("out", ""), captured.get("err", "")
    assert code == 4, f"exit {code}\n{stdout[-3000:]}\n{stderr[-3000:]}"
    said = [x for x in stderr.splitlines() if x.startswith("slm-agent: cannot write")]
    assert len(said) == 1, stderr[-3000:]
    assert str(small_disk) in said[0] and "No space left on device" in said[0], said[0]
    assert not list(out.rglob("*.tmp")), f"left behind: {list(out.rglob('*.tmp'))}"
    log = ResultsLog(out / "results.jsonl")       # every finished case is whole
    kept = [r["case_id"] for r in log.records]
    assert not log.damaged and 2 <= len(kept) < 12, (kept, [d.reason for d in log.damaged])
    log.close()

    filler.unlink()                                # space freed: the same command resumes
    again = subprocess.run(argv, capture_output=True, text=True, timeout=300, cwd=REPO,
                           preexec_fn=terminal_signals)
    assert again.returncode == 0, again.stdout[-3000:] + again.stderr[-3000:]
    assert [r["case_id"] for r in jsonl_records(out / "results.jsonl")] == \
        [f"simple_python_{i}" for i in range(12)]
