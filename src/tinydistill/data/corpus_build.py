"""Preparing a corpus's training instances once, in parallel, without holding the corpus in Python lists.

The steps, each written to Arrow files on disk and memory-mapped from there (never Python lists of the corpus):

1. **documents**: :func:`tinydistill.data.corpus_source.iter_documents` streamed into an Arrow file, one row per
   document (``Dataset.from_generator``);
2. **instances**, with ``num_proc`` processes (``Dataset.map``, contiguous shards of documents, in order):
   ``single`` packs each document's sentences (:func:`tinydistill.data.packing.pack_corpus`); ``pairs`` first
   tokenises the documents, then draws each document's pairs with its own generator
   (:mod:`tinydistill.data.pairs`), fetching other documents' sentences from the memory-mapped tokens. Instances
   depend on a document and the seed alone, so they are identical for any process count.

The result is saved under ``<cache_dir>/corpus/<key>`` (atomically, so a crash never leaves a half-written cache),
the key hashing the source's content, the tokenizer and the length (pairs: their options, seed and drawing).
Work in progress lives beside it in ``<key>.partial/``: a preparation that is interrupted and run again reuses
the documents file and the finished shards of the instances (with the same ``num_proc``), and a file lock lets one
process prepare while the others wait for its result.
"""

from __future__ import annotations

import hashlib
import logging
import os
import shutil
from pathlib import Path
from typing import Any

import datasets
import numpy as np
from datasets import Dataset
from datasets.exceptions import DatasetGenerationError
from filelock import FileLock
from transformers import PreTrainedTokenizerBase

from tinydistill.atomic import atomic_directory
from tinydistill.data.corpus_source import CorpusSource, iter_documents, source_fingerprint
from tinydistill.data.glue import tokenizer_fingerprint
from tinydistill.data.packing import map_options, pack_corpus, tokenize_documents
from tinydistill.data.pairs import PairOptions, pair_instances, pair_template
from tinydistill.errors import ConfigError, DataError

log = logging.getLogger("tinydistill.data.corpus")

# Bump when reading, packing or the cached columns change, so old caches are not reused.
CACHE_VERSION = 1
# Pairs drawn with a generator per document (data/pairs.py): part of their key, so pairs cached when one generator
# ran through the whole corpus are not reused.
PAIR_DRAWING = "document-rng"
INSTANCES = ("single", "pairs")
DOCUMENT_FEATURES = datasets.Features({"sentences": datasets.List(datasets.Value("string"))})


def resolve_num_proc(num_proc: int | None) -> int:
    """``num_proc``, or with ``None`` the cores this process may use."""
    if num_proc is None:
        return len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else (os.cpu_count() or 1)
    if num_proc < 1:
        raise ConfigError(f"stage.prepare.num_proc must be >= 1 (or null: every core), got {num_proc}")
    return int(num_proc)


def corpus_key(source: CorpusSource, tokenizer: PreTrainedTokenizerBase, max_seq_length: int,
               instances: str = "single", pairs: PairOptions | None = None, seed: int = 42) -> str:
    """The cache key of these instances (``single`` keeps the key it always had, so existing caches stay valid)."""
    if instances not in INSTANCES:
        raise ConfigError(f"stage.instances={instances!r} must be one of {', '.join(INSTANCES)}")
    parts = [str(CACHE_VERSION), source_fingerprint(source), tokenizer_fingerprint(tokenizer), str(max_seq_length)]
    if instances == "pairs":
        pairs = pairs or PairOptions()
        parts += ["pairs", repr(pairs.short_seq_prob), repr(pairs.random_next_prob), str(seed), PAIR_DRAWING]
    return hashlib.sha256("|".join(parts).encode()).hexdigest()[:16]


def _document_rows(source: CorpusSource):
    for doc in iter_documents(source):
        yield {"sentences": doc}


def document_dataset(source: CorpusSource, folder: Path) -> Dataset:
    """The documents of ``source`` as a memory-mapped Arrow dataset (column ``sentences``), written under
    ``folder`` one batch of rows at a time and reused if it is complete there."""
    try:
        ds = Dataset.from_generator(_document_rows, features=DOCUMENT_FEATURES, gen_kwargs={"source": source},
                                    cache_dir=str(folder))
    except DatasetGenerationError as e:  # our one-line errors, raised while reading, come back wrapped
        cause = e.__cause__
        if isinstance(cause, (DataError, ConfigError)):
            raise cause from None
        raise
    return ds


class ArrowDocuments:
    """Tokenised documents in a memory-mapped Arrow dataset (column ``ids``: per document, its sentences' token
    ids) for :func:`tinydistill.data.pairs.pair_instances`; ``doc_bounds`` is read from a memory-mapped ``.npy``
    file, so a process it is sent to maps the same files instead of receiving copies."""

    def __init__(self, tokens: Dataset, bounds_file: Path) -> None:
        self.tokens = tokens
        self.bounds_file = Path(bounds_file)
        self._bounds: np.ndarray | None = None

    @property
    def doc_bounds(self) -> np.ndarray:
        if self._bounds is None:
            self._bounds = np.load(self.bounds_file, mmap_mode="r")
        return self._bounds

    def sentences(self, d: int) -> list[list[int]]:
        return self.tokens[int(d)]["ids"]

    def __getstate__(self) -> dict:
        return {**self.__dict__, "_bounds": None}


def _tokenize_documents(batch: dict, tokenizer: PreTrainedTokenizerBase) -> dict:
    # Sentences that tokenise to nothing are dropped, and documents left empty.
    out = [kept for doc in tokenize_documents(batch["sentences"], tokenizer) if (kept := [x for x in doc if x])]
    return {"ids": out, "n_sentences": [len(x) for x in out]}


def _pair_rows(batch: dict, indices: list[int], docs: ArrowDocuments, **kwargs) -> dict:
    return pair_instances(docs, documents=indices, **kwargs)


def pair_dataset(docs: Dataset, tokenizer: PreTrainedTokenizerBase, max_seq_length: int, options: PairOptions,
                 seed: int, work: Path, num_proc: int, desc: str) -> Dataset:
    """Sentence pairs of the documents: tokenised into ``work/tokens*.arrow``, the sentence count of every
    document into ``work/bounds.npy``, then each document's pairs drawn in ``num_proc`` processes."""
    template = pair_template(tokenizer)
    key = work.name
    tokens = docs.map(_tokenize_documents, fn_kwargs={"tokenizer": tokenizer}, remove_columns=docs.column_names,
                      **map_options(num_proc, work / "tokens.arrow", f"{key}-tokens", f"Tokenising {desc}"))
    counts = np.asarray(tokens.data.column("n_sentences").to_numpy(), dtype=np.int64)
    if len(counts) < 2:
        raise DataError("stage.instances=pairs needs at least two documents (blank lines between them) to draw "
                        "random second segments from")
    bounds_file = work / "bounds.npy"
    np.save(bounds_file, np.concatenate([[0], np.cumsum(counts)]))
    log.info("corpus %s: %d documents, %d sentences tokenised for pair instances", desc, len(counts), counts.sum())
    kwargs = {"template": template, "max_seq_length": max_seq_length, "options": options, "seed": seed}
    return tokens.map(_pair_rows, with_indices=True, fn_kwargs={"docs": ArrowDocuments(tokens, bounds_file), **kwargs},
                      remove_columns=tokens.column_names,
                      **map_options(num_proc, work / "pairs.arrow", f"{key}-pairs", f"Drawing pairs from {desc}"))


def prepare_corpus(
    source: CorpusSource,
    tokenizer: PreTrainedTokenizerBase,
    max_seq_length: int,
    cache_dir: str | os.PathLike,
    instances: str = "single",
    pairs: PairOptions | None = None,
    seed: int = 42,
    num_proc: int | None = None,
    key: str | None = None,
) -> Path:
    """Build the corpus's instances (``single`` or ``pairs``; ``pairs`` and ``seed`` only matter for ``pairs``)
    into ``<cache_dir>/corpus/<key>`` unless they are there, and return that folder."""
    key = key or corpus_key(source, tokenizer, max_seq_length, instances, pairs, seed)
    final = Path(cache_dir) / "corpus" / key
    if final.is_dir():
        return final
    if next(iter_documents(source), None) is None:  # before anything is written (datasets cannot store no rows)
        raise DataError(f"{source.describe()}: the corpus has no text (only blank lines)")
    final.parent.mkdir(parents=True, exist_ok=True)
    with FileLock(str(final) + ".lock"):
        if final.is_dir():  # another process prepared it while this one waited
            return final
        n = resolve_num_proc(num_proc)
        work = final.parent / f"{key}.partial"
        log.info("corpus %s: preparing %s instances with %d process(es) in %s", source.describe(), instances, n, work)
        try:
            docs = document_dataset(source, work / "documents")
            if instances == "pairs":
                packed = pair_dataset(docs, tokenizer, max_seq_length, pairs or PairOptions(), seed, work, n,
                                      source.describe())
            else:
                packed = pack_corpus(docs, tokenizer, max_seq_length, desc=source.describe(), num_proc=n,
                                     cache_file=work / "packed.arrow", fingerprint=f"{key}-packed")
            if len(packed) == 0:
                raise DataError(f"{source.describe()}: no training instances (the corpus tokenises to nothing)")
        except (DataError, ConfigError):  # bad input: nothing there is worth resuming from
            shutil.rmtree(work, ignore_errors=True)
            raise
        log.info("corpus %s: %d documents -> %d instances (cache %s)", source.describe(), len(docs), len(packed), final)
        atomic_directory(final, lambda tmp: packed.save_to_disk(str(tmp)))
        shutil.rmtree(work, ignore_errors=True)  # the memory maps of its files stay valid until they are dropped
    return final


def packed_corpus(*args: Any, **kwargs: Any) -> Dataset:
    """The corpus's instances, prepared once (:func:`prepare_corpus`, the same arguments) and memory-mapped from the
    cache."""
    return datasets.load_from_disk(str(prepare_corpus(*args, **kwargs)))
