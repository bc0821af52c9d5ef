"""Progress of a fit as log lines, for runs whose output goes to a file.

Lightning's live bars (rich's, with rich installed) draw nothing when the output is not a terminal, so a stage run
under ``nohup`` or ``make ... > log`` showed no progress for an hour. :class:`LogProgress` takes the progress bar's
place there: every ``every_s`` seconds, and when training ends, it logs one line such as
``train: step 120/1200 (10%), 1.52 s/step, 27.4 min left; loss 2.31``.
"""

from __future__ import annotations

import logging
import sys
import time
from typing import Any

import lightning as L
from lightning.pytorch.callbacks import Callback
from lightning.pytorch.callbacks.progress import ProgressBar

from tinydistill.errors import ConfigError

log = logging.getLogger(__name__)

#: `trainer.progress` values: the live bar, log lines, or the bar in a terminal and log lines otherwise.
MODES = ("auto", "bar", "log")


class LogProgress(ProgressBar):
    """Logs the optimiser step, its rate, the time left and the progress-bar metrics every `every_s` seconds."""

    def __init__(self, every_s: float = 60.0) -> None:
        super().__init__()
        self.every_s = float(every_s)
        self._enabled = True
        self._start_time = self._last_time = 0.0
        self._start_step = 0

    def disable(self) -> None:
        self._enabled = False

    def enable(self) -> None:
        self._enabled = True

    def print(self, *args: Any, **kwargs: Any) -> None:
        log.info(" ".join(str(a) for a in args))

    def total_steps(self, trainer: L.Trainer) -> int | None:
        """The fit's optimiser steps: `max_steps` when set, else Lightning's estimate from epochs and batches."""
        if trainer.max_steps and trainer.max_steps > 0:
            return int(trainer.max_steps)
        total = trainer.estimated_stepping_batches
        return int(total) if total != float("inf") else None

    def on_train_start(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        self._start_time = self._last_time = time.monotonic()
        self._start_step = trainer.global_step  # a resumed fit counts its rate from where it resumed

    def on_train_batch_end(self, trainer: L.Trainer, pl_module: L.LightningModule, *args: Any) -> None:
        now = time.monotonic()
        if now - self._last_time >= self.every_s:
            self._last_time = now
            self._report(trainer, pl_module, now)

    def on_train_end(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        self._report(trainer, pl_module, time.monotonic())

    def line(self, trainer: L.Trainer, pl_module: L.LightningModule, now: float) -> str:
        step, total = trainer.global_step, self.total_steps(trainer)
        done = step - self._start_step
        parts = [f"step {step}/{total} ({step / total:.0%})" if total else f"step {step}"]
        if done > 0:
            per_step = (now - self._start_time) / done
            parts.append(f"{per_step:.2f} s/step")
            if total and total > step:
                parts.append(f"{(total - step) * per_step / 60:.1f} min left")
        metrics = {k: v for k, v in self.get_metrics(trainer, pl_module).items() if k != "v_num"}
        shown = ", ".join(f"{k} {v:.4g}" if isinstance(v, float) else f"{k} {v}" for k, v in metrics.items())
        return f"train: {', '.join(parts)}" + (f"; {shown}" if shown else "")

    def _report(self, trainer: L.Trainer, pl_module: L.LightningModule, now: float) -> None:
        if self._enabled and trainer.is_global_zero:
            log.info(self.line(trainer, pl_module, now))


def check_progress_settings(mode: Any, every_s: Any) -> None:
    """One-line ConfigError for a `trainer.progress` or `trainer.progress_every_s` this module cannot use."""
    if mode not in MODES:
        raise ConfigError(f"trainer.progress={mode}: expected one of {', '.join(MODES)}")
    if isinstance(every_s, bool) or not isinstance(every_s, (int, float)) or not every_s >= 0:
        raise ConfigError(f"trainer.progress_every_s={every_s}: expected a number of seconds, 0 or more")


def progress_callbacks(mode: str, every_s: float, interactive: bool | None = None) -> list[Callback]:
    """The callbacks that show a fit's progress for `trainer.progress=<mode>`: none for Lightning's own bar, or
    [LogProgress]. `interactive`: whether the output is a terminal (default: whether stderr is)."""
    check_progress_settings(mode, every_s)
    if interactive is None:
        interactive = sys.stderr.isatty()
    if mode == "bar" or (mode == "auto" and interactive):
        return []
    return [LogProgress(every_s)]
