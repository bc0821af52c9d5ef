"""The Lightning Trainer and experiment logger of a run: `TrainerPlan.from_config` reads the `trainer`, `logger`,
`seed` and `paths.output_dir` settings once, at a stage's door; everything below builds Trainers from the plan."""

from __future__ import annotations

import warnings
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import hydra
import lightning as L
from lightning.pytorch.callbacks import Callback, LearningRateMonitor
from lightning.pytorch.loggers import Logger
from omegaconf import DictConfig, OmegaConf

from tinydistill.errors import ConfigError
from tinydistill.hardware import training_device, warn_if_emulated_bf16
from tinydistill.progress import progress_callbacks
from tinydistill.resume import ExactResume


@dataclass(frozen=True)
class TrainerPlan:
    """What every Trainer of a run shares. `options`: the `trainer` group, resolved (hardware, precision, limits, and
    our `progress` / `progress_every_s`); `defaults`: the stage's budget and clipping, which `trainer.*` overrides
    and a phase's own arguments override in turn; `logger`: the `logger` group (None: no logger)."""

    options: Mapping[str, Any]
    logger: Mapping[str, Any] | None
    output_dir: str
    seed: int
    defaults: Mapping[str, Any] = field(default_factory=dict)

    @classmethod
    def from_config(cls, cfg: DictConfig) -> TrainerPlan:
        stage = cfg.stage
        # stage.optimizer=bertadam clips each gradient tensor inside its step (optim.BertAdam): no global clipping.
        own_clipping = stage.get("optimizer", "adamw") == "bertadam"
        logger = cfg.get("logger")
        return cls(
            options=OmegaConf.to_container(cfg.trainer, resolve=True),
            logger=None if logger is None else OmegaConf.to_container(logger, resolve=True),
            output_dir=str(cfg.paths.output_dir),
            seed=int(cfg.seed),
            defaults={"max_epochs": stage.get("epochs"), "max_steps": stage.get("max_steps", -1),
                      "gradient_clip_val": None if own_clipping else stage.get("max_grad_norm")},
        )

    def get(self, key: str, default: Any = None) -> Any:
        """A `trainer.*` option as the user set it."""
        return self.options.get(key, default)

    @property
    def single_process(self) -> bool:
        return str(self.get("devices")) == "1" and int(self.get("num_nodes", 1)) == 1


def build_logger(logger: Mapping[str, Any] | None) -> Logger | bool:
    if logger is None or logger.get("_target_") is None:
        return False
    return hydra.utils.instantiate(dict(logger))


def validate_every_n_steps(plan: TrainerPlan, n: int) -> dict:
    """Trainer overrides that validate every `n` optimiser steps, counted across epochs (for step budgets),
    unless the user chose `trainer.val_check_interval` themselves."""
    if plan.get("val_check_interval") is not None:
        return {}
    return {"val_check_interval": n, "check_val_every_n_epoch": None}


def validate_n_times_per_epoch(plan: TrainerPlan, n: object, option: str) -> dict:
    """Trainer overrides that validate `n` times per epoch (at evenly spaced batches), unless the user chose
    `trainer.val_check_interval` themselves. `option` names the setting in the error for a bad `n`."""
    if isinstance(n, bool) or not isinstance(n, int) or n < 1:
        raise ConfigError(f"{option}={n}: expected a whole number of dev evaluations per epoch, at least 1")
    if plan.get("val_check_interval") is not None or n == 1:
        return {}
    return {"val_check_interval": 1.0 / n}


def build_trainer(plan: TrainerPlan, callbacks: Sequence[Callback] = (), **overrides) -> L.Trainer:
    """A Trainer from the plan (hardware from `trainer.*`, epochs/steps/clipping from the stage's defaults), with
    `overrides` last; its checkpoints resume exactly (`tinydistill.resume.ExactResume`)."""
    kwargs = dict(plan.options)
    # Ours, not the Trainer's: how progress is shown (progress.py).
    progress = progress_callbacks(kwargs.pop("progress", "auto"), kwargs.pop("progress_every_s", 60))
    for key, value in plan.defaults.items():
        kwargs.setdefault(key, value)
    # Lightning's own pytree helper trips a torch 2.13 deprecation on every fit and validate: noise a user cannot
    # act on, repeated through every stage's log.
    warnings.filterwarnings("ignore", message=r"`isinstance\(treespec, LeafSpec\)` is deprecated")
    logger = build_logger(plan.logger)
    callbacks = [*callbacks, ExactResume(plan.seed)]
    if logger:
        callbacks.append(LearningRateMonitor(logging_interval="step"))
    kwargs.update(overrides)
    if kwargs.get("enable_progress_bar", True):  # Lightning refuses a progress bar callback when it is off
        callbacks.extend(progress)
    precision, accelerator = str(kwargs.get("precision") or ""), kwargs.get("accelerator", "auto")
    if precision.startswith("bf16") and training_device(accelerator) == "cpu":
        warn_if_emulated_bf16(f"precision={precision} (trainer.precision or a stage.<phase>.precision)", "cpu")
    return L.Trainer(
        logger=logger,
        callbacks=callbacks,
        default_root_dir=plan.output_dir,
        **kwargs,
    )
