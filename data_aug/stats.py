"""How good are the masked LM's replacement candidates? Statistics of the candidate lists.

A well-trained masked LM proposes words that fit the masked position: many distinct tokens over a
set of sentences, few of them punctuation or stop words. A weak one (e.g. a head trained briefly on
an encoder that had none) proposes the same few frequent tokens for every word ("the , of . and
in to a"), and augmentation then writes sentences like `... whom he to " the in " , of ...`.

`candidate_stats(lists, stopwords)` summarises candidate lists (one list per word that got MLM
candidates) as a JSON-ready dict:

* `words_with_candidates`: number of lists (words that got at least one MLM candidate);
* `candidates`: candidate tokens over all lists, with repeats; `candidates_per_word`;
* `distinct_candidates`: number of different tokens;
* `non_alphabetic_share`: share of candidates that contain no letter (punctuation, digits,
  symbols; what `aug.alphabetic_only` removes);
* `stopword_share`: share of candidates that are stop words (the list augmentation uses, `aug.stopwords`);
* `most_frequent`: the `top` most frequent tokens as `[token, count, share_of_words]`, count
  descending then token ascending; `share_of_words` = count / words_with_candidates, i.e. the
  share of candidate lists containing the token (MLM top-k lists have no repeated token).

Shares are null when there are no candidates. `CandidateTally` accumulates the same counts chunk by
chunk (mergeable, JSON round-trip) so a resumed augmentation reports exactly what an uninterrupted
one does. `measure_candidates` runs the augmentation's own candidate generation (`Augmenter.
candidates`) on sentences and returns these statistics, so they describe what augmentation draws from.
"""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass, field
from typing import Any, Iterable, Mapping, Sequence

TOP = 10


def has_letter(token: str) -> bool:
    """True if any character of `token` is a letter ("x2" yes; ",", "1998", "--" no)."""
    return any(ch.isalpha() for ch in token)


@dataclass
class CandidateTally:
    """Counts of candidate lists: how many lists, and how often each token occurs in them."""

    words: int = 0
    counts: Counter = field(default_factory=Counter)

    def add(self, candidates: Sequence[str]) -> None:
        """Count one word's candidate list (an empty list is no word with candidates)."""
        if candidates:
            self.words += 1
            self.counts.update(candidates)

    def add_sentences(self, sentences: Iterable[Any], source: str = "mlm") -> None:
        """Count the candidate lists of `SentenceCandidates` whose words got them from `source`."""
        for sc in sentences:
            for i, cands in sorted(sc.candidates.items()):
                if sc.sources.get(i) == source:
                    self.add(cands)

    def merge(self, other: "CandidateTally") -> "CandidateTally":
        self.words += other.words
        self.counts.update(other.counts)
        return self

    def to_json(self) -> dict[str, Any]:
        return {"words": self.words, "counts": dict(sorted(self.counts.items()))}

    @classmethod
    def from_json(cls, d: Mapping[str, Any]) -> "CandidateTally":
        return cls(int(d["words"]), Counter({str(k): int(v) for k, v in d["counts"].items()}))

    def stats(self, stopwords: Iterable[str], top: int = TOP) -> dict[str, Any]:
        stop = frozenset(stopwords)
        total = sum(self.counts.values())
        non_alpha = sum(c for t, c in self.counts.items() if not has_letter(t))
        stop_n = sum(c for t, c in self.counts.items() if t in stop)
        ranked = sorted(self.counts.items(), key=lambda tc: (-tc[1], tc[0]))[:top]
        return {
            "words_with_candidates": self.words,
            "candidates": total,
            "candidates_per_word": total / self.words if self.words else None,
            "distinct_candidates": len(self.counts),
            "non_alphabetic_share": non_alpha / total if total else None,
            "stopword_share": stop_n / total if total else None,
            "most_frequent": [[t, c, c / self.words] for t, c in ranked],
        }


def candidate_stats(
    candidate_lists: Iterable[Sequence[str]], stopwords: Iterable[str], top: int = TOP
) -> dict[str, Any]:
    """Statistics of candidate lists (one per word); see the module docstring. Pure."""
    tally = CandidateTally()
    for cands in candidate_lists:
        tally.add(cands)
    return tally.stats(stopwords, top)


def measure_candidates(augmenter, sentences: Sequence[str], top: int = TOP) -> dict[str, Any]:
    """MLM candidate statistics of `sentences` as `augmenter` (an `Augmenter`) generates them.

    Runs `augmenter.candidates` (the augmentation's code path, with its top_k, mode, filtering);
    adds `sentences` (how many were measured) to the statistics.
    """
    tally = CandidateTally()
    tally.add_sentences(augmenter.candidates(list(sentences)))
    return {"sentences": len(sentences), **tally.stats(augmenter.stopwords, top)}


def _pct(x: float | None) -> str:
    return "n/a" if x is None else f"{100 * x:.1f}%"


def summary_line(stats: Mapping[str, Any], n_top: int = 8) -> str:
    """One line for the log: words, distinct candidates, shares, most frequent tokens."""
    top = ", ".join(f"{t!r} {100 * s:.0f}%" for t, _, s in stats.get("most_frequent", [])[:n_top])
    where = f" in {stats['sentences']} sentences" if "sentences" in stats else ""
    return (
        f"MLM candidates{where}: {stats['words_with_candidates']} words, {stats['candidates']} candidates, "
        f"{stats['distinct_candidates']} distinct; non-alphabetic {_pct(stats['non_alphabetic_share'])}, "
        f"stop words {_pct(stats['stopword_share'])}; most frequent (share of words): {top or '-'}"
    )
