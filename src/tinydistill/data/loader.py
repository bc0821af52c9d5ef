"""The DataLoader every DataModule builds: dynamic padding, optional length-grouped batches."""

from __future__ import annotations

from collections.abc import Callable

from datasets import Dataset
from torch.utils.data import DataLoader
from transformers.trainer_pt_utils import LengthGroupedSampler


def make_loader(
    ds: Dataset,
    batch_size: int,
    shuffle: bool,
    collate_fn: Callable,
    num_workers: int = 0,
    group_by_length: bool = False,
) -> DataLoader:
    """`group_by_length` (training only): shuffled mega-batches sorted by length, as transformers'
    `group_by_length`: little padding, still random batches."""
    sampler = None
    if shuffle and group_by_length:
        lengths = [len(ids) for ids in ds["input_ids"]]
        sampler, shuffle = LengthGroupedSampler(batch_size, lengths=lengths), False
    return DataLoader(
        ds,
        batch_size=batch_size,
        shuffle=shuffle,
        sampler=sampler,
        collate_fn=collate_fn,
        num_workers=num_workers,
        persistent_workers=num_workers > 0,
    )
