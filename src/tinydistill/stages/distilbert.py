"""stage=general distill=distilbert: the DistilBERT triple-loss baseline (pre-training distillation).

    python train.py stage=mlm                                        # offline: a masked-LM teacher from MiniLM
    python train.py stage=general distill=distilbert                 # teacher: distill.teacher (an MLM)
    python train.py stage=general experiment=distilbert/general      # MiniLM, ~15 min on 2 CPU cores
    python train.py stage=general experiment=distilbert/reference    # the reference code's hyperparameters
    python train.py stage=finetune experiment=distilbert/finetune    # fine-tune it on MRPC, with latency

A stage of its own (`tinydistill.stages` picks it for ``stage=general distill=distilbert``), sharing corpus
training with stage=general (`stages/corpus_training.py`). The teacher is the masked LM at ``distill.teacher``
(``teacher.mlm_name_or_path``: ``stage=mlm``'s output for MiniLM, ``bert-base-uncased`` itself for
teacher=bert_base_uncased). The student keeps its width, takes the teacher layers ``distill.init_layers`` (every
other one by default), embeddings and MLM head, and trains on the general corpus (``stage.corpus``) with the budget
and optimiser of ``conf/stage/general.yaml`` (Adam betas: ``distill.adam_betas``). The ``student`` config group,
``stage.teacher`` and ``stage.output_dir`` belong to TinyBERT and are not used. ``distill.freeze_pos_embs`` keeps
the student's position embeddings at the teacher's values; ``distill.mlm_smoothing`` replaces BERT's uniform masking
by the reference's frequency-smoothed one, with token counts taken once over the training instances
(:mod:`tinydistill.data.masking`).

Result (``distill.output_dir``, default ``artifacts/distilbert/<teacher.name>/``): the student as a Hugging Face
masked LM of the teacher's class (``BertForMaskedLM``, ``RobertaForMaskedLM``, ...) with the teacher's tokenizer,
and ``distilbert.json`` (settings and losses).
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
from tinydistill.data.masking import SmoothedMasking
from tinydistill.errors import ConfigError
from tinydistill.models.distilbert import (
    freeze_position_embeddings,
    init_from_teacher,
    load_mlm_teacher,
    resolve_init_layers,
)
from tinydistill.models.loading import export_pretrained, load_tokenizer
from tinydistill.models.measure import count_parameters
from tinydistill.modules.distilbert import DistilBertModule
from tinydistill.optim import OptimizerSettings
from tinydistill.preflight import MASKED_LM_TYPES
from tinydistill.records import DISTILBERT_JSON, CorpusRecord
from tinydistill.stages.corpus_training import (
    CorpusTraining,
    corpus_datamodule,
    fit_on_corpus,
)
from tinydistill.stages.general import STUDENT_SHAPE

log = logging.getLogger(__name__)

NAME = "general"  # stage=general distill=distilbert
LEARNING_RATES = ("stage.lr",)
SEQUENCE_LENGTH = "stage.max_seq_length"
READS = frozenset({"corpus"})


@dataclass(frozen=True)
class DistilBertPlan:
    ctx: RunContext
    distill: dict[str, Any]  # the distill group, resolved: the triple loss's settings, recorded as given
    teacher: str
    output_dir: Path
    mlm_smoothing: float | None
    freeze_pos_embs: bool
    corpus: CorpusTraining
    optim: OptimizerSettings


def models(cfg: DictConfig) -> Iterator[ModelNeed]:
    yield ModelNeed("distill.teacher", MASKED_LM_TYPES, "the DistilBERT baseline")


def result_dir(cfg: DictConfig) -> Path:
    return Path(cfg.distill.output_dir)


def plan(cfg: DictConfig) -> DistilBertPlan:
    d, st = cfg.distill, cfg.stage
    if not 0.0 < d.mlm_probability < 1.0:
        raise ConfigError(f"distill.mlm_probability={d.mlm_probability} must be in (0, 1): DistilBERT masks tokens")
    smoothing = d.get("mlm_smoothing")
    if smoothing is not None and (isinstance(smoothing, bool) or not isinstance(smoothing, (int, float))
                                  or not smoothing >= 0):
        raise ConfigError(f"distill.mlm_smoothing={smoothing!r}: expected null or a number >= 0 (the reference: 0.7)")
    if not isinstance(d.get("freeze_pos_embs", False), bool):
        raise ConfigError(f"distill.freeze_pos_embs={d.freeze_pos_embs!r}: expected true or false")
    betas = d.get("adam_betas")
    if str(cfg.student.get("family") or "bert") != "bert":
        raise ConfigError(f"student.family={cfg.student.family!r}: the DistilBERT baseline (distill=distilbert) builds "
                          f"its student from the teacher's own layers, in the teacher's family; student.family shapes "
                          f"TinyBERT's students (distill=tinybert)")
    return DistilBertPlan(
        ctx=RunContext.from_config(cfg),
        distill=OmegaConf.to_container(d, resolve=True),
        teacher=str(d.teacher),
        output_dir=Path(d.output_dir),
        mlm_smoothing=smoothing,
        freeze_pos_embs=bool(d.get("freeze_pos_embs", False)),
        corpus=CorpusTraining.from_stage(st),
        optim=OptimizerSettings.from_stage(st, adam_betas=None if betas is None else tuple(betas)),
    )


def build_module(p: DistilBertPlan) -> tuple[DistilBertModule, list[int]]:
    """Teacher, student and module, and the teacher layers the student starts from; every check before data."""
    d = p.distill
    teacher = load_mlm_teacher(p.teacher)
    layers = resolve_init_layers(d["init_layers"], teacher.config.num_hidden_layers)
    if p.corpus.max_seq_length > teacher.config.max_position_embeddings:
        raise ConfigError(
            f"stage.max_seq_length={p.corpus.max_seq_length} exceeds the teacher's max_position_embeddings="
            f"{teacher.config.max_position_embeddings}"
        )
    student = init_from_teacher(teacher, layers)
    if p.freeze_pos_embs:
        freeze_position_embeddings(student)
    module = DistilBertModule(
        teacher, student, p.optim, alpha_ce=d["alpha_ce"], alpha_mlm=d["alpha_mlm"], alpha_cos=d["alpha_cos"],
        temperature=d["temperature"], kd_positions=d["kd_positions"],
    )
    return module, layers


def run(p: DistilBertPlan) -> dict[str, Any]:
    # The frozen teacher is in eval mode on purpose.
    warnings.filterwarnings("ignore", message=r"Found \d+ module\(s\) in eval mode")
    module, layers = build_module(p)
    teacher, student = module.teacher, module.student
    tokenizer = load_tokenizer(p.teacher)
    if len(tokenizer) > teacher.config.vocab_size:
        raise ConfigError(
            f"distill.teacher={p.teacher}: its tokenizer has {len(tokenizer)} tokens but the model's vocabulary "
            f"only {teacher.config.vocab_size}"
        )
    log.info("DistilBERT student: teacher layers %s of %d, hidden %d (the student config group is not used)",
             layers, teacher.config.num_hidden_layers, student.config.hidden_size)
    mlm_probability = p.distill["mlm_probability"]
    # BERT's uniform masking, after each batch's transfer (CorpusDataModule.on_after_batch_transfer)
    datamodule = corpus_datamodule(p.corpus, p.ctx, tokenizer, mlm_probability=mlm_probability, with_mlm_labels=True)
    if p.mlm_smoothing is not None:  # the reference's masking instead, weighted by the training instances' counts
        datamodule.prepare_data()
        datamodule.setup("fit")
        datamodule.masking = SmoothedMasking.from_instances(
            (ids for rows in datamodule.train.iter(batch_size=1024) for ids in rows["input_ids"]),
            tokenizer, p.mlm_smoothing, mlm_probability,
        )
        log.info("smoothed masking (distill.mlm_smoothing=%s): token counts over %d training instances",
                 p.mlm_smoothing, len(datamodule.train))
    trainer, summary = fit_on_corpus(p.corpus, p.ctx, module, datamodule)
    record = CorpusRecord(DISTILBERT_JSON, {
        "stage": "general",
        "method": "distilbert",
        "teacher": p.teacher,
        "student_config": {k: getattr(student.config, k) for k in STUDENT_SHAPE},
        "parameters": {"student": count_parameters(student), "teacher": count_parameters(teacher)},
        "distill": {**p.distill, "init_layers": layers},
        **summary,
    })
    result = dict(record.fields)
    if trainer.is_global_zero:
        out = export_pretrained(p.output_dir, student, tokenizer, json_files=record.model_files())
        log.info("DistilBERT student: %s (%.1fM parameters, teacher %.1fM)", out,
                 result["parameters"]["student"] / 1e6, result["parameters"]["teacher"] / 1e6)
        log.info("train losses: first %s, last %s", summary["train_first"], summary["train_last"])
        log.info("held-out losses: before %s, after %s", summary["val_start"], summary["val"])
        result["output_dir"] = str(out)
    return result
