"""A user's own data set as a task (issue #14): files in four formats, single texts and pairs, string and integer
classes, regression, metrics, the tokenised cache, and every bad input as one line naming file, row and column."""

from __future__ import annotations

import csv
import json
import os
from pathlib import Path

import pytest
import torch
from transformers import AutoTokenizer

from tests.conftest import (
    STOP,
    TINY_STUDENT,
    VEC_WORDS,
    assert_nothing_written,
    assert_one_line,
    interrupt_chunk_write,
    small_cfg,
    tiny_mlm_model,
)
from tinydistill.data.files import examples, read_table, task_from_config, task_from_argument, write_table
from tinydistill.data.glue import TaskDataModule, tokenized_split
from tinydistill.data.tasks import get_task
from tinydistill.errors import ConfigError, DataError
from tinydistill.metrics import compute_metrics

TICKETS = [
    {"subject": "printer broken", "body": "the printer on floor 2 jams", "queue": "it"},
    {"subject": "invoice", "body": "please pay invoice 17", "queue": "finance"},
    {"subject": "holiday", "body": "how many days off do i have", "queue": "hr"},
    {"subject": "laptop", "body": "my laptop will not start", "queue": "it"},
    {"subject": "salary", "body": "my salary was late", "queue": "finance"},
    {"subject": "new hire", "body": "onboarding for anna", "queue": "hr"},
]
SUFFIX = {"csv": ".csv", "tsv": ".tsv", "jsonl": ".jsonl", "parquet": ".parquet"}


def write_rows(path: Path, rows: list[dict]) -> Path:
    """`rows` in the format of `path`'s extension (values as given: JSONL and Parquet keep their types)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    header = list(rows[0])
    if path.suffix == ".parquet":
        import pyarrow as pa
        import pyarrow.parquet as pq

        pq.write_table(pa.Table.from_pylist(rows), path)
    elif path.suffix == ".jsonl":
        path.write_text("".join(json.dumps(r) + "\n" for r in rows), encoding="utf-8")
    elif path.suffix == ".tsv":
        path.write_text("\n".join(["\t".join(header)] + ["\t".join(str(r[c]) for c in header) for r in rows]) + "\n")
    else:
        with open(path, "w", newline="", encoding="utf-8") as f:
            w = csv.DictWriter(f, header)
            w.writeheader()
            w.writerows(rows)
    return path


def tickets(tmp_path: Path, fmt: str = "csv", train=TICKETS, dev=TICKETS[:3]) -> tuple[Path, Path]:
    return write_rows(tmp_path / f"train{SUFFIX[fmt]}", train), write_rows(tmp_path / f"dev{SUFFIX[fmt]}", dev)


def node(train, dev, **keys) -> dict:
    return {"name": "tickets", "train": str(train), "dev": str(dev), "text": ["subject", "body"], "label": "queue",
            "labels": None, "metric": None, "max_seq_length": 32, **keys}


# ------------------------------------------------------------------ reading


@pytest.mark.parametrize("fmt", ["csv", "tsv", "jsonl", "parquet"])
def test_pairs_with_string_labels_in_every_format(tmp_path, fmt):
    train, dev = tickets(tmp_path, fmt)
    task = task_from_config(node(train, dev))
    assert task.is_pair and not task.is_glue and not task.is_regression
    assert task.label_names == ("finance", "hr", "it") and task.num_labels == 3  # sorted
    assert (task.metric, task.metrics, task.dev_splits, task.length) == ("accuracy", ("accuracy",), ("dev",), 32)
    ex = examples(task, "train")
    assert ex["text_a"][0] == "printer broken" and ex["text_b"][1] == "please pay invoice 17"
    assert ex["label"] == [2, 0, 1, 2, 0, 1]
    assert examples(task, "dev")["label"] == [2, 0, 1]


@pytest.mark.parametrize("fmt", ["csv", "jsonl", "parquet"])
def test_single_text_with_integer_classes_in_numeric_order(tmp_path, fmt):
    rows = [{"text": f"review {i}", "stars": s} for i, s in enumerate([10, 2, 9, 2, 10])]
    train, dev = write_rows(tmp_path / f"t{SUFFIX[fmt]}", rows), write_rows(tmp_path / f"d{SUFFIX[fmt]}", rows[:2])
    task = task_from_config({"name": "stars", "train": str(train), "dev": str(dev), "text": "text", "label": "stars"})
    assert not task.is_pair and task.label_names == ("2", "9", "10")  # numerically, not as text
    assert examples(task, "train")["label"] == [2, 0, 1, 0, 2]


def test_tsv_reads_quotes_as_characters(tmp_path):
    train = tmp_path / "t.tsv"
    train.write_text('text\tlabel\n" unbalanced quote\tpos\nnext row\tneg\n')
    task = task_from_config({"name": "q", "train": str(train), "dev": str(train), "text": ["text"], "label": "label"})
    assert examples(task, "train")["text_a"] == ['" unbalanced quote', "next row"]


@pytest.mark.parametrize("fmt", ["csv", "jsonl"])
def test_float_labels_make_a_regression(tmp_path, fmt):
    rows = [{"a": f"a man plays {i}", "b": f"a man is playing {i}", "score": s} for i, s in
            enumerate([0.5, 4.0, 2.25, 3.0])]
    train = write_rows(tmp_path / f"t{SUFFIX[fmt]}", rows)
    task = task_from_config({"name": "sts", "train": str(train), "dev": str(train), "text": ["a", "b"],
                             "label": "score"})
    assert task.is_regression and task.num_labels == 1
    assert (task.metric, task.metrics) == ("spearman", ("pearson", "spearman"))
    assert examples(task, "dev")["label"] == [0.5, 4.0, 2.25, 3.0]


def test_a_correlation_metric_makes_integer_labels_a_regression(tmp_path):
    rows = [{"text": f"t {i}", "score": i % 3} for i in range(6)]
    train = write_rows(tmp_path / "t.jsonl", rows)
    task = task_from_config({"name": "s", "train": str(train), "dev": str(train), "label": "score", "metric": "pearson"})
    assert task.is_regression and task.metric == "pearson"


def test_explicit_class_list_sets_the_order(tmp_path):
    train, dev = tickets(tmp_path)
    task = task_from_config(node(train, dev, labels=["it", "hr", "finance"], metric="macro_f1"))
    assert task.label_names == ("it", "hr", "finance") and task.metrics == ("macro_f1", "accuracy")
    assert examples(task, "train")["label"] == [0, 2, 1, 0, 2, 1]


def test_glue_names_stay_presets():
    task = task_from_config({"name": "mnli", "max_seq_length": 128})
    assert task.label_names == ("contradiction", "entailment", "neutral") and task.is_glue
    assert task.dev_splits == ("dev_matched", "dev_mismatched") and task.length == 128
    assert task_from_argument("mrpc") == get_task("mrpc")


def test_task_file_for_command_lines(tmp_path):
    train, dev = tickets(tmp_path, "jsonl")
    spec = tmp_path / "tickets.yaml"
    spec.write_text(json.dumps(node(train, dev)))  # JSON is YAML
    assert task_from_argument(str(spec)).label_names == ("finance", "hr", "it")


def test_read_and_write_table_round_trip(tmp_path):
    for fmt in ("csv", "tsv", "jsonl", "parquet"):
        train, dev = tickets(tmp_path / fmt, fmt)
        task = task_from_config(node(train, dev))
        table = read_table(task, train)
        assert table.header == ["subject", "body", "queue"] and (table.text_a_col, table.text_b_col) == (0, 1)
        out = tmp_path / fmt / f"copy{SUFFIX[fmt]}"
        write_table(out, fmt, table.header, table.rows)
        assert read_table(task, out).rows == table.rows


# ------------------------------------------------------------------ metrics


def test_macro_f1_and_multiclass_mcc(tmp_path):
    train, dev = tickets(tmp_path)
    task = task_from_config(node(train, dev, metric="macro_f1"))
    m = compute_metrics(task, torch.tensor([0, 1, 2, 2]), torch.tensor([0, 1, 2, 1]))
    assert m["accuracy"] == pytest.approx(0.75)
    assert m["macro_f1"] == pytest.approx((1 + 2 / 3 + 2 / 3) / 3)
    mcc = task_from_config(node(train, dev, metric="mcc"))
    assert compute_metrics(mcc, torch.tensor([0, 1, 2]), torch.tensor([0, 1, 2]))["mcc"] == pytest.approx(1.0)


def test_binary_metric_needs_two_classes(tmp_path):
    train, dev = tickets(tmp_path)
    with pytest.raises(ConfigError, match=r"task.metric=f1: F1 of the positive class needs two classes, tickets has 3"):
        task_from_config(node(train, dev, metric="f1"))
    with pytest.raises(ConfigError, match=r"task.metric='spearman': tickets is a classification"):
        task_from_config(node(train, dev, labels=["finance", "hr", "it"], metric="spearman"))


# ------------------------------------------------------------------ cache


def test_edited_file_is_tokenised_again(tmp_path, tiny_bert):
    tok = AutoTokenizer.from_pretrained(tiny_bert)
    train, dev = tickets(tmp_path)
    task = task_from_config(node(train, dev))
    first = tokenized_split(task, "train", tok, 32, None, tmp_path / "cache")
    assert list((tmp_path / "cache" / "tasks" / "tickets").iterdir())
    again = tokenized_split(task, "train", tok, 32, None, tmp_path / "cache")
    assert again["input_ids"] == first["input_ids"]
    write_rows(train, [{**TICKETS[0], "subject": "scanner broken"}, *TICKETS[1:]])
    edited = tokenized_split(task_from_config(node(train, dev)), "train", tok, 32, None, tmp_path / "cache")
    assert edited["input_ids"][0] != first["input_ids"][0] and edited["input_ids"][1:] == first["input_ids"][1:]
    single = task_from_config(node(train, dev, text=["body"]))  # same file, other columns: another cache entry
    assert tokenized_split(single, "train", tok, 32, None, tmp_path / "cache")["input_ids"][0] != edited["input_ids"][0]


def test_datamodule_takes_a_task(tmp_path, tiny_bert):
    tok = AutoTokenizer.from_pretrained(tiny_bert)
    train, dev = tickets(tmp_path, "parquet")
    dm = TaskDataModule(task_from_config(node(train, dev)), tok, 32, None, str(tmp_path / "cache"), batch_size=4)
    dm.setup()
    batch = next(iter(dm.train_dataloader()))
    assert batch["input_ids"].shape[0] == 4 and set(batch["labels"].tolist()) <= {0, 1, 2}


# ------------------------------------------------------------------ bad input


def bad(tmp_path: Path, **keys) -> str:
    train, dev = tickets(tmp_path)
    with pytest.raises((DataError, ConfigError)) as e:
        task = task_from_config(node(keys.pop("train", train), keys.pop("dev", dev), **keys))
        for split in ("train", "dev"):
            examples(task, split)
    message = str(e.value)
    assert "\n" not in message
    return message


def test_bad_files(tmp_path):
    assert bad(tmp_path, train=tmp_path / "nowhere.csv").endswith("nowhere.csv: file not found")
    # beside a file of another format, a missing file is still reported as missing, not as a format mismatch
    assert bad(tmp_path, train=tmp_path / "nowhere.jsonl") == f"{tmp_path / 'nowhere.jsonl'}: file not found"
    assert bad(tmp_path, dev=tmp_path / "nowhere.parquet") == f"{tmp_path / 'nowhere.parquet'}: file not found"
    (tmp_path / "empty.csv").write_text("")
    assert bad(tmp_path, dev=tmp_path / "empty.csv").endswith("empty.csv: file is empty")
    (tmp_path / "header.csv").write_text("subject,body,queue\n")
    assert bad(tmp_path, dev=tmp_path / "header.csv").endswith("header.csv: no examples (only a header row)")
    assert "task.train=x.txt: unknown file format '.txt'" in bad(tmp_path, train="x.txt")
    jsonl = write_rows(tmp_path / "dev.jsonl", TICKETS)
    assert f"is csv but task.dev={jsonl} is jsonl: use one format for both" in bad(tmp_path, dev=jsonl)
    (tmp_path / "broken.jsonl").write_text('{"subject": "a", "body": "b", "queue": "it"}\n{not json\n')
    assert "broken.jsonl: not a readable JSONL file" in bad(tmp_path, train=tmp_path / "broken.jsonl",
                                                             dev=tmp_path / "broken.jsonl")


@pytest.mark.parametrize("cut", ["ascii", "utf8"])
def test_a_jsonl_line_cut_short_is_named_by_its_line(tmp_path, train_py, tiny_bert, cut):
    """A line cut short (at an ASCII character, or inside a multi-byte one) is named as an editor counts lines, and
    called malformed JSON (pyarrow's own words were 'Invalid encoding in string ... row 19')."""
    rows = [{**TICKETS[i % 6], "body": f"café ticket {i}"} for i in range(30)]
    lines = [json.dumps(r, ensure_ascii=False).encode() + b"\n" for r in rows]
    start = lines[19].index("é".encode()) + (1 if cut == "utf8" else -2)
    lines[19] = lines[19][:start] + b"\n"
    train = tmp_path / "in" / "train.jsonl"
    train.parent.mkdir(parents=True)
    train.write_bytes(b"".join(lines))
    dev = write_rows(tmp_path / "in" / "dev.jsonl", TICKETS)
    message = bad(tmp_path, train=train, dev=dev)
    assert message.startswith(f"{train}: not a readable JSONL file: line 20 is malformed JSON ("), message
    assert ("is not UTF-8" in message) == (cut == "utf8"), message
    result = train_py("stage=finetune", *custom_overrides(train, dev), f"stage.model={tiny_bert}")
    assert_one_line(result, f"{train}: not a readable JSONL file: line 20 is malformed JSON")
    assert_nothing_written(tmp_path)


def test_a_jsonl_file_that_is_not_utf8_names_the_line(tmp_path):
    """pyarrow reads a JSON string's Latin-1 byte without a word and fails with a traceback when the text is read."""
    lines = [json.dumps({**TICKETS[i % 6], "body": f"café ticket {i}"}, ensure_ascii=False).encode() for i in range(30)]
    lines[19] = lines[19].replace("é".encode(), b"\xe9")
    train = tmp_path / "in" / "train.jsonl"
    train.parent.mkdir(parents=True)
    train.write_bytes(b"\n".join(lines) + b"\n")
    column = lines[19].index(b"\xe9") + 1
    assert bad(tmp_path, train=train, dev=write_rows(tmp_path / "in" / "dev.jsonl", TICKETS)) == (
        f"{train}: line 20: byte 0xe9 (column {column}) is not UTF-8; a JSONL file must be UTF-8 text (re-save it as "
        f"UTF-8)")


def test_bad_rows_name_file_row_and_column(tmp_path):
    assert bad(tmp_path, label="team").endswith(
        "train.csv: missing column 'team' (task.label); columns: ['subject', 'body', 'queue']")
    assert "missing column 'title' (task.text)" in bad(tmp_path, text=["title"])
    empty = write_rows(tmp_path / "e" / "dev.csv", [TICKETS[0], {**TICKETS[1], "body": "  "}])
    assert bad(tmp_path, dev=empty).endswith("dev.csv: row 2, column 'body': empty text")
    unseen = write_rows(tmp_path / "u" / "dev.csv", [TICKETS[0], {**TICKETS[1], "queue": "legal"}])
    assert bad(tmp_path, dev=unseen).endswith(
        "dev.csv: row 2, column 'queue': label 'legal' does not occur in the training data "
        "(classes: ['finance', 'hr', 'it'])")
    no_label = write_rows(tmp_path / "n" / "train.csv", [TICKETS[0], {**TICKETS[1], "queue": ""}])
    assert bad(tmp_path, train=no_label).endswith("train.csv: row 2, column 'queue': empty label")


def test_a_jsonl_label_column_mixing_numbers_and_strings_names_the_line(tmp_path):
    """One label written as a number among strings would silently become a class of its own ("1")."""
    train = write_rows(tmp_path / "m" / "train.jsonl", [*TICKETS[:4], {**TICKETS[4], "queue": 1}, TICKETS[5]])
    dev = write_rows(tmp_path / "m" / "dev.jsonl", TICKETS[:3])
    assert bad(tmp_path, train=train, dev=dev) == (
        f"{train}: line 5, column 'queue': label 1 is a number, but the column's other labels are strings (e.g. line "
        f"1: 'it'); write every label of a column the same way (all strings, or all numbers)")
    # in a dev file; strings among numbers alike
    odd_dev = write_rows(tmp_path / "m" / "odd_dev.jsonl", [*TICKETS[:2], {**TICKETS[2], "queue": 2.0}])
    assert bad(tmp_path, train=write_rows(tmp_path / "m" / "ok.jsonl", TICKETS), dev=odd_dev).startswith(
        f"{odd_dev}: line 3, column 'queue': label 2.0 is a number, but the column's other labels are strings")
    stars = write_rows(tmp_path / "s" / "train.jsonl", [{"text": f"t {i}", "stars": i % 3} for i in range(5)]
                       + [{"text": "t 5", "stars": "two"}])
    with pytest.raises(DataError, match=r"train\.jsonl: line 6, column 'stars': label 'two' is a string, but the "
                                        r"column's other labels are numbers \(e\.g\. line 1: 0\)"):
        task_from_config({"name": "s", "train": str(stars), "dev": str(stars), "label": "stars"})


def test_bad_class_lists(tmp_path):
    assert bad(tmp_path, labels=["it", "finance"]).endswith(
        "train.csv: row 3, column 'queue': label 'hr' is not in task.labels=['it', 'finance']")
    assert "task.labels=['it', 'finance', 'hr', 'legal'] names ['legal'], which never occur" in bad(
        tmp_path, labels=["it", "finance", "hr", "legal"])
    assert "task.labels=['it', 'it']: expected distinct" in bad(tmp_path, labels=["it", "it"])
    one = write_rows(tmp_path / "one" / "train.csv", [{**r, "queue": "it"} for r in TICKETS])
    assert "column 'queue' holds a single class ('it')" in bad(tmp_path, train=one)


def test_non_numeric_regression_target(tmp_path):
    rows = [{"text": f"t {i}", "score": s} for i, s in enumerate(["0.5", "1.5", "2.0"])]
    train = write_rows(tmp_path / "t.csv", rows)
    dev = write_rows(tmp_path / "d.csv", [rows[0], {"text": "x", "score": "high"}])
    task = task_from_config({"name": "s", "train": str(train), "dev": str(dev), "label": "score"})
    with pytest.raises(DataError, match=r"d\.csv: row 2, column 'score': label 'high' is not a number \(task s is a "
                                        r"regression\)$"):
        examples(task, "dev")
    forced = write_rows(tmp_path / "f.csv", [*rows, {"text": "x", "score": "n/a"}])
    with pytest.raises(DataError, match=r"f\.csv: row 4, column 'score': label 'n/a' is not a number"):
        examples(task_from_config({"name": "s", "train": str(forced), "dev": str(dev), "label": "score",
                                   "metric": "spearman"}), "train")


def test_bad_keys(tmp_path):
    with pytest.raises(ConfigError, match=r"task=custom: set task.train and task.dev"):
        task_from_config({"name": "custom", "train": None, "dev": None, "dataset": None})
    with pytest.raises(ConfigError, match=r"task.dev is not set"):
        task_from_config({"name": "x", "train": "a.csv", "dev": None})
    with pytest.raises(ConfigError, match=r"task.colour: unknown key"):
        task_from_config({"name": "x", "train": "a.csv", "dev": "b.csv", "colour": 1})
    with pytest.raises(ConfigError, match=r"task.name='mrpc': a user's task needs its own name"):
        task_from_config({"name": "mrpc", "train": "a.csv", "dev": "b.csv", "label": "l"})
    with pytest.raises(ConfigError, match=r"task.text=\['a', 'b', 'c'\]: expected one text column"):
        task_from_config({"name": "x", "train": "a.csv", "dev": "b.csv", "text": ["a", "b", "c"], "label": "l"})


def test_bad_data_stops_train_py_with_one_line(tmp_path, train_py, tiny_bert):
    train, _ = tickets(tmp_path / "in")
    dev = write_rows(tmp_path / "in" / "bad" / "dev.csv", [TICKETS[0], {**TICKETS[1], "queue": "legal"}])
    result = train_py("stage=finetune", "task=custom", "task.name=tickets", f"task.train={train}", f"task.dev={dev}",
                      "task.text=[subject,body]", "task.label=queue", f"stage.model={tiny_bert}")
    assert_one_line(result, f"{dev}: row 2, column 'queue': label 'legal' does not occur in the training data")
    assert_nothing_written(tmp_path)


# ------------------------------------------------------------------ stages on a user's task


def custom_overrides(train: Path, dev: Path, *extra: str) -> list[str]:
    return ["task=custom", "task.name=tickets", f"task.train={train}", f"task.dev={dev}", "task.text=[subject,body]",
            "task.label=queue", "task.max_seq_length=32", *extra]


def finetune_tickets(compose_cfg, tiny_bert, train: Path, dev: Path, *extra: str) -> dict:
    from tinydistill.stages import run

    cfg = compose_cfg("stage=finetune", f"teacher.name_or_path={tiny_bert}", "paths.data_dir=null", "logger=csv",
                      "stage.epochs=2", "stage.batch_size=4", "stage.eval_batch_size=4", "stage.latency_repeats=1",
                      "stage.lr=1e-3", *custom_overrides(train, dev, *extra))
    return run(cfg)


def test_finetune_exports_the_class_names(compose_cfg, tmp_path, tiny_bert):
    from transformers import pipeline

    train, dev = tickets(tmp_path / "in", "jsonl", train=TICKETS * 2)
    result = finetune_tickets(compose_cfg, tiny_bert, train, dev, "task.metric=macro_f1")
    out = Path(result["output_dir"])
    assert out == tmp_path / "artifacts" / "teacher" / "tickets"
    saved = json.loads((out / "metrics.json").read_text())
    assert set(saved["dev"]) == {"macro_f1", "accuracy"} and saved["task"] == "tickets"
    assert saved["task_spec"]["label_names"] == ["finance", "hr", "it"] and saved["task_spec"]["metric"] == "macro_f1"
    assert set(saved["constant"]["dev"]) == {"macro_f1", "accuracy"}
    config = json.loads((out / "config.json").read_text())
    assert config["id2label"] == {"0": "finance", "1": "hr", "2": "it"}
    assert config["label2id"] == {"finance": 0, "hr": 1, "it": 2}
    classify = pipeline("text-classification", model=str(out), device="cpu")
    labels = {p["label"] for p in classify(["printer broken", "invoice"])}
    assert labels <= {"finance", "hr", "it"}


def test_finetune_a_regression_task(compose_cfg, tmp_path, tiny_bert):
    rows = [{"subject": f"ticket {i}", "body": f"waited {i} days", "queue": i / 2} for i in range(8)]
    train, dev = write_rows(tmp_path / "in" / "t.parquet", rows), write_rows(tmp_path / "in" / "d.parquet", rows[:4])
    result = finetune_tickets(compose_cfg, tiny_bert, train, dev)
    assert set(result["dev"]) == {"pearson", "spearman"}
    config = json.loads((Path(result["output_dir"]) / "config.json").read_text())
    assert config["problem_type"] == "regression" and len(config["id2label"]) == 1


# ------------------------------------------------------------------ augmentation of a user's task


@pytest.mark.parametrize("fmt", ["jsonl", "csv", "parquet"])
def test_augmentation_writes_the_tasks_format_and_columns(tmp_path, fmt, mlm, small_kv):
    from data_aug import augment_task, ensure_augmented

    rows = [{**r, "id": i} for i, r in enumerate(TICKETS)]  # an extra column, kept as it is
    train, dev = tickets(tmp_path / "in", fmt, train=rows)
    task = task_from_config(node(train, dev))
    kw = dict(mlm=mlm, glove=small_kv, stopwords=STOP, progress=False)
    out = augment_task(small_cfg(), task, None, tmp_path / "aug" / "tickets", **kw)
    assert out == tmp_path / "aug" / "tickets" / f"train_aug{SUFFIX[fmt]}"
    table = read_table(task, out)
    assert table.header == ["subject", "body", "queue", "id"]
    originals = {row[3]: row for row in read_table(task, train).rows}  # CSV cells are text, JSON and Parquet typed
    by_id: dict = {}
    for row in table.rows:
        by_id.setdefault(row[3], []).append(row)
    assert list(by_id) == list(originals)  # example order kept; the id column keeps its type
    for i, group in by_id.items():
        assert group[0] == originals[i]  # the original first
        assert all(r[2] == originals[i][2] for r in group)  # label kept
        assert all((r[0] != originals[i][0]) + (r[1] != originals[i][1]) == 1 for r in group[1:])
    assert len(table.rows) > len(rows)
    manifest = json.loads((out.parent / "manifest.json").read_text())
    assert manifest["counts"]["rows"] == len(table.rows) and manifest["settings"]["text_columns"] == ["subject", "body"]
    # up to date: reused as it is; an edited output is regenerated
    again = ensure_augmented(small_cfg(), task, None, tmp_path, mlm_model=mlm, glove=small_kv,
                             stopwords=STOP, progress=False)
    assert again == out
    before = out.read_bytes()
    out.write_bytes(before[:-5])
    ensure_augmented(small_cfg(), task, None, tmp_path, mlm_model=mlm, glove=small_kv,
                     stopwords=STOP, progress=False)
    assert out.read_bytes() == before


def test_a_hub_datasets_training_split_is_augmented_into_json_lines(tmp_path, mlm, small_kv, monkeypatch):
    """task.dataset (online): the hub is stood in for by datasets built in memory; the training split's rows go to
    train_aug.jsonl with its columns, reused while the split's fingerprint is the same, regenerated when it changes."""
    import datasets
    from data_aug import ensure_augmented
    from tinydistill.data import files

    splits = {"train": TICKETS, "validation": TICKETS[:3]}
    monkeypatch.setattr(files, "_load_hub_split", lambda task, split: datasets.Dataset.from_list(splits[split]))
    task = task_from_config(node("train", "validation", dataset="someone/tickets"))
    assert task.dataset == "someone/tickets" and task.format == "hub"
    kw = dict(mlm_model=mlm, glove=small_kv, stopwords=STOP, progress=False)
    out = ensure_augmented(small_cfg(), task, None, tmp_path, **kw)
    assert out == tmp_path / "aug" / "tickets" / "train_aug.jsonl"
    rows = [json.loads(line) for line in out.read_text().splitlines()]
    assert list(rows[0]) == ["subject", "body", "queue"] and rows[0] == TICKETS[0] and len(rows) > len(TICKETS)
    manifest = json.loads((out.parent / "manifest.json").read_text())
    assert manifest["source"]["path"] == "someone/tickets[train]"
    mtime = out.stat().st_mtime_ns
    assert ensure_augmented(small_cfg(), task, None, tmp_path, **kw) == out
    assert out.stat().st_mtime_ns == mtime  # up to date: not rewritten
    splits["train"] = TICKETS[:4]  # the split changed on the hub: another fingerprint
    ensure_augmented(small_cfg(), task, None, tmp_path, **kw)
    assert json.loads((out.parent / "manifest.json").read_text())["counts"]["examples"] == 4
    assert json.loads(out.read_text().splitlines()[0]) == TICKETS[0]


def test_augmentation_resumes_to_the_same_bytes(tmp_path, mlm, small_kv, monkeypatch):
    from data_aug import augment_task

    train, dev = tickets(tmp_path / "in", "csv")
    task = task_from_config(node(train, dev))
    kw = dict(mlm=mlm, glove=small_kv, stopwords=STOP, progress=False)
    whole = augment_task(small_cfg(), task, None, tmp_path / "whole", **kw)
    interrupt_chunk_write(monkeypatch, 2)
    with pytest.raises(KeyboardInterrupt):
        augment_task(small_cfg(), task, None, tmp_path / "resumed", **kw)
    assert sorted(p.name for p in (tmp_path / "resumed" / ".partial").glob("chunk_*")) == [
        "chunk_00000.json", "chunk_00000.jsonl", "chunk_00001.json"]
    monkeypatch.undo()
    resumed = augment_task(small_cfg(), task, None, tmp_path / "resumed", **kw)
    assert resumed.read_bytes() == whole.read_bytes()
    manifest = json.loads((resumed.parent / "manifest.json").read_text())
    assert manifest["time"]["resumed_examples"] == 2


def test_data_aug_cli_on_a_users_task(tmp_path, tokenizer):
    import subprocess
    import sys

    from tests.conftest import ROOT

    model_dir = tmp_path / "tiny_mlm"
    tiny_mlm_model(tokenizer).save_pretrained(model_dir)
    tokenizer.save_pretrained(model_dir)
    glove = tmp_path / "vectors.txt"
    glove.write_text("".join(f"{w} {' '.join(map(str, v))}\n" for w, v in VEC_WORDS.items()))
    nltk_dir = tmp_path / "nltk_data" / "corpora" / "stopwords"
    nltk_dir.mkdir(parents=True)
    (nltk_dir / "english").write_text("\n".join(sorted(STOP)) + "\n")
    train, dev = tickets(tmp_path / "in", "jsonl")
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(ROOT / "src"), str(ROOT), os.environ.get("PYTHONPATH", "")]),
           "TINYDISTILL_ARTIFACTS": str(tmp_path / "art"), "HF_HUB_OFFLINE": "1", "OMP_NUM_THREADS": "1"}
    env.pop("TINYDISTILL_DATA_DIR", None)  # a user's task needs no data folder
    args = [sys.executable, "-m", "data_aug", *custom_overrides(train, dev), f"aug.mlm_model={model_dir}",
            f"aug.word_vectors={glove}", f"aug.nltk_data={tmp_path / 'nltk_data'}", "aug.n_aug=3", "aug.chunk_size=2",
            "aug.num_threads=1"]
    res = subprocess.run(args, cwd=tmp_path, env=env, capture_output=True, text=True, timeout=300)
    assert res.returncode == 0, res.stderr[-3000:]
    out = tmp_path / "art" / "aug" / "tickets"
    assert sorted(p.name for p in out.iterdir() if not p.name.startswith(".")) == ["manifest.json", "train_aug.jsonl"]
    first = json.loads((out / "train_aug.jsonl").read_text().splitlines()[0])
    assert first == TICKETS[0]
    bad = dev.with_name("bad.jsonl")
    write_rows(bad, [TICKETS[0], {**TICKETS[1], "body": ""}])
    args[args.index(f"task.train={train}")] = f"task.train={bad}"
    res = subprocess.run(args, cwd=tmp_path, env=env, capture_output=True, text=True, timeout=300)
    assert res.returncode == 2 and res.stderr.strip().splitlines()[-1] == f"error: {bad}: row 2, column 'body': empty text"


def test_task_distillation_with_augmentation_report_and_benchmark(compose_cfg, tmp_path, tiny_bert, tokenizer):
    """finetune -> python -m data_aug's pipeline (aug=on) -> stage=task (and the no_pred ablation) -> the report and
    the latency benchmark, all on a user's JSON Lines data set."""
    from tinydistill.bench import latency_report
    from tinydistill.report import write_report
    from tinydistill.stages import run

    train, dev = tickets(tmp_path / "in", "jsonl", train=TICKETS * 2)
    teacher = finetune_tickets(compose_cfg, tiny_bert, train, dev)["output_dir"]
    assert json.loads((Path(teacher) / "task.json").read_text())["train"] == str(train.resolve())
    mlm_dir = tmp_path / "tiny_mlm"
    tiny_mlm_model(tokenizer).save_pretrained(mlm_dir)
    tokenizer.save_pretrained(mlm_dir)
    glove = tmp_path / "vectors.txt"
    glove.write_text("".join(f"{w} {' '.join(map(str, v))}\n" for w, v in VEC_WORDS.items()))
    common = ["stage=task", f"stage.teacher={teacher}", "paths.data_dir=null", "logger=csv", "student.init=random",
              *TINY_STUDENT, "stage.batch_size=4", "stage.intermediate.max_steps=2",
              "stage.pred.max_steps=2", "stage.latency_repeats=1", "stage.allow_weak_teacher=true", "aug=on",
              f"aug.mlm_model={mlm_dir}", f"aug.word_vectors={glove}", "aug.n_aug=2", "aug.chunk_size=4", "aug.num_threads=1",
              *custom_overrides(train, dev)]
    results = {ablation: run(compose_cfg(*common, f"ablation={ablation}")) for ablation in ("none", "no_pred")}
    aug = tmp_path / "artifacts" / "aug" / "tickets" / "train_aug.jsonl"
    assert results["none"]["train_file"] == str(aug) and aug.is_file()
    assert len(aug.read_text().splitlines()) > 2 * len(TICKETS)
    student = Path(results["none"]["output_dir"])
    assert student == tmp_path / "artifacts" / "task" / "tickets" / "none-init_random" / "seed42"
    config = json.loads((student / "config.json").read_text())
    assert config["id2label"] == {"0": "finance", "1": "hr", "2": "it"}
    assert set(results["none"]["dev"]) == {"accuracy"} and set(results["no_pred"]["dev"]) == {"accuracy"}

    report = write_report([tmp_path / "artifacts"], tmp_path / "report")
    table = report.read_text()
    assert "| tickets | none-init_random |" in table and "| tickets | no_pred-init_random |" in table
    bench = latency_report([str(teacher), str(student)], str(student / "task.json"), None, str(tmp_path / "cache"),
                           batch_size=2, repeats=1, onnx=False, batch1=False)
    assert bench["task"] == "tickets" and bench["metric"] == "accuracy" and bench["examples"] == 3
    assert [set(m["dev"]) for m in bench["models"]] == [{"accuracy"}, {"accuracy"}]
