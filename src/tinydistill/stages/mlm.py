"""stage=mlm: train a masked-LM head on the general corpus for an encoder that has none.

    python train.py stage=mlm                 # MiniLM teacher -> artifacts/mlm/minilm_l6/
    python train.py stage=mlm stage.train_encoder=true
    python train.py stage=mlm ckpt_path=<run>/checkpoints/last.ckpt   # resume (exactly, as stage=general)

The result is a `BertForMaskedLM` in Hugging Face format with `mlm.json` holding its masked-token
accuracy on held-out corpus instances (the same 15% 80/10/10 masking as training), after training
(`held_out`) and before it (`held_out_start`, the untrained head's), and, under
`candidate_quality`, the statistics of the replacement candidates data augmentation would draw from
it (data_aug/stats.py: distinct candidates, non-alphabetic and stop-word shares, most frequent) on
`stage.candidate_sentences` held-out corpus sentences, generated with the `aug.*` settings (top_k,
alphabetic_only, ...) by data_aug's own candidate code. Masked-token accuracy alone does not show a
head that proposes "the , of ." for every word; these numbers do.

Checkpoints and resume are stage=general's (`step_trainer`): `last.ckpt` every
`stage.checkpoint_every_n_steps` steps and at the end, and the held-out accuracy before training
travels in the checkpoint, so a resumed run writes the same `mlm.json` as the uninterrupted one.
"""

from __future__ import annotations

import logging
import math
from collections.abc import Iterable, Sequence
from typing import Any

from omegaconf import DictConfig
from transformers import BertForMaskedLM

from tinydistill.data.corpus import CorpusDataModule, CorpusSource, pack_document, read_documents, special_tokens
from tinydistill.errors import ConfigError, DataError
from tinydistill.models.loading import export_pretrained, load_tokenizer, resolve_model_path
from tinydistill.modules.mlm import MlmModule
from tinydistill.optim import optimizer_options
from tinydistill.paths import recorded_path
from tinydistill.stages.general import step_trainer, validate_losses

log = logging.getLogger(__name__)

RESULT_JSON = "mlm.json"


def run(cfg: DictConfig) -> dict[str, Any]:
    st = cfg.stage
    tokenizer = load_tokenizer(st.model)
    # The encoder's weights load; the head (transform, bias) starts from BERT's initialisation.
    model = BertForMaskedLM.from_pretrained(resolve_model_path(st.model))
    module = MlmModule(
        model, lr=st.lr, train_encoder=st.train_encoder, weight_decay=st.weight_decay,
        warmup_proportion=st.warmup_proportion, schedule=st.schedule, **optimizer_options(st),
    )
    datamodule = CorpusDataModule(
        CorpusSource.from_config(st.corpus), tokenizer, max_seq_length=st.max_seq_length,
        cache_dir=cfg.paths.cache_dir, batch_size=st.batch_size, eval_batch_size=st.eval_batch_size,
        val_size=st.val_size, seed=cfg.seed, num_workers=cfg.data.num_workers,
        group_by_length=cfg.data.group_by_length, mlm_probability=st.mlm_probability, with_mlm_labels=True,
        pad_to_max_length=cfg.data.pad_to_max_length,
    )
    # stage=general's step budget, validation and checkpoints (ResumableCheckpoint, ExactResume), and its record of
    # the first/last training values and of the held-out values before training, all kept in checkpoints.
    trainer, checkpoint, history = step_trainer(cfg)
    validate = st.val_size > 0 and not trainer.fast_dev_run
    if validate and cfg.ckpt_path is None:
        # The untrained head's held-out accuracy, the baseline for the final one (a resumed run reads it from its
        # checkpoint: its model is no longer untrained).
        history.val_start = validate_losses(trainer, module, datamodule)
    trainer.fit(module, datamodule=datamodule, ckpt_path=cfg.ckpt_path)
    val = validate_losses(trainer, module, datamodule) if validate else {}
    quality = candidate_quality(cfg, module.model, tokenizer, datamodule) if trainer.is_global_zero else None
    result = {
        "stage": "mlm",
        "model": str(st.model),
        "train_encoder": bool(st.train_encoder),
        "steps": trainer.global_step,
        "mlm_probability": st.mlm_probability,
        "held_out_start": history.val_start,
        "held_out": val,
        "train_first": history.first,
        "train_last": history.last,
        "corpus": datamodule.summary(),
        "seed": cfg.seed,
        "candidate_quality": quality,
        "last_checkpoint": recorded_path(checkpoint.last_model_path),
    }
    if trainer.is_global_zero:
        out = export_pretrained(st.output_dir, module.model, tokenizer, json_files={RESULT_JSON: result})
        log.info("masked LM: %s (held-out masked-token accuracy %.3f, before training %.3f)", out,
                 val.get("masked_accuracy", float("nan")), history.val_start.get("masked_accuracy", float("nan")))
        result["output_dir"] = str(out)
    return result


# ---------------------------------------------------------------------------------------------- candidates


def _pack_spans(lengths: Sequence[int], budget: int) -> list[list[tuple[int, int, int]]]:
    """`pack_document`'s packing, as (sentence, start, end) token spans per instance."""
    out: list[list[tuple[int, int, int]]] = []
    cur: list[tuple[int, int, int]] = []
    used = 0
    for i, n in enumerate(lengths):
        if n == 0:
            continue
        if cur and used + n > budget:
            out.append(cur)
            cur, used = [], 0
        start = 0
        while n - start > budget:  # only when cur is empty
            out.append([(i, start, start + budget)])
            start += budget
        cur.append((i, start, n))
        used += n - start
    if cur:
        out.append(cur)
    return out


def held_out_sentences(
    documents: Sequence[Sequence[str]],
    tokenizer,
    max_seq_length: int,
    held_out: Iterable[Sequence[int]],
    n: int,
    doc_batch: int = 256,
) -> list[str]:
    """Up to `n` corpus sentences that lie whole inside held-out instances (never trained on).

    Re-packs the documents in corpus order exactly as `pack_corpus` does (checked against
    `pack_document`), tracking which sentences each instance holds, and takes from each instance
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
    for b in range(0, len(documents), doc_batch):
        docs = documents[b : b + doc_batch]
        flat = [s for d in docs for s in d]
        ids = tokenizer(flat, add_special_tokens=False)["input_ids"] if flat else []
        offset = 0
        for doc in docs:
            doc_ids = ids[offset : offset + len(doc)]
            offset += len(doc)
            spans = _pack_spans([len(x) for x in doc_ids], budget)
            packed = pack_document(doc_ids, budget, prefix, suffix)
            rebuilt = [[*prefix, *(t for s, a, e in inst for t in doc_ids[s][a:e]), *suffix] for inst in spans]
            if rebuilt != packed:
                raise RuntimeError("held_out_sentences no longer packs like tinydistill.data.corpus.pack_document")
            for inst, inst_ids in zip(spans, packed):
                if tuple(inst_ids) in held:
                    whole = [doc[s] for s, a, e in inst if a == 0 and e == len(doc_ids[s])]
                    out.extend(whole[:per])
                    if len(out) >= n:
                        return out[:n]
    return out


def candidate_quality(cfg: DictConfig, model: BertForMaskedLM, tokenizer, datamodule: CorpusDataModule) -> dict:
    """Statistics of the augmentation candidates `model` proposes on held-out corpus sentences.

    `stage.candidate_sentences` sentences (see `held_out_sentences`) go through data_aug's candidate
    generation (`Augmenter.candidates`, MLM only) with the `aug.*` settings, in float32. Returns
    data_aug.stats' statistics plus the settings used, or {"skipped": why}.
    """
    n = int(cfg.stage.get("candidate_sentences", 0) or 0)
    if n <= 0:
        return {"skipped": "stage.candidate_sentences is 0"}
    if datamodule.val is None:
        return {"skipped": "no held-out corpus instances (stage.val_size is 0)"}
    from data_aug import AugConfig, Augmenter, MaskedLM, load_stopwords, measure_candidates, summary_line
    from data_aug.words import nltk_data_dir

    try:
        aug = AugConfig.from_cfg(cfg.get("aug"))
        stopwords = load_stopwords(nltk_data_dir(aug.nltk_data, cfg.paths.data_dir))
        sentences = held_out_sentences(
            read_documents(datamodule.source), tokenizer, datamodule.max_seq_length, datamodule.val["input_ids"], n
        )
        device = str(next(model.parameters()).device)
        mlm = MaskedLM(model, tokenizer, name=str(cfg.stage.model), device=device, max_seq_length=aug.max_seq_length)
        augmenter = Augmenter(
            mlm, None, stopwords, top_k=aug.top_k, mode=aug.mode, batch_size=aug.batch_size,
            alphabetic_only=aug.alphabetic_only,
        )
        stats = measure_candidates(augmenter, sentences)
    except (ConfigError, DataError) as e:
        log.warning("masked LM: candidate statistics skipped: %s", e)
        return {"skipped": str(e)}
    log.info("masked LM: %s", summary_line(stats))
    return {**stats, "top_k": aug.top_k, "alphabetic_only": aug.alphabetic_only}
