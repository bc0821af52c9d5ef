"""General-distillation corpus: documents of sentences, packed into training instances and cached.

Sources (``CorpusSource``):

* a local text file, ``layout="sentences"`` (default): one sentence per line, a blank line between documents
  (the layout of BERT's and TinyBERT's pre-training corpora and of ``corpus/general_corpus.txt``);
  ``layout="documents"``: one document per non-blank line;
* a ``datasets`` corpus: ``datasets.load_dataset(dataset, dataset_config, split=split, data_files=data_files)``
  and its ``text_column``. With ``layout="sentences"`` the rows are read like the lines of a text file
  (wikitext-style: blank rows separate documents); with ``layout="documents"`` each row is one document whose
  non-blank lines are its sentences.

Instances, ``instances="single"`` (default; :func:`tinydistill.data.packing.pack_document`): consecutive sentences of **one** document
are concatenated while they fit in ``max_seq_length`` minus the tokenizer's special tokens, then wrapped as
``[CLS] ... [SEP]`` (single segment, ``token_type_ids`` all 0). A sentence that does not fit in the current
instance starts the next one; a sentence longer than the whole budget is cut into budget-sized pieces.
Instances never cross documents, so a document's last instance may be short. ``instances="pairs"``: the
reference's sentence pairs ``[CLS] A [SEP] B [SEP]`` with a random B about half of the time
(:mod:`tinydistill.data.pairs`), drawn with the DataModule's seed.

Tokenisation runs once; the instances are cached on disk with ``datasets`` under ``<cache_dir>/corpus/<key>``,
the key hashing the source's content, the tokenizer and the length (pairs: also their options and seed).
"""

from __future__ import annotations

import hashlib
import logging
import os
from collections.abc import Iterable, Iterator
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import datasets
import lightning as L
import numpy as np
from datasets import Dataset
from torch import Tensor, nn
from torch.utils.data import DataLoader
from transformers import DataCollatorWithPadding, PreTrainedTokenizerBase

from tinydistill.atomic import atomic_directory
from tinydistill.data.encoding import non_utf8_error
from tinydistill.data.glue import tokenizer_fingerprint
from tinydistill.data.loader import make_loader
from tinydistill.data.masking import UniformMasking
from tinydistill.data.packing import pack_corpus, pair_corpus
from tinydistill.data.pairs import PairOptions
from tinydistill.errors import ConfigError, DataError
from tinydistill.hashing import sha256_file

log = logging.getLogger(__name__)

# Bump when reading, packing or the cached columns change, so old caches are not reused.
CACHE_VERSION = 1
LAYOUTS = ("sentences", "documents")
INSTANCES = ("single", "pairs")


@dataclass(frozen=True)
class CorpusSource:
    """Where the corpus comes from: a local ``path``, or a ``datasets`` corpus named by ``dataset``."""

    path: str | None = None
    dataset: str | None = None
    dataset_config: str | None = None
    data_files: Any = None
    split: str = "train"
    text_column: str = "text"
    layout: str = "sentences"

    def __post_init__(self) -> None:
        if (self.path is None) == (self.dataset is None):
            raise ConfigError(
                "stage.corpus: set exactly one of corpus.path (a local text file) and corpus.dataset "
                f"(a datasets corpus name); got path={self.path!r}, dataset={self.dataset!r}"
            )
        if self.layout not in LAYOUTS:
            raise ConfigError(f"stage.corpus.layout={self.layout!r} must be one of {', '.join(LAYOUTS)}")

    @classmethod
    def from_config(cls, corpus: Any) -> CorpusSource:
        """From the ``stage.corpus`` config node (a mapping with the dataclass's field names)."""
        values = dict(corpus)
        unknown = set(values) - set(cls.__dataclass_fields__)
        if unknown:
            raise ConfigError(f"stage.corpus: unknown keys {sorted(unknown)}; known: {sorted(cls.__dataclass_fields__)}")
        if values.get("data_files") is not None and not isinstance(values["data_files"], (str, list, dict)):
            from omegaconf import OmegaConf

            values["data_files"] = OmegaConf.to_container(values["data_files"], resolve=True)
        return cls(**values)

    def describe(self) -> str:
        if self.path is not None:
            return str(self.path)
        return f"datasets:{self.dataset}" + (f"/{self.dataset_config}" if self.dataset_config else "") + f"[{self.split}]"


# ---------------------------------------------------------------------------------------------- reading


def documents_from_lines(lines: Iterable[str], layout: str = "sentences") -> Iterator[list[str]]:
    """Documents (lists of sentences) from text lines.

    ``sentences``: one sentence per line, blank (whitespace-only) lines end a document; ``documents``: every
    non-blank line is one document of one "sentence" (cut into pieces at packing if too long).
    Empty documents are skipped; surrounding whitespace is stripped.
    """
    if layout == "documents":
        for line in lines:
            text = line.strip()
            if text:
                yield [text]
        return
    doc: list[str] = []
    for line in lines:
        text = line.strip()
        if text:
            doc.append(text)
        elif doc:
            yield doc
            doc = []
    if doc:
        yield doc


def _check_file(path: Path) -> None:
    if not path.is_file():
        raise DataError(
            f"{path}: corpus file not found (set stage.corpus.path to a text file, or paths.data_dir / "
            f"TINYDISTILL_DATA_DIR to a data folder holding corpus/general_corpus.txt)"
        )
    if path.stat().st_size == 0:
        raise DataError(f"{path}: corpus file is empty")


def _load_hub(source: CorpusSource) -> Dataset:
    try:
        ds = datasets.load_dataset(
            source.dataset, source.dataset_config, split=source.split, data_files=source.data_files
        )
    except Exception as e:  # noqa: BLE001 - datasets raises many types; show one clear message
        raise DataError(f"cannot load corpus {source.describe()}: {type(e).__name__}: {e}") from None
    if source.text_column not in ds.column_names:
        raise DataError(
            f"corpus {source.describe()} has no column {source.text_column!r} (stage.corpus.text_column); "
            f"columns: {ds.column_names}"
        )
    return ds


def read_documents(source: CorpusSource) -> list[list[str]]:
    """All documents of ``source`` as lists of sentences. Raises :class:`DataError` if there are none."""
    if source.path is not None:
        path = Path(source.path).expanduser()
        _check_file(path)
        try:
            with open(path, encoding="utf-8") as f:
                docs = list(documents_from_lines(f, source.layout))
        except UnicodeDecodeError:
            raise non_utf8_error(path, "corpus file") from None
        where = str(path)
    else:
        ds = _load_hub(source)
        texts = (t or "" for t in ds[source.text_column])
        if source.layout == "sentences":
            docs = list(documents_from_lines(texts, "sentences"))
        else:  # each row one document, its non-blank lines its sentences
            docs = [d for d in ([s.strip() for s in t.splitlines() if s.strip()] for t in texts) if d]
        where = source.describe()
    if not docs:
        raise DataError(f"{where}: the corpus has no text (only blank lines)")
    return docs


def source_fingerprint(source: CorpusSource) -> str:
    """Content hash of a local file, or the fingerprint ``datasets`` gives the loaded corpus."""
    if source.path is not None:
        path = Path(source.path).expanduser()
        _check_file(path)
        return f"file:{sha256_file(path)}:{source.layout}"
    ds = _load_hub(source)
    return f"datasets:{ds._fingerprint}:{source.text_column}:{source.layout}"


def packed_corpus(
    source: CorpusSource,
    tokenizer: PreTrainedTokenizerBase,
    max_seq_length: int,
    cache_dir: str | os.PathLike,
    instances: str = "single",
    pairs: PairOptions | None = None,
    seed: int = 42,
) -> Dataset:
    """The corpus's instances (``single`` or ``pairs``), built once and then loaded from
    ``<cache_dir>/corpus/<key>``. ``pairs`` and ``seed`` only matter for ``instances="pairs"``."""
    if instances not in INSTANCES:
        raise ConfigError(f"stage.instances={instances!r} must be one of {', '.join(INSTANCES)}")
    parts = [str(CACHE_VERSION), source_fingerprint(source), tokenizer_fingerprint(tokenizer), str(max_seq_length)]
    if instances == "pairs":  # single keeps its old key, so existing caches stay valid
        pairs = pairs or PairOptions()
        parts += ["pairs", repr(pairs.short_seq_prob), repr(pairs.random_next_prob), str(seed)]
    key = hashlib.sha256("|".join(parts).encode()).hexdigest()[:16]
    cache = Path(cache_dir) / "corpus" / key
    if cache.is_dir():
        return datasets.load_from_disk(str(cache))
    documents = read_documents(source)
    if instances == "pairs":
        packed = pair_corpus(documents, tokenizer, max_seq_length, pairs, seed, desc=source.describe())
    else:
        packed = pack_corpus(documents, tokenizer, max_seq_length, desc=source.describe())
    if len(packed) == 0:
        raise DataError(f"{source.describe()}: no training instances (the corpus tokenises to nothing)")
    log.info("corpus %s: %d documents -> %d instances (cache %s)", source.describe(), len(documents), len(packed), cache)
    atomic_directory(cache, lambda tmp: packed.save_to_disk(str(tmp)))
    return datasets.load_from_disk(str(cache))


# ---------------------------------------------------------------------------------------------- DataModule


class CorpusDataModule(L.LightningDataModule):
    """Corpus instances, padded per batch; ``val_size`` instances held out for a validation loss.

    ``instances``: ``single`` segments or the reference's sentence ``pairs`` (``pairs`` options, drawn with
    ``seed``). ``mlm_probability > 0`` masks inputs BERT-style (80/10/10) for both teacher and student; the
    default 0 feeds unmasked text. ``with_mlm_labels`` keeps the masking's ``labels`` (original ids at masked
    positions, -100 elsewhere) for masked-LM training. Setting the ``masking`` attribute replaces the uniform
    masking by another module with the same interface (DistilBERT's smoothed masking, ``SmoothedMasking``).
    Masking runs in :meth:`on_after_batch_transfer`, in the training process and in step order, not in the collator:
    loader workers draw no random numbers, and the global random state a checkpoint saves is the one the next
    batch's masks come from. ``pad_to_max_length`` pads every batch to ``max_seq_length``, as the reference
    (``group_by_length`` then has nothing to save and is ignored). ``seed`` also draws each epoch's training order.
    """

    def __init__(
        self,
        source: CorpusSource,
        tokenizer: PreTrainedTokenizerBase,
        max_seq_length: int = 128,
        cache_dir: str | os.PathLike = "artifacts/cache",
        batch_size: int = 32,
        eval_batch_size: int = 64,
        val_size: int = 0,
        seed: int = 42,
        num_workers: int = 0,
        group_by_length: bool = False,
        mlm_probability: float = 0.0,
        with_mlm_labels: bool = False,
        pad_to_max_length: bool = False,
        instances: str = "single",
        pairs: PairOptions | None = None,
    ) -> None:
        super().__init__()
        if instances not in INSTANCES:
            raise ConfigError(f"stage.instances={instances!r} must be one of {', '.join(INSTANCES)}")
        if val_size < 0:
            raise ConfigError(f"stage.val_size must be >= 0, got {val_size}")
        if not 0.0 <= mlm_probability < 1.0:
            raise ConfigError(f"stage.mlm_probability must be in [0, 1), got {mlm_probability}")
        self.source = source
        self.tokenizer = tokenizer
        self.max_seq_length = max_seq_length
        self.cache_dir = cache_dir
        self.batch_size = batch_size
        self.eval_batch_size = eval_batch_size
        self.val_size = val_size
        self.seed = seed
        self.num_workers = num_workers
        self.pad_to_max_length = pad_to_max_length
        self.group_by_length = group_by_length and not pad_to_max_length
        self.mlm_probability = mlm_probability
        self.with_mlm_labels = with_mlm_labels
        self.instances = instances
        self.pairs = pairs or PairOptions()
        self.train: Dataset | None = None
        self.val: Dataset | None = None
        # Instances never exceed max_seq_length, so rounding up to a multiple of it pads to exactly it.
        multiple = max_seq_length if pad_to_max_length else None
        self._pad = DataCollatorWithPadding(tokenizer, pad_to_multiple_of=multiple)
        self.masking: nn.Module | None = (
            UniformMasking.from_tokenizer(tokenizer, mlm_probability) if mlm_probability > 0 else None
        )

    def _packed(self) -> Dataset:
        return packed_corpus(self.source, self.tokenizer, self.max_seq_length, self.cache_dir, self.instances,
                             self.pairs, self.seed)

    def prepare_data(self) -> None:
        self._packed()  # one process builds the cache that setup() then reads

    def setup(self, stage: str | None = None) -> None:
        if self.train is not None:
            return
        ds = self._packed()
        n_val = min(self.val_size, len(ds) - 1)
        order = np.random.default_rng(self.seed).permutation(len(ds))
        self.val = ds.select(np.sort(order[:n_val]), keep_in_memory=True) if n_val > 0 else None
        self.train = ds.select(np.sort(order[n_val:]), keep_in_memory=True) if n_val > 0 else ds
        log.info("corpus: %d training instances, %d held out", len(self.train), n_val)

    def collate(self, rows: list[dict]) -> dict:
        """Pad ``input_ids`` (and pairs' ``token_type_ids``) to the batch's longest or to ``max_seq_length``
        (``attention_mask`` follows). No random numbers here: masking comes after the transfer."""
        keys = ("input_ids", "token_type_ids") if self.instances == "pairs" else ("input_ids",)
        rows = [{k: r[k] for k in keys} for r in rows]
        return dict(self._pad(rows))

    def on_after_batch_transfer(self, batch: dict[str, Tensor], dataloader_idx: int) -> dict[str, Tensor]:
        """Mask the batch (training and held-out) if this corpus is masked, on the batch's device."""
        if self.masking is None:
            return batch
        batch = self.masking.to(batch["input_ids"].device)(batch)
        if not self.with_mlm_labels:  # distillation matches states, it has no MLM target
            batch.pop("labels", None)
        return batch

    def _loader(self, ds: Dataset, batch_size: int, shuffle: bool) -> DataLoader:
        return make_loader(ds, batch_size, shuffle, self.collate, self.num_workers, self.group_by_length, self.seed)

    def train_dataloader(self) -> DataLoader:
        return self._loader(self.train, self.batch_size, shuffle=True)

    def val_dataloader(self) -> list[DataLoader]:
        return [] if self.val is None else [self._loader(self.val, self.eval_batch_size, shuffle=False)]

    def summary(self) -> dict[str, Any]:
        return {
            "source": asdict(self.source),
            "max_seq_length": self.max_seq_length,
            "pad_to_max_length": self.pad_to_max_length,
            "instances": self.instances,
            **({"pairs": asdict(self.pairs)} if self.instances == "pairs" else {}),
            "train_instances": None if self.train is None else len(self.train),
            "val_instances": 0 if self.val is None else len(self.val),
            "mlm_probability": self.mlm_probability,
        }
