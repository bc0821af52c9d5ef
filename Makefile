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

.PHONY: install demo test bench bench-aug bench-latency clean help

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

# The main pipeline on MRPC with the offline teacher, in demo-sized settings (conf/experiment/demo/).
DEMO_STAGES := finetune mlm general task
demo: install
	set -e; for stage in $(DEMO_STAGES); do \
	  echo "=== stage=$$stage ==="; \
	  $(PY) train.py stage=$$stage experiment=demo/$$stage; \
	done
	$(PY) -m tinydistill.report artifacts/task/mrpc --out artifacts/report
	@echo
	@echo "Fine-tuned teacher:        artifacts/teacher/mrpc/"
	@echo "Masked LM (augmentation):  artifacts/mlm/minilm_l6/"
	@echo "General-distilled student: artifacts/general/demo_3l_192/"
	@echo "Augmented MRPC:            artifacts/aug/mrpc/train_aug.tsv"
	@echo "Task-distilled student:    artifacts/task/mrpc/none/  (metrics.json beside it)"
	@echo "Report:                    artifacts/report/report.md, artifacts/report/report.png"

bench: bench-aug bench-latency

# Inference latency of the demo's teacher and student on MRPC dev (needs `make demo` first).
bench-latency: install
	mkdir -p bench
	$(PY) -m tinydistill.bench --task mrpc --model artifacts/teacher/mrpc --model artifacts/task/mrpc/none \
	  --batch-size 32 --out bench/latency.json

bench-aug: install
	mkdir -p bench
	$(PY) bench/bench_aug.py --out bench/aug.json

clean:
	rm -rf artifacts outputs multirun
