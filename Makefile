# Two entry points: `make repro` (install + the whole quick pipeline), `make test`.
VENV ?= .venv
PYTHON ?= python3
PY := $(VENV)/bin/python
export PATH := $(abspath $(VENV))/bin:$(PATH)
export MLFLOW_DISABLE_TELEMETRY := true

.PHONY: install lock repro queue readme verify decide ladder test test-fast lint ui ui-shot bench preset estimate

# every package at the version requirements.lock pins (the environment the committed
# results came from), then this project itself
$(VENV)/.installed: pyproject.toml requirements.lock
	$(PYTHON) -m venv $(VENV)
	$(PY) -m pip install -q -r requirements.lock
	$(PY) -m pip install -q --no-deps -e .
	$(VENV)/bin/dvc config --local core.analytics false 2>/dev/null || true
	touch $@

install: $(VENV)/.installed

# re-resolve requirements.lock from pyproject.toml's ranges and requirements.in's pins
lock: install
	$(PY) -m pip install -q pip-tools
	rm -f requirements.lock
	$(VENV)/bin/pip-compile --quiet --no-strip-extras --no-emit-index-url --no-emit-find-links \
	    --extra test --extra server --extra cluster -o requirements.lock pyproject.toml requirements.in

# make repro J=2: N workers over DVC's graph (pipeline/tools/parallel.py); J=1 is plain
# `dvc repro`. Either way stage processes start warm (pipeline/orchestrate/warm.py).
# TARGETS="baselines@ce-0 aggregate": only those stages and what they need (bare names)
J ?= 1
TARGETS ?=
repro: install
	$(PY) -m pipeline.tools.parallel -j $(J) $(TARGETS)

# DVC's experiment queue with N workers (after `dvc exp run --queue ...`); the local MLflow
# store is created first, as two first-time schema migrations at once would collide
queue: install
	$(PY) -c "from pipeline.orchestrate.runner import prepare_tracking_store as p; p()"
	dvc queue start -j $(J)

# commit this profile's tables (reports/<profile>/) and splice them into docs/results.md
# and the README's claims table
readme: repro
	$(PY) -m pipeline.tools.report
	$(PY) -m pipeline.tools.readme

# regenerate, then compare every table cell with reports/<profile>/ (largest difference per metric)
verify: repro
	$(PY) -m pipeline.tools.verify

# each claim's verdict, MDE and seeds to decide, and the next look of the plan (claims.looks)
decide: repro
	$(PY) -m pipeline.tools.decide

# the regime ladder's figure and verdict table from the rungs' committed reports
# (reports/ladder-100, reports/cifar10-decide, reports/ladder-1000; docs/results.md)
ladder: install
	$(PY) -m pipeline.tools.ladder

bench: install
	$(PY) benchmarks/il_overhead.py
	$(PY) benchmarks/throughput.py

# make preset P=paper-cifar10   (quick | paper-cifar10 | paper-cifar100 | imagefolder)
preset: install
	$(PY) -m pipeline.tools.presets use $(P)

# make estimate ARGS="-j 2" (or ARGS="--gpus 4 --per-gpu 2"): wall time on that many workers
ARGS ?=
estimate: install
	$(PY) -m pipeline.tools.estimate $(ARGS)

test: install
	$(PY) -m pytest -q

# the edit loop: tests/unit only, seconds to a few minutes (what CI runs is `make test`:
# also tests/integration, DVC projects and MLflow stores, and tests/system, processes)
test-fast: install
	$(PY) -m pytest -q tests/unit

lint: install
	$(VENV)/bin/ruff check .

ui: install
	$(PY) -m pipeline.tools.ui

# a PNG of the runs table (headless Chromium: Debian's `chromium` package)
ui-shot: install
	$(PY) -m pipeline.tools.ui --shot docs/mlflow-tree.png
	$(PY) -m pipeline.tools.ui --shot docs/mlflow-runs.png --search "tags.ilkd_role = 'seed'"
