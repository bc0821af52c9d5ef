"""Word-vector nearest neighbours (GloVe, fastText) for words the masked LM's tokenizer splits into several pieces.

`aug.word_vectors` is either a file or a gensim-data name such as `glove-wiki-gigaword-300`, fetched by
`gensim.downloader` (needs internet the first time, and `aug.allow_gensim_download=true`: the downloader imports
code fetched from the internet). Files are read by gensim (`KeyedVectors.load_word2vec_format`), the format told
by the file: GloVe text (no header), word2vec / fastText text with a `<count> <dim>` header (fastText's `.vec`
files, e.g. cc.fr.300.vec for French), either optionally .gz; word2vec binary `.bin`; gensim `.kv`. Words are
looked up as `aug.words` writes them: lower-cased for `reference` (GloVe's uncased vocabulary); for `unicode` as
written (fastText's vectors are cased), and lower-cased when the word as written has no vector or no neighbours.

Like the reference, only the first `aug.word_vectors_vocab_size` words of the file (GloVe files are in
frequency order; the reference reads 100,000) are loaded and searched. Neighbours are ranked by
cosine similarity and the word itself is excluded. Results are cached per distinct word.
"""

from __future__ import annotations

import gzip
import hashlib
import logging
import os
from pathlib import Path
from typing import Iterable

import numpy as np

from tinydistill.errors import ConfigError, DataError
from tinydistill.hashing import sha256_file

log = logging.getLogger(__name__)

# gensim-data word-vector sets (gensim.downloader); checked before any download is attempted.
GENSIM_VECTORS = frozenset(
    {
        "glove-wiki-gigaword-50",
        "glove-wiki-gigaword-100",
        "glove-wiki-gigaword-200",
        "glove-wiki-gigaword-300",
        "glove-twitter-25",
        "glove-twitter-50",
        "glove-twitter-100",
        "glove-twitter-200",
        "word2vec-google-news-300",
        "fasttext-wiki-news-subwords-300",
        "conceptnet-numberbatch-17-06-300",
    }
)


def check_gensim_download(spec: str, allowed: bool) -> None:
    """Refuse (ConfigError) or, when allowed, warn about loading `spec` through `gensim.downloader`.

    The downloader fetches a Python module with each data set from the internet and imports it (also when
    the data is already downloaded), and HF_HUB_OFFLINE does not stop it: it runs code nobody here has
    checked, so it is opt-in."""
    why = (
        "gensim.downloader downloads and imports Python code from the internet (HF_HUB_OFFLINE does not stop it)"
    )
    if not allowed:
        raise ConfigError(
            f"aug.word_vectors={spec!r} is a gensim-data name: {why}; set aug.allow_gensim_download=true to allow it, "
            f"or point aug.word_vectors at a GloVe or fastText .vec file (aug=offline uses <paths.data_dir>/glove/)"
        )
    log.warning("aug.word_vectors=%r: loading through gensim.downloader (aug.allow_gensim_download=true): %s", spec,
                why)


def _looks_like_path(spec: str) -> bool:
    return os.sep in spec or "/" in spec or spec.endswith((".txt", ".gz", ".kv", ".vec", ".bin"))


def _has_w2v_header(path: Path) -> bool:
    opener = gzip.open if path.suffix == ".gz" else open
    with opener(path, "rt", encoding="utf-8", errors="replace") as f:
        first = f.readline().split()
    return len(first) == 2 and all(p.isdigit() for p in first)


def load_glove(spec: str, vocab_size: int | None = 100_000, allow_gensim_download: bool = False):
    """Load word vectors (GloVe, fastText .vec, word2vec) as gensim KeyedVectors (first `vocab_size` words; None =
    all).

    A gensim-data name is refused unless `allow_gensim_download` (`aug.allow_gensim_download`), see
    `check_gensim_download`."""
    from gensim.models import KeyedVectors

    path = Path(spec).expanduser()
    if path.is_file():
        if path.suffix not in (".kv", ".bin"):
            check_glove_rows(path, vocab_size)
        try:
            if path.suffix == ".kv":
                kv = KeyedVectors.load(str(path))
            else:
                kv = KeyedVectors.load_word2vec_format(
                    str(path),
                    binary=path.suffix == ".bin",
                    no_header=not (path.suffix == ".bin" or _has_w2v_header(path)),
                    limit=vocab_size,
                )
        except Exception as e:  # malformed file
            where = _first_non_number(path, vocab_size) if path.suffix not in (".kv", ".bin") else None
            if where is not None:
                raise DataError(f"{path}: line {where[0]}: {where[1]!r} is not a number (aug.word_vectors)") from e
            raise DataError(f"{path}: cannot read word vectors (aug.word_vectors): {e}") from e
    elif _looks_like_path(spec):
        raise DataError(
            f"{path}: word vector file not found (aug.word_vectors={spec!r}); the offline GloVe copy is "
            f"<paths.data_dir>/glove/glove.6B.50d.top50k.txt"
        )
    elif spec in GENSIM_VECTORS:
        check_gensim_download(spec, allow_gensim_download)
        try:
            import gensim.downloader as api

            kv = api.load(spec)
        except Exception as e:
            raise DataError(
                f"aug.word_vectors={spec!r}: cannot load this gensim-data set ({type(e).__name__}: {e}); "
                f"without internet, point aug.word_vectors at a GloVe or fastText .vec file instead"
            ) from e
    else:
        raise ConfigError(
            f"aug.word_vectors={spec!r}: neither an existing file nor a known gensim-data name "
            f"({', '.join(sorted(GENSIM_VECTORS))})"
        )
    if vocab_size is not None and len(kv.index_to_key) > vocab_size:
        small = KeyedVectors(kv.vector_size, dtype=np.float32)
        small.add_vectors(kv.index_to_key[:vocab_size], kv.vectors[:vocab_size])
        kv = small
    return kv


def check_glove_rows(path: Path, vocab_size: int | None) -> None:
    """Raise DataError naming the line if one of the first `vocab_size` rows of a GloVe / fastText text file is
    not UTF-8 or has another number of values than the first row. gensim would fail without a line number, or
    silently broadcast a row of one value to every dimension."""
    opener = gzip.open if path.suffix == ".gz" else open
    header = _has_w2v_header(path)
    want: tuple[int, int] | None = None  # (values, line) of the first row, or of the header's <dim>
    with opener(path, "rb") as f:
        for number, line in enumerate(f, 1):
            if header and number == 1:
                want = (int(line.split()[1]), 1)
                continue
            if vocab_size is not None and number > vocab_size + header:
                break
            try:
                fields = line.decode("utf-8").rstrip().split(" ")  # gensim's own split
            except UnicodeDecodeError:
                raise DataError(f"{path}: line {number}: not UTF-8 (aug.word_vectors)") from None
            if want is None:
                want = (len(fields) - 1, number)
            elif len(fields) - 1 != want[0]:
                has = "the header (line 1) says" if header else f"line {want[1]} has"
                raise DataError(
                    f"{path}: line {number}: {len(fields) - 1} values, but {has} {want[0]} "
                    f"(aug.word_vectors): every row must be a word and the same number of values"
                )


def _first_non_number(path: Path, vocab_size: int | None) -> tuple[int, str] | None:
    """(line, value) of the first value of a text vector file that is not a number (after gensim failed on it)."""
    opener = gzip.open if path.suffix == ".gz" else open
    header = _has_w2v_header(path)
    with opener(path, "rt", encoding="utf-8") as f:
        for number, line in enumerate(f, 1):
            if header and number == 1:
                continue
            if vocab_size is not None and number > vocab_size + header:
                return None
            for value in line.rstrip().split(" ")[1:]:
                try:
                    float(value)
                except ValueError:
                    return number, value
    return None


def glove_file_fingerprint(spec: str, vocab_size: int | None) -> str | None:
    """Identity of the vectors `spec` names, without parsing them.

    A gensim-data name stands for itself. For a text file: sha256 of the bytes of its first
    `vocab_size` lines (+1 for a header), so moving or copying the file does not change it.
    None if the file does not exist.
    """
    path = Path(spec).expanduser()
    if not path.is_file():
        return f"gensim-data:{spec}" if spec in GENSIM_VECTORS else None
    if path.suffix in (".kv", ".bin"):
        return f"file:{sha256_file(path)[:16]}:all"
    h = hashlib.sha256()
    check_glove_rows(path, vocab_size)  # here too: the pipeline fingerprints before it writes anything
    opener = gzip.open if path.suffix == ".gz" else open
    limit = None if vocab_size is None else vocab_size + 1
    n = 0
    with opener(path, "rb") as f:
        for line in f:
            h.update(line)
            n += 1
            if limit is not None and n >= limit:
                break
    return f"file:{h.hexdigest()[:16]}:{n}"


class GloveNeighbours:
    """Top-k cosine neighbours of words in a KeyedVectors vocabulary, cached per word."""

    def __init__(self, kv, top_k: int = 15, fingerprint: str | None = None, block: int = 256):
        self.top_k = int(top_k)
        self.words: list[str] = list(kv.index_to_key)
        self.index: dict[str, int] = {w: i for i, w in enumerate(self.words)}
        vec = np.asarray(kv.vectors, dtype=np.float32)
        norms = np.linalg.norm(vec, axis=1, keepdims=True)
        norms[norms == 0] = 1.0  # all-zero rows (e.g. <unk>) get similarity 0 to everything
        self.unit = np.ascontiguousarray(vec / norms)
        self.block = block
        self._cache: dict[str, list[str]] = {}
        self._fingerprint = fingerprint

    @property
    def fingerprint(self) -> str:
        """Content hash of words and vectors (used when vectors are passed in preloaded)."""
        if self._fingerprint is None:
            h = hashlib.sha256("\n".join(self.words).encode())
            h.update(self.unit.tobytes())
            self._fingerprint = f"vectors:{h.hexdigest()[:16]}:{len(self.words)}"
        return self._fingerprint

    def __contains__(self, word: str) -> bool:
        return word in self.index

    def clear_cache(self) -> None:
        self._cache.clear()

    def neighbours(self, word: str) -> list[str]:
        return self.lookup([word])[word]

    def lookup(self, words: Iterable[str]) -> dict[str, list[str]]:
        """Neighbours of each word ([] for a word outside the vocabulary)."""
        words = list(dict.fromkeys(words))
        todo = [w for w in words if w not in self._cache]
        for w in todo:
            if w not in self.index:
                self._cache[w] = []
        todo = [w for w in todo if w in self.index]
        k = min(self.top_k, len(self.words) - 1)
        for s in range(0, len(todo), self.block):
            batch = todo[s : s + self.block]
            ids = np.array([self.index[w] for w in batch])
            sims = self.unit[ids] @ self.unit.T  # (b, V) cosine similarities
            sims[np.arange(len(batch)), ids] = -np.inf  # never the word itself
            if k <= 0:
                for w in batch:
                    self._cache[w] = []
                continue
            part = np.argpartition(-sims, k - 1, axis=1)[:, :k]
            for row, w in enumerate(batch):
                cand = part[row]
                # highest similarity first; ties broken by frequency rank (vocabulary order)
                order = np.lexsort((cand, -sims[row, cand]))
                self._cache[w] = [self.words[i] for i in cand[order]]
        return {w: self._cache[w] for w in words}
