"""What the stages that train a task classifier (finetune, task) share: their data module, dev evaluation of the
selected checkpoint, the teacher's fresh dev evaluation, latency and the yardsticks beside the run's own figures."""

from __future__ import annotations

import itertools
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import lightning as L
import torch
from omegaconf import DictConfig
from transformers import (
    DataCollatorWithPadding,
    PreTrainedModel,
    PreTrainedTokenizerBase,
)

from tinydistill.baselines import constant_predictor, gap_closed, retention
from tinydistill.contract import RunContext
from tinydistill.data.glue import TaskDataModule, tokenized_split
from tinydistill.data.loader import make_loader
from tinydistill.data.tasks import Task
from tinydistill.data.unlabeled import UnlabeledMix
from tinydistill.models.measure import time_model
from tinydistill.modules.glue_eval import GlueEvalModule, metric_prefix
from tinydistill.records import METRICS_JSON, ClassifierRecord
from tinydistill.resume import ResumableCheckpoint


@dataclass(frozen=True)
class TaskBatches:
    """The task, its truncation length and batch sizes (`task.max_seq_length`, `stage.batch_size`,
    `stage.eval_batch_size`)."""

    task: Task
    max_seq_length: int
    batch_size: int
    eval_batch_size: int

    @classmethod
    def from_config(cls, cfg: DictConfig, task: Task) -> TaskBatches:
        return cls(task, int(cfg.task.max_seq_length), int(cfg.stage.batch_size), int(cfg.stage.eval_batch_size))


@dataclass(frozen=True)
class Latency:
    """Dev-set inference timing at the end of a run (`stage.measure_latency`, `stage.latency_*`)."""

    measure: bool
    batch_size: int
    repeats: int
    batch1: bool
    max_examples: int | None

    @classmethod
    def from_stage(cls, st: DictConfig) -> Latency:
        return cls(bool(st.measure_latency), int(st.latency_batch_size), int(st.latency_repeats),
                   bool(st.get("latency_batch1", False)), st.get("latency_max_examples"))


def task_datamodule(tb: TaskBatches, ctx: RunContext, tokenizer: PreTrainedTokenizerBase,
                    train_file: str | None = None, with_index: bool = False,
                    teacher_tokenizer: PreTrainedTokenizerBase | None = None,
                    unlabeled: UnlabeledMix | None = None, unlabeled_file: str | None = None) -> TaskDataModule:
    """The task's tokenised batches as `tb` and `ctx.loading` say; `train_file` replaces the training file (an
    augmented set), `with_index` numbers the training rows (cached teacher logits are looked up by it),
    `teacher_tokenizer` (a teacher reading text with another tokenizer) adds its encoding of the training rows,
    `unlabeled` adds unlabelled rows to the training split (stage=task with task.unlabeled); `unlabeled_file`: those
    rows, chosen and augmented beforehand."""
    return TaskDataModule(
        tb.task,
        tokenizer,
        max_seq_length=tb.max_seq_length,
        data_dir=ctx.data_dir,
        cache_dir=ctx.cache_dir,
        batch_size=tb.batch_size,
        eval_batch_size=tb.eval_batch_size,
        num_workers=ctx.loading.num_workers,
        train_file=train_file,
        group_by_length=ctx.loading.group_by_length,
        pad_to_max_length=ctx.loading.pad_to_max_length,
        with_index=with_index,
        seed=ctx.seed,
        teacher_tokenizer=teacher_tokenizer,
        unlabeled=unlabeled,
        unlabeled_file=unlabeled_file,
    )


def validate_best(
    trainer: L.Trainer, module: L.LightningModule, datamodule: L.LightningDataModule, checkpoint: ResumableCheckpoint
) -> dict[str, float]:
    """Load the best checkpoint into `module` (if one was saved) and return its dev metrics."""
    best = checkpoint.best_model_path or None
    results = trainer.validate(module, datamodule=datamodule, ckpt_path=best, verbose=False)
    merged: dict[str, float] = {}
    for r in results:
        merged.update({k: float(v) for k, v in r.items()})
    return merged


def dev_metrics(task: Task, logged: dict[str, float]) -> dict[str, dict[str, float]]:
    """`{"val/f1": .., "val_dev_mismatched/accuracy": ..}` -> `{"dev": {"f1": ..}, "dev_mismatched": {..}}` (with
    `task.tune_split`: `{"tune": {..}, "dev": {..}}`, every split of `task.val_splits`)."""
    out: dict[str, dict[str, float]] = {}
    for idx, split in enumerate(task.val_splits):
        prefix = metric_prefix(task, idx) + "/"
        out[split] = {k[len(prefix):]: v for k, v in logged.items() if k.startswith(prefix)}
    return out


def dev_latency(lat: Latency, models: dict[str, PreTrainedModel], dm: TaskDataModule,
                batch_size: int, own_data: dict[str, TaskDataModule] | None = None) -> dict[str, dict[str, float]]:
    """Dev-set inference time of each model on the same batches of `batch_size`, on the first `lat.max_examples`
    dev examples when that is set; a model named in `own_data` reads the same examples in that module's encoding
    (a teacher with another tokenizer)."""
    out = {}
    for name, model in models.items():
        data = (own_data or {}).get(name, dm)
        if not data.splits:
            data.setup("validate")
        dev = data.splits[data.dev_splits[0]].remove_columns(["labels"])
        if lat.max_examples is not None and lat.max_examples < len(dev):
            dev = dev.select(range(lat.max_examples))
        batches = list(torch.utils.data.DataLoader(dev, batch_size=batch_size, collate_fn=data.collator))
        seconds = time_model(model.cpu(), batches, repeats=lat.repeats)
        out[name] = {"seconds": seconds, "ms_per_example": 1000 * seconds / len(dev), "examples": len(dev)}
    return out


def add_latency(lat: Latency, result: dict[str, Any], models: dict[str, PreTrainedModel], dm: TaskDataModule,
                own: str, own_data: dict[str, TaskDataModule] | None = None) -> None:
    """`latency` and `speedup` (the teacher's time over `own`'s) at `lat.batch_size`, and with `lat.batch1` the
    same at batch size 1 (`latency_batch1`, `speedup_batch1`): the speed-up a service answering one request at a
    time would see."""
    sizes = [("", lat.batch_size)]
    if lat.batch1:
        sizes.append(("_batch1", 1))
    for suffix, size in sizes:
        times = dev_latency(lat, models, dm, size, own_data)
        result["latency" + suffix] = times
        if "teacher" in times and own != "teacher":
            result["speedup" + suffix] = times["teacher"]["seconds"] / times[own]["seconds"]


def teacher_dev_metrics(t_dir: str | Path) -> dict[str, Any]:
    """The `dev*` metrics a fine-tuned teacher's metrics.json holds ({} without one)."""
    path = Path(t_dir) / METRICS_JSON
    if not path.is_file():
        return {}
    return ClassifierRecord.read(path).dev_metrics


def evaluate_teacher(
    tb: TaskBatches, ctx: RunContext, teacher: PreTrainedModel, tokenizer: PreTrainedTokenizerBase
) -> dict[str, dict[str, float]]:
    """The teacher's dev metrics, measured now by the students' own GLUE evaluation (`GlueEvalModule`'s
    validation step and metrics), on the same dev batches as the run's (`trainer.limit_val_batches` and
    `trainer.fast_dev_run` apply), so retention and gap closed compare like with like.

    A plain loop on the CPU rather than a Lightning Trainer: it runs before the run's own Trainer (and, under
    DDP, before the process group exists, so every process measures the whole dev set itself). Writes nothing:
    the tokenised dev splits are not cached by this call."""
    task = tb.task
    limit = 1 if ctx.trainer.get("fast_dev_run") else ctx.trainer.get("limit_val_batches")
    module = GlueEvalModule(teacher, task)
    training = teacher.training
    teacher.eval()  # GlueEvalModule switches its classifier to training mode (dropout) for the students
    logged: dict[str, float] = {}
    with torch.inference_mode():
        for idx, split in enumerate(task.val_splits):
            ds = tokenized_split(task, split, tokenizer, tb.max_seq_length, ctx.data_dir, ctx.cache_dir,
                                 write_cache=False)
            loader = make_loader(ds, tb.eval_batch_size, False, DataCollatorWithPadding(tokenizer))
            n = _limited_batches(limit, len(loader))
            for i, batch in enumerate(itertools.islice(loader, n)):
                module.validation_step(batch, i, idx)
            prefix = metric_prefix(task, idx)
            logged.update({f"{prefix}/{k}": float(v) for k, v in module.val_metrics[idx].compute().items()})
    teacher.train(training)
    return dev_metrics(task, logged)


def _limited_batches(limit: int | float | None, total: int) -> int:
    """How many of `total` batches `trainer.limit_val_batches` lets through, as Lightning counts them (an int is a
    count, a float a fraction). 0 turns the run's dev evaluation off, not the teacher's: then all."""
    if limit is None or limit == 0 or (isinstance(limit, float) and limit >= 1.0):
        return total
    if isinstance(limit, float):
        return max(1, int(total * limit))
    return min(int(limit), total)


def add_yardsticks(
    data_dir: str | None,
    task: Task,
    result: dict[str, Any],
    teacher_dir: str | Path | None,
    teacher_metrics: dict[str, Any] | None = None,
    constant: dict[str, Any] | None = None,
) -> None:
    """Put the teacher's dev metrics, the constant predictor's, retention and gap closed into `result` beside the
    run's own dev metrics. The teacher's are `teacher_metrics` (measured by this run) if given, else read from
    `teacher_dir`'s metrics.json; `constant`, if given, is the already computed constant predictor."""
    result["constant"] = constant if constant is not None else constant_predictor(task, data_dir)
    if teacher_metrics is None:
        if teacher_dir is None:
            return
        teacher_metrics = teacher_dev_metrics(teacher_dir)
    result["teacher"] = teacher_metrics
    if result["teacher"]:
        result["retention"] = retention(task, result, result["teacher"])
        result["gap_closed"] = gap_closed(task, result, result["teacher"], result["constant"])
