"""GLUE TSV reading and the DataModule, on real rows and on malformed files."""

from dataclasses import replace
from pathlib import Path

import pytest
import torch
from datasets import ClassLabel, Dataset, Features, Value
from transformers import AutoTokenizer

from tinydistill.data.glue import TaskDataModule, load_examples, remap_hub_labels, tokenized_split
from tinydistill.data.glue_tsv import glue_file, read_glue_tsv, table_to_examples, write_glue_tsv
from tinydistill.data.tasks import get_task
from tinydistill.errors import ConfigError, DataError

MRPC_HEADER = "\ufeffQuality\t#1 ID\t#2 ID\t#1 String\t#2 String\n"


def write(path: Path, text: str) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text, encoding="utf-8")
    return path


def test_real_mrpc_counts_labels_and_bom(data_dir):
    task = get_task("mrpc")
    table = read_glue_tsv(glue_file(data_dir, task, "train"), task)
    assert table.header[0] == "Quality"  # the byte-order mark is not part of the column name
    ex = table_to_examples(table, task)
    assert len(ex["label"]) == 3668
    assert sum(ex["label"]) == 2474
    assert ex["text_a"][0].startswith("Amrozi accused his brother")
    dev = table_to_examples(read_glue_tsv(glue_file(data_dir, task, "dev"), task), task)
    assert (len(dev["label"]), sum(dev["label"])) == (408, 279)


def test_real_cola_has_no_header_and_quotes_are_literal(data_dir):
    task = get_task("cola")
    ex = table_to_examples(read_glue_tsv(glue_file(data_dir, task, "train"), task), task)
    assert len(ex["label"]) == 8551  # the first row is data, not a header
    assert "text_b" not in ex


def test_quotes_are_literal_not_csv_quoting(tmp_path):
    # With CSV quoting, the opening quote would swallow the newline and merge both rows.
    f = write(tmp_path / "train.tsv", 'sentence\tlabel\n" unbalanced quote .\t1\nnext row .\t0\n')
    ex = table_to_examples(read_glue_tsv(f, get_task("sst2")), get_task("sst2"))
    assert ex["text_a"] == ['" unbalanced quote .', "next row ."] and ex["label"] == [1, 0]


def test_real_stsb_scores_are_floats(data_dir):
    task = get_task("stsb")
    ex = table_to_examples(read_glue_tsv(glue_file(data_dir, task, "dev"), task), task)
    assert len(ex["label"]) == 1500
    assert ex["label"][0] == 5.0 and all(0.0 <= s <= 5.0 for s in ex["label"])


def test_short_row_names_file_and_line(tmp_path):
    f = write(tmp_path / "train.tsv", MRPC_HEADER + "1\t1\t2\tA sentence .\tAnother .\n0\t3\t4\tonly one text\n")
    with pytest.raises(DataError, match=r"train\.tsv: line 3: expected at least 5 tab-separated columns, found 4"):
        read_glue_tsv(f, get_task("mrpc"))


def test_bad_label_names_file_line_and_allowed_values(tmp_path):
    f = write(tmp_path / "dev.tsv", "index\tsentence1\tsentence2\tlabel\n0\ta\tb\tentailment\n1\ta\tb\tmaybe\n")
    with pytest.raises(DataError, match=r"dev\.tsv: line 3: label 'maybe' is not one of \['entailment', 'not_entailment'\]"):
        read_glue_tsv(f, get_task("rte"))


def test_non_numeric_regression_label(tmp_path):
    header = "index\tgenre\tfilename\tyear\told_index\tsource1\tsource2\tsentence1\tsentence2\tscore\n"
    f = write(tmp_path / "dev.tsv", header + "0\tg\tf\ty\t0\tn\tn\ta\tb\thigh\n")
    with pytest.raises(DataError, match=r"line 2: label 'high' is not a number"):
        read_glue_tsv(f, get_task("stsb"))


def test_missing_column_and_missing_file(tmp_path):
    f = write(tmp_path / "train.tsv", "sentence\tlabels\nfine .\t1\n")
    with pytest.raises(DataError, match=r"line 1 \(header\): missing label column 'label'"):
        read_glue_tsv(f, get_task("sst2"))
    with pytest.raises(DataError, match=r"nowhere\.tsv: file not found"):
        read_glue_tsv(tmp_path / "nowhere.tsv", get_task("sst2"))


def test_unknown_task():
    with pytest.raises(ConfigError, match="unknown task 'mrcp'; expected one of: cola, mnli, mrpc"):
        get_task("mrcp")


def test_write_then_read_roundtrip(tmp_path):
    task = get_task("rte")
    rows = [["0", 'He said "no" .', "It was said .", "entailment"]]
    write_glue_tsv(tmp_path / "t.tsv", ["index", "sentence1", "sentence2", "label"], rows)
    assert read_glue_tsv(tmp_path / "t.tsv", task).rows == rows
    assert not list(tmp_path.glob("*.tmp"))


def test_mnli_hub_labels_are_remapped_by_name():
    # The hub's MNLI order is (entailment, neutral, contradiction); ours (reference) is
    # (contradiction, entailment, neutral).
    feats = Features({"label": ClassLabel(names=["entailment", "neutral", "contradiction"])})
    ds = Dataset.from_dict({"label": [0, 1, 2]}, features=feats)
    out = remap_hub_labels(ds, get_task("mnli"))
    names = get_task("mnli").label_names
    assert [names[i] for i in out["label"]] == ["entailment", "neutral", "contradiction"]


#: The hub's (nyu-mll/glue) ClassLabel names of each classification task, in the hub's id order.
HUB_NAMES = {"cola": ["unacceptable", "acceptable"], "sst2": ["negative", "positive"],
             "mrpc": ["not_equivalent", "equivalent"], "qqp": ["not_duplicate", "duplicate"],
             "mnli": ["entailment", "neutral", "contradiction"], "qnli": ["entailment", "not_entailment"],
             "rte": ["entailment", "not_entailment"], "wnli": ["not_entailment", "entailment"]}


@pytest.mark.parametrize("name", sorted(HUB_NAMES))
def test_glue_labels_are_named_as_the_hub_names_them(name):
    """Every classification preset names its classes as the hub does (what an exported model's id2label and predict
    print), so the hub's ids are mapped by name (SST-2's were refused: hub labels 'negative', 'positive' not in
    ('0', '1')); the hub's order is the files' order (0, 1) but for MNLI's (the reference's, kept)."""
    task = get_task(name)
    assert sorted(task.label_names) == sorted(HUB_NAMES[name])
    ds = Dataset.from_dict({"label": list(range(len(HUB_NAMES[name])))},
                           features=Features({"label": ClassLabel(names=HUB_NAMES[name])}))
    ids = remap_hub_labels(ds, task)["label"]
    assert [task.label_names[i] for i in ids] == HUB_NAMES[name]
    assert (ids == list(range(len(ids)))) == (name != "mnli")


@pytest.mark.parametrize(("name", "split"), [("cola", "dev"), ("sst2", "dev"), ("mrpc", "dev"), ("wnli", "train"),
                                             ("rte", "dev")])
def test_named_labels_keep_the_files_label_ids_and_the_tokenised_cache(name, split, data_dir, tmp_path, minilm_path):
    """The presets as they were (the files' values as names) and as they are read every real file to the same label
    ids, under the same tokenisation cache entry: named labels change no training figure and tokenise nothing again."""
    task = get_task(name)
    before = replace(task, label_names=task.label_values, file_labels=None)
    assert load_examples(task, split, data_dir)["label"] == load_examples(before, split, data_dir)["label"]
    tok = AutoTokenizer.from_pretrained(minilm_path)
    old = tokenized_split(before, split, tok, 64, data_dir, tmp_path / "cache")
    new = tokenized_split(task, split, tok, 64, data_dir, tmp_path / "cache")
    assert len(list((tmp_path / "cache" / "glue" / name).iterdir())) == 1
    assert new["labels"] == old["labels"] and len(set(new["labels"])) == 2


def test_tokenized_cache_is_reused_and_invalidated(tmp_path, minilm_path):
    tok = AutoTokenizer.from_pretrained(minilm_path)
    task = get_task("rte")
    f = write(tmp_path / "glue" / "RTE" / "train.tsv", "index\tsentence1\tsentence2\tlabel\n0\tA cat .\tA dog .\tentailment\n")
    a = tokenized_split(task, "train", tok, 16, tmp_path, tmp_path / "cache")
    cached = list((tmp_path / "cache" / "glue" / "rte").iterdir())
    assert len(cached) == 1
    b = tokenized_split(task, "train", tok, 16, tmp_path, tmp_path / "cache")
    assert a["input_ids"] == b["input_ids"] and len(list((tmp_path / "cache" / "glue" / "rte").iterdir())) == 1
    write(f, "index\tsentence1\tsentence2\tlabel\n0\tA bird .\tA dog .\tnot_entailment\n")
    c = tokenized_split(task, "train", tok, 16, tmp_path, tmp_path / "cache")
    assert c["labels"] == [1] and len(list((tmp_path / "cache" / "glue" / "rte").iterdir())) == 2


def test_tokenizer_fingerprint_is_hashed_once_per_tokenizer_and_again_after_a_change(minilm_path, monkeypatch):
    import datasets

    from tinydistill.data.glue import tokenizer_fingerprint

    calls = []
    hash_ = datasets.fingerprint.Hasher.hash
    monkeypatch.setattr(datasets.fingerprint.Hasher, "hash", lambda value: calls.append(1) or hash_(value))
    tok = AutoTokenizer.from_pretrained(minilm_path)
    first = tokenizer_fingerprint(tok)
    assert first == hash_(tok) and tokenizer_fingerprint(tok) == first and len(calls) == 1
    other = AutoTokenizer.from_pretrained(minilm_path)  # another object, the same tokenizer: hashed, same value
    assert tokenizer_fingerprint(other) == first and len(calls) == 2
    tok.truncation_side = "left"  # a setting that changes the encoding
    assert tokenizer_fingerprint(tok) not in (first, None) and len(calls) == 3
    other.add_tokens(["zzqxnew"])
    assert tokenizer_fingerprint(other) not in (first, tokenizer_fingerprint(tok)) and len(calls) == 4


def test_datamodule_on_real_mrpc(data_dir, tmp_path, minilm_path):
    tok = AutoTokenizer.from_pretrained(minilm_path)
    dm = TaskDataModule("mrpc", tok, max_seq_length=128, data_dir=str(data_dir), cache_dir=str(tmp_path), batch_size=8)
    dm.prepare_data()
    dm.setup("fit")
    assert len(dm.splits["train"]) == 3668 and len(dm.splits["dev"]) == 408
    batch = next(iter(dm.train_dataloader()))
    assert batch["input_ids"].shape[0] == 8
    assert batch["input_ids"].shape == batch["attention_mask"].shape == batch["token_type_ids"].shape
    # dynamic padding: padded to the longest in the batch, not to max_seq_length
    assert batch["input_ids"].shape[1] == int(batch["attention_mask"].sum(1).max()) <= 128
    assert batch["labels"].dtype == torch.long
    # pairs: [CLS] a [SEP] b [SEP], segment ids 1 on the second text
    first = dm.splits["dev"][0]
    assert first["input_ids"][0] == tok.cls_token_id and first["input_ids"].count(tok.sep_token_id) == 2
    assert first["token_type_ids"].count(1) > 0
    (val,) = dm.val_dataloader()
    assert sum(b["labels"].numel() for b in val) == 408


def test_single_sentence_max_length_truncates(data_dir, tmp_path, minilm_path):
    tok = AutoTokenizer.from_pretrained(minilm_path)
    ds = tokenized_split(get_task("cola"), "dev", tok, 8, data_dir, tmp_path)
    assert max(len(x) for x in ds["input_ids"]) == 8
    assert len(ds) == 1043


def test_load_examples_from_explicit_file(tmp_path):
    f = write(tmp_path / "aug.tsv", "sentence\tlabel\ngood .\t1\nbad .\t0\n")
    ds = load_examples(get_task("sst2"), "train", data_dir=None, file=f)
    assert ds["label"] == [1, 0] and ds["text_a"] == ["good .", "bad ."]


def test_hub_layout_is_renamed_and_remapped(monkeypatch):
    """With no data folder, GLUE comes from nyu-mll/glue; its columns and MNLI labels are normalised."""
    calls = []

    def fake_load_dataset(name, config, split):
        calls.append((name, config, split))
        feats = Features({
            "premise": Value("string"), "hypothesis": Value("string"),
            "label": ClassLabel(names=["entailment", "neutral", "contradiction"]), "idx": Value("int32"),
        })
        return Dataset.from_dict(
            {"premise": ["p0", "p1"], "hypothesis": ["h0", "h1"], "label": [0, 2], "idx": [0, 1]}, features=feats
        )

    monkeypatch.setattr("tinydistill.data.glue.datasets.load_dataset", fake_load_dataset)
    ds = load_examples(get_task("mnli"), "dev_mismatched", data_dir=None)
    assert calls == [("nyu-mll/glue", "mnli", "validation_mismatched")]
    assert sorted(ds.column_names) == ["label", "text_a", "text_b"]
    assert ds["text_a"] == ["p0", "p1"]
    assert [get_task("mnli").label_names[i] for i in ds["label"]] == ["entailment", "contradiction"]


# ------------------------------------------------------------------ empty splits (issue #16)
RTE_HEADER = "index\tsentence1\tsentence2\tlabel\n"


@pytest.mark.parametrize("split", ["train", "dev"])
def test_header_only_split_is_a_data_error_and_is_never_cached(tmp_path, minilm_path, split):
    tok = AutoTokenizer.from_pretrained(minilm_path)
    f = write(tmp_path / "glue" / "RTE" / f"{split}.tsv", RTE_HEADER + "\n")
    for _ in range(2):  # the rerun gives the same error, not a crash on a cached 0-row split
        with pytest.raises(DataError) as e:
            tokenized_split(get_task("rte"), split, tok, 16, tmp_path, tmp_path / "cache")
        assert str(e.value) == f"{f}: no examples (only a header row)"
    assert not (tmp_path / "cache").exists() or not any((tmp_path / "cache").rglob("*.arrow"))


def test_datamodule_with_header_only_dev_names_the_file(tmp_path, minilm_path):
    tok = AutoTokenizer.from_pretrained(minilm_path)
    write(tmp_path / "glue" / "RTE" / "train.tsv", RTE_HEADER + "0\tA cat .\tA dog .\tentailment\n")
    dev = write(tmp_path / "glue" / "RTE" / "dev.tsv", RTE_HEADER)
    dm = TaskDataModule("rte", tok, 16, str(tmp_path), str(tmp_path / "cache"))
    with pytest.raises(DataError, match=rf"^{dev}: no examples"):
        dm.prepare_data()


def test_empty_headerless_file_is_a_data_error(tmp_path):
    f = write(tmp_path / "train.tsv", "")
    with pytest.raises(DataError, match=r"train\.tsv: no examples \(empty file\)"):
        read_glue_tsv(f, get_task("cola"))


def test_an_empty_or_broken_cache_is_rebuilt_not_trusted(tmp_path, minilm_path, caplog):
    # earlier versions cached 0-row splits, which then failed every rerun with an IndexError
    import shutil

    tok = AutoTokenizer.from_pretrained(minilm_path)
    task = get_task("rte")
    write(tmp_path / "glue" / "RTE" / "train.tsv", RTE_HEADER + "0\tA cat .\tA dog .\tentailment\n")
    good = tokenized_split(task, "train", tok, 16, tmp_path, tmp_path / "cache")
    (cache,) = (tmp_path / "cache" / "glue" / "rte").iterdir()
    for broken in (Dataset.from_dict({"input_ids": [], "labels": []}), None):
        shutil.rmtree(cache)
        if broken is None:
            cache.mkdir()
            (cache / "state.json").write_text("{not json")
        else:
            broken.save_to_disk(str(cache))
        with caplog.at_level("WARNING", logger="tinydistill.data.glue"):
            again = tokenized_split(task, "train", tok, 16, tmp_path, tmp_path / "cache")
        assert again["input_ids"] == good["input_ids"]
        assert str(cache) in caplog.text and "tokenising again" in caplog.text
        caplog.clear()
