"""An exported classifier behind one interface, run by PyTorch or by ONNX Runtime.

    clf = load_classifier("artifacts/task/sst2/none-noaug/seed42")                 # PyTorch (model.safetensors)
    clf = load_classifier("artifacts/task/sst2/none-noaug/seed42/onnx")            # ONNX Runtime (model.onnx)
    clf = load_classifier("artifacts/task/sst2/none-noaug/seed42/onnx/model_int8.onnx")
    logits = clf.logits(clf.tokenizer(texts, padding=True, return_tensors="pt"))

A model folder is what `save_pretrained` writes (config.json, model.safetensors, tokenizer); an ONNX folder is
what `python -m tinydistill.export` writes (model.onnx, model_int8.onnx, config.json with the label names,
tokenizer). `predict` turns the logits into labels, `export` checks its ONNX files with them and `bench` times
every variant on the same batches.
"""

from __future__ import annotations

import json
import os
from abc import ABC, abstractmethod
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import numpy as np
import torch
from transformers import (
    AutoConfig,
    AutoModelForSequenceClassification,
    AutoTokenizer,
    PretrainedConfig,
    PreTrainedModel,
    PreTrainedTokenizerBase,
)

from tinydistill.errors import ConfigError, first_line
from tinydistill.models.loading import check_weight_files, load_reporting_fresh

#: The files `python -m tinydistill.export` writes, and the folder it writes them to by default.
ONNX_FILE = "model.onnx"
INT8_FILE = "model_int8.onnx"
EXPORT_DIR = "onnx"
EXPORT_JSON = "export.json"
EXPORT_EXTRA = "pip install -e '.[export]'"
SERVE_EXTRA = "pip install -e '.[serve]'"
#: Operators only a quantised graph holds (quantize_dynamic's MatMulInteger and DynamicQuantizeLinear, ...).
QUANTISED_OPS = frozenset({"MatMulInteger", "DynamicQuantizeLinear", "QLinearMatMul", "MatMulIntegerToFloat",
                           "DynamicQuantizeMatMul", "QuantizeLinear", "QGemm"})
#: PyTorch's precisions: float32, or bfloat16 matrix products under autocast (fast only on CPUs with avx512_bf16 or
#: AMX: `hardware.native_cpu_bf16`).
TORCH_PRECISIONS = ("fp32", "bf16")
#: Weight files of a PyTorch model folder (`save_pretrained` writes safetensors).
WEIGHT_PATTERNS = ("*.safetensors", "pytorch_model*.bin")


def megabytes(*files: str | os.PathLike) -> float:
    """Size of the files in MB (10^6 bytes), missing ones ignored."""
    return sum(Path(f).stat().st_size for f in files if Path(f).is_file()) / 1e6


def require_onnxruntime() -> Any:
    """The onnxruntime module, or a one-line error saying how to install the optional extra."""
    try:
        import onnxruntime
    except ImportError:
        raise ConfigError(f"ONNX models need onnxruntime, which is not installed: {EXPORT_EXTRA}") from None
    return onnxruntime


class Classifier(ABC):
    """A sequence classifier (or regressor) with its tokenizer and label names."""

    backend = ""

    def __init__(self, path: Path, folder: Path, tokenizer: PreTrainedTokenizerBase, config: PretrainedConfig,
                 precision: str = "fp32") -> None:
        self.path = path  # the file (ONNX) or folder (PyTorch) the weights come from
        self.folder = folder  # where config.json and the tokenizer are
        self.tokenizer = tokenizer
        self.config = config
        self.precision = precision

    @property
    def source(self) -> Path:
        """The model folder this classifier was made from: its own folder, or for an export the folder
        `export.json` names (the folder above `onnx/` when there is no export.json)."""
        if self.backend == "pytorch":
            return self.path
        record = self.folder / EXPORT_JSON
        if record.is_file():
            try:
                return Path(json.loads(record.read_text())["source"])
            except (OSError, ValueError, KeyError, TypeError):
                pass
        return self.folder.parent if self.folder.name == EXPORT_DIR else self.folder

    @property
    def variant(self) -> str:
        """`pytorch fp32`, `onnx fp32` or `onnx int8`."""
        return f"{self.backend} {self.precision}"

    @property
    def is_regression(self) -> bool:
        return self.config.problem_type == "regression" or self.config.num_labels == 1

    @property
    def label_names(self) -> list[str]:
        """Label names in id order, from the config's id2label."""
        id2label = {int(k): str(v) for k, v in (self.config.id2label or {}).items()}
        return [id2label.get(i, f"LABEL_{i}") for i in range(self.config.num_labels)]

    @property
    def input_names(self) -> list[str]:
        return list(self.tokenizer.model_input_names)

    @abstractmethod
    def size_mb(self) -> float:
        """Size of the weights file in MB."""

    @abstractmethod
    def logits(self, batch: Mapping[str, Any]) -> np.ndarray:
        """Logits (batch, num_labels) as float32 for a tokenised batch (torch tensors or numpy arrays)."""


class TorchClassifier(Classifier):
    backend = "pytorch"

    def __init__(self, model: PreTrainedModel, path: Path, tokenizer: PreTrainedTokenizerBase,
                 precision: str = "fp32") -> None:
        if precision not in TORCH_PRECISIONS:
            raise ConfigError(f"PyTorch precision {precision!r}: expected one of {', '.join(TORCH_PRECISIONS)}")
        super().__init__(path, path, tokenizer, model.config, precision)
        self.model = model.eval()

    def size_mb(self) -> float:
        return megabytes(*(f for p in WEIGHT_PATTERNS for f in self.path.glob(p)))

    def parameters(self) -> int:
        return sum(p.numel() for p in self.model.parameters())

    @torch.inference_mode()
    def logits(self, batch: Mapping[str, Any]) -> np.ndarray:
        inputs = {k: torch.as_tensor(v) for k, v in batch.items() if k in self.input_names}
        if self.precision == "bf16":  # matrix products in bfloat16, weights kept in float32 (autocast)
            with torch.autocast("cpu", dtype=torch.bfloat16):
                return self.model(**inputs).logits.float().numpy()
        return self.model(**inputs).logits.float().numpy()


class OnnxClassifier(Classifier):
    backend = "onnx"

    def __init__(self, path: Path, tokenizer: PreTrainedTokenizerBase, config: PretrainedConfig,
                 threads: int | None = None, spinning: bool = True, profile: str | None = None) -> None:
        ort = require_onnxruntime()
        options = ort.SessionOptions()
        if profile:  # ORT's profiler: every operator's kernel time, written by session.end_profiling()
            options.enable_profiling = True
            options.profile_file_prefix = profile
        # The same thread count as PyTorch's, so latencies compare like with like.
        options.intra_op_num_threads = threads or torch.get_num_threads()
        options.inter_op_num_threads = 1
        # Spinning workers answer the next operator sooner but burn a core between calls (ORT's default: on).
        options.add_session_config_entry("session.intra_op.allow_spinning", "1" if spinning else "0")
        options.log_severity_level = 3  # errors only: ORT warns about every initializer it folds
        try:
            self.session = ort.InferenceSession(str(path), options, providers=["CPUExecutionProvider"])
        except Exception as e:  # noqa: BLE001 - InvalidProtobuf, Fail, ...: one line naming the file
            raise ConfigError(f"{path}: not a readable ONNX model ({first_line(e)})") from None
        outputs = self.session.get_outputs()
        out = next((o for o in outputs if o.name == "logits"), outputs[0])
        if len(out.shape) != 2:
            raise ConfigError(f"{path}: its output {out.name!r} has shape {out.shape}, not (batch, labels): "
                              f"not a sequence classifier")
        self.output = out.name
        self.graph_inputs = [i.name for i in self.session.get_inputs()]
        super().__init__(path, path.parent, tokenizer, config, _onnx_precision(path))

    @property
    def input_names(self) -> list[str]:
        return self.graph_inputs

    def size_mb(self) -> float:
        return megabytes(self.path, f"{self.path}.data")  # .data: weights stored beside the graph, if any

    def logits(self, batch: Mapping[str, Any]) -> np.ndarray:
        feeds = {}
        for name in self.graph_inputs:
            value = batch.get(name)
            if value is None:  # e.g. token_type_ids a tokenizer did not return: all segment 0
                value = np.zeros_like(_numpy(batch["input_ids"]))
            feeds[name] = _numpy(value).astype(np.int64, copy=False)
        return self.session.run([self.output], feeds)[0].astype(np.float32, copy=False)


class OpenVinoClassifier(Classifier):
    """An ONNX file compiled by OpenVINO for this CPU (the optional `serve` extra), in fp32 or bf16 inference
    precision."""

    backend = "openvino"

    def __init__(self, path: Path, tokenizer: PreTrainedTokenizerBase, config: PretrainedConfig,
                 threads: int | None = None, precision: str = "fp32") -> None:
        try:
            import openvino
        except ImportError:
            raise ConfigError(f"{path}: served by OpenVINO, which is not installed: {SERVE_EXTRA}") from None
        hint = {"fp32": "f32", "bf16": "bf16"}[precision]
        settings = {"INFERENCE_NUM_THREADS": threads or torch.get_num_threads(), "INFERENCE_PRECISION_HINT": hint,
                    "PERFORMANCE_HINT": "LATENCY"}
        self.compiled = openvino.Core().compile_model(str(path), "CPU", settings)
        self.graph_inputs = [i.get_any_name() for i in self.compiled.inputs]
        super().__init__(path, path.parent, tokenizer, config, precision)

    @property
    def input_names(self) -> list[str]:
        return self.graph_inputs

    def size_mb(self) -> float:
        return megabytes(self.path)

    def logits(self, batch: Mapping[str, Any]) -> np.ndarray:
        feeds = {n: _numpy(batch[n] if n in batch else np.zeros_like(_numpy(batch["input_ids"]))).astype(np.int64)
                 for n in self.graph_inputs}
        return np.asarray(self.compiled(feeds)[0], dtype=np.float32)


def _numpy(value: Any) -> np.ndarray:
    return value.numpy() if isinstance(value, torch.Tensor) else np.asarray(value)


def _onnx_precision(path: Path) -> str:
    """`int8` when the graph holds quantised operators, else `fp32` (read from the graph, not the file name)."""
    try:
        import onnx
    except ImportError:
        raise ConfigError(f"ONNX models need the onnx package, which is not installed: {EXPORT_EXTRA}") from None
    graph = onnx.load(str(path), load_external_data=False).graph
    return "int8" if any(n.op_type in QUANTISED_OPS for n in graph.node) else "fp32"


def _architecture_error(path: Path, config: PretrainedConfig) -> str | None:
    """Why the folder's config names no sequence classifier (None if it names one, or names nothing)."""
    archs = list(getattr(config, "architectures", None) or [])
    if archs and not any(a.endswith("ForSequenceClassification") for a in archs):
        return (f"{path} holds a {archs[0]}, not a sequence classifier: give a fine-tuned classifier folder "
                f"(what stage=finetune or stage=task writes)")
    return None


def _tokenizer(folder: Path) -> PreTrainedTokenizerBase:
    try:
        return AutoTokenizer.from_pretrained(str(folder))
    except Exception as e:  # noqa: BLE001 - missing or unreadable tokenizer files: one line
        raise ConfigError(f"{folder}: cannot load the tokenizer ({first_line(e)}); a model folder needs its "
                          f"tokenizer files beside config.json") from None


def _config(folder: Path) -> PretrainedConfig:
    if not (folder / "config.json").is_file():
        raise ConfigError(f"{folder} has no config.json: not a Hugging Face model folder or an export of "
                          f"`python -m tinydistill.export`")
    try:
        return AutoConfig.from_pretrained(str(folder))
    except Exception as e:  # noqa: BLE001 - bad JSON, unknown model type: one line
        raise ConfigError(f"{folder / 'config.json'}: cannot read the model's config ({first_line(e)})") from None


def load_torch_classifier(folder: str | os.PathLike) -> TorchClassifier:
    """The PyTorch classifier saved in `folder`, after checking it is one: a masked LM or a bare encoder would
    load with a randomly initialised classification head, and its labels would be noise."""
    folder = Path(folder)
    if not folder.is_dir():
        raise ConfigError(f"model folder {folder} does not exist")
    config = _config(folder)
    reason = _architecture_error(folder, config)
    if reason:
        raise ConfigError(reason)
    if not any(f for p in WEIGHT_PATTERNS for f in folder.glob(p)):
        raise ConfigError(f"{folder} has no model weights (model.safetensors) and no {ONNX_FILE}")
    check_weight_files(folder)
    model, fresh = load_reporting_fresh(AutoModelForSequenceClassification, str(folder))
    if fresh:
        raise ConfigError(f"{folder} is not a trained sequence classifier: loading it as one initialises "
                          f"{', '.join(fresh[:4])} at random")
    return TorchClassifier(model, folder, _tokenizer(folder))


def load_onnx_classifier(file: str | os.PathLike, threads: int | None = None, spinning: bool = True,
                         profile: str | None = None) -> OnnxClassifier:
    """The ONNX model `file` with the config (label names) and tokenizer beside it; `profile`: a file prefix for
    ONNX Runtime's operator profile."""
    file = Path(file)
    if not file.is_file():
        raise ConfigError(f"ONNX model {file} does not exist")
    config = _config(file.parent)
    return OnnxClassifier(file, _tokenizer(file.parent), config, threads, spinning, profile)


def load_classifier(path: str | os.PathLike, threads: int | None = None) -> Classifier:
    """A classifier from a model folder (PyTorch), an ONNX folder (its model.onnx) or an .onnx file."""
    path = Path(path)
    if not path.exists():
        raise ConfigError(f"model {path} does not exist (give a model folder, an ONNX folder or an .onnx file)")
    if path.is_file():
        if path.suffix != ".onnx":
            raise ConfigError(f"model {path} is a file but not an .onnx model; give a model folder or an .onnx file")
        return load_onnx_classifier(path, threads)
    if (path / ONNX_FILE).is_file() and not any(f for p in WEIGHT_PATTERNS for f in path.glob(p)):
        return load_onnx_classifier(path / ONNX_FILE, threads)
    return load_torch_classifier(path)


def onnx_variants(model_dir: str | os.PathLike, threads: int | None = None) -> list[OnnxClassifier]:
    """The ONNX files exported for `model_dir` (in its `onnx/` folder), fp32 first; [] when there are none."""
    folder = Path(model_dir) / EXPORT_DIR
    return [load_onnx_classifier(folder / name, threads) for name in (ONNX_FILE, INT8_FILE)
            if (folder / name).is_file()]


def recorded_choice(path: str | os.PathLike, name: str | None = None) -> dict[str, Any] | None:
    """The backend `python -m tinydistill.serve bench` chose for the model folder (or its export folder) `path`,
    from export.json's `serve.choice`, or with `name` that candidate's row of the recorded table; None when nothing
    is recorded (or `path` is a file: it is served as given)."""
    path = Path(path)
    records = [r for r in (path / EXPORT_JSON, path / EXPORT_DIR / EXPORT_JSON) if r.is_file()]
    if path.is_file() or not records:
        return None
    try:
        serve = json.loads(records[0].read_text())["serve"]
        rows = {r["name"]: r for r in serve["rows"] if r["model"] == "student"}
        found = serve["choice"] if name is None else rows.get(name)
    except (OSError, ValueError, KeyError, TypeError):
        return None
    if found is None:
        raise ConfigError(f"--backend {name}: not in the table recorded in {records[0]} ({', '.join(rows)})")
    keys = ("name", "runtime", "precision", "file", "spinning")
    return {**{k: found.get(k) for k in keys}, "source": serve.get("source"), "folder": str(records[0].parent)}


def load_choice(choice: Mapping[str, Any], threads: int | None = None) -> Classifier:
    """The classifier a recorded choice names: runtime (pytorch, onnx, openvino), precision and file."""
    folder = Path(choice["folder"])
    runtime, precision = choice["runtime"], choice["precision"]
    if runtime == "pytorch":
        source = Path(choice.get("source") or "")
        clf = load_torch_classifier(source if source.is_dir() else folder.parent)  # the folder above onnx/
        return TorchClassifier(clf.model, clf.path, clf.tokenizer, precision)
    file = folder / choice["file"]
    if not file.is_file():
        raise ConfigError(f"{file} does not exist: `serve bench` keeps only the chosen candidate's file; run it "
                          f"again, or give --backend recorded")
    if runtime == "onnx":
        return load_onnx_classifier(file, threads, choice.get("spinning") is not False)  # older records: on
    if runtime == "openvino":
        return OpenVinoClassifier(file, _tokenizer(folder), _config(folder), threads, precision)
    raise ConfigError(f"{folder / EXPORT_JSON}: serve.choice names runtime {runtime!r}; expected pytorch, onnx or "
                      f"openvino")
