"""The training callbacks the stages share: what a fit remembers (kept in checkpoints, so a resumed fit reports
what the uninterrupted one would) and where its checkpoints go."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import lightning as L
from lightning.pytorch.callbacks import Callback
from lightning.pytorch.trainer.states import TrainerFn

from tinydistill.resume import ResumableCheckpoint

CHECKPOINTS = "checkpoints"


class FirstAndLastLosses(Callback):
    """Remembers the first and the latest logged ``train/*`` values, and ``val_start``, the held-out losses before
    training (set by the stage); all kept in checkpoints, so a resumed run reports what the uninterrupted one would."""

    def __init__(self) -> None:
        self.first: dict[str, float] = {}
        self.last: dict[str, float] = {}
        self.val_start: dict[str, float] = {}

    def on_train_batch_end(self, trainer: L.Trainer, pl_module: L.LightningModule, outputs, batch, batch_idx) -> None:
        values = {k.split("/", 1)[1]: float(v) for k, v in trainer.callback_metrics.items() if k.startswith("train/")}
        for k, v in values.items():
            self.first.setdefault(k, v)
        self.last.update(values)

    def state_dict(self) -> dict[str, Any]:
        return {"first": dict(self.first), "last": dict(self.last), "val_start": dict(self.val_start)}

    def load_state_dict(self, state_dict: dict[str, Any]) -> None:
        self.first = dict(state_dict.get("first", {}))
        self.last = dict(state_dict.get("last", {}))
        self.val_start = dict(state_dict.get("val_start", {}))


class EvaluationCount(Callback):
    """Counts the dev evaluations a fit runs (not the sanity check, not a later `trainer.validate`), kept in
    checkpoints: a no-distillation baseline can then pick its best from as many evaluations as the distilled run
    (`stage.evals=matched`), since the best of many evaluations flatters a run by its luckiest one."""

    def __init__(self) -> None:
        self.count = 0

    def on_validation_end(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        if trainer.state.fn == TrainerFn.FITTING and not trainer.sanity_checking:
            self.count += 1

    def state_dict(self) -> dict[str, Any]:
        return {"count": self.count}

    def load_state_dict(self, state_dict: dict[str, Any]) -> None:
        self.count = int(state_dict.get("count", 0))


def best_checkpoint(log_dir: str | Path, metric: str) -> ResumableCheckpoint:
    """Keep the best evaluation by the task's main dev `metric`, and `last.ckpt` (the latest, for resuming)."""
    return ResumableCheckpoint(
        dirpath=Path(log_dir) / CHECKPOINTS,
        monitor=f"val/{metric}",
        mode="max",
        save_top_k=1,
        save_last=True,
        filename="best-{epoch}-{step}",
        # stage=task: overwrite the intermediate phase's last.ckpt rather than write last-v1.ckpt beside it
        enable_version_counter=False,
    )


def latest_checkpoint(log_dir: str | Path, filename: str, every_n_train_steps: int | None) -> ResumableCheckpoint:
    """A fit without a monitored metric: the most recent `filename` checkpoint every `every_n_train_steps` steps
    (None: at the end of each epoch), plus `last.ckpt`."""
    return ResumableCheckpoint(
        dirpath=Path(log_dir) / CHECKPOINTS,
        filename=filename,
        auto_insert_metric_name=False,
        every_n_train_steps=every_n_train_steps,
        save_top_k=1,  # no monitor: the most recent one
        save_last=True,
    )
