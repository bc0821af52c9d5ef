"""Yardsticks a student is measured against: the constant predictor, retention and gap closed.

A student's dev score means little on its own. On MRPC, always answering "paraphrase" already scores
F1 0.812, which is 94.6% of a 0.858 teacher's F1: retention alone can read as success while the student
has barely left the majority class. So every result also carries the constant predictor's dev metrics
and the share of the constant-to-teacher gap the student closed:

    gap closed = (student - constant) / (teacher - constant)
"""

from __future__ import annotations

import math
import os
from collections import Counter
from typing import Any

import torch

from tinydistill.data.glue import load_examples
from tinydistill.data.tasks import Task
from tinydistill.metrics import compute_metrics


def constant_prediction(task: Task, train_labels: list) -> float | int:
    """The majority training label (ties: the smallest id), or the mean training score for regression."""
    if task.is_regression:
        return float(sum(train_labels) / len(train_labels))
    counts = Counter(int(y) for y in train_labels)
    return max(sorted(counts), key=lambda label: counts[label])


def constant_metrics(task: Task, prediction: float | int, dev_labels: list) -> dict[str, float]:
    """Dev metrics of predicting `prediction` for every example. A constant has no correlation with
    anything (Pearson, Spearman and Matthews are undefined, NaN in torchmetrics): they count as 0."""
    labels = torch.tensor(dev_labels, dtype=torch.float if task.is_regression else torch.long)
    preds = torch.full_like(labels, prediction)
    out = compute_metrics(task, preds, labels)
    return {k: 0.0 if math.isnan(v) else v for k, v in out.items()}


def constant_predictor(task: Task, data_dir: str | os.PathLike | None) -> dict[str, Any]:
    """The constant predictor's prediction and its metrics on every dev split (and the tune split, with
    `task.tune_split`), from the task's gold training labels (never an augmented file: its copies would weight
    some examples twice; never the tune rows)."""
    prediction = constant_prediction(task, load_examples(task, "train", data_dir)["label"])
    out: dict[str, Any] = {
        "prediction": prediction if task.is_regression else task.label_names[prediction],
    }
    for split in task.val_splits:
        out[split] = constant_metrics(task, prediction, load_examples(task, split, data_dir)["label"])
    return out


def retention(task: Task, metrics: dict[str, Any], teacher_metrics: dict[str, Any]) -> dict[str, float]:
    """Main dev split's metrics as a fraction of the teacher's."""
    split = task.dev_splits[0]
    main = teacher_metrics.get(split, {})
    return {k: v / main[k] for k, v in metrics.get(split, {}).items() if main.get(k)}


def gap_closed(
    task: Task, metrics: dict[str, Any], teacher_metrics: dict[str, Any], constant: dict[str, Any]
) -> dict[str, float]:
    """(student - constant) / (teacher - constant) on the main dev split, per metric: 1 is the teacher,
    0 the constant predictor, below 0 worse than it. Metrics where the teacher does no better than the
    constant are left out (the ratio would mean nothing)."""
    split = task.dev_splits[0]
    student, teacher, const = metrics.get(split, {}), teacher_metrics.get(split, {}), constant.get(split, {})
    return {
        k: (v - const[k]) / (teacher[k] - const[k])
        for k, v in student.items()
        if k in teacher and k in const and teacher[k] - const[k] > 1e-12
    }
