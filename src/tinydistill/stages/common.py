"""Pieces shared by the stages that train a task classifier."""

from __future__ import annotations

from pathlib import Path

import lightning as L
from lightning.pytorch.callbacks import ModelCheckpoint
from omegaconf import DictConfig

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
