"""MiniLM-v2's self-attention relation distillation (``distill=minilm``), for general distillation and task phase 1.

One teacher layer ``t`` and one student layer ``s`` (MiniLM-v2 reads a single layer pair), and the queries ``Q``,
keys ``K`` and values ``V`` of their self-attention (:func:`tinydistill.models.qkv.record_qkv`)::

    rel_q = relation_kl(Q_S[s], Q_T[t], R)     rel_k = relation_kl(K_S[s], K_T[t], R)     rel_v = ... V ...
    loss  = weights.rel * (rel_q + rel_k + rel_v)

with ``R`` relation heads (:func:`tinydistill.losses.relation_kl`: KL between the teacher's and the student's
``softmax(A_r A_r^T / sqrt(d_r))``, padding keys masked and padding queries excluded). The relations are
``(S, S)`` whatever the widths and head counts, so it needs no projection and no equal head counts, and it reaches
teachers whose attention scores cannot be captured (DeBERTa-v2/v3's disentangled attention).

Layer choice (``distill.teacher_layer``, ``distill.student_layer``): the student's last layer learns from one teacher
layer. MiniLM-v2 takes the last layer of base-size teachers and an upper-middle one of large teachers (the 21st of
24), which distilled better; ``upper_middle`` (the default) is the layer an eighth of the depth below the top, at
least one below: 21 of 24, 11 of 12, 5 of 6. ``last`` or a layer number (1..N) choose otherwise.
"""

from __future__ import annotations

import re
from collections.abc import Mapping, Sequence
from typing import Any

from torch import Tensor, nn

from tinydistill.errors import ConfigError
from tinydistill.losses import relation_kl
from tinydistill.models.capture import Captured

#: The vectors compared, their index in a captured layer and the loss term each gives.
RELATIONS = {"query": (0, "rel_q"), "key": (1, "rel_k"), "value": (2, "rel_v")}
TEACHER_LAYERS = ("upper_middle", "last")
#: TinyBERT's intermediate terms, which this method does not combine with.
TINYBERT_TERMS = ("emb", "att", "hid")
#: A (BERT-shaped) student's layer parameters: layer index (0-based) and the rest of the name.
LAYER_PARAMETER = re.compile(r"(?:^|\.)encoder\.layer\.(\d+)\.(.+)$")


def upper_middle(num_layers: int) -> int:
    """The layer an eighth of the depth below the top, at least one below the top (layer 1 for a 1-layer model)."""
    return max(1, num_layers - max(1, num_layers // 8))


def choose_layer(option: str, value: Any, num_layers: int, named: Sequence[str]) -> int:
    """`value` (a name in `named` or a layer number 1..num_layers) as a 1-based layer number."""
    if value == "last":
        return num_layers
    if value == "upper_middle" and "upper_middle" in named:
        return upper_middle(num_layers)
    if isinstance(value, bool) or not isinstance(value, int):
        raise ConfigError(f"{option}={value!r} must be {' or '.join(named)}, or a layer number in 1..{num_layers}")
    if not 1 <= value <= num_layers:
        raise ConfigError(f"{option}={value}: the model has layers 1..{num_layers}")
    return value


def check_heads(heads: Any, widths: Mapping[str, int]) -> int:
    """`distill.relation_heads`: a positive integer dividing every model's attention width."""
    if isinstance(heads, bool) or not isinstance(heads, int) or heads < 1:
        raise ConfigError(f"distill.relation_heads={heads!r} must be a whole number >= 1")
    if any(w % heads for w in widths.values()):
        shown = ", ".join(f"the {who}'s is {w}" for who, w in widths.items())
        raise ConfigError(f"distill.relation_heads={heads} must divide the attention widths of both models ({shown}); "
                          f"pick a common divisor of {' and '.join(str(w) for w in widths.values())}")
    return heads


def attention_width(config: Any) -> int:
    """Width of the concatenated queries (heads x head size), which the relation heads split."""
    head_dim = getattr(config, "head_dim", None) or config.hidden_size // config.num_attention_heads
    return int(config.num_attention_heads * head_dim)


class RelationDistiller(nn.Module):
    """Layer pair + relation heads + relations: ``distiller(student_cap, teacher_cap) -> losses``. Build it with
    :meth:`from_config` (validates the settings against both models). It has no parameters and no projections."""

    projections = None  # nothing to save beside the student
    want_attention = "qkv"  # what to capture from both models

    def __init__(self, teacher_layer: int, student_layer: int, heads: int, relations: Sequence[str],
                 weight: float = 1.0) -> None:
        super().__init__()
        self.teacher_layer, self.student_layer, self.heads = int(teacher_layer), int(student_layer), int(heads)
        self.relations = tuple(relations)
        self.weight = float(weight)

    @property
    def teacher_reads(self) -> tuple[set[int], set[int]]:
        """The teacher's captures the loss reads: no hidden states, the chosen layer's queries, keys and values."""
        return set(), {self.teacher_layer - 1}

    @property
    def active_terms(self) -> tuple[str, ...]:
        return tuple(RELATIONS[r][1] for r in self.relations) if self.weight > 0 else ()

    @classmethod
    def from_config(cls, distill: Mapping[str, Any], student_config: Any, teacher_config: Any,
                    projections: Any = None) -> RelationDistiller:
        """From the ``distill`` node (``relation_heads``, ``teacher_layer``, ``student_layer``, ``relations``,
        ``weights.rel``) and both models' configs. `projections` (a general student's TinyBERT maps) are not used."""
        weights = distill.get("weights") or {}
        mixed = {t: weights[t] for t in TINYBERT_TERMS if float(weights.get(t) or 0.0) != 0.0}
        if mixed:
            raise ConfigError(f"distill.weights {mixed}: distill=minilm has one intermediate term, weights.rel; "
                              f"TinyBERT's emb/att/hid are distill=tinybert's (set them to 0)")
        weight = float(weights.get("rel", 1.0))
        if not weight >= 0:
            raise ConfigError(f"distill.weights.rel={weight} must be >= 0")
        relations = list(distill.get("relations") or ())
        if not relations or any(r not in RELATIONS for r in relations) or len(set(relations)) != len(relations):
            raise ConfigError(f"distill.relations={relations} must list some of {', '.join(RELATIONS)}, each once")
        teacher_layer = choose_layer("distill.teacher_layer", distill.get("teacher_layer", "upper_middle"),
                                     teacher_config.num_hidden_layers, TEACHER_LAYERS)
        student_layer = choose_layer("distill.student_layer", distill.get("student_layer", "last"),
                                     student_config.num_hidden_layers, ("last",))
        heads = check_heads(distill.get("relation_heads"),
                            {"student": attention_width(student_config), "teacher": attention_width(teacher_config)})
        return cls(teacher_layer, student_layer, heads, relations, weight)

    def student_trains(self, name: str) -> bool:
        """Whether the loss reaches the student parameter `name`: not the chosen layer's attention output and
        feed-forward (the loss reads its queries, keys and values), nor any layer above it. They are frozen in this
        phase (DDP refuses trainable parameters without a gradient); they would not move anyway."""
        match = LAYER_PARAMETER.search(name)
        if match is None:
            return True
        layer = int(match.group(1)) + 1
        return layer < self.student_layer or (layer == self.student_layer and match.group(2).startswith("attention.self."))

    def forward(self, student: Captured, teacher: Captured) -> dict[str, Tensor]:
        if student.qkv is None or teacher.qkv is None:
            raise ValueError("the captures hold no queries, keys and values; capture with want_attention='qkv'")
        s, t = student.qkv[self.student_layer - 1], teacher.qkv[self.teacher_layer - 1]
        mask = student.attention_mask
        out = {term: relation_kl(s[i], t[i], self.heads, mask) for i, term in (RELATIONS[r] for r in self.relations)}
        total = s.sum() * 0.0  # keeps the graph when the weight is 0
        for value in out.values():
            total = total + self.weight * value
        out["loss"] = total
        return out

    def describe(self) -> dict[str, Any]:
        return {"method": "minilm", "teacher_layer": self.teacher_layer, "student_layer": self.student_layer,
                "relation_heads": self.heads, "relations": list(self.relations), "weights": {"rel": self.weight}}
