"""Make ``bfcl_eval`` importable for scoring without its provider SDKs.

Two things stand between ``pip install --no-deps bfcl-eval`` and importing
its checkers:

1. ``bfcl_eval.constants.eval_config`` creates ``result/``, ``score/`` and
   ``.file_locks/`` under ``BFCL_PROJECT_ROOT`` at import time, which defaults
   to the *site-packages* directory.  We default that variable to a per-user
   cache directory (an explicit setting is respected) so importing BFCL never
   writes into the virtualenv.

2. ``ast_checker`` does ``from bfcl_eval.constants.model_config import
   MODEL_CONFIG_MAPPING``; the real module imports every model handler and so
   every provider SDK (openai, anthropic, google-genai, ...).  The checker
   code paths we call read exactly one thing from it:
   ``MODEL_CONFIG_MAPPING[model_name.replace("_", "/")].underscore_to_dot``
   inside ``convert_func_name`` (``multi_turn_checker`` reads nothing).  We
   therefore register a stand-in module holding a mapping with one entry,
   :data:`CHECKER_MODEL_NAME`, whose ``underscore_to_dot`` is ``False``.

   Why ``False`` is the faithful setting: BFCL's FC handlers send dotted
   function names to the API with ``.`` replaced by ``_`` and set
   ``underscore_to_dot=True`` so the checker compares the model's
   underscored names with underscored expected names.  Our harness instead
   maps every sanitized tool name back to the exact original BFCL name
   (``loader.ToolSet.original_name``) before scoring, so the checker must
   compare original names with original names, i.e. no conversion.  The
   shim contains no checking logic; it only answers that one lookup.

If the real ``model_config`` module is already imported (an environment with
all SDKs installed), it is left in place and our entry is added to its
mapping instead.
"""
from __future__ import annotations

import os
import sys
import types
from dataclasses import dataclass
from pathlib import Path

#: Model name passed to BFCL's checkers.  It contains no ``_`` so BFCL's
#: ``model_name.replace("_", "/")`` leaves it unchanged.
CHECKER_MODEL_NAME = "slm-agent-bench"

_MODEL_CONFIG_MODULE = "bfcl_eval.constants.model_config"


@dataclass(frozen=True)
class StandInModelConfig:
    """The only field of BFCL's ``ModelConfig`` that the checkers read."""

    underscore_to_dot: bool = False


def default_project_root() -> Path:
    """Where BFCL may create its result/score/lock directories."""
    base = os.environ.get("XDG_CACHE_HOME") or os.path.join(
        os.path.expanduser("~"), ".cache"
    )
    return Path(base) / "slm_agent" / "bfcl_project"


def _install_model_config_shim() -> None:
    existing = sys.modules.get(_MODEL_CONFIG_MODULE)
    if existing is not None:
        mapping = getattr(existing, "MODEL_CONFIG_MAPPING")
        if CHECKER_MODEL_NAME not in mapping:
            real_cls = getattr(existing, "ModelConfig", None)
            if real_cls is not None and not getattr(existing, "_SLM_AGENT_SHIM", False):
                mapping[CHECKER_MODEL_NAME] = real_cls(
                    model_name=CHECKER_MODEL_NAME,
                    display_name=CHECKER_MODEL_NAME,
                    url="",
                    org="",
                    license="",
                    model_handler="",
                    underscore_to_dot=False,
                )
            else:
                mapping[CHECKER_MODEL_NAME] = StandInModelConfig()
        return
    shim = types.ModuleType(_MODEL_CONFIG_MODULE)
    shim.__doc__ = (
        "slm_agent stand-in for bfcl_eval.constants.model_config: only "
        "MODEL_CONFIG_MAPPING[...].underscore_to_dot is provided (see "
        "slm_agent.bench.bfcl.compat)."
    )
    shim.MODEL_CONFIG_MAPPING = {CHECKER_MODEL_NAME: StandInModelConfig()}
    shim.ModelConfig = StandInModelConfig
    shim._SLM_AGENT_SHIM = True
    sys.modules[_MODEL_CONFIG_MODULE] = shim
    import bfcl_eval.constants as constants_pkg  # noqa: E402 (empty __init__)

    setattr(constants_pkg, "model_config", shim)


_READY = False


def ensure_bfcl() -> None:
    """Idempotently prepare the process for importing ``bfcl_eval``.

    Call before the first ``bfcl_eval`` import.  Raises ``ImportError`` with
    an install hint when ``bfcl_eval`` is missing.
    """
    global _READY
    if _READY:
        return
    if "BFCL_PROJECT_ROOT" not in os.environ:
        root = default_project_root()
        root.mkdir(parents=True, exist_ok=True)
        os.environ["BFCL_PROJECT_ROOT"] = str(root)
    try:
        import bfcl_eval  # noqa: F401
    except ImportError as exc:  # pragma: no cover - environment problem
        raise ImportError(
            "bfcl_eval is not installed: pip install --no-deps bfcl-eval==2026.3.23 "
            "mpmath filelock"
        ) from exc
    _install_model_config_shim()
    _READY = True


def is_shimmed() -> bool:
    """True when the stand-in (not the real SDK-importing module) is active."""
    mod = sys.modules.get(_MODEL_CONFIG_MODULE)
    return bool(mod is not None and getattr(mod, "_SLM_AGENT_SHIM", False))
