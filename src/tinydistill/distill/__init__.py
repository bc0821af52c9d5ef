"""Distillation objectives built from the pure losses in :mod:`tinydistill.losses` and captured model states."""

from tinydistill.distill.intermediate import (
    TERMS,
    IntermediateDistiller,
    Projections,
    intermediate_losses,
)

__all__ = ["TERMS", "IntermediateDistiller", "Projections", "intermediate_losses"]
