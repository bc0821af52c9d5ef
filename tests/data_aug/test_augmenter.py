"""data_aug/augmenter.py: sampling replacements."""

from __future__ import annotations

from collections import Counter

import numpy as np

from data_aug import (
    Augmenter,
    GloveNeighbours,
    SentenceCandidates,
)
from tests.conftest import (
    STOP,
)
from tests.data_aug.conftest import MRPC_ROWS


def test_replacement_rate_and_uniform_choice(mlm):
    words = [f"w{i}" for i in range(20)]
    cands = {i: [f"c{i}_{j}" for j in range(5)] for i in range(20)}
    aug = Augmenter(mlm, None, STOP, p_replace=0.4)
    draws = aug.sample(SentenceCandidates(words, cands, {i: "mlm" for i in cands}), np.random.default_rng(7), n=2000)
    replaced = [(i, d[i]) for d in draws for i in range(20) if d[i] != words[i]]
    rate = len(replaced) / (2000 * 20)
    assert abs(rate - 0.4) < 0.01  # 40,000 Bernoulli(0.4) draws: sd 0.0024
    freq = Counter(w.split("_")[1] for _, w in replaced)
    for j in "01234":
        assert abs(freq[j] / len(replaced) - 0.2) < 0.015
    for d in draws:  # only candidate words ever replace a word
        assert all(d[i] == words[i] or d[i] in cands[i] for i in range(20))


def test_augment_drops_duplicates_and_the_unchanged_sentence(mlm):
    words = ["the", "cat", "sat"]
    sc = SentenceCandidates(words, {1: ["dog", "cow"]}, {1: "mlm"})
    out = Augmenter(mlm, None, STOP, n_aug=20, p_replace=0.5).augment(sc, np.random.default_rng(0))
    assert sorted(out) == ["the cow sat", "the dog sat"]
    assert Augmenter(mlm, None, STOP).augment(SentenceCandidates(words), np.random.default_rng(0)) == []


def test_same_seed_same_output_other_seed_differs(mlm, small_kv):
    aug = Augmenter(mlm, GloveNeighbours(small_kv, 3), STOP, top_k=10, n_aug=10)
    sents = [MRPC_ROWS[0][3], MRPC_ROWS[1][4]]
    a = [aug.augment(sc, np.random.default_rng([42, i])) for i, sc in enumerate(aug.candidates(sents))]
    b = [aug.augment(sc, np.random.default_rng([42, i])) for i, sc in enumerate(aug.candidates(sents))]
    c = [aug.augment(sc, np.random.default_rng([43, i])) for i, sc in enumerate(aug.candidates(sents))]
    assert a == b and a != c and all(len(x) >= 5 for x in a)
