"""stage=general: TinyBERT general distillation of a pretrained teacher into a randomly initialised student.

    python train.py stage=general                       # default teacher -> default student, corpus in data_dir
    python train.py stage=general experiment=quick      # MiniLM -> demo student, < 30 min on 2 CPU cores
    python train.py stage=general ckpt_path=<run>/checkpoints/last.ckpt   # resume
    python train.py stage=general distill=distilbert    # DistilBERT's triple loss instead (stages/distilbert.py)

Result (``stage.output_dir``, default ``artifacts/general/<student.name>/``): the student as a Hugging Face
``BertModel`` (``config.json``, ``model.safetensors``) with the teacher's tokenizer, the projections
(``projections.safetensors`` + ``projections.json``) and ``general_distill.json`` (settings and losses).
"""

from __future__ import annotations

import logging
import warnings
from pathlib import Path
from typing import Any

import lightning as L
from lightning.pytorch.callbacks import Callback
from omegaconf import DictConfig, OmegaConf
from transformers import PreTrainedTokenizerBase

from tinydistill.data.corpus import CorpusDataModule, CorpusSource
from tinydistill.data.pairs import PairOptions
from tinydistill.distill.intermediate import IntermediateDistiller
from tinydistill.errors import ConfigError
from tinydistill.models.loading import export_pretrained, load_tokenizer
from tinydistill.models.student import build_student, load_encoder
from tinydistill.modules.frozen_teacher import teacher_dtype
from tinydistill.modules.general import GeneralDistillModule
from tinydistill.optim import optimizer_options
from tinydistill.paths import recorded_path
from tinydistill.resume import ResumableCheckpoint
from tinydistill.trainer import build_trainer, validate_every_n_steps

log = logging.getLogger(__name__)

RESULT_JSON = "general_distill.json"


class FirstAndLastLosses(Callback):
    """Remembers the first and the latest logged ``train/*`` values, and ``val_start``, the held-out losses before
    training (set by the stage); all kept in checkpoints, so a resumed run reports what the uninterrupted one would."""

    def __init__(self) -> None:
        self.first: dict[str, float] = {}
        self.last: dict[str, float] = {}
        self.val_start: dict[str, float] = {}

    def on_train_batch_end(self, trainer: L.Trainer, pl_module: L.LightningModule, outputs, batch, batch_idx) -> None:
        values = {k.split("/", 1)[1]: float(v) for k, v in trainer.callback_metrics.items() if k.startswith("train/")}
        for k, v in values.items():
            self.first.setdefault(k, v)
        self.last.update(values)

    def state_dict(self) -> dict[str, Any]:
        return {"first": dict(self.first), "last": dict(self.last), "val_start": dict(self.val_start)}

    def load_state_dict(self, state_dict: dict[str, Any]) -> None:
        self.first = dict(state_dict.get("first", {}))
        self.last = dict(state_dict.get("last", {}))
        self.val_start = dict(state_dict.get("val_start", {}))


def build_general(cfg: DictConfig) -> GeneralDistillModule:
    """Teacher, student, distiller and module from the config; all config checks happen here, before data."""
    st = cfg.stage
    if cfg.student.get("init") not in ("general", "random", None):
        log.warning("student.init=%s does not apply to stage=general: its student always starts from random "
                    "weights", cfg.student.init)
    teacher = load_encoder(st.teacher)
    student = build_student(cfg.student, teacher.config, seed=cfg.seed)
    teacher.to(teacher_dtype(cfg.distill.get("teacher_dtype", "float32")))
    distill = OmegaConf.to_container(cfg.distill, resolve=True)
    distiller = IntermediateDistiller.from_config(distill, student.config, teacher.config)
    if not distiller.active_terms:
        raise ConfigError("distill.weights: emb, att and hid are all 0, so general distillation has nothing to learn")
    for name, model in (("teacher", teacher), ("student", student)):
        if st.max_seq_length > model.config.max_position_embeddings:
            raise ConfigError(
                f"stage.max_seq_length={st.max_seq_length} exceeds the {name}'s max_position_embeddings="
                f"{model.config.max_position_embeddings}"
            )
    module = GeneralDistillModule(
        teacher,
        student,
        distiller,
        lr=st.lr,
        weight_decay=st.weight_decay,
        warmup_proportion=st.warmup_proportion,
        schedule=st.schedule,
        adam_epsilon=st.adam_epsilon,
        teacher_mode=cfg.distill.get("teacher_mode", "eval"),
        **optimizer_options(st),
    )
    return module


def validate_losses(
    trainer: L.Trainer, module: L.LightningModule, datamodule: L.LightningDataModule
) -> dict[str, float]:
    """The logged ``val/*`` values averaged over the held-out instances, without the prefix."""
    out: dict[str, float] = {}
    for r in trainer.validate(module, datamodule=datamodule, verbose=False):
        out.update({k.split("/", 1)[1]: float(v) for k, v in r.items() if k.startswith("val/")})
    return out


def corpus_datamodule(
    cfg: DictConfig, tokenizer: PreTrainedTokenizerBase, mlm_probability: float, with_mlm_labels: bool = False
) -> CorpusDataModule:
    """The general corpus of ``stage.corpus``, as ``stage.instances`` (single segments or pairs), batched as
    ``stage`` and ``data`` say."""
    st = cfg.stage
    return CorpusDataModule(
        CorpusSource.from_config(st.corpus),
        tokenizer,
        max_seq_length=st.max_seq_length,
        cache_dir=cfg.paths.cache_dir,
        batch_size=st.batch_size,
        eval_batch_size=st.eval_batch_size,
        val_size=st.val_size,
        seed=cfg.seed,
        num_workers=cfg.data.num_workers,
        group_by_length=cfg.data.group_by_length,
        mlm_probability=mlm_probability,
        with_mlm_labels=with_mlm_labels,
        pad_to_max_length=cfg.data.pad_to_max_length,
        instances=st.instances,
        pairs=PairOptions(**st.pairs),
    )


def step_trainer(cfg: DictConfig) -> tuple[L.Trainer, ResumableCheckpoint, FirstAndLastLosses]:
    """A Trainer for a step budget on the corpus: step checkpoints, validation every ``stage.val_every_n_steps``
    optimiser steps, and a record of the first and last logged training losses."""
    st = cfg.stage
    checkpoint = ResumableCheckpoint(
        dirpath=Path(cfg.paths.output_dir) / "checkpoints",
        filename="step-{step}",
        auto_insert_metric_name=False,
        every_n_train_steps=st.checkpoint_every_n_steps,
        save_top_k=1,  # no monitor: the most recent step checkpoint, plus last.ckpt
        save_last=True,
    )
    history = FirstAndLastLosses()
    overrides: dict[str, Any] = {}
    if st.max_steps > 0:
        overrides["max_epochs"] = -1  # the step budget alone decides
    if st.val_size <= 0:
        overrides["limit_val_batches"] = 0
    else:
        overrides.update(validate_every_n_steps(cfg, st.val_every_n_steps))
    return build_trainer(cfg, callbacks=[checkpoint, history], **overrides), checkpoint, history


def run_summary(
    cfg: DictConfig,
    datamodule: CorpusDataModule,
    trainer: L.Trainer,
    checkpoint: ResumableCheckpoint,
    history: FirstAndLastLosses,
    val: dict[str, float],
) -> dict[str, Any]:
    """The result-file fields every corpus-distillation run shares: data, budget, and losses before/after."""
    return {
        "corpus": datamodule.summary(),
        "seed": cfg.seed,
        "steps": trainer.global_step,
        "batch_size": cfg.stage.batch_size,
        "lr": cfg.stage.lr,
        "train_first": history.first,
        "train_last": history.last,
        "val_start": history.val_start,
        "val": val,
        "last_checkpoint": recorded_path(checkpoint.last_model_path),
    }


def result_dir(cfg: DictConfig) -> Path:
    """TinyBERT's general student goes to stage.output_dir, the DistilBERT-style one to distill.output_dir."""
    return Path(cfg.distill.output_dir if cfg.distill.name == "distilbert" else cfg.stage.output_dir)


def run(cfg: DictConfig) -> dict[str, Any]:
    if cfg.distill.name == "distilbert":
        from tinydistill.stages import distilbert  # here: that module imports this one's helpers

        return distilbert.run(cfg)
    if cfg.distill.name != "tinybert":
        raise ConfigError(f"stage=general: distill={cfg.distill.name!r} must be tinybert or distilbert")
    st = cfg.stage
    # The frozen teacher is in eval mode on purpose.
    warnings.filterwarnings("ignore", message=r"Found \d+ module\(s\) in eval mode")
    module = build_general(cfg)
    tokenizer = load_tokenizer(st.teacher)
    datamodule = corpus_datamodule(cfg, tokenizer, mlm_probability=st.mlm_probability)
    trainer, checkpoint, history = step_trainer(cfg)
    validate = st.val_size > 0 and not trainer.fast_dev_run
    if validate and cfg.ckpt_path is None:
        # Held-out losses of the untrained student, the baseline for the final ones (a resumed run reads them from
        # its checkpoint).
        history.val_start = validate_losses(trainer, module, datamodule)
    trainer.fit(module, datamodule=datamodule, ckpt_path=cfg.ckpt_path)
    val = validate_losses(trainer, module, datamodule) if validate else {}
    student = module.student
    result = {
        "stage": "general",
        "teacher": str(st.teacher),
        "student": cfg.student.name,
        "student_config": {k: getattr(student.config, k) for k in
                           ("num_hidden_layers", "hidden_size", "num_attention_heads", "intermediate_size")},
        "parameters": sum(p.numel() for p in student.parameters()),
        "distill": module.distiller.describe(),
        **run_summary(cfg, datamodule, trainer, checkpoint, history, val),
    }
    if trainer.is_global_zero:
        projections = module.distiller.projections
        out = export_pretrained(
            st.output_dir, student, tokenizer, json_files={RESULT_JSON: result}, extra=projections.save
        )
        log.info("general-distilled student: %s", out)
        log.info("train losses: first %s, last %s", history.first, history.last)
        log.info("held-out losses: before %s, after %s", history.val_start, val)
        result["output_dir"] = str(out)
    return result
