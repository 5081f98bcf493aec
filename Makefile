# Two commands for a new user: `make demo` and `make test`. Each creates .venv and installs
# what it needs (TensorFlow, and tensorflow-metal on Apple Silicon) on first use; `make test`
# adds the JAX and PyTorch backends (CPU builds), whose tests skip where they are missing.
VENV ?= .venv
PY := $(VENV)/bin/python
EXTRAS := test,plot,onnx,evaluate
UNAME ?= $(shell uname -s)-$(shell uname -m)
# Apple Silicon: tensorflow-metal 1.2.0 has wheels for Python 3.10-3.12 only, so the venv is
# made with the newest of those found (unless PYTHON is given); none found is an error below.
APPLE_PYTHONS := python3.12 python3.11 python3.10
ifeq ($(UNAME),Darwin-arm64)
EXTRAS := $(EXTRAS),metal
ifeq ($(origin PYTHON),undefined)
PYTHON := $(firstword $(foreach p,$(APPLE_PYTHONS),$(shell command -v $(p) 2>/dev/null)))
endif
endif
PYTHON ?= python3
# PyTorch, pinned to the CPU-only build verified with Keras 3.15. The local version "+cpu" is never
# on PyPI (whose Linux x86_64 torch pulls several GB of CUDA libraries), so this pin can take only
# a CPU build (a wheel in pip's find-links, or PyTorch's CPU index), never a CUDA one. Where none
# is found the PyTorch tests skip, unless BACKENDS_REQUIRED=1 (CI), which makes that an error
# (as it does a missing ONNX Runtime or grain, whose tests would skip too).
TORCH := torch==2.13.0+cpu
BACKENDS_REQUIRED ?= 0

.PHONY: demo test lint bench clean

$(VENV)/.installed: pyproject.toml Makefile
	@test -n "$(PYTHON)" || { echo "No Python 3.10-3.12 found (tensorflow-metal 1.2.0 has \
	wheels for those only); install one with: brew install python@3.12 (or pass \
	PYTHON=/path/to/python3.12)."; exit 1; }
	$(PYTHON) -m venv $(VENV)
	$(PY) -m pip install -q --upgrade pip
	$(PY) -m pip install -q -e ".[$(EXTRAS)]"
	touch $@

# The backends `make test` adds. The `jax` extra (JAX's CPU wheels from PyPI, pinned in
# pyproject.toml) goes in one pip run with the others, so that its numpy suits TensorFlow's too.
$(VENV)/.backends: $(VENV)/.installed
	$(PY) -m pip install -q -e ".[$(EXTRAS),jax]"
	$(PY) -m pip install -q "$(TORCH)" \
	  || { echo "No CPU-only $(TORCH) here: the PyTorch tests will skip."; \
	       test "$(BACKENDS_REQUIRED)" != 1; }
	if [ "$(BACKENDS_REQUIRED)" = 1 ]; then $(PY) -c "import jax, torch, onnxruntime, grain"; fi
	touch $@

demo: $(VENV)/.installed
	$(PY) examples/mixed_precision_demo.py $(ARGS)

lint: $(VENV)/.installed
	$(VENV)/bin/ruff check gometal_keras tests examples

test: lint $(VENV)/.backends
	$(PY) -m pytest -q -p no:cacheprovider -n 2 --dist worksteal $(ARGS)

bench: $(VENV)/.installed
	$(PY) -m gometal_keras.bench --quick $(ARGS)

clean:
	rm -rf $(VENV) *.egg-info .pytest_cache .ruff_cache
