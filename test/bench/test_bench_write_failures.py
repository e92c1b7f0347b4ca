"""Issue 23 item 6: a write that fails (disk full) loses no finished case, leaves
nothing half-written, and is one line with the path and the OS error.

The "disk" is a file-size limit (``RLIMIT_FSIZE``, SIGXFSZ ignored so a write
past it fails with EFBIG as a full disk fails with ENOSPC) in a child process:
it needs no root and no mount.  The full benchmark run under it needs DDS and
the built interfaces; these tests cover the writers that run does use."""
from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap
from pathlib import Path

SRC = str(Path(__file__).resolve().parents[2] / "src")

CHILD = textwrap.dedent("""
    import errno, json, resource, signal, sys
    from pathlib import Path
    signal.signal(signal.SIGXFSZ, signal.SIG_IGN)
    out = Path(sys.argv[1])
    from slm_agent.bench.results import ResultsLog, write_json_atomic
    log = ResultsLog(out / "results.jsonl")
    resource.setrlimit(resource.RLIMIT_FSIZE, (6000, 6000))
    written = 0
    try:
        for i in range(40):
            log.append({"case_id": f"c{i}", "category": "c", "model": "m", "valid": True, "passed": True,
                        "raw_output": "x" * 900})
            written += 1
    except OSError as exc:
        print(json.dumps({"written": written, "errno": exc.errno, "error": exc.strerror}), flush=True)
    try:
        write_json_atomic(out / "run.json", {"big": "y" * 10000})
    except OSError as exc:
        print(json.dumps({"run_json_errno": exc.errno}), flush=True)
""")


def test_a_full_disk_loses_no_finished_case_and_leaves_no_tmp(tmp_path):
    p = subprocess.run([sys.executable, "-c", CHILD, str(tmp_path)], capture_output=True, text=True, timeout=60,
                       env={**os.environ, "PYTHONPATH": SRC})
    lines = [json.loads(x) for x in p.stdout.splitlines()]
    assert p.returncode == 0, p.stderr
    first, second = lines
    assert 0 < first["written"] < 40 and first["errno"] == 27, first   # EFBIG, as ENOSPC on a full disk
    assert second == {"run_json_errno": 27}
    assert not list(tmp_path.glob("*.tmp")), "a half-written run.json.tmp was left"
    from slm_agent.bench.results import ResultsLog

    log = ResultsLog(tmp_path / "results.jsonl")   # reopened without the limit
    assert len(log.records) == first["written"], "every case that was reported written is there"
    assert not log.damaged, [d.reason for d in log.damaged]
    log.close()


def test_a_rerun_reuses_an_empty_bag_dir(tmp_path):
    from slm_agent.launcher.processes import free_bag_dir

    (tmp_path / "bag").mkdir()
    (tmp_path / "bag" / "metadata.yaml").write_text("x")
    (tmp_path / "bag_2").mkdir()               # left empty by a run that recorded nothing
    assert free_bag_dir(tmp_path) == tmp_path / "bag_2"
    assert free_bag_dir(tmp_path) == tmp_path / "bag_2", "no new bag_N per rerun"
    assert not (tmp_path / "bag_3").exists()


def test_the_cli_names_the_path_and_the_os_error_of_a_full_disk(tmp_path):
    from slm_agent.launcher.processes import write_problem

    assert write_problem(tmp_path) == ""
    code = textwrap.dedent("""
        import resource, signal, sys
        signal.signal(signal.SIGXFSZ, signal.SIG_IGN)
        resource.setrlimit(resource.RLIMIT_FSIZE, (1000, 1000))
        from pathlib import Path
        from slm_agent.launcher.processes import write_problem
        print(write_problem(Path(sys.argv[1])))
    """)
    p = subprocess.run([sys.executable, "-c", code, str(tmp_path)], capture_output=True, text=True, timeout=60,
                       env={**os.environ, "PYTHONPATH": SRC})
    assert p.stdout.strip() == f"cannot write {tmp_path}: File too large", p.stdout + p.stderr
    assert not list(tmp_path.iterdir()), "the probe is removed"
