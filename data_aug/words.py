"""Words of a sentence and which of them may be replaced.

Words come from BERT's *basic* tokeniser with lower-casing (whitespace and punctuation split,
accents stripped), as in the reference TinyBERT `data_augmentation.py`. In transformers 5.x the
class lives in `transformers.models.bert.tokenization_bert_legacy`; if a later release drops it we
fall back to the `tokenizers` library's BertNormalizer + BertPreTokenizer, which implement the same
rules (tests check both agree).

A word is a replacement candidate when it is purely alphabetic ASCII (`[a-z]+`, the reference's
`_is_valid`) and not a stop word: NLTK's English list (`aug.stopwords: nltk`, default) or the list hard-coded in
the reference script (`aug.stopwords: reference`), which is NLTK's list without its eight wh-words plus two
contraction pieces (see REFERENCE_LACKS); `aug.stopwords: none` has none; a file gives another language's list.

That is `aug.words: reference`, English only: lower-casing and stripping accents would write `ete` for `été`, and
`[a-z]+` never matches a word of another script. `aug.words: unicode` (any language) keeps case and accents (the
basic tokeniser without lower-casing, as a cased multilingual BERT splits text: punctuation split, every CJK
character a word) and takes as candidates the words made of letters of any script (with their combining marks),
stop words compared lower-cased.
"""

from __future__ import annotations

import hashlib
import os
import re
import unicodedata
from functools import lru_cache
from pathlib import Path

from tinydistill.errors import ConfigError, DataError

_ALPHA = re.compile(r"[a-z]+")

STOPWORD_LISTS = ("nltk", "reference", "none")
WORD_RULES = ("reference", "unicode")
# The reference's StopWordsList, compared word by word with NLTK's English list (179 words): it lacks these
# eight, so the reference replaces wh-words (about 1% of the candidate words on MRPC) ...
REFERENCE_LACKS = frozenset({"how", "what", "when", "where", "which", "who", "whom", "why"})
# ... and has two entries NLTK lacks, which are never candidates anyway (not [a-z]+).
REFERENCE_ADDS = frozenset({"'s", "'re"})
# stopwords_fingerprint of the reference's 173 words: an NLTK list of another version would silently give
# another list, so `reference` checks it.
REFERENCE_FINGERPRINT = "9d5e71ffa53642ed"


class _TokenizersBasic:
    """Same rules as BasicTokenizer(do_lower_case=lowercase), from the `tokenizers` library."""

    def __init__(self, lowercase: bool = True) -> None:
        from tokenizers import normalizers, pre_tokenizers

        self._norm = normalizers.BertNormalizer(
            clean_text=True, handle_chinese_chars=True, strip_accents=None, lowercase=lowercase
        )
        self._pre = pre_tokenizers.BertPreTokenizer()

    def tokenize(self, text: str) -> list[str]:
        return [w for w, _ in self._pre.pre_tokenize_str(self._norm.normalize_str(text))]


@lru_cache(maxsize=1)
def _basic_tokenizer():
    try:
        from transformers.models.bert.tokenization_bert_legacy import BasicTokenizer
    except ImportError:  # pragma: no cover - depends on the transformers release
        try:
            from transformers.models.bert.tokenization_bert import BasicTokenizer  # 4.x
        except ImportError:
            return _TokenizersBasic()
    return BasicTokenizer(do_lower_case=True)


def basic_tokenize(text: str) -> list[str]:
    """Lower-cased words of `text` as BERT's basic tokeniser splits them."""
    return _basic_tokenizer().tokenize(text)


@lru_cache(maxsize=1)
def _cased_tokenizer() -> _TokenizersBasic:
    return _TokenizersBasic(lowercase=False)


def split_words(text: str, rule: str = "reference") -> list[str]:
    """The words of `text` under `aug.words`: `reference` lower-cased (basic_tokenize), `unicode` as written."""
    return basic_tokenize(text) if rule == "reference" else _cased_tokenizer().tokenize(text)


def _is_letters(word: str) -> bool:
    """Letters of any script, with their combining marks (Devanagari vowel signs are marks, not letters)."""
    cats = [unicodedata.category(c)[0] for c in word]
    return "L" in cats and all(c in "LM" for c in cats)


def is_candidate_word(word: str, stopwords: frozenset[str] | set[str], rule: str = "reference") -> bool:
    """`reference`: a purely alphabetic (a-z) word that is not a stop word. `unicode`: a word of letters of any
    script whose lower-cased form is not a stop word."""
    if rule == "reference":
        return _ALPHA.fullmatch(word) is not None and word not in stopwords
    return _is_letters(word) and word.lower() not in stopwords


def nltk_data_dir(explicit: str | os.PathLike | None, data_dir: str | os.PathLike | None) -> Path | None:
    """The NLTK data folder to use: `aug.nltk_data`, else `<data_dir>/nltk_data` if it exists."""
    if explicit:
        return Path(explicit)
    if data_dir:
        cand = Path(data_dir) / "nltk_data"
        if cand.is_dir():
            return cand
    return None


def is_stopword_file(value: str) -> bool:
    """Whether an `aug.stopwords` value names a file: it has a folder or an extension."""
    return isinstance(value, str) and ("/" in value or os.sep in value or Path(value).suffix != "")


def reference_stopwords(nltk_english: frozenset[str] | set[str]) -> frozenset[str]:
    """The reference script's stop words, from NLTK's English list: without REFERENCE_LACKS, with REFERENCE_ADDS."""
    return (frozenset(nltk_english) - REFERENCE_LACKS) | REFERENCE_ADDS


def load_stopwords(nltk_data: str | os.PathLike | None = None, which: str = "nltk") -> frozenset[str]:
    """The stop words of `aug.stopwords`: NLTK's English list (179 words), the reference script's (173), none, or a
    UTF-8 file of one word a line (another language's list), lower-cased.

    With `nltk_data`, NLTK's list is read from that folder, which must hold corpora/stopwords/english;
    without, from NLTK's search path.
    """
    if which not in STOPWORD_LISTS and not is_stopword_file(which):
        raise ConfigError(f"aug.stopwords={which!r}: expected one of {list(STOPWORD_LISTS)} or a file of stop words "
                          f"(one a line, e.g. stopwords/french.txt)")
    if which == "none":
        return frozenset()
    if which not in STOPWORD_LISTS:
        path = Path(which).expanduser()
        if not path.is_file():
            raise DataError(f"{path}: stop word file not found (aug.stopwords)")
        try:
            return frozenset(w.strip().lower() for w in path.read_text(encoding="utf-8").splitlines() if w.strip())
        except UnicodeDecodeError:
            raise DataError(f"{path}: not UTF-8 (aug.stopwords)") from None
    english = _nltk_english(nltk_data)
    if which == "nltk":
        return english
    words = reference_stopwords(english)
    if stopwords_fingerprint(words) != REFERENCE_FINGERPRINT:
        raise DataError(
            f"aug.stopwords=reference: NLTK's English list found here ({len(english)} words) is not the 179-word "
            f"list the reference's list derives from; point aug.nltk_data at the shared data's nltk_data/"
        )
    return words


def _nltk_english(nltk_data: str | os.PathLike | None) -> frozenset[str]:
    """NLTK's English stop words, from `nltk_data` if given, else NLTK's search path."""
    if nltk_data is not None:
        root = Path(nltk_data).resolve()
        english = root / "corpora" / "stopwords" / "english"
        if not english.is_file():
            raise DataError(
                f"{english}: NLTK stop word list not found (aug.nltk_data / <paths.data_dir>/nltk_data "
                f"must hold corpora/stopwords/english; get it with `python -m nltk.downloader -d {root} "
                f"stopwords`)"
            )
        # Read the file itself: NLTK's corpus loader keeps the first list it loaded in a process, whatever
        # folder is asked for later.
        return frozenset(w.strip().lower() for w in english.read_text(encoding="utf-8").splitlines() if w.strip())
    try:
        from nltk.corpus import stopwords

        return frozenset(w.strip().lower() for w in stopwords.words("english") if w.strip())
    except LookupError:
        import nltk

        raise DataError(
            "NLTK stop words not found on NLTK's search path "
            f"{list(nltk.data.path)}; set paths.data_dir (its nltk_data/ folder is used) or "
            "aug.nltk_data, or run `python -m nltk.downloader stopwords`"
        ) from None


def stopwords_fingerprint(stopwords: frozenset[str] | set[str]) -> str:
    """Short hash of a stop-word list (part of the manifest settings)."""
    return hashlib.sha256("\n".join(sorted(stopwords)).encode()).hexdigest()[:16]
