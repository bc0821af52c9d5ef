"""Optimiser and learning-rate schedule shared by all stages.

``stage.optimizer`` picks the update rule:

* ``adamw`` (default): torch's AdamW (Adam with bias correction, decoupled weight decay), fused where possible.
  Lightning clips the gradient norm over all parameters together to ``stage.max_grad_norm`` before each step.
* ``bertadam``: :class:`BertAdam`, the update of the BERT/TinyBERT reference code (``BertAdam`` in TinyBERT's
  ``transformer/optimization.py``): Adam *without* bias correction, each gradient tensor clipped to
  ``max_grad_norm`` on its own inside the step. Lightning's global clipping must then be off
  (``trainer.build_trainer`` turns it off; :func:`configure_from_hparams` refuses a trainer that clips).

Both leave biases and LayerNorm weights out of weight decay, as the reference does. ``schedule`` names the
learning-rate multiplier, stepped every optimiser step: a ``transformers`` schedule (``linear``, ``constant``,
``cosine``, ...; their warm-up is ``int(warmup_proportion * total_steps)`` whole steps), or one of the reference's:
``warmup_linear`` (:func:`reference_warmup_linear`, warm-up over exactly ``warmup_proportion * total_steps`` steps)
and ``none`` (constant, the same as ``constant``).
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping
from dataclasses import asdict, dataclass
from typing import Any

import lightning as L
import torch
from lightning.pytorch.plugins.precision import MixedPrecision
from torch import nn
from torch.optim.lr_scheduler import LambdaLR, LRScheduler
from transformers import get_scheduler

from tinydistill.errors import ConfigError

OPTIMIZERS = ("adamw", "bertadam")
# The reference's schedule names (pytorch-pretrained-bert's SCHEDULES, as TinyBERT's task_distill.py passes them).
REFERENCE_SCHEDULES = ("warmup_linear", "none")

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


class BertAdam(torch.optim.Optimizer):
    """Adam as the BERT/TinyBERT reference code steps it. For each parameter tensor ``p`` with gradient ``g``:

        g <- g * min(1, max_grad_norm / (||g|| + 1e-6))        this tensor's norm only (torch's clip_grad_norm_)
        m <- b1 m + (1 - b1) g          v <- b2 v + (1 - b2) g^2      (no bias correction)
        p <- p - lr * (m / (sqrt(v) + eps) + weight_decay * p)

    Without bias correction the first updates are ``(1 - b1) / sqrt(1 - b2)`` (about 3.2) times larger than Adam's
    at the same learning rate, and clipping each tensor separately lets every tensor move by up to the full norm.
    ``lr`` is the group's current learning rate (a scheduler sets it); ``max_grad_norm`` <= 0 or None: no clipping.
    Per tensor means per tensor the optimiser holds: under ``trainer=fsdp`` each process holds only shards, whose
    norms are not the tensors' norms, so use one process or DDP to match the reference.
    """

    def __init__(
        self,
        params: Iterable,
        lr: float,
        betas: tuple[float, float] = (0.9, 0.999),
        eps: float = 1e-6,
        weight_decay: float = 0.0,
        max_grad_norm: float | None = 1.0,
    ) -> None:
        if not lr >= 0.0:
            raise ValueError(f"BertAdam: invalid learning rate {lr}")
        if not all(0.0 <= b < 1.0 for b in betas):
            raise ValueError(f"BertAdam: betas {betas} must be in [0, 1)")
        if not eps >= 0.0:
            raise ValueError(f"BertAdam: invalid epsilon {eps}")
        defaults = {"lr": lr, "betas": tuple(betas), "eps": eps, "weight_decay": weight_decay,
                    "max_grad_norm": max_grad_norm}
        super().__init__(params, defaults)

    @torch.no_grad()
    def step(self, closure: Callable[[], float] | None = None) -> float | None:
        loss = None
        if closure is not None:  # Lightning runs the forward and backward pass here
            with torch.enable_grad():
                loss = closure()
        for group in self.param_groups:
            beta1, beta2 = group["betas"]
            max_norm = group["max_grad_norm"]
            for p in group["params"]:
                if p.grad is None:
                    continue
                if p.grad.is_sparse:
                    raise RuntimeError("BertAdam does not support sparse gradients")
                if max_norm is not None and max_norm > 0:
                    torch.nn.utils.clip_grad_norm_(p, max_norm)  # in place, this tensor alone
                grad = p.grad
                state = self.state[p]
                if not state:
                    state["step"] = 0
                    state["exp_avg"] = torch.zeros_like(p, memory_format=torch.preserve_format)
                    state["exp_avg_sq"] = torch.zeros_like(p, memory_format=torch.preserve_format)
                exp_avg, exp_avg_sq = state["exp_avg"], state["exp_avg_sq"]
                exp_avg.mul_(beta1).add_(grad, alpha=1.0 - beta1)
                exp_avg_sq.mul_(beta2).addcmul_(grad, grad, value=1.0 - beta2)
                denom = exp_avg_sq.sqrt().add_(group["eps"])
                # p - lr * (m / denom + wd * p), in place: decay with the old weights first, then the Adam step
                if group["weight_decay"] > 0.0:
                    p.mul_(1.0 - group["lr"] * group["weight_decay"])
                p.addcdiv_(exp_avg, denom, value=-group["lr"])
                state["step"] += 1
        return loss


def reference_warmup_linear(warmup_proportion: float, total_steps: int | float) -> Callable[[int], float]:
    """The reference's ``warmup_linear`` multiplier for the update after ``step`` earlier updates: with
    ``x = step / total_steps`` and ``w = warmup_proportion``, ``x / w`` while ``x < w``, then
    ``max((1 - x) / (1 - w), 0)``. The first update gets 0 when ``w > 0``, as in the reference (and transformers'
    ``linear``); the two differ only when ``w * total_steps`` is not a whole number, which transformers rounds down.
    """
    if not 0.0 <= warmup_proportion < 1.0:
        raise ConfigError(f"warmup_proportion={warmup_proportion}: schedule warmup_linear needs 0 <= it < 1")
    if not 0 < total_steps < float("inf"):
        raise ConfigError(f"schedule warmup_linear needs a finite number of training steps, got {total_steps}")

    def factor(step: int) -> float:
        progress = step / total_steps
        if progress < warmup_proportion:
            return progress / warmup_proportion
        return max((1.0 - progress) / (1.0 - warmup_proportion), 0.0)

    return factor


def build_scheduler(
    optimizer: torch.optim.Optimizer, schedule: str, warmup_proportion: float, total_steps: int | float
) -> LRScheduler:
    """The learning-rate schedule `schedule` (see the module docstring) over `total_steps` optimiser steps."""
    if schedule == "warmup_linear":
        return LambdaLR(optimizer, reference_warmup_linear(warmup_proportion, total_steps))
    return get_scheduler(
        "constant" if schedule == "none" else schedule,
        optimizer,
        num_warmup_steps=int(warmup_proportion * total_steps),
        num_training_steps=total_steps,
    )


def build_optimizer_and_scheduler(
    named_parameters: Iterable[tuple[str, nn.Parameter]],
    lr: float,
    weight_decay: float,
    total_steps: int,
    warmup_proportion: float = 0.1,
    schedule: str = "linear",
    betas: tuple[float, float] = (0.9, 0.999),
    eps: float = 1e-6,
    optimizer: str = "adamw",
    max_grad_norm: float | None = 1.0,
    fused: bool = True,
) -> dict:
    """`optimizer` (adamw or bertadam; `max_grad_norm` is bertadam's per-tensor clipping) + `schedule`, stepped
    every batch. `fused=False`: never torch's fused AdamW (see `configure_from_hparams`).

    Returns the dict Lightning's `configure_optimizers` expects.
    """
    if optimizer not in OPTIMIZERS:
        raise ConfigError(f"stage.optimizer={optimizer!r} must be one of {', '.join(OPTIMIZERS)}")
    groups = parameter_groups(named_parameters, weight_decay)
    if optimizer == "bertadam":
        opt: torch.optim.Optimizer = BertAdam(groups, lr=lr, betas=tuple(betas), eps=eps, max_grad_norm=max_grad_norm)
    else:
        opt = torch.optim.AdamW(groups, lr=lr, betas=tuple(betas), eps=eps, fused=_can_fuse(groups) if fused else None)
    scheduler = build_scheduler(opt, schedule, warmup_proportion, total_steps)
    return {"optimizer": opt, "lr_scheduler": {"scheduler": scheduler, "interval": "step"}}


def _can_fuse(groups: list[dict]) -> bool | None:
    """torch's fused AdamW (one kernel for all parameters) when every parameter allows it: the same update up to
    rounding, and on CPU several times faster than the default, which matters for small students, whose
    30k-row word-embedding matrix makes the optimiser step as costly as the forward and backward passes."""
    params = [p for g in groups for p in g["params"]]
    ok = params and all(p.device.type in ("cpu", "cuda") and p.is_floating_point() for p in params)
    return True if ok else None


@dataclass(frozen=True)
class OptimizerSettings:
    """One training fit's optimiser and schedule (see the module docstring). Modules keep these as flat
    hyperparameters (`hparams()`), which `configure_from_hparams` reads and checkpoints carry."""

    lr: float
    weight_decay: float = 0.01
    warmup_proportion: float = 0.1
    schedule: str = "linear"
    optimizer: str = "adamw"
    max_grad_norm: float | None = 1.0
    adam_epsilon: float = 1e-6
    adam_betas: tuple[float, float] | None = None

    @classmethod
    def from_stage(cls, stage: Mapping, **phase: Any) -> OptimizerSettings:
        """The settings a `stage` config node names (`lr`, `weight_decay`, `warmup_proportion`, `schedule`,
        `optimizer`, `max_grad_norm`, `adam_epsilon`); `phase` replaces any of them (a task phase's own lr and
        schedule, DistilBERT's betas)."""
        values = {
            "lr": stage.get("lr"),
            "weight_decay": stage.get("weight_decay", 0.01),
            "warmup_proportion": stage.get("warmup_proportion", 0.1),
            "schedule": stage.get("schedule", "linear"),
            "optimizer": stage.get("optimizer", "adamw"),
            "max_grad_norm": stage.get("max_grad_norm"),
            "adam_epsilon": stage.get("adam_epsilon", 1e-6),
        }
        return cls(**{**values, **phase})

    def hparams(self) -> dict[str, Any]:
        out = asdict(self)
        if out["adam_betas"] is None:
            del out["adam_betas"]  # unset: the optimiser's default, as modules without betas always had
        else:
            out["adam_betas"] = list(out["adam_betas"])
        return out


def configure_from_hparams(
    module: L.LightningModule, named_parameters: Iterable[tuple[str, nn.Parameter]]
) -> dict:
    """Every module's `configure_optimizers`: optimiser and schedule from its hparams (`lr`, `weight_decay`,
    `warmup_proportion`, `schedule`, optional `optimizer` (default adamw), `max_grad_norm`, `adam_epsilon`,
    `adam_betas`) over the trainer's total number of optimiser steps."""
    hp = module.hparams
    optimizer = hp.get("optimizer", "adamw")
    if optimizer == "bertadam" and module.trainer.gradient_clip_val:
        raise ConfigError(
            f"stage.optimizer=bertadam clips each gradient tensor itself (stage.max_grad_norm), but the trainer also "
            f"clips the global norm (gradient_clip_val={module.trainer.gradient_clip_val}): "
            f"unset trainer.gradient_clip_val"
        )
    return build_optimizer_and_scheduler(
        named_parameters,
        lr=hp.lr,
        weight_decay=hp.weight_decay,
        total_steps=module.trainer.estimated_stepping_batches,
        warmup_proportion=hp.warmup_proportion,
        schedule=hp.schedule,
        eps=hp.get("adam_epsilon", 1e-6),
        # optional `adam_betas` (DistilBERT's reference uses (0.9, 0.98)); unset: the optimiser's default
        **({"betas": tuple(hp.adam_betas)} if hp.get("adam_betas") else {}),
        optimizer=optimizer,
        max_grad_norm=hp.get("max_grad_norm", 1.0),
        # Lightning's mixed precision (trainer.precision=bf16-mixed or 16-mixed) refuses to clip gradients for an
        # optimiser that unscales them itself, as the fused AdamW declares it does: use the unfused one there.
        fused=not isinstance(getattr(module.trainer, "precision_plugin", None), MixedPrecision),
    )
