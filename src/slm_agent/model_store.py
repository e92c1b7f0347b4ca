"""Where the model store is: GGUF files joined from PyPI part packages live here.

The store is ``~/.cache/slm_agent/models`` (``$SLM_AGENT_MODEL_DIR``).  This
module only names places; installing and checking the files is
:mod:`slm_agent.model_install`.  Why two modules: the profiles resolve a
``model.parts`` path here while loading, and the installer loads profiles,
so one module doing both was an import cycle (issue 22).

Plain Python, no ROS, no imports from the package.
"""
from __future__ import annotations

import os
from pathlib import Path
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from slm_agent.profiles import PartsSpec

__all__ = ["MODEL_DIR_ENV", "store_dir", "store_file"]

#: Environment variable overriding the store directory.
MODEL_DIR_ENV = "SLM_AGENT_MODEL_DIR"


def store_dir() -> Path:
    """``$SLM_AGENT_MODEL_DIR``, else ``~/.cache/slm_agent/models`` (not created here)."""
    env = os.environ.get(MODEL_DIR_ENV)
    return Path(env).expanduser() if env else Path.home() / ".cache" / "slm_agent" / "models"


def store_file(parts: "PartsSpec") -> Path:
    return store_dir() / parts.file
