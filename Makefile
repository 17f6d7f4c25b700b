# Two commands for a newcomer: `make run` (the app on SQLite and the offline Stripe
# sandbox) and `make test` (the whole suite). Both set up what they need first.
SHELL := /bin/bash
PYTHON ?= python3
VENV := .venv
PY := $(VENV)/bin/python
BUN_VERSION := 1.4.5
BUN_MIN := 1.4.4
LOCAL_BUN := .tools/bun/node_modules/.bin/bun
PG_TEST_URL := postgresql+psycopg://postgres@127.0.0.1:5432/test

.PHONY: run test setup bun chromium clean help chaos

help:
	@echo "make run    start the app (http://127.0.0.1:3000) with the offline Stripe sandbox"
	@echo "make test   run the whole test suite (unit, integration, browser)"

# The venv is rebuilt only when requirements.txt changes, so a second run is quick.
$(VENV)/.installed: requirements.txt
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip
	$(PY) -m pip install --quiet -r requirements.txt
	touch $@

# Reflex cannot download bun here; take it from the npm registry unless a new enough bun is on PATH.
bun:
	@if command -v bun >/dev/null 2>&1 && [ "$$(printf '%s\n' "$(BUN_MIN)" "$$(bun --version)" | sort -V | head -1)" = "$(BUN_MIN)" ]; then \
		echo "Using bun $$(bun --version) from PATH"; \
	elif [ -x $(LOCAL_BUN) ] && [ "$$($(LOCAL_BUN) --version)" = "$(BUN_VERSION)" ]; then :; \
	else npm install --silent --no-fund --no-audit --prefix .tools/bun bun@$(BUN_VERSION); fi

setup: $(VENV)/.installed bun

run: setup
	$(PY) -m billing_app serve

# Browser tests drive Debian's Chromium (Playwright's own browser download cannot work offline).
chromium:
	@test -x /usr/bin/chromium || { \
		if [ "$$(id -u)" = 0 ]; then apt-get update -qq && apt-get install -y -qq chromium; \
		else sudo apt-get update -qq && sudo apt-get install -y -qq chromium; fi; }

# TEST_DATABASE_URL adds PostgreSQL runs of the database tests when a server answers on 127.0.0.1:5432.
test: setup chromium
	@if [ -z "$$TEST_DATABASE_URL" ] && $(PY) -c "import socket; socket.create_connection(('127.0.0.1', 5432), 1)" 2>/dev/null; then \
		export TEST_DATABASE_URL=$(PG_TEST_URL); echo "PostgreSQL found: database tests also run on $$TEST_DATABASE_URL"; fi; \
	$(PY) -m pytest $(PYTEST_ARGS)

# Not part of `make test`: N orgs' seeded lifecycles while the backend is killed; prints the figures (see README).
chaos: setup
	$(PY) benchmarks/chaos.py $(CHAOS_ARGS)

clean:
	rm -rf $(VENV) .tools .web .states .data
