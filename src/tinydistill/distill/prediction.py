"""TinyBERT's prediction-layer distillation, and the teacher logits it needs, computed once.

Classification: soft cross-entropy between student and teacher logits at temperature t
(`losses.soft_cross_entropy`). Regression (STS-B): MSE, against the teacher's prediction
(`regression_target="teacher"`, default: distillation, as the paper's L_pred) or the gold score
(`"gold"`, as the reference `task_distill.py`, which uses the label for regression tasks).
"""

from __future__ import annotations

import hashlib
import logging
import os
from pathlib import Path

import torch
import torch.nn.functional as F
from datasets import Dataset
from torch import Tensor
from torch.utils.data import DataLoader
from tqdm.auto import tqdm
from transformers import DataCollatorWithPadding, PreTrainedModel, PreTrainedTokenizerBase

from tinydistill.atomic import atomic_file
from tinydistill.data.tasks import GlueTask
from tinydistill.errors import ConfigError
from tinydistill.losses import soft_cross_entropy

log = logging.getLogger(__name__)

REGRESSION_TARGETS = ("teacher", "gold")


def prediction_loss(
    student_logits: Tensor,
    teacher_logits: Tensor,
    labels: Tensor | None,
    task: GlueTask,
    temperature: float = 1.0,
    regression_target: str = "teacher",
    reduction: str = "mean",
) -> Tensor:
    """The prediction-layer loss for one batch (see the module docstring)."""
    if not task.is_regression:
        return soft_cross_entropy(student_logits, teacher_logits, temperature, reduction=reduction)
    if regression_target not in REGRESSION_TARGETS:
        raise ConfigError(f"distill.regression_target={regression_target!r} must be one of {REGRESSION_TARGETS}")
    target = teacher_logits if regression_target == "teacher" else labels
    if target is None:
        raise ValueError("regression_target='gold' needs the batch's labels")
    return F.mse_loss(student_logits.view(-1), target.view(-1).to(student_logits.dtype))


def _fingerprint(teacher_dir: str, dataset: Dataset) -> str:
    """Identifies (teacher weights, tokenised examples): the cache is valid while both are unchanged."""
    h = hashlib.sha256()
    weights = Path(teacher_dir) / "model.safetensors"
    h.update(str(weights.stat().st_mtime_ns if weights.exists() else teacher_dir).encode())
    h.update(str(weights.stat().st_size if weights.exists() else "").encode())
    h.update(str(Path(teacher_dir).resolve()).encode())
    h.update(dataset._fingerprint.encode())
    return h.hexdigest()[:16]


@torch.inference_mode()
def compute_teacher_logits(
    teacher: PreTrainedModel,
    dataset: Dataset,
    tokenizer: PreTrainedTokenizerBase,
    batch_size: int = 128,
) -> Tensor:
    """Logits of `teacher` (eval mode) for every example of `dataset`, in dataset order: (N, C)."""
    teacher.eval()
    columns = [c for c in ("input_ids", "attention_mask", "token_type_ids") if c in dataset.column_names]
    # Sort by length so each batch needs little padding; scatter back to dataset order.
    lengths = [len(ids) for ids in dataset["input_ids"]]
    order = sorted(range(len(dataset)), key=lengths.__getitem__)
    ordered = dataset.select_columns(columns).select(order)
    loader = DataLoader(ordered, batch_size=batch_size, collate_fn=DataCollatorWithPadding(tokenizer))
    out = torch.empty(len(dataset), teacher.config.num_labels)
    pos = 0
    for batch in tqdm(loader, desc="Teacher logits", unit="batch"):
        logits = teacher(**batch).logits.float()
        idx = torch.tensor(order[pos : pos + logits.shape[0]])
        out[idx] = logits
        pos += logits.shape[0]
    return out


def cached_teacher_logits(
    teacher: PreTrainedModel,
    teacher_dir: str,
    dataset: Dataset,
    tokenizer: PreTrainedTokenizerBase,
    cache_dir: str | os.PathLike,
    batch_size: int = 128,
) -> Tensor:
    """`compute_teacher_logits`, stored on disk so every run on the same data and teacher reuses it. Written to
    `<key>.pt.tmp-<host>-<pid>-<random>` and renamed into place; stale temporaries of the same key are removed first
    (`tinydistill.atomic.remove_stale_temporary_files`)."""
    path = Path(cache_dir) / "teacher_logits" / f"{_fingerprint(teacher_dir, dataset)}.pt"
    if path.is_file():
        try:
            # weights_only=True: a tensor needs no unpickling of code, so a tampered cache cannot run any
            logits = torch.load(path, map_location="cpu", weights_only=True)
        except Exception as e:  # truncated or foreign file: computed again below
            log.warning("teacher-logit cache %s is unreadable (%s: %s): computing the logits again",
                        path, type(e).__name__, e)
            logits = None
        if isinstance(logits, torch.Tensor) and logits.ndim == 2 and logits.shape[0] == len(dataset):
            log.info("teacher logits from %s", path)
            return logits
    logits = compute_teacher_logits(teacher, dataset, tokenizer, batch_size)
    # atomic_file also removes what killed writers of this key left (a whole logits tensor each), never a live
    # writer's (atomic.py's rule).
    with atomic_file(path) as tmp:
        torch.save(logits, tmp)
    return logits
