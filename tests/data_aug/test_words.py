"""data_aug/words.py: tokenising, candidate words, stop-word lists."""

from __future__ import annotations

import pytest

from data_aug import (
    Augmenter,
    basic_tokenize,
    is_candidate_word,
    load_stopwords,
)
from data_aug.words import _TokenizersBasic
from tests.conftest import (
    STOP,
)
from tests.data_aug.conftest import MRPC_ROWS, find_data_dir
from tinydistill.errors import ConfigError, DataError


def test_basic_tokenize_lowercases_strips_accents_and_splits_punctuation():
    assert basic_tokenize("Café U.S. don't, \"Naïve\"!") == ["cafe", "u", ".", "s", ".", "don", "'", "t", ",", '"', "naive", '"', "!"]


def test_tokenizers_fallback_agrees_with_basic_tokenizer():
    fallback = _TokenizersBasic()
    texts = [r[c] for r in MRPC_ROWS for c in (3, 4)] + ["Ünïcode  tabs\tand 中文 chars", "a--b...c's", ""]
    for t in texts:
        assert fallback.tokenize(t) == basic_tokenize(t), t


@pytest.mark.parametrize(
    "word,expected",
    [("witness", True), ("distorting", True), ("the", False), ("his", False), ("2003", False),
     ("4.4", False), ("a$4", False), (",", False), ("don't", False), ("café", False), ("co2", False)],
)
def test_candidate_word_rules(word, expected):
    assert is_candidate_word(word, STOP) is expected


def test_nltk_stopwords_from_data_folder():
    d = find_data_dir()
    if d is None or not (d / "nltk_data").is_dir():
        pytest.skip("shared data folder with nltk_data/ not found")
    sw = load_stopwords(d / "nltk_data")
    assert len(sw) == 179 and {"the", "his", "whom", "wouldn't"} <= sw and "witness" not in sw


def test_missing_nltk_data_is_a_data_error(tmp_path):
    with pytest.raises(DataError, match="stopwords"):
        load_stopwords(tmp_path / "nowhere")


WH_WORDS = {"how", "what", "when", "where", "which", "who", "whom", "why"}


def test_reference_stopwords_are_nltk_without_the_wh_words():
    d = find_data_dir()
    if d is None or not (d / "nltk_data").is_dir():
        pytest.skip("shared data folder with nltk_data/ not found")
    nltk_list = load_stopwords(d / "nltk_data", "nltk")
    ref = load_stopwords(d / "nltk_data", "reference")
    # the difference found by comparing the reference's StopWordsList with NLTK's English list
    assert nltk_list - ref == WH_WORDS and ref - nltk_list == {"'s", "'re"} and len(ref) == 173
    for w in WH_WORDS:
        assert is_candidate_word(w, ref) and not is_candidate_word(w, nltk_list)
    assert not is_candidate_word("the", ref) and not is_candidate_word("his", ref)


def test_reference_list_refuses_another_nltk_version(tmp_path):
    other = tmp_path / "nltk_data"
    (other / "corpora" / "stopwords").mkdir(parents=True)
    (other / "corpora" / "stopwords" / "english").write_text("\n".join(sorted(STOP)) + "\n")
    assert load_stopwords(other, "nltk") == STOP
    with pytest.raises(DataError, match="aug.stopwords=reference"):
        load_stopwords(other, "reference")
    with pytest.raises(ConfigError, match="aug.stopwords"):
        load_stopwords(other, "spacy")


def test_reference_stopwords_make_wh_words_candidates(mlm):
    from data_aug.words import reference_stopwords

    sent = "Amrozi accused his brother, whom he called the witness, of distorting what he said."
    (nltk_sc,) = Augmenter(mlm, None, STOP, top_k=5).candidates([sent])
    (ref_sc,) = Augmenter(mlm, None, reference_stopwords(STOP), top_k=5).candidates([sent])
    replaceable = lambda sc: {sc.words[i] for i in sc.candidates}  # noqa: E731
    assert {"whom", "what"} <= replaceable(ref_sc) and not {"whom", "what"} & replaceable(nltk_sc)
    assert replaceable(ref_sc) - replaceable(nltk_sc) == {"whom", "what"}  # nothing else changes
