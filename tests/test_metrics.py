import numpy as np
import pytest
import torch
from scipy.stats import pearsonr, spearmanr
from sklearn.metrics import accuracy_score, f1_score, matthews_corrcoef

from tinydistill.data.tasks import get_task
from tinydistill.metrics import compute_metrics, predictions

rng = np.random.default_rng(0)
LABELS = rng.integers(0, 2, size=200)
PREDS = np.where(rng.random(200) < 0.75, LABELS, 1 - LABELS)


def test_mrpc_f1_and_accuracy_match_sklearn():
    m = compute_metrics(get_task("mrpc"), torch.tensor(PREDS), torch.tensor(LABELS))
    assert m["f1"] == pytest.approx(f1_score(LABELS, PREDS), abs=1e-6)
    assert m["accuracy"] == pytest.approx(accuracy_score(LABELS, PREDS), abs=1e-6)


def test_cola_matthews_matches_sklearn():
    m = compute_metrics(get_task("cola"), torch.tensor(PREDS), torch.tensor(LABELS))
    assert m["mcc"] == pytest.approx(matthews_corrcoef(LABELS, PREDS), abs=1e-6)
    assert set(m) == {"mcc", "accuracy"}


@pytest.mark.parametrize("preds,labels", [
    ([1] * 7, [0, 1, 1, 0, 1, 1, 1]),   # a constant prediction (torchmetrics alone gives 0.36 here)
    ([0] * 7, [0, 1, 1, 0, 1, 1, 1]),
    ([1, 0, 1, 0, 1, 0, 1], [1] * 7),   # one class in the labels
    ([1, 0, 1, 1, 0, 0, 1], [1, 0, 1, 1, 0, 0, 1]),  # perfect
    ([0, 1, 0, 0, 1, 1, 0], [1, 0, 1, 1, 0, 0, 1]),  # perfectly wrong
])
def test_cola_matthews_matches_sklearn_in_degenerate_cases(preds, labels):
    m = compute_metrics(get_task("cola"), torch.tensor(preds), torch.tensor(labels))
    assert m["mcc"] == pytest.approx(matthews_corrcoef(labels, preds), abs=1e-6)


def test_mnli_multiclass_accuracy_is_plain_accuracy():
    labels = rng.integers(0, 3, size=300)
    preds = np.where(rng.random(300) < 0.6, labels, (labels + 1) % 3)
    m = compute_metrics(get_task("mnli"), torch.tensor(preds), torch.tensor(labels))
    assert m["accuracy"] == pytest.approx(accuracy_score(labels, preds), abs=1e-6)


def test_stsb_pearson_spearman_match_scipy():
    gold = rng.uniform(0, 5, size=100)
    pred = gold + rng.normal(0, 1.0, size=100)
    m = compute_metrics(get_task("stsb"), torch.tensor(pred, dtype=torch.float32), torch.tensor(gold, dtype=torch.float32))
    assert m["pearson"] == pytest.approx(pearsonr(pred, gold)[0], abs=1e-4)
    assert m["spearman"] == pytest.approx(spearmanr(pred, gold)[0], abs=1e-4)


def test_predictions_argmax_and_regression():
    logits = torch.tensor([[0.1, 0.9], [2.0, -1.0]])
    assert predictions(logits, get_task("mrpc")).tolist() == [1, 0]
    assert predictions(torch.tensor([[3.5], [1.25]]), get_task("stsb")).tolist() == [3.5, 1.25]


def test_main_metric_per_task():
    assert {t: get_task(t).metric for t in ["cola", "mrpc", "stsb", "sst2", "qqp"]} == {
        "cola": "mcc", "mrpc": "f1", "stsb": "spearman", "sst2": "accuracy", "qqp": "f1",
    }
