"""TinyBERT's intermediate-layer distillation as one reusable piece (general stage and task stage, phase 1).

With student layers ``1..M``, teacher layers ``1..N`` and a layer map ``g`` (:func:`~tinydistill.models.layer_map.
layer_map`; ``g[m-1]`` is the teacher layer student layer ``m`` learns from), the terms are::

    emb = MSE(E_S W_e, E_T)                                   E = hidden_states[0], the embedding output
    att = sum_m attention_loss(A_S[m], A_T[g(m)])             A = pre-softmax scores (default) or probabilities
    hid = sum_m MSE(H_S[m] W_h, H_T[g(m)])                    W_h = W_m with per_layer projections
    loss = w_emb * emb + w_att * att + w_hid * hid

exactly as the reference ``general_distill.py`` / ``task_distill.py`` (whose ``rep_loss`` is ``emb + hid`` and
whose ``loss`` is ``att_loss + rep_loss``): sums over mapped layers, ``torch.nn.MSELoss()`` means over every
element (padding positions included unless ``mask_padding``), attention scores ``<= -100`` zeroed.

Projections (:class:`Projections`): ``shared`` -- one linear map ``W`` for embeddings and every hidden layer, as
the reference code (its single ``fit_dense``); ``separate`` -- ``W_e`` for embeddings and ``W_h`` for the hidden
layers, as the paper's equations; ``per_layer`` -- ``W_e`` and one ``W_m`` per student layer, as TinyBERT's released
checkpoints (their ``fit_denses``, `Projections.from_fit_denses`); ``none`` -- identity, only when student and
teacher widths are equal. They
are saved beside the student (``projections.safetensors`` + ``projections.json``), never inside it, so the
student stays a plain ``transformers`` model; task distillation loads them back with
:meth:`Projections.load`.

A term whose weight is 0 is not computed at all (``no_attn`` also skips attention capture and the head-count
check); the ablation configs switch terms off that way.
"""

from __future__ import annotations

import json
import os
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from safetensors.torch import load_file, save_file
from torch import Tensor, nn

from tinydistill.errors import ConfigError
from tinydistill.losses import REFERENCE_SCORE_FLOOR, attention_loss, hidden_mse
from tinydistill.models.capture import Captured
from tinydistill.models.layer_map import check_compatible, layer_map

PROJECTION_MODES = ("shared", "separate", "per_layer", "none")
ATTENTION_KINDS = ("scores", "probs")
#: Intermediate terms, in logging order; ``pred`` (prediction layer) belongs to task distillation.
TERMS = ("emb", "att", "hid")
PROJECTIONS_WEIGHTS = "projections.safetensors"
PROJECTIONS_JSON = "projections.json"
FORMAT_VERSION = 1


class Projections(nn.Module):
    """Linear maps from the student's hidden width to the teacher's: ``W_e`` (embeddings) and ``W_h`` (layers).

    ``shared``: ``W_e is W_h`` (one ``nn.Linear``, attribute ``shared``); ``separate``: ``embedding`` and
    ``hidden``; ``per_layer``: ``embedding`` and ``layers`` (one per student layer, `num_layers`); ``none``:
    identity. Initialised like BERT (normal, std ``initializer_range``; zero bias), as the reference's ``fit_dense``.
    """

    def __init__(
        self, student_hidden: int, teacher_hidden: int, mode: str = "shared", initializer_range: float = 0.02,
        num_layers: int = 0,
    ) -> None:
        super().__init__()
        if mode not in PROJECTION_MODES:
            raise ConfigError(f"distill.projection={mode!r} must be one of {', '.join(PROJECTION_MODES)}")
        if mode == "none" and student_hidden != teacher_hidden:
            raise ConfigError(
                f"distill.projection='none' needs equal hidden sizes, but the student has {student_hidden} and the "
                f"teacher {teacher_hidden}; use 'shared' or 'separate'"
            )
        self.mode = mode
        self.student_hidden = int(student_hidden)
        self.teacher_hidden = int(teacher_hidden)
        self.num_layers = int(num_layers) if mode == "per_layer" else 0

        def linear() -> nn.Linear:
            layer = nn.Linear(student_hidden, teacher_hidden)
            nn.init.normal_(layer.weight, mean=0.0, std=initializer_range)
            nn.init.zeros_(layer.bias)
            return layer

        names = {"shared": ("shared",), "separate": ("embedding", "hidden"), "per_layer": ("embedding",),
                 "none": ()}[mode]
        for name in names:
            setattr(self, name, linear())
        if mode == "per_layer":
            self.layers = nn.ModuleList(linear() for _ in range(self.num_layers))

    def embedding_map(self, x: Tensor) -> Tensor:
        """``x W_e``."""
        if self.mode == "shared":
            return self.shared(x)
        if self.mode in ("separate", "per_layer"):
            return self.embedding(x)
        return x

    def hidden_map(self, x: Tensor, layer: int = 1) -> Tensor:
        """``x W_h`` (``per_layer``: ``x W_m`` for student layer ``m = layer``, 1-based)."""
        if self.mode == "shared":
            return self.shared(x)
        if self.mode == "separate":
            return self.hidden(x)
        if self.mode == "per_layer":
            return self.layers[layer - 1](x)
        return x

    def describe(self) -> dict[str, Any]:
        return {
            "format_version": FORMAT_VERSION,
            "mode": self.mode,
            "student_hidden_size": self.student_hidden,
            "teacher_hidden_size": self.teacher_hidden,
            "tensors": sorted(self.state_dict()),
            "maps": "y = x @ weight.T + bias; shared: embeddings and hidden layers; "
            "separate: embedding (W_e), hidden (W_h, all layers); per_layer: embedding (W_e), layers.<m-1> (W_m)",
            **({"num_layers": self.num_layers} if self.mode == "per_layer" else {}),
        }

    def save(self, directory: str | os.PathLike) -> None:
        """Write ``projections.safetensors`` (may hold no tensors for ``none``) and ``projections.json``."""
        directory = Path(directory)
        directory.mkdir(parents=True, exist_ok=True)
        state = {k: v.detach().cpu().contiguous() for k, v in self.state_dict().items()}
        save_file(state, str(directory / PROJECTIONS_WEIGHTS), metadata={"mode": self.mode})
        (directory / PROJECTIONS_JSON).write_text(json.dumps(self.describe(), indent=2) + "\n")

    @classmethod
    def load(cls, directory: str | os.PathLike, mode: str | None = None) -> Projections:
        """Projections saved by :meth:`save` in ``directory`` (e.g. a general-distilled student's folder).

        ``mode``, if given, must equal the saved mode (a task stage configured for ``separate`` maps cannot
        continue from ``shared`` ones).
        """
        directory = Path(directory)
        meta_file, weights_file = directory / PROJECTIONS_JSON, directory / PROJECTIONS_WEIGHTS
        if not meta_file.is_file() or not weights_file.is_file():
            raise ConfigError(f"{directory}: no {PROJECTIONS_JSON} / {PROJECTIONS_WEIGHTS} (not a general-distilled student?)")
        meta = json.loads(meta_file.read_text())
        if mode is not None and mode != meta["mode"]:
            raise ConfigError(
                f"distill.projection={mode!r} but the projections in {directory} are {meta['mode']!r}; "
                f"set distill.projection={meta['mode']}"
            )
        proj = cls(meta["student_hidden_size"], meta["teacher_hidden_size"], meta["mode"],
                   num_layers=meta.get("num_layers", 0))
        proj.load_state_dict(load_file(str(weights_file)))
        return proj

    @classmethod
    def from_fit_denses(cls, tensors: Mapping[str, Tensor], mode: str, student_layers: int,
                        teacher_hidden: int) -> tuple[Projections | None, str]:
        """A released TinyBERT checkpoint's projections (`models.released.fit_dense_tensors`): one ``fit_dense``
        as ``shared``, or ``fit_denses.0`` (embeddings) .. ``fit_denses.M`` (layer M) as ``per_layer``; and a line
        saying which were used, or why none: another `mode` configured (``distill.projection``), another teacher
        width or another number of layers."""
        if not tensors:
            return None, ""
        per_layer = any(k.startswith("fit_denses.") for k in tensors)
        found = "per_layer" if per_layer else "shared"
        weights = sorted((k for k in tensors if k.endswith(".weight")), key=lambda k: int(k.split(".")[1]) if per_layer else 0)
        t_hidden, s_hidden = tensors[weights[0]].shape
        what = f"{len(weights)} fit_dense map(s) {s_hidden} -> {t_hidden}"
        if mode != found:
            return None, f"its {what} are {found} projections, not used: set distill.projection={found} to start from them"
        if t_hidden != teacher_hidden:
            return None, f"its {what} do not fit the teacher's width {teacher_hidden}"
        if per_layer and len(weights) != student_layers + 1:
            return None, f"its {what} are not one per hidden state of its {student_layers} layers"
        proj = cls(s_hidden, t_hidden, found, num_layers=student_layers if per_layer else 0)
        names = (["embedding"] + [f"layers.{m}" for m in range(student_layers)]) if per_layer else ["shared"]
        state = {f"{name}.{part}": tensors[f"{key.rsplit('.', 1)[0]}.{part}"]
                 for name, key in zip(names, weights) for part in ("weight", "bias")}
        proj.load_state_dict(state)
        return proj, f"its {what} start the {found} projections of intermediate distillation"


def check_weights(weights: Mapping[str, float]) -> dict[str, float]:
    """The intermediate weights as floats (missing terms count 0); negative weights are an error."""
    out = {t: float(weights.get(t, 0.0) or 0.0) for t in TERMS}
    bad = {t: w for t, w in out.items() if not w >= 0}
    if bad:
        raise ConfigError(f"distill.weights must be >= 0, got {bad}")
    return out


def intermediate_losses(
    student: Captured,
    teacher: Captured,
    projections: Projections,
    mapping: Sequence[int],
    weights: Mapping[str, float],
    attention_kind: str = "scores",
    mask_padding: bool = False,
) -> dict[str, Tensor]:
    """Per-term losses (unweighted, each summed over mapped layers) and their weighted total ``"loss"``.

    Args:
        student: the student's capture (with grad), ``hidden_states`` of length ``M + 1``.
        teacher: the teacher's capture (no grad), ``hidden_states`` of length ``N + 1``.
        projections: the maps applied to the student's states before the MSE.
        mapping: teacher layer (1-based) for each student layer 1..M (``layer_map(...)``).
        weights: ``{"emb": w, "att": w, "hid": w}``; a term with weight 0 is skipped and absent from the result.
        attention_kind: ``"scores"`` (pre-softmax, masked keys 0, reference zeroing of scores <= -100) or
            ``"probs"`` (softmax probabilities, compared as they are).
        mask_padding: average hidden/attention MSEs over real tokens only (default: over every position, as
            the reference's ``MSELoss()``).

    Returns:
        ``{"emb": ..., "att": ..., "hid": ..., "loss": ...}`` restricted to the computed terms plus ``"loss"``.
    """
    if attention_kind not in ATTENTION_KINDS:
        raise ConfigError(f"distill.attention={attention_kind!r} must be one of {', '.join(ATTENTION_KINDS)}")
    w = check_weights(weights)
    m_layers = student.num_layers
    if len(mapping) != m_layers:
        raise ValueError(f"layer map has {len(mapping)} entries for a {m_layers}-layer student")
    if mapping and not all(1 <= g <= teacher.num_layers for g in mapping):
        raise ValueError(f"layer map {list(mapping)} is out of range for a {teacher.num_layers}-layer teacher")
    mask = student.attention_mask if mask_padding else None

    out: dict[str, Tensor] = {}
    if w["emb"] > 0:
        out["emb"] = hidden_mse(projections.embedding_map(student.hidden_states[0]), teacher.hidden_states[0], mask)
    if w["att"] > 0:
        s_att = student.attention_scores if attention_kind == "scores" else student.attention_probs
        t_att = teacher.attention_scores if attention_kind == "scores" else teacher.attention_probs
        if s_att is None or t_att is None:
            raise ValueError(f"the captures hold no attention {attention_kind}; capture with want_attention={attention_kind!r}")
        floor = REFERENCE_SCORE_FLOOR if attention_kind == "scores" else None
        out["att"] = sum(
            attention_loss(s_att[m - 1], t_att[g - 1], mask, zero_below=floor) for m, g in enumerate(mapping, 1)
        )
    if w["hid"] > 0:
        out["hid"] = sum(
            hidden_mse(projections.hidden_map(student.hidden_states[m], m), teacher.hidden_states[g], mask)
            for m, g in enumerate(mapping, 1)
        )
    total = student.hidden_states[0].sum() * 0.0  # keeps the graph when every term is off
    for term, value in out.items():
        total = total + w[term] * value
    out["loss"] = total
    return out


class IntermediateDistiller(nn.Module):
    """Projections + layer map + weights + attention kind: ``distiller(student_cap, teacher_cap) -> losses``.

    Build it with :meth:`from_config` at start-up: that validates the layer map and the head counts (a clear
    :class:`ConfigError` before any data is read). The only parameters are the projections'.
    """

    def __init__(
        self,
        projections: Projections,
        mapping: Sequence[int],
        weights: Mapping[str, float],
        attention_kind: str = "scores",
        mask_padding: bool = False,
    ) -> None:
        super().__init__()
        if attention_kind not in ATTENTION_KINDS:
            raise ConfigError(f"distill.attention={attention_kind!r} must be one of {', '.join(ATTENTION_KINDS)}")
        self.projections = projections
        self.mapping = [int(g) for g in mapping]
        self.weights = check_weights(weights)
        self.attention_kind = attention_kind
        self.mask_padding = bool(mask_padding)
        # A map no active term uses gets no gradient: freeze it (DDP rejects unused trainable parameters).
        if projections.mode == "shared":
            projections.shared.requires_grad_(self.weights["emb"] > 0 or self.weights["hid"] > 0)
        elif projections.mode in ("separate", "per_layer"):
            projections.embedding.requires_grad_(self.weights["emb"] > 0)
            (projections.hidden if projections.mode == "separate" else projections.layers).requires_grad_(
                self.weights["hid"] > 0)

    @property
    def want_attention(self) -> str | None:
        """What to capture from both models: the attention kind, or ``None`` when the attention term is off."""
        return self.attention_kind if self.weights["att"] > 0 else None

    @property
    def teacher_reads(self) -> tuple[set[int], set[int]]:
        """Which of the teacher's captures the active terms read: indices into ``hidden_states`` (0 = embeddings)
        and into the attention tuple (0 = layer 1)."""
        hidden = ({0} if self.weights["emb"] > 0 else set()) | (set(self.mapping) if self.weights["hid"] > 0 else set())
        attention = {g - 1 for g in self.mapping} if self.weights["att"] > 0 else set()
        return hidden, attention

    @property
    def active_terms(self) -> tuple[str, ...]:
        return tuple(t for t in TERMS if self.weights[t] > 0)

    def student_trains(self, name: str) -> bool:
        """Whether the loss reaches the student parameter `name`: every layer's output is compared, so all of them."""
        return True

    @classmethod
    def from_config(
        cls,
        distill: Mapping[str, Any],
        student_config: Any,
        teacher_config: Any,
        projections: Projections | None = None,
    ) -> IntermediateDistiller:
        """From the ``distill`` config node and both models' configs.

        Keys read: ``weights`` (emb/att/hid), ``layer_map``, ``attention`` (scores|probs), ``projection``
        (shared|separate|none), ``mask_padding``. ``projections`` (e.g. :meth:`Projections.load` of a
        general-distilled student) replaces freshly initialised ones; its mode and sizes must fit.
        """
        weights = check_weights(distill.get("weights") or {})
        attention_kind = distill.get("attention", "scores")
        check_compatible(student_config, teacher_config, use_attention=weights["att"] > 0)
        strategy = distill.get("layer_map", "uniform")
        if not isinstance(strategy, str):
            strategy = [int(x) if not isinstance(x, bool) else x for x in strategy]
        mapping = layer_map(strategy, student_config.num_hidden_layers, teacher_config.num_hidden_layers)
        mode = distill.get("projection", "shared")
        if projections is None:
            projections = Projections(
                student_config.hidden_size,
                teacher_config.hidden_size,
                mode,
                getattr(student_config, "initializer_range", 0.02),
                student_config.num_hidden_layers,
            )
        elif (projections.mode, projections.student_hidden, projections.teacher_hidden) != (
            mode,
            student_config.hidden_size,
            teacher_config.hidden_size,
        ) or projections.num_layers not in (0, student_config.num_hidden_layers):
            raise ConfigError(
                f"loaded projections ({projections.mode}, {projections.student_hidden} -> {projections.teacher_hidden}) "
                f"do not fit distill.projection={mode!r} with student hidden {student_config.hidden_size} and "
                f"teacher hidden {teacher_config.hidden_size}"
            )
        return cls(projections, mapping, weights, attention_kind, bool(distill.get("mask_padding", False)))

    def forward(self, student: Captured, teacher: Captured) -> dict[str, Tensor]:
        return intermediate_losses(
            student, teacher, self.projections, self.mapping, self.weights, self.attention_kind, self.mask_padding
        )

    def describe(self) -> dict[str, Any]:
        return {
            "layer_map": self.mapping,
            "weights": self.weights,
            "attention": self.attention_kind,
            "projection": self.projections.mode,
            "mask_padding": self.mask_padding,
        }
