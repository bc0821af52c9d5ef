"""The stages, and the one path every run takes through them.

`run(cfg)` picks the stage module (`STAGES`; `stage=general distill=distilbert` is the DistilBERT stage), then:
skip a finished result (``skip_done``), the pre-run checks (`tinydistill.preflight`, from the stage's
declarations), the seed, the stage's plan (its config read once, at its door) and its run. train.py only composes
the config and calls it. Each stage's result folder also gets `timing.json`: its wall time and whether the machine
was otherwise idle (`tinydistill.timing`), and `run_config.yaml`: its settings, which ``skip_done=true`` compares
before doing any work. The contract each stage module keeps: `tinydistill.contract`.
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
from tinydistill.contract import Stage
from tinydistill.errors import ConfigError, StageInterrupted
from tinydistill.preflight import check_run
from tinydistill.records import LOG_RESULT_JSON, METRICS_JSON
from tinydistill.run_config import RUN_CONFIG, result_is_current, run_config_yaml
from tinydistill.timing import TIMING_JSON, RunClock, describe

log = logging.getLogger(__name__)

#: What `stage=` takes, each a module under tinydistill.stages keeping the contract of `tinydistill.contract`.
STAGES = ("finetune", "mlm", "general", "task", "init_student")
#: Methods of stage=general (`distill=`), each its own stage module.
GENERAL_METHODS = {"tinybert": "general", "minilm": "general", "distilbert": "distilbert"}


def stage_module(cfg: DictConfig) -> Stage:
    """The module of the stage `cfg` asks for."""
    name = str(cfg.stage.name)
    if name not in STAGES:
        raise ConfigError(f"stage={name!r} is not one of: {', '.join(STAGES)}")
    if name == "general":
        method = str(cfg.distill.name)
        if method not in GENERAL_METHODS:
            raise ConfigError(f"stage=general: distill={method!r} must be one of {', '.join(GENERAL_METHODS)}")
        name = GENERAL_METHODS[method]
    return importlib.import_module(f"tinydistill.stages.{name}")


def result_dir(cfg: DictConfig) -> Path:
    """The folder the stage `cfg` asks for exports its result to."""
    return Path(stage_module(cfg).result_dir(cfg))


def run(cfg: DictConfig) -> dict[str, Any]:
    clock = RunClock()
    stage = stage_module(cfg)
    if cfg.get("skip_done"):
        folder = Path(stage.result_dir(cfg))
        if result_is_current(cfg, folder):
            copy_result_to_log(folder, Path(cfg.paths.output_dir))
            return {"skipped": str(folder)}
    check_ckpt_path(cfg.get("ckpt_path"))  # before any work: a remote checkpoint would be fully unpickled
    check_run(cfg, stage)  # bad values, paths and models: one line each, before any work
    L.seed_everything(cfg.seed, workers=True)
    plan = stage.plan(cfg)  # the config is read here, once; below, the stage sees only the plan
    try:
        result = stage.run(plan)
    except SIGTERMException as e:
        # Lightning ends a fit on SIGTERM with a bare SystemExit, exit status 0: `make` and schedulers would take the
        # unfinished stage for a finished one and go on.
        raise StageInterrupted(interrupted_message(cfg)) from e
    out = result.get("output_dir") if isinstance(result, dict) else None
    if out:  # not for a skipped run or a DDP process other than rank 0
        name = str(cfg.stage.name)
        timing = {"stage": name, **clock.stop(resumed=bool(cfg.get("ckpt_path")))}
        atomic_write_text(Path(out) / TIMING_JSON, json.dumps(timing, indent=2) + "\n")
        # The settings beside the result (and the log folder's result.json): the report warns when runs it
        # aggregates over seeds differ in anything else, e.g. seeds left by an earlier version of a recipe.
        for folder in {Path(out), Path(cfg.paths.output_dir)}:
            if folder.is_dir():
                atomic_write_text(folder / RUN_CONFIG, run_config_yaml(cfg))
        log.info("stage=%s took %s", name, describe(timing))
    return result


def copy_result_to_log(folder: Path, log_dir: Path) -> None:
    """A skipped classifier stage still leaves its record (the metrics.json beside the model) as result.json in this
    run's log folder, as a run that trained would: a multirun's sweep folder alone is then enough for the report."""
    metrics = folder / METRICS_JSON
    if metrics.is_file():  # the exported file's bytes, as they are
        log_dir.mkdir(parents=True, exist_ok=True)
        atomic_write_text(log_dir / LOG_RESULT_JSON, metrics.read_text(encoding="utf-8"))


def interrupted_message(cfg: DictConfig) -> str:
    """One line for a stage SIGTERM stopped: its result is not written; the checkpoint to resume from, if any."""
    last = Path(cfg.paths.output_dir) / "checkpoints" / "last.ckpt"
    again = f"resume with ckpt_path={last}" if last.is_file() else "no checkpoint yet: run the command again"
    return f"stage={cfg.stage.name} stopped by SIGTERM before it finished (its result is not written); {again}"
