"""Masked LMs of other families (data_aug/tokens.py, data_aug/mlm.py): RoBERTa (byte-level BPE, `Ġ`, `<mask>`) and
XLM-R (SentencePiece, `▁`) built offline, BERT's rule unchanged; MLM-only mode; aug.words=unicode; one-line refusals."""

from __future__ import annotations

import pytest
import torch

from data_aug import AugConfig, Augmenter, MaskedLM, ensure_augmented, load_mlm, read_manifest
from data_aug.tokens import pair_template, vocabulary, word_start_marker
from data_aug.words import is_candidate_word, load_stopwords, split_words
from tests.conftest import STOP, small_cfg, tiny_mlm_model
from tests.data_aug.families import (
    FRENCH,
    TEXTS,
    bpe_tokenizer,
    save_masked_lm,
    tiny_masked_lm,
    tiny_other_masked_lm,
    unigram_tokenizer,
)
from tinydistill.errors import ConfigError

FAMILIES = ["roberta", "xlm-roberta"]


def build(family: str, seed: int = 0, max_tokens: int = 256):
    tok = bpe_tokenizer() if family == "roberta" else unigram_tokenizer()
    return tok, tiny_masked_lm(family, tok, seed=seed, max_tokens=max_tokens)


@pytest.fixture(scope="module", params=FAMILIES)
def family(request):
    tok, model = build(request.param)
    return request.param, tok, model


def reference_top_k(model, tok, words: list[str], index: int, k: int) -> list[str] | None:
    """The reference algorithm for a BPE / SentencePiece masked LM, written without data_aug: split the running text
    into pieces, find the word's pieces by the word-start marker, mask a one-piece word, read `<s> masked </s></s>
    pieces </s>` (special tokens by name), and keep the top k entries that start a word, marker stripped."""
    marker = "Ġ" if tok.backend_tokenizer.pre_tokenizer.__class__.__name__ == "ByteLevel" else "▁"
    pieces = tok.tokenize(" ".join(words))
    starts = [i for i, p in enumerate(pieces) if p.startswith(marker)]
    assert len(starts) == len(words)  # every word starts with the marker
    span = range(starts[index], starts[index + 1] if index + 1 < len(starts) else len(pieces))
    if len(span) != 1:
        return None
    masked = list(pieces)
    masked[span[0]] = "<mask>"
    tokens = ["<s>", *masked, "</s>", "</s>", *pieces, "</s>"]
    with torch.no_grad():
        logits = model(torch.tensor([tok.convert_tokens_to_ids(tokens)])).logits[0, 1 + span[0]]
    top = tok.convert_ids_to_tokens(torch.argsort(logits, descending=True)[:k].tolist())
    special = set(tok.all_special_tokens)
    words_out = [tok.convert_tokens_to_string([t]).strip() for t in top if t.startswith(marker) and t not in special]
    return [w for w in words_out if w and "\ufffd" not in w and " " not in w]


def test_other_families_propose_the_whole_words_of_the_reference_algorithm(family):
    name, tok, model = family
    mlm = MaskedLM(model, tok, name=name)
    assert pair_template(tok) == ([tok.cls_token_id], [tok.sep_token_id] * 2, [tok.sep_token_id])
    assert mlm.max_len == 256  # RoBERTa-style positions start after the padding id: 258 embeddings, 256 tokens
    assert mlm._layers is not None and mlm._transform64 is not None  # last layer at the masks, float64 re-scoring
    lists = Augmenter(mlm, None, STOP, top_k=10).candidates(TEXTS)
    checked = 0
    for sc in lists:
        for i, cands in sc.candidates.items():
            assert cands == reference_top_k(model, tok, sc.words, i, 10), (sc.words[i], cands)
            checked += 1
    assert checked >= 10


def test_continuations_special_tokens_and_partial_characters_are_never_proposed(family):
    name, tok, _ = family
    model = tiny_masked_lm(name, tok, seed=3, max_tokens=256)
    marker = word_start_marker(tok)
    assert marker == ("Ġ" if name == "roberta" else "▁")
    vocab = tok.get_vocab()
    word = next(t for t in vocab if t.startswith(marker) and t[1:].isalpha() and len(t) > 3)
    continuation = next(t for t in vocab if t.isalpha() and not t.startswith(marker) and len(t) > 2)
    pushed = [word, "<mask>", "</s>", continuation, "Ã" if name == "roberta" else marker]  # Ã: half a UTF-8 char
    with torch.no_grad():
        for n, t in enumerate(pushed):
            model.lm_head.decoder.bias[vocab[t]] = 1000.0 - n
    (sc,) = Augmenter(MaskedLM(model, tok, name=name), None, STOP, top_k=8, mlm_only=True).candidates([TEXTS[0]])
    assert sc.candidates and all(c[0] == word[1:] for c in sc.candidates.values())
    proposed = {c for cands in sc.candidates.values() for c in cands}
    assert not proposed & {"<mask>", "</s>", continuation, "Ã", "", marker}
    ids_to_words, excluded = vocabulary(tok, len(tok))
    assert ids_to_words[vocab[word]] == word[1:] and not excluded[vocab[word]]
    assert all(excluded[vocab[t]] for t in pushed[1:])


@pytest.mark.parametrize("name", FAMILIES)
def test_batched_equals_sequential_for_other_families_also_mlm_only_and_truncated(name):
    tok, model = build(name, seed=1)
    sentences = TEXTS + [" ".join(TEXTS[:3])]  # the last one is longer than max_seq_length
    for mlm in (MaskedLM(model, tok, name=name), MaskedLM(model, tok, name=name, max_seq_length=40)):
        kw = {"top_k": 12, "words": "unicode", "mlm_only": True}
        seq = Augmenter(mlm, None, STOP, mode="sequential", **kw).candidates(sentences)
        for bs in (1, 5, 64):
            assert Augmenter(mlm, None, STOP, mode="batched", batch_size=bs, **kw).candidates(sentences) == seq
        assert sum(s == "mlm" for sc in seq for s in sc.sources.values()) > 20


@pytest.mark.parametrize("name", ["electra", "deberta-v2", "modernbert"])
def test_electra_deberta_and_modernbert_masked_lms_run_whole_in_both_modes(name, tokenizer):
    """Layouts the batched mode does not take apart (ELECTRA projects its embeddings, DeBERTa-v2 needs its relative
    positions, ModernBERT has its own head) run the whole encoder: same lists as sequential mode, whole words only."""
    tok = {"electra": tokenizer, "deberta-v2": unigram_tokenizer(), "modernbert": bpe_tokenizer()}[name]
    mlm = MaskedLM(tiny_other_masked_lm(name, tok), tok, name=name)
    assert mlm._layers is None
    kw = {"top_k": 10, "words": "unicode", "mlm_only": True}
    lists = Augmenter(mlm, None, STOP, **kw).candidates(TEXTS)
    assert lists == Augmenter(mlm, None, STOP, mode="sequential", **kw).candidates(TEXTS)
    allowed = {w for w, excluded in zip(mlm.id_to_token, mlm.excluded.tolist()) if not excluded}
    proposed = [c for sc in lists for cands in sc.candidates.values() for c in cands]
    assert len(proposed) > 100 and set(proposed) <= allowed


def test_load_mlm_gives_a_byte_level_tokenizer_its_prefix_space(tmp_path):
    """RoBERTa's tokenizer as released has add_prefix_space=False, which splits pre-split words without `Ġ`;
    load_mlm loads it again with the prefix space, so a word has the pieces it has in running text."""
    tok, model = build("roberta")
    folder = save_masked_lm(tmp_path / "roberta", model, bpe_tokenizer(add_prefix_space=False))
    with pytest.raises(ConfigError, match="splits pre-split words unlike running text") as e:
        MaskedLM(model, bpe_tokenizer(add_prefix_space=False), name="as-released")
    assert "\n" not in str(e.value)
    loaded = load_mlm(folder)
    assert loaded.tokenizer.add_prefix_space is True
    assert Augmenter(loaded, None, STOP, top_k=8).candidates(TEXTS) == \
        Augmenter(MaskedLM(model, tok), None, STOP, top_k=8).candidates(TEXTS)
    _, xlmr = build("xlm-roberta")
    assert load_mlm(save_masked_lm(tmp_path / "xlmr", xlmr, unigram_tokenizer())).mask_id == 4


def test_bert_keeps_the_references_vocabulary_rule_and_input(tokenizer):
    ids_to_words, excluded = vocabulary(tokenizer, tokenizer.vocab_size)
    special = set(tokenizer.all_special_ids)
    for t, i in tokenizer.get_vocab().items():
        assert ids_to_words[i] == t
        assert bool(excluded[i]) == (t.startswith("##") or (t.startswith("[") and t.endswith("]")) or i in special)
    assert pair_template(tokenizer) == ([tokenizer.cls_token_id], [tokenizer.sep_token_id], [tokenizer.sep_token_id])


def test_mlm_only_masks_a_multi_piece_word_with_one_mask(tokenizer):
    model = tiny_mlm_model(tokenizer, seed=2)
    mlm = MaskedLM(model, tokenizer, name="tiny")
    sentence = "Amrozi accused his brother of deliberately distorting the evidence in Yucaipa."
    (paper,) = Augmenter(mlm, None, STOP, top_k=9).candidates([sentence])
    (only,) = Augmenter(mlm, None, STOP, top_k=9, mlm_only=True).candidates([sentence])
    pieces = [tokenizer.tokenize(w) for w in only.words]
    multi = [i for i, p in enumerate(pieces) if len(p) > 1 and is_candidate_word(only.words[i], STOP)]
    assert len(multi) >= 3 and all(paper.sources[i] == "kept" for i in multi)  # no word vectors: kept
    flat = [p for ps in pieces for p in ps]
    for i in multi:
        j, n = sum(len(p) for p in pieces[:i]), len(pieces[i])
        tokens = ["[CLS]", *flat[:j], "[MASK]", *flat[j + n:], "[SEP]", *flat, "[SEP]"]
        segments = [0] * (len(flat) - n + 3) + [1] * (len(flat) + 1)
        with torch.no_grad():
            logits = model(torch.tensor([tokenizer.convert_tokens_to_ids(tokens)]),
                           token_type_ids=torch.tensor([segments])).logits[0, 1 + j]
        top = tokenizer.convert_ids_to_tokens(torch.argsort(logits, descending=True)[:9].tolist())
        want = [t for t in top if not t.startswith("##") and not (t.startswith("[") and t.endswith("]"))]
        assert only.sources[i] == "mlm" and only.candidates[i] == want, only.words[i]
    for i, cands in paper.candidates.items():  # single-piece words: the same lists in both modes
        assert only.candidates[i] == cands


def test_mlm_only_augmentation_with_roberta_never_reads_word_vectors(glue_dir, tmp_path):
    tok, model = build("roberta", seed=4)
    folder = save_masked_lm(tmp_path / "roberta", model, tok)
    missing = str(tmp_path / "no-such.vec")
    cfg = small_cfg(mlm_only=True, word_vectors=missing, words="unicode", stopwords="none")
    out = ensure_augmented(cfg, "mrpc", glue_dir, tmp_path / "art", mlm_model=str(folder), progress=False)
    manifest = read_manifest(out.parent)
    assert manifest["settings"]["mlm_only"] is True and manifest["settings"]["words"] == "unicode"
    assert manifest["word_vectors"] is None and manifest["counts"]["rows"] > 2 * manifest["counts"]["examples"]
    text = out.read_text(encoding="utf-8")
    assert "Amrozi" in text  # aug.words=unicode writes words as they were cased
    with pytest.raises(Exception, match="no-such.vec"):  # the paper's mode needs the vectors
        ensure_augmented(small_cfg(word_vectors=missing), "mrpc", glue_dir, tmp_path / "art2", mlm_model=str(folder),
                         progress=False)


def test_unicode_words_keep_case_and_accents_and_take_any_script():
    text = "Les élèves, à Tōkyō: 東京 हिंदी l'été 1998 x2"
    assert split_words(text) == ["les", "eleves", ",", "a", "tokyo", ":", "東", "京", "हिदी", "l", "'", "ete", "1998",
                                 "x2"]
    words = split_words(text, "unicode")
    assert words == ["Les", "élèves", ",", "à", "Tōkyō", ":", "東", "京", "हिंदी", "l", "'", "été", "1998", "x2"]
    stop = frozenset({"les", "l"})
    assert [w for w in words if is_candidate_word(w, stop, "unicode")] == ["élèves", "à", "Tōkyō", "東", "京", "हिंदी",
                                                                            "été"]
    assert [w for w in split_words(text) if is_candidate_word(w, stop)] == ["eleves", "a", "tokyo", "ete"]
    assert load_stopwords(which="none") == frozenset()  # aug.stopwords=none: every word of letters is a candidate


def test_fasttext_vec_file_and_its_one_line_errors(tmp_path, small_kv):
    from data_aug import GloveNeighbours, load_glove
    from data_aug.glove import glove_file_fingerprint
    from tinydistill.errors import DataError

    rows = [f"{w} " + " ".join(f"{x:.4f}" for x in small_kv[w]) + " " for w in small_kv.index_to_key]
    vec = tmp_path / "cc.xx.3.vec"
    vec.write_text(f"{len(rows)} 3\n" + "\n".join(rows) + "\n", encoding="utf-8")  # fastText: header, trailing space
    kv = load_glove(str(vec), vocab_size=None)
    assert kv.index_to_key == small_kv.index_to_key
    for w in small_kv.index_to_key:
        assert GloveNeighbours(kv, top_k=3).neighbours(w) == GloveNeighbours(small_kv, top_k=3).neighbours(w)
    assert glove_file_fingerprint(str(vec), None).startswith("file:")
    short = tmp_path / "short.vec"
    short.write_text(f"{len(rows)} 3\n" + "\n".join(rows[:2]) + "\nbroken 0.1 0.2\n", encoding="utf-8")
    with pytest.raises(DataError) as e:
        load_glove(str(short), vocab_size=None)
    assert str(e.value) == f"{short}: line 4: 2 values, but the header (line 1) says 3 (aug.word_vectors): every " \
                           f"row must be a word and the same number of values"
    nan = tmp_path / "nan.vec"
    nan.write_text(f"{len(rows)} 3\n" + rows[0] + "\nword 0.1 x0.2 0.3\n", encoding="utf-8")
    with pytest.raises(DataError) as e:
        load_glove(str(nan), vocab_size=None)
    assert str(e.value) == f"{nan}: line 3: 'x0.2' is not a number (aug.word_vectors)"


def test_refusals_are_one_line():
    from transformers import PreTrainedTokenizerFast

    tok, model = build("roberta")
    no_mask = PreTrainedTokenizerFast(tokenizer_object=tok.backend_tokenizer, cls_token="<s>", sep_token="</s>",
                                      pad_token="<pad>")
    cases = [
        (lambda: MaskedLM(model, no_mask, name="no-mask"), "aug.mlm_model='no-mask': its tokenizer has no mask token"),
        (lambda: AugConfig.from_cfg({"glove": "x.txt"}), "aug.glove: renamed to aug.word_vectors"),
        (lambda: AugConfig.from_cfg({"glove_vocab_size": 5}), "aug.glove_vocab_size: renamed to"),
        (lambda: AugConfig.from_cfg({"words": "french"}), "aug.words='french': expected one of"),
        (lambda: AugConfig.from_cfg({"mlm_only": "yes"}), "aug.mlm_only='yes': expected true or false"),
        (lambda: AugConfig.from_cfg({"stopwords": "french"}), "aug.stopwords='french': expected one of"),
    ]
    for make, start in cases:
        with pytest.raises(ConfigError) as e:
            make()
        assert str(e.value).startswith(start) and "\n" not in str(e.value), str(e.value)
    assert FRENCH  # the tokenizers above were trained on French sentences too


def test_unicode_words_find_word_vectors_as_written_else_lower_cased(mlm, small_kv):
    from data_aug import GloveNeighbours
    from gensim.models import KeyedVectors

    cased = KeyedVectors(3, dtype="float32")  # a cased vector file: "Yucaipa" has its own vector
    cased.add_vectors([*small_kv.index_to_key, "Yucaipa"], [*small_kv.vectors, [0.7, 0.0, 0.5]])
    aug = Augmenter(mlm, GloveNeighbours(cased, top_k=3), STOP, top_k=6, words="unicode")
    (sc,) = aug.candidates(["Amrozi owned Yucaipa before distorting it."])
    assert sc.candidates[sc.words.index("Amrozi")] == ["samudra", "bashir", "hambali"]  # via "amrozi"
    assert sc.candidates[sc.words.index("Yucaipa")] == ["hambali", "amrozi", "samudra"]  # its own vector


def test_a_stop_word_file_for_another_language(tmp_path, mlm):
    from data_aug.settings import output_settings
    from tinydistill.data.tasks import get_task
    from tinydistill.errors import DataError

    french = tmp_path / "french.txt"
    french.write_text("les\nDe\n\nla\n", encoding="utf-8")
    cfg = AugConfig.from_cfg({"stopwords": str(french), "words": "unicode"})
    stop = load_stopwords(which=cfg.stopwords)
    assert stop == {"les", "de", "la"}
    (sc,) = Augmenter(mlm, None, stop, top_k=5, words="unicode").candidates([FRENCH[0]])
    assert not {w.lower() for i, w in enumerate(sc.words) if i in sc.sources} & stop and len(sc.sources) >= 5
    assert output_settings(cfg, get_task("mrpc"), "m", "g", "s", "src")["stopwords"] == "file"  # content: fingerprint
    with pytest.raises(DataError, match=r"missing.txt: stop word file not found \(aug.stopwords\)"):
        load_stopwords(which=str(tmp_path / "missing.txt"))
