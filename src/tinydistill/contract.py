"""The contract every stage keeps, and the plan parts all stages share.

A stage is one module (one package for `task`) under `tinydistill.stages` that defines:

- ``NAME``: what `stage=` (and the result records) call it;
- ``LEARNING_RATES`` and ``SEQUENCE_LENGTH``: the options the pre-run checks read as learning rates and as the
  sequence length (`tinydistill.preflight`);
- ``READS``: which data it reads (``"task"`` files, the general ``"corpus"``), for the pre-run data-source check;
- ``models(cfg)``: the pretrained models it loads, as `ModelNeed`s, for the pre-run model checks;
- ``result_dir(cfg)``: the folder its result goes to (what ``skip_done`` looks at);
- ``plan(cfg)``: every check, resolved path and setting, as a frozen, typed plan: the config is read here, at the
  stage's door, and nowhere below;
- ``run(plan)``: runs the plan and returns the stage's record (a dict; ``output_dir`` when it exported).

`tinydistill.stages.run` composes them: skip a finished result, pre-run checks, seed, plan, run, timing. Adding a
stage is one module with these names, one entry in `STAGES`, and one YAML file under ``conf/stage/``.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Protocol

from omegaconf import DictConfig

from tinydistill.trainer import TrainerPlan


@dataclass(frozen=True)
class ModelNeed:
    """A pretrained model a stage loads: the option naming it, the model types that stage can use, and the role
    errors name. ``if_present``: checked only when the option names an existing model folder (a missing one is the
    stage's own error, which says which stage makes it)."""

    key: str
    allowed: frozenset[str]
    role: str
    if_present: bool = False


@dataclass(frozen=True)
class Loading:
    """How batches are loaded (the ``data`` group)."""

    num_workers: int
    group_by_length: bool
    pad_to_max_length: bool


@dataclass(frozen=True)
class RunContext:
    """What every stage's plan holds beside its own settings: the seed, the checkpoint to resume, the run's log
    folder, the data and cache folders, how batches load and how Trainers are built."""

    seed: int
    ckpt_path: str | None
    log_dir: Path
    data_dir: str | None
    cache_dir: str
    artifacts_dir: str
    loading: Loading
    trainer: TrainerPlan

    @classmethod
    def from_config(cls, cfg: DictConfig) -> RunContext:
        data = cfg.data
        return cls(
            seed=int(cfg.seed),
            ckpt_path=None if cfg.get("ckpt_path") is None else str(cfg.ckpt_path),
            log_dir=Path(cfg.paths.output_dir),
            data_dir=None if cfg.paths.get("data_dir") is None else str(cfg.paths.data_dir),
            cache_dir=str(cfg.paths.cache_dir),
            artifacts_dir=str(cfg.paths.artifacts_dir),
            loading=Loading(int(data.num_workers), bool(data.group_by_length), bool(data.pad_to_max_length)),
            trainer=TrainerPlan.from_config(cfg),
        )


class Stage(Protocol):
    """What `tinydistill.stages` expects of a stage module (see the module docstring)."""

    NAME: str
    LEARNING_RATES: tuple[str, ...]
    SEQUENCE_LENGTH: str | None
    READS: frozenset[str]

    def models(self, cfg: DictConfig) -> Iterator[ModelNeed]: ...

    def result_dir(self, cfg: DictConfig) -> Path: ...

    def plan(self, cfg: DictConfig) -> Any: ...

    def run(self, plan: Any) -> dict[str, Any]: ...
