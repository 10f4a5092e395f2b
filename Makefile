# Two commands a newcomer needs: `make demo` and `make test`. Both build .venv themselves.
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed

.PHONY: lock demo bench bench-smoke test lint typecheck check templates-check deploy-check deploy-sync system-deps clean

# Runtime dependencies from the lock (hash-checked, as the image installs them), then the project
# and its dev tools on top; the last step fails if the dev tools moved a locked package.
$(STAMP): pyproject.toml requirements.lock
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --upgrade pip
	$(BIN)/pip install --quiet --require-hashes -r requirements.lock
	$(BIN)/pip install --quiet -e '.[dev]'
	$(BIN)/python deploy/tools/check_lock.py --installed
	touch $(STAMP)

# Refresh requirements.lock after changing [project.dependencies] (then commit it). One lock for
# every platform the image is built for (--universal), for the image's Python (3.11), with the
# hashes of every wheel and sdist of each pinned version. UPGRADE=1 also moves unchanged pins.
UV_VERSION := 0.13.8
lock:
	@test -x $(BIN)/uv && $(BIN)/uv --version | grep -q " $(UV_VERSION)" \
	  || { test -x $(BIN)/pip || $(PYTHON) -m venv $(VENV); $(BIN)/pip install --quiet uv==$(UV_VERSION); }
	$(BIN)/uv pip compile --quiet pyproject.toml --universal --python-version 3.11 --generate-hashes \
	  --custom-compile-command "make lock" $(if $(UPGRADE),--upgrade) -o requirements.lock
	$(BIN)/python deploy/tools/check_lock.py

demo: $(STAMP)
	$(BIN)/overdue-notifier demo

# Throughput benchmark (bench/README.md): raw aiokafka loop vs naive consumer vs the service.
# Pass options with ARGS, e.g. make bench ARGS="--events 200000 --ledger postgres".
bench: $(STAMP)
	$(BIN)/python -m bench $(ARGS)

# A run of seconds that CI can afford: checks that every consumer answers every event.
bench-smoke: $(STAMP)
	$(BIN)/python -m bench --events 300 --naive-events 20 --latency-ms 5 --paced-events 100

test: $(STAMP) system-deps
	$(BIN)/python -m pytest

# The TLS test puts Debian's stunnel4 in front of the embedded broker; the simulator's report
# test opens its HTML page in Debian's headless chromium.
system-deps:
	@command -v stunnel4 >/dev/null 2>&1 || command -v stunnel >/dev/null 2>&1 || \
	  { if [ "$$(id -u)" = 0 ]; then \
	      (apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq stunnel4 >/dev/null); \
	    else echo "stunnel4 is missing: sudo apt-get install stunnel4 (the TLS test needs it)"; exit 1; fi; }
	@command -v chromium >/dev/null 2>&1 || \
	  { if [ "$$(id -u)" = 0 ]; then \
	      (apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq chromium >/dev/null); \
	    else echo "chromium is missing: sudo apt-get install chromium (the simulator's HTML report test needs it)"; exit 1; fi; }

lint: $(STAMP)
	$(BIN)/ruff check service tests deploy/tools bench
	$(BIN)/ruff format --check service tests deploy/tools bench

typecheck: $(STAMP)
	$(BIN)/mypy

templates-check: $(STAMP)
	$(BIN)/overdue-notifier templates check

# Kubernetes manifests, alert rules and their tests, Dockerfile, YAML (installs its own tools).
deploy-check:
	bash .ci/deploy-checks

# Regenerate deploy/ files derived from the policy, templates, alert rules and dashboard list.
deploy-sync:
	$(PYTHON) deploy/tools/sync_app_config.py
	$(PYTHON) deploy/tools/build_dashboard.py

check: lint typecheck templates-check deploy-check test

clean:
	rm -rf $(VENV) .pytest_cache .mypy_cache .ruff_cache
