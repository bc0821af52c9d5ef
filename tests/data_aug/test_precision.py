"""aug.dtype=bfloat16 and bench/bench_aug_precision.py's variants."""

from __future__ import annotations

import copy
import functools
import json

import pytest
import torch

from data_aug import (
    Augmenter,
    MaskedLM,
)
from tests.conftest import (
    STOP,
    tiny_mlm_model,
)
from tests.data_aug.conftest import MRPC_ROWS, ROOT


def _candidates_and_dtypes(mlm: MaskedLM, sentences: list[str], mode: str = "batched") -> tuple[list, dict]:
    """Candidate lists, and for each block of each layer and for the MLM head, the dtypes its matrix products
    returned ({block: {(layer, dtype)}}; the head's layer is -1)."""
    seen, hooks = {}, []
    modules = [(-1, "head", mlm.model.cls.predictions.transform.dense)]
    for i, layer in enumerate(mlm.model.bert.encoder.layer):  # each block's matrix products
        modules += [(i, "intermediate", layer.intermediate.dense), (i, "output", layer.output.dense),
                    (i, "attention", layer.attention.self.query), (i, "attention_output", layer.attention.output.dense)]
    for i, key, module in modules:
        def hook(_m, _inp, out, key=key, i=i):
            seen.setdefault(key, set()).add((i, out.dtype))
        hooks.append(module.register_forward_hook(hook))
    try:
        lists = Augmenter(mlm, None, STOP, top_k=15, mode=mode).candidates(sentences)
    finally:
        for h in hooks:
            h.remove()
    return lists, seen


@pytest.mark.parametrize("mode", ["batched", "sequential"])
def test_bfloat16_masked_lm_runs_its_matrix_products_in_bfloat16_and_keeps_float32_weights(tokenizer, mode):
    """aug.dtype=bfloat16 is autocast: every layer's and the head's products in bfloat16, also in the pool threads
    of batched mode on 2 threads (autocast is per thread); the weights stay float32; each masked word float32
    proposes for still gets a list."""
    torch.manual_seed(0)
    model16 = tiny_mlm_model(tokenizer)
    model32 = copy.deepcopy(model16)
    mlm16 = MaskedLM(model16, tokenizer, name="tiny", dtype="bfloat16")
    mlm32 = MaskedLM(model32, tokenizer, name="tiny")
    assert {p.dtype for p in model16.parameters()} == {torch.float32}
    assert mlm16.fingerprint == mlm32.fingerprint
    sentences = [r[c] for r in MRPC_ROWS for c in (3, 4)]
    threads = torch.get_num_threads()
    torch.set_num_threads(2)
    try:
        lists16, seen = _candidates_and_dtypes(mlm16, sentences, mode)
    finally:
        torch.set_num_threads(threads)
    layers = set(range(len(model16.bert.encoder.layer)))
    assert {k: {i for i, _ in v} for k, v in seen.items() if k != "head"} == {
        k: layers for k in ("intermediate", "output", "attention", "attention_output")}, seen
    assert {d for v in seen.values() for _, d in v} == {torch.bfloat16}, seen
    lists32, seen32 = _candidates_and_dtypes(mlm32, sentences, mode)
    assert {d for v in seen32.values() for _, d in v} == {torch.float32}
    assert [sorted(sc.sources.items()) for sc in lists16] == [sorted(sc.sources.items()) for sc in lists32]
    assert all(sc.candidates for sc in lists16 if "mlm" in sc.sources.values())


@pytest.mark.parametrize("blocks, bf16_blocks", [
    ("ffn", {"intermediate", "output"}), ("attn", {"attention", "attention_output"})])
def test_precision_bench_puts_only_the_named_blocks_under_autocast(tokenizer, blocks, bf16_blocks):
    """bench/bench_aug_precision.py: in batched mode (whose last layer runs its parts one by one), a variant's named
    blocks compute in bfloat16 in every layer, the others and the original model in float32; the variant still
    proposes a list for every masked word the float32 model does."""
    import importlib.util

    spec = importlib.util.spec_from_file_location("bench_aug_precision", ROOT / "bench" / "bench_aug_precision.py")
    bench = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(bench)
    mlm32 = MaskedLM(tiny_mlm_model(tokenizer), tokenizer, name="tiny")
    variant = bench.autocast_variant(mlm32, blocks)
    sentences = [r[c] for r in MRPC_ROWS for c in (3, 4)]
    candidates_and_dtypes = functools.partial(_candidates_and_dtypes, sentences=sentences)
    lists16, seen = candidates_and_dtypes(variant)
    seen.pop("head")
    layers = range(len(variant.model.bert.encoder.layer))
    assert {k: v for k, v in seen.items() if k in bf16_blocks} == {k: {(i, torch.bfloat16) for i in layers}
                                                                   for k in bf16_blocks}, seen
    assert all(v == {(i, torch.float32) for i in layers} for k, v in seen.items() if k not in bf16_blocks), seen
    lists32, seen32 = candidates_and_dtypes(mlm32)
    assert {d for v in seen32.values() for _, d in v} == {torch.float32}
    assert [sorted(sc.sources.items()) for sc in lists16] == [sorted(sc.sources.items()) for sc in lists32]


def test_precision_bench_runs_the_chosen_variants_beside_float32(tmp_path, data_dir, capsys):
    """--variants picks the precisions to time; float32, the yardstick, always runs and agrees with itself; an
    unknown name stops before any work, naming the option."""
    import importlib.util

    spec = importlib.util.spec_from_file_location("bench_aug_precision", ROOT / "bench" / "bench_aug_precision.py")
    bench = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(bench)
    out = tmp_path / "precision.json"
    common = ["--out", str(out), "--model", "tiny", "--n", "6", "--repeats", "1", "--data-dir", str(data_dir)]
    with pytest.raises(SystemExit) as exit_info:
        bench.main([*common, "--variants", "autocast_all,fp16"])
    assert exit_info.value.code == 2 and not out.exists()
    assert "--variants autocast_all,fp16: expected a comma-separated subset of float32,bf16_cast" in capsys.readouterr().err
    bench.main([*common, "--variants", "autocast_all"])
    report = json.loads(out.read_text())
    assert [v for v in bench.VARIANTS if v in report] == ["float32", "autocast_all"]
    assert report["float32"]["agreement_with_float32"]["identical_share"] == 1.0
    assert report["n_sentences"] == 6 and report["autocast_all"]["seconds"] > 0


def test_precision_bench_int8_variant_quantises_every_linear_layer_and_leaves_the_original(tokenizer):
    import importlib.util

    spec = importlib.util.spec_from_file_location("bench_aug_precision", ROOT / "bench" / "bench_aug_precision.py")
    bench = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(bench)
    mlm32 = MaskedLM(tiny_mlm_model(tokenizer), tokenizer, name="tiny")
    variant = bench.int8_variant(mlm32)
    linear = [type(m).__module__ for m in variant.model.modules() if type(m).__name__ == "Linear"]
    assert linear and all("quantized" in m for m in linear), linear
    assert all(type(m) is torch.nn.Linear for m in mlm32.model.modules() if type(m).__name__ == "Linear")
    sentences = [r[c] for r in MRPC_ROWS for c in (3, 4)]
    lists8 = Augmenter(variant, None, STOP, top_k=15, mode="batched").candidates(sentences)
    lists32 = Augmenter(mlm32, None, STOP, top_k=15, mode="batched").candidates(sentences)
    assert [sorted(sc.sources.items()) for sc in lists8] == [sorted(sc.sources.items()) for sc in lists32]
    assert all(sc.candidates for sc in lists8 if "mlm" in sc.sources.values())
