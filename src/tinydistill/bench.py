"""Inference latency and size of exported classifiers on a GLUE dev set (a benchmark, not a test).

    python -m tinydistill.bench --task mrpc --model artifacts/teacher/mrpc \
        --model artifacts/task/mrpc/none --batch-size 32 --out bench/latency.json

Every model sees the same batches (same tokenizer output, same order, same batch size), so the
ratio of their times is the speed-up a user would see.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import time
from pathlib import Path
from typing import Any

import torch
from torch.utils.data import DataLoader
from transformers import AutoModelForSequenceClassification, AutoTokenizer, DataCollatorWithPadding

from tinydistill.data.glue import tokenized_split
from tinydistill.data.tasks import get_task


def count_parameters(model: torch.nn.Module) -> int:
    return sum(p.numel() for p in model.parameters())


@torch.inference_mode()
def time_model(model: torch.nn.Module, batches: list[dict], warmup: int = 2, repeats: int = 3) -> float:
    """Best-of-`repeats` wall time (seconds) of one pass over `batches`, after `warmup` batches."""
    model.eval()
    for b in batches[:warmup]:
        model(**b)
    best = float("inf")
    for _ in range(repeats):
        start = time.perf_counter()
        for b in batches:
            model(**b)
        best = min(best, time.perf_counter() - start)
    return best


def latency_report(
    model_dirs: list[str],
    task_name: str,
    data_dir: str | None,
    cache_dir: str,
    batch_size: int = 32,
    max_seq_length: int | None = None,
    repeats: int = 3,
) -> dict[str, Any]:
    """Parameters, dev-set inference time and examples/s of each model, on the same batches."""
    task = get_task(task_name)
    max_len = max_seq_length or (128 if task.is_pair else 64)
    tokenizer = AutoTokenizer.from_pretrained(model_dirs[0])
    dev = tokenized_split(task, task.dev_splits[0], tokenizer, max_len, data_dir, cache_dir)
    dev = dev.remove_columns([c for c in dev.column_names if c == "labels"])
    batches = list(DataLoader(dev, batch_size=batch_size, collate_fn=DataCollatorWithPadding(tokenizer)))
    rows = []
    for d in model_dirs:
        model = AutoModelForSequenceClassification.from_pretrained(d)
        seconds = time_model(model, batches, repeats=repeats)
        rows.append(
            {
                "model": str(d),
                "parameters": count_parameters(model),
                "layers": model.config.num_hidden_layers,
                "hidden_size": model.config.hidden_size,
                "seconds": seconds,
                "ms_per_example": 1000 * seconds / len(dev),
                "examples_per_second": len(dev) / seconds,
            }
        )
    base = rows[0]["seconds"]
    for r in rows:
        r["speedup_vs_first"] = base / r["seconds"]
    return {
        "task": task.name,
        "split": task.dev_splits[0],
        "examples": len(dev),
        "batch_size": batch_size,
        "max_seq_length": max_len,
        "torch_threads": torch.get_num_threads(),
        "torch": torch.__version__,
        "machine": platform.machine(),
        "cpu_count": os.cpu_count(),
        "models": rows,
    }


def main(argv: list[str] | None = None) -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--task", required=True)
    p.add_argument("--model", action="append", required=True, help="exported classifier folder (repeatable)")
    p.add_argument("--batch-size", type=int, default=32)
    p.add_argument("--max-seq-length", type=int, default=None)
    p.add_argument("--repeats", type=int, default=3)
    p.add_argument("--data-dir", default=os.environ.get("TINYDISTILL_DATA_DIR"))
    p.add_argument("--cache-dir", default="artifacts/cache")
    p.add_argument("--out", required=True, help="JSON file to write")
    a = p.parse_args(argv)
    report = latency_report(a.model, a.task, a.data_dir, a.cache_dir, a.batch_size, a.max_seq_length, a.repeats)
    out = Path(a.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    tmp = out.with_name(out.name + ".tmp")
    tmp.write_text(json.dumps(report, indent=2) + "\n")
    os.replace(tmp, out)
    for r in report["models"]:
        print(f"{r['model']}: {r['parameters'] / 1e6:.1f}M params, {r['ms_per_example']:.2f} ms/example, "
              f"x{r['speedup_vs_first']:.2f}")


if __name__ == "__main__":
    main()
