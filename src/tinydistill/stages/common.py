"""Pieces shared by the stages that train a task classifier."""

from __future__ import annotations

import itertools
import json
from pathlib import Path
from typing import Any

import lightning as L
import torch
from lightning.pytorch.callbacks import Callback
from lightning.pytorch.trainer.states import TrainerFn
from omegaconf import DictConfig
from transformers import DataCollatorWithPadding, PreTrainedModel, PreTrainedTokenizerBase

from tinydistill.baselines import constant_predictor, gap_closed, retention
from tinydistill.bench import time_model
from tinydistill.data.glue import GlueDataModule, tokenized_split
from tinydistill.data.loader import make_loader
from tinydistill.data.tasks import GlueTask
from tinydistill.modules.glue_eval import GlueEvalModule, metric_prefix
from tinydistill.resume import ResumableCheckpoint


def best_checkpoint_callback(cfg: DictConfig, task: GlueTask) -> ResumableCheckpoint:
    """Keep the best evaluation by the task's main dev metric, and `last.ckpt` (the latest, for resuming)."""
    return ResumableCheckpoint(
        dirpath=Path(cfg.paths.output_dir) / "checkpoints",
        monitor=f"val/{task.metric}",
        mode="max",
        save_top_k=1,
        save_last=True,
        filename="best-{epoch}-{step}",
        # stage=task: overwrite the intermediate phase's last.ckpt rather than write last-v1.ckpt beside it
        enable_version_counter=False,
    )


class EvaluationCount(Callback):
    """Counts the dev evaluations a fit runs (not the sanity check, not a later `trainer.validate`), kept in
    checkpoints: a no-distillation baseline can then pick its best from as many evaluations as the distilled run
    (`stage.evals=matched`), since the best of many evaluations flatters a run by its luckiest one."""

    def __init__(self) -> None:
        self.count = 0

    def on_validation_end(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        if trainer.state.fn == TrainerFn.FITTING and not trainer.sanity_checking:
            self.count += 1

    def state_dict(self) -> dict[str, Any]:
        return {"count": self.count}

    def load_state_dict(self, state_dict: dict[str, Any]) -> None:
        self.count = int(state_dict.get("count", 0))


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


def dev_metrics(task: GlueTask, logged: dict[str, float]) -> dict[str, dict[str, float]]:
    """`{"val/f1": .., "val_dev_mismatched/accuracy": ..}` -> `{"dev": {"f1": ..}, "dev_mismatched": {..}}` (with
    `task.tune_split`: `{"tune": {..}, "dev": {..}}`, every split of `task.val_splits`)."""
    out: dict[str, dict[str, float]] = {}
    for idx, split in enumerate(task.val_splits):
        prefix = metric_prefix(task, idx) + "/"
        out[split] = {k[len(prefix):]: v for k, v in logged.items() if k.startswith(prefix)}
    return out


def dev_latency(
    cfg: DictConfig, models: dict[str, PreTrainedModel], dm: GlueDataModule, batch_size: int | None = None
) -> dict[str, dict[str, float]]:
    """Dev-set inference time of each model on the same batches (batch size `stage.latency_batch_size`), on the
    first `stage.latency_max_examples` dev examples when that is set."""
    dev = dm.splits[dm.dev_splits[0]].remove_columns(["labels"])
    limit = cfg.stage.get("latency_max_examples")
    if limit is not None and limit < len(dev):
        dev = dev.select(range(limit))
    loader = torch.utils.data.DataLoader(dev, batch_size=batch_size or cfg.stage.latency_batch_size,
                                         collate_fn=dm.collator)
    batches = list(loader)
    out = {}
    for name, model in models.items():
        seconds = time_model(model.cpu(), batches, repeats=cfg.stage.latency_repeats)
        out[name] = {"seconds": seconds, "ms_per_example": 1000 * seconds / len(dev), "examples": len(dev)}
    return out


def add_latency(cfg: DictConfig, result: dict[str, Any], models: dict[str, PreTrainedModel], dm: GlueDataModule,
                own: str) -> None:
    """`latency` and `speedup` (the teacher's time over `own`'s) at `stage.latency_batch_size`, and with
    `stage.latency_batch1` the same at batch size 1 (`latency_batch1`, `speedup_batch1`): the speed-up a
    service answering one request at a time would see."""
    sizes = [("", cfg.stage.latency_batch_size)]
    if cfg.stage.get("latency_batch1", False):
        sizes.append(("_batch1", 1))
    for suffix, size in sizes:
        lat = dev_latency(cfg, models, dm, size)
        result["latency" + suffix] = lat
        if "teacher" in lat and own != "teacher":
            result["speedup" + suffix] = lat["teacher"]["seconds"] / lat[own]["seconds"]


def teacher_dev_metrics(t_dir: str | Path) -> dict[str, Any]:
    """The `dev*` metrics a fine-tuned teacher's metrics.json holds ({} without one)."""
    path = Path(t_dir) / "metrics.json"
    if not path.is_file():
        return {}
    data = json.loads(path.read_text())
    return {k: v for k, v in data.items() if k.startswith("dev")}


def evaluate_teacher(
    cfg: DictConfig, task: GlueTask, teacher: PreTrainedModel, tokenizer: PreTrainedTokenizerBase
) -> dict[str, dict[str, float]]:
    """The teacher's dev metrics, measured now by the students' own GLUE evaluation (`GlueEvalModule`'s
    validation step and metrics), on the same dev batches as the run's (`trainer.limit_val_batches` and
    `trainer.fast_dev_run` apply), so retention and gap closed compare like with like.

    A plain loop on the CPU rather than a Lightning Trainer: it runs before the run's own Trainer (and, under
    DDP, before the process group exists, so every process measures the whole dev set itself). Writes nothing:
    the tokenised dev splits are not cached by this call."""
    limit = 1 if cfg.trainer.get("fast_dev_run") else cfg.trainer.get("limit_val_batches")
    module = GlueEvalModule(teacher, task)
    training = teacher.training
    teacher.eval()  # GlueEvalModule switches its classifier to training mode (dropout) for the students
    logged: dict[str, float] = {}
    with torch.inference_mode():
        for idx, split in enumerate(task.val_splits):
            ds = tokenized_split(task, split, tokenizer, cfg.task.max_seq_length, cfg.paths.data_dir,
                                 cfg.paths.cache_dir, write_cache=False)
            loader = make_loader(ds, cfg.stage.eval_batch_size, False, DataCollatorWithPadding(tokenizer))
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
    cfg: DictConfig,
    task: GlueTask,
    result: dict[str, Any],
    teacher_dir: str | Path | None,
    teacher_metrics: dict[str, Any] | None = None,
    constant: dict[str, Any] | None = None,
) -> None:
    """Put the teacher's dev metrics, the constant predictor's, retention and gap closed into `result` beside the
    run's own dev metrics. The teacher's are `teacher_metrics` (measured by this run) if given, else read from
    `teacher_dir`'s metrics.json; `constant`, if given, is the already computed constant predictor."""
    result["constant"] = constant if constant is not None else constant_predictor(task, cfg.paths.data_dir)
    if teacher_metrics is None:
        if teacher_dir is None:
            return
        teacher_metrics = teacher_dev_metrics(teacher_dir)
    result["teacher"] = teacher_metrics
    if result["teacher"]:
        result["retention"] = retention(task, result, result["teacher"])
        result["gap_closed"] = gap_closed(task, result, result["teacher"], result["constant"])
