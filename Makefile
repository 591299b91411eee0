# The two commands of the README: `make run` (the whole cluster) and `make test`.
# Both set up what they need: a virtualenv with the project, and a redis-server binary.
PYTHON ?= python3
VENV ?= .venv
BIN := $(VENV)/bin
ARGS ?=

.PHONY: install run test lint typecheck bench clean

install: $(VENV)/.installed
	@scripts/ensure-redis-server.sh

$(VENV)/.installed: pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet -e '.[dev]'
	@touch $@

run: install
	$(BIN)/tweezer up $(ARGS)

test: install
	$(BIN)/python -m pytest $(ARGS)

lint: install
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .

typecheck: install
	$(BIN)/mypy

bench: install
	$(BIN)/python -m bench.submit $(ARGS)

clean:
	rm -rf $(VENV) .tweezer .pytest_cache .mypy_cache .ruff_cache *.egg-info
