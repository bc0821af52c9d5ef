"""DistilBERT's pre-training distillation: a frozen masked-LM teacher, a masked-LM student, the triple loss.

One training step, as HF's ``examples/research_projects/distillation/distiller.py``: both models read the same
masked batch (15% of tokens, 80/10/10, BERT's uniform selection or the reference's frequency-smoothed one:
:mod:`tinydistill.data.masking`, applied by ``CorpusDataModule`` after the batch transfer), then

    loss = alpha_ce  * T^2 KL(softmax(z_T/T) || softmax(z_S/T))   at real tokens (or masked ones only)
         + alpha_mlm * CE(z_S, original token)                     at masked tokens
         + alpha_cos * (1 - cos(h_S, h_T))                         last hidden states, at real tokens
"""

from __future__ import annotations

import lightning as L
import torch
from torch import Tensor
from transformers import PreTrainedModel

from tinydistill.errors import ConfigError
from tinydistill.losses import (
    IGNORE_INDEX,
    cosine_hidden_loss,
    distillation_kl,
    masked_lm_cross_entropy,
)
from tinydistill.models.distilbert import check_compatible
from tinydistill.models.masked_lm import encoder_of, head_of
from tinydistill.modules.frozen_teacher import FrozenTeacherMixin
from tinydistill.optim import OptimizerSettings, configure_from_hparams

KD_POSITIONS = ("all", "masked")
TERMS = ("ce", "mlm", "cos")


class DistilBertModule(FrozenTeacherMixin, L.LightningModule):
    """Trains ``student`` (a masked LM of `models.masked_lm`: BERT, RoBERTa, ...) on DistilBERT's triple loss
    against a frozen ``teacher``.

    The teacher is frozen, in eval mode, runs under ``torch.no_grad()`` and is not saved in checkpoints
    (:class:`FrozenTeacherMixin`). Batches need ``input_ids``, ``attention_mask`` and MLM ``labels`` (``-100``
    where a token was not selected for masking). ``adam_betas`` (``distill.adam_betas``; None: the optimiser's
    default) reach the optimiser.

    Logged: ``train/loss`` (weighted total, progress bar) and the unweighted ``train/ce``, ``train/mlm``,
    ``train/cos`` every step; ``val/...`` the same averaged over the held-out instances, plus
    ``val/masked_accuracy`` (the student's top-1 accuracy at masked tokens).
    """

    def __init__(
        self,
        teacher: PreTrainedModel,
        student: PreTrainedModel,
        optim: OptimizerSettings,
        alpha_ce: float = 5.0,
        alpha_mlm: float = 2.0,
        alpha_cos: float = 1.0,
        temperature: float = 2.0,
        kd_positions: str = "all",
    ) -> None:
        super().__init__()
        if kd_positions not in KD_POSITIONS:
            raise ConfigError(f"distill.kd_positions={kd_positions!r} must be one of {', '.join(KD_POSITIONS)}")
        alphas = {"alpha_ce": alpha_ce, "alpha_mlm": alpha_mlm, "alpha_cos": alpha_cos}
        if any(not a >= 0 for a in alphas.values()) or not sum(alphas.values()) > 0:
            raise ConfigError(f"distill alphas must be >= 0 and not all 0, got {alphas}")
        if not temperature > 0:
            raise ConfigError(f"distill.temperature must be > 0, got {temperature!r}")
        betas = optim.adam_betas
        if betas is not None and (len(betas) != 2 or not all(0.0 <= float(b) < 1.0 for b in betas)):
            raise ConfigError(f"distill.adam_betas={list(betas)}: expected null or two numbers in [0, 1)")
        check_compatible(student.config, teacher.config)
        self.save_hyperparameters({**alphas, "temperature": temperature, "kd_positions": kd_positions,
                                   **optim.hparams()})
        self.teacher = teacher.eval().requires_grad_(False)
        self.student = student.train()

    def triple_loss(self, batch: dict[str, Tensor]) -> tuple[dict[str, Tensor], Tensor, Tensor]:
        """``{"ce", "mlm", "cos", "loss"}`` for one batch, and the student's logits and labels at the KD rows."""
        hp = self.hparams
        labels = batch["labels"]
        inputs = {k: v for k, v in batch.items() if k != "labels"}
        real = inputs["attention_mask"].bool()
        # Soft targets at every real token (DistilBERT's default) or at the masked ones only
        # (distiller.py's restrict_ce_to_mask). Masked tokens are always real tokens, so either
        # selection holds every MLM target.
        rows = labels != IGNORE_INDEX if hp.kd_positions == "masked" else real
        with torch.no_grad():
            t_hidden = encoder_of(self.teacher)(**inputs).last_hidden_state
            t_logits = head_of(self.teacher)(t_hidden[rows])
        s_hidden = encoder_of(self.student)(**inputs).last_hidden_state
        # The vocabulary projection dominates a small model's cost: apply the heads only at the rows the losses
        # read (equal to model(**inputs).logits[rows]; padding never goes through the head).
        s_logits = head_of(self.student)(s_hidden[rows])
        row_labels = labels[rows]

        ce = distillation_kl(s_logits, t_logits, hp.temperature)
        mlm = masked_lm_cross_entropy(s_logits, row_labels)
        cos = cosine_hidden_loss(s_hidden, t_hidden, real)
        loss = hp.alpha_ce * ce + hp.alpha_mlm * mlm + hp.alpha_cos * cos
        return {"ce": ce, "mlm": mlm, "cos": cos, "loss": loss}, s_logits, row_labels

    def training_step(self, batch: dict[str, Tensor], batch_idx: int) -> Tensor:
        losses, _, _ = self.triple_loss(batch)
        for name, value in losses.items():
            self.log(f"train/{name}", value.detach(), prog_bar=name == "loss", batch_size=batch["input_ids"].shape[0])
        return losses["loss"]

    def validation_step(self, batch: dict[str, Tensor], batch_idx: int) -> None:
        losses, logits, labels = self.triple_loss(batch)
        size = batch["input_ids"].shape[0]
        for name, value in losses.items():
            self.log(f"val/{name}", value, on_epoch=True, batch_size=size, sync_dist=True)
        masked = labels != IGNORE_INDEX
        n = int(masked.sum())
        if n:
            accuracy = (logits[masked].argmax(-1) == labels[masked]).float().mean()
            self.log("val/masked_accuracy", accuracy, on_epoch=True, batch_size=n, sync_dist=True)

    def configure_optimizers(self) -> dict:
        return configure_from_hparams(self, self.student.named_parameters(prefix="student"))
