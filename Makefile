# The two commands of the README: `make book` (set up + main job) and `make test` (set up + every test).
# Both create .venv on a fresh clone. torch/torchvision are pinned in pyproject.toml.
PYTHON ?= python3.11
VENV ?= .venv
PY := $(VENV)/bin/python
RUNS ?= runs

.PHONY: help venv test book benchmark clean

help:
	@echo "make book       set up .venv and run the main job (see README)"
	@echo "make test       set up .venv and run every test"
	@echo "make benchmark  run the benchmarks in benchmarks/"

$(VENV)/.installed-dev: pyproject.toml
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip
	$(PY) -m pip install --quiet -e ".[dev]"
	touch $@

venv: $(VENV)/.installed-dev

test: $(VENV)/.installed-dev
	$(PY) -m pytest -q

# Until the book lands, the main job trains the paper's ResNet-18 (narrow) on the embedded digits
# dataset, which needs no data folder and no network.
book: $(VENV)/.installed-dev
	@echo "make book: the Jupyter Book is not built yet; training ResNet-18 (width 16) on the embedded digits dataset instead."
	$(VENV)/bin/sharpkit train --arch resnet18 --width 16 --dataset digits --control augmentation_sam \
		--epochs 3 --seed 0 --out $(RUNS)/digits-resnet18-augmentation_sam-seed0

benchmark: $(VENV)/.installed-dev
	$(PY) benchmarks/train_throughput.py

clean:
	rm -rf $(RUNS) _build .pytest_cache
