"""data_aug/stats.py: candidate statistics, tallies, alphabetic_only."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch

from data_aug import (
    Augmenter,
    CandidateTally,
    GloveNeighbours,
    MaskedLM,
    candidate_stats,
    measure_candidates,
)
from data_aug.stats import has_letter
from tests.conftest import (
    STOP,
    tiny_mlm_model,
)
from tests.data_aug.conftest import MRPC_ROWS


def test_candidate_stats_hand_computed():
    lists = [["the", ",", "cat"], ["the", "dog", "1998"], [], ["the", "cat", "x2"]]
    st = candidate_stats(lists, {"the", "a"}, top=3)
    assert st["words_with_candidates"] == 3  # the empty list is no word with candidates
    assert st["candidates"] == 9 and st["candidates_per_word"] == 3.0
    assert st["distinct_candidates"] == 6  # the , cat dog 1998 x2
    assert st["non_alphabetic_share"] == pytest.approx(2 / 9)  # "," and "1998" ("x2" has a letter)
    assert st["stopword_share"] == pytest.approx(3 / 9)
    # count descending, then token ascending: "," < "1998" < "dog" < "x2"
    assert [t for t, _, _ in st["most_frequent"]] == ["the", "cat", ","]
    assert [c for _, c, _ in st["most_frequent"]] == [3, 2, 1]
    assert [s for _, _, s in st["most_frequent"]] == pytest.approx([1.0, 2 / 3, 1 / 3])
    empty = candidate_stats([[], []], {"the"})
    assert empty["words_with_candidates"] == 0 and empty["non_alphabetic_share"] is None
    assert empty["most_frequent"] == [] and empty["candidates_per_word"] is None


def test_candidate_tally_merges_chunks_like_one_pass():
    lists = [["a", "b"], ["b", ","], ["c"], [".", "b", "d"], ["e"]]
    parts = [CandidateTally(), CandidateTally()]
    for i, cands in enumerate(lists):
        parts[i % 2].add(cands)
    merged = CandidateTally()
    for p in parts:  # through JSON, as the chunk files store them
        merged.merge(CandidateTally.from_json(json.loads(json.dumps(p.to_json()))))
    assert merged.stats({"a"}) == candidate_stats(lists, {"a"})
    assert merged.stats({"a"})["most_frequent"][0][:2] == ["b", 3]


def test_has_letter():
    assert [has_letter(t) for t in ["word", "x2", "é", ",", "1998", "--", "$"]] == [True, True, True, False, False, False, False]


def test_measure_candidates_is_the_augmentations_candidate_path(mlm, small_kv):
    aug = Augmenter(mlm, GloveNeighbours(small_kv, 3), STOP, top_k=6)
    sents = [MRPC_ROWS[0][3], MRPC_ROWS[1][4], MRPC_ROWS[0][3]]
    st = measure_candidates(aug, sents)
    cands = aug.candidates(sents)
    lists = [sc.candidates[i] for sc in cands for i in sc.candidates if sc.sources[i] == "mlm"]
    assert st == {"sentences": 3, **candidate_stats(lists, STOP)}
    assert st["words_with_candidates"] == 2 * sum(s == "mlm" for s in cands[0].sources.values()) + sum(
        s == "mlm" for s in cands[1].sources.values())  # a repeated sentence counts again


def letterless_mlm(tokenizer) -> MaskedLM:
    """A tiny MLM whose every top prediction is ",", ".", "1998", "!", then "the"."""
    model = tiny_mlm_model(tokenizer, seed=2)
    with torch.no_grad():
        for n, tok in enumerate([",", ".", "1998", "!", "the"]):
            model.cls.predictions.decoder.bias[tokenizer.convert_tokens_to_ids(tok)] = 1000.0 - 100 * n
    return MaskedLM(model, tokenizer, name="letterless")


def test_alphabetic_only_drops_candidates_without_letters(tokenizer, small_kv):
    from gensim.models import KeyedVectors

    mlm = letterless_mlm(tokenizer)
    kv = KeyedVectors(3, dtype=np.float32)
    vecs = {"amrozi": [1.0, 0.0, 0.0], "1999": [0.99, 0.1, 0.0], "--": [0.98, 0.0, 0.1], "bashir": [0.8, 0.3, 0.0]}
    kv.add_vectors(list(vecs), np.array(list(vecs.values()), dtype=np.float32))
    glove = GloveNeighbours(kv, top_k=3)
    sent = MRPC_ROWS[0][3]
    (ref,) = Augmenter(mlm, glove, STOP, top_k=8).candidates([sent])
    (alpha,) = Augmenter(mlm, glove, STOP, top_k=8, alphabetic_only=True).candidates([sent])
    mlm_words = [i for i, s in ref.sources.items() if s == "mlm"]
    assert len(mlm_words) >= 3
    for i in mlm_words:
        assert ref.candidates[i][:5] == [",", ".", "1998", "!", "the"]  # reference behaviour: kept
        assert alpha.candidates[i] == [c for c in ref.candidates[i] if has_letter(c)]
        assert alpha.candidates[i][0] == "the" and alpha.sources[i] == "mlm"
    assert ref.candidates[ref.words.index("amrozi")] == ["1999", "--", "bashir"]  # GloVe neighbours too
    assert alpha.candidates[alpha.words.index("amrozi")] == ["bashir"]
    # every candidate without a letter: the word is kept
    (none_left,) = Augmenter(mlm, glove, STOP, top_k=4, alphabetic_only=True).candidates([sent])
    for i in mlm_words:
        assert i not in none_left.candidates and none_left.sources[i] == "kept"
    # the statistics see what sampling uses
    assert measure_candidates(Augmenter(mlm, None, STOP, top_k=8), [sent])["non_alphabetic_share"] > 0.4
    assert measure_candidates(Augmenter(mlm, None, STOP, top_k=8, alphabetic_only=True), [sent])["non_alphabetic_share"] == 0
    for text in Augmenter(mlm, glove, STOP, top_k=8, alphabetic_only=True).augment(alpha, np.random.default_rng(0)):
        assert all(has_letter(w) for w, o in zip(text.split(" "), alpha.words) if w != o)
