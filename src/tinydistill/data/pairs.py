"""Sentence-pair training instances for general distillation, built as the reference's pregenerated data.

TinyBERT's ``pregenerate_training_data.py`` (from BERT's ``create_pretraining_data.py``) turns each document
into ``[CLS] A [SEP] B [SEP]`` instances, token type 0 on ``[CLS] A [SEP]`` and 1 on ``B [SEP]``. Per document
(:func:`document_pairs`):

* the target length is ``max_seq_length`` minus the special tokens, or, with probability ``short_seq_prob``
  (0.1), a uniform draw from ``2..target`` for the whole document;
* sentences are collected into a chunk until it reaches the target (or the document ends); A is the chunk's
  first ``randrange(1, len(chunk))`` sentences (all of a one-sentence chunk);
* B is the rest of the chunk, or, when the chunk has one sentence or with probability ``random_next_prob``
  (0.5), consecutive sentences from a random position of **another** document, drawn with probability
  proportional to its sentence count, until B reaches the remaining target; the chunk's sentences left out of
  A then start the next chunk;
* while the pair is too long, one token is dropped from the longer segment, at its front or back at random.

So more than ``random_next_prob`` of the instances have a random B (every one-sentence chunk does), and
``short_seq_prob`` is a share of documents, not of instances. Unlike the reference, instances are built once
per seed (the reference regenerates them for each of its 3 epochs) and its MLM masking is not applied (see
docs/guide.md, "Faithfulness to the reference code"). Sentences that tokenise to nothing are dropped.

Each document's draws come from a random generator of its own, seeded from ``(seed, document index)``
(:func:`document_rng`), where the reference runs one generator through the whole corpus. So a document's pairs do
not depend on which process drew the documents before it: the instances are the same for any number of
preparation processes, and a corpus is paired without holding it in memory (:class:`Documents`: each document is
fetched when it is paired or drawn as another document's B, from a memory-mapped Arrow file).
"""

from __future__ import annotations

import random
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from typing import Protocol

import numpy as np
from transformers import PreTrainedTokenizerBase

from tinydistill.errors import ConfigError, DataError


@dataclass(frozen=True)
class PairOptions:
    """How pairs are drawn: the reference's ``short_seq_prob`` and its hard-coded random-next probability."""

    short_seq_prob: float = 0.1
    random_next_prob: float = 0.5

    def __post_init__(self) -> None:
        for name in ("short_seq_prob", "random_next_prob"):
            value = getattr(self, name)
            if not 0.0 <= value <= 1.0:
                raise ConfigError(f"stage.pairs.{name} must be in [0, 1], got {value}")


@dataclass(frozen=True)
class PairTemplate:
    """The special tokens a tokenizer puts around two segments, and the token type of every part."""

    prefix: tuple[int, ...]
    middle: tuple[int, ...]
    suffix: tuple[int, ...]
    prefix_types: tuple[int, ...]
    middle_types: tuple[int, ...]
    suffix_types: tuple[int, ...]
    type_a: int
    type_b: int

    @property
    def n_special(self) -> int:
        return len(self.prefix) + len(self.middle) + len(self.suffix)

    def build(self, a: Sequence[int], b: Sequence[int]) -> tuple[list[int], list[int]]:
        """``input_ids`` and ``token_type_ids`` of the pair ``a``, ``b`` (content ids, no special tokens)."""
        ids = [*self.prefix, *a, *self.middle, *b, *self.suffix]
        types = [*self.prefix_types, *[self.type_a] * len(a), *self.middle_types, *[self.type_b] * len(b),
                 *self.suffix_types]
        return ids, types


def pair_template(tokenizer: PreTrainedTokenizerBase) -> PairTemplate:
    """Locate the special tokens of ``tokenizer(a, b)`` by probing it (BERT: ``[CLS] a [SEP] b [SEP]``, 0/1)."""
    a = tokenizer("hello", add_special_tokens=False)["input_ids"]
    b = tokenizer("world", add_special_tokens=False)["input_ids"]
    enc = tokenizer("hello", "world", return_token_type_ids=True)
    ids, types = enc["input_ids"], enc["token_type_ids"]
    for i in range(len(ids) - len(a) + 1):
        if ids[i : i + len(a)] != a:
            continue
        for j in range(i + len(a), len(ids) - len(b) + 1):
            if ids[j : j + len(b)] == b:
                k = j + len(b)
                return PairTemplate(
                    tuple(ids[:i]), tuple(ids[i + len(a) : j]), tuple(ids[k:]),
                    tuple(types[:i]), tuple(types[i + len(a) : j]), tuple(types[k:]), types[i], types[j],
                )
    raise ConfigError(f"cannot locate the special tokens of {type(tokenizer).__name__} around a segment pair")


class Documents(Protocol):
    """What drawing pairs needs of a tokenised corpus: document ``d`` holds sentences ``doc_bounds[d]:doc_bounds[d+1]``
    (counted over the corpus, for drawing other documents by sentence count) and :meth:`sentences` fetches them, none
    of them empty, no document without sentences."""

    doc_bounds: np.ndarray

    def sentences(self, d: int) -> list[list[int]]: ...


def n_documents(docs: Documents) -> int:
    return len(docs.doc_bounds) - 1


@dataclass
class TokenizedDocuments:
    """A tokenised corpus in flat in-memory arrays (small corpora and tests): sentence ``s`` is
    ``tokens[sent_bounds[s]:sent_bounds[s+1]]``, document ``d`` holds sentences ``doc_bounds[d]:doc_bounds[d+1]``.
    Empty sentences and documents are left out."""

    tokens: np.ndarray
    sent_bounds: np.ndarray
    doc_bounds: np.ndarray

    @classmethod
    def from_ids(cls, documents: Sequence[Sequence[Sequence[int]]]) -> TokenizedDocuments:
        tokens: list[int] = []
        sent_bounds, doc_bounds = [0], [0]
        for doc in documents:
            for sent in doc:
                if len(sent):
                    tokens.extend(sent)
                    sent_bounds.append(len(tokens))
            if len(sent_bounds) - 1 > doc_bounds[-1]:
                doc_bounds.append(len(sent_bounds) - 1)
        return cls(np.asarray(tokens, dtype=np.int64), np.asarray(sent_bounds), np.asarray(doc_bounds))

    @property
    def n_documents(self) -> int:
        return n_documents(self)

    def sentences(self, d: int) -> list[list[int]]:
        b = self.sent_bounds
        return [self.tokens[b[s] : b[s + 1]].tolist() for s in range(int(self.doc_bounds[d]), int(self.doc_bounds[d + 1]))]


def other_document(doc_bounds: np.ndarray, d: int, rng: random.Random) -> int:
    """A document other than ``d``, each drawn with probability proportional to its sentence count."""
    n_sentences = int(doc_bounds[-1])
    own = int(doc_bounds[d + 1] - doc_bounds[d])
    # Sentence indices from the end of d onwards, wrapping around, skip exactly d's sentences.
    s = rng.randrange(int(doc_bounds[d + 1]), int(doc_bounds[d + 1]) + n_sentences - own)
    return int(np.searchsorted(doc_bounds[1:], s % n_sentences, side="right"))


def document_rng(seed: int, d: int) -> random.Random:
    """Document ``d``'s own generator: a function of ``(seed, d)`` alone (SeedSequence mixes both numbers)."""
    state = np.random.SeedSequence([int(seed) & 0xFFFFFFFF, int(d)]).generate_state(2, np.uint32)
    return random.Random(int(state[0]) << 32 | int(state[1]))


def truncate_pair(a: list[int], b: list[int], budget: int, rng: random.Random) -> None:
    """Drop tokens, in place, from the longer of ``a`` and ``b`` (front or back at random) until they fit."""
    while len(a) + len(b) > budget:
        longer = a if len(a) > len(b) else b
        if rng.random() < 0.5:
            del longer[0]
        else:
            longer.pop()


def document_pairs(
    docs: Documents, d: int, budget: int, options: PairOptions, rng: random.Random
) -> list[tuple[list[int], list[int], bool]]:
    """The ``(a, b, is_random_next)`` content pairs of document ``d``, each at most ``budget`` tokens in all."""
    if n_documents(docs) < 2:
        raise DataError("stage.instances=pairs needs at least two documents (blank lines between them) to draw "
                        "random second segments from")
    own = docs.sentences(d)
    target = budget
    if rng.random() < options.short_seq_prob:
        target = rng.randint(2, budget)
    out: list[tuple[list[int], list[int], bool]] = []
    chunk: list[int] = []
    length = 0
    s = 0
    while s < len(own):
        chunk.append(s)
        length += len(own[s])
        if s == len(own) - 1 or length >= target:
            a_end = rng.randrange(1, len(chunk)) if len(chunk) >= 2 else 1
            a = [t for i in chunk[:a_end] for t in own[i]]
            is_random = len(chunk) == 1 or rng.random() < options.random_next_prob
            if is_random:
                other = docs.sentences(other_document(docs.doc_bounds, d, rng))
                b: list[int] = []
                for t in range(rng.randrange(0, len(other)), len(other)):
                    b.extend(other[t])
                    if len(b) >= target - len(a):
                        break
                s -= len(chunk) - a_end  # the chunk's unused sentences start the next chunk
            else:
                b = [t for i in chunk[a_end:] for t in own[i]]
            truncate_pair(a, b, budget, rng)
            out.append((a, b, is_random))
            chunk, length = [], 0
        s += 1
    return out


def pair_instances(
    docs: Documents, template: PairTemplate, max_seq_length: int, options: PairOptions, seed: int,
    documents: Iterable[int] | None = None,
) -> dict[str, list]:
    """Columns ``input_ids``, ``token_type_ids``, ``length``, ``is_random_next`` of the pairs of ``documents``
    (default: all), in that order; each document's from :func:`document_rng`, so the same ``seed`` gives the same
    instances however the documents are split between calls."""
    budget = max_seq_length - template.n_special
    if budget < 2:
        raise ConfigError(f"max_seq_length={max_seq_length} leaves no room for two segments after the "
                          f"{template.n_special} special tokens")
    cols: dict[str, list] = {"input_ids": [], "token_type_ids": [], "length": [], "is_random_next": []}
    for d in range(n_documents(docs)) if documents is None else documents:
        for a, b, is_random in document_pairs(docs, d, budget, options, document_rng(seed, d)):
            ids, types = template.build(a, b)
            cols["input_ids"].append(ids)
            cols["token_type_ids"].append(types)
            cols["length"].append(len(ids))
            cols["is_random_next"].append(is_random)
    return cols
