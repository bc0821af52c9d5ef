"""Pieces shared by the stages that train a task classifier."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import lightning as L
import torch
from lightning.pytorch.callbacks import ModelCheckpoint
from omegaconf import DictConfig
from transformers import PreTrainedModel

from tinydistill.baselines import constant_predictor, gap_closed, retention
from tinydistill.bench import time_model
from tinydistill.data.glue import GlueDataModule
from tinydistill.data.tasks import GlueTask
from tinydistill.modules.glue_eval import metric_prefix


def best_checkpoint_callback(cfg: DictConfig, task: GlueTask) -> ModelCheckpoint:
    """Keep the best epoch by the task's main dev metric (and the last, for resuming)."""
    return ModelCheckpoint(
        dirpath=Path(cfg.paths.output_dir) / "checkpoints",
        monitor=f"val/{task.metric}",
        mode="max",
        save_top_k=1,
        save_last=True,
        filename="best-{epoch}-{step}",
    )


def validate_best(
    trainer: L.Trainer, module: L.LightningModule, datamodule: L.LightningDataModule, checkpoint: ModelCheckpoint
) -> dict[str, float]:
    """Load the best checkpoint into `module` (if one was saved) and return its dev metrics."""
    best = checkpoint.best_model_path or None
    results = trainer.validate(module, datamodule=datamodule, ckpt_path=best, verbose=False)
    merged: dict[str, float] = {}
    for r in results:
        merged.update({k: float(v) for k, v in r.items()})
    return merged


def dev_metrics(task: GlueTask, logged: dict[str, float]) -> dict[str, dict[str, float]]:
    """`{"val/f1": .., "val_dev_mismatched/accuracy": ..}` -> `{"dev": {"f1": ..}, "dev_mismatched": {..}}`."""
    out: dict[str, dict[str, float]] = {}
    for idx, split in enumerate(task.dev_splits):
        prefix = metric_prefix(task, idx) + "/"
        out[split] = {k[len(prefix):]: v for k, v in logged.items() if k.startswith(prefix)}
    return out


def dev_latency(
    cfg: DictConfig, models: dict[str, PreTrainedModel], dm: GlueDataModule, batch_size: int | None = None
) -> dict[str, dict[str, float]]:
    """Dev-set inference time of each model on the same batches (batch size `stage.latency_batch_size`)."""
    dev = dm.splits[dm.dev_splits[0]].remove_columns(["labels"])
    loader = torch.utils.data.DataLoader(dev, batch_size=batch_size or cfg.stage.latency_batch_size,
                                         collate_fn=dm.collator)
    batches = list(loader)
    out = {}
    for name, model in models.items():
        seconds = time_model(model.cpu(), batches, repeats=cfg.stage.latency_repeats)
        out[name] = {"seconds": seconds, "ms_per_example": 1000 * seconds / len(dev)}
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


def add_yardsticks(cfg: DictConfig, task: GlueTask, result: dict[str, Any], teacher_dir: str | Path | None) -> None:
    """Put the teacher's dev metrics (from its metrics.json), the constant predictor's, retention and gap
    closed into `result` beside the run's own dev metrics."""
    result["constant"] = constant_predictor(task, cfg.paths.data_dir)
    if teacher_dir is None:
        return
    result["teacher"] = teacher_dev_metrics(teacher_dir)
    if result["teacher"]:
        result["retention"] = retention(task, result, result["teacher"])
        result["gap_closed"] = gap_closed(task, result, result["teacher"], result["constant"])
