"""What a model costs: its parameters, its encoder's forward FLOPs, and the wall time of passes over batches; and
this machine's matrix-product rate, the denominator of the benchmarks' FLOP floors."""

from __future__ import annotations

import time
from collections.abc import Callable, Sequence
from typing import Any

import torch


def layer_forward_flops(length: int, hidden: int, ffn: int) -> float:
    """FLOPs of one transformer layer's forward on one sequence of `length` tokens: the query, key, value and output
    projections, the feed-forward network, the attention scores and their weighted sum (2 per multiply-add)."""
    return 2 * (4 * length * hidden * hidden + 2 * length * hidden * ffn + 2 * length * length * hidden)


def encoder_forward_flops(lengths: Sequence[int], config: Any) -> float:
    """FLOPs of a BERT encoder's forward (`config`: num_hidden_layers, hidden_size, intermediate_size) over
    sequences of these lengths; embeddings and heads are left out."""
    return sum(config.num_hidden_layers * layer_forward_flops(n, config.hidden_size, config.intermediate_size)
               for n in lengths)


def matmul_gflops(size: int = 1024, repeats: int = 20, timings: int = 5) -> float:
    """This machine's float32 matrix-product rate at torch's current number of threads (best of `timings`): the
    denominator of the benchmarks' FLOP floors. A capacity, so the best timing counts: on a shared or
    frequency-scaled CPU a single short timing can read 25% low."""
    a, b = torch.randn(size, size), torch.randn(size, size)
    torch.mm(a, b)
    best = float("inf")
    for _ in range(timings):
        start = time.perf_counter()
        for _ in range(repeats):
            torch.mm(a, b)
        best = min(best, time.perf_counter() - start)
    return 2 * size ** 3 * repeats / best / 1e9


def matmul_rate_samples(before: float) -> dict[str, Any]:
    """The floor's rate from two measurements, one `before` the timed work and one now: the higher (the machine's
    capacity during the run), and both, so a reader sees how much the rate moved."""
    after = matmul_gflops()
    return {"gflops": max(before, after), "before_after": [round(before, 1), round(after, 1)]}


def count_parameters(model: torch.nn.Module) -> int:
    return sum(p.numel() for p in model.parameters())


def time_batches(run: Callable[[Any], Any], batches: Sequence[Any], warmup: int = 2, repeats: int = 3) -> float:
    """Best-of-`repeats` wall time (seconds) of `run` over every batch, after `warmup` batches."""
    for b in batches[:warmup]:
        run(b)
    best = float("inf")
    for _ in range(repeats):
        start = time.perf_counter()
        for b in batches:
            run(b)
        best = min(best, time.perf_counter() - start)
    return best


@torch.inference_mode()
def time_model(model: torch.nn.Module, batches: list[dict], warmup: int = 2, repeats: int = 3) -> float:
    """Best-of-`repeats` wall time (seconds) of one pass over `batches`, after `warmup` batches."""
    model.eval()
    return time_batches(lambda b: model(**b), batches, warmup, repeats)
