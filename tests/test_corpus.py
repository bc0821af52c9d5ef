"""General-distillation corpus: reading documents, packing sentences into instances, caching, batching."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch
from transformers import AutoTokenizer

import tinydistill.data.corpus_build as build_mod
from tinydistill.data.corpus import CorpusDataModule
from tinydistill.data.corpus_build import packed_corpus
from tinydistill.data.corpus_source import CorpusSource, documents_from_lines, iter_documents
from tinydistill.data.packing import pack_corpus, pack_document, special_tokens
from tinydistill.errors import ConfigError, DataError

# Three documents; each uses its own words, so a packed instance mixing two documents is easy to spot.
DOCS = [
    ["the cat sat on the mat .", "the cat was happy .", "a cat likes milk and fish ."],
    ["rain fell over the old harbour all night long .", "ships stayed in port ."],
    ["one short line ."],
]
DOC_WORDS = [{"cat", "mat", "happy", "milk", "fish", "likes", "sat"}, {"rain", "harbour", "ships", "port", "night"}, {"short"}]


def write_corpus(path: Path, docs=DOCS, blank: str = "\n") -> Path:
    path.write_text(blank.join("\n".join(d) + "\n" for d in docs), encoding="utf-8")
    return path


@pytest.fixture(scope="module")
def tok(minilm_path):
    return AutoTokenizer.from_pretrained(minilm_path)


def test_documents_from_lines_blank_lines_separate_documents():
    lines = ["  a .\n", "b .\n", "\n", "   \n", "\n", "c .\r\n", "\t\n", "d .", ""]
    assert list(documents_from_lines(lines)) == [["a .", "b ."], ["c ."], ["d ."]]
    assert list(documents_from_lines(lines, "documents")) == [["a ."], ["b ."], ["c ."], ["d ."]]
    assert list(documents_from_lines(["\n", " \n"])) == []


def test_pack_document_rules_by_hand():
    # budget 5: [1,2] + [3,4,5] is exactly 5 -> one instance; [6] no longer fits -> a new one; the 7-token
    # sentence fits nowhere -> [6] is closed and the sentence cut into 5 + 2, and [14] continues the last piece.
    sents = [[1, 2], [3, 4, 5], [6], [], [7, 8, 9, 10, 11, 12, 13], [14]]
    assert pack_document(sents, 5, [100], [101]) == [
        [100, 1, 2, 3, 4, 5, 101],
        [100, 6, 101],
        [100, 7, 8, 9, 10, 11, 101],
        [100, 12, 13, 14, 101],
    ]
    assert pack_document([[1, 2], [3, 4, 5, 6]], 5) == [[1, 2], [3, 4, 5, 6]]
    assert pack_document([], 5) == [] and pack_document([[]], 5) == []
    with pytest.raises(ConfigError):
        pack_document([[1]], 0)


def test_pack_document_exact_budget_boundaries():
    assert pack_document([[1, 2, 3], [4, 5]], 5) == [[1, 2, 3, 4, 5]]
    assert pack_document([[1, 2, 3], [4, 5, 6]], 5) == [[1, 2, 3], [4, 5, 6]]
    assert pack_document([[1] * 10], 5) == [[1] * 5, [1] * 5]


def test_special_tokens_of_bert_tokenizer(tok):
    assert special_tokens(tok) == ([tok.cls_token_id], [tok.sep_token_id])


@pytest.mark.parametrize("max_len", [12, 20, 128])
def test_packed_instances_stay_in_one_document_and_keep_every_token(tok, max_len):
    ds = pack_corpus(DOCS, tok, max_len)
    assert len(ds) >= len(DOCS)
    vocab = tok.convert_ids_to_tokens
    per_doc_content: list[list[int]] = []
    doc_of_instance = []
    for row in ds:
        ids = row["input_ids"]
        assert row["length"] == len(ids) <= max_len
        assert ids[0] == tok.cls_token_id and ids[-1] == tok.sep_token_id
        words = set(vocab(ids[1:-1]))
        owners = [i for i, w in enumerate(DOC_WORDS) if words & w]
        assert len(owners) == 1, (words, owners)  # never two documents in one instance
        if not doc_of_instance or doc_of_instance[-1] != owners[0]:
            per_doc_content.append([])
        doc_of_instance.append(owners[0])
        per_doc_content[-1].extend(ids[1:-1])
    assert doc_of_instance == sorted(doc_of_instance)  # documents in order
    # packing loses nothing: each document's content is its sentences' tokens, in order
    for d, content in enumerate(per_doc_content):
        expected = [t for s in DOCS[d] for t in tok(s, add_special_tokens=False)["input_ids"]]
        assert content == expected
    if max_len == 128:
        assert len(ds) == 3  # every document fits in one instance


def test_read_documents_errors(tmp_path, tok):
    with pytest.raises(DataError, match="corpus file not found"):
        list(iter_documents(CorpusSource(path=str(tmp_path / "nope.txt"))))
    (tmp_path / "empty.txt").write_text("")
    with pytest.raises(DataError, match="empty"):
        list(iter_documents(CorpusSource(path=str(tmp_path / "empty.txt"))))
    (tmp_path / "blank.txt").write_text("\n \n\n")
    with pytest.raises(DataError, match="no text"):
        packed_corpus(CorpusSource(path=str(tmp_path / "blank.txt")), tok, 16, tmp_path / "cache")
    (tmp_path / "latin1.txt").write_bytes("one line .\n\ncaf\xe9 .\n".encode("latin-1"))
    with pytest.raises(DataError, match="latin1.txt"):  # raised while the documents are written: still one line
        packed_corpus(CorpusSource(path=str(tmp_path / "latin1.txt")), tok, 16, tmp_path / "cache")


def test_source_needs_exactly_one_of_path_and_dataset():
    with pytest.raises(ConfigError, match="exactly one"):
        CorpusSource()
    with pytest.raises(ConfigError, match="exactly one"):
        CorpusSource(path="a.txt", dataset="wikitext")
    with pytest.raises(ConfigError, match="layout"):
        CorpusSource(path="a.txt", layout="paragraphs")
    with pytest.raises(ConfigError, match="unknown keys"):
        CorpusSource.from_config({"path": "a.txt", "colum": "x"})


def test_cache_is_reused_and_keyed_by_content_and_length(tmp_path, tok, monkeypatch):
    f = write_corpus(tmp_path / "c.txt")
    cache = tmp_path / "cache"
    first = packed_corpus(CorpusSource(path=str(f)), tok, 16, cache)
    assert len([p for p in (cache / "corpus").iterdir() if p.is_dir()]) == 1

    def fail(*a, **k):
        raise AssertionError("the corpus was read again instead of loaded from the cache")

    monkeypatch.setattr(build_mod, "document_dataset", fail)
    again = packed_corpus(CorpusSource(path=str(f)), tok, 16, cache)
    assert again["input_ids"][:] == first["input_ids"][:]
    monkeypatch.undo()

    packed_corpus(CorpusSource(path=str(f)), tok, 20, cache)  # another length: another entry
    write_corpus(f, DOCS[:2])  # changed content: another entry, with the new content
    changed = packed_corpus(CorpusSource(path=str(f)), tok, 16, cache)
    assert len([p for p in (cache / "corpus").iterdir() if p.is_dir()]) == 3
    assert len(changed) < len(first)


def test_datasets_corpus_by_name_with_data_files(tmp_path, tok):
    rows = [{"text": "\n".join(d), "id": i} for i, d in enumerate(DOCS)]
    f = tmp_path / "docs.jsonl"
    f.write_text("".join(json.dumps(r) + "\n" for r in rows))
    src = CorpusSource(dataset="json", data_files=str(f), text_column="text", layout="documents")
    assert list(iter_documents(src)) == DOCS
    ds = packed_corpus(src, tok, 128, tmp_path / "cache")
    assert len(ds) == 3
    with pytest.raises(DataError, match="no column 'body'"):
        list(iter_documents(CorpusSource(dataset="json", data_files=str(f), text_column="body")))
    # rows as lines of a text file, blank rows between documents (wikitext style)
    lines = [{"text": s} for d in DOCS for s in [*d, ""]]
    g = tmp_path / "lines.jsonl"
    g.write_text("".join(json.dumps(r) + "\n" for r in lines))
    assert list(iter_documents(CorpusSource(dataset="json", data_files=str(g)))) == DOCS


def test_datamodule_batches_and_validation_split(tmp_path, tok):
    f = write_corpus(tmp_path / "c.txt", DOCS * 10)
    dm = CorpusDataModule(
        CorpusSource(path=str(f)), tok, max_seq_length=12, cache_dir=tmp_path / "cache", batch_size=4,
        eval_batch_size=5, val_size=6, group_by_length=True,
    )
    dm.prepare_data()
    dm.setup("fit")
    total = len(pack_corpus(DOCS * 10, tok, 12))
    assert len(dm.val) == 6 and len(dm.train) == total - 6
    batch = next(iter(dm.train_dataloader()))
    assert set(batch) == {"input_ids", "attention_mask"}
    assert batch["input_ids"].shape[0] == 4 and batch["input_ids"].shape[1] <= 12
    lengths = batch["attention_mask"].sum(1)
    assert int(lengths.max()) == batch["input_ids"].shape[1]  # padded to the batch's longest only
    for row, n in zip(batch["input_ids"], lengths):
        assert row[int(n) - 1] == tok.sep_token_id and (row[int(n):] == tok.pad_token_id).all()
    (val_loader,) = dm.val_dataloader()
    assert sum(b["input_ids"].shape[0] for b in val_loader) == 6

    none = CorpusDataModule(CorpusSource(path=str(f)), tok, max_seq_length=12, cache_dir=tmp_path / "cache")
    none.setup("fit")
    assert none.val is None and none.val_dataloader() == [] and len(none.train) == total


def test_optional_masking_masks_inputs_for_both_models(tmp_path, tok):
    f = write_corpus(tmp_path / "c.txt", DOCS * 20)
    dm = CorpusDataModule(CorpusSource(path=str(f)), tok, max_seq_length=32, cache_dir=tmp_path / "cache",
                          batch_size=64, mlm_probability=0.5)
    dm.setup("fit")
    torch.manual_seed(0)
    batch = next(iter(dm.train_dataloader()))
    assert not (batch["input_ids"] == tok.mask_token_id).any()  # the loader (maybe a worker) only pads
    state = torch.get_rng_state()
    masked = dm.on_after_batch_transfer(dict(batch), 0)  # masked in the training process, after the transfer
    assert not torch.equal(state, torch.get_rng_state())  # from the global random state checkpoints restore
    assert "labels" not in masked
    assert (masked["input_ids"] == tok.mask_token_id).any()
    assert (masked["attention_mask"] == batch["attention_mask"]).all()
    with pytest.raises(ConfigError, match="mlm_probability"):
        CorpusDataModule(CorpusSource(path=str(f)), tok, mlm_probability=1.5)
