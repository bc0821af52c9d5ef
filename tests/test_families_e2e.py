"""The whole pipeline with a teacher of each family: stage=finetune -> stage=general -> stage=task aug=on -> export
-> predict, on tiny random models over the student's (MiniLM's bert-base-uncased) vocabulary and a user's small
JSON Lines task (tests/test_own_data.py's tickets).
DeBERTa-v2's attention scores cannot be captured, so its general and phase-1 distillation use MiniLM-v2's relation
loss (distill=minilm); every other family uses TinyBERT's losses."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch
from transformers import AutoConfig, AutoModelForSequenceClassification, AutoTokenizer

from tests.conftest import TINY_STUDENT, compose_config, tiny_aug_overrides
from tests.test_own_data import TICKETS, custom_overrides, tickets
from tests.test_teacher_families import FAMILIES, SIZES
from tinydistill import export
from tinydistill.inference import load_classifier
from tinydistill.predict import Inputs, predict
from tinydistill.stages import run

ALL_FAMILIES = {"bert": dict(max_position_embeddings=128), **FAMILIES}


def method(kind: str) -> list[str]:
    return ["distill=minilm", "distill.relation_heads=4"] if kind == "deberta-v2" else []


@pytest.mark.parametrize("kind", sorted(ALL_FAMILIES))
def test_finetune_general_task_with_augmentation_export_predict(tmp_path, minilm_path, corpus, kind):
    tokenizer = AutoTokenizer.from_pretrained(minilm_path)
    config = AutoConfig.for_model(kind, vocab_size=tokenizer.vocab_size, num_labels=3, **{**SIZES, **ALL_FAMILIES[kind]})
    torch.manual_seed(0)
    AutoModelForSequenceClassification.from_config(config).save_pretrained(tmp_path / "init")
    tokenizer.save_pretrained(tmp_path / "init")
    train, dev = tickets(tmp_path / "in", "jsonl", train=TICKETS * 2)
    common = [*custom_overrides(train, dev), "paths.data_dir=null", "logger=none", "stage.batch_size=4"]

    teacher = run(compose_config(tmp_path, "stage=finetune", f"stage.model={tmp_path / 'init'}", *common,
                                 "stage.epochs=1", "stage.lr=1e-3",
                                 "stage.measure_latency=false"))["output_dir"]
    assert AutoConfig.from_pretrained(teacher).model_type == kind

    general = run(compose_config(tmp_path, "stage=general", f"teacher.name_or_path={teacher}", *method(kind),
                                 f"stage.corpus.path={corpus}", "stage.max_seq_length=32",
                                 "stage.batch_size=4", "stage.val_size=4", "logger=none", "trainer.fast_dev_run=true",
                                 *TINY_STUDENT))
    assert all(torch.isfinite(torch.tensor(v)) for v in general["train_first"].values())

    result = run(compose_config(
        tmp_path, "stage=task", f"stage.teacher={teacher}", *common, *method(kind), *TINY_STUDENT,
        "student.init=general", f"stage.general_dir={general['output_dir']}",
        "stage.intermediate.max_steps=2", "stage.pred.max_steps=2", "stage.measure_latency=false",
        "stage.allow_weak_teacher=true", *tiny_aug_overrides(tmp_path, tokenizer), "aug.max_examples=4"))
    assert Path(result["train_file"]).is_file() and result["pred"]["steps"] == 2
    student = result["output_dir"]

    export.main([student, "--task", str(Path(student) / "task.json"), "--cache-dir", str(tmp_path / "cache"),
                 "--no-latency", "--int8"])
    record = json.loads((Path(student) / "onnx" / "export.json").read_text())
    assert record["task"] == "tickets"
    clf = load_classifier(Path(student) / "onnx" / "model_int8.onnx")
    answers = predict(clf, Inputs(["printer", "salary"], ["the printer jams", "my salary was late"]))
    assert len(answers) == 2 and all(label in clf.label_names and 1 / 3 <= p <= 1 for label, p in answers)
