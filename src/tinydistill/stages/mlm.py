"""stage=mlm: train a masked-LM head on the general corpus for an encoder that has none.

    python train.py stage=mlm                 # MiniLM teacher -> artifacts/mlm/minilm_l6/
    python train.py stage=mlm stage.train_encoder=true
    python train.py stage=mlm ckpt_path=<run>/checkpoints/last.ckpt   # resume (exactly, as stage=general)

The result is a masked LM of the model's family (`BertForMaskedLM`, `RobertaForMaskedLM`, ...; models/masked_lm.py)
in Hugging Face format with `mlm.json` holding its masked-token accuracy on held-out corpus instances (the same 15% 80/10/10 masking as training), after training
(`held_out`) and before it (`held_out_start`, the untrained head's), and, under
`candidate_quality`, the statistics of the replacement candidates data augmentation would draw from
it (data_aug/stats.py: distinct candidates, non-alphabetic and stop-word shares, most frequent) on
`stage.candidate_sentences` held-out corpus sentences, generated with the `aug.*` settings (top_k,
alphabetic_only, ...) by data_aug's own candidate code. Masked-token accuracy alone does not show a
head that proposes "the , of ." for every word; these numbers do.

Checkpoints and resume are stage=general's (`stages/corpus_training.py`): `last.ckpt` every
`stage.checkpoint_every_n_steps` steps and at the end, and the held-out accuracy before training
travels in the checkpoint, so a resumed run writes the same `mlm.json` as the uninterrupted one.
"""

from __future__ import annotations

import itertools
import logging
import math
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from omegaconf import DictConfig, OmegaConf
from transformers import AutoModelForMaskedLM, PreTrainedModel

from data_aug import (
    AugConfig,
    Augmenter,
    MaskedLM,
    load_stopwords,
    measure_candidates,
    summary_line,
)
from data_aug.words import nltk_data_dir
from tinydistill.contract import ModelNeed, RunContext
from tinydistill.data.corpus import CorpusDataModule
from tinydistill.data.corpus_source import iter_documents
from tinydistill.data.packing import pack_spans, special_tokens, tokenize_documents
from tinydistill.errors import ConfigError, DataError
from tinydistill.models.loading import (
    export_pretrained,
    load_tokenizer,
    resolve_model_path,
)
from tinydistill.modules.mlm import MlmModule
from tinydistill.optim import OptimizerSettings
from tinydistill.preflight import MASKED_LM_TYPES
from tinydistill.records import MLM_JSON, CorpusRecord
from tinydistill.stages.corpus_training import (
    CorpusTraining,
    corpus_datamodule,
    fit_on_corpus,
)

log = logging.getLogger(__name__)

NAME = "mlm"
LEARNING_RATES = ("stage.lr",)
SEQUENCE_LENGTH = "stage.max_seq_length"
READS = frozenset({"corpus"})


@dataclass(frozen=True)
class MlmPlan:
    ctx: RunContext
    model: str
    output_dir: Path
    train_encoder: bool
    mlm_probability: float
    candidate_sentences: int
    corpus: CorpusTraining
    optim: OptimizerSettings
    aug: dict[str, Any] | None  # the aug group: the candidate settings of `candidate_quality`


def models(cfg: DictConfig) -> Iterator[ModelNeed]:
    yield ModelNeed("stage.model", MASKED_LM_TYPES, "stage=mlm (a masked LM)")


def result_dir(cfg: DictConfig) -> Path:
    return Path(cfg.stage.output_dir)


def plan(cfg: DictConfig) -> MlmPlan:
    st = cfg.stage
    aug = cfg.get("aug")
    return MlmPlan(
        ctx=RunContext.from_config(cfg),
        model=str(st.model),
        output_dir=Path(st.output_dir),
        train_encoder=bool(st.train_encoder),
        mlm_probability=float(st.mlm_probability),
        candidate_sentences=int(st.get("candidate_sentences", 0) or 0),
        corpus=CorpusTraining.from_stage(st),
        optim=OptimizerSettings.from_stage(st),
        aug=None if aug is None else OmegaConf.to_container(aug, resolve=True),
    )


def run(p: MlmPlan) -> dict[str, Any]:
    tokenizer = load_tokenizer(p.model)
    # The encoder's weights load; a head the checkpoint lacks (transform, bias) starts from its family's
    # initialisation (AutoModelForMaskedLM: BertForMaskedLM, RobertaForMaskedLM, ...).
    model = AutoModelForMaskedLM.from_pretrained(resolve_model_path(p.model))
    module = MlmModule(model, p.optim, train_encoder=p.train_encoder)
    datamodule = corpus_datamodule(p.corpus, p.ctx, tokenizer, mlm_probability=p.mlm_probability,
                                   with_mlm_labels=True)
    # stage=general's step budget, validation and checkpoints, and its record of the first/last training values and
    # of the held-out values before training (the untrained head's), all kept in checkpoints.
    trainer, summary = fit_on_corpus(p.corpus, p.ctx, module, datamodule)
    quality = candidate_quality(p, module.model, tokenizer, datamodule) if trainer.is_global_zero else None
    val, start = summary["val"], summary["val_start"]
    record = CorpusRecord(MLM_JSON, {
        "stage": NAME,
        "model": p.model,
        "train_encoder": p.train_encoder,
        "steps": summary["steps"],
        "mlm_probability": p.mlm_probability,
        "held_out_start": start,
        "held_out": val,
        "train_first": summary["train_first"],
        "train_last": summary["train_last"],
        "corpus": summary["corpus"],
        "seed": p.ctx.seed,
        "candidate_quality": quality,
        "last_checkpoint": summary["last_checkpoint"],
    })
    result = dict(record.fields)
    if trainer.is_global_zero:
        out = export_pretrained(p.output_dir, module.model, tokenizer, json_files=record.model_files())
        log.info("masked LM: %s (held-out masked-token accuracy %.3f, before training %.3f)", out,
                 val.get("masked_accuracy", float("nan")), start.get("masked_accuracy", float("nan")))
        result["output_dir"] = str(out)
    return result


# ---------------------------------------------------------------------------------------------- candidates


def held_out_sentences(
    documents: Iterable[Sequence[str]],
    tokenizer,
    max_seq_length: int,
    held_out: Iterable[Sequence[int]],
    n: int,
    doc_batch: int = 256,
) -> list[str]:
    """Up to `n` corpus sentences that lie whole inside held-out instances (never trained on).

    Re-packs the documents (read a batch at a time) in corpus order as `pack_corpus` does (`pack_spans`, which
    `pack_document` packs by), tracking which sentences each instance holds, and takes from each instance
    found in `held_out` (its `input_ids`) its first ceil(n / len(held_out)) whole sentences (a
    sentence cut across instances is skipped). Stops tokenising once it has `n`, so it reads only
    the start of a large corpus.
    """
    held = {tuple(int(t) for t in ids) for ids in held_out}
    if n <= 0 or not held:
        return []
    prefix, suffix = special_tokens(tokenizer)
    budget = max_seq_length - len(prefix) - len(suffix)
    per = max(1, math.ceil(n / len(held)))
    out: list[str] = []
    documents = iter(documents)
    while docs := list(itertools.islice(documents, doc_batch)):
        for doc, doc_ids in zip(docs, tokenize_documents(docs, tokenizer)):
            for inst in pack_spans([len(x) for x in doc_ids], budget):
                inst_ids = (*prefix, *(t for s, a, e in inst for t in doc_ids[s][a:e]), *suffix)
                if inst_ids in held:
                    whole = [doc[s] for s, a, e in inst if a == 0 and e == len(doc_ids[s])]
                    out.extend(whole[:per])
                    if len(out) >= n:
                        return out[:n]
    return out


def candidate_quality(p: MlmPlan, model: PreTrainedModel, tokenizer, datamodule: CorpusDataModule) -> dict:
    """Statistics of the augmentation candidates `model` proposes on held-out corpus sentences.

    `stage.candidate_sentences` sentences (see `held_out_sentences`) go through data_aug's candidate
    generation (`Augmenter.candidates`, MLM only) with the `aug.*` settings, in float32. Returns
    data_aug.stats' statistics plus the settings used, or {"skipped": why}.
    """
    n = p.candidate_sentences
    if n <= 0:
        return {"skipped": "stage.candidate_sentences is 0"}
    if datamodule.val is None:
        return {"skipped": "no held-out corpus instances (stage.val_size is 0)"}
    try:
        aug = AugConfig.from_cfg(p.aug)
        stopwords = load_stopwords(nltk_data_dir(aug.nltk_data, p.ctx.data_dir), aug.stopwords)
        sentences = held_out_sentences(
            iter_documents(datamodule.source), tokenizer, datamodule.max_seq_length, datamodule.val["input_ids"], n
        )
        device = str(next(model.parameters()).device)
        mlm = MaskedLM(model, tokenizer, name=p.model, device=device, max_seq_length=aug.max_seq_length)
        augmenter = Augmenter.from_settings(aug, mlm, None, stopwords)
        stats = measure_candidates(augmenter, sentences)
    except (ConfigError, DataError) as e:
        log.warning("masked LM: candidate statistics skipped: %s", e)
        return {"skipped": str(e)}
    log.info("masked LM: %s", summary_line(stats))
    return {**stats, "top_k": aug.top_k, "alphabetic_only": aug.alphabetic_only}
