"""The benchmarks' FLOP floor (tinydistill.models.measure): per-layer and per-encoder counts against hand computations; what
the benchmarks record of the machine; bench_train's choice of ways."""

from __future__ import annotations

import importlib.util
import math
from pathlib import Path
from types import SimpleNamespace

import pytest

from tinydistill.models.measure import encoder_forward_flops, layer_forward_flops, matmul_gflops, matmul_rate_samples
from tinydistill.hardware import cpu_model

ROOT = Path(__file__).resolve().parents[1]


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


def test_rate_samples_keep_the_higher_rate_and_both():
    high = matmul_rate_samples(before=1e9)  # no CPU reaches 1e9 GFLOP/s: the "before" sample is the higher
    assert high["gflops"] == 1e9 and high["before_after"][0] == 1e9 and 0 < high["before_after"][1] < 1e9
    low = matmul_rate_samples(before=0.0)
    assert low["gflops"] > 0 and round(low["gflops"], 1) == low["before_after"][1]


def test_cpu_model_names_this_machines_cpu():
    name = cpu_model()
    assert isinstance(name, str) and name
    cpuinfo = Path("/proc/cpuinfo")
    if cpuinfo.is_file() and "model name" in cpuinfo.read_text():
        assert f": {name}" in cpuinfo.read_text()


def test_bench_train_refuses_unknown_ways(tmp_path, capsys):
    spec = importlib.util.spec_from_file_location("bench_train", ROOT / "bench" / "bench_train.py")
    bench_train = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(bench_train)
    out = tmp_path / "train.json"
    with pytest.raises(SystemExit) as exit_info:
        bench_train.main(["--out", str(out), "--ways", "project,fast"])
    assert exit_info.value.code == 2 and not out.exists()
    assert "--ways project,fast: expected a comma-separated subset of project,reference,bfloat16" in capsys.readouterr().err
