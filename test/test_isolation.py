"""slm_agent.isolation: a DDS domain per run, and children that die with the CLI.

Plain Python (no DDS): leases are flock-ed files in a lease directory given
by ``SLM_AGENT_DOMAIN_LEASE_DIR`` (a temp dir here, so parallel test runs on
this machine do not see each other)."""
from __future__ import annotations

import os
import signal
import subprocess
import sys
import textwrap
import time

import pytest

from slm_agent.isolation import LEASE_DIR_ENV, DomainLease


@pytest.fixture
def lease_dir(tmp_path, monkeypatch):
    monkeypatch.setenv(LEASE_DIR_ENV, str(tmp_path / "leases"))
    monkeypatch.delenv("ROS_DOMAIN_ID", raising=False)
    return tmp_path / "leases"


def test_runs_side_by_side_get_different_domains_lowest_first(lease_dir):
    with DomainLease() as a, DomainLease() as b:
        assert (a.domain_id, b.domain_id) == (0, 1)
        assert not a.explicit and not a.shared
        assert b.env({"X": "1"}) == {"X": "1", "ROS_DOMAIN_ID": "1"}
    # released: the next run is back on domain 0
    with DomainLease() as c:
        assert c.domain_id == 0


def test_explicit_domain_is_kept_and_sharing_is_reported(lease_dir, monkeypatch):
    monkeypatch.setenv("ROS_DOMAIN_ID", "7")
    with DomainLease() as a, DomainLease() as b:
        assert a.explicit and (a.domain_id, b.domain_id) == (7, 7)
        assert not a.shared and b.shared
    monkeypatch.setenv("ROS_DOMAIN_ID", "seven")
    with pytest.raises(ValueError, match="not an integer"):
        DomainLease()


def test_a_lease_outlives_its_holder_in_children_that_inherited_it(lease_dir):
    """The CLI passes the lease's fd to its nodes: after a kill -9 of the CLI the
    domain stays taken until the last node is gone (no new run joins their DDS)."""
    code = textwrap.dedent(f"""
        import os, subprocess, sys, time
        os.environ[{LEASE_DIR_ENV!r}] = {str(lease_dir)!r}
        os.environ.pop("ROS_DOMAIN_ID", None)
        from slm_agent.isolation import DomainLease, parent_death_preexec
        lease = DomainLease()
        child = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(60)"],
                                 pass_fds=(lease.fd,), preexec_fn=parent_death_preexec())
        print(lease.domain_id, child.pid, flush=True)
        time.sleep(60)
    """)
    parent = subprocess.Popen([sys.executable, "-c", code], stdout=subprocess.PIPE, text=True)
    try:
        domain, child_pid = map(int, parent.stdout.readline().split())
        assert domain == 0
        with DomainLease() as other:
            assert other.domain_id == 1  # taken by parent and child
        parent.kill()
        parent.wait(10)
        # the child got SIGTERM from the kernel (PR_SET_PDEATHSIG), and with it the lease went
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline and _alive(child_pid):
            time.sleep(0.05)
        assert not _alive(child_pid), "the child outlived its killed parent"
        with DomainLease() as again:
            assert again.domain_id == 0
    finally:
        parent.kill()
        parent.wait(10)


def _alive(pid: int) -> bool:
    try:
        with open(f"/proc/{pid}/stat") as f:
            return f.read().split()[2] != "Z"
    except FileNotFoundError:
        return False
