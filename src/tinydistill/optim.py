"""Optimiser and learning-rate schedule shared by all stages (as the BERT/TinyBERT reference)."""

from __future__ import annotations

from collections.abc import Iterable

import lightning as L
import torch
from torch import nn
from transformers import get_scheduler

# BERT's reference excludes biases and LayerNorm weights from weight decay.
NO_DECAY = ("bias", "LayerNorm.weight", "LayerNorm.bias", "layer_norm.weight", "layer_norm.bias")


def parameter_groups(
    named_parameters: Iterable[tuple[str, nn.Parameter]], weight_decay: float
) -> list[dict]:
    decay, no_decay = [], []
    for name, p in named_parameters:
        if not p.requires_grad:
            continue
        (no_decay if any(n in name for n in NO_DECAY) else decay).append(p)
    return [
        {"params": decay, "weight_decay": weight_decay},
        {"params": no_decay, "weight_decay": 0.0},
    ]


def build_optimizer_and_scheduler(
    named_parameters: Iterable[tuple[str, nn.Parameter]],
    lr: float,
    weight_decay: float,
    total_steps: int,
    warmup_proportion: float = 0.1,
    schedule: str = "linear",
    betas: tuple[float, float] = (0.9, 0.999),
    eps: float = 1e-6,
) -> dict:
    """AdamW + a transformers schedule (linear warm-up then `schedule`), stepped every batch.

    Returns the dict Lightning's `configure_optimizers` expects.
    """
    groups = parameter_groups(named_parameters, weight_decay)
    optimizer = torch.optim.AdamW(groups, lr=lr, betas=tuple(betas), eps=eps, fused=_can_fuse(groups))
    scheduler = get_scheduler(
        schedule,
        optimizer,
        num_warmup_steps=int(warmup_proportion * total_steps),
        num_training_steps=total_steps,
    )
    return {"optimizer": optimizer, "lr_scheduler": {"scheduler": scheduler, "interval": "step"}}


def _can_fuse(groups: list[dict]) -> bool | None:
    """torch's fused AdamW (one kernel for all parameters) when every parameter allows it: the same update up to
    rounding, and on CPU several times faster than the default, which matters for small students, whose
    30k-row word-embedding matrix makes the optimiser step as costly as the forward and backward passes."""
    params = [p for g in groups for p in g["params"]]
    ok = params and all(p.device.type in ("cpu", "cuda") and p.is_floating_point() for p in params)
    return True if ok else None


def configure_from_hparams(
    module: L.LightningModule, named_parameters: Iterable[tuple[str, nn.Parameter]]
) -> dict:
    """Every module's `configure_optimizers`: AdamW and schedule from its hparams (`lr`,
    `weight_decay`, `warmup_proportion`, `schedule`, optional `adam_epsilon`) over the trainer's
    total number of optimiser steps."""
    hp = module.hparams
    return build_optimizer_and_scheduler(
        named_parameters,
        lr=hp.lr,
        weight_decay=hp.weight_decay,
        total_steps=module.trainer.estimated_stepping_batches,
        warmup_proportion=hp.warmup_proportion,
        schedule=hp.schedule,
        eps=hp.get("adam_epsilon", 1e-6),
    )
