"""task.unlabeled (issue 50): unlabelled in-domain text that stage=task distils on with the teacher's outputs as its
only targets; the resumable, content-fingerprinted, memory-mapped teacher-logit cache (tiny random BERTs, RTE pairs)."""

import json
import math
import os

import numpy as np
import pytest
import torch
from transformers import AutoTokenizer

from tests.conftest import assert_one_line, tiny_aug_overrides
from tests.test_task_distill import rte_rows, task_overrides
from tinydistill.data import unlabeled as unlabeled_module
from tinydistill.data.files import task_from_config, write_table
from tinydistill.data.glue import TaskDataModule, load_examples
from tinydistill.data.tasks import UNLABELLED_SPLIT, get_task
from tinydistill.data.unlabeled import IGNORE_LABEL, UnlabeledMix, unlabeled_examples
from tinydistill.distill import prediction
from tinydistill.errors import ConfigError, DataError
from tinydistill.stages import run

PAIRS = [("A man is playing a guitar.", "Someone plays music."), ("The sky is green.", "Grass is blue."),
         ("Cats sleep a lot.", "Cats are often asleep."), ("He left early.", "He stayed until the end.")]
HEADER = ["sentence1", "sentence2", "label"]


def write_pairs(path, rows=PAIRS, header=HEADER):
    fmt = {".csv": "csv", ".tsv": "tsv", ".jsonl": "jsonl", ".parquet": "parquet"}[path.suffix]
    write_table(path, fmt, header, [[*r, "entailment"][: len(header)] for r in rows])
    return path


def rte_with(unlabeled, **extra):
    return get_task("rte").__class__(**{**get_task("rte").__dict__, "unlabeled": str(unlabeled), **extra})


@pytest.mark.parametrize("suffix", [".csv", ".tsv", ".jsonl", ".parquet"])
def test_every_file_format_reads_pairs_with_a_sentinel_label(tmp_path, suffix, caplog):
    path = write_pairs(tmp_path / f"u{suffix}")
    with caplog.at_level("INFO", logger="tinydistill.data.unlabeled"):
        ds = unlabeled_examples(rte_with(path))
    assert ds["text_a"] == [a for a, _ in PAIRS] and ds["text_b"] == [b for _, b in PAIRS]
    assert ds["label"] == [IGNORE_LABEL] * len(PAIRS)
    assert len([r for r in caplog.records if "column 'label' ignored" in r.getMessage()]) == 1


def test_a_file_without_a_label_column_needs_no_log(tmp_path, caplog):
    path = write_pairs(tmp_path / "u.jsonl", header=HEADER[:2])
    with caplog.at_level("INFO", logger="tinydistill.data.unlabeled"):
        assert len(unlabeled_examples(rte_with(path))) == len(PAIRS)
    assert "ignored" not in caplog.text


def test_a_datasets_folder_is_read_by_the_hub_loader(tmp_path):
    folder = tmp_path / "hub_like"
    folder.mkdir()
    write_pairs(folder / "train.jsonl", header=HEADER[:2])
    assert unlabeled_examples(rte_with(folder))["text_b"] == [b for _, b in PAIRS]


def test_bad_files_fail_in_one_line_as_task_train(tmp_path):
    missing = write_pairs(tmp_path / "m.csv", header=["sentence1", "other"])
    with pytest.raises(DataError, match=r"m.csv: missing column 'sentence2' \(task.text\)"):
        unlabeled_examples(rte_with(missing))
    empty = write_pairs(tmp_path / "e.csv", rows=[*PAIRS, ("  ", "x")])
    with pytest.raises(DataError, match=r"e.csv: row 5, column 'sentence1': empty text"):
        unlabeled_examples(rte_with(empty))
    bad = tmp_path / "b.tsv"
    bad.write_bytes(b"sentence1\tsentence2\nok\tcaf\xe9\n")
    with pytest.raises(DataError, match="b.tsv.*UTF-8"):
        unlabeled_examples(rte_with(bad))
    cut = tmp_path / "c.jsonl"
    cut.write_text('{"sentence1": "a", "sentence2": "b"}\n{"sentence1": "a", "sent\n')
    with pytest.raises(DataError, match="c.jsonl: not a readable JSONL file: line 2 is malformed JSON"):
        unlabeled_examples(rte_with(cut))
    with pytest.raises(DataError, match="file not found"):
        unlabeled_examples(rte_with(tmp_path / "none.csv"))


def test_rest_is_the_rows_train_rows_leaves_out_without_labels(data_dir):
    task = rte_with("rest", train_rows=100)
    train = load_examples(task, "train", str(data_dir))
    rest = load_examples(task, UNLABELLED_SPLIT, str(data_dir))
    whole = load_examples(get_task("rte"), "train", str(data_dir))
    assert len(train) == 100 and len(rest) == len(whole) - 100
    assert set(rest["label"]) == {IGNORE_LABEL}
    pairs = set(zip(whole["text_a"], whole["text_b"]))
    assert set(zip(rest["text_a"], rest["text_b"])) | set(zip(train["text_a"], train["text_b"])) == pairs
    assert not set(zip(rest["text_a"], rest["text_b"])) & set(zip(train["text_a"], train["text_b"]))


def test_config_keys_are_checked_in_one_line():
    with pytest.raises(ConfigError, match="task.unlabeled=rest: .*set task.train_rows"):
        task_from_config({"name": "rte", "unlabeled": "rest"})
    assert task_from_config({"name": "rte", "unlabeled": "rest", "train_rows": 10}).unlabeled == "rest"
    for bad, key in (({"max_rows": 0}, "max_rows"), ({"ratio": -1}, "ratio"), ({"augment": "yes"}, "augment")):
        with pytest.raises(ConfigError, match=f"stage.unlabeled.{key}="):
            UnlabeledMix.from_config(bad, 0)


def test_mixing_options_choose_nested_seeded_rows():
    assert UnlabeledMix().rows(10, 50) == list(range(50))
    by_ratio = UnlabeledMix(ratio=2.0).rows(10, 50)
    assert len(by_ratio) == 20 and by_ratio == sorted(by_ratio)
    capped = UnlabeledMix(ratio=2.0, max_rows=7).rows(10, 50)
    assert len(capped) == 7 and set(capped) <= set(by_ratio)  # the first rows of one order
    assert UnlabeledMix(max_rows=7, seed=1).rows(10, 50) != capped
    assert len(UnlabeledMix(ratio=100.0).rows(10, 50)) == 50


def test_the_data_module_trains_on_labelled_then_unlabelled_rows(tmp_path, tiny_teacher, data_dir):
    tok = AutoTokenizer.from_pretrained(tiny_teacher)
    task = rte_with("rest", train_rows=30)
    dm = TaskDataModule(task, tok, 128, str(data_dir), str(tmp_path / "cache"), with_index=True,
                        unlabeled=UnlabeledMix(ratio=2.0))
    dm.setup()
    train = dm.splits["train"]
    assert len(train) == 90 and dm.labelled_rows == 30 and train["idx"] == list(range(90))
    assert IGNORE_LABEL not in train["labels"][:30] and set(train["labels"][30:]) == {IGNORE_LABEL}


def stage_overrides(tiny_teacher, data_dir, *extra):
    return task_overrides(tiny_teacher, data_dir, "task.train_rows=40", "stage.measure_latency=false",
                          "stage.intermediate.max_steps=2", "stage.pred.max_steps=2", *extra)


def test_stage_task_distils_on_unlabelled_rows_in_both_phases(tmp_path, compose_cfg, tiny_teacher, data_dir,
                                                              monkeypatch):
    seen = []
    real_loss = prediction.prediction_loss
    monkeypatch.setattr("tinydistill.modules.task.prediction_loss",
                        lambda s, t, labels, *a, **k: seen.append(labels.tolist()) or real_loss(s, t, labels, *a, **k))
    cfg = compose_cfg(*stage_overrides(tiny_teacher, data_dir, "task.unlabeled=rest", "stage.unlabeled.max_rows=60",
                                       "stage.batch_size=50"))
    result = run(cfg)
    assert result["run"] == "none-noaug-unlabeled-init_random" and result["unlabeled"]["max_rows"] == 60
    assert result["intermediate"]["steps"] == 2 and result["pred"]["steps"] == 2
    assert any(IGNORE_LABEL in labels for labels in seen)  # batches of 50 of 100 rows, 60 of them unlabelled
    (cache,) = tmp_path.glob("**/teacher_logits/*.npy")
    assert np.load(cache, allow_pickle=False).shape == (100, 2)


def test_gold_label_settings_are_refused_with_unlabelled_rows(train_py, tiny_teacher, data_dir):
    base = stage_overrides(tiny_teacher, data_dir, "task.unlabeled=rest")
    assert_one_line(train_py(*base, "ablation=no_pred"), "ablation=no_pred", "task.unlabeled=rest")


def test_augment_true_augments_the_chosen_unlabelled_rows_too(tmp_path, compose_cfg, tiny_teacher, data_dir):
    from data_aug import ensure_augmented_rows

    cfg = compose_cfg(*stage_overrides(tiny_teacher, data_dir, "task.unlabeled=rest", "stage.unlabeled.max_rows=6",
                                       "stage.unlabeled.augment=true",
                                       *tiny_aug_overrides(tmp_path, AutoTokenizer.from_pretrained(tiny_teacher))))
    result = run(cfg)
    assert result["unlabeled"]["augment"] is True
    augmented = [json.loads(line) for line in open(result["unlabeled"]["augmented_file"], encoding="utf-8")]
    pool = load_examples(rte_with("rest", train_rows=40), UNLABELLED_SPLIT, data_dir)
    chosen = pool.select(UnlabeledMix(max_rows=6).rows(40, len(pool)))
    originals = [[r["text_a"], r["text_b"]] for r in chosen]
    rows = [[r["text_a"], r["text_b"]] for r in augmented]
    assert len(rows) > 6 and all(o in rows for o in originals)  # each chosen row, then its augmented copies
    assert any(r not in originals for r in rows)
    labelled = len(load_examples(get_task("rte"), "train", data_dir, result["train_file"]))
    (cache,) = tmp_path.glob("**/teacher_logits/*.npy")
    assert np.load(cache, allow_pickle=False).shape == (labelled + len(rows), 2)  # labelled, then these rows

    # Up to date for the same rows (not rewritten); other rows regenerate it.
    path = result["unlabeled"]["augmented_file"]
    before = os.stat(path).st_mtime_ns
    again = ensure_augmented_rows(cfg.aug, rte_with("rest", train_rows=40), chosen.remove_columns("label"), data_dir,
                                  cfg.paths.artifacts_dir, source="test")
    assert str(again) == path and os.stat(path).st_mtime_ns == before
    ensure_augmented_rows(cfg.aug, rte_with("rest", train_rows=40), chosen.select(range(3)).remove_columns("label"),
                          data_dir, cfg.paths.artifacts_dir, source="test")
    assert len(open(path, encoding="utf-8").readlines()) < len(rows)


def test_augment_true_without_augmentation_is_refused(train_py, tiny_teacher, data_dir):
    base = stage_overrides(tiny_teacher, data_dir, "task.unlabeled=rest", "stage.unlabeled.augment=true")
    assert_one_line(train_py(*base), "stage.unlabeled.augment=true", "set aug=on or stage.unlabeled.augment=false")


def test_regression_target_gold_is_refused():
    from tinydistill.stages.task.plan import unlabeled_mix

    regression = rte_with("rest", train_rows=40, label_names=None)
    with pytest.raises(ConfigError, match="distill.regression_target=gold needs a gold score"):
        unlabeled_mix(regression, {}, "none", False, "gold")
    assert unlabeled_mix(regression, {"ratio": 2}, "none", False, "teacher") == UnlabeledMix(ratio=2.0)


def test_a_bad_unlabelled_file_stops_stage_task_before_any_compute(tmp_path, train_py, tiny_teacher, data_dir):
    bad = write_pairs(tmp_path / "u.csv", rows=[*PAIRS, ("", "x")])
    assert_one_line(train_py(*stage_overrides(tiny_teacher, data_dir, f"task.unlabeled={bad}")),
                    "u.csv: row 5, column 'sentence1': empty text")


def test_the_baseline_reads_no_unlabelled_row(tmp_path, compose_cfg, tiny_teacher, data_dir, monkeypatch):
    def refuse(*a, **k):
        raise AssertionError("stage=finetune read the unlabelled rows")

    monkeypatch.setattr(unlabeled_module, "unlabeled_examples", refuse)
    monkeypatch.setattr("tinydistill.data.glue.unlabeled_examples", refuse)
    bad = write_pairs(tmp_path / "u.csv", rows=[("", "")])  # a file stage=task would refuse
    cfg = compose_cfg("stage=finetune", "task=rte", f"teacher.name_or_path={tiny_teacher}", f"paths.data_dir={data_dir}",
                      "logger=none", "stage.max_steps=2", "trainer.limit_val_batches=1", "stage.measure_latency=false",
                      "task.train_rows=40", f"task.unlabeled={bad}")
    assert run(cfg)["steps"] == 2


# ---------------------------------------------------------------------------------------------- the logit cache


def test_an_interrupted_logit_pass_resumes_to_the_same_bytes(tmp_path, tiny_teacher, data_dir, monkeypatch):
    tok, teacher, ds = rte_rows(tiny_teacher, data_dir, tmp_path, 40)
    monkeypatch.setattr(prediction, "CHUNK_BATCHES", 2)  # chunks of 2 batches of 4 rows
    whole = prediction.cached_teacher_logits(teacher, tiny_teacher, ds, tok, tmp_path / "a", batch_size=4)
    (reference,) = (tmp_path / "a").glob("teacher_logits/*.npy")

    real, calls = prediction._store_rows, []

    def crash_after_two_chunks(*args):
        if len(calls) == 2:
            raise KeyboardInterrupt("simulated interruption")
        calls.append(args)
        real(*args)

    monkeypatch.setattr(prediction, "_store_rows", crash_after_two_chunks)
    with pytest.raises(KeyboardInterrupt):
        prediction.cached_teacher_logits(teacher, tiny_teacher, ds, tok, tmp_path / "b", batch_size=4)
    (partial,) = (tmp_path / "b").glob("teacher_logits/*.npy")
    assert int((~prediction.unknown_rows(torch.from_numpy(np.load(partial)))).sum()) == 2 * 2 * 4
    monkeypatch.setattr(prediction, "_store_rows", real)
    batches = []
    real_batches = prediction._logit_batches
    monkeypatch.setattr(prediction, "_logit_batches",
                        lambda t, d, *a, **k: batches.append(len(d)) or real_batches(t, d, *a, **k))
    resumed = prediction.cached_teacher_logits(teacher, tiny_teacher, ds, tok, tmp_path / "b", batch_size=4)
    assert batches == [40 - 16]  # only the rows the interrupted pass left
    assert partial.read_bytes() == reference.read_bytes() and torch.equal(resumed, whole)
    assert torch.equal(whole, prediction.compute_teacher_logits(teacher, ds, tok, batch_size=4))  # one pass's values


def test_a_retrained_teacher_of_the_same_path_and_size_gets_new_logits(tmp_path, tiny_teacher, data_dir):
    tok, teacher, ds = rte_rows(tiny_teacher, data_dir, tmp_path, 12)
    folder = tmp_path / "teacher"
    teacher.save_pretrained(folder)
    tok.save_pretrained(folder)
    weights = folder / "model.safetensors"
    stat = weights.stat()
    first = prediction.cached_teacher_logits(teacher, str(folder), ds, tok, tmp_path / "cache")
    with torch.no_grad():
        teacher.classifier.bias.add_(1.0)
    teacher.save_pretrained(folder)
    os.utime(weights, ns=(stat.st_atime_ns, stat.st_mtime_ns))  # same path, size and modification time
    assert weights.stat().st_size == stat.st_size
    again = prediction.cached_teacher_logits(teacher, str(folder), ds, tok, tmp_path / "cache")
    assert torch.allclose(again, first + 1.0, atol=1e-5)
    assert len(list((tmp_path / "cache").glob("teacher_logits/*.npy"))) == 2


def test_the_cache_is_read_memory_mapped(tmp_path, tiny_teacher, data_dir, monkeypatch):
    tok, teacher, ds = rte_rows(tiny_teacher, data_dir, tmp_path, 8)
    prediction.cached_teacher_logits(teacher, tiny_teacher, ds, tok, tmp_path / "cache")
    loads, arrays = [], []
    real_load = np.load
    monkeypatch.setattr(prediction.np, "load",
                        lambda *a, **k: loads.append(k) or arrays.append(real_load(*a, **k)) or arrays[-1])
    logits = prediction.cached_teacher_logits(teacher, tiny_teacher, ds, tok, tmp_path / "cache")
    assert loads == [{"mmap_mode": "c", "allow_pickle": False}]
    assert isinstance(arrays[0], np.memmap) and np.shares_memory(logits.numpy(), arrays[0])
    assert not math.isnan(float(logits.sum()))


def test_tokenised_unlabelled_split_is_keyed_by_the_file_content(tmp_path, tiny_teacher):
    from tinydistill.data.glue import tokenized_split

    tok = AutoTokenizer.from_pretrained(tiny_teacher)
    path = write_pairs(tmp_path / "u.jsonl")
    first = tokenized_split(rte_with(path), UNLABELLED_SPLIT, tok, 32, None, tmp_path / "cache")
    write_pairs(path, rows=PAIRS[:2])
    assert len(first) == 4 and len(tokenized_split(rte_with(path), UNLABELLED_SPLIT, tok, 32, None,
                                                   tmp_path / "cache")) == 2
    assert json.dumps(first[0]["labels"]) == str(IGNORE_LABEL)


def test_the_sst2_recipe_differs_only_by_the_unlabelled_text(compose_cfg):
    """conf/experiment/unlabeled/: one teacher for all, the two students differ only in task.unlabeled (and their
    names), and the baseline is the labelled-only run's, same labels and steps."""
    from omegaconf import OmegaConf

    from tinydistill.stages.task import result_dir

    teacher = compose_cfg("stage=finetune", "experiment=unlabeled/finetune")
    labelled = compose_cfg("stage=task", "experiment=unlabeled/task", "seed=7")
    text = compose_cfg("stage=task", "experiment=unlabeled/text", "seed=7")
    baseline = compose_cfg("stage=finetune", "experiment=unlabeled/nodistill", "seed=7")
    for c in (teacher, labelled, text, baseline):
        OmegaConf.resolve(c)
    assert (labelled.task.unlabeled, text.task.unlabeled) == (None, "rest")
    assert labelled.stage.teacher == text.stage.teacher == teacher.stage.output_dir == baseline.stage.compare_to
    for c in (teacher, text, baseline):
        assert (c.task.train_rows, c.task.tune_split) == (1000, 0.05)
    a, b = OmegaConf.to_container(labelled.stage), OmegaConf.to_container(text.stage)
    for d in (a, b):
        d.pop("run_name"), d.pop("output_root"), d["pred"].pop("teacher_logits")
    assert a == b and OmegaConf.to_container(labelled.distill) == OmegaConf.to_container(text.distill)
    assert baseline.stage.match_steps_of == str(result_dir(labelled)) != str(result_dir(text))
    assert baseline.stage.model == labelled.stage.general_dir and baseline.stage.lr == labelled.stage.pred.lr
