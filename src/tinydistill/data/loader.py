"""The DataLoader every DataModule builds: dynamic padding, optional length-grouped batches, resumable mid-epoch.

A `torchdata` `StatefulDataLoader`: Lightning saves its position (and the `SeededSampler`'s epoch) in every
checkpoint and restores it on resume, so a run killed mid-epoch continues with the next batch of the same order.
Loaders draw no number from the global random state: the order comes from `(seed, epoch)` and the workers' seeds
from the loader's own generator. Collate functions must not draw random numbers either (a worker's random state is
not in checkpoints); random masking runs in the training process after the batch transfer
(`CorpusDataModule.on_after_batch_transfer`).
"""

from __future__ import annotations

import warnings
from collections.abc import Callable

import numpy as np
import torch
from datasets import Dataset
from torchdata.stateful_dataloader import StatefulDataLoader

from tinydistill.data.sampler import SeededSampler


def make_loader(
    ds: Dataset,
    batch_size: int,
    shuffle: bool,
    collate_fn: Callable,
    num_workers: int = 0,
    group_by_length: bool = False,
    seed: int = 0,
    fixed_batches: bool = False,
    num_replicas: int = 1,
    rank: int = 0,
) -> StatefulDataLoader:
    """`shuffle` (training): a new order every epoch, drawn from `seed` and the epoch; `group_by_length`:
    shuffled mega-batches sorted by length, as transformers' `group_by_length`: little padding, still random
    batches; `fixed_batches`: the first epoch's batches in every epoch, in a new order (see `SeededSampler`);
    `num_replicas`, `rank`: this DDP process's share of the order (the stages that pass them turn Lightning's
    sampler replacement off)."""
    sampler = None
    if shuffle:
        if not group_by_length:
            lengths = np.zeros(len(ds), dtype=np.int64)
        elif "length" in ds.column_names:  # a packed corpus: read one integer column, not every instance
            lengths = ds.with_format("numpy")["length"]
        else:
            lengths = [len(ids) for ids in ds["input_ids"]]
        sampler = SeededSampler(lengths, batch_size, seed, group_by_length=group_by_length,
                                fixed_batches=fixed_batches, num_replicas=num_replicas, rank=rank)
    with warnings.catch_warnings():
        # torchdata 0.11 calls torch.set_vital, deprecated in torch 2.13: a warning about torchdata, not about the run
        warnings.filterwarnings("ignore", message="'set_vital' is deprecated")
        return StatefulDataLoader(
            ds,
            batch_size=batch_size,
            sampler=sampler,
            collate_fn=collate_fn,
            num_workers=num_workers,
            persistent_workers=num_workers > 0,
            # Creating an iterator draws the workers' base seed: from this generator, not the global random state
            # (which holds dropout's and masking's numbers and is what checkpoints restore).
            generator=torch.Generator().manual_seed(seed),
        )
