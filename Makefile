# Maillon — the two set-up commands are `make run` and `make test` (see README.md).
PYTHON ?= $(shell command -v python3.11 || command -v python3)
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed-stamp
PO := $(wildcard hub/translations/*/LC_MESSAGES/messages.po)
MO := $(PO:.po=.mo)

.PHONY: run test lint bench env translations extract-messages clean

$(STAMP): pyproject.toml audit/_fastmerkle.c
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --upgrade pip
	$(BIN)/pip install --quiet -e '.[dev]'
	touch $(STAMP)

%.mo: %.po $(STAMP)
	$(BIN)/pybabel compile --statistics -i $< -o $@

translations: $(MO)

env: $(STAMP) translations

## make run: initialise the embedded demo territory and serve it on http://127.0.0.1:5000
run: env
	$(BIN)/flask --app hub init-db
	$(BIN)/flask --app hub demo --out var/demo-accounts.json
	exec $(BIN)/flask --app hub serve

## make test: the whole suite (lint and types included)
test: env
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
