"""Fine-tuning a classifier on gold labels (the teacher, or any model) with the model's own loss."""

from __future__ import annotations

import torch
from transformers import PreTrainedModel

from tinydistill.data.tasks import Task
from tinydistill.modules.glue_eval import GlueEvalModule
from tinydistill.optim import OptimizerSettings, configure_from_hparams


class FinetuneModule(GlueEvalModule):
    """Cross-entropy (MSE for regression) on gold labels; optimiser and schedule from `tinydistill.optim`
    (by default AdamW with linear warm-up and decay)."""

    def __init__(
        self,
        classifier: PreTrainedModel,
        task: Task,
        optim: OptimizerSettings,
    ) -> None:
        super().__init__(classifier, task)
        self.save_hyperparameters(optim.hparams())

    def training_step(self, batch: dict, batch_idx: int) -> torch.Tensor:
        # The HF head picks CE or MSE from config.problem_type (set at load time).
        loss = self.classifier(**batch).loss
        self.log("train/loss", loss, prog_bar=True)
        return loss

    def configure_optimizers(self) -> dict:
        return configure_from_hparams(self, self.classifier.named_parameters())
