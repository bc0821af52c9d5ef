# tinydistill: `make demo` and `make test` do all set-up on a fresh machine.
SHELL := /bin/bash
PYTHON ?= python3
VENV ?= .venv
PY := $(VENV)/bin/python
PIP := $(VENV)/bin/pip
TORCH_PIN := torch==2.13.0

# The real data folder (GLUE TSVs, corpus, GloVe, NLTK data); ../shared/data when present.
DATA_DIR ?= $(if $(wildcard ../shared/data/glue),$(abspath ../shared/data),)
ifneq ($(DATA_DIR),)
export TINYDISTILL_DATA_DIR ?= $(DATA_DIR)
export NLTK_DATA ?= $(DATA_DIR)/nltk_data
endif
# Offline by default: nothing below may reach a model or dataset hub during tests or the demo.
export HF_HUB_OFFLINE ?= 1
export HF_DATASETS_OFFLINE ?= 1
export WANDB_MODE ?= offline
export WANDB_SILENT ?= true
export TOKENIZERS_PARALLELISM ?= false

.PHONY: install demo test bench bench-aug clean help

help:
	@echo "make demo   - install, then run the demo pipeline on MRPC and write a report"
	@echo "make test   - install, then run the test suite"
	@echo "make bench  - install, then run the benchmarks (JSON under bench/)"

$(VENV)/.installed: pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(PIP) install --quiet --upgrade pip
	# The pinned CPU build first: an unpinned torch would pull gigabytes of CUDA packages.
	$(PIP) install --quiet $(TORCH_PIN)
	$(PIP) install --quiet -e '.[dev]'
	touch $@

install: $(VENV)/.installed

test: install
	$(PY) -m pytest

demo: install
	$(PY) train.py stage=finetune task=mrpc experiment=demo
	@echo
	@echo "Fine-tuned teacher: artifacts/teacher/mrpc/  (Hugging Face format)"
	@echo "Dev metrics:        artifacts/teacher/mrpc/metrics.json"
	@cat artifacts/teacher/mrpc/metrics.json

bench: bench-aug

bench-aug: install
	mkdir -p bench
	$(PY) bench/bench_aug.py --out bench/aug.json

clean:
	rm -rf artifacts outputs multirun
