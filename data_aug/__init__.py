"""TinyBERT data augmentation: masked-LM + word-vector (GloVe, fastText) word replacement for training sets.

Command line (Hydra; config conf/augment.yaml = paths + task + aug groups)::

    python -m data_aug task=mrpc                         # -> <artifacts_dir>/aug/mrpc/train_aug.tsv
    python -m data_aug task=sst2 aug.n_aug=10 aug.mlm_model=path/to/mlm \\
        aug.word_vectors='${paths.data_dir}/glove/glove.6B.50d.top50k.txt'

Python API (what `train.py stage=task aug=on` calls)::

    from data_aug import ensure_augmented
    train_tsv = ensure_augmented(cfg.aug, cfg.task.name, cfg.paths.data_dir, cfg.paths.artifacts_dir)

`ensure_augmented(cfg_aug, task_name, data_dir, artifacts_dir, *, mlm_model=None, glove=None,
stopwords=None, progress=True) -> Path` returns `<artifacts_dir>/aug/<task>/train_aug.tsv`, a file
in the same GLUE TSV layout as `<data_dir>/glue/<Task>/train.tsv` (same header and columns; read
it with `tinydistill.data.glue_tsv.read_glue_tsv`). It generates the file only if it is missing or
its `manifest.json` settings (augmentation numbers, seed, MLM weights and GloVe fingerprints, stop
words, sha256 of train.tsv) differ from the current ones, and resumes an interrupted generation.
With `aug.enabled: false`, or for a task in `aug.skip_tasks` (STS-B by default), it returns the
original train.tsv path. `mlm_model` overrides `cfg_aug.mlm_model` with a hub name, a local folder
(e.g. the `stage=mlm` output) or an already loaded `MaskedLM`. Errors in user input raise
`tinydistill.errors.ConfigError` / `DataError` naming the option or file.

`ensure_augmented_rows(cfg_aug, task, rows, data_dir, artifacts_dir, *, source) -> Path` augments other rows of
the task's text (`stage.unlabeled.augment`: the unlabelled rows chosen) with the same settings into
`<artifacts_dir>/aug/<task>/unlabeled/train_aug.jsonl` (columns text_a, text_b), fingerprinted by their content.

Lower-level pieces: `AugConfig` (validated `aug` settings), `load_mlm` -> `MaskedLM`,
`load_glove` -> gensim KeyedVectors (GloVe, fastText .vec), `GloveNeighbours`, `Augmenter` (candidates + sampling for
sentences), `augment_task` (always regenerates), `aug_dir`.

Candidate quality (data_aug/stats.py): `candidate_stats(lists, stopwords)` summarises masked-LM
candidate lists (distinct tokens, non-alphabetic and stop-word shares, most frequent);
`measure_candidates(augmenter, sentences)` runs the augmentation's candidate generation on
sentences and returns them; `CandidateTally` accumulates them chunk by chunk. The augmented
set's manifest.json records them under `candidate_quality`. CLI: `python -m data_aug.quality`.
"""

from data_aug.augmenter import Augmenter, SentenceCandidates
from data_aug.config import AugConfig
from data_aug.glove import GloveNeighbours, load_glove
from data_aug.mlm import MaskedLM, load_mlm
from data_aug.pipeline import aug_dir, augment_task, ensure_augmented, read_manifest
from data_aug.unlabeled import ensure_augmented_rows
from data_aug.stats import (
    CandidateTally,
    candidate_stats,
    measure_candidates,
    summary_line,
)
from data_aug.words import basic_tokenize, is_candidate_word, load_stopwords

__all__ = [
    "AugConfig",
    "Augmenter",
    "CandidateTally",
    "GloveNeighbours",
    "MaskedLM",
    "SentenceCandidates",
    "aug_dir",
    "augment_task",
    "basic_tokenize",
    "candidate_stats",
    "ensure_augmented",
    "ensure_augmented_rows",
    "is_candidate_word",
    "load_glove",
    "load_mlm",
    "load_stopwords",
    "measure_candidates",
    "read_manifest",
    "summary_line",
]
