"""Where a general-distillation corpus comes from, and its documents read one at a time.

Sources (``CorpusSource``):

* a local text file, ``layout="sentences"`` (default): one sentence per line, a blank line between documents
  (the layout of BERT's and TinyBERT's pre-training corpora and of ``corpus/general_corpus.txt``);
  ``layout="documents"``: one document per non-blank line;
* a ``datasets`` corpus: ``datasets.load_dataset(dataset, dataset_config, split=split, data_files=data_files)``
  and its ``text_column``, memory-mapped from the ``datasets`` cache, or with ``streaming=True`` read as it
  downloads (nothing stored but the prepared instances). With ``layout="sentences"`` the rows are read like the
  lines of a text file (wikitext-style: blank rows separate documents); with ``layout="documents"`` each row is one
  document whose non-blank lines are its sentences.

:func:`iter_documents` yields the documents in order and never holds more than one (a file is read line by line,
a hub corpus in batches of rows), so reading takes the same memory for any corpus size.
"""

from __future__ import annotations

import codecs
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import datasets

from tinydistill.data.encoding import non_utf8_error
from tinydistill.errors import ConfigError, DataError
from tinydistill.hashing import sha256_file

LAYOUTS = ("sentences", "documents")
ROW_BATCH = 1000  # hub rows read at a time
UTF8_SLICE = 1 << 14  # bytes decoded at a time when a file is checked to be UTF-8


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
    streaming: bool = False

    def __post_init__(self) -> None:
        if (self.path is None) == (self.dataset is None):
            raise ConfigError(
                "stage.corpus: set exactly one of corpus.path (a local text file) and corpus.dataset "
                f"(a datasets corpus name); got path={self.path!r}, dataset={self.dataset!r}"
            )
        if self.layout not in LAYOUTS:
            raise ConfigError(f"stage.corpus.layout={self.layout!r} must be one of {', '.join(LAYOUTS)}")
        if self.streaming and self.path is not None:
            raise ConfigError("stage.corpus.streaming=true applies to corpus.dataset (a datasets corpus); a local "
                              "corpus.path is always read line by line")

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


def check_file(path: Path) -> None:
    if not path.is_file():
        raise DataError(
            f"{path}: corpus file not found (set stage.corpus.path to a text file, or paths.data_dir / "
            f"TINYDISTILL_DATA_DIR to a data folder holding corpus/general_corpus.txt)"
        )
    if path.stat().st_size == 0:
        raise DataError(f"{path}: corpus file is empty")


def load_hub(source: CorpusSource) -> datasets.Dataset | datasets.IterableDataset:
    """The ``datasets`` corpus, memory-mapped (or streamed with ``source.streaming``), its text column checked."""
    try:
        ds = datasets.load_dataset(source.dataset, source.dataset_config, split=source.split,
                                   data_files=source.data_files, streaming=source.streaming)
    except Exception as e:  # noqa: BLE001 - datasets raises many types; show one clear message
        raise DataError(f"cannot load corpus {source.describe()}: {type(e).__name__}: {e}") from None
    columns = ds.column_names
    if columns is not None and source.text_column not in columns:
        raise DataError(
            f"corpus {source.describe()} has no column {source.text_column!r} (stage.corpus.text_column); "
            f"columns: {columns}"
        )
    return ds


def _hub_texts(source: CorpusSource) -> Iterator[str]:
    ds = load_hub(source)
    for batch in ds.iter(batch_size=ROW_BATCH):
        if source.text_column not in batch:  # a streamed corpus shows its columns with its first rows
            raise DataError(f"corpus {source.describe()} has no column {source.text_column!r} "
                            f"(stage.corpus.text_column); columns: {sorted(batch)}")
        yield from (t or "" for t in batch[source.text_column])


def iter_documents(source: CorpusSource) -> Iterator[list[str]]:
    """The documents of ``source`` as lists of sentences, in order, one at a time. A missing or empty file, a file
    that is not UTF-8 or a hub corpus without the text column raises :class:`DataError` (a corpus of blank lines
    yields nothing: the caller says so)."""
    if source.path is not None:
        path = Path(source.path).expanduser()
        check_file(path)
        try:
            with open(path, encoding="utf-8") as f:
                yield from documents_from_lines(f, source.layout)
        except UnicodeDecodeError:
            raise non_utf8_error(path, "corpus file") from None
        return
    texts = _hub_texts(source)
    if source.layout == "sentences":
        yield from documents_from_lines(texts, "sentences")
    else:  # each row one document, its non-blank lines its sentences
        for t in texts:
            doc = [s.strip() for s in t.splitlines() if s.strip()]
            if doc:
                yield doc


def source_fingerprint(source: CorpusSource) -> str:
    """Content hash of a local file (checked to be UTF-8 on the way), or the fingerprint ``datasets`` gives the loaded corpus. A streamed corpus is
    not read in advance, so its fingerprint is its name, configuration, split and files: pin a revision in
    ``data_files`` or ``dataset`` if the corpus behind a name may change."""
    if source.path is not None:
        path = Path(source.path).expanduser()
        check_file(path)
        # The hash reads every byte anyway: check they are UTF-8 in the same pass, so a bad byte is reported before
        # anything is written.
        decoder = codecs.getincrementaldecoder("utf-8")()

        def check(block: bytes) -> None:
            # In small slices: decoding whole 1 MB blocks into 1-4 MB strings fragments glibc's heap, which then
            # grows with the file (+245 MB for 1.5 GB); 16 KB slices keep it flat.
            view = memoryview(block)
            for start in range(0, len(block), UTF8_SLICE):
                decoder.decode(view[start:start + UTF8_SLICE])

        try:
            digest = sha256_file(path, on_block=check)
            decoder.decode(b"", final=True)
        except UnicodeDecodeError:
            raise non_utf8_error(path, "corpus file") from None
        return f"file:{digest}:{source.layout}"
    if source.streaming:
        return (f"stream:{source.dataset}:{source.dataset_config}:{source.split}:{source.data_files!r}:"
                f"{source.text_column}:{source.layout}")
    ds = load_hub(source)
    return f"datasets:{ds._fingerprint}:{source.text_column}:{source.layout}"
