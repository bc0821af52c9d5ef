"""task.train_rows: a few-labels setting. Only that many of the training rows left after the tune split keep their
labels, drawn with task.tune_seed (never the run's seed), the same rows in every stage, seed, augmentation and cache
key; the others are the `unlabelled` rows, which no stage reads yet (tiny random BERTs)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from tests.conftest import STOP, assert_one_line, compose_config, small_cfg
from tests.test_own_data import TICKETS, node, tickets
from tinydistill.baselines import constant_predictor
from tinydistill.data.files import task_from_config
from tinydistill.data.glue import TaskDataModule, load_examples
from tinydistill.data.tasks import UNLABELLED_SPLIT
from tinydistill.errors import ConfigError
from tinydistill.stages import run

RTE_ROWS = 2490


def rows_of(ds) -> list[tuple]:
    return list(zip(ds["text_a"], ds["text_b"], ds["label"]))


def test_the_same_seeded_rows_disjoint_from_tune_and_nested(data_dir):
    task = task_from_config({"name": "rte", "tune_split": 0.1, "train_rows": 300})
    full = rows_of(load_examples(task_from_config({"name": "rte"}), "train", data_dir))
    train, tune = task.split_rows("train", RTE_ROWS), task.split_rows("tune", RTE_ROWS)
    rest = task.split_rows(UNLABELLED_SPLIT, RTE_ROWS)
    assert len(train) == 300 and len(tune) == round(0.1 * RTE_ROWS)
    # train, tune and the unlabelled rows partition the training file.
    assert sorted(train + tune + rest) == list(range(RTE_ROWS)) and not set(train) & set(tune)
    # The tune split is the one task.tune_split holds out without train_rows (checkpoints stay comparable).
    assert tune == task_from_config({"name": "rte", "tune_split": 0.1}).split_rows("tune", RTE_ROWS)
    assert rows_of(load_examples(task, "train", data_dir)) == [full[i] for i in train]
    assert rows_of(load_examples(task, "tune", data_dir)) == [full[i] for i in tune]
    # The same rows on every call (every stage and run seed: the run's seed is not an input), nested for a smaller
    # count, others for another tune_seed; without a tune split, drawn from every row.
    assert task_from_config({"name": "rte", "tune_split": 0.1, "train_rows": 300}).split_rows("train", RTE_ROWS) == train
    assert set(task_from_config({"name": "rte", "tune_split": 0.1, "train_rows": 100}).split_rows("train", RTE_ROWS)) < set(train)
    assert task_from_config({"name": "rte", "tune_split": 0.1, "train_rows": 300, "tune_seed": 1}).split_rows(
        "train", RTE_ROWS) != train
    alone = task_from_config({"name": "rte", "train_rows": 50})
    assert len(load_examples(alone, "train", data_dir)) == 50 and alone.val_splits == ("dev",)
    assert task.summary()["train_rows"] == 300 and "train_rows" not in task_from_config({"name": "rte"}).summary()
    # The constant predictor learns from the labelled rows only.
    assert set(constant_predictor(task, data_dir)) == {"prediction", "tune", "dev"}


@pytest.mark.parametrize("value", [0, -3, 1.5, "ten", True])
def test_bad_values_name_the_setting(value):
    with pytest.raises(ConfigError, match=r"task\.train_rows="):
        task_from_config({"name": "rte", "train_rows": value})


def test_more_rows_than_the_tune_split_leaves_is_a_config_error(data_dir):
    left = RTE_ROWS - 249
    assert len(load_examples(task_from_config({"name": "rte", "tune_split": 249, "train_rows": left}), "train",
                             data_dir)) == left
    with pytest.raises(ConfigError, match=rf"task\.train_rows={left + 1}: rte has only {left} training rows after "
                                          r"task\.tune_split=249"):
        load_examples(task_from_config({"name": "rte", "tune_split": 249, "train_rows": left + 1}), "train", data_dir)


def test_train_py_stops_with_one_line(train_py, data_dir, tiny_bert):
    common = ("stage=finetune", "task=rte", f"paths.data_dir={data_dir}", f"teacher.name_or_path={tiny_bert}")
    assert_one_line(train_py(*common, "task.train_rows=0"), "task.train_rows=0")
    assert_one_line(train_py(*common, "task.train_rows=5000"), "task.train_rows=5000", "2490 training rows")


def test_the_tokenised_train_split_is_keyed_by_train_rows(tmp_path, tiny_bert, data_dir):
    from transformers import AutoTokenizer

    tok = AutoTokenizer.from_pretrained(tiny_bert)
    cache = str(tmp_path / "cache")

    def splits(**keys):
        dm = TaskDataModule(task_from_config({"name": "rte", "tune_split": 0.1, **keys}), tok, 128, str(data_dir), cache)
        dm.setup()
        return dm.splits

    full, some, fewer = splits(), splits(train_rows=200), splits(train_rows=100)
    assert (len(full["train"]), len(some["train"]), len(fewer["train"])) == (RTE_ROWS - 249, 200, 100)
    assert some["tune"]["input_ids"] == full["tune"]["input_ids"]  # the same tune rows
    rows = task_from_config({"name": "rte", "train_rows": 200}).split_rows("train", RTE_ROWS)
    plain = TaskDataModule(task_from_config({"name": "rte", "train_rows": 200}), tok, 128, str(data_dir), cache)
    plain.setup()
    every = splits(tune_split=None)["train"]["input_ids"]  # no tune split, no train_rows: the whole file
    assert plain.splits["train"]["input_ids"] == [every[i] for i in rows]


def test_augmentation_reads_only_the_labelled_rows(tmp_path, mlm, small_kv):
    from data_aug import ensure_augmented
    from data_aug.store import read_manifest
    from tinydistill.data.files import read_table

    rows = [{**r, "subject": f"{r['subject']} {i}"} for i in range(4) for r in TICKETS]  # 24 distinct rows
    train, dev = tickets(tmp_path / "in", "jsonl", train=rows)
    task = task_from_config(node(train, dev, tune_split=4, train_rows=8))
    kw = dict(mlm_model=mlm, glove=small_kv, stopwords=STOP, progress=False)
    out = ensure_augmented(small_cfg(), task, None, tmp_path, **kw)
    labelled = set(load_examples(task, "train", None)["text_a"])
    assert len(labelled) == 8
    originals = {r[0] for r in read_table(task, out).rows}
    assert labelled <= originals and not ({r["subject"] for r in rows} - labelled) & originals
    manifest = json.dumps(read_manifest(Path(out).parent))
    assert "train_rows=8" in manifest
    # Another train_rows is another augmented file: the source fingerprint names it, so the first one is redone.
    other = task_from_config(node(train, dev, tune_split=4, train_rows=12))
    out2 = ensure_augmented(small_cfg(), other, None, tmp_path, **kw)
    assert "train_rows=12" in json.dumps(read_manifest(Path(out2).parent))
    assert set(load_examples(other, "train", None)["text_a"]) <= {r[0] for r in read_table(other, out2).rows}


def test_finetune_trains_on_the_labelled_rows_and_records_them(tmp_path, tiny_bert, data_dir):
    cfg = compose_config(tmp_path, "stage=finetune", "task=rte", "task.tune_split=64", "task.train_rows=40",
                         f"teacher.name_or_path={tiny_bert}", f"paths.data_dir={data_dir}", "logger=none",
                         "stage.epochs=1", "stage.batch_size=8", "stage.measure_latency=false")
    result = run(cfg)
    saved = json.loads((Path(result["output_dir"]) / "metrics.json").read_text())
    assert saved["task_spec"]["train_rows"] == 40 and saved["task_spec"]["tune_split"] == 64
    assert saved["steps"] == 5  # one epoch of 40 rows in batches of 8
