"""Evaluation on GLUE dev splits, shared by every LightningModule that trains a task classifier."""

from __future__ import annotations

import lightning as L
import torch
from torch import nn
from transformers import PreTrainedModel

from tinydistill.data.tasks import Task
from tinydistill.metrics import build_metrics, predictions


def metric_prefix(task: Task, dataloader_idx: int) -> str:
    """`val` for the monitored split (the first of `task.val_splits`: the tune split, else the main dev split);
    `val_<split>` for the others (MNLI mismatched; dev when a tune split is monitored)."""
    return "val" if dataloader_idx == 0 else f"val_{task.val_splits[dataloader_idx]}"


class GlueEvalModule(L.LightningModule):
    """Base class: computes and logs the task's GLUE metrics of `self.classifier` on every dev split.

    The main metric of the first dev split is logged as `val/<metric>`; checkpointing monitors it.
    """

    def __init__(self, classifier: PreTrainedModel, task: Task) -> None:
        super().__init__()
        # from_pretrained returns the model in eval mode; Lightning keeps module modes as it
        # finds them, so switch dropout back on for training.
        self.classifier = classifier.train()
        self.task = task
        self.val_metrics = nn.ModuleList([build_metrics(task) for _ in task.val_splits])
        self._updated: set[int] = set()

    def task_logits(self, batch: dict) -> torch.Tensor:
        return self.classifier(**batch).logits

    def validation_step(self, batch: dict, batch_idx: int, dataloader_idx: int = 0) -> None:
        batch = dict(batch)
        labels = batch.pop("labels")
        logits = self.task_logits(batch)
        self.val_metrics[dataloader_idx].update(predictions(logits, self.task), labels)
        self._updated.add(dataloader_idx)

    def on_validation_epoch_end(self) -> None:
        for idx in sorted(self._updated):
            metrics = self.val_metrics[idx]
            prefix = metric_prefix(self.task, idx)
            # torchmetrics syncs the states across DDP ranks inside compute().
            values = metrics.compute()
            self.log_dict(
                {f"{prefix}/{k}": v for k, v in values.items()},
                prog_bar=idx == 0,
                add_dataloader_idx=False,
            )
            metrics.reset()
        self._updated.clear()
