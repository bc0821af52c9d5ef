"""Inference latency, size and dev metrics of exported classifiers and their ONNX variants on a GLUE dev set
(a benchmark, not a test).

    python -m tinydistill.bench --task mrpc --model artifacts/teacher/mrpc \
        --model artifacts/task/mrpc/none/seed42 --batch-size 32 --out bench/latency.json

Each `--model` is timed as PyTorch fp32 and, when `python -m tinydistill.export` has written its `onnx/`
folder, as ONNX fp32 and ONNX int8 too (`--no-onnx`: PyTorch only); an ONNX folder or .onnx file may also be
given directly. Every variant sees the same batches (the first model's tokenizer, the same order and batch
size) with the same number of threads, at `--batch-size` and at batch 1 (`--no-batch1` skips it), in one
process, so the ratio of two times is the speed-up a user would see. Speed-ups are over the first model's
PyTorch fp32 variant: put the teacher first.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import sys
from collections.abc import Sequence
from typing import Any

import numpy as np
import torch
from datasets import Dataset
from torch.utils.data import DataLoader
from transformers import DataCollatorWithPadding, PreTrainedTokenizerBase
from transformers.utils import logging as hf_logging

from tinydistill.atomic import atomic_write_text
from tinydistill.data.files import task_from_argument
from tinydistill.data.glue import tokenized_split
from tinydistill.data.tasks import Task
from tinydistill.errors import TinyDistillError
from tinydistill.hardware import cpu_model
from tinydistill.inference import (
    Classifier,
    TorchClassifier,
    load_classifier,
    onnx_variants,
)
from tinydistill.metrics import compute_metrics, predictions
from tinydistill.models.measure import time_batches


def default_max_length(task: Task) -> int:
    """The task's max_seq_length: a user's task file's, else the usual (conf/task): 128 for pairs, 64 for single
    sentences."""
    return task.length


def dev_set(
    task: Task, tokenizer: PreTrainedTokenizerBase, max_seq_length: int, data_dir: str | None,
    cache_dir: str | os.PathLike, write_cache: bool = True,
) -> tuple[Dataset, np.ndarray]:
    """The task's main dev split, tokenised (without labels), and its labels."""
    dev = tokenized_split(task, task.dev_splits[0], tokenizer, max_seq_length, data_dir, cache_dir,
                          write_cache=write_cache)
    labels = np.asarray(dev["labels"])
    return dev.remove_columns([c for c in dev.column_names if c == "labels"]), labels


def batched(dev: Dataset, tokenizer: PreTrainedTokenizerBase, batch_size: int) -> list[dict[str, torch.Tensor]]:
    """`dev` in order, in batches padded to their longest example."""
    return list(DataLoader(dev, batch_size=batch_size, collate_fn=DataCollatorWithPadding(tokenizer)))


def dev_logits(clf: Classifier, batches: Sequence[dict]) -> np.ndarray:
    return np.concatenate([clf.logits(b) for b in batches])


def compare(task: Task, logits: np.ndarray, other: np.ndarray) -> dict[str, float]:
    """How far two variants' dev outputs are apart: prediction agreement (classification) and max logit difference."""
    out = {"max_logit_diff": float(np.abs(logits - other).max())}
    if not task.is_regression:
        out["agreement"] = float((logits.argmax(-1) == other.argmax(-1)).mean())
    return out


def measure_variants(
    classifiers: Sequence[Classifier],
    task: Task,
    data_dir: str | None,
    cache_dir: str | os.PathLike,
    batch_size: int = 32,
    batch1: bool = True,
    max_seq_length: int | None = None,
    repeats: int = 3,
    latency: bool = True,
    write_cache: bool = True,
    names: Sequence[str] | None = None,
) -> dict[str, Any]:
    """Dev metrics, size and latency of each classifier on the same batches, with the speed-up over the first.

    Per row: `model` (its name, by default the folder its weights come from), `variant` (`pytorch fp32`, `onnx
    fp32`, `onnx int8`), `size_mb`, `dev` metrics, `vs` (for each other variant of the same model: prediction
    `agreement` and `max_logit_diff`), and with `latency` per batch size `latency` {seconds, ms_per_example} and
    `speedup` (the first row's time over this row's)."""
    if not classifiers:
        raise ValueError("measure_variants: no classifiers")
    max_len = max_seq_length or default_max_length(task)
    tokenizer = classifiers[0].tokenizer
    sizes = [batch_size] + ([1] if batch1 and batch_size != 1 else [])
    dev, labels = dev_set(task, tokenizer, max_len, data_dir, cache_dir, write_cache)
    data = {bs: batched(dev, tokenizer, bs) for bs in sizes}
    batches = data[batch_size]
    names = list(names) if names is not None else [str(c.source) for c in classifiers]
    if len(names) != len(classifiers):
        raise ValueError("measure_variants: one name per classifier")
    outputs = [dev_logits(c, batches) for c in classifiers]
    rows: list[dict[str, Any]] = []
    for clf, name, out in zip(classifiers, names, outputs):
        rows.append({
            "model": name, "variant": clf.variant, "file": str(clf.path), "size_mb": clf.size_mb(),
            "parameters": clf.parameters() if isinstance(clf, TorchClassifier) else None,
            "dev": compute_metrics(task, predictions(torch.as_tensor(out), task), torch.as_tensor(labels)),
            "vs": {}, "latency": {}, "speedup": {},
        })
    for i, row in enumerate(rows):
        for j, other in enumerate(rows):
            if i != j and other["model"] == row["model"]:
                row["vs"][other["variant"]] = compare(task, outputs[i], outputs[j])
    if latency:
        for bs in sizes:
            for clf, row in zip(classifiers, rows):
                seconds = time_batches(clf.logits, data[bs], repeats=repeats)
                row["latency"][str(bs)] = {"seconds": seconds, "ms_per_example": 1000 * seconds / len(labels)}
            base = rows[0]["latency"][str(bs)]["seconds"]
            for row in rows:
                row["speedup"][str(bs)] = base / row["latency"][str(bs)]["seconds"]
    return {
        "task": task.name, "metric": task.metric, "split": task.dev_splits[0], "examples": int(len(labels)),
        "batch_sizes": sizes,
        "max_seq_length": max_len, "threads": torch.get_num_threads(), "repeats": repeats,
        "reference": rows[0]["model"], "versions": versions(), "machine": platform.machine(),
        "cpu": cpu_model(),
        "cpu_count": os.cpu_count(), "rows": rows,
    }


def versions() -> dict[str, str]:
    """Versions of the libraries that run the variants (absent ones left out)."""
    out = {"torch": torch.__version__}
    for name in ("onnxruntime", "onnx"):
        try:
            out[name] = __import__(name).__version__
        except ImportError:
            pass
    return out


def latency_report(
    model_dirs: list[str],
    task_name: str,
    data_dir: str | None,
    cache_dir: str,
    batch_size: int = 32,
    max_seq_length: int | None = None,
    repeats: int = 3,
    onnx: bool = True,
    batch1: bool = True,
    threads: int | None = None,
) -> dict[str, Any]:
    """Every model (and with `onnx` its exported ONNX variants) on the same dev batches: parameters, size, dev
    metrics, time at `batch_size` (and batch 1) and speed-up over the first model."""
    task = task_from_argument(task_name)
    classifiers: list[Classifier] = []
    names: list[str] = []
    for d in model_dirs:
        clf = load_classifier(d, threads)
        classifiers.append(clf)
        names.append(str(d) if isinstance(clf, TorchClassifier) else str(clf.source))
        if onnx and isinstance(clf, TorchClassifier):
            variants = onnx_variants(d, threads)
            classifiers += variants
            names += [str(d)] * len(variants)  # one model, so its variants are compared with each other
    report = measure_variants(classifiers, task, data_dir, cache_dir, batch_size, batch1, max_seq_length, repeats,
                              names=names)
    key = str(batch_size)
    for clf, row in zip(classifiers, report["rows"]):
        # the fields of earlier versions of this report, at --batch-size
        seconds = row["latency"][key]["seconds"]
        row.update(seconds=seconds, ms_per_example=row["latency"][key]["ms_per_example"],
                   examples_per_second=report["examples"] / seconds, speedup_vs_first=row["speedup"][key],
                   layers=clf.config.num_hidden_layers, hidden_size=clf.config.hidden_size)
    report.update(batch_size=batch_size, torch_threads=report["threads"], torch=torch.__version__,
                  models=report.pop("rows"))
    return report


def main(argv: list[str] | None = None) -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--task", required=True, help="a GLUE task, or a YAML file with a user's task keys "
                                                 "(conf/task/custom.yaml's)")
    p.add_argument("--model", action="append", required=True,
                   help="model folder, ONNX folder or .onnx file (repeatable; the first is the reference)")
    p.add_argument("--batch-size", type=int, default=32)
    p.add_argument("--no-batch1", dest="batch1", action="store_false", help="do not time at batch size 1")
    p.add_argument("--no-onnx", dest="onnx", action="store_false", help="skip the models' exported ONNX variants")
    p.add_argument("--threads", type=int, default=None, help="threads for PyTorch and ONNX Runtime (default: torch's)")
    p.add_argument("--max-seq-length", type=int, default=None)
    p.add_argument("--repeats", type=int, default=3)
    p.add_argument("--data-dir", default=os.environ.get("TINYDISTILL_DATA_DIR"))
    p.add_argument("--cache-dir", default="artifacts/cache")
    p.add_argument("--out", required=True, help="JSON file to write")
    a = p.parse_args(argv)
    hf_logging.disable_progress_bar()
    if a.threads:
        torch.set_num_threads(a.threads)
    try:
        report = latency_report(a.model, a.task, a.data_dir, a.cache_dir, a.batch_size, a.max_seq_length, a.repeats,
                                a.onnx, a.batch1, a.threads)
    except TinyDistillError as e:  # a missing or wrong model, bad data: one line
        print(f"error: {e}", file=sys.stderr)
        sys.exit(2)
    atomic_write_text(a.out, json.dumps(report, indent=2) + "\n")
    for r in report["models"]:
        params = f"{r['parameters'] / 1e6:.1f}M params, " if r.get("parameters") else ""
        b1 = r["speedup"].get("1")
        print(f"{r['model']} [{r['variant']}]: {params}{r['size_mb']:.1f} MB, {r['ms_per_example']:.2f} ms/example, "
              f"x{r['speedup_vs_first']:.2f}" + (f" (batch 1: x{b1:.2f})" if b1 else "")
              + ", dev " + ", ".join(f"{k} {v:.4f}" for k, v in r["dev"].items()))


if __name__ == "__main__":
    main()
