"""Teacher and student checks before any compute (tinydistill/teacher_checks.py): untrained head, wrong task, weak teacher,
vocabularies, the augmentation model, and the DistilBERT teacher's head. Tiny random BERTs (2 layers, hidden 32) on
a small synthetic SST-2 whose labels a tiny teacher learns in seconds, so a *good* teacher exists to pass."""

from __future__ import annotations

import json
import logging
import os
import random
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file, save_file
from transformers import AutoTokenizer, BertConfig, BertForMaskedLM, BertForSequenceClassification, BertTokenizer

from tests.conftest import ROOT, TINY_STUDENT, compose_config
from tinydistill.teacher_checks import (
    aug_vocabulary_warning,
    check_teacher_strength,
    load_teacher_classifier,
    task_mismatch,
    tokenizer_difference,
)
from tinydistill.data.tasks import get_task
from tinydistill.errors import ConfigError
from tinydistill.models.distilbert import load_mlm_teacher
from tinydistill.models.loading import newly_initialised, quiet_from_pretrained
from tinydistill.stages import run

SST2 = get_task("sst2")
POSITIVE = ["good", "great", "wonderful", "excellent", "lovely"]
NEGATIVE = ["bad", "awful", "terrible", "boring", "poor"]
ANIMALS = ["cat", "dog", "horse", "bird", "fish"]
VEHICLES = ["car", "bus", "train", "truck", "boat"]
FILLERS = ["the", "a", "movie", "story", "was", "really", "quite", "very", "and", "with", "about", "old"]


def write_sst2(root: Path, label_by: str, seed: int) -> Path:
    """A GLUE folder with a synthetic SST-2 (300 train, 100 dev rows, 60% label 1). Every sentence has one sentiment
    and one topic word; `label_by` picks which decides the label ("sentiment": positive = 1, "topic": animal = 1),
    the other is independent of it. A teacher fine-tuned on the topic data is a teacher of another task with the
    same labels: at chance on the sentiment data."""
    rng = random.Random(seed)

    def rows(n: int) -> list[str]:
        out = []
        for i in range(n):
            label = int(i % 5 < 3)  # 60% ones: the constant predictor scores 0.6
            other = rng.random() < 0.5
            positive, animal = (label, other) if label_by == "sentiment" else (other, label)
            words = [rng.choice(POSITIVE if positive else NEGATIVE), rng.choice(ANIMALS if animal else VEHICLES),
                     *rng.sample(FILLERS, 4)]
            rng.shuffle(words)
            out.append(f"{' '.join(words)}\t{label}")
        return out

    folder = root / "glue" / "SST-2"
    folder.mkdir(parents=True)
    for split, n in (("train", 300), ("dev", 100)):
        (folder / f"{split}.tsv").write_text("sentence\tlabel\n" + "\n".join(rows(n)) + "\n")
    return root


@pytest.fixture(scope="module")
def sentiment_data(tmp_path_factory) -> Path:
    return write_sst2(tmp_path_factory.mktemp("sentiment"), "sentiment", seed=0)


@pytest.fixture(scope="module")
def topic_data(tmp_path_factory) -> Path:
    return write_sst2(tmp_path_factory.mktemp("topic"), "topic", seed=1)


def finetune(root: Path, tiny_bert: Path, data: Path) -> str:
    cfg = compose_config(
        root, "stage=finetune", "task=sst2", f"teacher.name_or_path={tiny_bert}", f"paths.data_dir={data}",
        "logger=none", "stage.epochs=6", "stage.lr=2e-3", "stage.batch_size=16", "stage.evals_per_epoch=1",
        "stage.measure_latency=false", "trainer.enable_progress_bar=false",
    )
    return run(cfg)["output_dir"]


@pytest.fixture(scope="module")
def good_teacher(tmp_path_factory, tiny_bert, sentiment_data) -> str:
    """A tiny BERT fine-tuned on the synthetic sentiment task: clearly above the constant predictor."""
    return finetune(tmp_path_factory.mktemp("good_teacher"), tiny_bert, sentiment_data)


@pytest.fixture(scope="module")
def other_task_teacher(tmp_path_factory, tiny_bert, topic_data) -> str:
    """The same tiny BERT fine-tuned on the topic task: right labels, wrong task."""
    return finetune(tmp_path_factory.mktemp("other_teacher"), tiny_bert, topic_data)


def save_classifier(path: Path, tokenizer_src: Path, **config) -> Path:
    """A tiny BertForSequenceClassification saved whole (head included, so only its config can be wrong)."""
    tok = AutoTokenizer.from_pretrained(tokenizer_src)
    BertForSequenceClassification(BertConfig(
        vocab_size=tok.vocab_size, hidden_size=32, num_hidden_layers=2, num_attention_heads=4, intermediate_size=128,
        max_position_embeddings=128, **config)).save_pretrained(path)
    tok.save_pretrained(path)
    return path


def save_mlm(path: Path, tokenizer_src: Path, tie: bool = True) -> Path:
    tok = AutoTokenizer.from_pretrained(tokenizer_src)
    BertForMaskedLM(BertConfig(
        vocab_size=tok.vocab_size, hidden_size=32, num_hidden_layers=2, num_attention_heads=4, intermediate_size=128,
        max_position_embeddings=128, tie_word_embeddings=tie)).save_pretrained(path)
    tok.save_pretrained(path)
    return path


def task_overrides(teacher, data, *extra) -> list[str]:
    return ["stage=task", "task=sst2", f"stage.teacher={teacher}", f"paths.data_dir={data}", "logger=none",
            "student.init=random", *TINY_STUDENT, "stage.batch_size=16", "stage.intermediate.max_steps=2",
            "stage.pred.max_steps=2", "stage.latency_repeats=1", "stage.latency_batch1=false",
            "trainer.enable_progress_bar=false", *extra]


def files_under(folder: Path) -> list[str]:
    return sorted(str(p.relative_to(folder)) for p in folder.rglob("*")) if folder.exists() else []


def fails_fast(tmp_path: Path, overrides: list[str], match: str) -> str:
    """run(cfg) raises a one-line ConfigError matching `match` and writes nothing under the artifacts folder."""
    cfg = compose_config(tmp_path, *overrides)
    with pytest.raises(ConfigError, match=match) as e:
        run(cfg)
    message = str(e.value)
    assert "\n" not in message
    assert files_under(tmp_path / "artifacts") == []  # no model folder, no teacher logits, no cache
    return message


# ------------------------------------------------------------------ a correct teacher passes


def test_a_correct_teacher_passes_and_its_fresh_dev_metrics_are_recorded(tmp_path, good_teacher, sentiment_data):
    # A stale metrics.json beside the teacher (say, from an earlier fine-tuning) must not be trusted.
    teacher = tmp_path / "teacher"
    shutil.copytree(good_teacher, teacher)
    (teacher / "metrics.json").write_text(json.dumps({"task": "sst2", "dev": {"accuracy": 0.123}}))
    cfg = compose_config(tmp_path, *task_overrides(teacher, sentiment_data))
    result = run(cfg)
    saved = json.loads((Path(result["output_dir"]) / "metrics.json").read_text())
    fresh = saved["teacher"]["dev"]["accuracy"]
    assert fresh != 0.123 and fresh >= 0.9, saved["teacher"]
    # measured as stage=finetune's Lightning validation measured the same model on the same dev set
    assert fresh == pytest.approx(json.loads((Path(good_teacher) / "metrics.json").read_text())["dev"]["accuracy"])
    check = saved["teacher_check"]
    assert check["metric"] == "accuracy" and check["teacher"] == fresh and check["constant"] == pytest.approx(0.6)
    assert not check["weak"] and check["margin"] == 0.02
    assert saved["retention"]["accuracy"] == pytest.approx(saved["dev"]["accuracy"] / fresh)
    const = saved["constant"]["dev"]["accuracy"]
    assert saved["gap_closed"]["accuracy"] == pytest.approx((saved["dev"]["accuracy"] - const) / (fresh - const))


# ------------------------------------------------------------------ untrained head


def test_untrained_head_through_train_py_exits_2_with_one_line(tmp_path, tiny_bert, minilm_path, sentiment_data):
    """The issue's example: a masked LM (stage=mlm's output) as the task teacher."""
    mlm = save_mlm(tmp_path / "mlm" / "minilm_l6", minilm_path)
    artifacts = tmp_path / "artifacts"
    r = subprocess.run(
        [sys.executable, "train.py", *task_overrides(mlm, sentiment_data), f"paths.artifacts_dir={artifacts}",
         f"hydra.run.dir={tmp_path / 'hydra'}"],
        cwd=ROOT, capture_output=True, text=True, timeout=600, env={**os.environ, "WANDB_SILENT": "true"},
    )
    assert r.returncode == 2, r.stderr[-3000:]
    output = r.stdout + r.stderr
    errors = [line for line in output.splitlines() if "ERROR" in line]
    assert len(errors) == 1, output[-3000:]
    assert f"stage.teacher={mlm} is not a classifier fine-tuned on sst2" in errors[0]
    assert "classifier.bias" in errors[0] and "`python train.py stage=finetune task=sst2`" in errors[0]
    assert "Traceback" not in output and "LOAD REPORT" not in output  # our line, not transformers' table
    assert files_under(artifacts) == []


def test_untrained_head_of_a_bare_encoder(tmp_path, tiny_bert, sentiment_data):
    message = fails_fast(tmp_path, task_overrides(tiny_bert, sentiment_data), r"is not a classifier fine-tuned on sst2")
    # tiny_bert has a pooler but no classifier: exactly the classifier is named
    assert "initialises classifier.bias, classifier.weight at random" in message


# ------------------------------------------------------------------ wrong task


@pytest.mark.parametrize(("config", "reason"), [
    ({"num_labels": 3, "id2label": {0: "contradiction", 1: "entailment", 2: "neutral"}},
     r"it has 3 output\(s\), sst2 needs 2"),
    ({"num_labels": 1, "problem_type": "regression"}, r"it has 1 output\(s\), sst2 needs 2"),
    ({"num_labels": 2, "problem_type": "multi_label_classification"},
     r"its problem type is multi_label_classification, sst2's is single_label_classification"),
    ({"num_labels": 2, "id2label": {0: "entailment", 1: "not_entailment"}},
     r"its labels are \['entailment', 'not_entailment'\], sst2's are \['negative', 'positive'\]"),
])
def test_teacher_of_another_task(tmp_path, minilm_path, sentiment_data, config, reason):
    teacher = save_classifier(tmp_path / "teacher", minilm_path, **config)
    fails_fast(tmp_path, task_overrides(teacher, sentiment_data), rf"was fine-tuned for another task: {reason}")


def test_task_mismatch_accepts_placeholder_labels_and_the_right_task():
    assert task_mismatch(BertConfig(num_labels=2), SST2) is None  # LABEL_0, LABEL_1: nothing to compare
    assert task_mismatch(BertConfig(num_labels=2, id2label={0: "0", 1: "1"}), SST2) is None
    assert task_mismatch(BertConfig(num_labels=1), get_task("stsb")) is None
    assert task_mismatch(BertConfig(num_labels=2), get_task("stsb")) == "it has 2 output(s), stsb needs 1"
    mnli = get_task("mnli")
    swapped = BertConfig(num_labels=3, id2label={0: "entailment", 1: "neutral", 2: "contradiction"})  # the hub's order
    assert "its labels are" in task_mismatch(swapped, mnli)


@pytest.mark.parametrize("name", ["sst2", "mrpc", "cola", "qqp", "wnli"])
@pytest.mark.parametrize("labels", ["placeholder", "file", "names"])
def test_glue_teachers_fine_tuned_before_the_label_names_still_teach(tmp_path, minilm_path, name, labels):
    """A teacher fine-tuned before the GLUE presets had label names carries LABEL_0/LABEL_1 or the file's "0"/"1"; it
    is accepted as one fine-tuned since (the names), and hands the task's names on (what the student exports)."""
    task = get_task(name)
    id2label = {"placeholder": None, "file": dict(enumerate(task.file_labels)),
                "names": dict(enumerate(task.label_names))}[labels]
    teacher = save_classifier(tmp_path / "teacher", minilm_path, num_labels=2,
                              **({"id2label": id2label} if id2label else {}))
    model = load_teacher_classifier(str(teacher), task)
    assert model.config.id2label == dict(enumerate(task.label_names)) and task.label_names != task.file_labels
    swapped = save_classifier(tmp_path / "swapped", minilm_path, id2label=dict(enumerate(task.label_names[::-1])))
    with pytest.raises(ConfigError, match=r"was fine-tuned for another task: its labels are"):
        load_teacher_classifier(str(swapped), task)


# ------------------------------------------------------------------ weak teacher


def test_teacher_of_another_task_with_the_same_labels_is_weak(tmp_path, other_task_teacher, sentiment_data):
    message = fails_fast(tmp_path, task_overrides(other_task_teacher, sentiment_data),
                         r"is too weak to teach sst2: its dev accuracy is 0\.\d{4}, the constant predictor's "
                         r"\(always 'positive'\) 0\.6000, and stage\.min_teacher_margin=0\.02 asks for at least "
                         r"0\.6200")
    assert "stage.allow_weak_teacher=true" in message


def test_allow_weak_teacher_continues_with_a_warning(tmp_path, other_task_teacher, sentiment_data, caplog):
    cfg = compose_config(tmp_path, *task_overrides(other_task_teacher, sentiment_data, "stage.allow_weak_teacher=true",
                                                   "stage.phase=intermediate"))
    with caplog.at_level(logging.WARNING, logger="tinydistill.teacher_checks"):
        result = run(cfg)
    assert result["teacher_check"]["weak"] and result["teacher_check"]["allowed_weak"]
    assert result["intermediate"]["steps"] == 2
    warnings = [r.getMessage() for r in caplog.records if r.name == "tinydistill.teacher_checks"]
    assert len(warnings) == 1 and "distilling it anyway (stage.allow_weak_teacher=true)" in warnings[0]


def test_teacher_evaluation_honours_the_runs_dev_batch_limit():
    from tinydistill.stages.classifier import _limited_batches

    assert [_limited_batches(x, 10) for x in (None, 0, 0.0, 1.0, 3, 30, 0.25, 0.01)] == [10, 10, 10, 10, 3, 10, 2, 1]


def test_weak_teacher_rule_and_margin():
    constant = {"prediction": "1", "dev": {"accuracy": 0.6}}
    kwargs = {"allow_weak": False, "teacher": "t"}
    assert not check_teacher_strength(SST2, {"dev": {"accuracy": 0.63}}, constant, 0.02, **kwargs)["weak"]
    with pytest.raises(ConfigError, match=r"its dev accuracy is 0\.6100.*0\.6000.*at least 0\.6200"):
        check_teacher_strength(SST2, {"dev": {"accuracy": 0.61}}, constant, 0.02, **kwargs)
    assert not check_teacher_strength(SST2, {"dev": {"accuracy": 0.61}}, constant, 0.0, **kwargs)["weak"]
    for bad in (-0.1, "0.02", True, None):
        with pytest.raises(ConfigError, match="stage.min_teacher_margin="):
            check_teacher_strength(SST2, {"dev": {"accuracy": 0.9}}, constant, bad, **kwargs)
    # a constant regression teacher has no Spearman correlation (NaN): counts as 0, as the constant predictor's
    stsb_constant = {"prediction": 2.7, "dev": {"spearman": 0.0, "pearson": 0.0}}
    with pytest.raises(ConfigError, match=r"its dev spearman is 0\.0000"):
        check_teacher_strength(get_task("stsb"), {"dev": {"spearman": float("nan")}}, stsb_constant, 0.02, **kwargs)


# ------------------------------------------------------------------ vocabularies


def cased_copy(src: Path, dst: Path) -> Path:
    """The same model and vocabulary, but a tokenizer that keeps case and accents."""
    shutil.copytree(src, dst)
    vocab = AutoTokenizer.from_pretrained(src).get_vocab()
    for f in ("vocab.txt", "tokenizer.json", "tokenizer_config.json", "special_tokens_map.json"):
        (dst / f).unlink(missing_ok=True)
    BertTokenizer(vocab=vocab, do_lower_case=False, strip_accents=False).save_pretrained(dst)
    return dst


def small_vocab_student(dst: Path, words: list[str]) -> Path:
    """A tiny BERT student with its own 100-odd-token vocabulary."""
    dst.mkdir()
    tok = BertTokenizer(vocab={w: i for i, w in enumerate(["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]", *words])})
    BertForSequenceClassification(BertConfig(vocab_size=len(tok), hidden_size=16, num_hidden_layers=2,
                                             num_attention_heads=4, intermediate_size=32)).save_pretrained(dst)
    tok.save_pretrained(dst)
    return dst


def test_student_with_another_lower_casing_is_refused(tmp_path, good_teacher, tiny_bert, sentiment_data):
    student = cased_copy(tiny_bert, tmp_path / "cased_student")
    message = fails_fast(tmp_path, task_overrides(good_teacher, sentiment_data, f"student.init={student}"),
                         rf"student.init={student} and stage.teacher={good_teacher} use different tokenizers: same "
                         r"vocabulary, but lower-casing or accent stripping differs")
    assert "position by position" in message


def test_student_with_another_vocabulary_is_refused(tmp_path, good_teacher, sentiment_data):
    student = small_vocab_student(tmp_path / "student", sorted(set(POSITIVE + NEGATIVE + ANIMALS + FILLERS)))
    fails_fast(tmp_path, task_overrides(good_teacher, sentiment_data, f"student.init={student}"),
               r"use different tokenizers: their vocabularies differ \(30522 and \d+ tokens")


def test_student_without_tokenizer_but_too_small_an_embedding_is_refused(tmp_path, good_teacher, sentiment_data):
    student = small_vocab_student(tmp_path / "student", ["good", "bad"])
    for f in ("vocab.txt", "tokenizer.json", "tokenizer_config.json", "special_tokens_map.json"):
        (student / f).unlink(missing_ok=True)
    fails_fast(tmp_path, task_overrides(good_teacher, sentiment_data, f"student.init={student}"),
               r"has a vocabulary of 7 tokens, the tokenizer of stage.teacher=.* 30522")


def test_a_student_with_the_teachers_tokenizer_passes(tmp_path, tiny_bert, minilm_path):
    a, b = AutoTokenizer.from_pretrained(minilm_path), AutoTokenizer.from_pretrained(tiny_bert)
    assert tokenizer_difference(a, b) is None
    cased = AutoTokenizer.from_pretrained(cased_copy(tiny_bert, tmp_path / "cased"))
    assert "lower-casing" in tokenizer_difference(a, cased)


# ------------------------------------------------------------------ augmentation model


def test_aug_model_with_another_vocabulary_warns_before_augmenting(tmp_path, good_teacher, tiny_bert, sentiment_data,
                                                                  monkeypatch, caplog):
    import tinydistill.stages.task.inputs as task_models

    class Augmenting(Exception):
        pass

    def ensure_augmented(*args, **kwargs):
        raise Augmenting

    monkeypatch.setattr(task_models, "ensure_augmented", ensure_augmented)
    mlm = cased_copy(tiny_bert, tmp_path / "cased_mlm")
    cfg = compose_config(tmp_path, *task_overrides(good_teacher, sentiment_data, "aug=on", f"aug.mlm_model={mlm}"))
    with caplog.at_level(logging.WARNING, logger="tinydistill.stages.task"), pytest.raises(Augmenting):
        run(cfg)
    warnings = [r.getMessage() for r in caplog.records if r.name == "tinydistill.stages.task"]
    assert len(warnings) == 1 and "\n" not in warnings[0]
    assert warnings[0].startswith(f"aug.mlm_model={mlm} and the task's tokenizer (stage.teacher={good_teacher}) differ")
    assert "lower-casing" in warnings[0] and "a warning" in warnings[0]
    # the teacher's own vocabulary: no warning
    caplog.clear()
    same = task_overrides(good_teacher, sentiment_data, "aug=on", f"aug.mlm_model={tiny_bert}")
    cfg = compose_config(tmp_path, *same)
    with caplog.at_level(logging.WARNING, logger="tinydistill.stages.task"), pytest.raises(Augmenting):
        run(cfg)
    assert not [r for r in caplog.records if r.name == "tinydistill.stages.task"]


def test_aug_vocabulary_warning_counts_foreign_words(tmp_path, minilm_path):
    task_tok = AutoTokenizer.from_pretrained(minilm_path)
    small = small_vocab_student(tmp_path / "small", ["good", "bad", "zzzqqq", "##ing"])
    warning = aug_vocabulary_warning(AutoTokenizer.from_pretrained(small), "m", task_tok, "t")
    assert "their vocabularies differ" in warning and "33% of the masked LM's whole-word tokens" in warning
    assert aug_vocabulary_warning(task_tok, "m", task_tok, "t") is None


# ------------------------------------------------------------------ DistilBERT's masked-LM teacher


def test_untied_decoder_missing_from_the_checkpoint_is_an_untrained_head(tmp_path, minilm_path):
    """The head's transform and bias are there, but the decoder (not tied to the embeddings) is not: transformers
    initialises it at random. The old check skipped the decoder by name, assuming it tied."""
    path = save_mlm(tmp_path / "mlm", minilm_path, tie=False)
    weights = path / "model.safetensors"
    state = load_file(weights)
    assert "cls.predictions.decoder.weight" in state
    del state["cls.predictions.decoder.weight"]
    save_file(state, weights, metadata={"format": "pt"})
    with pytest.raises(ConfigError, match=r"has no masked-LM head \(loading it initialises "
                                          r"cls\.predictions\.decoder\.weight at random") as e:
        load_mlm_teacher(str(path))
    assert "\n" not in str(e.value)
    # tied, the same missing key is the word-embedding matrix, which was loaded: a complete teacher
    tied = save_mlm(tmp_path / "tied", minilm_path, tie=True)
    assert load_mlm_teacher(str(tied)) is not None


def test_distilbert_stage_stops_on_an_untrained_head(tmp_path, tiny_bert, corpus):
    fails_fast(tmp_path, ["stage=general", "distill=distilbert", f"distill.teacher={tiny_bert}",
                          f"stage.corpus.path={corpus}", "logger=none"],
               r"distill.teacher=.* has no masked-LM head \(loading it initialises cls\.predictions\.bias")


def test_newly_initialised_reads_transformers_loading_info(tmp_path, minilm_path, tiny_bert):
    from transformers import AutoModelForSequenceClassification

    model, info = quiet_from_pretrained(AutoModelForSequenceClassification, str(tiny_bert))
    assert newly_initialised(model, info) == ["classifier.bias", "classifier.weight"]
    mlm = save_mlm(tmp_path / "mlm", minilm_path)
    model, info = quiet_from_pretrained(AutoModelForSequenceClassification, str(mlm))
    assert newly_initialised(model, info) == ["bert.pooler.dense.bias", "bert.pooler.dense.weight",
                                              "classifier.bias", "classifier.weight"]
    complete = save_classifier(tmp_path / "complete", minilm_path, num_labels=2)
    model, info = quiet_from_pretrained(AutoModelForSequenceClassification, str(complete))
    assert newly_initialised(model, info) == []
    teacher = load_teacher_classifier(str(complete), SST2)
    assert not teacher.training and not any(p.requires_grad for p in teacher.parameters())
    assert teacher.config.id2label == {0: "negative", 1: "positive"}
    assert teacher.config.problem_type == "single_label_classification"
    assert torch.is_tensor(teacher.classifier.weight)
