# recoml: every target installs what it needs first (a virtual environment in .venv).
PYTHON ?= python3
VENV   ?= .venv
PY     := $(VENV)/bin/python
STAMP  := $(VENV)/.installed
# The CPU wheel of torch lies on local disk here; a bare `torch` would pull a multi-GB CUDA build.
TORCH  ?= torch==2.13.0
ARGS   ?=

.PHONY: install train test test-all test-peer lint format bench clean

install: $(STAMP)

$(STAMP): pyproject.toml
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install -q --upgrade pip
	$(PY) -m pip install -q "$(TORCH)"
	$(PY) -m pip install -q -e ".[dev]"
	touch $(STAMP)

## Main job on the embedded default: simulate the toy WCTE set if missing, train, test.
train: install
	$(PY) -m recoml.train $(ARGS)

## Fast test selection (what CI runs). pytest's exit code 5 (no tests) fails the target.
test: install
	OMP_NUM_THREADS=1 $(PY) -m pytest -n 2 $(ARGS)

## Everything, slow tests included.
test-all: install
	OMP_NUM_THREADS=1 $(PY) -m pytest -n 2 -m "not gpu" $(ARGS)

## The tests against WatChMaL's own code (RECOML_WATCHMAL=DIR: a checkout of github.com/WatChMaL/WatChMaL).
test-peer: install
	@test -d "$(RECOML_WATCHMAL)/watchmal" || { echo "make test-peer: set RECOML_WATCHMAL=DIR, a checkout of github.com/WatChMaL/WatChMaL holding the watchmal package (got '$(RECOML_WATCHMAL)')" >&2; exit 2; }
	OMP_NUM_THREADS=1 RECOML_WATCHMAL=$(RECOML_WATCHMAL) $(PY) -m pytest -n 2 -m watchmal $(ARGS)

## Static checks (what CI runs before the tests): style, format, types, and the import-layer contracts
## once a `.importlinter` file or a `[tool.importlinter]` table declares them.
lint: install
	$(PY) -m ruff check src tests scripts
	$(PY) -m ruff format --check src tests scripts
	$(PY) -m mypy
	if [ -f .importlinter ] || grep -q '^\[tool\.importlinter\]' pyproject.toml; then $(VENV)/bin/lint-imports; fi

format: install
	$(PY) -m ruff format src tests scripts
	$(PY) -m ruff check --fix src tests scripts

bench: install
	$(PY) -m recoml.bench $(ARGS)

clean:
	rm -rf outputs multirun .pytest_cache .ruff_cache .mypy_cache build dist src/*.egg-info
