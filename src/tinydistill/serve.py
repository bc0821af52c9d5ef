"""Serve fast on the CPU it runs on: every backend this machine has (`tinydistill.backends`), timed on the same dev
batches, and the fastest one that still gives the fp32 model's answers.

    python -m tinydistill.serve bench artifacts/task/sst2/demo/seed42 --task sst2
    python -m tinydistill.serve bench <model> --task mrpc --teacher artifacts/teacher/mrpc --threads 1,2 --json out.json

In one process, for each thread count (`--threads`, default 1 and all cores) and at batch 32 and batch 1, every
candidate of the model and of its teacher (`--teacher`, else the model's metrics.json `teacher_dir`) runs over the
same first `--examples` dev rows, taking turns pass by pass (the order rotating; each pass after one untimed batch,
so no other candidate's thread pool is still spinning), `--repeats` rounds (the best round counts), so a machine
shared with other jobs slows them alike: read ratios, not times. The load average is recorded beside each setting.

The guard: a candidate is kept only when it agrees with the same model's PyTorch fp32 predictions on at least
`--min-agreement` (99%) of the whole dev set and its dev metric is at most `--max-metric-drop` (1 point) lower.
The choice: of the kept candidates, the one with the lowest time relative to PyTorch fp32, as the geometric mean
over every thread count and batch size. The teacher's own choice is made the same way.

Yardsticks, per thread count and batch size: the chosen student's speed-up over the PyTorch fp32 teacher, and
over the teacher in its own chosen backend, beside the encoder FLOP ratio (teacher / student, on the timed rows'
lengths) and the share of that ratio the second speed-up reaches.

It writes, into the model's export folder (`<model>/onnx`, exported first when missing; `--out`), the chosen
candidate's file and `export.json`'s `serve` field (the table, the choice, the yardsticks);
`python -m tinydistill.predict <model or export folder>` then serves the recorded choice, and
`python -m tinydistill.report` shows it.
"""

from __future__ import annotations

import argparse
import importlib.metadata
import json
import logging
import math
import os
import platform
import shutil
import sys
import tempfile
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import datasets
import numpy as np
import torch
from transformers.utils import logging as hf_logging

from tinydistill.atomic import atomic_write_text
from tinydistill.backends import CANDIDATES, REFERENCE, Candidate, build_candidates
from tinydistill.bench import batched, compare, dev_logits, dev_set, versions
from tinydistill.data.files import task_from_argument
from tinydistill.data.glue import tokenized_split
from tinydistill.data.tasks import Task
from tinydistill.errors import ConfigError, TinyDistillError
from tinydistill.export import export_model, find_teacher, load_teacher
from tinydistill.hardware import cpu_model, native_cpu_bf16
from tinydistill.inference import EXPORT_DIR, EXPORT_JSON, TorchClassifier, load_torch_classifier
from tinydistill.metrics import compute_metrics, predictions
from tinydistill.models.measure import encoder_forward_flops, time_batches

log = logging.getLogger("tinydistill.serve")

MIN_AGREEMENT = 0.99
MAX_METRIC_DROP = 1.0  # points (percentage points of the task's main metric)
BATCH_SIZES = (32, 1)


def thread_counts(spec: str | None) -> list[int]:
    """`--threads`: comma-separated counts; default 1 and every core."""
    if not spec:
        return sorted({1, os.cpu_count() or 1})
    try:
        counts = sorted({int(t) for t in spec.split(",")})
    except ValueError:
        counts = [0]
    if counts[0] < 1:
        raise ConfigError(f"--threads {spec}: expected comma-separated positive counts, e.g. 1,2")
    return counts


def time_alternated(runs: dict[str, Callable[[Any], Any]], batches: Sequence[Any], repeats: int) -> dict[str, float]:
    """Best-of-`repeats` seconds of each run over `batches`. The runs take turns pass by pass, the order rotating
    with each repeat, so a load that comes and goes on a shared machine falls on all of them alike; each pass
    follows one untimed batch of its own. Not batch by batch: the previous run's thread pool keeps spinning for a
    while after its batch and takes a core from the next one (two threads on two cores: PyTorch's student at
    batch 1 timed 8x slower that way, docs/results/benchmarks.md#serving-backends-on-this-cpu-issue-51)."""
    names = list(runs)
    best = dict.fromkeys(names, math.inf)
    for r in range(repeats):
        for name in names[r % len(names):] + names[:r % len(names)]:
            runs[name](batches[0])  # meanwhile the previous run's pool goes idle
            best[name] = min(best[name], time_batches(runs[name], batches, warmup=0, repeats=1))
    return best


def dev_row(role: str, c: Candidate, task: Task, logits: np.ndarray, ref: np.ndarray, labels: np.ndarray) -> dict:
    """A table row without latency: dev metrics and agreement with the same model's PyTorch fp32."""
    dev = compute_metrics(task, predictions(torch.as_tensor(logits), task), torch.as_tensor(labels))
    ref_dev = compute_metrics(task, predictions(torch.as_tensor(ref), task), torch.as_tensor(labels))
    return {"model": role, **c.record(), "dev": dev, **compare(task, logits, ref),
            "metric_drop": 100 * (ref_dev[task.metric] - dev[task.metric]), "latency": {}}


def measure(models: dict[str, tuple[TorchClassifier, Path, list[Candidate]]], task: Task, dev: list[dict],
            labels: np.ndarray, timed: dict[int, list[dict]], threads: list[int], repeats: int) -> list[dict]:
    """Every candidate of every model (role -> classifier, candidates' folder, candidates): dev rows at the most
    threads, then latency per thread count and batch size, all candidates alternated."""
    entries = {f"{role}/{c.name}": (role, clf, folder, c) for role, (clf, folder, cands) in models.items()
               for c in cands}
    outs = {key: dev_logits(c.load(clf, folder, max(threads)), dev) for key, (_, clf, folder, c) in entries.items()}
    rows = {key: dev_row(role, c, task, outs[key], outs[f"{role}/{REFERENCE}"], labels)
            for key, (role, _, _, c) in entries.items()}
    before = torch.get_num_threads()
    try:
        for t in threads:
            torch.set_num_threads(t)
            runs = {key: c.load(clf, folder, t).logits for key, (_, clf, folder, c) in entries.items()}
            for bs, batches in timed.items():
                load = os.getloadavg()[0]
                seconds = time_alternated(runs, batches, repeats)
                examples = sum(len(b["input_ids"]) for b in batches)
                for key, row in rows.items():
                    row["latency"].setdefault(str(t), {})[str(bs)] = {
                        "seconds": seconds[key], "ms_per_example": 1000 * seconds[key] / examples,
                        "load_average": load}
    finally:
        torch.set_num_threads(before)
    return list(rows.values())


def guard(rows: list[dict], min_agreement: float = MIN_AGREEMENT, max_drop: float = MAX_METRIC_DROP) -> None:
    """Mark each row `accepted`, or give `rejected` (why): agreement with its model's PyTorch fp32 below
    `min_agreement`, or its dev metric more than `max_drop` points lower (regression: the metric alone)."""
    for row in rows:
        why = []
        if row.get("agreement") is not None and row["agreement"] < min_agreement:
            why.append(f"agrees with {REFERENCE} on {100 * row['agreement']:.2f}% < {100 * min_agreement:g}%")
        if row["metric_drop"] > max_drop:
            why.append(f"dev metric {row['metric_drop']:.2f} points lower (> {max_drop:g})")
        row["accepted"] = not why
        row["rejected"] = "; ".join(why) or None


def relative_time(row: dict, ref: dict) -> float:
    """Geometric mean, over every thread count and batch size, of the row's time over the reference's."""
    ratios = [row["latency"][t][bs]["seconds"] / ref["latency"][t][bs]["seconds"]
              for t in ref["latency"] for bs in ref["latency"][t]]
    return math.exp(sum(math.log(r) for r in ratios) / len(ratios))


def choose(rows: list[dict], role: str) -> dict:
    """The accepted candidate of `role` with the lowest relative time (PyTorch fp32 itself always passes)."""
    mine = [r for r in rows if r["model"] == role]
    ref = next(r for r in mine if r["name"] == REFERENCE)
    for r in mine:
        r["relative_time"] = relative_time(r, ref)
    return min((r for r in mine if r["accepted"]), key=lambda r: r["relative_time"])


def flop_ratio(teacher: TorchClassifier, student: TorchClassifier, timed: list[dict]) -> float:
    """Encoder FLOPs of the teacher over the student's on the timed rows' lengths (padding excluded)."""
    lengths = [int(n) for b in timed for n in torch.as_tensor(b["attention_mask"]).sum(-1).tolist()]
    return encoder_forward_flops(lengths, teacher.config) / encoder_forward_flops(lengths, student.config)


def yardsticks(rows: list[dict], chosen: dict, teacher_best: dict, ratio: float) -> dict[str, dict]:
    """Per thread count and batch size: speed-ups over the PyTorch fp32 teacher and over the teacher's own choice,
    and the share of the FLOP ratio the second reaches."""
    teacher_fp32 = next(r for r in rows if r["model"] == "teacher" and r["name"] == REFERENCE)
    out: dict[str, dict] = {}
    for t, sizes in chosen["latency"].items():
        for bs, lat in sizes.items():
            vs_best = teacher_best["latency"][t][bs]["seconds"] / lat["seconds"]
            out.setdefault(t, {})[bs] = {
                "vs_teacher_fp32": teacher_fp32["latency"][t][bs]["seconds"] / lat["seconds"],
                "vs_teacher_best": vs_best, "flop_ratio": ratio, "share_of_flop_ratio": vs_best / ratio,
                "load_average": lat["load_average"]}
    return out


def calibration_rows(task: Task, clf: TorchClassifier, rows: int, max_len: int, data_dir: str | None,
                     cache_dir: str | os.PathLike) -> list[dict[str, np.ndarray]]:
    """The first `rows` training rows in batches of 32, as int64 feeds, for static quantisation."""
    train = tokenized_split(task, "train", clf.tokenizer, max_len, data_dir, cache_dir, write_cache=False)
    train = train.select(range(min(rows, len(train)))).remove_columns(["labels"])
    return [{k: v.numpy().astype(np.int64) for k, v in b.items()} for b in batched(train, clf.tokenizer, 32)]


def bench(model_dir: str | os.PathLike, task_name: str, teacher: str | os.PathLike | None = None,
          threads: list[int] | None = None, examples: int = 256, repeats: int = 3, calibration: int = 256,
          wanted: tuple[str, ...] = CANDIDATES, min_agreement: float = MIN_AGREEMENT,
          max_drop: float = MAX_METRIC_DROP, data_dir: str | None = None,
          cache_dir: str | os.PathLike = "artifacts/cache", work: Path | None = None) -> dict[str, Any]:
    """The whole table, the guard, the choices and the yardsticks (module docstring); candidate files go in
    `work`/student and `work`/teacher."""
    threads = threads or thread_counts(None)
    model_dir = Path(model_dir)
    task = task_from_argument(task_name)
    clf = load_torch_classifier(model_dir)
    t_dir = find_teacher(model_dir, teacher)
    t_clf = load_teacher(t_dir, clf) if t_dir is not None and t_dir.resolve() != model_dir.resolve() else None
    if t_clf is None:
        log.info("serve: no teacher (give --teacher, or a metrics.json teacher_dir): no yardsticks")
    max_len = task.length
    dev, labels = dev_set(task, clf.tokenizer, max_len, data_dir, cache_dir, write_cache=False)
    dev_batches = batched(dev, clf.tokenizer, BATCH_SIZES[0])
    subset = dev.select(range(min(examples, len(dev))))
    timed = {bs: batched(subset, clf.tokenizer, bs) for bs in BATCH_SIZES}
    try:
        calib = calibration_rows(task, clf, calibration, max_len, data_dir, cache_dir)
    except TinyDistillError as e:
        log.info("serve: onnx int8 static skipped: no training rows to calibrate on (%s)", e)
        calib, wanted = [], tuple(n for n in wanted if "static" not in n)
    models = {}
    for role, c in (("student", clf), ("teacher", t_clf)):
        if c is not None:
            (work / role).mkdir(parents=True, exist_ok=True)
            models[role] = (c, work / role, build_candidates(c, work / role, calib, wanted))
    rows = measure(models, task, dev_batches, labels, timed, threads, repeats)
    guard(rows, min_agreement, max_drop)
    chosen = choose(rows, "student")
    result: dict[str, Any] = {
        "task": task.name, "metric": task.metric, "examples_timed": len(subset), "examples_dev": int(len(labels)),
        "batch_sizes": list(BATCH_SIZES), "threads": threads, "repeats": repeats, "max_seq_length": max_len,
        "guard": {"min_agreement": min_agreement, "max_metric_drop_points": max_drop},
        "cpu": cpu_model(), "cpu_count": os.cpu_count(), "machine": platform.machine(),
        "native_bf16": native_cpu_bf16(), "versions": versions() | _openvino_version(),
        "source": str(model_dir), "teacher": str(t_dir) if t_clf is not None else None, "rows": rows,
        "choice": {**{k: chosen[k] for k in ("name", "runtime", "precision", "file", "spinning")},
                   "source": str(model_dir)},
        "teacher_choice": None, "flop_ratio": None, "yardsticks": None,
    }
    if t_clf is not None:
        best = choose(rows, "teacher")
        result["teacher_choice"] = best["name"]
        result["flop_ratio"] = flop_ratio(t_clf, clf, timed[BATCH_SIZES[0]])
        result["yardsticks"] = yardsticks(rows, chosen, best, result["flop_ratio"])
    return result


def _openvino_version() -> dict[str, str]:
    # From the package metadata, without importing openvino: an import costs seconds and, under pytest, breaks the
    # output capture of the tests that follow.
    try:
        return {"openvino": importlib.metadata.version("openvino")}
    except importlib.metadata.PackageNotFoundError:
        return {}


def record(result: dict[str, Any], work: Path, out: Path, model_dir: Path) -> Path:
    """The chosen file copied into the export folder `out` (exported first when it has no export.json) and the
    result written as export.json's `serve` field; returns export.json."""
    if not (out / EXPORT_JSON).is_file():
        export_model(model_dir, out)
    file = result["choice"]["file"]
    if file:
        tmp = out / f".{file}.tmp-{os.getpid()}"
        shutil.copyfile(work / "student" / file, tmp)
        os.replace(tmp, out / file)
    info = json.loads((out / EXPORT_JSON).read_text())
    info["serve"] = result
    return atomic_write_text(out / EXPORT_JSON, json.dumps(info, indent=2) + "\n")


def summary(result: dict[str, Any]) -> str:
    """The table, one line per model and candidate, then the choice and the yardsticks."""
    lines = []
    for r in result["rows"]:
        times = ", ".join(f"{t}t/b{bs} {lat['ms_per_example']:.2f}" for t, s in r["latency"].items()
                          for bs, lat in s.items())
        state = "ok" if r["accepted"] else f"rejected: {r['rejected']}"
        lines.append(f"{r['model']:7s} {r['name']:30s} {result['metric']} {r['dev'][result['metric']]:.4f} "
                     f"ms/example [{times}] x{1 / r['relative_time']:.2f} ({state})")
    lines.append(f"chosen: {result['choice']['name']}; teacher's: {result['teacher_choice']}")
    for t, sizes in (result["yardsticks"] or {}).items():
        for bs, y in sizes.items():
            lines.append(f"  {t} thread(s), batch {bs}: x{y['vs_teacher_fp32']:.1f} over the PyTorch fp32 teacher, "
                         f"x{y['vs_teacher_best']:.1f} over the teacher's {result['teacher_choice']} "
                         f"({100 * y['share_of_flop_ratio']:.0f}% of the FLOP ratio {y['flop_ratio']:.1f}); "
                         f"load {y['load_average']:.1f}")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> None:
    p = argparse.ArgumentParser(prog="python -m tinydistill.serve", description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = p.add_subparsers(dest="command", required=True)
    b = sub.add_parser("bench", help="time every backend, choose, record in export.json")
    b.add_argument("model", help="classifier folder (save_pretrained)")
    b.add_argument("--task", required=True, help="a GLUE name, or a user's task file")
    b.add_argument("--teacher", default=None, help="teacher folder (default: the model's metrics.json teacher_dir)")
    b.add_argument("--threads", default=None, help="comma-separated thread counts (default: 1 and every core)")
    b.add_argument("--examples", type=int, default=256, help="dev rows timed (the guard reads the whole dev set)")
    b.add_argument("--repeats", type=int, default=3)
    b.add_argument("--calibration-rows", type=int, default=256, help="training rows for static int8")
    b.add_argument("--candidates", default=",".join(CANDIDATES), help="comma-separated subset of the candidates")
    b.add_argument("--min-agreement", type=float, default=MIN_AGREEMENT)
    b.add_argument("--max-metric-drop", type=float, default=MAX_METRIC_DROP, help="in points of the main metric")
    b.add_argument("--out", default=None, help=f"export folder to record in (default: <model>/{EXPORT_DIR})")
    b.add_argument("--json", default=None, help="also write the result to this JSON file")
    b.add_argument("--data-dir", default=os.environ.get("TINYDISTILL_DATA_DIR"))
    b.add_argument("--cache-dir", default=os.environ.get("TINYDISTILL_CACHE", "artifacts/cache"))
    a = p.parse_args(argv)
    hf_logging.disable_progress_bar()
    datasets.disable_progress_bars()  # tokenising the training split for calibration: a bar per thousand rows
    logging.basicConfig(level=logging.INFO, format="%(message)s")
    for noisy in ("onnxruntime", "root", "tinydistill.export"):
        logging.getLogger(noisy).setLevel(logging.WARNING)
    try:
        wanted = tuple(n.strip() for n in a.candidates.split(","))
        unknown = [n for n in wanted if n not in CANDIDATES]
        if unknown:
            raise ConfigError(f"--candidates {unknown[0]!r}: expected a subset of {', '.join(CANDIDATES)}")
        with tempfile.TemporaryDirectory(prefix="serve-") as work:
            result = bench(a.model, a.task, a.teacher, thread_counts(a.threads), a.examples, a.repeats,
                           a.calibration_rows, wanted, a.min_agreement, a.max_metric_drop, a.data_dir, a.cache_dir,
                           Path(work))
            out = Path(a.out) if a.out else Path(a.model) / EXPORT_DIR
            record(result, Path(work), out, Path(a.model))
    except TinyDistillError as e:
        print(f"error: {e}", file=sys.stderr)
        sys.exit(2)
    if a.json:
        atomic_write_text(a.json, json.dumps(result, indent=2) + "\n")
    print(summary(result))
    print(f"recorded in {out / EXPORT_JSON}")


if __name__ == "__main__":
    main()
