# Maillon — the two set-up commands are `make run` and `make test` (see README.md).
PYTHON ?= $(shell command -v python3.11 || command -v python3)
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed-stamp
PO := $(wildcard hub/translations/*/LC_MESSAGES/messages.po)
MO := $(PO:.po=.mo)

.PHONY: run test lint bench env translations extract-messages clean browser-tools

$(STAMP): pyproject.toml audit/_fastmerkle.c
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --upgrade pip
	$(BIN)/pip install --quiet -e '.[server,dev]'
	touch $(STAMP)

%.mo: %.po $(STAMP)
	$(BIN)/pybabel compile --statistics -i $< -o $@

translations: $(MO)

env: $(STAMP) translations

## make run: initialise the embedded demo territory and serve it on http://127.0.0.1:5000
## (`make run PORT=5101` for another port: links in mails, the accounts file and the audit
## log's origin follow, unless MAILLON_BASE_URL says otherwise).
PORT ?= 5000
RUN_ENV = MAILLON_BASE_URL="$${MAILLON_BASE_URL:-http://127.0.0.1:$(PORT)}"
run: env
	$(RUN_ENV) $(BIN)/flask --app hub init-db
	$(RUN_ENV) $(BIN)/flask --app hub demo --out var/demo-accounts.json
	$(RUN_ENV) exec $(BIN)/flask --app hub serve --port $(PORT)

# Test tooling from the npm registry (axe-core for the accessibility checks), pinned by its lockfile.
AXE_STAMP := tests/browser/node_modules/.installed-stamp
$(AXE_STAMP): tests/browser/package.json tests/browser/package-lock.json
	npm ci --prefix tests/browser --no-audit --no-fund --loglevel=error
	touch $(AXE_STAMP)

browser-tools: $(AXE_STAMP)

## make test: the whole suite (lint and types included, real-browser tests in headless Chromium)
test: env browser-tools
	$(BIN)/pytest $(PYTEST_ARGS)

lint: env
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .
	$(BIN)/mypy

bench: env
	$(BIN)/python -m tests.benchmarks.run $(BENCH_ARGS)

extract-messages: env
	$(BIN)/pybabel extract -F babel.cfg -k N_ -k _l --sort-output --add-location=file -w 100 -o hub/translations/messages.pot hub
	$(BIN)/pybabel update -i hub/translations/messages.pot -d hub/translations -l en --no-fuzzy-matching --ignore-obsolete -w 100

clean:
	rm -rf $(VENV) var .pytest_cache .mypy_cache .ruff_cache

# -- measured reliability (not run by `make test` nor CI): docs/reliability.md ----------------
.PHONY: load crash

## make load: 50 simulated users for 10 minutes against gunicorn + PostgreSQL + Redis beside a
## hello-world baseline, then the crash test. Shorter: make load LOAD_ARGS="--users 10 --duration 1m"
## CRASH_ARGS="--writes 200 --kills 5". Uses MAILLON_TEST_POSTGRES_URL/REDIS_URL, or starts
## throw-away servers with .ci/services.sh.
load: env
	bash tests/load/with-services.sh sh -c '$(BIN)/python -m tests.load.run_load $(LOAD_ARGS); load=$$?; \
	  $(BIN)/python -m tests.load.crash $(CRASH_ARGS); crash=$$?; [ $$load -eq 0 ] && [ $$crash -eq 0 ]'

## make crash: kill -9 the web and worker processes 20 times during 1,000 concurrent case writes
crash: env
	bash tests/load/with-services.sh $(BIN)/python -m tests.load.crash $(CRASH_ARGS)
