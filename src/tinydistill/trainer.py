"""Building the Lightning Trainer and experiment logger from the composed config."""

from __future__ import annotations

import warnings
from collections.abc import Sequence

import hydra
import lightning as L
from lightning.pytorch.callbacks import Callback, LearningRateMonitor
from lightning.pytorch.loggers import Logger
from omegaconf import DictConfig, OmegaConf

from tinydistill.errors import ConfigError
from tinydistill.hardware import training_device, warn_if_emulated_bf16
from tinydistill.progress import progress_callbacks
from tinydistill.resume import ExactResume


def build_logger(cfg: DictConfig) -> Logger | bool:
    if cfg.logger is None or cfg.logger.get("_target_") is None:
        return False
    return hydra.utils.instantiate(cfg.logger)


def validate_every_n_steps(cfg: DictConfig, n: int) -> dict:
    """Trainer overrides that validate every `n` optimiser steps, counted across epochs (for step budgets),
    unless the user chose `trainer.val_check_interval` themselves."""
    if cfg.trainer.get("val_check_interval") is not None:
        return {}
    return {"val_check_interval": n, "check_val_every_n_epoch": None}


def validate_n_times_per_epoch(cfg: DictConfig, n: object, option: str) -> dict:
    """Trainer overrides that validate `n` times per epoch (at evenly spaced batches), unless the user chose
    `trainer.val_check_interval` themselves. `option` names the setting in the error for a bad `n`."""
    if isinstance(n, bool) or not isinstance(n, int) or n < 1:
        raise ConfigError(f"{option}={n}: expected a whole number of dev evaluations per epoch, at least 1")
    if cfg.trainer.get("val_check_interval") is not None or n == 1:
        return {}
    return {"val_check_interval": 1.0 / n}


def build_trainer(cfg: DictConfig, callbacks: Sequence[Callback] = (), **overrides) -> L.Trainer:
    """A Trainer from `cfg.trainer` (hardware), with epochs/steps/clipping from `cfg.stage`; its checkpoints resume
    exactly (`tinydistill.resume.ExactResume`)."""
    kwargs = OmegaConf.to_container(cfg.trainer, resolve=True)
    # Ours, not the Trainer's: how progress is shown (progress.py).
    progress = progress_callbacks(kwargs.pop("progress", "auto"), kwargs.pop("progress_every_s", 60))
    stage = cfg.stage
    kwargs.setdefault("max_epochs", stage.get("epochs"))
    kwargs.setdefault("max_steps", stage.get("max_steps", -1))
    # stage.optimizer=bertadam clips each gradient tensor inside its step (optim.BertAdam): no global clipping then.
    own_clipping = stage.get("optimizer", "adamw") == "bertadam"
    kwargs.setdefault("gradient_clip_val", None if own_clipping else stage.get("max_grad_norm"))
    # Lightning's own pytree helper trips a torch 2.13 deprecation on every fit and validate: noise a user cannot
    # act on, repeated through every stage's log.
    warnings.filterwarnings("ignore", message=r"`isinstance\(treespec, LeafSpec\)` is deprecated")
    logger = build_logger(cfg)
    callbacks = [*callbacks, ExactResume(cfg.seed)]
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
        default_root_dir=cfg.paths.output_dir,
        **kwargs,
    )
