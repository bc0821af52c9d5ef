"""The benchmarks' FLOP floor (tinydistill.bench): per-layer and per-encoder counts against hand computations."""

from __future__ import annotations

import math
from types import SimpleNamespace

from tinydistill.bench import encoder_forward_flops, layer_forward_flops, matmul_gflops


def test_layer_flops_hand_computed():
    # length 3, hidden 2, ffn 4: projections 4*3*2*2 = 48, feed-forward 2*3*2*4 = 48, attention 2*3*3*2 = 36
    # multiply-adds; 2 FLOPs each
    assert layer_forward_flops(3, 2, 4) == 2 * (48 + 48 + 36)


def test_encoder_flops_sum_layers_and_sequences():
    cfg = SimpleNamespace(num_hidden_layers=3, hidden_size=2, intermediate_size=4)
    assert encoder_forward_flops([3, 5], cfg) == 3 * (layer_forward_flops(3, 2, 4) + layer_forward_flops(5, 2, 4))
    assert encoder_forward_flops([], cfg) == 0


def test_matmul_rate_is_a_finite_positive_rate():
    rate = matmul_gflops(size=64, repeats=2)
    assert math.isfinite(rate) and rate > 0
