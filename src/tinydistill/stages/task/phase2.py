"""stage=task, phase 2: the prediction layer, against the teacher's logits (or, ablation no_pred, the gold labels);
the whole student trains, and the best dev evaluation is kept."""

from __future__ import annotations

from typing import Any

import lightning as L
from transformers import PreTrainedModel

from tinydistill.callbacks import EvaluationCount, best_checkpoint
from tinydistill.data.glue import TaskDataModule
from tinydistill.distill.prediction import (
    cached_teacher_logits,
    logit_cache_path,
    save_logit_cache,
)
from tinydistill.modules.task import TaskDistillModule
from tinydistill.paths import recorded_path
from tinydistill.stages.classifier import dev_metrics, validate_best
from tinydistill.stages.task.phase1 import phase_trainer
from tinydistill.stages.task.plan import TaskPlan
from tinydistill.trainer import validate_every_n_steps


def step_budget_validation(p: TaskPlan) -> dict[str, Any]:
    """A phase with a step budget can end mid-epoch, before any end-of-epoch dev evaluation: evaluate every
    `val_every_n_steps` steps instead (default: once, at the last step)."""
    ph = p.phase2
    if not ph.has_step_budget:
        return {}
    return validate_every_n_steps(p.ctx.trainer, ph.val_every_n_steps or ph.max_steps)


def teacher_targets(p: TaskPlan, teacher: PreTrainedModel, data: TaskDataModule) -> dict[str, Any]:
    """How the phase reaches the teacher's predictions: the teacher itself (a train-mode teacher: fresh logits with
    dropout every batch, as the reference), or its cached logits (computed in one pass, or, with
    `stage.pred.teacher_logits=seen`, filled in as batches draw rows, with the teacher to compute them)."""
    if p.teacher.mode == "train":
        return {"teacher": teacher}
    data.prepare_data()
    data.setup("fit")
    rows, tokenizer = data.teacher_view()  # the teacher's own encoding (another tokenizer than the student's)
    targets: dict[str, Any] = {"teacher_logits": cached_teacher_logits(
        teacher, p.teacher.folder, rows, tokenizer, p.ctx.cache_dir, p.batches.eval_batch_size,
        mode=p.teacher.logits,
    )}
    if p.teacher.logits == "seen":
        targets["teacher"] = teacher  # fills the cache's missing rows as batches draw them
    return targets


def run_prediction(p: TaskPlan, teacher: PreTrainedModel, student: PreTrainedModel,
                   data: TaskDataModule) -> tuple[TaskDistillModule, L.Trainer, dict[str, Any]]:
    """Phase 2 on `data` (the gold training set for ablation no_pred), resumed from `p.ctx.ckpt_path` when that is
    a phase-2 checkpoint. Returns the module (its student at the best dev evaluation), trainer and summary."""
    kwargs = {} if p.gold else teacher_targets(p, teacher, data)
    phase = "gold" if p.gold else "pred"
    module = TaskDistillModule(
        student, p.task, phase, p.phase2.optim, pred_weight=p.pred_weight, temperature=p.temperature,
        regression_target=p.regression_target, teacher_mode=p.teacher.mode, **kwargs,
    )
    checkpoint, evaluations = best_checkpoint(p.ctx.log_dir, p.task.metric), EvaluationCount()
    trainer = phase_trainer(p.ctx.trainer, p.phase2, callbacks=[checkpoint, evaluations], **step_budget_validation(p))
    trainer.fit(module, datamodule=data, ckpt_path=p.ctx.ckpt_path if p.resumed in ("pred", "gold") else None)
    if p.teacher.logits == "seen" and "teacher_logits" in kwargs and trainer.is_global_zero:
        # The rows this run computed, for later runs on the same data and teacher (other seeds).
        save_logit_cache(logit_cache_path(p.ctx.cache_dir, p.teacher.folder, data.teacher_view()[0]),
                         module.teacher_logits)
    made = evaluations.count  # before validate_best, whose checkpoint restores the count saved with it
    metrics = dev_metrics(p.task, validate_best(trainer, module, data, checkpoint))
    return module, trainer, {"phase": phase, "steps": trainer.global_step, "evaluations": made,
                             "best_checkpoint": recorded_path(checkpoint.best_model_path), **metrics}
