"""stage=task's record: what the run was, both phases' summaries, its dev metrics beside the yardsticks, sizes and
latency; exported with the final student."""

from __future__ import annotations

import logging
import shutil
from pathlib import Path
from typing import Any

import lightning as L

from tinydistill.data.glue import TaskDataModule
from tinydistill.models.loading import export_pretrained
from tinydistill.models.measure import count_parameters
from tinydistill.modules.task import TaskDistillModule
from tinydistill.records import ClassifierRecord
from tinydistill.stages.classifier import add_latency, add_yardsticks, task_datamodule
from tinydistill.stages.task.inputs import CheckedTeacher
from tinydistill.stages.task.plan import INTERMEDIATE_DIR, TaskPlan

log = logging.getLogger("tinydistill.stages.task")


def run_fields(p: TaskPlan, train_file: str | None, teacher: CheckedTeacher,
               unlabeled_file: str | None = None) -> dict[str, Any]:
    """What the run is: task, switches, where teacher and student came from, and the teacher check."""
    return {
        "stage": "task",
        "task": p.task.name,
        "task_spec": p.task.summary(),  # a user's task's labels and metrics, for the report
        "run": p.run_name,
        "ablation": p.ablation,
        "aug": p.aug is not None,
        "train_file": train_file,
        "unlabeled": None if p.unlabeled is None else {"source": p.task.unlabeled, "max_rows": p.unlabeled.max_rows,
                                                         "ratio": p.unlabeled.ratio, "augment": p.unlabeled.augment,
                                                         "augmented_file": unlabeled_file},
        "teacher_dir": p.teacher.folder,
        "student": p.student["name"],
        "student_init": p.student_init,
        "student_source": p.student_source,
        "student_tokenizer": "teacher's" if teacher.other_tokenizer is None else "own (prediction layer only)",
        "seed": p.ctx.seed,
        "teacher_check": teacher.check,
    }


def record_and_export(p: TaskPlan, result: dict[str, Any], teacher: CheckedTeacher, module: TaskDistillModule,
                      trainer: L.Trainer, dm: TaskDataModule) -> dict[str, Any]:
    """Complete the record (dev metrics, yardsticks, parameters, latency) and export the student with it, and with
    the phase-1 result, into the run's folder; its copy goes to the run's log folder."""
    result.update({k: result["pred"][k] for k in p.task.val_splits})
    # The teacher's figures are those measured at the start, never a (possibly stale) metrics.json beside it.
    add_yardsticks(p.ctx.data_dir, p.task, result, p.teacher.folder, teacher_metrics=teacher.dev,
                   constant=teacher.constant)
    result["parameters"] = {"student": count_parameters(module.classifier), "teacher": count_parameters(teacher.model)}
    if not trainer.is_global_zero:
        return result
    if p.latency.measure:
        own_data = {} if teacher.other_tokenizer is None else {
            "teacher": task_datamodule(p.batches, p.ctx, teacher.tokenizer)}  # the teacher reads its own encoding
        add_latency(p.latency, result, {"teacher": teacher.model, "student": module.classifier}, dm, own="student",
                    own_data=own_data)
    record = ClassifierRecord(result)
    export_pretrained(p.out_dir, module.classifier, teacher.student_tokenizer,
                      json_files={**record.model_files(), **p.task_files},
                      extra=lambda tmp: _keep_intermediate(p.inter_dir, tmp))
    record.write_log_copy(p.ctx.log_dir)
    log.info("task-distilled student: %s", p.out_dir)
    log.info("dev metrics: %s", {k: result[k] for k in p.task.dev_splits})
    return {**result, "output_dir": str(p.out_dir)}


def _keep_intermediate(inter_dir: Path, tmp: Path) -> None:
    """The final export replaces the run folder: carry the phase-1 result over (a copy, so a crash before the swap
    loses nothing)."""
    if inter_dir.is_dir():
        shutil.copytree(inter_dir, tmp / INTERMEDIATE_DIR)
