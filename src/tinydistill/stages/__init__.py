"""One function per stage: build data, models and module from the config, fit, export.

`run(cfg)` dispatches on `cfg.stage.name`; train.py only composes the config and calls it.
"""

from __future__ import annotations

import importlib
from typing import Any

import lightning as L
from omegaconf import DictConfig

from tinydistill.ckpt_path import check_ckpt_path
from tinydistill.errors import ConfigError
from tinydistill.validate import check_run

# Each name is a module under tinydistill.stages that defines `run(cfg)`.
STAGES = ("finetune", "mlm", "general", "task", "init_student")


def run(cfg: DictConfig) -> dict[str, Any]:
    name = cfg.stage.name
    if name not in STAGES:
        raise ConfigError(f"stage={name!r} is not one of: {', '.join(STAGES)}")
    check_ckpt_path(cfg.get("ckpt_path"))  # before any work: a remote checkpoint would be fully unpickled
    check_run(cfg)  # bad values, paths, models and data files: one line each, before any work
    L.seed_everything(cfg.seed, workers=True)
    module = importlib.import_module(f"tinydistill.stages.{name}")
    return module.run(cfg)
