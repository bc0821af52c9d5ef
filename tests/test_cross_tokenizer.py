"""A teacher whose tokenizer differs from the student's (issue 49): stage=task distils the prediction layer only, each
model reading the same texts with its own tokenizer; asking for intermediate layers stops the run in one line.

The teacher is a tiny BERT with the bert-base-uncased WordPiece vocabulary (MiniLM's), fine-tuned briefly on MRPC; the
student a tiny BERT with a cased WordPiece vocabulary of its own, trained here with `tokenizers` on MRPC sentences.
Both read real MRPC rows."""

from __future__ import annotations

import importlib.util
import json
import logging
import os

import numpy as np
import pytest
import torch
from transformers import (
    AutoModelForSequenceClassification,
    AutoTokenizer,
    BertConfig,
    BertModel,
    PreTrainedTokenizerFast,
)

from tests.conftest import ROOT, assert_nothing_written, assert_one_line, compose_config
from tinydistill import export
from tinydistill.data.glue import TaskDataModule, load_examples, tokenized_split
from tinydistill.data.tasks import get_task
from tinydistill.distill.prediction import logit_cache_path
from tinydistill.inference import load_classifier
from tinydistill.modules.task import teacher_inputs
from tinydistill.predict import Inputs, predict
from tinydistill.stages import run

SPECIALS = ["[UNK]", "[CLS]", "[SEP]", "[MASK]", "[PAD]"]  # [PAD] is id 4 here, 0 for the teacher
OWN_VOCAB_SCRIPT = ROOT / "docs" / "results" / "cross_tokenizer" / "own_vocab_student.py"


def own_tokenizer(texts: list[str]) -> PreTrainedTokenizerFast:
    """A cased WordPiece tokenizer of about 600 tokens trained on `texts` (the teacher's is uncased, 30522), built
    by the cross-tokenizer measurement's own script."""
    spec = importlib.util.spec_from_file_location("own_vocab_student", OWN_VOCAB_SCRIPT)
    script = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(script)
    return script.own_tokenizer(texts, vocab_size=600, specials=SPECIALS)


@pytest.fixture(scope="module")
def mrpc_teacher(tmp_path_factory, tiny_bert, data_dir) -> str:
    cfg = compose_config(
        tmp_path_factory.mktemp("mrpc_teacher"), "stage=finetune", "task=mrpc", f"teacher.name_or_path={tiny_bert}",
        f"paths.data_dir={data_dir}", "logger=none", "stage.epochs=1", "trainer.limit_train_batches=3",
        "trainer.limit_val_batches=1", "stage.measure_latency=false")
    return run(cfg)["output_dir"]


@pytest.fixture(scope="module")
def own_vocab_student(tmp_path_factory, data_dir) -> str:
    """A tiny BERT reading text with its own tokenizer (saved beside it: student.init=<this folder>)."""
    rows = load_examples(get_task("mrpc"), "train", data_dir).select(range(300))
    tok = own_tokenizer(list(rows["text_a"]) + list(rows["text_b"]))
    folder = tmp_path_factory.mktemp("own_vocab_student")
    torch.manual_seed(0)
    BertModel(BertConfig(vocab_size=len(tok), hidden_size=16, num_hidden_layers=2, num_attention_heads=4,
                         intermediate_size=32, max_position_embeddings=128, pad_token_id=tok.pad_token_id)
              ).save_pretrained(folder)
    tok.save_pretrained(folder)
    return str(folder)


def overrides(teacher: str, student: str, data_dir, *extra: str) -> list[str]:
    return ["stage=task", "task=mrpc", f"stage.teacher={teacher}", f"paths.data_dir={data_dir}", "logger=none",
            f"student.init={student}", "stage.batch_size=8", "stage.pred.max_steps=3", "trainer.limit_val_batches=1",
            "stage.latency_repeats=1", "stage.latency_max_examples=8", "stage.latency_batch1=false",
            "stage.allow_weak_teacher=true", *extra]


def squeeze(text: str) -> str:
    return "".join(text.lower().split())


def test_batches_hold_each_models_own_encoding_of_the_same_rows(tmp_path, mrpc_teacher, own_vocab_student, data_dir):
    teacher_tok, student_tok = AutoTokenizer.from_pretrained(mrpc_teacher), AutoTokenizer.from_pretrained(own_vocab_student)
    # Long enough that neither truncates (the student's small vocabulary cuts a text into more pieces).
    dm = TaskDataModule("mrpc", student_tok, 512, str(data_dir), str(tmp_path / "cache"), batch_size=8,
                        with_index=True, teacher_tokenizer=teacher_tok)
    dm.setup("fit")
    batch = next(iter(dm.train_dataloader()))
    assert {"input_ids", "teacher_input_ids", "teacher_attention_mask", "idx", "labels"} <= set(batch)
    assert batch["input_ids"].shape != batch["teacher_input_ids"].shape  # two tokenizers, two lengths
    compared = 0
    for row in range(8):
        mine = student_tok.decode(batch["input_ids"][row][batch["attention_mask"][row].bool()])
        theirs = teacher_tok.decode(batch["teacher_input_ids"][row][batch["teacher_attention_mask"][row].bool()])
        assert mine.startswith("[CLS]") and theirs.startswith("[CLS]")
        # Each pads with its own padding id (the student's is 4, the teacher's 0).
        pads = ~batch["attention_mask"][row].bool()
        assert (batch["input_ids"][row][pads] == student_tok.pad_token_id).all()
        if "[UNK]" not in mine + theirs:  # the same text, read by both
            assert squeeze(mine) == squeeze(theirs)
            compared += 1
    assert compared >= 4
    assert student_tok.pad_token_id == 4 and teacher_tok.pad_token_id == 0
    # What the teacher reads of a batch: its own encoding, not the student's ids.
    chosen = teacher_inputs(batch, {"input_ids": batch["input_ids"]})
    assert chosen["input_ids"] is batch["teacher_input_ids"]
    # The teacher's view of the training rows: its own tokenisation, row for row.
    rows, tokenizer = dm.teacher_view()
    assert tokenizer is teacher_tok and len(rows) == len(dm.splits["train"])
    i = int(batch["idx"][0])
    assert rows[i]["input_ids"] == batch["teacher_input_ids"][0][batch["teacher_attention_mask"][0].bool()].tolist()


@pytest.mark.parametrize("teacher_mode", ["eval", "train"])
def test_prediction_layer_distillation_with_two_tokenizers_end_to_end(tmp_path, mrpc_teacher, own_vocab_student,
                                                                      data_dir, caplog, teacher_mode):
    cfg = compose_config(tmp_path, *overrides(mrpc_teacher, own_vocab_student, data_dir, "stage.phase=pred",
                                              f"distill.teacher_mode={teacher_mode}"))
    with caplog.at_level(logging.INFO, logger="tinydistill.teacher_checks"):
        result = run(cfg)
    said = [r.getMessage() for r in caplog.records if "different tokenizers" in r.getMessage()]
    assert len(said) == 1 and "distilling the prediction layer only, each model reading the same texts with its own " \
                               "tokenizer" in said[0], said
    assert result["student_tokenizer"] == "own (prediction layer only)"
    assert "intermediate" not in result and result["pred"]["steps"] == 3
    assert torch.isfinite(torch.tensor(result["dev"]["f1"]))
    assert set(result["latency"]) == {"teacher", "student"}  # each timed on its own encoding of the dev rows
    # The exported student reads text with its own tokenizer.
    exported = AutoTokenizer.from_pretrained(result["output_dir"])
    assert exported.get_vocab() == AutoTokenizer.from_pretrained(own_vocab_student).get_vocab()
    if teacher_mode == "train":
        return  # a train-mode teacher runs on each batch's teacher encoding (teacher_inputs), no cache
    # The teacher-logit cache keys on the teacher's own encoding, and holds the teacher's logits for its own tokens.
    teacher_tok = AutoTokenizer.from_pretrained(mrpc_teacher)
    rows = tokenized_split(get_task("mrpc"), "train", teacher_tok, 128, str(data_dir), cfg.paths.cache_dir)
    cache = logit_cache_path(cfg.paths.cache_dir, mrpc_teacher, rows)
    assert cache.is_file()
    logits = torch.from_numpy(np.load(cache, allow_pickle=False))  # the cache is a .npy array
    teacher = AutoModelForSequenceClassification.from_pretrained(mrpc_teacher).eval()
    with torch.no_grad():
        first = teacher(**{k: torch.tensor([v]) for k, v in rows[0].items() if k != "labels"}).logits
    torch.testing.assert_close(logits[0], first[0], rtol=1e-4, atol=1e-5)
    # Export: the teacher its metrics.json names reads other tokens, so the student is its own timing reference.
    out = export.export_model(result["output_dir"], task="mrpc", data_dir=str(data_dir), cache_dir=cfg.paths.cache_dir,
                              repeats=1, batch1=False, max_seq_length=128)
    check = json.loads((out / "export.json").read_text())
    assert check["check"]["reference_role"] == "model"
    onnx = load_classifier(out)
    assert onnx.tokenizer.get_vocab() == exported.get_vocab()
    assert [label for label, _ in predict(onnx, Inputs(["A cat sat."], ["The cat sat."]))][0] in onnx.label_names


@pytest.mark.parametrize("extra", [[], ["stage.phase=intermediate"], ["ablation=no_pred"]])
def test_asking_for_intermediate_layers_with_two_tokenizers_stops_in_one_line(train_py, tmp_path, mrpc_teacher,
                                                                             own_vocab_student, data_dir, extra):
    result = train_py(*overrides(mrpc_teacher, own_vocab_student, data_dir, *extra))
    phase = "intermediate" if extra == ["stage.phase=intermediate"] else "both"
    assert_one_line(result, f"student.init={own_vocab_student} and stage.teacher={mrpc_teacher} use different "
                            f"tokenizers: their vocabularies differ", f"stage.phase={phase} with ablation=",
                    "asks for intermediate layers", "set stage.phase=pred to distil the prediction layer only")
    assert_nothing_written(tmp_path)
    assert os.path.isdir(own_vocab_student)
