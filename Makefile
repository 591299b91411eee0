# The two commands of the README: `make run` (the whole cluster) and `make test`.
# Both set up what they need: a virtualenv with the project, and a redis-server binary.
PYTHON ?= python3
VENV ?= .venv
BIN := $(VENV)/bin
# The deprecated pulser-pasqal shim pins pasqal-cloud 0.22: tests drive it from its own venv.
SHIM_VENV ?= .venv-shim
ARGS ?=

.PHONY: install install-clients install-emulators run test test-fast lint typecheck bench soak clean

install: $(VENV)/.installed
	@scripts/ensure-debian-packages.sh redis-server redis-server

$(VENV)/.installed: pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet -e '.[dev,lab]'
	@touch $@

# The clients tests/test_clients.py drives, installed by name from PyPI like any user would, and
# the headless browser tests/test_dashboard.py drives (Debian's chromium and chromedriver).
install-clients: install $(VENV)/.clients $(SHIM_VENV)/.installed
	@scripts/ensure-debian-packages.sh chromium chromium chromium-driver
	@scripts/ensure-debian-packages.sh chromedriver chromium chromium-driver

$(VENV)/.clients: pyproject.toml $(VENV)/.installed
	$(BIN)/python -m pip install --quiet -e '.[dev,lab,test-clients]'
	@touch $@

# Pasqal's emulators (the `emulators` extra: emu-sv, emu-mps, torch) for EMU_SV, EMU_MPS and
# EMU_FRESNEL, which `make test` and `make bench` run. torch goes first, pinned: with none
# installed pip takes the newest, on x86_64 a CUDA build of several GB. TORCH may name any
# build emu-base accepts (torch~=2.7): on a GPU-less host, a CPU build (this workplace keeps
# one for 2.13.0 where pip looks); elsewhere PyPI's.
TORCH ?= torch==2.13.0
install-emulators: install $(VENV)/.emulators

$(VENV)/.emulators: pyproject.toml $(VENV)/.installed
	$(BIN)/python -m pip install --quiet '$(TORCH)'
	$(BIN)/python -m pip install --quiet -e '.[dev,lab,emulators]'
	@touch $@

$(SHIM_VENV)/.installed: tests/clients/shim-requirements.txt
	$(PYTHON) -m venv $(SHIM_VENV)
	$(SHIM_VENV)/bin/python -m pip install --quiet --upgrade pip
	$(SHIM_VENV)/bin/python -m pip install --quiet -r tests/clients/shim-requirements.txt
	@touch $@

run: install
	$(BIN)/tweezer up $(ARGS)

# The seconds-long tier: the store, policies, the simulator, settings, the vocabulary, bad input
# at store level; no cluster (tests/conftest.py FAST_MODULES). `make test` runs it first.
# Debian's munge (its munged in /usr/sbin, libmunge2): tests/test_munge.py starts its own.
test-fast: install
	@scripts/ensure-debian-packages.sh munge munge libmunge2
	$(BIN)/python -m pytest -n 2 -m "fast and not serial" $(ARGS) || [ $$? -eq 5 ]

# Then three pytest workers on the two cores, whole modules each (module clusters are shared
# within a module), longest modules first: most of a cluster test's time is waiting on its
# cluster's processes (measured: 7:12 against 8:23 with two). Then the tests that measure time
# or load, alone. Exit code 5 (nothing selected, e.g. ARGS picked one file) is not a failure.
test: install-clients install-emulators test-fast
	$(BIN)/python -m pytest -n 3 --dist loadfile --no-loadscope-reorder -m "not fast and not serial" --durations=15 $(ARGS) || [ $$? -eq 5 ]
	$(BIN)/python -m pytest -m serial $(ARGS) || [ $$? -eq 5 ]

lint: install
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .

typecheck: install
	$(BIN)/mypy

bench: install install-emulators
	$(BIN)/python -m bench.submit $(ARGS)

# Thirty minutes of faults under load, then the checker (README, "Soak"); SEED=N reproduces a run.
SEED ?= 1
soak: install
	$(BIN)/tweezer chaos --duration 1800 --seed $(SEED) --out soak-$(SEED) $(ARGS)

clean:
	rm -rf $(VENV) $(SHIM_VENV) .tweezer .pytest_cache .mypy_cache .ruff_cache *.egg-info
