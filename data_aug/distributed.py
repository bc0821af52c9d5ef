"""Augmentation across processes: which chunks a process computes, and the few points where processes wait.

Launched by torchrun (or any launcher that sets RANK / WORLD_SIZE / MASTER_ADDR / MASTER_PORT)::

    torchrun --standalone --nproc-per-node 4 -m data_aug task=sst2 aug.num_threads=1      # CPU processes
    torchrun --standalone --nproc-per-node 4 -m data_aug task=sst2 aug.device=cuda       # one GPU each

Every chunk's rows depend only on (seed, example index, column), never on which process computed it, so
process r computes the chunks i with i % world_size == r that are not already done, rank 0 joins them, and
the file is byte-identical to a one-process run's, whatever the number of processes and however often a run
was interrupted and resumed (with any number of processes). Coordination goes over torch.distributed with
the gloo backend (barriers and one small broadcast; the chunks themselves pass through the output folder's
`.partial/`, which every process must see).
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from datetime import timedelta
from typing import Any

# A process waits at a barrier while the others finish their chunks (or rank 0 joins them): up to the
# whole run. torchrun stops the other processes when one fails, so a long timeout never hides a crash.
BARRIER_TIMEOUT = timedelta(days=2)


@dataclass(frozen=True)
class Coordinator:
    """This process's place among `world_size` augmentation processes (rank 0 joins and writes)."""

    rank: int = 0
    world_size: int = 1

    @property
    def is_main(self) -> bool:
        return self.rank == 0

    @property
    def distributed(self) -> bool:
        return self.world_size > 1

    def owns(self, chunk: int) -> bool:
        """Whether this process computes chunk number `chunk` (round robin: equal shares of similar chunks)."""
        return chunk % self.world_size == self.rank

    def barrier(self) -> None:
        if self.distributed:
            import torch.distributed as dist

            dist.barrier()

    def broadcast(self, value: Any) -> Any:
        """Rank 0's `value`, on every process (a decision all must share, e.g. whether to generate at all)."""
        if not self.distributed:
            return value
        import torch.distributed as dist

        box = [value if self.is_main else None]
        dist.broadcast_object_list(box, src=0)
        return box[0]

    def device(self, device: str) -> str:
        """`aug.device` for this process: a bare `cuda` becomes this process's GPU (LOCAL_RANK)."""
        if self.distributed and device == "cuda":
            return f"cuda:{int(os.environ.get('LOCAL_RANK', self.rank))}"
        return device


SINGLE = Coordinator()


def from_environment() -> Coordinator:
    """The coordinator torchrun's environment describes (one process without WORLD_SIZE > 1). Starts the gloo
    process group if it is not running yet."""
    world = int(os.environ.get("WORLD_SIZE", "1"))
    if world <= 1:
        return SINGLE
    import torch.distributed as dist

    if not dist.is_initialized():
        dist.init_process_group(backend="gloo", timeout=BARRIER_TIMEOUT)
    return Coordinator(rank=dist.get_rank(), world_size=dist.get_world_size())


def shutdown(coordinator: Coordinator) -> None:
    if coordinator.distributed:
        import torch.distributed as dist

        if dist.is_initialized():
            dist.destroy_process_group()
