# The README's two commands: `make run` and `make test`. Both install what they need.
PY ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed

.PHONY: run test lint typecheck check-policies bench system-deps native clean

$(STAMP): pyproject.toml
	test -x $(BIN)/python || $(PY) -m venv $(VENV)
	$(BIN)/python -m pip install -q --upgrade pip
	$(BIN)/python -m pip install -q -e '.[dev]'
	touch $(STAMP)

# The request path compiled with mypyc (gateway/compiled.py), rebuilt only when a source changed;
# without a C compiler it says so and the gateway runs as Python (TOLLGATE_COMPILE=0: skip).
native: $(STAMP)
	$(BIN)/python -m gateway.native_build --if-stale

run: native
	$(BIN)/tollgate serve --policies policies

# Debian packages the tests start themselves (redis-server for shared-state tests).
system-deps: $(STAMP)
	@PYTHON=$(BIN)/python bash scripts/system-deps.sh

lint: $(STAMP)
	$(BIN)/ruff check gateway tests benchmarks
	$(BIN)/mypy

test: system-deps native lint
	$(BIN)/tollgate check policies
	$(BIN)/python -m pytest -x -q --timeout=300 tests

bench: native
	$(BIN)/python -m benchmarks

clean:
	-$(BIN)/python -m gateway.native_build clean
	rm -rf $(VENV) .mypy_cache .ruff_cache .pytest_cache
