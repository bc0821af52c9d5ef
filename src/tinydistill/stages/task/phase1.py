"""stage=task, phase 1: the intermediate layers (embeddings, attention, hidden states; with distill=minilm the
self-attention relations) of the teacher, as in general distillation; the student's classifier does not train."""

from __future__ import annotations

import copy
import json
import logging
import math
from typing import Any

import lightning as L
import torch
from transformers import PreTrainedModel

from tinydistill.callbacks import FirstAndLastLosses, latest_checkpoint
from tinydistill.data.glue import TaskDataModule
from tinydistill.distill.intermediate import Projections
from tinydistill.distill.methods import Distiller, distiller_from_config
from tinydistill.distill.teacher_cache import TeacherCache, teacher_cache_bytes
from tinydistill.errors import ConfigError
from tinydistill.hardware import native_cpu_bf16, training_device
from tinydistill.models.loading import export_pretrained
from tinydistill.modules.frozen_teacher import teacher_dtype
from tinydistill.modules.task import TaskDistillModule
from tinydistill.records import PHASE_JSON
from tinydistill.stages.task.plan import PhaseSettings, TaskPlan
from tinydistill.trainer import TrainerPlan, build_trainer

log = logging.getLogger(__name__)


def phase_trainer(trainer: TrainerPlan, ph: PhaseSettings, callbacks=(), **overrides) -> L.Trainer:
    """The phase's Trainer. A step budget (`max_steps` > 0) replaces the phase's epochs, as in every stage: the
    phase trains exactly that many steps, over as many epochs as it takes. The phase's own precision (its
    `precision`, else `trainer.precision`) applies to this phase only."""
    overrides.setdefault("max_epochs", ph.epochs if not ph.has_step_budget else -1)
    overrides.setdefault("max_steps", ph.max_steps)
    overrides.setdefault("precision", ph.precision)
    return build_trainer(trainer, callbacks=callbacks, **overrides)


def bf16_hint(accelerator: str, teacher_dtype_name: str, precision: str) -> str | None:
    """A hint when phase 1 runs in float32 on a CPU with native bfloat16, where the phase-1 bfloat16 setting is
    faster at no measured cost; float32 stays the default (the paper's precision, the same figures everywhere)."""
    on_cpu = training_device(accelerator) == "cpu"
    float32 = teacher_dtype_name == "float32" and precision in ("32", "32-true")
    if not (on_cpu and float32 and native_cpu_bf16()):
        return None
    return ("this CPU runs bfloat16 natively: distill.teacher_dtype=bfloat16 stage.intermediate.precision=bf16-mixed "
            "runs phase 1 1.3-1.4x as fast, with no accuracy loss beyond seed noise on MRPC and SST-2 "
            "(docs/guide.md); float32, the default, is the paper's precision")


def batches_per_epoch(limit: int | float | None, batches: int) -> int:
    """The batches an epoch of `batches` runs under `trainer.limit_train_batches` (Lightning's meaning: an int is a
    number of batches, a float a fraction of the epoch)."""
    if limit is None:
        return batches
    if isinstance(limit, float):
        return max(1, int(batches * limit)) if limit <= 1.0 else min(batches, int(limit))
    return min(batches, int(limit))


def teacher_cache(p: TaskPlan, distiller: Distiller, dm: TaskDataModule) -> TeacherCache | None:
    """`stage.intermediate.teacher_cache`: a `TeacherCache` for phase 1 when it can pay off: an eval-mode teacher,
    more steps than one epoch runs (the cache is read only when a batch comes back) and one process (under DDP each
    process's share of an epoch is cut into new batches every epoch, so none would come back). Else None."""
    if not p.teacher.phase1_caches:
        return None
    if not p.ctx.trainer.single_process:
        log.info("trainer.devices=%s, trainer.num_nodes=%s: no phase-1 teacher cache with several processes",
                 p.ctx.trainer.get("devices"), p.ctx.trainer.get("num_nodes"))
        return None
    ph = p.phase1
    dm.prepare_data()
    dm.setup("fit")
    per_epoch = batches_per_epoch(p.ctx.trainer.get("limit_train_batches"),
                                  math.ceil(len(dm.splits["train"]) / dm.batch_size))
    steps = ph.max_steps if ph.has_step_budget else ph.epochs * per_epoch
    if steps <= per_epoch:
        log.info("phase 1 runs %d steps, no more than one epoch (%d batches): no teacher cache", steps, per_epoch)
        return None
    hidden, attention = distiller.teacher_reads
    return TeacherCache(hidden, attention, teacher_cache_bytes(p.teacher.cache_max_gb))


def distiller_for(p: TaskPlan, student: PreTrainedModel, teacher: PreTrainedModel,
                  projections: Projections | None = None) -> Distiller:
    return distiller_from_config(p.distill, student.config, teacher.config, projections)


def run_intermediate(p: TaskPlan, teacher: PreTrainedModel, student: PreTrainedModel,
                     projections: Projections | None, dm: TaskDataModule) -> dict[str, Any]:
    """Phase 1 (resumed from `p.ctx.ckpt_path` when that is a phase-1 checkpoint); its student and projections go
    to the run's `intermediate/` folder, the start of phase 2. Returns its summary."""
    distiller = distiller_for(p, student, teacher, projections)
    if not distiller.active_terms:
        log.info("all intermediate-layer weights are 0 (ablation %s): skipping phase 1", p.ablation)
        return {"skipped": True}
    ph = p.phase1
    if hint := bf16_hint(p.accelerator, p.teacher.dtype, ph.precision):
        log.info(hint)
    dtype = teacher_dtype(p.teacher.dtype)
    if dtype != torch.float32:  # a copy: the prediction phase's logits and the latency use the float32 teacher
        teacher = copy.deepcopy(teacher).to(dtype)
    cache = teacher_cache(p, distiller, dm)
    module = TaskDistillModule(student, p.task, "intermediate", ph.optim, teacher=teacher, distiller=distiller,
                               teacher_mode=p.teacher.mode, teacher_cache=cache)
    # No dev evaluation: the classifier does not train in this phase.
    history = FirstAndLastLosses()  # in checkpoints: a resumed phase reports the last losses of the whole phase
    checkpoint = latest_checkpoint(p.ctx.log_dir, "intermediate-step-{step}", ph.checkpoint_every_n_steps)
    trainer = phase_trainer(p.ctx.trainer, ph, callbacks=[checkpoint, history], limit_val_batches=0)
    dm.fixed_batches = cache is not None  # the cache's batches come back in later epochs; phase 2's need not
    try:
        trainer.fit(module, datamodule=dm, ckpt_path=p.ctx.ckpt_path if p.resumed == "intermediate" else None)
    finally:
        dm.fixed_batches = False
        if cache is not None:
            cache.clear()  # gigabytes that phase 2 does not read
    losses = dict(history.last)
    summary = {"steps": trainer.global_step, "last_losses": losses, **distiller.describe()}
    if cache is not None:
        summary["teacher_cache"] = cache.summary()
        log.info("phase 1 teacher cache: %s", cache.summary())
    if trainer.is_global_zero:
        # "losses": the key earlier versions wrote
        export_pretrained(p.inter_dir, student, dm.tokenizer, json_files={PHASE_JSON: {**summary, "losses": losses}},
                          extra=None if distiller.projections is None else distiller.projections.save)
    return summary


def finished_intermediate(p: TaskPlan, teacher: PreTrainedModel, student: PreTrainedModel) -> dict[str, Any]:
    """What `run_intermediate` returned in the run a phase-2 checkpoint belongs to: the summary its phase 1 left in
    `intermediate/phase.json`, or `{"skipped": True}` when the ablation has no intermediate loss."""
    if not distiller_for(p, student, teacher).active_terms:
        return {"skipped": True}
    path = p.inter_dir / PHASE_JSON
    if not path.is_file():
        raise ConfigError(f"{p.inter_dir}: no finished phase 1 ({PHASE_JSON}) for the phase-2 checkpoint to continue; "
                          f"resume from a checkpoint of this run's output folder")
    saved = json.loads(path.read_text())
    saved.pop("losses", None)  # older phase.json files: the same values as last_losses
    return saved


def intermediate_phase(p: TaskPlan, teacher: PreTrainedModel, student: PreTrainedModel, projections: Projections | None,
           dm: TaskDataModule) -> dict[str, Any]:
    """Phase 1's summary: run it, or, resuming a phase-2 checkpoint, read what the finished phase 1 left."""
    if p.resumed in ("pred", "gold"):  # phase 1 finished before the checkpoint; its weights are in it
        return finished_intermediate(p, teacher, student)
    return run_intermediate(p, teacher, student, projections, dm)


