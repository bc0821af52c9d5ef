"""The training order: shuffled (optionally length-grouped) from the seed and the epoch alone, resumable mid-epoch.

`torch`'s `RandomSampler` and transformers' `LengthGroupedSampler` draw each epoch's order from the global random
state at the moment the epoch's iterator starts, so a resumed run (whose global state has been restored to the
checkpoint's, not to the epoch start's) would draw another order. Here the order of epoch `e` is a pure function of
`(seed, e)`: Lightning calls `set_epoch` before every epoch (its `DistributedSamplerWrapper` forwards it under
DDP), and the sampler is `Stateful` (`state_dict`/`load_state_dict`), so a `StatefulDataLoader` puts its epoch and
position into Lightning's checkpoints and a resumed run continues with the next example of the same order.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from typing import Any

import numpy as np
import torch
from torch.utils.data import Sampler
from transformers.trainer_pt_utils import get_length_grouped_indices


CHUNK = 65536  # indices converted to Python ints at a time


class SeededSampler(Sampler[int]):
    """Indices `0..len(lengths)-1` in an order drawn from `(seed, epoch)`.

    `group_by_length`: transformers' length grouping (random mega-batches of up to 50 batches, each sorted by
    length, the longest batch first), with this sampler's generator instead of the global one. Otherwise a plain
    random permutation.

    `fixed_batches`: every epoch after the first reuses the first epoch's batches (the same examples in the same
    order within each batch), in an order of its own drawn from `(seed, epoch)`; a last, smaller batch stays last,
    so a DataLoader with the same `batch_size` cuts the same batches. For the teacher cache of phase 1
    (`tinydistill.distill.teacher_cache`). The first epoch is the same as without it.

    `num_replicas`, `rank`: under DDP, this process's share of every epoch's order, as torch's `DistributedSampler`
    cuts it (the order padded with its own first indices to a multiple of `num_replicas`, then every
    `num_replicas`-th index from `rank`), without Lightning's wrapper, which lists the whole order in Python per
    epoch. The state is the same on every rank (the shares are equally long), so rank 0's checkpoint resumes all.
    """

    def __init__(self, lengths: Sequence[int], batch_size: int, seed: int, group_by_length: bool = False,
                 fixed_batches: bool = False, num_replicas: int = 1, rank: int = 0) -> None:
        self.lengths = np.asarray(lengths, dtype=np.int64)  # 8 bytes an instance, not a Python list
        self.batch_size = batch_size
        self.seed = int(seed)
        self.group_by_length = group_by_length
        self.fixed_batches = fixed_batches
        self.num_replicas = int(num_replicas)
        self.rank = int(rank)
        self.epoch = 0
        self.yielded = 0  # indices of the current epoch handed out so far
        self._resume: tuple[int, int] | None = None  # (epoch, position) loaded from a checkpoint

    def __len__(self) -> int:
        return -(-len(self.lengths) // self.num_replicas)

    def share(self, order: np.ndarray) -> np.ndarray:
        """This rank's indices of an epoch's `order` (all of them without DDP)."""
        if self.num_replicas == 1:
            return order
        total = len(self) * self.num_replicas
        if total > len(order):
            order = np.concatenate([order, order[: total - len(order)]])
        return order[self.rank : total : self.num_replicas]

    def set_epoch(self, epoch: int) -> None:
        self.epoch = int(epoch)

    def order(self, epoch: int) -> np.ndarray:
        """Epoch `epoch`'s order: the same for the same seed, whatever ran before."""
        if self.fixed_batches and epoch > 0:
            first = self._draw(0).tolist()
            full = len(first) // self.batch_size * self.batch_size
            batches = [first[i:i + self.batch_size] for i in range(0, full, self.batch_size)]
            shuffle = torch.randperm(len(batches), generator=self._generator(epoch)).tolist()
            return np.asarray([i for b in shuffle for i in batches[b]] + first[full:], dtype=np.int64)
        return self._draw(epoch)

    def _generator(self, epoch: int) -> torch.Generator:
        # SeedSequence mixes both numbers: (seed 1, epoch 2) and (seed 2, epoch 1) get unrelated orders.
        state = np.random.SeedSequence([self.seed & 0xFFFFFFFF, int(epoch)]).generate_state(1, np.uint64)[0]
        return torch.Generator().manual_seed(int(state))

    def _draw(self, epoch: int) -> np.ndarray:
        generator = self._generator(epoch)
        if self.group_by_length:
            return np.asarray(get_length_grouped_indices(self.lengths, self.batch_size, generator=generator),
                              dtype=np.int64)
        return torch.randperm(len(self.lengths), generator=generator).numpy()

    def __iter__(self) -> Iterator[int]:
        # A generator: nothing runs before the first index is asked for, i.e. after Lightning's set_epoch (Lightning
        # and StatefulDataLoader create iterators before that and throw some away unused).
        start = 0
        if self._resume is not None and self._resume[0] == self.epoch:
            start = self._resume[1]
        self._resume = None
        order = self.share(self.order(self.epoch))
        self.yielded = start
        for first in range(start, len(order), CHUNK):  # a chunk of Python ints at a time, not the whole epoch's
            for index in order[first : first + CHUNK].tolist():
                self.yielded += 1
                yield index

    def state_dict(self) -> dict[str, Any]:
        return {"epoch": self.epoch, "yielded": self.yielded}

    def load_state_dict(self, state_dict: dict[str, Any]) -> None:
        self.epoch = int(state_dict["epoch"])
        self.yielded = int(state_dict["yielded"])
        self._resume = (self.epoch, self.yielded)
