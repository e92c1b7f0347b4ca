"""Where the package's YAML configuration files are found by name.

Why one place: model profiles (``config/models``) and tool sets
(``config/tool_sets``) are both given as "a name or a path", and each used
to search its own list of folders with its own rule for telling a path from
a name.  Both now use :func:`search_dirs` and :func:`find_config`:

1. the entries of an environment variable (``os.pathsep``-separated);
2. the source tree (``<repo>/config/<kind>`` next to ``src/``);
3. ``<sys.prefix>/share/slm_agent/config/<kind>`` (pip data files);
4. the ament index share directory of ``slm_agent`` when ROS is sourced.

Plain Python; the callers raise their own errors (with the folders searched).
"""
from __future__ import annotations

import os
import sys
from pathlib import Path
from typing import Optional, Sequence, Union

SUFFIXES = (".yaml", ".yml")


def search_dirs(kind: str, env: str) -> list[Path]:
    """Folders to look in for ``config/<kind>`` files, first match wins (duplicates removed)."""
    dirs = [Path(entry).expanduser() for entry in os.environ.get(env, "").split(os.pathsep) if entry]
    dirs.append(Path(__file__).resolve().parents[2] / "config" / kind)
    dirs.append(Path(sys.prefix) / "share" / "slm_agent" / "config" / kind)
    try:  # colcon install tree; optional
        from ament_index_python.packages import get_package_share_directory

        dirs.append(Path(get_package_share_directory("slm_agent")) / "config" / kind)
    except Exception:  # noqa: BLE001 - not a ROS environment, or package not installed
        pass
    seen: set[str] = set()
    unique: list[Path] = []
    for d in dirs:
        key = str(d.resolve()) if d.exists() else str(d)
        if key not in seen:
            seen.add(key)
            unique.append(d)
    return unique


def looks_like_path(text: str) -> bool:
    """``a/b``, ``x.yaml``: a file path, not a name to search for."""
    return os.sep in text or bool(os.altsep and os.altsep in text) or text.endswith(SUFFIXES)


def find_config(name_or_path: Union[str, "os.PathLike[str]"], dirs: Sequence[Path]) -> Optional[Path]:
    """The file for a name (``<dir>/<name>.yaml`` or ``.yml`` in ``dirs``) or a path; None if absent."""
    text = os.fspath(name_or_path)
    if looks_like_path(text):
        p = Path(text).expanduser()
        return p if p.is_file() else None
    for d in dirs:
        for suffix in SUFFIXES:
            candidate = Path(d) / f"{text}{suffix}"
            if candidate.is_file():
                return candidate
    return None


def names_in(dirs: Sequence[Path]) -> list[str]:
    """Names of the ``*.yaml`` files in ``dirs``, sorted."""
    return sorted({p.stem for d in dirs if Path(d).is_dir() for p in Path(d).glob("*.yaml")})


__all__ = ["SUFFIXES", "find_config", "looks_like_path", "names_in", "search_dirs"]
