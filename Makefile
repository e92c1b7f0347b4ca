# Two commands do all set-up on a fresh machine (see README):
#   make bench   set up, then run the main job on the embedded default model
#   make test    set up, then run the tests (all of them; the 25 slowest listed)
#   make test-fast  the fast loop: every test not marked slow (no ROS node
#                processes, no real model runs, no tau2 import; < 5 min on 2 cores)
# Set-up is tools/bootstrap.py: idempotent, seconds when nothing changed.
VENV := .venv
BOOTSTRAP := python3 tools/bootstrap.py

# The main job: a short BFCL subset on the bundled default model (Gemma 3 270M).
BENCH_ARGS ?= --categories simple_python,multiple --limit 5 --output-dir runs/quickstart

.PHONY: setup test test-fast demo bench
setup:
	@$(BOOTSTRAP)

test: setup
	$(VENV)/bin/python -m pytest test --durations=25

# markers set by directory/module in test/conftest.py (registered in pytest.ini)
test-fast: setup
	$(VENV)/bin/python -m pytest test -m "not slow"

demo: setup
	$(VENV)/bin/slm-agent demo

bench: setup
	$(VENV)/bin/slm-agent bench $(BENCH_ARGS)
