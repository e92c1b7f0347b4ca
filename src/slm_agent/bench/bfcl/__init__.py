"""BFCL adapter.

Everything that imports ``bfcl_eval`` goes through :mod:`.compat` first, which
(1) points BFCL's output directories away from site-packages and (2) installs
a tiny stand-in for ``bfcl_eval.constants.model_config`` so the checkers
import without every provider SDK.  Import the submodules directly
(``loader``, ``checker``, ``environment``, ``suite``); this package
init stays import-free so ``slm_agent.bench.bfcl`` is cheap to import.
"""
