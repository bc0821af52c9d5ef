"""stage=general distill=distilbert: the DistilBERT triple-loss baseline (pre-training distillation).

    python train.py stage=mlm                                        # offline: a masked-LM teacher from MiniLM
    python train.py stage=general distill=distilbert                 # teacher: distill.teacher (an MLM)
    python train.py stage=general experiment=distilbert/general      # MiniLM, ~15 min on 2 CPU cores
    python train.py stage=general experiment=distilbert/reference    # the reference code's hyperparameters
    python train.py stage=finetune experiment=distilbert/finetune    # fine-tune it on MRPC, with latency

The teacher is the masked LM at ``distill.teacher`` (``teacher.mlm_name_or_path``: ``stage=mlm``'s output for
MiniLM, ``bert-base-uncased`` itself for teacher=bert_base_uncased). The student keeps its width, takes the
teacher layers ``distill.init_layers`` (every other one by default), embeddings and MLM head, and trains on the
general corpus (``stage.corpus``) with the budget and optimiser of ``conf/stage/general.yaml`` (Adam betas:
``distill.adam_betas``). The ``student`` config group, ``stage.teacher`` and ``stage.output_dir`` belong to TinyBERT
and are not used. ``distill.freeze_pos_embs`` keeps the student's position embeddings at the teacher's values;
``distill.mlm_smoothing`` replaces BERT's uniform masking by the reference's frequency-smoothed one, with token
counts taken once over the training instances (:mod:`tinydistill.distill.mlm_masking`).

Result (``distill.output_dir``, default ``artifacts/distilbert/<teacher.name>/``): the student as a Hugging Face
``BertForMaskedLM`` with the teacher's tokenizer, and ``distilbert.json`` (settings and losses).
"""

from __future__ import annotations

import logging
import warnings
from typing import Any

from omegaconf import DictConfig, OmegaConf

from tinydistill.bench import count_parameters
from tinydistill.distill.mlm_masking import SmoothedMasking
from tinydistill.errors import ConfigError
from tinydistill.models.distilbert import (
    freeze_position_embeddings,
    init_from_teacher,
    load_mlm_teacher,
    resolve_init_layers,
)
from tinydistill.models.loading import export_pretrained, load_tokenizer
from tinydistill.modules.distilbert import DistilBertModule
from tinydistill.optim import optimizer_options
from tinydistill.stages.general import corpus_datamodule, run_summary, step_trainer, validate_losses

log = logging.getLogger(__name__)

RESULT_JSON = "distilbert.json"


def build_distilbert(cfg: DictConfig) -> DistilBertModule:
    """Teacher, student and module from the config; every config check happens here, before reading data."""
    d, st = cfg.distill, cfg.stage
    if not 0.0 < d.mlm_probability < 1.0:
        raise ConfigError(f"distill.mlm_probability={d.mlm_probability} must be in (0, 1): DistilBERT masks tokens")
    smoothing = d.get("mlm_smoothing")
    if smoothing is not None and (isinstance(smoothing, bool) or not isinstance(smoothing, (int, float))
                                  or not smoothing >= 0):
        raise ConfigError(f"distill.mlm_smoothing={smoothing!r}: expected null or a number >= 0 (the reference: 0.7)")
    if not isinstance(d.get("freeze_pos_embs", False), bool):
        raise ConfigError(f"distill.freeze_pos_embs={d.freeze_pos_embs!r}: expected true or false")
    teacher = load_mlm_teacher(d.teacher)
    layers = resolve_init_layers(d.init_layers, teacher.config.num_hidden_layers)
    if st.max_seq_length > teacher.config.max_position_embeddings:
        raise ConfigError(
            f"stage.max_seq_length={st.max_seq_length} exceeds the teacher's max_position_embeddings="
            f"{teacher.config.max_position_embeddings}"
        )
    student = init_from_teacher(teacher, layers)
    if d.get("freeze_pos_embs", False):
        freeze_position_embeddings(student)
    betas = d.get("adam_betas")
    return DistilBertModule(
        teacher,
        student,
        alpha_ce=d.alpha_ce,
        alpha_mlm=d.alpha_mlm,
        alpha_cos=d.alpha_cos,
        temperature=d.temperature,
        kd_positions=d.kd_positions,
        lr=st.lr,
        weight_decay=st.weight_decay,
        warmup_proportion=st.warmup_proportion,
        schedule=st.schedule,
        adam_epsilon=st.adam_epsilon,
        adam_betas=None if betas is None else list(betas),
        **optimizer_options(st),
    )


def run(cfg: DictConfig) -> dict[str, Any]:
    d, st = cfg.distill, cfg.stage
    # The frozen teacher is in eval mode on purpose.
    warnings.filterwarnings("ignore", message=r"Found \d+ module\(s\) in eval mode")
    module = build_distilbert(cfg)
    teacher, student = module.teacher, module.student
    tokenizer = load_tokenizer(d.teacher)
    if len(tokenizer) > teacher.config.vocab_size:
        raise ConfigError(
            f"distill.teacher={d.teacher}: its tokenizer has {len(tokenizer)} tokens but the model's vocabulary "
            f"only {teacher.config.vocab_size}"
        )
    layers = resolve_init_layers(d.init_layers, teacher.config.num_hidden_layers)
    log.info("DistilBERT student: teacher layers %s of %d, hidden %d (the student config group is not used)",
             layers, teacher.config.num_hidden_layers, student.config.hidden_size)
    smoothing = d.get("mlm_smoothing")
    # BERT's uniform masking, after each batch's transfer (CorpusDataModule.on_after_batch_transfer)
    datamodule = corpus_datamodule(cfg, tokenizer, mlm_probability=d.mlm_probability, with_mlm_labels=True)
    if smoothing is not None:  # the reference's masking instead, weighted by the training instances' token counts
        datamodule.prepare_data()
        datamodule.setup("fit")
        datamodule.masking = SmoothedMasking.from_instances(
            (ids for rows in datamodule.train.iter(batch_size=1024) for ids in rows["input_ids"]),
            tokenizer, smoothing, d.mlm_probability,
        )
        log.info("smoothed masking (distill.mlm_smoothing=%s): token counts over %d training instances",
                 smoothing, len(datamodule.train))
    trainer, checkpoint, history = step_trainer(cfg)
    validate = st.val_size > 0 and not trainer.fast_dev_run
    if validate and cfg.ckpt_path is None:
        # Held-out losses of the freshly copied student, the baseline for the final ones (a resumed run reads them
        # from its checkpoint).
        history.val_start = validate_losses(trainer, module, datamodule)
    trainer.fit(module, datamodule=datamodule, ckpt_path=cfg.ckpt_path)
    val = validate_losses(trainer, module, datamodule) if validate else {}
    distill = OmegaConf.to_container(d, resolve=True)
    distill["init_layers"] = layers
    result = {
        "stage": "general",
        "method": "distilbert",
        "teacher": str(d.teacher),
        "student_config": {k: getattr(student.config, k) for k in
                           ("num_hidden_layers", "hidden_size", "num_attention_heads", "intermediate_size")},
        "parameters": {"student": count_parameters(student), "teacher": count_parameters(teacher)},
        "distill": distill,
        **run_summary(cfg, datamodule, trainer, checkpoint, history, val),
    }
    if trainer.is_global_zero:
        out = export_pretrained(d.output_dir, student, tokenizer, json_files={RESULT_JSON: result})
        log.info("DistilBERT student: %s (%.1fM parameters, teacher %.1fM)", out,
                 result["parameters"]["student"] / 1e6, result["parameters"]["teacher"] / 1e6)
        log.info("train losses: first %s, last %s", history.first, history.last)
        log.info("held-out losses: before %s, after %s", history.val_start, val)
        result["output_dir"] = str(out)
    return result
