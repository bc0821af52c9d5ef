"""Yardsticks: the constant predictor from the data, retention and gap closed."""

import numpy as np
import pytest
from sklearn.metrics import accuracy_score, f1_score

from tinydistill.baselines import constant_metrics, constant_prediction, constant_predictor, gap_closed, retention
from tinydistill.data.glue_tsv import read_glue_tsv, table_to_examples
from tinydistill.data.glue_tsv import glue_file
from tinydistill.data.tasks import get_task


def test_constant_prediction_is_the_majority_label_or_the_mean_score():
    assert constant_prediction(get_task("mrpc"), [1, 0, 1, 1, 0]) == 1
    assert constant_prediction(get_task("mrpc"), [0, 0, 1]) == 0
    assert constant_prediction(get_task("mrpc"), [1, 0]) == 0  # a tie: the smallest id, deterministic
    assert constant_prediction(get_task("mnli"), [2, 2, 1, 0, 2]) == 2
    assert constant_prediction(get_task("stsb"), [1.0, 2.0, 4.5]) == pytest.approx(2.5)


def test_constant_metrics_match_scikit_learn():
    labels = [1, 1, 0, 1, 0, 0, 1]
    got = constant_metrics(get_task("mrpc"), 1, labels)
    assert got["accuracy"] == pytest.approx(accuracy_score(labels, [1] * 7))
    assert got["f1"] == pytest.approx(f1_score(labels, [1] * 7))
    # predicting the negative class: F1 of the positive class is 0, not NaN
    assert constant_metrics(get_task("mrpc"), 0, labels)["f1"] == 0.0


def test_a_constant_has_no_correlation():
    got = constant_metrics(get_task("stsb"), 2.5, [0.0, 1.0, 4.0, 5.0])
    assert got == {"pearson": 0.0, "spearman": 0.0}
    assert constant_metrics(get_task("cola"), 1, [0, 1, 1])["mcc"] == 0.0


@pytest.mark.parametrize("name", ["mrpc", "sst2", "cola"])
def test_constant_predictor_on_the_real_files(data_dir, name):
    task = get_task(name)
    train = table_to_examples(read_glue_tsv(glue_file(data_dir, task, "train"), task), task)["label"]
    dev = table_to_examples(read_glue_tsv(glue_file(data_dir, task, "dev"), task), task)["label"]
    majority = int(np.bincount(train).argmax())
    got = constant_predictor(task, data_dir)
    assert got["prediction"] == task.label_names[majority]
    assert got["dev"]["accuracy"] == pytest.approx(np.mean(np.array(dev) == majority))
    if name == "mrpc":  # the figures the README quotes
        assert got["prediction"] == "equivalent"  # label 1 of the files
        assert round(got["dev"]["accuracy"], 3) == 0.684 and round(got["dev"]["f1"], 3) == 0.812


def test_retention_and_gap_closed():
    task = get_task("mrpc")
    student = {"dev": {"f1": 0.823, "accuracy": 0.718}}
    teacher = {"dev": {"f1": 0.858, "accuracy": 0.794}}
    constant = {"dev": {"f1": 0.812, "accuracy": 0.684}}
    assert retention(task, student, teacher) == pytest.approx({"f1": 0.823 / 0.858, "accuracy": 0.718 / 0.794})
    got = gap_closed(task, student, teacher, constant)
    assert got == pytest.approx({"f1": (0.823 - 0.812) / (0.858 - 0.812), "accuracy": (0.718 - 0.684) / (0.794 - 0.684)})
    assert got["accuracy"] == pytest.approx(0.309, abs=1e-3)
    # worse than the constant: negative; a teacher no better than the constant: no ratio at all
    assert gap_closed(task, {"dev": {"accuracy": 0.6}}, teacher, constant)["accuracy"] < 0
    assert gap_closed(task, student, {"dev": {"f1": 0.812, "accuracy": 0.794}}, constant).keys() == {"accuracy"}
