"""Ship a classifier: an ONNX model (and a dynamically quantised int8 one) beside its tokenizer and label names.

    python -m tinydistill.export artifacts/task/sst2/none-noaug/seed42 --int8 --task sst2
    python -m tinydistill.export artifacts/teacher/mrpc --out /srv/models/mrpc-teacher

writes, atomically, into `<model dir>/onnx/` (or `--out`):

- `model.onnx`: the fp32 graph, inputs `input_ids`, `token_type_ids`, `attention_mask` (the tokenizer's) with
  dynamic batch and sequence axes, output `logits`. `--exporter torchscript` (default) traces it with torch's
  TorchScript-based exporter (opset 17): on CPU its graph ran 13-20% faster, in fp32 and in int8, than the one from
  `--exporter dynamo` (`torch.onnx.export(..., dynamo=True)`, torch's default since 2.9), with the same outputs
  (docs/results/benchmarks.md). torch deprecates the TorchScript exporter: when it is gone, use dynamo;
- `model_int8.onnx` (`--int8`): ONNX Runtime's `quantize_dynamic` of it (int8 weights, activations quantised
  at run time);
- `config.json` (label names: `id2label`) and the tokenizer files, so `python -m tinydistill.predict <folder>` and
  any ONNX Runtime service can use the folder on its own;
- `export.json`: file sizes (MB), versions, and the checks below.

The export checks itself before it is written: on two input shapes (batch 1 and a padded batch of 3 pairs) the
ONNX logits must equal PyTorch's within `--atol`, else nothing is written. With `--task` it also runs the task's
dev set (from `--data-dir`, default `$TINYDISTILL_DATA_DIR`) through PyTorch, ONNX fp32 and int8: dev metrics,
prediction agreement and max logit difference between them, and (unless `--no-latency`) the latency of each at
batch 32 and batch 1 with the speed-up over the PyTorch teacher, timed in the same process on the same batches
(the teacher: `--teacher`, else the `teacher_dir` of the model's metrics.json, else the model itself).
`python -m tinydistill.report` reads export.json into its variants table and frontier plot.

Optional dependencies: `pip install -e '.[export]'` (onnx, onnxruntime, onnxscript).
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import sys
from pathlib import Path
from typing import Any

import torch
from transformers.utils import logging as hf_logging

from tinydistill.atomic import atomic_directory
from tinydistill.bench import measure_variants, versions
from tinydistill.data.files import task_from_argument
from tinydistill.data.glue import load_examples
from tinydistill.errors import ConfigError, DataError, TinyDistillError
from tinydistill.inference import (
    EXPORT_DIR,
    EXPORT_JSON,
    INT8_FILE,
    ONNX_FILE,
    Classifier,
    OnnxClassifier,
    TorchClassifier,
    load_onnx_classifier,
    load_torch_classifier,
)
from tinydistill.offline import offline_variable
from tinydistill.onnx_graph import ExportCheckError, require_export_tools, EXPORTERS, export_onnx, quantize_int8, smoke_check
from tinydistill.records import METRICS_JSON, ClassifierRecord
from tinydistill.teacher_checks import task_mismatch, tokenizer_difference

log = logging.getLogger(__name__)

def model_record(model_dir: Path) -> ClassifierRecord | None:
    """The model's own record (its metrics.json), or None when it has none or it is unreadable."""
    try:
        return ClassifierRecord.read(model_dir)
    except DataError:
        return None


def find_teacher(model_dir: Path, teacher: str | os.PathLike | None) -> Path | None:
    """The teacher to time as the reference: `teacher`, else the `teacher_dir` of the model's metrics.json (None:
    the model itself is the reference, e.g. when it is the teacher)."""
    if teacher is not None:
        return Path(teacher)
    record = model_record(model_dir)
    t_dir = record.teacher_dir if record is not None else None
    if not t_dir:
        return None
    if not Path(t_dir).is_dir():
        log.warning("export: teacher_dir=%s in %s not found; speed-ups are over the model's own PyTorch fp32 "
                    "(give --teacher)", t_dir, model_dir / METRICS_JSON)
        return None
    if str(record.fields.get("student_tokenizer", "")).startswith("own"):  # stage=task with two tokenizers
        log.warning("export: the teacher %s reads text with another tokenizer than %s, so they cannot be timed on the "
                    "same batches; speed-ups are over the model's own PyTorch fp32", t_dir, model_dir)
        return None
    return Path(t_dir)


def run_record(model_dir: Path) -> dict[str, Any]:
    """Which run the model is (task, stage, run, seed, teacher_dir), from its metrics.json, for the report."""
    record = model_record(model_dir)
    data = record.fields if record is not None else {}
    return {k: data.get(k) for k in ("task", "stage", "run", "seed", "teacher_dir") if data.get(k) is not None}


def load_teacher(teacher: Path, clf: TorchClassifier) -> TorchClassifier:
    """The reference teacher, which must read the model's token ids (both are timed on the same batches)."""
    if not teacher.is_dir():
        raise ConfigError(f"--teacher {teacher} does not exist")
    t_clf = load_torch_classifier(teacher)
    why = tokenizer_difference(t_clf.tokenizer, clf.tokenizer)
    if why:
        raise ConfigError(f"teacher {teacher} and {clf.path} use different tokenizers ({why}): they cannot be "
                          f"timed on the same batches; give --teacher with the model's teacher or --no-latency")
    return t_clf


def _check_outputs(clf: TorchClassifier, task: Any, what: str) -> None:
    """ConfigError when `clf`'s outputs (their number, regression or not) cannot be scored on `task`'s dev set."""
    reason = task_mismatch(clf.config, task, with_names=False)
    if reason:
        raise ConfigError(f"{what}: {clf.path} does not fit {task.name}: {reason}")


def dev_check(
    clf: TorchClassifier, exported: list[OnnxClassifier], out: Path, task_name: str, data_dir: str | None,
    cache_dir: str | os.PathLike, teacher: TorchClassifier | None, latency: bool, atol: float, **bench: Any,
) -> dict[str, Any]:
    """The dev set through PyTorch, ONNX fp32 and int8 (and the teacher first, when timing): metrics,
    agreement, max logit difference and latency. Fails when ONNX fp32 and PyTorch disagree beyond `atol`."""
    task = task_from_argument(task_name)
    classifiers: list[Classifier] = [clf, *exported]
    names = [str(clf.path)] * len(classifiers)
    reference = "model"
    if latency and teacher is not None:
        classifiers.insert(0, teacher)
        names.insert(0, str(teacher.path))
        reference = "teacher"
    result = measure_variants(classifiers, task, data_dir, cache_dir, latency=latency, write_cache=False,
                              names=names, **bench)
    for row, c in zip(result["rows"], classifiers):  # paths after the rename into place
        if isinstance(c, OnnxClassifier):
            row["file"] = str(out / c.path.name)
    result["reference_role"] = reference
    mine = [r for r in result["rows"] if r["model"] == str(clf.path)]
    fp32 = next((r for r in mine if r["variant"] == "onnx fp32"), None)
    diff = fp32["vs"]["pytorch fp32"]["max_logit_diff"] if fp32 else 0.0
    if diff > atol:
        raise ExportCheckError(f"on {task.name} dev the ONNX model's logits differ from PyTorch's by up to {diff:.2e} "
                               f"(> --atol {atol:g}); nothing was written")
    return result


def export_model(
    model_dir: str | os.PathLike,
    out: str | os.PathLike | None = None,
    int8: bool = False,
    task: str | None = None,
    data_dir: str | None = None,
    cache_dir: str | os.PathLike = "artifacts/cache",
    teacher: str | os.PathLike | None = None,
    latency: bool = True,
    atol: float = 1e-3,
    per_channel: bool = False,
    threads: int | None = None,
    exporter: str = "torchscript",
    **bench: Any,
) -> Path:
    """Export the classifier in `model_dir` (see the module docstring); returns the folder written.
    `bench`: batch_size, batch1, max_seq_length, repeats of the dev check (`bench.measure_variants`)."""
    require_export_tools()
    model_dir = Path(model_dir)
    clf = load_torch_classifier(model_dir)
    out = Path(out) if out is not None else model_dir / EXPORT_DIR
    t_clf = None
    if task is not None:  # an unknown task, missing or malformed dev data or a wrong teacher fail before any work
        glue = task_from_argument(task)
        _check_outputs(clf, glue, f"--task {task}")
        if data_dir is None and offline_variable() and glue.is_glue:
            raise ConfigError(f"--task {task} reads the GLUE dev set: set --data-dir or TINYDISTILL_DATA_DIR (the hub "
                              f"is off: {offline_variable()}=1)")
        if data_dir is not None:
            load_examples(glue, glue.dev_splits[0], data_dir)
        t_dir = find_teacher(model_dir, teacher) if latency else None
        if t_dir is not None and t_dir.resolve() != model_dir.resolve():
            t_clf = load_teacher(t_dir, clf)
            _check_outputs(t_clf, glue, f"--task {task}: teacher")

    def write(tmp: Path) -> None:
        files = {ONNX_FILE: tmp / ONNX_FILE}
        info: dict[str, Any] = {"source": str(model_dir), "record": run_record(model_dir)}
        info["exporter"] = export_onnx(clf, files[ONNX_FILE], exporter)
        info["quantization"] = None
        if int8:
            files[INT8_FILE] = tmp / INT8_FILE
            info["quantization"] = quantize_int8(files[ONNX_FILE], files[INT8_FILE], per_channel)
        clf.tokenizer.save_pretrained(tmp)
        clf.config.save_pretrained(tmp)  # id2label: the label names
        exported = [load_onnx_classifier(f, threads) for f in files.values()]
        info["labels"] = None if clf.is_regression else clf.label_names
        info["problem_type"] = "regression" if clf.is_regression else "single_label_classification"
        info["size_mb"] = {"pytorch fp32": clf.size_mb(), **{c.variant: c.size_mb() for c in exported}}
        info["files"] = {"pytorch fp32": str(model_dir), **{c.variant: str(out / c.path.name) for c in exported}}
        info["versions"] = versions() | {"onnxscript": __import__("onnxscript").__version__}
        info["smoke_check"] = smoke_check(clf, exported, atol)
        info["atol"] = atol
        if task is not None:
            info["task"] = task_from_argument(task).name
            info["check"] = dev_check(clf, exported, out, task, data_dir, cache_dir, t_clf, latency, atol, **bench)
        (tmp / EXPORT_JSON).write_text(json.dumps(info, indent=2) + "\n")

    return atomic_directory(out, write)


def summary(out: Path) -> str:
    """A few lines on what was written and what the check found."""
    info = json.loads((out / EXPORT_JSON).read_text())
    lines = [f"{out}: " + ", ".join(f"{v} {mb:.1f} MB" for v, mb in info["size_mb"].items())]
    check = info.get("check")
    for row in (check or {}).get("rows", []):
        if row["model"] != info["source"] and check.get("reference_role") == "teacher":
            name = f"teacher ({row['model']}) {row['variant']}"
        else:
            name = row["variant"]
        parts = [", ".join(f"{k} {v:.4f}" for k, v in row["dev"].items())]
        for other, cmp in row["vs"].items():
            if "agreement" in cmp:
                parts.append(f"agrees with {other} on {100 * cmp['agreement']:.2f}%")
        for bs, s in row["speedup"].items():
            parts.append(f"x{s:.2f} at batch {bs}")
        lines.append(f"  {name}: " + "; ".join(parts))
    if check and check.get("rows") and check["rows"][0]["speedup"]:
        lines.append(f"  speed-ups over {check['rows'][0]['model']} (pytorch fp32), {check['threads']} thread(s)")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("model", help="classifier folder (save_pretrained: config.json, model.safetensors, tokenizer)")
    p.add_argument("--out", default=None, help=f"folder to write (default: <model>/{EXPORT_DIR})")
    p.add_argument("--int8", action="store_true", help=f"also write {INT8_FILE} (dynamic int8 quantisation)")
    p.add_argument("--per-channel", action="store_true", help="int8: one scale per output channel")
    p.add_argument("--exporter", choices=EXPORTERS, default="torchscript",
                   help="torch's ONNX exporter (torchscript: faster int8 on CPU; dynamo: torch's default)")
    p.add_argument("--task", default=None, help="check on this task's dev set (metrics, agreement, latency): a GLUE "
                   "name, or a user's task file (the task.json beside a model trained on it)")
    p.add_argument("--data-dir", default=os.environ.get("TINYDISTILL_DATA_DIR"))
    p.add_argument("--cache-dir", default=os.environ.get("TINYDISTILL_CACHE", "artifacts/cache"))
    p.add_argument("--teacher", default=None, help="teacher folder timed as the reference (default: the model's "
                   "metrics.json teacher_dir)")
    p.add_argument("--no-latency", dest="latency", action="store_false", help="dev metrics and agreement only")
    p.add_argument("--batch-size", type=int, default=32)
    p.add_argument("--no-batch1", dest="batch1", action="store_false", help="do not time at batch size 1")
    p.add_argument("--repeats", type=int, default=3)
    p.add_argument("--max-seq-length", type=int, default=None)
    p.add_argument("--threads", type=int, default=None, help="threads for PyTorch and ONNX Runtime")
    p.add_argument("--atol", type=float, default=1e-3, help="largest accepted |ONNX - PyTorch| logit difference")
    a = p.parse_args(argv)
    hf_logging.disable_progress_bar()  # stderr keeps to warnings and errors
    logging.basicConfig(level=logging.WARNING, format="%(levelname)s %(name)s: %(message)s")
    if a.threads:
        torch.set_num_threads(a.threads)
    try:
        out = export_model(a.model, a.out, a.int8, a.task, a.data_dir, a.cache_dir, a.teacher, a.latency, a.atol,
                           a.per_channel, a.threads, a.exporter, batch_size=a.batch_size, batch1=a.batch1,
                           max_seq_length=a.max_seq_length, repeats=a.repeats)
    except TinyDistillError as e:
        print(f"error: {e}", file=sys.stderr)
        sys.exit(2)
    except ExportCheckError as e:
        print(f"error: {e}", file=sys.stderr)
        sys.exit(1)
    print(summary(out))


if __name__ == "__main__":
    main()
