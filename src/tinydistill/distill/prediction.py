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
from transformers import (
    DataCollatorWithPadding,
    PreTrainedModel,
    PreTrainedTokenizerBase,
)

from tinydistill.atomic import atomic_file
from tinydistill.data.tasks import Task
from tinydistill.errors import ConfigError
from tinydistill.losses import soft_cross_entropy

log = logging.getLogger(__name__)

REGRESSION_TARGETS = ("teacher", "gold")


def prediction_loss(
    student_logits: Tensor,
    teacher_logits: Tensor,
    labels: Tensor | None,
    task: Task,
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


LOGIT_CACHE_MODES = ("full", "seen")


def logit_cache_path(cache_dir: str | os.PathLike, teacher_dir: str, dataset: Dataset) -> Path:
    """Where the teacher's logits for (`teacher_dir`, `dataset`) are cached."""
    return Path(cache_dir) / "teacher_logits" / f"{_fingerprint(teacher_dir, dataset)}.pt"


def unknown_rows(logits: Tensor) -> Tensor:
    """Rows of a logit cache not computed yet (NaN: a partial cache, see `cached_teacher_logits`)."""
    return torch.isnan(logits).any(dim=1)


def _read_cache(path: Path, n: int) -> Tensor | None:
    """The cached (n, C) tensor at `path`, or None when missing, unreadable or of another shape."""
    if not path.is_file():
        return None
    try:
        # weights_only=True: a tensor needs no unpickling of code, so a tampered cache cannot run any
        logits = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as e:  # truncated or foreign file: computed again
        log.warning("teacher-logit cache %s is unreadable (%s: %s): computing the logits again",
                    path, type(e).__name__, e)
        return None
    if isinstance(logits, torch.Tensor) and logits.ndim == 2 and logits.shape[0] == n:
        return logits.float()
    return None


def save_logit_cache(path: str | os.PathLike, logits: Tensor) -> Tensor:
    """Write a (possibly partial) logit cache, keeping the rows another run wrote meanwhile that `logits` lacks;
    atomic (`atomic_file`, which also removes what killed writers of this key left, never a live writer's).
    Returns what was written."""
    path = Path(path)
    on_disk = _read_cache(path, logits.shape[0])
    if on_disk is not None and on_disk.shape == logits.shape:
        missing = unknown_rows(logits)
        logits = logits.clone()
        logits[missing] = on_disk[missing]
    with atomic_file(path) as tmp:
        torch.save(logits, tmp)
    return logits


def cached_teacher_logits(
    teacher: PreTrainedModel,
    teacher_dir: str,
    dataset: Dataset,
    tokenizer: PreTrainedTokenizerBase,
    cache_dir: str | os.PathLike,
    batch_size: int = 128,
    mode: str = "full",
) -> Tensor:
    """The teacher's logits for `dataset`, stored on disk so every run on the same data and teacher reuses them.

    `mode` (`stage.pred.teacher_logits`): ``full`` returns every row, computing (in one length-sorted pass,
    `compute_teacher_logits`) the rows the cache lacks and writing the file; ``seen`` computes nothing and returns
    what the cache holds, NaN for the rows it lacks, for the prediction phase to fill as its batches draw them
    (`TaskDistillModule`) and to save with `save_logit_cache`. A cache written by ``seen`` runs is partial; a
    ``full`` run completes it."""
    if mode not in LOGIT_CACHE_MODES:
        raise ConfigError(f"stage.pred.teacher_logits={mode!r} must be one of {', '.join(LOGIT_CACHE_MODES)}")
    path = logit_cache_path(cache_dir, teacher_dir, dataset)
    logits = _read_cache(path, len(dataset))
    if logits is not None and logits.shape[1] != teacher.config.num_labels:
        logits = None
    if logits is None:
        logits = torch.full((len(dataset), teacher.config.num_labels), float("nan"))
    missing = unknown_rows(logits)
    if mode == "seen" or not missing.any():
        log.info("teacher logits from %s (%d of %d rows)", path, int((~missing).sum()), len(dataset))
        return logits
    rows = missing.nonzero().flatten()
    logits[rows] = compute_teacher_logits(teacher, dataset.select(rows.tolist()), tokenizer, batch_size)
    return save_logit_cache(path, logits)
