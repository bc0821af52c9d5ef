"""Sentence-pair instances for general distillation (stage.instances=pairs), as the reference's pregenerated data."""

from __future__ import annotations

import random
from pathlib import Path

import numpy as np
import pytest
from transformers import AutoTokenizer

import tinydistill.data.corpus_build as build_mod
from tinydistill.data.corpus import CorpusDataModule, CorpusSource
from tinydistill.data.corpus_build import packed_corpus
from tinydistill.data.pairs import (
    PairOptions,
    PairTemplate,
    TokenizedDocuments,
    document_pairs,
    other_document,
    pair_instances,
    pair_template,
    truncate_pair,
)
from tinydistill.errors import ConfigError, DataError

# Synthetic token ids: token k of document d is DOC * d + k, so every token names its document and position.
DOC = 100_000
CLS, SEP = 1, 2
TEMPLATE = PairTemplate((CLS,), (SEP,), (SEP,), (0,), (0,), (1,), 0, 1)


def synthetic_documents(n_docs: int, seed: int = 0, sentences=(8, 40), tokens=(4, 14)) -> TokenizedDocuments:
    rng = np.random.default_rng(seed)
    docs = []
    for d in range(1, n_docs + 1):  # d >= 1, so no content id collides with CLS/SEP
        pos, doc = 0, []
        for _ in range(rng.integers(*sentences)):
            n = int(rng.integers(*tokens))
            doc.append([DOC * d + pos + i for i in range(n)])
            pos += n
        docs.append(doc)
    return TokenizedDocuments.from_ids(docs)


def split(ids: list[int], types: list[int]) -> tuple[list[int], list[int]]:
    """Content of segments A and B of a synthetic instance, checking the special tokens and token types."""
    assert ids[0] == CLS and ids[-1] == SEP and types[0] == 0 and types[-1] == 1
    sep = ids.index(SEP)
    a, b = ids[1:sep], ids[sep + 1 : -1]
    assert types == [0] * (len(a) + 2) + [1] * (len(b) + 1)
    assert SEP not in b and a and b
    return a, b


def is_run_of_runs(ids: list[int]) -> bool:
    """Increasing positions: the text in document order, with gaps only where truncation or a put-back cut it."""
    return all(x < y for x, y in zip(ids, ids[1:]))


def test_pair_template_of_bert_tokenizer(minilm_path):
    tok = AutoTokenizer.from_pretrained(minilm_path)
    t = pair_template(tok)
    assert (t.prefix, t.middle, t.suffix) == ((tok.cls_token_id,), (tok.sep_token_id,), (tok.sep_token_id,))
    assert (t.prefix_types, t.middle_types, t.suffix_types, t.type_a, t.type_b) == ((0,), (0,), (1,), 0, 1)
    assert t.n_special == 3
    a, b = tok("the cat", add_special_tokens=False)["input_ids"], tok("sat", add_special_tokens=False)["input_ids"]
    ids, types = t.build(a, b)
    enc = tok("the cat", "sat")
    assert ids == [tok.cls_token_id, *a, tok.sep_token_id, *b, tok.sep_token_id] == enc["input_ids"]
    assert types == [0, 0, 0, 0, 1, 1] == enc["token_type_ids"]


def test_truncate_pair_cuts_the_longer_segment_at_either_end():
    a, b = list(range(10)), [100, 101, 102]
    truncate_pair(a, b, 8, random.Random(0))
    assert len(a) == 5 and b == [100, 101, 102]
    assert a == list(range(a[0], a[0] + 5))  # a contiguous run: tokens go from the ends only
    seen_fronts = set()
    for seed in range(20):
        a = list(range(10))
        truncate_pair(a, [], 6, random.Random(seed))
        seen_fronts.add(a[0])
    assert len(seen_fronts) > 1 and 0 in seen_fronts  # sometimes the front, sometimes only the back
    a, b = [1, 2], [3]
    truncate_pair(a, b, 5, random.Random(0))
    assert (a, b) == ([1, 2], [3])


def test_other_document_is_never_the_own_and_weighted_by_sentences():
    # documents of 1, 2 and 7 sentences
    docs = TokenizedDocuments.from_ids([[[1]], [[2], [3]], [[k] for k in range(10, 17)]])
    rng = random.Random(0)
    counts = np.bincount([other_document(docs.doc_bounds, 0, rng) for _ in range(9000)], minlength=3)
    assert counts[0] == 0
    assert abs(counts[2] / counts.sum() - 7 / 9) < 0.03  # 7 of the 9 other sentences are in document 2
    assert {other_document(docs.doc_bounds, 2, rng) for _ in range(200)} == {0, 1}


def test_empty_sentences_and_documents_are_dropped():
    docs = TokenizedDocuments.from_ids([[[1, 2], [], [3]], [[]], [[4]]])
    assert docs.n_documents == 2 and docs.doc_bounds.tolist() == [0, 2, 3]
    assert docs.sentences(0) == [[1, 2], [3]] and docs.sentences(1) == [[4]]


def test_pairs_follow_the_reference_structure():
    docs = synthetic_documents(150)
    cols = pair_instances(docs, TEMPLATE, 64, PairOptions(), seed=1)
    n = len(cols["input_ids"])
    assert n > 800
    own_positions: dict[int, list[int]] = {}
    for ids, types, length, is_random in zip(*(cols[k] for k in ("input_ids", "token_type_ids", "length",
                                                                 "is_random_next"))):
        assert length == len(ids) <= 64
        a, b = split(ids, types)
        doc_a = {t // DOC for t in a}
        doc_b = {t // DOC for t in b}
        assert len(doc_a) == 1 and len(doc_b) == 1  # each segment from one document
        assert is_run_of_runs(a) and is_run_of_runs(b)
        if is_random:
            assert doc_b != doc_a  # B from another document
            own = a
        else:
            assert doc_b == doc_a and a[-1] < b[0]  # B is what follows A
            own = a + b
        own_positions.setdefault(doc_a.pop(), []).extend(own)
    # Within a document, instances walk through the text in order and never reuse a token, also when a random
    # B put the chunk's unused sentences back.
    for d, positions in own_positions.items():
        assert is_run_of_runs(positions), d
    # ... and lose only what truncation cuts (about 5% here; about 27% if a random B dropped the rest of its chunk).
    covered = sum(len(p) for p in own_positions.values())
    assert covered / len(docs.tokens) > 0.9


def test_about_half_of_the_second_segments_are_random():
    # Long documents at the full target: one-sentence chunks (always a random B) are rare, so the share is
    # random_next_prob plus a little (sd ~0.013 over ~1,500 instances).
    docs = synthetic_documents(40, sentences=(200, 201))
    share = np.mean(pair_instances(docs, TEMPLATE, 64, PairOptions(short_seq_prob=0.0), seed=1)["is_random_next"])
    assert 0.46 < share < 0.56, share
    never = pair_instances(docs, TEMPLATE, 64, PairOptions(short_seq_prob=0.0, random_next_prob=0.0), seed=1)
    assert 0 < np.mean(never["is_random_next"]) < 0.05  # only one-sentence chunks at a document's end
    always = pair_instances(docs, TEMPLATE, 64, PairOptions(random_next_prob=1.0), seed=1)
    assert all(always["is_random_next"])


def test_short_seq_prob_shortens_about_that_share_of_documents():
    docs = synthetic_documents(500, sentences=(60, 61), tokens=(6, 11))  # ~500 tokens each, many instances
    budget = 64 - TEMPLATE.n_special

    def short_share(p: float) -> float:
        short = 0
        for d in range(docs.n_documents):
            pairs = document_pairs(docs, d, budget, PairOptions(short_seq_prob=p), random.Random(d))
            # a document at the full target fills (nearly) every instance to the budget; one with a shorter
            # target (drawn from 2..budget) fills none when the draw is below budget - 10
            short += not any(len(a) + len(b) == budget for a, b, _ in pairs)
        return short / docs.n_documents

    assert short_share(0.0) == 0.0
    # P(short document) = p * P(target < budget - 10) = 0.1 * 50/60 ~ 0.083 (sd ~0.012 over 500 documents)
    assert 0.05 < short_share(0.1) < 0.12
    assert 0.33 < short_share(0.5) < 0.5


def test_same_seed_same_pairs_other_seed_other_pairs():
    docs = synthetic_documents(40)
    a = pair_instances(docs, TEMPLATE, 64, PairOptions(), seed=3)
    assert a == pair_instances(docs, TEMPLATE, 64, PairOptions(), seed=3)
    assert a["input_ids"] != pair_instances(docs, TEMPLATE, 64, PairOptions(), seed=4)["input_ids"]


def test_pair_errors():
    one_doc = TokenizedDocuments.from_ids([[[5, 6], [7]]])
    with pytest.raises(DataError, match="two documents"):
        pair_instances(one_doc, TEMPLATE, 64, PairOptions(), seed=0)
    with pytest.raises(ConfigError, match="no room"):
        pair_instances(synthetic_documents(3), TEMPLATE, 4, PairOptions(), seed=0)
    with pytest.raises(ConfigError, match="random_next_prob"):
        PairOptions(random_next_prob=1.5)


# ------------------------------------------------------------------------------------- real tokenizer, datamodule

WORDS = ("cat dog bird fish horse river mountain city house garden music paper window table chair "
         "school market summer winter morning evening").split()


def write_corpus(path: Path, n_docs: int = 60, seed: int = 0) -> Path:
    rng = random.Random(seed)
    docs = ["\n".join(" ".join(rng.choices(WORDS, k=rng.randint(4, 12))) + " ." for _ in range(rng.randint(3, 12)))
            for _ in range(n_docs)]
    path.write_text("\n\n".join(docs) + "\n", encoding="utf-8")
    return path


def test_pair_datamodule_batches_have_both_token_types(tmp_path, minilm_path):
    tok = AutoTokenizer.from_pretrained(minilm_path)
    f = write_corpus(tmp_path / "c.txt")
    dm = CorpusDataModule(CorpusSource(path=str(f)), tok, max_seq_length=48, cache_dir=tmp_path / "cache",
                          batch_size=16, val_size=8, instances="pairs")
    dm.prepare_data()
    dm.setup("fit")
    assert all(n <= 48 for n in dm.train["length"])
    batch = next(iter(dm.train_dataloader()))
    assert set(batch) == {"input_ids", "token_type_ids", "attention_mask"}
    assert batch["token_type_ids"].shape == batch["input_ids"].shape
    assert (batch["token_type_ids"] == 1).any(dim=1).all()  # every instance has a B segment
    assert ((batch["token_type_ids"] == 1) <= batch["attention_mask"].bool()).all()  # padding is type 0
    assert (batch["input_ids"] == tok.sep_token_id).sum(1).eq(2).all()
    assert dm.summary()["instances"] == "pairs" and dm.summary()["pairs"] == {"short_seq_prob": 0.1,
                                                                              "random_next_prob": 0.5}
    single = CorpusDataModule(CorpusSource(path=str(f)), tok, max_seq_length=48, cache_dir=tmp_path / "cache")
    single.setup("fit")
    assert "token_type_ids" not in next(iter(single.train_dataloader()))
    with pytest.raises(ConfigError, match="stage.instances"):
        CorpusDataModule(CorpusSource(path=str(f)), tok, instances="triples")


def test_pair_cache_is_keyed_by_instances_options_and_seed(tmp_path, minilm_path, monkeypatch):
    tok = AutoTokenizer.from_pretrained(minilm_path)
    f = write_corpus(tmp_path / "c.txt")
    cache = tmp_path / "cache"
    src = CorpusSource(path=str(f))

    def entries() -> int:
        return len([p for p in (cache / "corpus").iterdir() if p.is_dir()])

    single = packed_corpus(src, tok, 48, cache)
    pairs = packed_corpus(src, tok, 48, cache, "pairs", PairOptions(), seed=1)
    assert entries() == 2 and "token_type_ids" not in single.column_names and "token_type_ids" in pairs.column_names

    def fail(*a, **k):
        raise AssertionError("the corpus was read again instead of loaded from the cache")

    monkeypatch.setattr(build_mod, "document_dataset", fail)
    assert packed_corpus(src, tok, 48, cache, "pairs", PairOptions(), seed=1)["input_ids"] == pairs["input_ids"]
    assert packed_corpus(src, tok, 48, cache, "single", PairOptions(), seed=7)["input_ids"] == single["input_ids"]
    monkeypatch.undo()
    other_seed = packed_corpus(src, tok, 48, cache, "pairs", PairOptions(), seed=2)
    packed_corpus(src, tok, 48, cache, "pairs", PairOptions(short_seq_prob=0.5), seed=1)
    packed_corpus(src, tok, 48, cache, "pairs", PairOptions(random_next_prob=0.2), seed=1)
    assert entries() == 5 and other_seed["input_ids"] != pairs["input_ids"]


def test_general_stage_config_wires_instances(compose_cfg, tmp_path, minilm_path):
    from tinydistill.stages import general
    from tinydistill.stages.corpus_training import corpus_datamodule

    tok = AutoTokenizer.from_pretrained(minilm_path)
    f = write_corpus(tmp_path / "c.txt")
    cfg = compose_cfg("stage=general", f"stage.corpus.path={f}")
    assert cfg.stage.instances == "single" and cfg.data.pad_to_max_length is False
    p = general.plan(cfg)
    dm = corpus_datamodule(p.corpus, p.ctx, tok, mlm_probability=0.0)
    assert dm.instances == "single" and not dm.pad_to_max_length
    cfg = compose_cfg("stage=general", f"stage.corpus.path={f}", "stage.instances=pairs", "stage.pairs.short_seq_prob=0.3",
                      "data.pad_to_max_length=true", "seed=5")
    p = general.plan(cfg)
    dm = corpus_datamodule(p.corpus, p.ctx, tok, mlm_probability=0.0)
    assert dm.instances == "pairs" and dm.pairs == PairOptions(short_seq_prob=0.3) and dm.seed == 5
    assert dm.pad_to_max_length and not dm.group_by_length
