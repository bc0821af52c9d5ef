"""Distillation objectives built from the pure losses in :mod:`tinydistill.losses` and captured model states."""

from tinydistill.distill.intermediate import (
    TERMS,
    IntermediateDistiller,
    Projections,
    intermediate_losses,
)
from tinydistill.distill.methods import METHODS, Distiller, distiller_from_config
from tinydistill.distill.relation import RelationDistiller

__all__ = ["METHODS", "TERMS", "Distiller", "IntermediateDistiller", "Projections", "RelationDistiller",
           "distiller_from_config", "intermediate_losses"]
