"""task.tune_split: training rows held out (with their own seed) for checkpoint and setting selection; never trained
on, augmented or seen by the teacher; metrics.json reports them beside dev (tiny random BERTs)."""

from __future__ import annotations

import csv
import json
from pathlib import Path

import pytest

from tests.conftest import STOP, assert_one_line, compose_config, small_cfg
from tests.test_own_data import TICKETS, custom_overrides, node, tickets, write_rows
from tests.test_task_distill import task_overrides
from tinydistill.baselines import constant_predictor
from tinydistill.data.files import task_from_config
from tinydistill.data.glue import TaskDataModule, load_examples
from tinydistill.errors import ConfigError
from tinydistill.stages import run


def pairs(ds) -> list[tuple]:
    return list(zip(ds["text_a"], ds["text_b"], ds["label"]))


def test_the_split_is_seeded_by_its_own_seed_disjoint_and_complete(data_dir):
    task = task_from_config({"name": "rte", "tune_split": 0.1})
    full = pairs(load_examples(task_from_config({"name": "rte"}), "train", data_dir))
    train, tune = pairs(load_examples(task, "train", data_dir)), pairs(load_examples(task, "tune", data_dir))
    assert len(tune) == round(0.1 * len(full)) and len(train) + len(tune) == len(full)
    rows = task.split_rows("tune", len(full))
    assert tune == [full[i] for i in rows] and train == [full[i] for i in task.split_rows("train", len(full))]
    assert not set(rows) & set(task.split_rows("train", len(full)))
    # The same rows on every call (every stage, every run seed: the run's seed is not an input), others for
    # another tune_seed; a count holds out that many rows.
    assert task_from_config({"name": "rte", "tune_split": 0.1}).split_rows("tune", len(full)) == rows
    assert task_from_config({"name": "rte", "tune_split": 0.1, "tune_seed": 1}).split_rows("tune", len(full)) != rows
    assert len(load_examples(task_from_config({"name": "rte", "tune_split": 100}), "tune", data_dir)) == 100
    assert task.val_splits == ("tune", "dev") and task_from_config({"name": "rte"}).val_splits == ("dev",)
    assert task.dev_splits == ("dev",)  # the yardsticks' split stays the real dev set
    # The constant predictor is the majority label of the training rows left, measured on tune and dev.
    constant = constant_predictor(task, data_dir)
    assert set(constant) == {"prediction", "tune", "dev"}


@pytest.mark.parametrize("value", [0, 1.5, 1.0, -0.1, -3, "ten", True])
def test_bad_values_name_the_setting(value):
    with pytest.raises(ConfigError, match=r"task\.tune_split="):
        task_from_config({"name": "rte", "tune_split": value})


def test_more_rows_than_the_training_set_is_a_config_error(data_dir):
    n = len(load_examples(task_from_config({"name": "rte"}), "train", data_dir))
    for count in (n, n + 1):
        with pytest.raises(ConfigError, match=r"task\.tune_split=.*of the 2490 training rows"):
            load_examples(task_from_config({"name": "rte", "tune_split": count}), "train", data_dir)


def test_train_py_stops_with_one_line(train_py, data_dir, tiny_bert):
    assert_one_line(train_py("stage=finetune", "task=rte", "task.tune_split=1.5", f"paths.data_dir={data_dir}",
                             f"teacher.name_or_path={tiny_bert}"), "task.tune_split=1.5")
    assert_one_line(train_py("stage=finetune", "task=rte", "task.tune_split=5000", f"paths.data_dir={data_dir}",
                             f"teacher.name_or_path={tiny_bert}"), "task.tune_split=5000", "2490 training rows")


def test_the_datamodule_trains_without_tune_rows_and_evaluates_tune_first(tmp_path, tiny_bert, data_dir):
    from transformers import AutoTokenizer

    tok = AutoTokenizer.from_pretrained(tiny_bert)
    task = task_from_config({"name": "rte", "tune_split": 0.1})
    dm = TaskDataModule(task, tok, 128, str(data_dir), str(tmp_path / "cache"))
    dm.setup()
    tune = load_examples(task, "tune", data_dir)
    assert len(dm.splits["train"]) + len(dm.splits["tune"]) == 2490 and len(dm.splits["tune"]) == len(tune)
    assert len(dm.val_dataloader()) == 2 and dm.dev_splits == ("dev",)
    # Cached: the tokenised train split of the task without a tune split is another one.
    plain = TaskDataModule(task_from_config({"name": "rte"}), tok, 128, str(data_dir), str(tmp_path / "cache"))
    plain.setup()
    assert len(plain.splits["train"]) == 2490 and len(plain.val_dataloader()) == 1
    full = plain.splits["train"]["input_ids"]
    assert dm.splits["train"]["input_ids"] == [full[i] for i in task.split_rows("train", 2490)]
    assert dm.splits["tune"]["input_ids"] == [full[i] for i in task.split_rows("tune", 2490)]


def test_augmentation_never_sees_tune_rows(tmp_path, mlm, small_kv):
    from data_aug import ensure_augmented
    from tinydistill.data.files import read_table

    rows = [{**r, "subject": f"{r['subject']} {i}"} for i in range(4) for r in TICKETS]  # 24 distinct rows
    train, dev = tickets(tmp_path / "in", "jsonl", train=rows)
    task = task_from_config(node(train, dev, tune_split=0.25))
    kw = dict(mlm_model=mlm, glove=small_kv, stopwords=STOP, progress=False)
    out = ensure_augmented(small_cfg(), task, None, tmp_path, **kw)
    tune_subjects = set(load_examples(task, "tune", None)["text_a"])
    assert len(tune_subjects) == 6
    originals = [r[0] for r in read_table(task, out).rows]
    train_subjects = set(load_examples(task, "train", None)["text_a"])
    assert train_subjects <= set(originals) and not tune_subjects & set(originals)
    # Another tune split is another augmented file (its manifest's settings differ).
    other = task_from_config(node(train, dev, tune_split=0.25, tune_seed=3))
    ensure_augmented(small_cfg(), other, None, tmp_path, **kw)
    assert not set(load_examples(other, "tune", None)["text_a"]) & {r[0] for r in read_table(other, out).rows}
    # The training file handed back as it is (aug.skip_tasks, aug off) is still read without its tune rows.
    assert set(load_examples(task, "train", None, file=train)["text_a"]) == train_subjects


def metrics_csv(folder: Path) -> list[dict]:
    (path,) = folder.rglob("metrics.csv")
    with open(path) as f:
        return list(csv.DictReader(f))


def test_finetune_selects_on_tune_and_reports_tune_and_dev(tmp_path, tiny_bert, data_dir):
    cfg = compose_config(tmp_path, "stage=finetune", "task=rte", "task.tune_split=64", f"teacher.name_or_path={tiny_bert}",
                         f"paths.data_dir={data_dir}", "logger=csv", "stage.max_steps=6", "stage.evals=3",
                         "stage.batch_size=8", "stage.lr=1e-3", "stage.measure_latency=false")
    result = run(cfg)
    saved = json.loads((Path(result["output_dir"]) / "metrics.json").read_text())
    assert set(saved["tune"]) == set(saved["dev"]) == {"accuracy"}
    assert set(saved["constant"]) == {"prediction", "tune", "dev"}
    assert saved["task_spec"]["tune_split"] == 64 and saved["task_spec"]["dev_splits"] == ["dev"]
    logged = [r for r in metrics_csv(Path(cfg.paths.output_dir)) if r.get("val/accuracy")]
    assert len(logged) == 4  # 3 evaluations, then the selected checkpoint's again
    # val/ (monitored, selected on) is the tune split: 64 rows, accuracies in 1/64 steps; dev is val_dev/.
    assert all(float(r["val/accuracy"]) * 64 == pytest.approx(round(float(r["val/accuracy"]) * 64)) for r in logged)
    assert saved["tune"]["accuracy"] == pytest.approx(max(float(r["val/accuracy"]) for r in logged[:3]))
    assert saved["tune"]["accuracy"] == pytest.approx(float(logged[-1]["val/accuracy"]))
    assert saved["dev"]["accuracy"] == pytest.approx(float(logged[-1]["val_dev/accuracy"]))


def test_task_distillation_and_its_baseline_select_on_tune(tmp_path, tiny_teacher, tiny_bert, data_dir):
    cfg = compose_config(tmp_path, *task_overrides(tiny_teacher, data_dir, "task.tune_split=0.05",
                                                   "stage.pred.val_every_n_steps=1"))
    cfg.paths.output_dir = str(tmp_path / "logs" / "task")
    result = run(cfg)
    saved = json.loads((Path(result["output_dir"]) / "metrics.json").read_text())
    for record in (saved, saved["pred"], saved["teacher"], saved["constant"]):
        assert {"tune", "dev"} <= set(record)
    # Yardsticks on the real dev split.
    dev, teacher, constant = saved["dev"]["accuracy"], saved["teacher"]["dev"]["accuracy"], saved["constant"]["dev"]
    if teacher - constant["accuracy"] > 1e-12:
        assert saved["gap_closed"]["accuracy"] == pytest.approx((dev - constant["accuracy"]) / (teacher - constant["accuracy"]))
    logged = [r for r in metrics_csv(tmp_path / "logs" / "task") if r.get("val/accuracy")]
    assert saved["tune"]["accuracy"] == pytest.approx(max(float(r["val/accuracy"]) for r in logged[:-1]))
    base = compose_config(tmp_path, "stage=finetune", "experiment=nodistill", "task=rte", "task.tune_split=0.05",
                          f"stage.model={tiny_bert}", f"stage.compare_to={tiny_teacher}", f"paths.data_dir={data_dir}",
                          "logger=none", f"stage.match_steps_of={result['output_dir']}", "stage.batch_size=8",
                          "stage.measure_latency=false")
    base.paths.output_dir = str(tmp_path / "logs" / "nodistill")
    baseline = run(base)
    assert baseline["steps"] == 6 and baseline["evaluations"] == result["pred"]["evaluations"] == 3
    assert {"tune", "dev"} <= set(baseline) and "gap_closed" in baseline or baseline["teacher"]["dev"]["accuracy"] <= 0.5271
    # The report keeps showing dev figures.
    from tinydistill.report import load_results, report_rows

    rows = report_rows(load_results(tmp_path / "logs"))
    run_rows = [r for r in rows if r["kind"] == "run"]
    assert len(run_rows) == 2 and all(r["dev"]["accuracy"]["mean"] == pytest.approx(
        json.loads(Path(r["files"][0]).read_text())["dev"]["accuracy"]) for r in run_rows)


def test_a_users_task_with_a_tune_split(compose_cfg, tmp_path, tiny_bert):
    rows = [{**r, "subject": f"{r['subject']} {i}"} for i in range(4) for r in TICKETS]
    train, dev = tickets(tmp_path / "in", "csv", train=rows)
    task = task_from_config(node(train, dev, tune_split=6))
    assert len(load_examples(task, "train", None)) == 18 and len(load_examples(task, "tune", None)) == 6
    cfg = compose_cfg("stage=finetune", f"teacher.name_or_path={tiny_bert}", "paths.data_dir=null", "logger=none",
                      "stage.epochs=1", "stage.batch_size=4", "stage.eval_batch_size=4", "stage.measure_latency=false",
                      *custom_overrides(train, dev, "task.tune_split=6"))
    result = run(cfg)
    saved = json.loads((Path(result["output_dir"]) / "metrics.json").read_text())
    assert {"tune", "dev"} <= set(saved) and set(saved["constant"]) == {"prediction", "tune", "dev"}
    write_rows(tmp_path / "in" / "small.csv", rows[:5])
    with pytest.raises(ConfigError, match=r"task\.tune_split=6: holds out 6 of the 5 training rows"):
        load_examples(task_from_config(node(tmp_path / "in" / "small.csv", dev, tune_split=6)), "train", None)
