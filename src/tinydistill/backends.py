"""The ways this machine can run a classifier (the candidates `python -m tinydistill.serve bench` times), and the
files each needs, built from the PyTorch model.

A candidate the machine cannot run is skipped with one log line: bf16 without bfloat16 instructions
(`hardware.native_cpu_bf16`), the ONNX Runtime ones without onnxruntime, the OpenVINO ones without openvino (the
optional `serve` extra). A candidate whose file cannot be built (a model family the optimiser or quantiser does not
know) is skipped the same way, naming the error.

| candidate | what runs |
|---|---|
| pytorch fp32, pytorch bf16 | the model folder; bf16: autocast, matrix products in bfloat16 |
| onnx fp32 | `model.onnx` as `export` writes it (SDPA attention, unfused) |
| onnx fp32 no-spin, onnx int8 dynamic no-spin | the same files, ONNX Runtime's idle threads sleeping instead of spinning |
| onnx fp32 fused | the model exported with eager attention, then ORT's BERT optimiser (`onnx_graph.fuse_bert`) |
| onnx int8 dynamic [per-channel] | the fused graph, `quantize_dynamic` (QAttention, MatMulInteger) |
| onnx int8 static [per-channel] | the fused graph, `quantize_static` (QDQ), calibrated on training rows |
| openvino fp32, openvino bf16 | the eager-attention ONNX file compiled by OpenVINO (it fuses on its own) |
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
from transformers import AutoModelForSequenceClassification

from tinydistill.errors import first_line
from tinydistill.hardware import native_cpu_bf16
from tinydistill.inference import (
    EXPORT_EXTRA,
    SERVE_EXTRA,
    Classifier,
    OpenVinoClassifier,
    TorchClassifier,
    load_onnx_classifier,
)
from tinydistill.onnx_graph import export_onnx, fuse_bert, installed, quantize_int8, quantize_int8_static

log = logging.getLogger("tinydistill.serve")

#: The candidates in the order they are built and listed; the first is the reference every other must agree with.
CANDIDATES = ("pytorch fp32", "pytorch bf16", "onnx fp32", "onnx fp32 no-spin", "onnx fp32 fused", "onnx int8 dynamic",
              "onnx int8 dynamic no-spin", "onnx int8 dynamic per-channel", "onnx int8 static",
              "onnx int8 static per-channel", "openvino fp32", "openvino bf16")
REFERENCE = CANDIDATES[0]
PLAIN, EAGER, FUSED = "model.onnx", "model_eager.onnx", "model_fused.onnx"


@dataclass(frozen=True)
class Candidate:
    """One way to run the model: `runtime` (pytorch, onnx, openvino) at `precision` (fp32, bf16, int8), from
    `file` in the candidates' folder (None: the PyTorch model folder); `recipe`: how the file was made; `spinning`:
    off, ONNX Runtime's idle workers sleep, which wins when other jobs want the cores."""

    name: str
    runtime: str
    precision: str
    file: str | None = None
    recipe: dict[str, Any] = field(default_factory=dict, hash=False, compare=False)
    spinning: bool = True  # ONNX Runtime's worker threads spin between operators (its default)

    def load(self, model: TorchClassifier, folder: Path, threads: int) -> Classifier:
        """The classifier, its sessions set to `threads` (PyTorch reads torch's thread count at run time)."""
        if self.runtime == "pytorch":
            return TorchClassifier(model.model, model.path, model.tokenizer, self.precision)
        if self.runtime == "onnx":
            return load_onnx_classifier(folder / self.file, threads, self.spinning)
        return OpenVinoClassifier(folder / self.file, model.tokenizer, model.config, threads, self.precision)

    def record(self) -> dict[str, Any]:
        return {"name": self.name, "runtime": self.runtime, "precision": self.precision, "file": self.file,
                "spinning": self.spinning, "recipe": self.recipe}


def _skip(names: str, why: str) -> None:
    log.info("serve: %s skipped: %s", names, why)


def build_candidates(clf: TorchClassifier, folder: Path, calibration: list[dict[str, np.ndarray]],
                     wanted: tuple[str, ...] = CANDIDATES) -> list[Candidate]:
    """The candidates this machine can run, their files written into `folder` (the module docstring's table).
    `calibration`: tokenised training batches for static quantisation."""
    out = [Candidate(REFERENCE, "pytorch", "fp32")]
    bf16 = native_cpu_bf16()
    if "pytorch bf16" in wanted:
        if bf16:
            out.append(Candidate("pytorch bf16", "pytorch", "bf16"))
        else:
            _skip("pytorch bf16", "this CPU has no bfloat16 instructions (avx512_bf16 or AMX)")
    onnx_wanted = [n for n in wanted if n.startswith("onnx")]
    vino_wanted = [n for n in wanted if n.startswith("openvino") and (bf16 or not n.endswith("bf16"))]
    if "openvino bf16" in wanted and not bf16:
        _skip("openvino bf16", "this CPU has no bfloat16 instructions (avx512_bf16 or AMX)")
    if not installed("onnx"):
        _skip(", ".join(onnx_wanted + vino_wanted) or "the ONNX candidates", f"onnx is not installed ({EXPORT_EXTRA})")
        return out
    if onnx_wanted and not installed("onnxruntime"):
        _skip(", ".join(onnx_wanted), f"onnxruntime is not installed ({EXPORT_EXTRA})")
        onnx_wanted = []
    if vino_wanted and not installed("openvino"):
        _skip(", ".join(vino_wanted), f"openvino is not installed ({SERVE_EXTRA})")
        vino_wanted = []
    clf.tokenizer.save_pretrained(folder)  # the ONNX files are read with the config and tokenizer beside them
    clf.config.save_pretrained(folder)
    steps = _steps(clf, folder, calibration)
    for name in (n for n in CANDIDATES if n in onnx_wanted + vino_wanted):
        try:
            out.append(steps[name]())
        except Exception as e:  # noqa: BLE001 - an exporter, optimiser or quantiser failure: skip with its reason
            _skip(name, f"building its file failed ({first_line(e)})")
    return out


def _steps(clf: TorchClassifier, folder: Path, calibration: list[dict[str, np.ndarray]]) -> dict[str, Callable]:
    """For each file-backed candidate, a function that writes its file (and the files it starts from, once)."""
    made: dict[str, Any] = {}

    def once(file: str, make: Callable[[Path], Any]) -> Any:
        if file not in made:
            made[file] = make(folder / file)
        return made[file]

    def eager() -> Any:
        model = AutoModelForSequenceClassification.from_pretrained(str(clf.path), attn_implementation="eager")
        return once(EAGER, lambda f: export_onnx(TorchClassifier(model, clf.path, clf.tokenizer), f))

    def fused() -> dict[str, Any]:
        eager()
        heads, hidden = clf.config.num_attention_heads, clf.config.hidden_size
        return {"exporter": "eager attention", "fused": once(FUSED, lambda f: fuse_bert(folder / EAGER, f, heads,
                                                                                         hidden))}

    def dynamic(per_channel: bool) -> Candidate:
        recipe = fused()
        name = "onnx int8 dynamic" + (" per-channel" if per_channel else "")
        file = f"model_int8_dynamic{'_pc' if per_channel else ''}.onnx"
        quant = once(file, lambda f: quantize_int8(folder / FUSED, f, per_channel, fused=True))
        made[name] = Candidate(name, "onnx", "int8", file, {**recipe, "quantization": quant})
        return made[name]

    def static(per_channel: bool) -> Candidate:
        recipe = fused()
        name = "onnx int8 static" + (" per-channel" if per_channel else "")
        file = f"model_int8_static{'_pc' if per_channel else ''}.onnx"
        quant = quantize_int8_static(folder / FUSED, folder / file, calibration, per_channel)
        return Candidate(name, "onnx", "int8", file, {**recipe, "quantization": quant})

    def plain(spinning: bool = True) -> Candidate:
        name = "onnx fp32" + ("" if spinning else " no-spin")
        return Candidate(name, "onnx", "fp32", PLAIN, once(PLAIN, lambda f: export_onnx(clf, f)), spinning)

    def dynamic_no_spin() -> Candidate:
        c = made.get("onnx int8 dynamic") or dynamic(False)
        return Candidate("onnx int8 dynamic no-spin", "onnx", "int8", c.file, c.recipe, False)

    def vino(precision: str) -> Candidate:
        return Candidate(f"openvino {precision}", "openvino", precision, EAGER, {"exporter": eager()})

    return {
        "onnx fp32": plain, "onnx fp32 no-spin": lambda: plain(False),
        "onnx int8 dynamic no-spin": dynamic_no_spin,
        "onnx fp32 fused": lambda: Candidate("onnx fp32 fused", "onnx", "fp32", FUSED, fused()),
        "onnx int8 dynamic": lambda: dynamic(False), "onnx int8 dynamic per-channel": lambda: dynamic(True),
        "onnx int8 static": lambda: static(False), "onnx int8 static per-channel": lambda: static(True),
        "openvino fp32": lambda: vino("fp32"), "openvino bf16": lambda: vino("bf16"),
    }
