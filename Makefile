# Backbone: every target installs what it needs into .venv first (idempotent, fast when nothing changed).
PYTHON ?= python3
VENV   := .venv
BIN    := $(VENV)/bin
STAMP  := $(VENV)/.installed

.PHONY: install system-deps vendor run test chaos soak check bench bench-quick bench-compare docs clean

$(STAMP): pyproject.toml
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install -q --upgrade pip uv
	$(BIN)/uv pip install -q --compile-bytecode --python $(BIN)/python -e '.[dev]'
	$(BIN)/backbone kafka fetch
	touch $@

# The compiled modules (streams/_compiled.pyx, Cython; rebuilt when the source is newer), then
# bytecode for our own packages too (unchanged files are skipped): with PYTHONDONTWRITEBYTECODE set
# (as on CI) every process would otherwise compile every module it imports from source, which
# doubled the CPU of each `backbone` process the tests and `make run` start.
install: $(STAMP)
	@command -v cc >/dev/null 2>&1 || $(MAKE) --no-print-directory system-deps
	@$(BIN)/python -m infra.build_ext
	@$(BIN)/python -m compileall -q -j 0 agents connectors infra schemas streams benchmarks > /dev/null

# System packages some tests and pages need (Debian's chromium for browser tests, prometheus for the
# scrape test, nodejs for the JavaScript client of docs/realtime.md; gcc builds the compiled modules). Installed with apt-get when missing and running as root (as CI does); otherwise the one
# command to run is printed and the tests that need them fail with the same message.
SYSTEM_PACKAGES := chromium prometheus nodejs gcc
system-deps:
	@missing=""; \
	command -v chromium >/dev/null 2>&1 || missing="$$missing chromium"; \
	command -v prometheus >/dev/null 2>&1 || missing="$$missing prometheus"; \
	command -v node >/dev/null 2>&1 || missing="$$missing nodejs"; \
	command -v cc >/dev/null 2>&1 || missing="$$missing gcc"; \
	if [ -n "$$missing" ]; then \
	  if [ "$$(id -u)" = 0 ]; then \
	    echo "installing system packages:$$missing"; \
	    DEBIAN_FRONTEND=noninteractive apt-get install -y -q $$missing >/dev/null || \
	      { apt-get update -q >/dev/null && DEBIAN_FRONTEND=noninteractive apt-get install -y -q $$missing >/dev/null; }; \
	  else \
	    echo "missing system packages:$$missing; run: sudo apt-get install -y$$missing"; \
	  fi; \
	fi

# The dashboard's charting library, vendored from the npm registry: pinned version and checksum,
# licence kept next to it. The files are committed; this regenerates them byte for byte.
UPLOT_VERSION := 1.6.32
UPLOT_SHA256  := 4b8a8191e425658e3ea8c8c1314b0fc679c861ee3a1af2b20c7b16ba50b5133d
UPLOT_DIR     := connectors/realtime/static/vendor/uplot
vendor:
	rm -rf $(UPLOT_DIR) && mkdir -p $(UPLOT_DIR)
	cd $(UPLOT_DIR) && npm pack --silent uplot@$(UPLOT_VERSION) >/dev/null && \
	  echo "$(UPLOT_SHA256)  uplot-$(UPLOT_VERSION).tgz" | sha256sum -c --quiet - && \
	  tar xzf uplot-$(UPLOT_VERSION).tgz --strip-components=1 \
	    package/LICENSE package/dist/uPlot.iife.min.js package/dist/uPlot.min.css && \
	  rm uplot-$(UPLOT_VERSION).tgz && echo "$(UPLOT_VERSION)" > VERSION

run: install          ## the local stack (broker, registry, gateway, agents); Ctrl-C stops it all
	$(BIN)/backbone up

# Three pytest workers (one session broker each): the suite waits on brokers, processes and sockets
# more than it computes (a run used 1,370 CPU-seconds, under three quarters of two cores over its
# wall time with two workers), so a third worker fills the idle time. TEST_WORKERS=0 runs it in one
# process.
TEST_WORKERS ?= 3
test: install system-deps  ## the whole suite against a real broker the suite starts itself
	$(BIN)/pytest -n $(TEST_WORKERS) --dist loadfile --no-loadscope-reorder --durations=15

chaos: install system-deps ## long fault scenarios (broker outages, kills) with oracles
	$(BIN)/pytest -m chaos -p no:cacheprovider

soak: install system-deps  ## long soak run (BACKBONE_SOAK_MINUTES, default 30)
	$(BIN)/pytest -m soak -p no:cacheprovider

check: install        ## format, lint, types, schema evolution gate
	$(BIN)/ruff format --check .
	$(BIN)/ruff check .
	$(BIN)/mypy
	$(BIN)/backbone schemas check

bench: install        ## every benchmark, one table (baseline from the same run, ratio, fraction of Kafka's floor)
	$(BIN)/python -m benchmarks

bench-quick: install  ## the same benchmarks and code paths at small sizes
	$(BIN)/python -m benchmarks --quick

bench-compare: install ## the latest line of benchmarks/results.jsonl against the previous one
	$(BIN)/python -m benchmarks --compare

docs: install         ## regenerate committed docs (topic catalogue, command reference)
	$(BIN)/backbone topics list --markdown > docs/topics.md
	$(BIN)/python -m infra.cli._reference > docs/cli.md

clean:
	rm -rf $(VENV) .pytest_cache .mypy_cache .ruff_cache build dist *.egg-info streams/*.so
