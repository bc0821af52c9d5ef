"""One function per stage: build data, models and module from the config, fit, export.

`run(cfg)` dispatches on `cfg.stage.name`; train.py only composes the config and calls it. Each stage's result
folder also gets `timing.json`: its wall time and whether the machine was otherwise idle (`tinydistill.timing`), and
`run_config.yaml`: its settings, which `skip_done=true` compares before doing any work. A stage module whose result
is not `stage.output_dir` says where it is with `result_dir(cfg)`.
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
from tinydistill.run_config import RUN_CONFIG, result_is_current, run_config_yaml
from tinydistill.timing import TIMING_JSON, RunClock, describe
from tinydistill.validate import check_run

log = logging.getLogger(__name__)

#: The record of a classifier stage (task, finetune) beside its model, and its copy in the run's log folder.
RESULT_FILE, LOG_RESULT_FILE = "metrics.json", "result.json"

# Each name is a module under tinydistill.stages that defines `run(cfg)`.
STAGES = ("finetune", "mlm", "general", "task", "init_student")


def run(cfg: DictConfig) -> dict[str, Any]:
    clock = RunClock()
    name = cfg.stage.name
    if name not in STAGES:
        raise ConfigError(f"stage={name!r} is not one of: {', '.join(STAGES)}")
    module = importlib.import_module(f"tinydistill.stages.{name}")
    if cfg.get("skip_done"):
        folder = result_dir(cfg, module)
        if result_is_current(cfg, folder):
            copy_result_to_log(folder, Path(cfg.paths.output_dir))
            return {"skipped": str(folder)}
    check_ckpt_path(cfg.get("ckpt_path"))  # before any work: a remote checkpoint would be fully unpickled
    check_run(cfg)  # bad values, paths, models and data files: one line each, before any work
    L.seed_everything(cfg.seed, workers=True)
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


def result_dir(cfg: DictConfig, module: Any) -> Path:
    """The folder the stage exports its result to."""
    find = getattr(module, "result_dir", None)
    return Path(find(cfg)) if find is not None else Path(cfg.stage.output_dir)


def copy_result_to_log(folder: Path, log_dir: Path) -> None:
    """A skipped classifier stage still leaves its record (the metrics.json beside the model) as result.json in this
    run's log folder, as a run that trained would: a multirun's sweep folder alone is then enough for the report."""
    metrics = folder / RESULT_FILE
    if metrics.is_file():
        log_dir.mkdir(parents=True, exist_ok=True)
        atomic_write_text(log_dir / LOG_RESULT_FILE, metrics.read_text(encoding="utf-8"))


def interrupted_message(cfg: DictConfig) -> str:
    """One line for a stage SIGTERM stopped: its result is not written; the checkpoint to resume from, if any."""
    last = Path(cfg.paths.output_dir) / "checkpoints" / "last.ckpt"
    again = f"resume with ckpt_path={last}" if last.is_file() else "no checkpoint yet: run the command again"
    return f"stage={cfg.stage.name} stopped by SIGTERM before it finished (its result is not written); {again}"
