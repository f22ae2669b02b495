# The two commands a newcomer needs: `make run` and `make test`. Both set themselves up.
PYTHON ?= python3
VENV   ?= .venv
BIN    := $(VENV)/bin
HOST   ?= 127.0.0.1
PORT   ?= 8000
PYTEST_ARGS ?=

.PHONY: run test lint migrate seed bench bench-cpu screenshots clean

$(BIN)/python:
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip

$(VENV)/.installed-run: pyproject.toml | $(BIN)/python
	$(BIN)/python -m pip install --quiet -e .
	touch $@

$(VENV)/.installed-test: pyproject.toml | $(BIN)/python
	$(BIN)/python -m pip install --quiet -e '.[test]'
	touch $@ $(VENV)/.installed-run

$(VENV)/.installed-bench: pyproject.toml | $(BIN)/python
	$(BIN)/python -m pip install --quiet -e '.[bench]'
	touch $@ $(VENV)/.installed-run

run: $(VENV)/.installed-run
	$(BIN)/webapp migrate
	$(BIN)/webapp serve --host $(HOST) --port $(PORT)

test: $(VENV)/.installed-test
	$(BIN)/pytest $(PYTEST_ARGS)

lint: $(VENV)/.installed-test $(VENV)/.installed-bench
	$(BIN)/ruff check webapp tests alembic bench
	$(BIN)/ruff format --check webapp tests alembic bench
	$(BIN)/mypy

migrate: $(VENV)/.installed-run
	$(BIN)/webapp migrate

seed: $(VENV)/.installed-run
	$(BIN)/webapp migrate
	$(BIN)/webapp seed --count $(or $(COUNT),1000)

# The benchmark (bench/run.py; never part of `make test`): a throw-away PostgreSQL, wrk,
# about 20 minutes. Smoke run: BENCH_SIZES=20000 BENCH_DURATION=3 make bench
bench: $(VENV)/.installed-bench
	@command -v wrk >/dev/null || { apt-get update -qq && apt-get install -y -qq wrk; }
	$(BIN)/python -m bench.run

# CPU per list page, console against floor, in one process (bench/cpu.py): steadier than
# wrk's rates on a shared machine, for judging a change. About 2 minutes.
bench-cpu: $(VENV)/.installed-bench
	$(BIN)/python -m bench.cpu

# The README's screenshots (tests/browser/screenshots.py): a throw-away seeded SQLite
# database, the console in Debian's Chromium, PNGs into docs/.
screenshots: $(VENV)/.installed-test
	@command -v chromium >/dev/null || { apt-get update -qq && apt-get install -y -qq chromium; }
	$(BIN)/python -m tests.browser.screenshots docs

clean:
	rm -rf $(VENV) .pytest_cache .mypy_cache .ruff_cache
