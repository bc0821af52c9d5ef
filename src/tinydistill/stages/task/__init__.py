"""stage=task: TinyBERT task-specific distillation of a fine-tuned teacher into a student classifier.

    python train.py stage=task task=mrpc aug=on
    python train.py -m stage=task task=mrpc ablation=none,no_trm,no_emb,no_pred

Phase 1 (intermediate, `phase1.py`) and phase 2 (prediction, `phase2.py`) run as two Lightning fits with their own
epochs, learning rates and schedules, as the reference runs task_distill.py twice; `plan.py` reads the config.
`stage.phase` picks `intermediate`, `pred` or `both`. Results go to `<stage.output_root>/<run name>/seed<seed>/`:
`intermediate/` (phase-1 student + projections, the start of phase 2) and the final student
(`BertForSequenceClassification`, projections dropped) with `metrics.json`.

Both phases write checkpoints into the run's `checkpoints/` folder (phase 1 every
`stage.intermediate.checkpoint_every_n_steps` steps, phase 2 at each dev evaluation); `last.ckpt` is the latest of
either. `ckpt_path=<run dir>/checkpoints/last.ckpt` resumes the phase the checkpoint belongs to: a phase-1
checkpoint continues phase 1 and then runs phase 2; a phase-2 checkpoint skips the finished phase 1 (its summary is
read back from `intermediate/phase.json`) and continues phase 2.

Before any compute (augmentation, teacher logits, training) the run checks, and stops with a one-line ConfigError
naming the folder (tinydistill/teacher_checks.py): a teacher whose classifier or pooler would be initialised at
random (not fine-tuned: run stage=finetune first), a teacher of another task (labels, problem type, label names), a
student folder with another tokenizer than the teacher's, and a teacher whose dev score, measured now, is not
`stage.min_teacher_margin` above the constant predictor's (`stage.allow_weak_teacher=true`: a warning instead).
An `aug.mlm_model` with another vocabulary only warns. A student with its own tokenizer, other than the teacher's,
is distilled on the prediction layer only (`stage.phase=pred`, or an ablation without intermediate terms), each model
reading the same texts with its own tokenizer; asking for intermediate layers then stops the run. The teacher figures in `metrics.json` (`teacher`,
`teacher_check`, retention, gap closed) are this fresh evaluation, never the teacher folder's own metrics.json.
"""

from __future__ import annotations

import warnings
from collections.abc import Iterator
from typing import Any

from omegaconf import DictConfig

from tinydistill.contract import ModelNeed
from tinydistill.preflight import STUDENT_TYPES, TEACHER_TYPES
from tinydistill.stages.classifier import task_datamodule
from tinydistill.stages.task.inputs import check_teacher, load_student, training_file, unlabeled_file
from tinydistill.stages.task.phase1 import intermediate_phase
from tinydistill.stages.task.phase2 import run_prediction
from tinydistill.stages.task.plan import TaskPlan, plan, result_dir
from tinydistill.stages.task.record import record_and_export, run_fields

NAME = "task"
LEARNING_RATES = ("stage.intermediate.lr", "stage.pred.lr")
SEQUENCE_LENGTH = "task.max_seq_length"
READS = frozenset({"task", "augmentation"})

__all__ = ["LEARNING_RATES", "NAME", "READS", "SEQUENCE_LENGTH", "models", "plan", "result_dir", "run"]


def models(cfg: DictConfig) -> Iterator[ModelNeed]:
    yield ModelNeed("stage.teacher", TEACHER_TYPES, "stage=task as teacher", if_present=True)
    init = str(cfg.student.init)
    if init == "general":
        yield ModelNeed("stage.general_dir", STUDENT_TYPES, "stage=task as student (student.init=general)",
                        if_present=True)
    elif init != "random":
        yield ModelNeed("student.init", STUDENT_TYPES, "stage=task as student", if_present=True)


def run(p: TaskPlan) -> dict[str, Any]:
    warnings.filterwarnings("ignore", message=r"Found \d+ module\(s\) in eval mode")
    # Phase 2 checkpoints into the folder of phase 1's on purpose (one last.ckpt for the run).
    warnings.filterwarnings("ignore", message=r"Checkpoint directory .* exists and is not empty")
    teacher = check_teacher(p)  # the checks before any compute: nothing is written before they pass
    student, projections = load_student(p, teacher.model)
    train_file, unlabeled = training_file(p), unlabeled_file(p)
    dm = task_datamodule(p.batches, p.ctx, teacher.student_tokenizer, train_file, with_index=True,
                         teacher_tokenizer=teacher.other_tokenizer, unlabeled=p.unlabeled, unlabeled_file=unlabeled)
    result = run_fields(p, train_file, teacher, unlabeled)
    if p.phase in ("intermediate", "both"):
        result["intermediate"] = intermediate_phase(p, teacher.model, student, projections, dm)
    if p.phase == "intermediate":
        return result
    data = task_datamodule(p.batches, p.ctx, teacher.student_tokenizer, None, with_index=True) if p.gold else dm
    module, trainer, result["pred"] = run_prediction(p, teacher.model, student, data)
    return record_and_export(p, result, teacher, module, trainer, data)
