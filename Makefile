# Two entry points for a fresh clone: `make demo` (the main job) and `make test`.
# Both create .venv when missing, install torch==2.13.0 first when no torch is
# present (a bare `torch` requirement pulls GBs of CUDA wheels), then the package; `make test`
# adds the ray and onnx extras (so the Ray Tune sweep, Ray Data annotate and ONNX Runtime tests run, not skip).
SHELL := /bin/bash
PYTHON ?= python3
VENV ?= .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.spacy-bioner-installed
TEST_STAMP := $(VENV)/.spacy-bioner-test-installed
TORCH_PIN ?= torch==2.13.0
# Offline mirror of the corpora; used by `make demo` when the folder exists.
BIONER_ASSETS_DIR ?= ../shared/corpora
export BIONER_ASSETS_DIR

.PHONY: install demo test test-fast bench clean

$(STAMP): setup.cfg pyproject.toml Makefile
	@test -x $(PY) || $(PYTHON) -m venv $(VENV)
	@$(PY) -m pip install -q --upgrade pip
	@$(PY) -c "import torch" 2>/dev/null || { echo "Installing $(TORCH_PIN) (CPU build) first"; $(PY) -m pip install -q $(TORCH_PIN); }
	$(PY) -m pip install -q -e ".[test]"
	@touch $@

$(TEST_STAMP): $(STAMP)
	$(PY) -m pip install -q -e ".[test,ray,onnx,lora]"
	@touch $@

install: $(STAMP)

demo: install
	$(PY) -m spacy project run demo . --vars.assets_mirror "$(BIONER_ASSETS_DIR)"

test: $(TEST_STAMP)
	$(PY) -m pytest tests --durations=15

test-fast: $(TEST_STAMP)
	$(PY) -m pytest tests -m "not slow"

bench: install
	$(PY) benchmarks/bench_convert.py

clean:
	rm -rf corpus/* training/* metrics packages $(VENV)
