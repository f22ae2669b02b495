# The two commands a newcomer needs: `make run` and `make test`. Both set themselves up.
PYTHON ?= python3
VENV   ?= .venv
BIN    := $(VENV)/bin
HOST   ?= 127.0.0.1
PORT   ?= 8000
PYTEST_ARGS ?=

.PHONY: run test lint migrate seed clean

$(BIN)/python:
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip

$(VENV)/.installed-run: pyproject.toml | $(BIN)/python
	$(BIN)/python -m pip install --quiet -e .
	touch $@

$(VENV)/.installed-test: pyproject.toml | $(BIN)/python
	$(BIN)/python -m pip install --quiet -e '.[test]'
	touch $@ $(VENV)/.installed-run

run: $(VENV)/.installed-run
	$(BIN)/webapp migrate
	$(BIN)/webapp serve --host $(HOST) --port $(PORT)

test: $(VENV)/.installed-test
	$(BIN)/pytest $(PYTEST_ARGS)

lint: $(VENV)/.installed-test
	$(BIN)/ruff check webapp tests alembic
	$(BIN)/ruff format --check webapp tests alembic
	$(BIN)/mypy

migrate: $(VENV)/.installed-run
	$(BIN)/webapp migrate

seed: $(VENV)/.installed-run
	$(BIN)/webapp migrate
	$(BIN)/webapp seed --count $(or $(COUNT),1000)

clean:
	rm -rf $(VENV) .pytest_cache .mypy_cache .ruff_cache
