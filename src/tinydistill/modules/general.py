"""General distillation: a frozen teacher, a student and an intermediate-layer distiller, wired for Lightning."""

from __future__ import annotations

import lightning as L
from torch import Tensor
from transformers import PreTrainedModel

from tinydistill.distill.methods import Distiller
from tinydistill.models.capture import forward_with_capture
from tinydistill.modules.frozen_teacher import FrozenTeacherMixin
from tinydistill.optim import OptimizerSettings, configure_from_hparams


class GeneralDistillModule(FrozenTeacherMixin, L.LightningModule):
    """Trains ``student`` and the distiller's projections on ``distiller(student, teacher)["loss"]``.

    The teacher is frozen (``requires_grad=False``), runs under ``torch.no_grad()`` and, with ``teacher_mode="eval"``
    (default), stays in eval mode even when the module is switched to training (``"train"``: dropout on, as the
    reference's teacher). Its weights are left out of checkpoints (they come from the teacher's own files; resuming
    puts them back; see :class:`FrozenTeacherMixin`). The student's pooler gets no loss signal, so it is frozen too
    (it stays at its initialisation, as in the reference, and DDP sees no unused trainable parameters).

    Logged: ``train/loss`` (weighted total, progress bar) and ``train/<term>`` per active term (``emb``, ``att``,
    ``hid``; unweighted), every step; ``val/...`` the same averaged over the held-out instances.
    """

    def __init__(
        self,
        teacher: PreTrainedModel,
        student: PreTrainedModel,
        distiller: Distiller,
        optim: OptimizerSettings,
        teacher_mode: str = "eval",
    ) -> None:
        super().__init__()
        self.save_hyperparameters({**optim.hparams(), "teacher_mode": teacher_mode})
        self.set_teacher(teacher, teacher_mode)
        self.student = student.train()
        pooler = getattr(student, "pooler", None)
        if pooler is not None:
            pooler.requires_grad_(False)
        for name, p in student.named_parameters():
            if not distiller.student_trains(name):  # distill=minilm: above the layer its loss reads
                p.requires_grad_(False)
        self.distiller = distiller

    def distillation_losses(self, batch: dict[str, Tensor]) -> dict[str, Tensor]:
        want = self.distiller.want_attention
        teacher = self.teacher_captures(batch, want)
        student = forward_with_capture(self.student, batch, want)
        return self.distiller(student, teacher)

    def _log_losses(self, prefix: str, losses: dict[str, Tensor], batch_size: int, on_step: bool) -> None:
        for name, value in losses.items():
            self.log(
                f"{prefix}/{name}",
                value.detach(),
                prog_bar=name == "loss",
                on_step=on_step,
                on_epoch=not on_step,
                batch_size=batch_size,
            )

    def training_step(self, batch: dict[str, Tensor], batch_idx: int) -> Tensor:
        losses = self.distillation_losses(batch)
        self._log_losses("train", losses, batch["input_ids"].shape[0], on_step=True)
        return losses["loss"]

    def validation_step(self, batch: dict[str, Tensor], batch_idx: int) -> None:
        losses = self.distillation_losses(batch)
        self._log_losses("val", losses, batch["input_ids"].shape[0], on_step=False)

    def configure_optimizers(self) -> dict:
        named = [*self.student.named_parameters(prefix="student"), *self.distiller.named_parameters(prefix="distiller")]
        return configure_from_hparams(self, named)
