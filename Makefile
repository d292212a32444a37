# Two commands on a fresh machine: `make run` and `make test`. Both build .venv themselves.
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin

.PHONY: run test lint bench clean

$(BIN)/desim: pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --disable-pip-version-check -e '.[test]'
	touch $(BIN)/desim

run: $(BIN)/desim
	$(BIN)/desim run configs/experiments/quickstart.yaml --out results/quickstart

test: $(BIN)/desim
	$(BIN)/ruff check .
	$(BIN)/python -m pytest -n 2 -m "not slow" tests

lint: $(BIN)/desim
	$(BIN)/ruff check .

bench: $(BIN)/desim
	$(BIN)/desim bench

clean:
	rm -rf $(VENV) results .pytest_cache
