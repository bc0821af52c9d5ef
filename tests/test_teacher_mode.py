"""distill.teacher_mode: an eval-mode teacher gives the same targets every time; a train-mode teacher (the reference's,
which never calls eval()) runs with dropout in both task phases, keeps that mode through Lightning's fit and
validation, and in phase 2 supplies fresh logits every batch instead of the cache."""

import warnings

import lightning as L
import pytest
import torch
from omegaconf import OmegaConf
from torch.utils.data import DataLoader
from transformers import AutoModelForSequenceClassification, BertConfig, BertForSequenceClassification

from tests.conftest import CONF_DIR, compose_config
from tinydistill.optim import OptimizerSettings
from tinydistill.data.tasks import get_task
from tinydistill.distill.intermediate import IntermediateDistiller
from tinydistill.distill.prediction import prediction_loss
from tinydistill.errors import ConfigError
from tinydistill.modules.task import MODEL_INPUTS, TaskDistillModule
from tinydistill.stages import run

TASK = get_task("rte")


@pytest.fixture(scope="module")
def teacher_dir(tiny_bert):
    return tiny_bert  # a tiny random BERT; loaded as a classifier its head is random, which is all dropout needs


def sharpen(model: BertForSequenceClassification) -> BertForSequenceClassification:
    """A freshly initialised head gives logits near 0, whose soft cross-entropy is ln 2 whatever the other side's
    logits: scale it up so the prediction loss depends on both models' logits."""
    with torch.no_grad():
        model.classifier.weight.mul_(100.0)
    return model


def load_teacher(path) -> BertForSequenceClassification:
    torch.manual_seed(0)
    return sharpen(AutoModelForSequenceClassification.from_pretrained(path, num_labels=2))


def tiny_student(vocab_size: int) -> BertForSequenceClassification:
    torch.manual_seed(0)
    return sharpen(BertForSequenceClassification(BertConfig(
        vocab_size=vocab_size, hidden_size=16, num_hidden_layers=2, num_attention_heads=4, intermediate_size=32,
        max_position_embeddings=128, num_labels=2,
    )))


def batches(n: int = 3, size: int = 4, length: int = 12) -> list[dict[str, torch.Tensor]]:
    gen = torch.Generator().manual_seed(0)
    out = []
    for i in range(n):
        mask = torch.ones(size, length, dtype=torch.long)
        mask[0, length // 2:] = 0  # one padded example
        out.append({
            "input_ids": torch.randint(1000, 2000, (size, length), generator=gen) * mask,
            "attention_mask": mask,
            "token_type_ids": torch.zeros(size, length, dtype=torch.long),
            "labels": torch.randint(0, 2, (size,), generator=gen),
            "idx": torch.arange(i * size, (i + 1) * size),
        })
    return out


def module(phase: str, teacher_path, mode: str, **kwargs) -> TaskDistillModule:
    teacher = load_teacher(teacher_path)
    student = tiny_student(teacher.config.vocab_size)
    distill = OmegaConf.to_container(OmegaConf.load(CONF_DIR / "distill" / "tinybert.yaml"), resolve=True)
    distiller = IntermediateDistiller.from_config(distill, student.config, teacher.config)
    optim = OptimizerSettings(lr=1e-3, warmup_proportion=0.0, schedule="constant")
    return TaskDistillModule(student, TASK, phase, optim, teacher=teacher, distiller=distiller, teacher_mode=mode,
                             **kwargs)


@pytest.mark.parametrize("mode", ["eval", "train"])
def test_train_mode_teacher_targets_vary_between_calls_eval_mode_ones_do_not(teacher_dir, mode):
    m = module("intermediate", teacher_dir, mode)
    m.train()  # as while fitting
    assert m.classifier.training and m.teacher.training == (mode == "train")
    assert not any(p.requires_grad for p in m.teacher.parameters())  # frozen either way
    batch = batches(1)[0]
    inputs = {k: batch[k] for k in MODEL_INPUTS}
    first, second = (m.teacher_captures(inputs, "scores") for _ in range(2))
    logits = [m.teacher_targets(batch, inputs) for _ in range(2)]
    same = [torch.equal(a, b) for a, b in zip(first.hidden_states[1:], second.hidden_states[1:])]
    same += [torch.equal(a, b) for a, b in zip(first.attention_scores[1:], second.attention_scores[1:])]
    same.append(torch.equal(*logits))
    assert not first.hidden_states[-1].requires_grad and not logits[0].requires_grad
    if mode == "eval":
        assert all(same)
    else:
        assert not any(same)
    m.eval()  # validation: no dropout anywhere
    assert not m.teacher.training


def test_unknown_teacher_mode_and_cached_logits_with_a_train_mode_teacher_are_refused(teacher_dir):
    with pytest.raises(ConfigError, match="distill.teacher_mode='dropout'"):
        module("intermediate", teacher_dir, "dropout")
    with pytest.raises(ValueError, match="not cached logits"):
        module("pred", teacher_dir, "train", teacher_logits=torch.zeros(12, 2))


def test_pred_phase_with_a_train_mode_teacher_uses_fresh_teacher_logits(teacher_dir):
    m = module("pred", teacher_dir, "train")
    assert m.teacher_logits is None and m.teacher.training
    m.classifier.eval()  # no dropout in the student: the teacher alone draws random numbers
    batch = batches(1)[0]
    inputs = {k: batch[k] for k in MODEL_INPUTS}

    def expected(teacher_training: bool) -> torch.Tensor:
        m.teacher.train(teacher_training)
        with torch.no_grad():
            t = m.teacher(**inputs).logits
        m.teacher.train()
        return prediction_loss(m.classifier(**inputs).logits, t, batch["labels"], TASK)

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # self.log outside a Trainer
        torch.manual_seed(7)
        loss = m.training_step(batch, 0)
        torch.manual_seed(8)
        other_seed = m.training_step(batch, 0)
    torch.manual_seed(7)
    torch.testing.assert_close(loss, expected(True))
    assert not torch.allclose(loss, other_seed)  # a new dropout draw, new targets
    assert not torch.allclose(loss, expected(False))  # not the eval-mode teacher's logits
    assert loss.requires_grad  # the student still learns from it


class TeacherModeRecorder(L.Callback):
    def __init__(self) -> None:
        self.modes: list[bool] = []

    def on_train_batch_start(self, trainer, pl_module, batch, batch_idx) -> None:
        self.modes.append(pl_module.teacher.training)


@pytest.mark.parametrize("mode", ["eval", "train"])
def test_lightning_keeps_the_teacher_mode_through_fit_and_validation(teacher_dir, mode):
    data = batches(3)
    if mode == "eval":
        m = module("pred", teacher_dir, mode, teacher_logits=torch.zeros(12, 2))
    else:
        m = module("pred", teacher_dir, mode)
    recorder = TeacherModeRecorder()
    trainer = L.Trainer(max_steps=3, val_check_interval=1, limit_val_batches=1, num_sanity_val_steps=1,
                        callbacks=[recorder], logger=False, enable_checkpointing=False, enable_progress_bar=False,
                        enable_model_summary=False, accelerator="cpu")
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        trainer.fit(m, train_dataloaders=DataLoader(data, batch_size=None),
                    val_dataloaders=DataLoader(data[:1], batch_size=None))
    assert trainer.global_step == 3 and len(recorder.modes) == 3
    assert recorder.modes == [mode == "train"] * 3  # after the sanity check and each validation too
    assert m.classifier.training



@pytest.mark.parametrize("mode", ["eval", "train"])
def test_stage_task_builds_the_logit_cache_only_for_an_eval_mode_teacher(
    tmp_path, monkeypatch, tiny_teacher, data_dir, mode
):
    import tinydistill.stages.task.phase2 as stage_task

    calls = []
    original = stage_task.cached_teacher_logits

    def spy(*args, **kwargs):
        calls.append(1)
        return original(*args, **kwargs)

    monkeypatch.setattr(stage_task, "cached_teacher_logits", spy)
    cfg = compose_config(
        tmp_path, "stage=task", "task=rte", f"stage.teacher={tiny_teacher}", f"paths.data_dir={data_dir}",
        "logger=none", "student.init=random", "student.num_hidden_layers=2", "student.hidden_size=16",
        "student.num_attention_heads=4", "student.intermediate_size=32", "stage.batch_size=8",
        "stage.phase=pred", "stage.pred.max_steps=2", "trainer.limit_val_batches=1", "stage.measure_latency=false",
        "stage.allow_weak_teacher=true", f"distill.teacher_mode={mode}",
    )
    result = run(cfg)
    assert result["pred"]["phase"] == "pred" and result["pred"]["steps"] == 2
    assert len(calls) == (1 if mode == "eval" else 0)
