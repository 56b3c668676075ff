# `make demo` and `make test` work on a fresh clone with nothing but Python >= 3.11:
# they create .venv and install the package with its test extras (llama-cpp-python
# compiles from source the first time, ~8 minutes on 2 cores, with this CPU's features but never
# AMX, see src/modelladder/native_build.py; the wheel is cached by its build options).
PYTHON ?= python3
VENV   := .venv
BIN    := $(VENV)/bin
STAMP  := $(VENV)/.installed-$(shell cat pyproject.toml | cksum | cut -d' ' -f1)

.PHONY: venv demo test lint bench clean

$(STAMP): pyproject.toml src/modelladder/native_build.py
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python src/modelladder/native_build.py install --python $(BIN)/python --quiet
	$(BIN)/python -m pip install --quiet -e ".[dev,bench,distill,retrieval]"
	# LlamaIndex's OpenAI integration declares openai<3, the OpenAI Agents SDK openai>=3, so pip
	# cannot resolve both: it goes in without its dependencies (llama-index-core, in dev, brings
	# the rest); tests/gateway/test_frameworks.py drives it on openai 3 and passes
	$(BIN)/python -m pip install --quiet --no-deps "llama-index-llms-openai>=0.8,<0.9" "llama-index-llms-openai-like>=0.8,<0.9"
	rm -f $(VENV)/.installed-* && touch $(STAMP)

venv: $(STAMP)

demo: $(STAMP)
	$(BIN)/modelladder demo

test: $(STAMP)
	$(BIN)/python -m pytest -q

# The format check runs last so that the checks before it report even while it fails.
lint: $(STAMP)
	$(BIN)/ruff check src tests benchmarks
	$(BIN)/mypy
	$(BIN)/lint-imports
	$(BIN)/ruff format --check src tests benchmarks

bench: $(STAMP)
	$(BIN)/python benchmarks/edge_step.py

clean:
	rm -rf $(VENV) build *.egg-info
