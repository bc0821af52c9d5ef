"""A classifier's ONNX graph: the export (TorchScript-based or dynamo), ONNX Runtime's dynamic int8 quantisation, and
the self-check that the exported logits equal PyTorch's (see `tinydistill.export`)."""

from __future__ import annotations

import contextlib
import logging
import warnings
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
import torch

from tinydistill.errors import ConfigError
from tinydistill.inference import EXPORT_EXTRA, OnnxClassifier, TorchClassifier

log = logging.getLogger("tinydistill.export")


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
    missing = [m for m in ("onnx", "onnxruntime", "onnxscript") if not installed(m)]
    if missing:
        raise ConfigError(f"the export needs {', '.join(missing)}, not installed: {EXPORT_EXTRA}")


def installed(module: str) -> bool:
    """Whether an optional dependency can be imported (the export extra, openvino for serve)."""
    try:
        __import__(module)
    except ImportError:
        return False
    return True


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


def quantize_int8(src: Path, dst: Path, per_channel: bool = False, fused: bool = False) -> dict[str, Any]:
    """Dynamic quantisation (ONNX Runtime): int8 weights, activations quantised per batch at run time. `fused`: the
    graph holds `fuse_bert`'s operators (its Attention becomes QAttention)."""
    from onnxruntime.quantization import QuantType, quantize_dynamic

    extra = {"DefaultTensorType": onnx_float()} if fused else None
    with _quiet():
        quantize_dynamic(str(src), str(dst), weight_type=QuantType.QInt8, per_channel=per_channel,
                         extra_options=extra)
    return {"method": "onnxruntime.quantization.quantize_dynamic", "weight_type": "QInt8", "per_channel": per_channel}


def fuse_bert(src: Path, dst: Path, num_heads: int, hidden_size: int) -> dict[str, int]:
    """ONNX Runtime's transformer optimiser (`onnxruntime.transformers.optimizer`, model_type bert): attention,
    embedding + LayerNorm, bias + GELU and residual + LayerNorm become one operator each. The Attention fusion
    matches the eager attention's pattern, not the one transformers' SDPA attention traces to, so export the model
    with attn_implementation="eager" first. Returns the fused operators found."""
    from onnxruntime.transformers import optimizer

    with _quiet():
        model = optimizer.optimize_model(str(src), model_type="bert", num_heads=num_heads, hidden_size=hidden_size)
        model.save_model_to_file(str(dst))
    return {k: v for k, v in model.get_fused_operator_statistics().items() if v}


class _Rows:
    """onnxruntime.quantization's CalibrationDataReader over tokenised batches (int64 numpy feeds)."""

    def __init__(self, batches: list[dict[str, np.ndarray]]) -> None:
        self.rows = iter(batches)

    def get_next(self) -> dict[str, np.ndarray] | None:
        return next(self.rows, None)


def quantize_int8_static(src: Path, dst: Path, calibration: list[dict[str, np.ndarray]], per_channel: bool = False,
                         fmt: str = "qdq") -> dict[str, Any]:
    """Static quantisation (ONNX Runtime): int8 weights and activations, the activations' ranges calibrated
    (min-max) on `calibration` feeds, the matrix products only. `fmt`: qdq (QuantizeLinear/DequantizeLinear pairs
    that ORT fuses at load) or qoperator (QLinearMatMul written out)."""
    from onnxruntime.quantization import CalibrationDataReader, QuantFormat, QuantType, quantize_static

    import onnxruntime

    reader = type("Reader", (_Rows, CalibrationDataReader), {})(calibration)
    onnxruntime.set_default_logger_severity(3)  # the calibration session warns of every initializer it drops
    with _quiet():
        quantize_static(str(src), str(dst), reader, quant_format=QuantFormat.QDQ if fmt == "qdq" else
                        QuantFormat.QOperator, op_types_to_quantize=["MatMul"], per_channel=per_channel,
                        activation_type=QuantType.QUInt8, weight_type=QuantType.QInt8,
                        extra_options={"DefaultTensorType": onnx_float()})
    return {"method": "onnxruntime.quantization.quantize_static", "format": fmt, "per_channel": per_channel,
            "activations": "QUInt8", "weights": "QInt8", "calibration_batches": len(calibration)}


def onnx_float() -> int:
    """onnx.TensorProto.FLOAT: the type the quantiser assumes where shape inference cannot see through a fused
    (com.microsoft) operator."""
    import onnx

    return onnx.TensorProto.FLOAT


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
