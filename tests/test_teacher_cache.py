"""stage.intermediate.teacher_cache: phase 1 keeps the eval-mode teacher's targets per batch and reuses them in
later epochs, whose batches are the first epoch's in a new order (tiny random BERTs; real RTE rows for the stage)."""

import json
import warnings

import lightning as L
import pytest
import torch
from omegaconf import OmegaConf
from torch.utils.data import DataLoader

from tests.conftest import TINY_STUDENT, compose_config
from tests.test_teacher_mode import batches, module
from tinydistill.data.sampler import SeededSampler
from tinydistill.distill.teacher_cache import TeacherCache
from tinydistill.models.capture import forward_with_capture
from tinydistill.modules.task import MODEL_INPUTS
from tinydistill.data.tasks import get_task
from tinydistill.distill.intermediate import IntermediateDistiller
from tinydistill.models.loading import load_as_classifier, load_tokenizer
from tinydistill.stages import run
from tinydistill.stages.classifier import task_datamodule
from tinydistill.stages.task.inputs import load_student
from tinydistill.stages.task.phase1 import teacher_cache
from tinydistill.stages.task.plan import plan


def epoch_batches(sampler: SeededSampler, epoch: int) -> list[tuple[int, ...]]:
    order = sampler.order(epoch)
    return [tuple(order[i:i + sampler.batch_size]) for i in range(0, len(order), sampler.batch_size)]


@pytest.mark.parametrize("group_by_length", [False, True])
def test_fixed_batches_reuse_the_first_epochs_batches_in_a_new_order(group_by_length):
    lengths = [(7 * i) % 23 + 1 for i in range(103)]  # 12 full batches of 8 and a last one of 7
    fixed = SeededSampler(lengths, 8, seed=5, group_by_length=group_by_length, fixed_batches=True)
    plain = SeededSampler(lengths, 8, seed=5, group_by_length=group_by_length)
    first = epoch_batches(fixed, 0)
    assert first == epoch_batches(plain, 0)  # the first epoch is the one without fixed batches
    later = [epoch_batches(fixed, e) for e in (1, 2)]
    for batches_of_epoch in later:
        assert sorted(batches_of_epoch) == sorted(first)  # the same batches, each with its examples in order
        assert batches_of_epoch[-1] == first[-1] and len(first[-1]) == 7  # the smaller batch stays last
    assert later[0] != first and later[1] != later[0]  # in a new order every epoch
    assert later[0] == epoch_batches(SeededSampler(lengths, 8, 5, group_by_length, fixed_batches=True), 1)
    assert sorted(epoch_batches(plain, 1)) != sorted(first)  # without the option later epochs mix new batches


def test_a_kept_batch_returns_exactly_the_teachers_targets_and_only_what_the_losses_read(tiny_bert):
    m = module("intermediate", tiny_bert, "eval")
    hidden, attention = m.distiller.teacher_reads
    assert hidden == {0, 1, 2} and attention == {0, 1}  # a 2-layer student on a 2-layer teacher: every layer
    m.distiller.weights["emb"] = 0.0  # the embedding term off: its target need not be kept
    hidden, attention = m.distiller.teacher_reads
    cache = TeacherCache(hidden, attention, max_bytes=float("inf"))
    batch = batches(n=1)[0]
    inputs = {k: batch[k] for k in MODEL_INPUTS}
    calls = []

    def compute():
        calls.append(1)
        return m.teacher_captures(inputs, "scores")

    fresh = cache.get_or_compute(batch["idx"], compute)
    kept = cache.get_or_compute(batch["idx"], compute)
    assert len(calls) == 1 and cache.summary()["hits"] == 1 and cache.summary()["misses"] == 1
    assert kept.hidden_states[0].numel() == 0 and kept.logits is None  # not read by any active term
    for i in (1, 2):
        assert torch.equal(kept.hidden_states[i], fresh.hidden_states[i])
        assert torch.equal(kept.attention_scores[i - 1], fresh.attention_scores[i - 1])
    assert cache.nbytes == kept.nbytes > 0
    student = forward_with_capture(m.classifier, inputs, "scores")
    assert m.distiller(student, kept)["loss"] == m.distiller(student, fresh)["loss"]  # the same losses
    # The same examples in another order are another input: a miss.
    cache.get_or_compute(batch["idx"].flip(0), lambda: m.teacher_captures({k: v.flip(0) for k, v in inputs.items()},
                                                                          "scores"))
    assert len(cache.entries) == 2 and cache.summary()["misses"] == 2
    counts = cache.summary()
    cache.clear()  # at the end of the phase: the memory goes, the counts stay
    assert not cache.entries and cache.summary() == counts


def test_a_full_cache_keeps_no_more_batches(tiny_bert):
    m = module("intermediate", tiny_bert, "eval")
    data = batches(n=3)
    one = m.teacher_captures({k: data[0][k] for k in MODEL_INPUTS}, "scores").keep(*m.distiller.teacher_reads).nbytes
    cache = TeacherCache(*m.distiller.teacher_reads, max_bytes=1.5 * one)
    for _ in range(2):
        for b in data:
            cache.get_or_compute(b["idx"], lambda b=b: m.teacher_captures({k: b[k] for k in MODEL_INPUTS}, "scores"))
    assert len(cache.entries) == 1 and cache.nbytes <= 1.5 * one
    assert cache.summary()["hits"] == 1 and cache.summary()["batches_not_kept"] == 4


def fit(m, data) -> None:
    torch.manual_seed(1)  # the student's dropout
    trainer = L.Trainer(max_epochs=1, logger=False, enable_checkpointing=False, enable_progress_bar=False,
                        enable_model_summary=False, accelerator="cpu", limit_val_batches=0)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        trainer.fit(m, train_dataloaders=DataLoader(data, batch_size=None))


def test_training_with_the_cache_equals_training_without_it_and_runs_the_teacher_once_per_batch(tiny_bert):
    data = batches(n=3)
    two_epochs = data + data[::-1]  # the same batches again, in another order
    plain = module("intermediate", tiny_bert, "eval")
    m = module("intermediate", tiny_bert, "eval", teacher_cache=TeacherCache(
        *module("intermediate", tiny_bert, "eval").distiller.teacher_reads, max_bytes=float("inf")))
    calls = []
    captures = m.teacher_captures
    m.teacher_captures = lambda *a: calls.append(1) or captures(*a)
    fit(plain, two_epochs)
    fit(m, two_epochs)
    assert len(calls) == 3 and m.teacher_cache.summary()["hits"] == 3
    for (name, a), (_, b) in zip(plain.classifier.named_parameters(), m.classifier.named_parameters()):
        assert torch.equal(a, b), name
    for a, b in zip(plain.distiller.parameters(), m.distiller.parameters()):
        assert torch.equal(a, b)


def test_a_train_mode_teacher_is_never_cached(tiny_bert):
    with pytest.raises(ValueError, match="teacher_mode=eval"):
        module("intermediate", tiny_bert, "train", teacher_cache=TeacherCache({0}, set(), max_bytes=1e9))


def stage_cfg(tmp_path, tiny_teacher, data_dir, *extra):
    return compose_config(
        tmp_path, "stage=task", "task=rte", f"stage.teacher={tiny_teacher}", f"paths.data_dir={data_dir}",
        "logger=none", "student.init=random", *TINY_STUDENT, "stage.batch_size=64", "stage.phase=intermediate",
        "stage.allow_weak_teacher=true", "stage.intermediate.checkpoint_every_n_steps=null",
        "stage.intermediate.epochs=2", *extra,
    )


PER_EPOCH = -(-2490 // 64)  # RTE's 2,490 training pairs in batches of 64


def test_stage_task_phase_1_reads_every_later_epoch_from_the_cache(tmp_path, tiny_teacher, data_dir):
    result = run(stage_cfg(tmp_path, tiny_teacher, data_dir))
    inter = result["intermediate"]
    assert inter["steps"] == 2 * PER_EPOCH
    cache = inter["teacher_cache"]
    assert (cache["misses"], cache["hits"], cache["batches_kept"]) == (PER_EPOCH, PER_EPOCH, PER_EPOCH)
    saved = json.loads(next((tmp_path / "artifacts" / "task" / "rte").glob("*/seed*/intermediate/phase.json"))
                       .read_text())
    assert saved["teacher_cache"] == cache


@pytest.mark.parametrize("extra, cached", [
    ([], True),
    (["stage.intermediate.teacher_cache=false"], False),
    (["distill.teacher_mode=train"], False),  # dropout: new targets every step
    ([f"stage.intermediate.max_steps={PER_EPOCH}"], False),  # no batch would come back
    ([f"stage.intermediate.max_steps={PER_EPOCH + 1}"], True),
    # trainer.limit_train_batches shortens every epoch: PER_EPOCH steps then run over several, and batches come back
    ([f"stage.intermediate.max_steps={PER_EPOCH}", "trainer.limit_train_batches=2"], True),
    ([f"stage.intermediate.max_steps={PER_EPOCH}", "trainer.limit_train_batches=0.5"], True),
    (["stage.intermediate.max_steps=2", "trainer.limit_train_batches=2"], False),
    (["stage.intermediate.epochs=1"], False),
    (["trainer.devices=2"], False),  # DDP: each process's batches are new every epoch
])
def test_phase_1_gets_a_cache_only_when_it_can_pay_off(tmp_path, tiny_teacher, data_dir, extra, cached):
    cfg = stage_cfg(tmp_path, tiny_teacher, data_dir, *extra)
    task = get_task("rte")
    teacher = load_as_classifier(tiny_teacher, task)
    p = plan(cfg)
    student, _ = load_student(p, teacher)
    distiller = IntermediateDistiller.from_config(OmegaConf.to_container(cfg.distill, resolve=True), student.config,
                                                  teacher.config)
    dm = task_datamodule(p.batches, p.ctx, load_tokenizer(tiny_teacher), None, with_index=True)
    cache = teacher_cache(p, distiller, dm)
    assert (cache is not None) == cached
    if cached:
        assert cache.max_bytes == cfg.stage.intermediate.teacher_cache_max_gb * 1024**3
