"""TinyBERT word-replacement augmentation of single sentences.

For each candidate word (see words.py: `aug.words` says how sentences split into words and which are candidates)
the replacement candidates are:

* a word that is one piece of the masked LM's tokenizer: the masked LM's top-k predictions at its position (mlm.py);
* a word of several pieces: its top-k neighbours in the word vectors (glove.py: GloVe, fastText .vec); in MLM-only
  mode (`aug.mlm_only`, for languages without word vectors) the masked LM's top-k at one mask put in its place;
* no candidates (not in the word vectors, mask truncated away, all predictions filtered): the word is kept.

With `alphabetic_only` (aug.alphabetic_only, off by default: the reference keeps them), a word made
only of letters loses the candidates that contain no letter (",", ".", "1998", "--") before
sampling, from either source; a word left with none is kept.

Then `n_aug` times: every candidate word is replaced, with probability `p_replace`, by one of its
candidates drawn uniformly; the words are joined with spaces (lower-cased, punctuation split, as
the reference writes them). Draws equal to an earlier draw or to the unchanged sentence are dropped
(the reference kept one lower-cased copy of the unchanged sentence), so an example yields at most
`n_aug` new sentences. Randomness comes only from the numpy Generator passed in.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Sequence

import numpy as np

from data_aug.glove import GloveNeighbours
from data_aug.mlm import MaskedLM
from data_aug.stats import has_letter
from data_aug.words import is_candidate_word, split_words

if TYPE_CHECKING:
    from data_aug.config import AugConfig


@dataclass
class SentenceCandidates:
    """The words of one sentence and the replacement candidates of its candidate words."""

    words: list[str]
    candidates: dict[int, list[str]] = field(default_factory=dict)  # word index -> candidates
    sources: dict[int, str] = field(default_factory=dict)  # word index -> mlm | glove | kept

    def __eq__(self, other) -> bool:
        return (
            isinstance(other, SentenceCandidates)
            and self.words == other.words
            and self.candidates == other.candidates
            and self.sources == other.sources
        )


class Augmenter:
    def __init__(
        self,
        mlm: MaskedLM,
        glove: GloveNeighbours | None,
        stopwords: frozenset[str] | set[str],
        *,
        top_k: int = 15,
        n_aug: int = 20,
        p_replace: float = 0.4,
        mode: str = "batched",
        batch_size: int = 64,
        alphabetic_only: bool = False,
        words: str = "reference",
        mlm_only: bool = False,
    ):
        self.mlm = mlm
        self.glove = glove
        self.stopwords = frozenset(stopwords)
        self.top_k = top_k
        self.n_aug = n_aug
        self.p_replace = float(p_replace)
        self.mode = mode
        self.batch_size = batch_size
        self.alphabetic_only = bool(alphabetic_only)
        self.words = words  # aug.words: reference | unicode
        self.mlm_only = bool(mlm_only)

    @classmethod
    def from_settings(cls, cfg: AugConfig, mlm: MaskedLM, glove: GloveNeighbours | None,
                      stopwords: frozenset[str] | set[str], task_name: str | None = None) -> Augmenter:
        """The augmenter of validated `aug` settings (N_a of `task_name`, else aug.n_aug)."""
        return cls(mlm, None if cfg.mlm_only else glove, stopwords, top_k=cfg.top_k,
                   n_aug=cfg.n_aug if task_name is None else cfg.n_aug_for(task_name), p_replace=cfg.p_replace,
                   mode=cfg.mode, batch_size=cfg.batch_size, alphabetic_only=cfg.alphabetic_only, words=cfg.words,
                   mlm_only=cfg.mlm_only)

    # ------------------------------------------------------------ candidates
    def candidates(self, sentences: Sequence[str]) -> list[SentenceCandidates]:
        """Candidates for every sentence; MLM work for all of them is batched together."""
        distinct = list(dict.fromkeys(sentences))
        words = [split_words(s, self.words) for s in distinct]
        pieces = self.mlm.word_pieces(words)
        out = [SentenceCandidates(w) for w in words]
        sent_pieces: list[list[int]] = []
        requests: list[tuple[int, int, int]] = []  # (sentence, first piece, pieces)
        owners: list[tuple[int, int]] = []  # (sentence, word index) of each MLM request
        glove_words: list[tuple[int, int]] = []
        for s, (ws, ps) in enumerate(zip(words, pieces)):
            sent_pieces.append([p for word in ps for p in word])
            offset = 0
            for i, (w, wp) in enumerate(zip(ws, ps)):
                if is_candidate_word(w, self.stopwords, self.words):
                    if len(wp) == 1 or (self.mlm_only and wp):
                        requests.append((s, offset, len(wp)))
                        owners.append((s, i))
                    elif len(wp) > 1:
                        glove_words.append((s, i))
                offset += len(wp)
        predicted = self.mlm.predict(sent_pieces, requests, self.top_k, self.mode, self.batch_size)
        for (s, i), cands in zip(owners, predicted):
            self._set(out[s], i, cands, "mlm")
        if glove_words:
            # aug.words=unicode: a word as written, else lower-cased (GloVe is uncased; fastText is cased)
            forms = [(w, w.lower()) for w in (out[s].words[i] for s, i in glove_words)]
            neigh = self.glove.lookup(f for pair in forms for f in pair) if self.glove else {}
            for (s, i), (w, low) in zip(glove_words, forms):
                self._set(out[s], i, neigh.get(w) or neigh.get(low, []), "glove")
        by_text = dict(zip(distinct, out))
        return [by_text[s] for s in sentences]

    def _set(self, sc: SentenceCandidates, i: int, cands: list[str], source: str) -> None:
        if self.alphabetic_only and sc.words[i].isalpha():
            cands = [c for c in cands if has_letter(c)]
        if cands:
            sc.candidates[i] = list(cands)
            sc.sources[i] = source
        else:
            sc.sources[i] = "kept"

    # ------------------------------------------------------------ sampling
    def sample(self, sc: SentenceCandidates, rng: np.random.Generator, n: int | None = None) -> list[list[str]]:
        """`n` (default n_aug) raw draws as word lists, before any de-duplication."""
        n = self.n_aug if n is None else n
        positions = sorted(sc.candidates)
        if not positions:
            return [list(sc.words) for _ in range(n)]
        sizes = np.array([len(sc.candidates[p]) for p in positions])
        choice = rng.integers(0, sizes, size=(n, len(positions)))
        replace = rng.random((n, len(positions))) < self.p_replace
        draws = []
        for t in range(n):
            new = list(sc.words)
            for c, p in enumerate(positions):
                if replace[t, c]:
                    new[p] = sc.candidates[p][choice[t, c]]
            draws.append(new)
        return draws

    def augment(self, sc: SentenceCandidates, rng: np.random.Generator) -> list[str]:
        """Up to n_aug distinct new sentences (never the unchanged one), in draw order."""
        if not sc.candidates:
            return []
        seen = {" ".join(sc.words)}
        out = []
        for draw in self.sample(sc, rng):
            text = " ".join(draw)
            if text not in seen:
                seen.add(text)
                out.append(text)
        return out
