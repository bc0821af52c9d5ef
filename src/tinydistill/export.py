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
import contextlib
import json
import logging
import os
import sys
import warnings
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
import torch
from transformers.utils import logging as hf_logging

from tinydistill.atomic import atomic_directory
from tinydistill.bench import measure_variants, versions
from tinydistill.data.files import task_from_argument
from tinydistill.data.glue import load_examples
from tinydistill.errors import ConfigError, TinyDistillError
from tinydistill.inference import (
    EXPORT_DIR,
    EXPORT_EXTRA,
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
from tinydistill.teacher_checks import task_mismatch, tokenizer_difference

log = logging.getLogger(__name__)

#: Inputs of the self-check that runs without data: batch 1, and 3 pairs of different lengths (padding).
SMOKE_TEXTS: tuple[list[str], list[str] | None] = (["a short sentence ."], None)
SMOKE_PAIRS: tuple[list[str], list[str] | None] = (
    ["the first of three examples", "two", "a rather longer sentence, so that the others need padding here"],
    ["with a second text", "texts", "and its pair"],
)


class ExportCheckError(RuntimeError):
    """The exported model does not compute what the PyTorch model computes."""


def require_export_tools() -> None:
    """One line naming the extra when the export's optional dependencies are missing."""
    missing = [m for m in ("onnx", "onnxruntime", "onnxscript") if _missing(m)]
    if missing:
        raise ConfigError(f"the export needs {', '.join(missing)}, not installed: {EXPORT_EXTRA}")


def _missing(module: str) -> bool:
    try:
        __import__(module)
    except ImportError:
        return True
    return False


class _Logits(torch.nn.Module):
    """The classifier with named tensor inputs and its logits as the only output (what the graph returns)."""

    def __init__(self, model: torch.nn.Module) -> None:
        super().__init__()
        self.model = model

    def forward(self, input_ids: torch.Tensor, attention_mask: torch.Tensor | None = None,
                token_type_ids: torch.Tensor | None = None) -> torch.Tensor:
        kwargs = {"attention_mask": attention_mask}
        if token_type_ids is not None:  # DistilBERT-type models take none
            kwargs["token_type_ids"] = token_type_ids
        return self.model(input_ids=input_ids, **kwargs).logits


@contextlib.contextmanager
def _quiet() -> Iterator[None]:
    """The exporter's and quantiser's advice (deprecations, 'torchvision is not installed', 'consider
    pre-processing') is not the user's business; errors still raise."""
    loggers = [logging.getLogger(n) for n in ("torch.onnx", "torch.export", "")]
    levels = [lg.level for lg in loggers]
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        for lg in loggers:
            lg.setLevel(logging.ERROR)
        try:
            yield
        finally:
            for lg, level in zip(loggers, levels):
                lg.setLevel(level)


EXPORTERS = ("torchscript", "dynamo")
TORCHSCRIPT_OPSET = 17


def export_onnx(clf: TorchClassifier, file: Path, exporter: str = "torchscript") -> dict[str, Any]:
    """Write the fp32 ONNX graph of `clf` to `file`, with dynamic batch and sequence axes, by `exporter`
    (see the module docstring)."""
    if exporter not in EXPORTERS:
        raise ConfigError(f"--exporter {exporter}: expected one of {', '.join(EXPORTERS)}")
    tokenizer = clf.tokenizer
    # A padded example batch of 2, so neither axis is specialised to 1 and the mask path is traced.
    example = tokenizer(list(SMOKE_PAIRS[0][:2]), list(SMOKE_PAIRS[1][:2]), padding=True, return_tensors="pt")
    # In _Logits.forward's order: the TorchScript exporter names the graph's inputs by position.
    names = [n for n in ("input_ids", "attention_mask", "token_type_ids")
             if n in example and n in tokenizer.model_input_names]
    kwargs = {n: example[n] for n in names}
    if exporter == "torchscript":
        if names != ["input_ids", "attention_mask", "token_type_ids"][: len(names)]:  # positional: no gaps allowed
            raise ConfigError(f"--exporter torchscript passes the inputs by position and this tokenizer gives {names}; "
                              f"use --exporter dynamo")
        with _quiet():
            torch.onnx.export(
                _Logits(clf.model).eval(), tuple(kwargs[n] for n in names), str(file), dynamo=False,
                input_names=names, output_names=["logits"], opset_version=TORCHSCRIPT_OPSET,
                dynamic_axes={n: {0: "batch", 1: "sequence"} for n in names})
        return {"method": "torch.onnx.export(dynamo=False)", "opset": TORCHSCRIPT_OPSET, "inputs": names,
                "outputs": ["logits"]}
    with _quiet():
        program = torch.onnx.export(
            _Logits(clf.model).eval(), (), kwargs=kwargs, f=str(file), dynamo=True, input_names=names,
            output_names=["logits"], dynamic_shapes={n: {0: "batch", 1: "sequence"} for n in names},
            external_data=False, verbose=False)
    opset = next((o.version for o in program.model_proto.opset_import if o.domain in ("", "ai.onnx")), None)
    return {"method": "torch.onnx.export(dynamo=True)", "opset": opset, "inputs": names, "outputs": ["logits"]}


def quantize_int8(src: Path, dst: Path, per_channel: bool = False) -> dict[str, Any]:
    """Dynamic quantisation (ONNX Runtime): int8 weights, activations quantised per batch at run time."""
    from onnxruntime.quantization import QuantType, quantize_dynamic

    with _quiet():
        quantize_dynamic(str(src), str(dst), weight_type=QuantType.QInt8, per_channel=per_channel)
    return {"method": "onnxruntime.quantization.quantize_dynamic", "weight_type": "QInt8", "per_channel": per_channel}


def smoke_check(clf: TorchClassifier, exported: list[OnnxClassifier], atol: float) -> dict[str, Any]:
    """Logits of each ONNX model on two input shapes against PyTorch's; the fp32 one must match within `atol`."""
    out: dict[str, Any] = {"shapes": [], "max_logit_diff": {}}
    for texts, pairs in (SMOKE_TEXTS, SMOKE_PAIRS):
        batch = clf.tokenizer(texts, pairs, padding=True, return_tensors="pt")
        out["shapes"].append(list(batch["input_ids"].shape))
        ref = clf.logits(batch)
        for onnx_clf in exported:
            try:
                got = onnx_clf.logits(batch)
            except Exception as e:  # noqa: BLE001 - ONNX Runtime's errors (e.g. a fixed axis): one line
                text = str(e).strip().splitlines()[0] if str(e).strip() else type(e).__name__
                raise ExportCheckError(f"{onnx_clf.path.name} fails on inputs of shape "
                                       f"{tuple(batch['input_ids'].shape)}: {text}") from None
            if got.shape != ref.shape or not np.isfinite(got).all():
                raise ExportCheckError(f"{onnx_clf.path.name}: logits of shape {got.shape} (finite: "
                                       f"{bool(np.isfinite(got).all())}) for inputs of shape "
                                       f"{tuple(batch['input_ids'].shape)}; PyTorch gives {ref.shape}")
            diff = float(np.abs(got - ref).max())
            key = onnx_clf.variant
            out["max_logit_diff"][key] = max(diff, out["max_logit_diff"].get(key, 0.0))
    fp32 = out["max_logit_diff"].get("onnx fp32", 0.0)
    if fp32 > atol:
        raise ExportCheckError(f"the ONNX model's logits differ from PyTorch's by up to {fp32:.2e} (> --atol {atol:g}) "
                               f"on inputs of shapes {out['shapes']}; nothing was written")
    return out


def find_teacher(model_dir: Path, teacher: str | os.PathLike | None) -> Path | None:
    """The teacher to time as the reference: `teacher`, else the `teacher_dir` of the model's metrics.json (None:
    the model itself is the reference, e.g. when it is the teacher)."""
    if teacher is not None:
        return Path(teacher)
    metrics = model_dir / "metrics.json"
    try:
        t_dir = json.loads(metrics.read_text()).get("teacher_dir") if metrics.is_file() else None
    except (OSError, ValueError, AttributeError):
        t_dir = None
    if not t_dir:
        return None
    if not Path(t_dir).is_dir():
        log.warning("export: teacher_dir=%s in %s not found; speed-ups are over the model's own PyTorch fp32 "
                    "(give --teacher)", t_dir, metrics)
        return None
    return Path(t_dir)


def run_record(model_dir: Path) -> dict[str, Any]:
    """Which run the model is (task, stage, run, seed, teacher_dir), from its metrics.json, for the report."""
    try:
        data = json.loads((model_dir / "metrics.json").read_text())
    except (OSError, ValueError):
        return {}
    if not isinstance(data, dict):
        return {}
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
