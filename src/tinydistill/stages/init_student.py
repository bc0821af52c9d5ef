"""stage=init_student: export a randomly initialised student, the "no general distillation" baseline.

    python train.py stage=init_student            # -> artifacts/random/<student.name>/

The student is built exactly as stage=general builds its starting point (same config, same ``seed``, the
teacher's tokenizer), so fine-tuning it against the general-distilled one compares like with like.
"""

from __future__ import annotations

import logging
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from omegaconf import DictConfig, OmegaConf

from tinydistill.contract import ModelNeed
from tinydistill.models.loading import export_pretrained, load_tokenizer
from tinydistill.models.measure import count_parameters
from tinydistill.models.student import build_student, load_config
from tinydistill.preflight import TEACHER_TYPES
from tinydistill.records import INIT_STUDENT_JSON, CorpusRecord

log = logging.getLogger(__name__)

NAME = "init_student"
LEARNING_RATES: tuple[str, ...] = ()
SEQUENCE_LENGTH = None
READS: frozenset[str] = frozenset()


@dataclass(frozen=True)
class InitStudentPlan:
    teacher: str
    student: dict[str, Any]
    seed: int
    output_dir: Path


def models(cfg: DictConfig) -> Iterator[ModelNeed]:
    yield ModelNeed("stage.teacher", TEACHER_TYPES, "stage=init_student as teacher")


def result_dir(cfg: DictConfig) -> Path:
    return Path(cfg.stage.output_dir)


def plan(cfg: DictConfig) -> InitStudentPlan:
    return InitStudentPlan(teacher=str(cfg.stage.teacher), student=OmegaConf.to_container(cfg.student, resolve=True),
                           seed=int(cfg.seed), output_dir=Path(cfg.stage.output_dir))


def run(p: InitStudentPlan) -> dict[str, Any]:
    student = build_student(p.student, load_config(p.teacher), seed=p.seed)
    record = CorpusRecord(INIT_STUDENT_JSON, {
        "stage": NAME,
        "teacher": p.teacher,
        "student": p.student["name"],
        "seed": p.seed,
        "parameters": {"student": count_parameters(student)},
    })
    out = export_pretrained(p.output_dir, student, load_tokenizer(p.teacher), json_files=record.model_files())
    log.info("randomly initialised student: %s", out)
    return {**record.fields, "output_dir": str(out)}
