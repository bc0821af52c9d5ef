"""Masked-LM training: gives an encoder without an MLM head (the MiniLM teacher) a trained one.

TinyBERT's augmentation and DistilBERT's teacher need a masked LM, and no pretrained one can be
had offline. The head (transform + output bias; the decoder is tied to the word embeddings) is
trained on the corpus with BERT's 80/10/10 masking; `train_encoder=True` trains the encoder too.
"""

from __future__ import annotations

import lightning as L
import torch
from torch import Tensor
from transformers import PreTrainedModel

from tinydistill.models.masked_lm import encoder_of, head_of
from tinydistill.optim import OptimizerSettings, configure_from_hparams

IGNORE = -100


def masked_accuracy(logits: Tensor, labels: Tensor) -> tuple[Tensor, Tensor]:
    """(correct, total) over masked positions (labels != -100)."""
    masked = labels != IGNORE
    correct = (logits.argmax(-1) == labels) & masked
    return correct.sum(), masked.sum()


def masked_lm_loss(model: PreTrainedModel, batch: dict[str, Tensor]) -> tuple[Tensor, Tensor, Tensor]:
    """Loss, logits and labels at the masked positions only.

    The vocabulary projection is most of a small model's cost; applying the head at the ~15% of
    positions that have a target gives the same loss as `model(**batch).loss` for a fraction of it.
    """
    labels = batch["labels"]
    inputs = {k: v for k, v in batch.items() if k != "labels"}
    hidden = encoder_of(model)(**inputs).last_hidden_state
    masked = labels != IGNORE
    logits = head_of(model)(hidden[masked])
    target = labels[masked]
    return torch.nn.functional.cross_entropy(logits, target), logits, target


class MlmModule(L.LightningModule):
    def __init__(
        self,
        model: PreTrainedModel,
        optim: OptimizerSettings,
        train_encoder: bool = False,
    ) -> None:
        super().__init__()
        self.save_hyperparameters({**optim.hparams(), "train_encoder": train_encoder})
        self.model = model.train()
        # Freezing the encoder also freezes the decoder matrix (tied to the word embeddings).
        encoder_of(self.model).requires_grad_(train_encoder)
        self._val = torch.zeros(2)

    def training_step(self, batch: dict[str, Tensor], batch_idx: int) -> Tensor:
        loss, logits, target = masked_lm_loss(self.model, batch)
        correct, total = masked_accuracy(logits.detach(), target)
        self.log("train/loss", loss, prog_bar=True)
        self.log("train/masked_accuracy", correct / total.clamp(min=1), prog_bar=True)
        return loss

    def on_validation_epoch_start(self) -> None:
        self._val = torch.zeros(2, device=self.device)

    def validation_step(self, batch: dict[str, Tensor], batch_idx: int) -> None:
        loss, logits, target = masked_lm_loss(self.model, batch)
        correct, total = masked_accuracy(logits, target)
        self._val += torch.stack([correct, total]).to(self._val)
        self.log("val/loss", loss, batch_size=int(total), sync_dist=True)

    def on_validation_epoch_end(self) -> None:
        total = self.all_gather(self._val).reshape(-1, 2).sum(0)
        self.log("val/masked_accuracy", total[0] / total[1].clamp(min=1), prog_bar=True)

    def configure_optimizers(self) -> dict:
        return configure_from_hparams(self, self.model.named_parameters())
