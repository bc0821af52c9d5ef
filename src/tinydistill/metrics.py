"""Task metrics, the GLUE ones exactly as GLUE defines them, on top of torchmetrics.

accuracy; F1 of the positive class (MRPC, QQP); F1 averaged over classes (`macro_f1`, a user's task); Matthews
correlation (CoLA; multi-class for more than two classes); Pearson and Spearman correlation (STS-B).
Classification metrics take predicted class ids, regression metrics take predicted scores.
"""

from __future__ import annotations

import torch
from torchmetrics import Metric, MetricCollection
from torchmetrics.classification import (
    BinaryF1Score,
    BinaryMatthewsCorrCoef,
    MulticlassAccuracy,
    MulticlassF1Score,
    MulticlassMatthewsCorrCoef,
)
from torchmetrics.regression import PearsonCorrCoef, SpearmanCorrCoef

from tinydistill.data.tasks import Task


class GlueMatthewsCorrCoef(BinaryMatthewsCorrCoef):
    """Matthews correlation as GLUE computes it (scikit-learn): 0 when the predictions or the labels are all of
    one class. torchmetrics smooths that case with an epsilon instead, which gives a constant predictor a
    non-zero score (0.026 on CoLA dev)."""

    def compute(self) -> torch.Tensor:
        tn, fp, fn, tp = self.confmat.reshape(-1)
        if 0 in (tp + fp, tn + fn, tp + fn, tn + fp):
            return torch.tensor(0.0, device=self.confmat.device)
        return super().compute()


def _metric(name: str, task: Task) -> Metric:
    if name == "accuracy":
        # micro average = plain accuracy (fraction of correct predictions)
        return MulticlassAccuracy(num_classes=task.num_labels, average="micro")
    if name == "macro_f1":
        return MulticlassF1Score(num_classes=task.num_labels, average="macro")
    if name == "f1":
        return BinaryF1Score()
    if name == "mcc":
        return GlueMatthewsCorrCoef() if task.num_labels == 2 else MulticlassMatthewsCorrCoef(task.num_labels)
    if name == "pearson":
        return PearsonCorrCoef()
    if name == "spearman":
        return SpearmanCorrCoef()
    raise ValueError(f"unknown metric {name!r}")


def build_metrics(task: Task) -> MetricCollection:
    """A torchmetrics collection of the task's metrics (synchronised across DDP ranks)."""
    return MetricCollection({name: _metric(name, task) for name in task.metrics})


def predictions(logits: torch.Tensor, task: Task) -> torch.Tensor:
    """Class ids (argmax) for classification, the single output for regression."""
    if task.is_regression:
        return logits.view(-1).float()
    return logits.argmax(dim=-1)


def compute_metrics(task: Task, preds: torch.Tensor, labels: torch.Tensor) -> dict[str, float]:
    """One-shot metrics on whole-split predictions."""
    metrics = build_metrics(task)
    metrics.update(preds, labels)
    return {k: float(v) for k, v in metrics.compute().items()}
