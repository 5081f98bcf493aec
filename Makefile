# Two commands for a new user: `make demo` and `make test`. Each creates .venv and installs
# what it needs (TensorFlow, and tensorflow-metal on Apple Silicon) on first use.
PYTHON ?= python3
VENV ?= .venv
PY := $(VENV)/bin/python
EXTRAS := test,plot
ifeq ($(shell uname -s)-$(shell uname -m),Darwin-arm64)
EXTRAS := $(EXTRAS),metal
endif

.PHONY: demo test lint bench clean

$(VENV)/.installed: pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(PY) -m pip install -q --upgrade pip
	$(PY) -m pip install -q -e ".[$(EXTRAS)]"
	touch $@

demo: $(VENV)/.installed
	$(PY) examples/mixed_precision_demo.py $(ARGS)

lint: $(VENV)/.installed
	$(VENV)/bin/ruff check gometal_keras tests examples

test: lint
	$(PY) -m pytest -q -p no:cacheprovider $(ARGS)

bench: $(VENV)/.installed
	$(PY) -m gometal_keras.bench --quick $(ARGS)

clean:
	rm -rf $(VENV) *.egg-info .pytest_cache .ruff_cache
