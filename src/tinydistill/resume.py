"""Exact resume: what a checkpoint needs beyond Lightning's own state for a resumed run to continue exactly as the
uninterrupted one.

Lightning's checkpoints already hold the weights, the optimiser, the LR schedule, the loop counters, every callback's
`state_dict` and, for a `StatefulDataLoader`, the training loader's position (epoch order and next example:
`tinydistill.data.loader`, `tinydistill.data.sampler`). What they lack is the global random state dropout and
masking draw from. :class:`ExactResume` (added to every Trainer by `tinydistill.trainer.build_trainer`):

* saves the global generators of Python, NumPy and torch (CPU and CUDA) in every checkpoint and sets them back when
  the resumed run starts training (or, resumed from a checkpoint written after the last step, when its fit ends);
* runs every evaluation from one fixed random state (the run's seed) and hands training its own state back
  afterwards, so evaluations (sanity checks, the held-out losses before training, an evaluation the kill interrupted
  and the resumed run repeats) never shift the numbers training draws, and all of them mask held-out text alike;
* applies the loader position Lightning read from the checkpoint but did not load (Lightning issue #20550: the LR
  schedule's `trainer.estimated_stepping_batches` builds the training loader before the checkpoint is read, and
  the saved position is then dropped, so a mid-epoch resume would restart the epoch).

:class:`ResumableCheckpoint` is the `ModelCheckpoint` of every stage: its `last.ckpt` follows every evaluation and
the end of training (Lightning's, with a monitored metric, only new best evaluations), and it keeps the best-so-far
scores when the resumed run writes into a new run folder (plain `ModelCheckpoint` then forgets them), so the
resumed run selects the same best evaluation.

Under DDP every process resumes from rank 0's random state (rank 0 writes the checkpoints); exactness is checked
for single-process runs.
"""

from __future__ import annotations

import warnings
from typing import Any

import lightning as L
import numpy as np
import torch
from lightning.fabric.utilities.data import _set_sampler_epoch
from lightning.fabric.utilities.seed import (
    _collect_rng_states,
    _set_rng_states,
    seed_everything,
)
from lightning.pytorch.callbacks import Callback, ModelCheckpoint


def random_states() -> dict[str, Any]:
    """The global random states of Python, NumPy and torch (CPU, CUDA), as tensors, numbers and strings only, so a
    checkpoint holding them still loads with `torch.load(weights_only=True)` (NumPy's array would not)."""
    states = _collect_rng_states(include_cuda=True)
    kind, keys, pos, has_gauss, cached_gaussian = states["numpy"]
    states["numpy"] = {"kind": str(kind), "keys": torch.from_numpy(keys.astype(np.int64)), "pos": int(pos),
                       "has_gauss": int(has_gauss), "cached_gaussian": float(cached_gaussian)}
    return states


def set_random_states(states: dict[str, Any]) -> None:
    """Set the global random states saved by :func:`random_states`."""
    numpy_state = states["numpy"]
    restored = {**states, "numpy": (numpy_state["kind"], numpy_state["keys"].numpy().astype(np.uint32),
                                    numpy_state["pos"], numpy_state["has_gauss"], numpy_state["cached_gaussian"])}
    if not torch.cuda.is_available():  # a GPU run's checkpoint resumed on a CPU
        restored.pop("torch.cuda", None)
    _set_rng_states(restored)


def load_pending_loader_states(trainer: L.Trainer) -> None:
    """Give the training loaders the positions Lightning read from the checkpoint but has not applied (#20550),
    then restart the epoch's iterator from them. A no-op when Lightning applied them itself."""
    fit_loop = trainer.fit_loop
    if not getattr(fit_loop, "_combined_loader_states_to_load", None) or fit_loop._combined_loader is None:
        return
    for loader in fit_loop._combined_loader.flattened:  # the epoch first, as Lightning does before each epoch
        _set_sampler_epoch(loader, fit_loop.epoch_progress.current.processed)
    fit_loop._load_combined_loader_states()
    iter(fit_loop._data_fetcher)  # the iterator made before the restore starts at the epoch's first batch


class ExactResume(Callback):
    """Random state in checkpoints, evaluations isolated from training's random numbers, loader positions applied
    (see the module docstring). `seed`: the random state every evaluation starts from."""

    def __init__(self, seed: int) -> None:
        self.seed = int(seed)
        self._training: dict[str, Any] | None = None  # training's random state while an evaluation runs
        self._resume: dict[str, Any] | None = None  # the state loaded from a checkpoint, set when training starts

    def state_dict(self) -> dict[str, Any]:
        # Saved mid-evaluation (ModelCheckpoint at on_validation_end): training's state, not the evaluation's.
        return {"random_states": self._training if self._training is not None else random_states()}

    def load_state_dict(self, state_dict: dict[str, Any]) -> None:
        self._resume = state_dict.get("random_states")

    def on_train_start(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        load_pending_loader_states(trainer)
        if self._resume is not None:
            # Here, not at load time: nothing may draw from the restored state before the first resumed batch.
            set_random_states(self._resume)
            self._resume = None

    def on_fit_end(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        # A checkpoint written after the last step: the fit trains nothing (on_train_start never runs), but what
        # comes after it (stage=task's phase 2) must still draw on from the checkpoint's state.
        if self._resume is not None:
            set_random_states(self._resume)
            self._resume = None

    def on_validation_start(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        self._training = random_states()
        seed_everything(self.seed, workers=True, verbose=False)

    def on_validation_end(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        if self._training is not None:
            set_random_states(self._training)
            self._training = None


class ResumableCheckpoint(ModelCheckpoint):
    """A `ModelCheckpoint` whose `last.ckpt` follows every evaluation, and that, resumed into another folder (each
    run has its own), keeps the best-so-far scores and paths of the run it resumes. The earlier run's files stay
    where they are: Lightning deletes superseded checkpoints only inside its own folder."""

    @property
    def state_key(self) -> str:
        # Plain ModelCheckpoint's key: checkpoints written before this class keep their best-so-far scores.
        return ModelCheckpoint.__qualname__ + super().state_key[len(type(self).__qualname__):]

    def on_validation_end(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        super().on_validation_end(trainer, pl_module)
        self._save_last_if_missed(trainer, at_epoch_end=False)

    def on_train_epoch_end(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        super().on_train_epoch_end(trainer, pl_module)
        self._save_last_if_missed(trainer, at_epoch_end=True)

    def on_train_end(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        super().on_train_end(trainer, pl_module)
        # The final state as well, unless the last step has its checkpoint: a run killed after training (during the
        # export, or in stage=task's phase 2 before its first evaluation) then resumes without repeating steps.
        if self.save_last and not self._should_skip_saving_checkpoint(trainer):
            self._save_last_checkpoint(trainer, self._monitor_candidates(trainer))

    def _save_last_if_missed(self, trainer: L.Trainer, at_epoch_end: bool) -> None:
        # With a monitored metric, Lightning writes last.ckpt only beside a new top-k checkpoint: killed after an
        # evaluation that did not improve, a run would resume from its last improvement instead of its last
        # evaluation. (Without a monitor every periodic checkpoint updates last.ckpt already.)
        if (self.save_last and self.monitor is not None and not self._should_skip_saving_checkpoint(trainer)
                and self._should_save_on_train_epoch_end(trainer) == at_epoch_end):
            self._save_last_checkpoint(trainer, self._monitor_candidates(trainer))

    def load_state_dict(self, state_dict: dict[str, Any]) -> None:
        moved = state_dict.get("dirpath", self.dirpath) != self.dirpath
        with warnings.catch_warnings():
            warnings.filterwarnings("ignore", message="The dirpath has changed")
            super().load_state_dict(state_dict)
        if moved:
            self.best_model_score = state_dict["best_model_score"]
            self.best_k_models = dict(state_dict.get("best_k_models", {}))
            self.kth_best_model_path = state_dict.get("kth_best_model_path", "")
            self.kth_value = state_dict.get("kth_value", self.kth_value)
