"""data_aug/glove.py: neighbours, the shared file, errors."""

from __future__ import annotations

import pytest

from data_aug import (
    GloveNeighbours,
    load_glove,
)
from tests.conftest import (
    VEC_WORDS,
)
from tests.data_aug.conftest import find_data_dir
from tinydistill.errors import ConfigError, DataError


def test_glove_neighbours_exclude_the_word_and_rank_by_cosine(small_kv):
    g = GloveNeighbours(small_kv, top_k=4)
    for w in VEC_WORDS:
        expected = [x for x, _ in small_kv.most_similar(w, topn=4)]
        assert g.neighbours(w) == expected and w not in expected
    assert g.lookup(["nonexistentword"]) == {"nonexistentword": []}


def test_glove_from_shared_file():
    d = find_data_dir()
    if d is None:
        pytest.skip("shared data folder not found (TINYDISTILL_DATA_DIR or ../shared/data)")
    path = d / "glove" / "glove.6B.50d.top50k.txt"
    kv = load_glove(str(path), vocab_size=None)
    assert len(kv.index_to_key) == 50_000 and kv.vector_size == 50 and kv.index_to_key[0] == "the"
    g = GloveNeighbours(kv, top_k=15)
    for w in ("government", "distorting", "quarterly"):
        assert g.neighbours(w) == [x for x, _ in kv.most_similar(w, topn=15)]
    small = load_glove(str(path), vocab_size=1000)
    assert small.index_to_key == kv.index_to_key[:1000]


def test_glove_errors_name_the_option(tmp_path):
    with pytest.raises(DataError, match="not found"):
        load_glove(str(tmp_path / "missing.txt"))
    with pytest.raises(ConfigError, match="aug.word_vectors"):
        load_glove("glove-no-such-set-42")
