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
from collections.abc import Iterator
from pathlib import Path

import numpy as np
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
from tinydistill.hashing import sha256_file
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
    """Identifies (teacher weights, tokenised examples): the weights' content (every weights file's sha256, so a
    teacher retrained in place, same path and size, is never served its predecessor's logits) and the examples'
    `datasets` fingerprint. The cache is valid while both are unchanged."""
    h = hashlib.sha256()
    folder = Path(teacher_dir)
    weights = sorted([*folder.glob("model*.safetensors"), *folder.glob("pytorch_model*.bin")])
    for path in weights:
        h.update(f"{path.name}:{sha256_file(path)}".encode())
    if not weights:  # not a folder of weights (e.g. a hub name): its name
        h.update(str(teacher_dir).encode())
    h.update(dataset._fingerprint.encode())
    return h.hexdigest()[:16]


#: A full pass persists its logits every this many batches (chunks of the length-sorted order: whole batches, so a
#: resumed pass runs exactly the batches an uninterrupted one runs and ends with the same bytes).
CHUNK_BATCHES = 64


def _length_order(dataset: Dataset) -> list[int]:
    """Row indices sorted by length (stable: equal lengths keep their order), so each batch needs little padding."""
    lengths = [len(ids) for ids in dataset["input_ids"]]
    return sorted(range(len(dataset)), key=lengths.__getitem__)


@torch.inference_mode()
def _logit_batches(teacher: PreTrainedModel, dataset: Dataset, tokenizer: PreTrainedTokenizerBase,
                   batch_size: int, progress: tqdm | None = None) -> Iterator[tuple[list[int], Tensor]]:
    """(rows, logits) of `teacher` (eval mode) for `dataset`, batch by batch in the length-sorted order."""
    teacher.eval()
    columns = [c for c in ("input_ids", "attention_mask", "token_type_ids") if c in dataset.column_names]
    order = _length_order(dataset)
    ordered = dataset.select_columns(columns).select(order)
    loader = DataLoader(ordered, batch_size=batch_size, collate_fn=DataCollatorWithPadding(tokenizer))
    pos = 0
    for batch in loader:
        logits = teacher(**batch).logits.float()
        yield order[pos : pos + logits.shape[0]], logits
        pos += logits.shape[0]
        if progress is not None:
            progress.update(1)


def compute_teacher_logits(
    teacher: PreTrainedModel,
    dataset: Dataset,
    tokenizer: PreTrainedTokenizerBase,
    batch_size: int = 128,
) -> Tensor:
    """Logits of `teacher` (eval mode) for every example of `dataset`, in dataset order: (N, C)."""
    out = torch.empty(len(dataset), teacher.config.num_labels)
    with tqdm(total=-(-len(dataset) // batch_size), desc="Teacher logits", unit="batch") as bar:
        for rows, logits in _logit_batches(teacher, dataset, tokenizer, batch_size, bar):
            out[torch.tensor(rows)] = logits
    return out


LOGIT_CACHE_MODES = ("full", "seen")
#: Global torch random draws a full logit pass makes (what the single-pass version's DataLoader iteration drew).
PASS_SEED_DRAWS = 2


def logit_cache_path(cache_dir: str | os.PathLike, teacher_dir: str, dataset: Dataset) -> Path:
    """Where the teacher's logits for (`teacher_dir`, `dataset`) are cached: a float32 (N, C) `.npy` file, NaN in
    the rows not computed yet, read memory-mapped and never unpickled."""
    return Path(cache_dir) / "teacher_logits" / f"{_fingerprint(teacher_dir, dataset)}.npy"


def unknown_rows(logits: Tensor) -> Tensor:
    """Rows of a logit cache not computed yet (NaN: a partial cache, see `cached_teacher_logits`)."""
    return torch.isnan(logits).any(dim=1)


def _open_cache(path: Path, n: int, mmap_mode: str, warn: bool = True) -> np.ndarray | None:
    """The cached (n, C) float32 array at `path`, memory-mapped, or None when missing, unreadable or of another
    shape. allow_pickle=False: a tampered cache can hold no code to run."""
    if not path.is_file():
        return None
    try:
        logits = np.load(path, mmap_mode=mmap_mode, allow_pickle=False)
        if not isinstance(logits, np.ndarray):  # a zip (.npz, or torch.save's format) holds no array of ours
            raise ValueError(f"not a .npy array ({type(logits).__name__})")
    except Exception as e:  # truncated or foreign file: computed again
        if warn:
            log.warning("teacher-logit cache %s is unreadable (%s: %s): computing the logits again",
                        path, type(e).__name__, e)
        return None
    ok = logits.ndim == 2 and logits.shape[0] == n and logits.dtype == np.float32
    return logits if ok else None


def _read_cache(path: Path, n: int) -> Tensor | None:
    """The cached (n, C) logits at `path`, memory-mapped copy-on-write (rows are read from disk as they are
    indexed; writing to the tensor never changes the file), or None (see `_open_cache`)."""
    logits = _open_cache(path, n, "c")
    return None if logits is None else torch.from_numpy(logits)


def _write_cache(path: Path, logits: Tensor) -> None:
    with atomic_file(path) as tmp, open(tmp, "wb") as f:
        np.save(f, logits.numpy(), allow_pickle=False)


def save_logit_cache(path: str | os.PathLike, logits: Tensor) -> Tensor:
    """Write a (possibly partial) logit cache, keeping the rows another run wrote meanwhile that `logits` lacks;
    atomic (`atomic_file`, which also removes what killed writers of this key left, never a live writer's).
    Returns what was written."""
    path = Path(path)
    logits = logits.float().clone()
    on_disk = _read_cache(path, logits.shape[0])
    if on_disk is not None and on_disk.shape == logits.shape:
        missing = unknown_rows(logits)
        logits[missing] = on_disk[missing]
    _write_cache(path, logits)
    return logits


def _store_rows(path: Path, shape: tuple[int, int], rows: list[int], values: Tensor) -> None:
    """Write `values` into `rows` of the cache file in place (created NaN-filled if absent), flushed: what a full
    pass has computed survives its interruption."""
    cache = _open_cache(path, shape[0], "r+", warn=False)
    if cache is None or cache.shape != shape:
        _write_cache(path, torch.full(shape, float("nan")))
        cache = _open_cache(path, shape[0], "r+")
    cache[rows] = values.numpy()
    cache.flush()
    del cache


def _complete(teacher: PreTrainedModel, dataset: Dataset, tokenizer: PreTrainedTokenizerBase, path: Path,
              missing: list[int], batch_size: int) -> None:
    """The full pass over the `missing` rows: their length-sorted order cut into chunks of CHUNK_BATCHES batches,
    each chunk's logits stored as soon as it is done. The rows an interrupted pass left are a suffix of that order,
    so resuming runs the same batches and ends with the same bytes."""
    shape = (len(dataset), teacher.config.num_labels)
    todo = dataset.select(missing)
    chunk: list[tuple[list[int], Tensor]] = []
    total = -(-len(dataset) // batch_size)
    with torch.random.fork_rng(devices=[]), tqdm(total=total, initial=total - -(-len(missing) // batch_size),
                                                 desc="Teacher logits", unit="batch") as bar:
        for rows, logits in _logit_batches(teacher, todo, tokenizer, batch_size, bar):
            chunk.append(([missing[r] for r in rows], logits))
            if len(chunk) == CHUNK_BATCHES:
                _store_rows(path, shape, sum((r for r, _ in chunk), []), torch.cat([v for _, v in chunk]))
                chunk = []
        if chunk:
            _store_rows(path, shape, sum((r for r, _ in chunk), []), torch.cat([v for _, v in chunk]))
    # The global random state after the pass is the one the single-pass version left (two DataLoader seed draws),
    # however many chunks ran, so a run that computes its logits trains exactly as runs before the chunked cache did.
    for _ in range(PASS_SEED_DRAWS):
        torch.empty((), dtype=torch.int64).random_()


def cached_teacher_logits(
    teacher: PreTrainedModel,
    teacher_dir: str,
    dataset: Dataset,
    tokenizer: PreTrainedTokenizerBase,
    cache_dir: str | os.PathLike,
    batch_size: int = 128,
    mode: str = "full",
) -> Tensor:
    """The teacher's logits for `dataset`, stored on disk so every run on the same data and teacher reuses them,
    returned memory-mapped (a large set is never read into memory at once).

    `mode` (`stage.pred.teacher_logits`): ``full`` returns every row, computing the rows the cache lacks in one
    length-sorted pass that stores each chunk as it goes (`_complete`: an interrupted pass resumes where it
    stopped); ``seen`` computes nothing and returns what the cache holds, NaN for the rows it lacks, for the
    prediction phase to fill as its batches draw them (`TaskDistillModule`) and to save with `save_logit_cache`. A
    cache written by ``seen`` runs is partial; a ``full`` run completes it."""
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
    if (~missing).any():
        log.info("teacher logits: %d of %d rows cached in %s; computing the rest", int((~missing).sum()),
                 len(dataset), path)
    _complete(teacher, dataset, tokenizer, path, missing.nonzero().flatten().tolist(), batch_size)
    return _read_cache(path, len(dataset))
