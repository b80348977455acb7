# Two entry points: `make repro` (install + the whole quick pipeline), `make test`.
VENV ?= .venv
PYTHON ?= python3
PY := $(VENV)/bin/python
export PATH := $(abspath $(VENV))/bin:$(PATH)
export MLFLOW_DISABLE_TELEMETRY := true

.PHONY: install repro readme test lint ui bench preset estimate

$(VENV)/.installed: pyproject.toml
	$(PYTHON) -m venv $(VENV)
	# torch first, pinned, so pip takes the local wheels and not a multi-GB download
	$(PY) -m pip install -q torch==2.14.1 torchvision==0.29.1
	$(PY) -m pip install -q -e '.[test]'
	$(VENV)/bin/dvc config --local core.analytics false 2>/dev/null || true
	touch $@

install: $(VENV)/.installed

repro: install
	dvc repro

readme: repro
	$(PY) -m pipeline.readme

bench: install
	$(PY) benchmarks/il_overhead.py
	$(PY) benchmarks/throughput.py

# make preset P=paper-cifar10   (quick | paper-cifar10 | paper-cifar100 | imagefolder)
preset: install
	$(PY) -m pipeline.presets use $(P)

estimate: install
	$(PY) -m pipeline.estimate

test: install
	$(PY) -m pytest -q

lint: install
	$(VENV)/bin/ruff check .

ui: install
	mlflow ui --backend-store-uri sqlite:///$(abspath mlflow.db) --workers 1
