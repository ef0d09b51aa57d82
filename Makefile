# Backbone: every target installs what it needs into .venv first (idempotent, fast when nothing changed).
PYTHON ?= python3
VENV   := .venv
BIN    := $(VENV)/bin
STAMP  := $(VENV)/.installed

.PHONY: install run test check bench docs clean

$(STAMP): pyproject.toml
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install -q --upgrade pip uv
	$(BIN)/uv pip install -q --python $(BIN)/python -e '.[dev]'
	$(BIN)/backbone kafka fetch
	touch $@

install: $(STAMP)

run: install          ## the local stack (broker, registry, gateway, agents); Ctrl-C stops it all
	$(BIN)/backbone up

test: install         ## the whole suite against a real broker the suite starts itself
	$(BIN)/pytest

check: install        ## format, lint, types, schema evolution gate
	$(BIN)/ruff format --check .
	$(BIN)/ruff check .
	$(BIN)/mypy
	$(BIN)/backbone schemas check

bench: install        ## benchmarks: each prints its baseline from the same run and the ratio
	$(BIN)/python -m benchmarks

docs: install         ## regenerate committed docs (topic catalogue)
	$(BIN)/backbone topics list --markdown > docs/topics.md

clean:
	rm -rf $(VENV) .pytest_cache .mypy_cache .ruff_cache build dist *.egg-info
