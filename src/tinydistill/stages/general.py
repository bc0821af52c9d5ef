"""stage=general: TinyBERT general distillation of a pretrained teacher into a randomly initialised student.

    python train.py stage=general                       # default teacher -> default student, corpus in data_dir
    python train.py stage=general experiment=quick      # MiniLM -> demo student, < 30 min on 2 CPU cores
    python train.py stage=general ckpt_path=<run>/checkpoints/last.ckpt   # resume
    python train.py stage=general distill=distilbert    # DistilBERT's triple loss instead (stages/distilbert.py)
    python train.py stage=general distill=minilm        # MiniLM-v2's relation loss instead (distill/relation.py)

Result (``stage.output_dir``, default ``artifacts/general/<student.name>/``): the student as a Hugging Face
``BertModel`` (``config.json``, ``model.safetensors``) with the teacher's tokenizer, the projections
(``projections.safetensors`` + ``projections.json``; none with ``distill=minilm``) and ``general_distill.json`` (settings and losses).
"""

from __future__ import annotations

import logging
import warnings
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from omegaconf import DictConfig, OmegaConf

from tinydistill.contract import ModelNeed, RunContext
from tinydistill.distill.methods import distiller_from_config
from tinydistill.errors import ConfigError
from tinydistill.models.loading import export_pretrained, load_tokenizer
from tinydistill.models.measure import count_parameters
from tinydistill.models.student import build_student, load_encoder
from tinydistill.modules.frozen_teacher import check_teacher_mode, teacher_dtype
from tinydistill.modules.general import GeneralDistillModule
from tinydistill.optim import OptimizerSettings
from tinydistill.preflight import TEACHER_TYPES
from tinydistill.records import GENERAL_JSON, CorpusRecord
from tinydistill.stages.corpus_training import (
    CorpusTraining,
    corpus_datamodule,
    fit_on_corpus,
)

log = logging.getLogger(__name__)

NAME = "general"
LEARNING_RATES = ("stage.lr",)
SEQUENCE_LENGTH = "stage.max_seq_length"
READS = frozenset({"corpus"})
STUDENT_SHAPE = ("num_hidden_layers", "hidden_size", "num_attention_heads", "intermediate_size")


@dataclass(frozen=True)
class GeneralPlan:
    ctx: RunContext
    teacher: str
    student: dict[str, Any]  # the student group: its sizes and name
    distill: dict[str, Any]  # the distill group, resolved (distiller_from_config reads it)
    teacher_dtype: str
    teacher_mode: str
    corpus: CorpusTraining
    mlm_probability: float
    optim: OptimizerSettings
    output_dir: Path


def models(cfg: DictConfig) -> Iterator[ModelNeed]:
    yield ModelNeed("stage.teacher", TEACHER_TYPES, "stage=general as teacher")


def result_dir(cfg: DictConfig) -> Path:
    return Path(cfg.stage.output_dir)


def plan(cfg: DictConfig) -> GeneralPlan:
    st = cfg.stage
    if cfg.student.get("init") not in ("general", "random", None):
        log.warning("student.init=%s does not apply to stage=general: its student always starts from random "
                    "weights", cfg.student.init)
    return GeneralPlan(
        ctx=RunContext.from_config(cfg),
        teacher=str(st.teacher),
        student=OmegaConf.to_container(cfg.student, resolve=True),
        distill=OmegaConf.to_container(cfg.distill, resolve=True),
        teacher_dtype=str(cfg.distill.get("teacher_dtype", "float32")),
        teacher_mode=check_teacher_mode(cfg.distill.get("teacher_mode", "eval")),
        corpus=CorpusTraining.from_stage(st),
        mlm_probability=float(st.mlm_probability),
        optim=OptimizerSettings.from_stage(st),
        output_dir=Path(st.output_dir),
    )


def build_module(p: GeneralPlan) -> GeneralDistillModule:
    """Teacher, student, distiller and module; their checks happen here, before any data is read."""
    teacher = load_encoder(p.teacher)
    student = build_student(p.student, teacher.config, seed=p.ctx.seed)
    teacher.to(teacher_dtype(p.teacher_dtype))
    distiller = distiller_from_config(p.distill, student.config, teacher.config)
    if not distiller.active_terms:
        raise ConfigError("distill.weights: emb, att and hid are all 0, so general distillation has nothing to learn")
    for name, model in (("teacher", teacher), ("student", student)):
        if p.corpus.max_seq_length > model.config.max_position_embeddings:
            raise ConfigError(
                f"stage.max_seq_length={p.corpus.max_seq_length} exceeds the {name}'s max_position_embeddings="
                f"{model.config.max_position_embeddings}"
            )
    return GeneralDistillModule(teacher, student, distiller, p.optim, teacher_mode=p.teacher_mode)


def run(p: GeneralPlan) -> dict[str, Any]:
    # The frozen teacher is in eval mode on purpose.
    warnings.filterwarnings("ignore", message=r"Found \d+ module\(s\) in eval mode")
    module = build_module(p)
    tokenizer = load_tokenizer(p.teacher)
    datamodule = corpus_datamodule(p.corpus, p.ctx, tokenizer, mlm_probability=p.mlm_probability)
    trainer, summary = fit_on_corpus(p.corpus, p.ctx, module, datamodule)
    student = module.student
    record = CorpusRecord(GENERAL_JSON, {
        "stage": NAME,
        "teacher": p.teacher,
        "student": p.student["name"],
        "student_config": {k: getattr(student.config, k) for k in STUDENT_SHAPE},
        "parameters": {"student": count_parameters(student)},
        "distill": module.distiller.describe(),
        **summary,
    })
    result = dict(record.fields)
    if trainer.is_global_zero:
        projections = module.distiller.projections  # None for distill=minilm
        out = export_pretrained(p.output_dir, student, tokenizer, json_files=record.model_files(),
                                extra=None if projections is None else projections.save)
        log.info("general-distilled student: %s", out)
        log.info("train losses: first %s, last %s", summary["train_first"], summary["train_last"])
        log.info("held-out losses: before %s, after %s", summary["val_start"], summary["val"])
        result["output_dir"] = str(out)
    return result
