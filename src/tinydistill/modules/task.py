"""Task-specific distillation (TinyBERT stage 2): a fine-tuned teacher, a student classifier, two phases.

- phase ``intermediate``: embedding/attention/hidden losses (the same `IntermediateDistiller` as
  general distillation); the student's encoder and the projections train, its classifier does not. With a
  `TeacherCache` (eval-mode teacher) a batch drawn again in a later epoch reads the teacher's targets kept from
  its first time instead of running the teacher.
- phase ``pred``: prediction-layer loss against the teacher's logits; the whole student trains, the projections
  do not. With an eval-mode teacher (``teacher_mode="eval"``, default) the logits are computed once per training
  example and looked up by the batch's ``idx``: all before the phase, or, in a partial cache (NaN rows), by the
  teacher the first time a batch draws the row (`stage.pred.teacher_logits=seen`); with a train-mode teacher (the
  reference's dropout noise) they are computed afresh for every batch, as the reference's ``task_distill.py`` does.
- phase ``gold`` (the ``no_pred`` ablation): cross-entropy (MSE for regression) on gold labels.

Dev metrics are computed by `GlueEvalModule` on the student. A teacher whose tokenizer differs from the student's reads
the batch's own encoding of the texts (``teacher_*`` columns, `data.two_tokenizers`; the pred phase only).
"""

from __future__ import annotations

from typing import Any

import torch
import torch.distributed as dist
from torch import Tensor
from transformers import PreTrainedModel

from tinydistill.data.tasks import Task
from tinydistill.data.two_tokenizers import split_encodings
from tinydistill.distill.methods import Distiller
from tinydistill.distill.prediction import prediction_loss, unknown_rows
from tinydistill.distill.teacher_cache import TeacherCache
from tinydistill.errors import ConfigError
from tinydistill.models.capture import Captured, forward_with_capture
from tinydistill.modules.frozen_teacher import FrozenTeacherMixin
from tinydistill.modules.glue_eval import GlueEvalModule
from tinydistill.optim import OptimizerSettings, configure_from_hparams

PHASES = ("intermediate", "pred", "gold")
# Checkpoint key of a partial logit cache's rows (stage.pred.teacher_logits=seen).
SEEN_LOGITS_KEY = "teacher_logits_seen"
MODEL_INPUTS = ("input_ids", "attention_mask", "token_type_ids")


def teacher_inputs(batch: dict[str, Tensor], inputs: dict[str, Tensor]) -> dict[str, Tensor]:
    """What the teacher reads: its own encoding of the batch's texts when the batch carries one, else `inputs`."""
    own = {k: v for k, v in split_encodings(batch)[1].items() if k in MODEL_INPUTS}
    return own or inputs


class TaskDistillModule(FrozenTeacherMixin, GlueEvalModule):
    """The student classifier (``self.classifier``) trained in one phase; the frozen teacher (the intermediate
    phase needs it, and the pred phase without cached logits; see :class:`FrozenTeacherMixin`) runs in
    ``teacher_mode`` and stays out of checkpoints. ``optim``: see `tinydistill.optim`."""

    def __init__(
        self,
        student: PreTrainedModel,
        task: Task,
        phase: str,
        optim: OptimizerSettings,
        teacher: PreTrainedModel | None = None,
        distiller: Distiller | None = None,
        teacher_logits: Tensor | None = None,
        pred_weight: float = 1.0,
        temperature: float = 1.0,
        regression_target: str = "teacher",
        teacher_mode: str = "eval",
        teacher_cache: TeacherCache | None = None,
    ) -> None:
        super().__init__(student, task)
        if phase not in PHASES:
            raise ConfigError(f"task distillation phase {phase!r} must be one of {PHASES}")
        if phase == "intermediate" and (teacher is None or distiller is None):
            raise ValueError("the intermediate phase needs the teacher and a distiller")
        if phase == "pred" and teacher is None and (teacher_logits is None or unknown_rows(teacher_logits).any()):
            raise ValueError("the pred phase needs the teacher's logits for the whole training set, or the teacher")
        if teacher_mode == "train" and teacher_logits is not None:
            raise ValueError("a train-mode teacher's logits change every batch: pass the teacher, not cached logits")
        if teacher_mode == "train" and teacher_cache is not None:
            raise ValueError("a train-mode teacher's targets change every batch: a teacher cache needs teacher_mode=eval")
        self.save_hyperparameters({"phase": phase, "pred_weight": pred_weight, "temperature": temperature,
                                   "regression_target": regression_target, "teacher_mode": teacher_mode,
                                   **optim.hparams()})
        self.phase = phase
        self.set_teacher(teacher, teacher_mode)
        self.distiller = distiller if phase == "intermediate" else None
        self.teacher_cache = teacher_cache if phase == "intermediate" else None
        # A plain tensor on the CPU, not a buffer: DDP copies rank 0's buffers over every other process's at each
        # forward, which would throw away the rows those processes fill (`teacher_targets`).
        self.teacher_logits = None if teacher_logits is None else teacher_logits.cpu()
        # Only the parameters that receive a loss signal in this phase train: in the intermediate
        # phase the classifier head (and pooler, which only feeds it) get none, nor what the distiller does not read.
        base = self.classifier.base_model_prefix + "."
        for name, p in self.classifier.named_parameters():
            p.requires_grad_(phase != "intermediate"
                             or (self._is_encoder(name, base) and self.distiller.student_trains(name)))

    @staticmethod
    def _is_encoder(name: str, base: str) -> bool:
        """The encoder's parameters: the base model's (embeddings and layers, whatever the family calls them; BERT's
        `.embeddings.` and `.encoder.`), not its pooler."""
        return name.startswith(base) and ".pooler." not in name

    def _log(self, losses: dict[str, Tensor], batch_size: int) -> None:
        for name, value in losses.items():
            self.log(f"train/{name}", value.detach(), prog_bar=name == "loss", batch_size=batch_size)

    def training_step(self, batch: dict[str, Tensor], batch_idx: int) -> Tensor:
        inputs = {k: batch[k] for k in MODEL_INPUTS if k in batch}
        n = inputs["input_ids"].shape[0]
        if self.phase == "intermediate":
            want = self.distiller.want_attention
            t = self.intermediate_targets(batch, teacher_inputs(batch, inputs), want)
            s = forward_with_capture(self.classifier, inputs, want)
            losses = self.distiller(s, t)
        elif self.phase == "pred":
            logits = self.classifier(**inputs).logits
            pred = prediction_loss(
                logits,
                self.teacher_targets(batch, teacher_inputs(batch, inputs)),
                batch.get("labels"),
                self.task,
                self.hparams.temperature,
                self.hparams.regression_target,
            )
            losses = {"pred": pred, "loss": self.hparams.pred_weight * pred}
        else:
            loss = self.classifier(**inputs, labels=batch["labels"]).loss
            losses = {"gold": loss, "loss": loss}
        self._log(losses, n)
        return losses["loss"]

    def intermediate_targets(self, batch: dict[str, Tensor], inputs: dict[str, Tensor], want: str | None) -> Captured:
        """The teacher's hidden states and attention for the batch: from the teacher cache when this very batch
        (same examples, same order) was seen before, else from the teacher (and kept, if the cache has room)."""
        if self.teacher_cache is None or "idx" not in batch:
            return self.teacher_captures(inputs, want)
        return self.teacher_cache.get_or_compute(batch["idx"], lambda: self.teacher_captures(inputs, want))

    def teacher_targets(self, batch: dict[str, Tensor], inputs: dict[str, Tensor]) -> Tensor:
        """The teacher's logits for the batch: cached ones by ``idx`` (the rows a partial cache lacks computed now
        and kept), else a forward pass without gradients (float32, in the teacher's mode: with dropout for a
        train-mode teacher)."""
        if self.teacher_logits is None:
            with torch.no_grad():
                return self.teacher(**inputs).logits.float()
        idx = batch["idx"].cpu()
        missing = unknown_rows(self.teacher_logits[idx])
        if missing.any():
            # The batch's padding stays: the missing rows' logits are those of the row alone, up to float rounding.
            on_device = missing.to(batch["idx"].device)
            with torch.no_grad():
                fresh = self.teacher(**{k: v[on_device] for k, v in inputs.items()}).logits.float()
            self.teacher_logits[idx[missing]] = fresh.to("cpu", self.teacher_logits.dtype)
        return self.teacher_logits[idx].to(batch["idx"].device)

    def _join_process_rows(self) -> None:
        # Under DDP each process fills the rows its own batches draw: take every process's, so the cache saved after
        # the fit (by rank 0) and each checkpoint (written by rank 0) keep every row computed, not one process's
        # share. A collective: Lightning runs both hooks below on every process. Gathered on the module's device,
        # since NCCL cannot gather CPU tensors.
        distributed = dist.is_available() and dist.is_initialized() and dist.get_world_size() > 1
        if self.teacher_logits is None or self.teacher is None or not distributed:
            return
        for rows in self.all_gather(self.teacher_logits.to(self.device)).cpu():
            take = unknown_rows(self.teacher_logits) & ~unknown_rows(rows)
            self.teacher_logits[take] = rows[take].to(self.teacher_logits.dtype)

    def on_train_end(self) -> None:
        self._join_process_rows()

    def on_save_checkpoint(self, checkpoint: dict[str, Any]) -> None:
        super().on_save_checkpoint(checkpoint)
        # A partial cache fills as training goes: a resumed run needs the same values for the rows already seen.
        if self.teacher_logits is not None and self.teacher is not None:
            self._join_process_rows()
            checkpoint[SEEN_LOGITS_KEY] = self.teacher_logits.clone()

    def on_load_checkpoint(self, checkpoint: dict[str, Any]) -> None:
        super().on_load_checkpoint(checkpoint)
        saved = checkpoint.get(SEEN_LOGITS_KEY)
        if saved is not None and self.teacher_logits is not None and saved.shape == self.teacher_logits.shape:
            known = ~unknown_rows(saved)
            self.teacher_logits[known] = saved[known].to(self.teacher_logits.dtype)

    def configure_optimizers(self) -> dict:
        named = list(self.classifier.named_parameters(prefix="student"))
        if self.distiller is not None:
            named += list(self.distiller.named_parameters(prefix="distiller"))
        return configure_from_hparams(self, named)
