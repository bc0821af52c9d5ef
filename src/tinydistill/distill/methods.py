"""The intermediate-layer distiller a run uses, by ``distill.name``: TinyBERT's layer losses or MiniLM-v2's relations.

Both kinds answer the same calls (`modules/general.py`, `modules/task.py`, `stages/task/phase1.py`):
``distiller(student_capture, teacher_capture) -> {term: loss, ..., "loss": total}``, ``want_attention`` (what to
capture from both models), ``teacher_reads`` (which teacher captures the phase-1 teacher cache keeps),
``active_terms``, ``student_trains(name)`` (whether the loss reaches a student parameter: those it does not are
frozen), ``describe()`` and ``projections`` (saved beside the student, or None).
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from tinydistill.distill.intermediate import IntermediateDistiller, Projections
from tinydistill.distill.relation import RelationDistiller
from tinydistill.errors import ConfigError

Distiller = IntermediateDistiller | RelationDistiller
#: `distill=` values whose distiller trains intermediate layers (general distillation and task phase 1).
METHODS: dict[str, type[IntermediateDistiller] | type[RelationDistiller]] = {
    "tinybert": IntermediateDistiller,
    "minilm": RelationDistiller,
}


def distiller_from_config(distill: Mapping[str, Any], student_config: Any, teacher_config: Any,
                          projections: Projections | None = None) -> Distiller:
    """The distiller of ``distill.name`` (default tinybert), checked against both models' configs."""
    name = str(distill.get("name", "tinybert"))
    if name not in METHODS:
        raise ConfigError(f"distill={name!r} has no intermediate-layer distiller; use one of {', '.join(METHODS)}")
    return METHODS[name].from_config(distill, student_config, teacher_config, projections)
