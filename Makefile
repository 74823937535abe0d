# The two commands of the README: `make book` (set up + main job) and `make test` (set up + every test).
# Both create .venv on a fresh clone, with the exact versions of constraints.txt (torch==2.14.1 and
# torchvision==0.29.1 among them; pyproject.toml itself asks only for ranges). Every pip install here goes
# through the constraints: without them pip would take the newest torch, a CUDA build of several GB.
PYTHON ?= python3.11
VENV ?= .venv
PY := $(VENV)/bin/python
PROFILE ?=

.PHONY: help venv test test-fast book fixtures benchmark clean

help:
	@echo "make book [PROFILE=name]  set up .venv, run the sweep (stored results are reused) and build the book"
	@echo "make test                 set up .venv and run every test (prints the 20 slowest)"
	@echo "make test-fast            the unit tier only (no book, no sweeps, no wheel): minutes, for use between edits"
	@echo "make fixtures             regenerate the book tests' fixtures (smoke results, executed notebooks)"
	@echo "make benchmark            run the benchmarks in benchmarks/"

$(VENV)/.installed: pyproject.toml constraints.txt
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip
	$(PY) -m pip install --quiet -c constraints.txt -e ".[dev,book]"
	$(PY) -m ipykernel install --sys-prefix --name python3 >/dev/null
	touch $@

venv: $(VENV)/.installed

# Lint and type-check first (seconds), then every test.
test: $(VENV)/.installed
	$(PY) -m ruff check sharpkit tests scripts benchmarks
	$(PY) -m mypy
	$(PY) -m pytest -q --durations=20

# The tiers are assigned in conftest.py (by folder) and registered in pyproject.toml.
test-fast: $(VENV)/.installed
	$(PY) -m pytest -q -m unit --durations=10

# Picks cifar10-minima, else cifar10-mini, when all of its results are stored in the repository, else digits-mini (trains offline in
# minutes); PROFILE=... overrides. Writes the site to _build/html.
book: $(VENV)/.installed
	$(PY) scripts/build_book.py $(if $(PROFILE),--profile $(PROFILE),)

# The book tests' fixtures: the smoke profile's results (a sweep reuses what is stored; delete
# tests/book/results/smoke first to retrain it) and every notebook executed on them (nbval compares the
# code's outputs with these). Run after a change that alters what a page prints; commit both folders.
fixtures: $(VENV)/.installed
	$(PY) -m sharpkit.cli sweep --profile smoke --results tests/book/results --no-progress
	$(PY) scripts/build_book.py --profile smoke --results tests/book/results --execute-into tests/book/executed

benchmark: $(VENV)/.installed
	$(PY) benchmarks/train_throughput.py
	$(PY) benchmarks/metrics.py

clean:
	rm -rf _build .pytest_cache .mypy_cache .ruff_cache
