"""How a masked LM's tokenizer marks words, read from the tokenizer itself (WordPiece, byte-level BPE, SentencePiece).

* Pieces of a word: the word ids (`word_ids()`) of a fast tokenizer called with `is_split_into_words=True`, so no
  string prefix is needed to find a word's pieces. This holds only if a pre-split word gets the pieces it gets in
  running text: a byte-level BPE tokenizer (RoBERTa) needs `add_prefix_space=True` for it, which `load_tokenizer`
  sets when needed; `check_tokenizer` refuses a tokenizer for which it does not hold.
* The pair input `[CLS] masked [SEP] original [SEP]` of the reference: the special tokens around two sequences
  come from the tokenizer's own post-processor (`pair_template`): BERT `[CLS] a [SEP] b [SEP]`, RoBERTa and XLM-R
  `<s> a </s></s> b </s>`.
* Which vocabulary entries may be proposed as a replacement word (`vocabulary`), by the tokenizer's model:
  - WordPiece (BERT, multilingual BERT, ELECTRA): every entry except continuation pieces (the model's
    `continuing_subword_prefix`, `##`) and bracketed entries (`[SEP]`, `[unused7]`), written as they are: the
    reference's rule, kept bit for bit.
  - BPE (RoBERTa's byte-level `Ġ`) and Unigram (XLM-R's SentencePiece `▁`): an entry is a word when it starts with
    the marker the tokenizer's pre-tokenizer puts before a word (read by pre-tokenizing "a b", not hard-coded);
    an entry without it continues a word. The word is the entry decoded by the tokenizer's own decoder (marker
    stripped, bytes decoded: `Ġcaf` -> `caf`). An entry that decodes to nothing, to white space or to a partial
    UTF-8 character (byte-level pieces of one) is never proposed.
  Special tokens (`mask_token`, `cls_token`, ...: `all_special_ids`) are never proposed.
"""

from __future__ import annotations

import re

import torch

from tinydistill.errors import ConfigError

_BRACKETED = re.compile(r"^\[.*\]$")
# Pre-split words must give the pieces of running text; checked on these (any tokenizer has some pieces for them).
_PROBE = ("the", "river", "banks", "flooded", "again")


def _model_kind(tokenizer) -> str:
    backend = getattr(tokenizer, "backend_tokenizer", None)
    return type(backend.model).__name__ if backend is not None else ""


def _splits_like_running_text(tokenizer) -> bool:
    split = tokenizer([list(_PROBE)], is_split_into_words=True, add_special_tokens=False)["input_ids"][0]
    running = tokenizer([" ".join(_PROBE)], add_special_tokens=False)["input_ids"][0]
    return split == running


def load_tokenizer(name: str):
    """`AutoTokenizer` for `name`; a tokenizer that pre-splits words unlike running text (byte-level BPE without a
    prefix space, e.g. RoBERTa's as released) is loaded again with `add_prefix_space=True`."""
    from transformers import AutoTokenizer

    tokenizer = AutoTokenizer.from_pretrained(name)
    if _model_kind(tokenizer) not in ("", "WordPiece") and not _splits_like_running_text(tokenizer):
        tokenizer = AutoTokenizer.from_pretrained(name, add_prefix_space=True)
    return tokenizer


def check_tokenizer(tokenizer, name: str | None) -> None:
    """Raise ConfigError (one line, naming aug.mlm_model) for a tokenizer the augmentation cannot use."""
    kind = _model_kind(tokenizer)
    if kind not in ("WordPiece", "BPE", "Unigram"):
        raise ConfigError(
            f"aug.mlm_model={name!r}: needs a fast WordPiece, BPE or SentencePiece (Unigram) tokenizer, got "
            f"{type(tokenizer).__name__}{f' ({kind})' if kind else ''}"
        )
    if tokenizer.mask_token_id is None:
        raise ConfigError(f"aug.mlm_model={name!r}: its tokenizer has no mask token, so it is not a masked LM's")
    if tokenizer.cls_token_id is None or tokenizer.sep_token_id is None:
        raise ConfigError(f"aug.mlm_model={name!r}: its tokenizer has no cls_token or sep_token")
    if not _splits_like_running_text(tokenizer):
        raise ConfigError(
            f"aug.mlm_model={name!r}: its tokenizer splits pre-split words unlike running text (a byte-level BPE "
            f"tokenizer needs add_prefix_space=True)"
        )
    if kind != "WordPiece" and not word_start_marker(tokenizer):
        raise ConfigError(
            f"aug.mlm_model={name!r}: cannot tell which of its {kind} tokenizer's entries start a word (its "
            f"pre-tokenizer marks no word start)"
        )


def word_start_marker(tokenizer) -> str:
    """The string a BPE / Unigram pre-tokenizer puts before a word that follows a space (`Ġ`, `▁`), or ''."""
    pre = tokenizer.backend_tokenizer.pre_tokenizer
    if pre is None:
        return ""
    last = pre.pre_tokenize_str("a b")[-1][0]
    return last[: -len("b")] if last.endswith("b") else ""


def pair_template(tokenizer) -> tuple[list[int], list[int], list[int]]:
    """The special token ids before, between and after two sequences, from the tokenizer's post-processor."""
    enc = tokenizer("a", "b")
    ids, seq = enc["input_ids"], enc.sequence_ids()
    first = [i for i, s in enumerate(seq) if s == 0]
    second = [i for i, s in enumerate(seq) if s == 1]
    return ids[: first[0]], ids[first[-1] + 1 : second[0]], ids[second[-1] + 1 :]


def vocabulary(tokenizer, vocab_size: int) -> tuple[list[str], torch.Tensor]:
    """Each id's word as proposed, and which ids are never proposed (see the module docstring)."""
    vocab = tokenizer.get_vocab()
    size = max(vocab_size, max(vocab.values()) + 1)
    id_to_token = [""] * size
    excluded = torch.zeros(size, dtype=torch.bool)
    model = tokenizer.backend_tokenizer.model
    if type(model).__name__ == "WordPiece":
        prefix = model.continuing_subword_prefix
        for tok, i in vocab.items():
            id_to_token[i] = tok
            if tok.startswith(prefix) or _BRACKETED.match(tok):
                excluded[i] = True
    else:
        marker, decoder = word_start_marker(tokenizer), tokenizer.backend_tokenizer.decoder
        for tok, i in vocab.items():
            text = decoder.decode([tok]).strip() if decoder is not None else tok[len(marker):]
            id_to_token[i] = text
            if not tok.startswith(marker) or not text or "\ufffd" in text or any(c.isspace() for c in text):
                excluded[i] = True
    for i in tokenizer.all_special_ids:
        excluded[i] = True
    excluded |= torch.tensor([not t for t in id_to_token], dtype=torch.bool)  # ids the tokenizer lacks (padded vocab)
    return id_to_token, excluded
