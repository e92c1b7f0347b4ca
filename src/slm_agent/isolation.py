"""Keeping the CLI's node processes to themselves: they die with the CLI, and
two runs on one machine do not talk to each other over DDS.

Plain Python (no rclpy): the CLI (``slm-agent bench``, ``ask``, ``demo``)
starts nodes as child processes.  Two things go wrong without this module:

* a ``kill -9`` of the CLI leaves its nodes running (they are in sessions of
  their own so that Ctrl-C reaches only the CLI): :func:`parent_death_preexec`
  asks the kernel to send them SIGTERM when the CLI dies;
* two runs started side by side on the default DDS domain 0 see each other's
  ``/agent/run_task`` action servers and topics, so goals and results mix:
  :class:`DomainLease` gives each run a domain of its own, chosen as the
  lowest id no other ``slm-agent`` process on this machine holds (a
  ``flock`` per id, released by the kernel however the holder dies).
"""
from __future__ import annotations

import fcntl
import os
import signal
import sys
import tempfile
from pathlib import Path
from typing import Callable, Optional

# ROS 2 documents 0-101 as the domain ids that are safe on every platform
# (higher ids run into the ephemeral port range on Linux).
MAX_DOMAIN_ID = 101
LEASE_DIR_ENV = "SLM_AGENT_DOMAIN_LEASE_DIR"


def parent_death_preexec() -> Optional[Callable[[], None]]:
    """A ``preexec_fn`` that makes the kernel send SIGTERM to the child when
    this process dies, however it dies (``kill -9`` of the CLI or of its
    process group included; nodes run in sessions of their own, so a group
    kill does not reach them).  Linux ``prctl(PR_SET_PDEATHSIG)``; the signal
    fires when the *thread* that forked exits, so start children from the
    main thread.  None where prctl is not available."""
    if not sys.platform.startswith("linux"):
        return None
    try:
        import ctypes

        libc = ctypes.CDLL(None, use_errno=True)
        prctl = libc.prctl
        prctl.argtypes = [ctypes.c_int, ctypes.c_ulong, ctypes.c_ulong, ctypes.c_ulong, ctypes.c_ulong]
        prctl.restype = ctypes.c_int
    except (OSError, AttributeError):
        return None
    parent, sig = os.getpid(), int(signal.SIGTERM)

    def preexec() -> None:  # runs in the child between fork and exec: nothing that can block
        prctl(1, sig, 0, 0, 0)          # PR_SET_PDEATHSIG
        if os.getppid() != parent:      # the parent died before prctl: no signal will come
            os._exit(143)

    return preexec


def _lease_dir() -> Path:
    # machine-wide on purpose: DDS ports are machine-wide, whoever runs the CLI
    return Path(os.environ.get(LEASE_DIR_ENV) or Path(tempfile.gettempdir()) / "slm_agent_dds_domains")


class DomainLease:
    """The DDS domain a run uses, held (an open, ``flock``-ed file) for as long
    as the run or any node that inherited :attr:`fd` lives.

    With ``ROS_DOMAIN_ID`` set by the user that domain is used as given;
    :attr:`shared` then says whether another ``slm-agent`` run holds it too
    (the caller warns).  Without it the lowest free id is taken, so a lone
    run stays on domain 0, where ``ros2 topic echo`` looks by default."""

    def __init__(self, env: Optional[dict[str, str]] = None) -> None:
        env = os.environ if env is None else env
        self.fd: int = -1
        self.shared = False
        given = (env.get("ROS_DOMAIN_ID") or "").strip()
        self.explicit = bool(given)
        if self.explicit:
            try:
                self.domain_id = int(given)
            except ValueError:
                raise ValueError(f"ROS_DOMAIN_ID={given!r} is not an integer") from None
            if not self._try(self.domain_id):
                self.shared = True
            return
        for domain_id in range(MAX_DOMAIN_ID + 1):
            if self._try(domain_id):
                self.domain_id = domain_id
                return
        raise RuntimeError(f"every DDS domain 0-{MAX_DOMAIN_ID} is held by another slm-agent run "
                           f"(lock files in {_lease_dir()}); set ROS_DOMAIN_ID to share one")

    def _try(self, domain_id: int) -> bool:
        directory = _lease_dir()
        try:
            directory.mkdir(parents=True, exist_ok=True)
            os.chmod(directory, 0o1777)  # every user's runs share the machine's DDS ports
        except OSError:
            pass
        try:
            fd = os.open(directory / f"{domain_id}.lock", os.O_RDWR | os.O_CREAT, 0o666)
        except OSError:
            return not self.explicit and domain_id == 0  # lock dir unusable: behave as before
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError:
            os.close(fd)
            return False
        os.set_inheritable(fd, True)
        self.fd = fd
        return True

    def env(self, base: Optional[dict[str, str]] = None) -> dict[str, str]:
        """``base`` (default: this process's environment) with the run's domain."""
        return dict(os.environ if base is None else base, ROS_DOMAIN_ID=str(self.domain_id))

    def release(self) -> None:
        if self.fd >= 0:
            os.close(self.fd)
            self.fd = -1

    def __enter__(self) -> "DomainLease":
        return self

    def __exit__(self, *exc: object) -> None:
        self.release()
