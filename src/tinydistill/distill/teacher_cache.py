"""The frozen teacher's intermediate-layer targets, kept per batch for the epochs that draw the batch again.

In phase 1 of task distillation an eval-mode teacher gives the same hidden states and attention scores for the same
batch every epoch, and its forward pass is most of a step's time. With batches whose make-up stays the same from
epoch to epoch (`SeededSampler(fixed_batches=True)`: the first epoch's batches, in a new order each epoch), every
epoch after the first can read those targets instead of running the teacher. Entries are keyed by the batch's
example indices in order, so a batch that differs in any example (or only in order) is a miss and runs the teacher:
a hit returns exactly what the teacher computed for that very input. Only the tensors the losses read are kept
(`Captured.keep`), on the CPU, up to `max_bytes`; once full, new batches are not kept and run the teacher every
epoch. Nothing is saved in checkpoints: a resumed run fills the cache again as it goes.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable

from torch import Tensor

from tinydistill.models.capture import Captured

GIB = 1024**3


class TeacherCache:
    """`get_or_compute(idx, compute)`: the kept targets of the batch `idx` names, or `compute()`'s, kept if they fit."""

    def __init__(self, hidden: Iterable[int], attention: Iterable[int], max_bytes: float) -> None:
        self.hidden, self.attention = set(hidden), set(attention)
        self.max_bytes = float(max_bytes)
        self.entries: dict[tuple[int, ...], Captured] = {}
        self.nbytes = 0
        self.hits = self.misses = self.kept = self.not_kept = 0

    def get_or_compute(self, idx: Tensor, compute: Callable[[], Captured]) -> Captured:
        key = tuple(int(i) for i in idx.tolist())
        device = idx.device
        kept = self.entries.get(key)
        if kept is not None:
            self.hits += 1
            return kept.to(device)
        self.misses += 1
        fresh = compute()
        slim = fresh.keep(self.hidden, self.attention).to("cpu")
        size = slim.nbytes
        if self.nbytes + size <= self.max_bytes:
            self.entries[key] = slim
            self.nbytes += size
            self.kept += 1
        else:
            self.not_kept += 1
        return fresh

    def clear(self) -> None:
        """Drop the kept targets (the counts stay, for `summary`): once the phase ends nothing reads them."""
        self.entries.clear()

    def summary(self) -> dict[str, float | int]:
        """For phase.json: how many batches were read from the cache and how much memory it held."""
        return {"hits": self.hits, "misses": self.misses, "batches_kept": self.kept,
                "batches_not_kept": self.not_kept, "gib": round(self.nbytes / GIB, 3),
                "max_gib": round(self.max_bytes / GIB, 3)}


def teacher_cache_bytes(max_gib: float | None) -> float:
    """`stage.intermediate.teacher_cache_max_gb` (GiB) in bytes; null means no limit."""
    return float("inf") if max_gib is None else float(max_gib) * GIB


__all__ = ["TeacherCache", "teacher_cache_bytes"]
