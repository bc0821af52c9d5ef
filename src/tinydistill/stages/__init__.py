"""One function per stage: build data, models and module from the config, fit, export.

`run(cfg)` dispatches on `cfg.stage.name`; train.py only composes the config and calls it. Each stage's result
folder also gets `timing.json`: its wall time and whether the machine was otherwise idle (`tinydistill.timing`).
"""

from __future__ import annotations

import importlib
import json
import logging
from pathlib import Path
from typing import Any

import lightning as L
from lightning.pytorch.utilities.exceptions import SIGTERMException
from omegaconf import DictConfig

from tinydistill.atomic import atomic_write_text
from tinydistill.ckpt_path import check_ckpt_path
from tinydistill.errors import ConfigError, StageInterrupted
from tinydistill.run_config import RUN_CONFIG, run_config_yaml
from tinydistill.timing import TIMING_JSON, RunClock, describe
from tinydistill.validate import check_run

log = logging.getLogger(__name__)

# Each name is a module under tinydistill.stages that defines `run(cfg)`.
STAGES = ("finetune", "mlm", "general", "task", "init_student")


def run(cfg: DictConfig) -> dict[str, Any]:
    clock = RunClock()
    name = cfg.stage.name
    if name not in STAGES:
        raise ConfigError(f"stage={name!r} is not one of: {', '.join(STAGES)}")
    check_ckpt_path(cfg.get("ckpt_path"))  # before any work: a remote checkpoint would be fully unpickled
    check_run(cfg)  # bad values, paths, models and data files: one line each, before any work
    L.seed_everything(cfg.seed, workers=True)
    module = importlib.import_module(f"tinydistill.stages.{name}")
    try:
        result = module.run(cfg)
    except SIGTERMException as e:
        # Lightning ends a fit on SIGTERM with a bare SystemExit, exit status 0: `make` and schedulers would take the
        # unfinished stage for a finished one and go on.
        raise StageInterrupted(interrupted_message(cfg)) from e
    out = result.get("output_dir") if isinstance(result, dict) else None
    if out:  # not for a skipped run or a DDP process other than rank 0
        timing = {"stage": name, **clock.stop(resumed=bool(cfg.get("ckpt_path")))}
        atomic_write_text(Path(out) / TIMING_JSON, json.dumps(timing, indent=2) + "\n")
        # The settings beside the result (and the log folder's result.json): the report warns when runs it
        # aggregates over seeds differ in anything else, e.g. seeds left by an earlier version of a recipe.
        for folder in {Path(out), Path(cfg.paths.output_dir)}:
            if folder.is_dir():
                atomic_write_text(folder / RUN_CONFIG, run_config_yaml(cfg))
        log.info("stage=%s took %s", name, describe(timing))
    return result


def interrupted_message(cfg: DictConfig) -> str:
    """One line for a stage SIGTERM stopped: its result is not written; the checkpoint to resume from, if any."""
    last = Path(cfg.paths.output_dir) / "checkpoints" / "last.ckpt"
    again = f"resume with ckpt_path={last}" if last.is_file() else "no checkpoint yet: run the command again"
    return f"stage={cfg.stage.name} stopped by SIGTERM before it finished (its result is not written); {again}"
