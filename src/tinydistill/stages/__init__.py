"""One function per stage: build data, models and module from the config, fit, export.

`run(cfg)` dispatches on `cfg.stage.name`; train.py only composes the config and calls it.
"""

from __future__ import annotations

import importlib
from typing import Any

import lightning as L
from omegaconf import DictConfig

from tinydistill.errors import ConfigError

# Each name is a module under tinydistill.stages that defines `run(cfg)`.
STAGES = ("finetune", "mlm", "general", "task", "init_student")


def run(cfg: DictConfig) -> dict[str, Any]:
    name = cfg.stage.name
    if name not in STAGES:
        raise ConfigError(f"stage={name!r} is not one of: {', '.join(STAGES)}")
    L.seed_everything(cfg.seed, workers=True)
    module = importlib.import_module(f"tinydistill.stages.{name}")
    return module.run(cfg)
