"""stage=task's inputs: the checked teacher (the checks before any compute), the student it starts from (a folder, a
hub name or random) and the tokenizer it reads, and the training set (augmented with aug=on; its unlabelled rows too
with stage.unlabeled.augment)."""

from __future__ import annotations

import logging
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
from transformers import (
    AutoModelForSequenceClassification,
    PreTrainedModel,
    PreTrainedTokenizerBase,
)

from data_aug import ensure_augmented, ensure_augmented_rows
from tinydistill.baselines import constant_predictor
from tinydistill.data.glue import load_examples
from tinydistill.data.tasks import UNLABELLED_SPLIT
from tinydistill.distill.intermediate import PROJECTIONS_JSON, Projections
from tinydistill.errors import ConfigError
from tinydistill.models.loading import load_tokenizer
from tinydistill.models.released import fit_dense_tensors, load_student_classifier
from tinydistill.models.student import student_config
from tinydistill.stages.classifier import evaluate_teacher
from tinydistill.stages.task.plan import TaskPlan
from tinydistill.teacher_checks import (
    aug_vocabulary_warning,
    check_teacher_strength,
    load_teacher_classifier,
    student_tokenizer,
)

log = logging.getLogger("tinydistill.stages.task")


@dataclass(frozen=True)
class CheckedTeacher:
    """The teacher after the checks, with what they measured: its dev metrics now, and the constant predictor's;
    and the tokenizer the student reads (the teacher's, unless the student has another: prediction layer only)."""

    model: PreTrainedModel
    tokenizer: PreTrainedTokenizerBase
    dev: dict[str, Any]
    constant: dict[str, Any]
    check: dict[str, Any]
    student_tokenizer: PreTrainedTokenizerBase

    @property
    def other_tokenizer(self) -> PreTrainedTokenizerBase | None:
        """The teacher's tokenizer when the student reads text with another one, else None."""
        return None if self.student_tokenizer is self.tokenizer else self.tokenizer


def check_teacher(p: TaskPlan) -> CheckedTeacher:
    """Untrained head or wrong task, then vocabularies, then the teacher's dev score against the constant
    predictor's (tinydistill/teacher_checks.py)."""
    t_dir = p.teacher.folder
    teacher = load_teacher_classifier(t_dir, p.task)
    tokenizer = own = load_tokenizer(t_dir)
    if p.student_source is not None:
        own = student_tokenizer(tokenizer, t_dir, p.student_source,
                                "the phase-1 student" if p.student_source == str(p.inter_dir) else "student.init",
                                p.intermediate_request)
    warn_aug_vocabulary(p, tokenizer)
    constant = constant_predictor(p.task, p.ctx.data_dir)
    dev = evaluate_teacher(p.batches, p.ctx, teacher, tokenizer)
    check = check_teacher_strength(p.task, dev, constant, p.teacher.min_margin, p.teacher.allow_weak, t_dir)
    log.info("teacher dev metrics (measured now): %s", dev)
    return CheckedTeacher(teacher, tokenizer, dev, constant, check, own)


def warn_aug_vocabulary(p: TaskPlan, tokenizer: PreTrainedTokenizerBase) -> str | None:
    """Warn (and return the warning) when `aug.mlm_model` reads text differently from the task's tokenizer. Only
    its tokenizer is loaded; a model that cannot be loaded is left to the augmentation's own clear error."""
    if p.aug is None or p.aug_skips_task:
        return None
    mlm = str(p.aug["mlm_model"])
    try:
        mlm_tokenizer = load_tokenizer(mlm)
    except Exception as e:  # noqa: BLE001 - data_aug.load_mlm reports it, naming aug.mlm_model
        log.debug("aug.mlm_model=%s: tokenizer not loadable here (%s); vocabulary not compared", mlm, e)
        return None
    warning = aug_vocabulary_warning(mlm_tokenizer, mlm, tokenizer, p.teacher.folder)
    if warning:
        log.warning("%s", warning)
    return warning


def load_student(p: TaskPlan, teacher: PreTrainedModel) -> tuple[PreTrainedModel, Projections | None]:
    """The student classifier from `p.student_source` (random, shaped by the student group, when None), and the
    projections saved beside it (general distillation's), or, for phase 1, a released checkpoint's (`fit_dense`)
    when they fit, if any."""
    if p.student_source is not None:
        student = load_student_classifier(p.student_source, p.task, "student.init")
    else:
        config = student_config(p.student, teacher.config)
        config.num_labels = p.task.num_labels
        config.problem_type = teacher.config.problem_type
        config.id2label, config.label2id = teacher.config.id2label, teacher.config.label2id
        torch.manual_seed(p.ctx.seed)
        student = AutoModelForSequenceClassification.from_config(config)
    source = p.student_source
    if source is not None and (Path(source) / PROJECTIONS_JSON).is_file():
        return student, Projections.load(source, mode=p.distill["projection"])
    if source is None or p.intermediate_request is None:
        return student, None
    projections, why = Projections.from_fit_denses(fit_dense_tensors(source), str(p.distill["projection"]),
                                                   student.config.num_hidden_layers, teacher.config.hidden_size)
    if why:
        log.info("student.init=%s: %s", source, why)
    return student, projections


def training_file(p: TaskPlan) -> str | None:
    """The augmented training file with aug=on (generated if missing; None for a skipped hub dataset, which trains on
    its own split), else None: the task's own."""
    if p.aug is None:
        return None
    if p.ctx.data_dir is None and p.task.is_glue:
        raise ConfigError("aug=on needs paths.data_dir (the augmentation reads <data_dir>/glue/<Task>/train.tsv)")
    path = ensure_augmented(p.aug, p.task, p.ctx.data_dir, p.ctx.artifacts_dir)
    return None if path is None else str(path)


def unlabeled_file(p: TaskPlan) -> str | None:
    """With `stage.unlabeled.augment`: the unlabelled rows `stage.unlabeled` chooses (its ratio counted against the
    labelled rows before augmentation) augmented with the labelled rows' settings (generated if missing), else
    None: the DataModule chooses the rows itself."""
    if p.unlabeled is None or not p.unlabeled.augment:
        return None
    pool = load_examples(p.task, UNLABELLED_SPLIT, p.ctx.data_dir)
    labelled = len(load_examples(p.task, "train", p.ctx.data_dir))
    chosen = pool.select(p.unlabeled.rows(labelled, len(pool)))
    log.info("augmenting %d of %d unlabelled rows (stage.unlabeled.augment)", len(chosen), len(pool))
    path = ensure_augmented_rows(p.aug, p.task, chosen.remove_columns("label"), p.ctx.data_dir, p.ctx.artifacts_dir,
                                 source=f"task.unlabeled={p.task.unlabeled}")
    return str(path)
