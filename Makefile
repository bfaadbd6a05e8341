# caplab: the two doors are `make reproduce` and `make test`; both create the environment themselves.
#   make reproduce [PROFILE=smoke|cpu|gpu] [PAPERS="kappa shannon"] [CELL_TIMEOUT=seconds]
#   make test | lab | bench | clean | distclean
PYTHON  ?= python3
VENV    := .venv
PY      := $(VENV)/bin/python
PROFILE ?= cpu
PAPERS  ?=
# Seconds a notebook cell may run (default by tier: smoke 600, cpu 3600, gpu 6 h); env CAPLAB_CELL_TIMEOUT works too.
CELL_TIMEOUT ?=
# Models and data come from the Hugging Face cache; set HF_HUB_OFFLINE=0 to let the gpu tier download them.
export HF_HUB_OFFLINE      ?= 1
export HF_DATASETS_OFFLINE ?= 1

.PHONY: setup reproduce test controls lab bench index clean distclean

# One pip command installs everything, torch pinned in pyproject.toml beside the rest (see README). pip byte-compiles
# what it installs (120 of a fresh install's 220 s here), and that is kept: with PYTHONDONTWRITEBYTECODE set, as on
# this project's machines, --no-compile made every notebook kernel compile its imports again (make test 12 -> 15 min).
$(VENV)/.installed: pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --disable-pip-version-check -e ".[dev]"
	touch $@

setup: $(VENV)/.installed

reproduce: setup
	$(PY) -m caplab run --tier $(PROFILE) $(if $(CELL_TIMEOUT),--cell-timeout $(CELL_TIMEOUT)) $(PAPERS)

# Tests run on every core (pytest-xdist), one torch thread per worker (tests/conftest.py).
TEST_WORKERS ?= auto
test: setup
	$(PY) -m pytest -n $(TEST_WORKERS) --dist worksteal --durations=15

# Every control re-measured on all its draws (make test replays a sample of the recorded draws); the nightly build.
controls: setup
	CAPLAB_FULL_CONTROLS=1 CAPLAB_SLOW_CONTROLS=1 $(PY) -m pytest -n $(TEST_WORKERS) --dist worksteal tests/test_controls.py

lab: setup
	$(VENV)/bin/jupyter lab --notebook-dir=notebooks $(if $(filter 0,$(shell id -u)),--allow-root)

bench: setup
	$(PY) -m caplab.bench --out bench/bench.json

index: setup
	$(PY) -m caplab index

clean:
	find results -mindepth 1 -maxdepth 1 ! -name README.md -exec rm -rf {} +

distclean: clean
	rm -rf $(VENV) .cache bench
