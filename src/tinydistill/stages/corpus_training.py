"""Training on the general corpus, shared by stage=general, the DistilBERT baseline and stage=mlm: the corpus and
its batches, a step budget with step checkpoints and held-out validation, and the record fields they share."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import lightning as L
from omegaconf import DictConfig
from transformers import PreTrainedTokenizerBase

from tinydistill.callbacks import FirstAndLastLosses, latest_checkpoint
from tinydistill.contract import RunContext
from tinydistill.data.corpus import CorpusDataModule
from tinydistill.data.corpus_source import CorpusSource
from tinydistill.data.pairs import PairOptions
from tinydistill.paths import recorded_path
from tinydistill.resume import ResumableCheckpoint
from tinydistill.trainer import build_trainer, validate_every_n_steps


@dataclass(frozen=True)
class CorpusTraining:
    """`stage.corpus` and the budget, batches and checkpoints of a corpus stage."""

    source: CorpusSource
    max_seq_length: int
    batch_size: int
    eval_batch_size: int
    val_size: int
    val_every_n_steps: int
    checkpoint_every_n_steps: int | None
    max_steps: int
    lr: float
    instances: str = "single"
    pairs: PairOptions | None = None
    num_proc: int | None = None  # processes preparing the instances; None: every core
    prepare_per_node: bool = True

    @classmethod
    def from_stage(cls, st: DictConfig) -> CorpusTraining:
        return cls(
            source=CorpusSource.from_config(st.corpus),
            max_seq_length=int(st.max_seq_length),
            batch_size=int(st.batch_size),
            eval_batch_size=int(st.eval_batch_size),
            val_size=int(st.val_size),
            val_every_n_steps=int(st.val_every_n_steps),
            checkpoint_every_n_steps=st.get("checkpoint_every_n_steps"),
            max_steps=int(st.get("max_steps", -1)),
            lr=float(st.lr),
            instances=str(st.get("instances", "single")),
            pairs=PairOptions(**st.pairs) if st.get("pairs") is not None else None,
            num_proc=st.prepare.num_proc,
            prepare_per_node=bool(st.prepare.per_node),
        )


def corpus_datamodule(ct: CorpusTraining, ctx: RunContext, tokenizer: PreTrainedTokenizerBase, mlm_probability: float,
                      with_mlm_labels: bool = False) -> CorpusDataModule:
    """The corpus as `ct.instances` (single segments or pairs), batched as `ct` and `ctx.loading` say."""
    return CorpusDataModule(
        ct.source,
        tokenizer,
        max_seq_length=ct.max_seq_length,
        cache_dir=ctx.cache_dir,
        batch_size=ct.batch_size,
        eval_batch_size=ct.eval_batch_size,
        val_size=ct.val_size,
        seed=ctx.seed,
        num_workers=ctx.loading.num_workers,
        group_by_length=ctx.loading.group_by_length,
        mlm_probability=mlm_probability,
        with_mlm_labels=with_mlm_labels,
        pad_to_max_length=ctx.loading.pad_to_max_length,
        instances=ct.instances,
        pairs=ct.pairs,
        num_proc=ct.num_proc,
        prepare_per_node=ct.prepare_per_node,
    )


def step_trainer(ct: CorpusTraining, ctx: RunContext) -> tuple[L.Trainer, ResumableCheckpoint, FirstAndLastLosses]:
    """A Trainer for a step budget on the corpus: step checkpoints, validation every `val_every_n_steps` optimiser
    steps, and a record of the first and last logged training losses."""
    checkpoint = latest_checkpoint(ctx.log_dir, "step-{step}", ct.checkpoint_every_n_steps)
    history = FirstAndLastLosses()
    # The corpus DataModule shards the training order itself (data/sampler.py), 8 bytes an instance; Lightning's
    # replacement would list every epoch's order in Python on every process.
    overrides: dict[str, Any] = {"use_distributed_sampler": False}
    if ct.max_steps > 0:
        overrides["max_epochs"] = -1  # the step budget alone decides
    if ct.val_size <= 0:
        overrides["limit_val_batches"] = 0
    else:
        overrides.update(validate_every_n_steps(ctx.trainer, ct.val_every_n_steps))
    return build_trainer(ctx.trainer, callbacks=[checkpoint, history], **overrides), checkpoint, history


def validate_losses(trainer: L.Trainer, module: L.LightningModule,
                    datamodule: L.LightningDataModule) -> dict[str, float]:
    """The logged ``val/*`` values averaged over the held-out instances, without the prefix."""
    out: dict[str, float] = {}
    for r in trainer.validate(module, datamodule=datamodule, verbose=False):
        out.update({k.split("/", 1)[1]: float(v) for k, v in r.items() if k.startswith("val/")})
    return out


def fit_on_corpus(ct: CorpusTraining, ctx: RunContext, module: L.LightningModule,
                  datamodule: CorpusDataModule) -> tuple[L.Trainer, dict[str, Any]]:
    """Fit `module` for the step budget; the held-out losses before training (the baseline for the final ones; a
    resumed run reads them from its checkpoint) and after. Returns the trainer and the record fields every corpus
    stage shares: data, budget, and losses before and after."""
    trainer, checkpoint, history = step_trainer(ct, ctx)
    validate = ct.val_size > 0 and not trainer.fast_dev_run
    if validate and ctx.ckpt_path is None:
        history.val_start = validate_losses(trainer, module, datamodule)
    trainer.fit(module, datamodule=datamodule, ckpt_path=ctx.ckpt_path)
    val = validate_losses(trainer, module, datamodule) if validate else {}
    return trainer, {
        "corpus": datamodule.summary(),
        "seed": ctx.seed,
        "steps": trainer.global_step,
        "batch_size": ct.batch_size,
        "lr": ct.lr,
        "train_first": history.first,
        "train_last": history.last,
        "val_start": history.val_start,
        "val": val,
        "last_checkpoint": recorded_path(checkpoint.last_model_path),
    }
