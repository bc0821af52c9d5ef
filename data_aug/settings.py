"""What an augmented set depends on: its settings and their hash. A manifest whose settings differ from the current
ones describes an out-of-date output; chunks left under another settings hash are not resumed."""

from __future__ import annotations

import hashlib
import json
from typing import Any, Mapping

from data_aug.config import AugConfig
from data_aug.mlm import MaskedLM
from data_aug.words import STOPWORD_LISTS
from tinydistill.data.tasks import Task

# Bump when the algorithm or output layout changes: older outputs are then regenerated.
FORMAT_VERSION = 1


def output_settings(
    cfg: AugConfig, task: Task, mlm: MaskedLM | str, glove_fp: str | None, stop_fp: str, source_sha: str
) -> dict[str, Any]:
    """Everything the output depends on; a manifest whose settings differ is out of date. The word vectors keep
    their older keys (glove_fingerprint, glove_vocab_size), so outputs made before aug.word_vectors stay valid."""
    settings = {
        "format_version": FORMAT_VERSION,
        "task": task.name,
        "source_sha256": source_sha,
        "mlm_fingerprint": mlm if isinstance(mlm, str) else mlm.fingerprint,
        "glove_fingerprint": glove_fp,
        "glove_vocab_size": None if cfg.mlm_only else cfg.word_vectors_vocab_size,
        "stopwords_fingerprint": stop_fp,
        "top_k": cfg.top_k,
        "n_aug": cfg.n_aug_for(task.name),
        "p_replace": float(cfg.p_replace),
        "seed": cfg.seed,
        "max_seq_length": cfg.max_seq_length,
        "dtype": cfg.dtype,
        "max_examples": cfg.max_examples,
    }
    if cfg.alphabetic_only:
        # Only when on, so outputs made before the option existed (= off) stay up to date.
        settings["alphabetic_only"] = True
    if cfg.mlm_only:  # these three only when not the default, so older outputs stay up to date
        settings["mlm_only"] = True
    if cfg.words != "reference":
        settings["words"] = cfg.words
    if cfg.stopwords != "nltk":
        # Named as well as fingerprinted (stop words passed in preloaded are only fingerprinted); only when not
        # the default, so outputs made before the option existed stay up to date.
        # a file by its content only (stopwords_fingerprint): moving it changes nothing
        settings["stopwords"] = cfg.stopwords if cfg.stopwords in STOPWORD_LISTS else "file"
    if not task.is_glue:  # which columns are augmented; GLUE's are fixed (and its settings keep their old keys)
        settings["text_columns"] = [str(c) for c in task.text_columns]
    if not (cfg.dtype == "float32" and cfg.device == "cpu"):
        # bfloat16 (and GPU) kernels are not batch-invariant: the candidates then depend on how
        # masked sentences are grouped into forwards, so these become part of the identity.
        settings.update(mode=cfg.mode, batch_size=cfg.batch_size, chunk_size=cfg.chunk_size)
    if cfg.dtype == "bfloat16":
        # Under autocast; outputs of the earlier whole-model cast have other lists and are not reused.
        settings["bfloat16"] = "autocast"
    return settings


def settings_hash(settings: Mapping[str, Any]) -> str:
    return hashlib.sha256(json.dumps(settings, sort_keys=True).encode()).hexdigest()[:16]
