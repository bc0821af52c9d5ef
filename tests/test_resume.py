"""Exact resume: a run killed right after a checkpoint and resumed from its `last.ckpt` ends with the same weights,
optimiser state and results as the same run left alone (tiny random BERTs on CPU, compared with torch.equal).

The kill is an exception raised the moment `last.ckpt` has been written, so the run folder holds what a `kill -9` at
that moment leaves. Kill points: mid-epoch and at the end of an epoch (stage=finetune), between step checkpoints
with dev evaluations in between (stage=general, distill=distilbert, stage=mlm), and in each phase of stage=task.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path

import pytest
import torch
from lightning.pytorch.callbacks import ModelCheckpoint
from safetensors.torch import load_file

from tests.conftest import ROOT, TINY_CORPUS_SENTENCES, compose_config
from tinydistill.data.sampler import SeededSampler
from tinydistill.stages import run

TINY_STUDENT = ["student.name=tiny_student", "student.num_hidden_layers=1", "student.hidden_size=16",
                "student.num_attention_heads=4", "student.intermediate_size=32"]


class Killed(Exception):
    """Stands for kill -9 right after a checkpoint."""


def run_until_killed(cfg, monkeypatch, at: Callable) -> Path:
    """Run `cfg` and stop it with `Killed` as soon as `last.ckpt` has been written at a point where `at(trainer)`
    holds. Returns that `last.ckpt`."""
    save_last = ModelCheckpoint._save_last_checkpoint

    def save_then_die(self, trainer, monitor_candidates):
        save_last(self, trainer, monitor_candidates)
        if at(trainer):
            raise Killed(f"killed after the checkpoint of step {trainer.global_step}")

    with monkeypatch.context() as patch:
        patch.setattr(ModelCheckpoint, "_save_last_checkpoint", save_then_die)
        with pytest.raises(Killed):
            run(cfg)
    last = Path(cfg.paths.output_dir) / "checkpoints" / "last.ckpt"
    assert last.is_file()
    return last


def at_step(step: int, phase: str | None = None) -> Callable:
    def at(trainer) -> bool:
        return trainer.global_step == step and (phase is None or trainer.lightning_module.hparams.phase == phase)
    return at


def resume(compose_cfg, overrides, last: Path, tmp_path) -> tuple[dict, Path]:
    cfg = compose_cfg(*overrides, f"ckpt_path={last}")
    cfg.paths.output_dir = str(tmp_path / "resumed")
    return run(cfg), Path(cfg.paths.output_dir) / "checkpoints" / "last.ckpt"


def load(path: Path) -> dict:
    # weights_only: what Lightning uses for a local ckpt_path, so the saved random state must load this way too
    return torch.load(path, map_location="cpu", weights_only=True)


def assert_same_tensors(a: dict, b: dict) -> None:
    assert a.keys() == b.keys()
    different = [k for k in a if not torch.equal(a[k], b[k])]
    assert not different, f"differ: {different[:5]}"


def assert_same_training_state(a: Path, b: Path) -> None:
    """Weights, optimiser moments, schedule and step counters of two checkpoints are identical."""
    a, b = load(a), load(b)
    assert (a["global_step"], a["epoch"]) == (b["global_step"], b["epoch"])
    assert_same_tensors(a["state_dict"], b["state_dict"])
    for opt_a, opt_b in zip(a["optimizer_states"], b["optimizer_states"], strict=True):
        assert opt_a["state"].keys() == opt_b["state"].keys()
        for k in opt_a["state"]:
            assert_same_tensors(opt_a["state"][k], opt_b["state"][k])
    assert a["lr_schedulers"] == b["lr_schedulers"]


def assert_same_export(a: str | Path, b: str | Path) -> None:
    assert_same_tensors(load_file(Path(a) / "model.safetensors"), load_file(Path(b) / "model.safetensors"))


@pytest.fixture(scope="module")
def reference(tmp_path_factory):
    """`reference(*overrides)`: the uninterrupted run of a configuration (result, last.ckpt), run once per module."""
    done: dict[tuple, tuple[dict, Path]] = {}

    def get(*overrides: str) -> tuple[dict, Path]:
        if overrides not in done:
            cfg = compose_config(tmp_path_factory.mktemp("reference"), *overrides)
            done[overrides] = run(cfg), Path(cfg.paths.output_dir) / "checkpoints" / "last.ckpt"
        return done[overrides]

    return get


@pytest.fixture(scope="module")
def corpus_file(tmp_path_factory) -> Path:
    """conftest's tiny corpus (12 documents of 5 sentences), one file for the whole module."""
    docs = ["\n".join(TINY_CORPUS_SENTENCES[i % 5:] + TINY_CORPUS_SENTENCES[: i % 5]) for i in range(12)]
    f = tmp_path_factory.mktemp("corpus") / "corpus.txt"
    f.write_text("\n\n".join(docs) + "\n")
    return f


# ------------------------------------------------------------------ the sampler


@pytest.mark.parametrize("group_by_length", [False, True])
def test_sampler_order_depends_on_seed_and_epoch_only(group_by_length):
    lengths = [(7 * i) % 23 for i in range(200)]

    def order(seed: int, epoch: int) -> list[int]:
        sampler = SeededSampler(lengths, batch_size=4, seed=seed, group_by_length=group_by_length)
        sampler.set_epoch(epoch)
        return list(sampler)

    torch.manual_seed(0)
    first = order(42, 1)
    torch.manual_seed(1)  # the global random state plays no part
    assert order(42, 1) == first and sorted(first) == list(range(200))
    assert order(42, 0) != first and order(1, 42) != order(42, 1)
    if group_by_length:  # batches of similar length, the longest first
        batches = [[lengths[i] for i in first[k:k + 4]] for k in range(0, 200, 4)]
        assert max(lengths) in batches[0] and sum(max(b) - min(b) for b in batches) < 200


def test_sampler_resumes_at_its_position():
    sampler = SeededSampler(list(range(50)), batch_size=5, seed=3)
    sampler.set_epoch(2)
    it = iter(sampler)
    head = [next(it) for _ in range(17)]
    state = sampler.state_dict()
    assert state == {"epoch": 2, "yielded": 17}
    fresh = SeededSampler(list(range(50)), batch_size=5, seed=3)
    fresh.load_state_dict(state)
    assert head + list(fresh) == sampler.order(2).tolist()
    fresh.set_epoch(3)  # the saved position applied to its epoch only
    assert list(fresh) == sampler.order(3).tolist()


# ------------------------------------------------------------------ stage=finetune


def finetune_overrides(tiny_bert, data_dir, evals: int) -> list[str]:
    return [
        "stage=finetune", "task=wnli", f"teacher.name_or_path={tiny_bert}", f"paths.data_dir={data_dir}",
        "logger=csv", "stage.epochs=2", "stage.batch_size=8", f"stage.evals_per_epoch={evals}",
        "trainer.limit_train_batches=4", "trainer.limit_val_batches=2", "stage.latency_repeats=1",
        "stage.latency_batch1=false", "stage.lr=1e-3",
    ]


@pytest.mark.parametrize(("evals", "kill_step"), [
    (1, 4),  # the case: killed in epoch 2, resumed from the end-of-epoch-1 last.ckpt
    (2, 2),  # mid-epoch 1
    (2, 6),  # mid-epoch 2
])
def test_finetune_resumes_exactly(compose_cfg, reference, monkeypatch, tmp_path, tiny_bert, data_dir, evals,
                                  kill_step):
    overrides = finetune_overrides(tiny_bert, data_dir, evals)
    expected, expected_last = reference(*overrides)
    last = run_until_killed(compose_cfg(*overrides), monkeypatch, at_step(kill_step))
    assert load(last)["global_step"] == kill_step
    result, resumed_last = resume(compose_cfg, overrides, last, tmp_path)
    assert_same_training_state(expected_last, resumed_last)
    # the same best evaluation exported, with the same dev metrics
    assert (result["steps"], result["dev"]) == (expected["steps"], expected["dev"])
    # the evaluations made before the kill count too (a matched baseline's number comes from here)
    assert result["evaluations"] == expected["evaluations"] == 2 * evals  # 2 epochs
    assert Path(result["best_checkpoint"]).name == Path(expected["best_checkpoint"]).name
    assert_same_export(expected["output_dir"], result["output_dir"])


def test_sigterm_fails_the_command_and_names_the_checkpoint_to_resume(tmp_path, tiny_bert, data_dir):
    """Lightning ends a fit on SIGTERM with a bare SystemExit (exit status 0), so `make` would go on to the next
    stage: train.py must exit 143 with one line naming the last.ckpt to resume from, and export nothing."""
    run_dir = tmp_path / "run"
    overrides = [o for o in finetune_overrides(tiny_bert, data_dir, 1) if not o.startswith("stage.epochs=")]
    proc = subprocess.Popen(
        [sys.executable, "train.py", *overrides, "stage.epochs=100000", f"paths.artifacts_dir={tmp_path}",
         f"hydra.run.dir={run_dir}"],
        cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
        env={**os.environ, "WANDB_SILENT": "true"},
    )
    last = run_dir / "checkpoints" / "last.ckpt"
    try:
        deadline = time.monotonic() + 600  # a run that never checkpoints must fail the test, not hang it
        while not last.is_file() and proc.poll() is None and time.monotonic() < deadline:
            time.sleep(0.1)  # until the first epoch's evaluation writes last.ckpt
        proc.send_signal(signal.SIGTERM)
        output, _ = proc.communicate(timeout=300)
    finally:
        proc.kill()
    assert proc.returncode == 143, output[-3000:]
    assert f"stage=finetune stopped by SIGTERM before it finished (its result is not written); resume with " \
           f"ckpt_path={last}" in output
    assert load(last)["global_step"] >= 4  # a checkpoint a resumed run can continue from
    assert not (tmp_path / "teacher" / "wnli" / "metrics.json").exists()


# ------------------------------------------------------------------ stage=general


def general_overrides(teacher, corpus) -> list[str]:
    # 5 batches per epoch: steps 1-5 epoch 0, 6-10 epoch 1; masked inputs, so masking is resumed too
    return [
        "stage=general", f"teacher.name_or_path={teacher}", f"stage.corpus.path={corpus}", *TINY_STUDENT,
        "stage.max_seq_length=24", "stage.batch_size=4", "stage.eval_batch_size=8", "stage.val_size=4",
        "stage.max_steps=8", "stage.checkpoint_every_n_steps=2", "stage.val_every_n_steps=3",
        "stage.mlm_probability=0.2", "stage.lr=1e-3", "logger=csv",
    ]


def assert_general_style_resume(compose_cfg, overrides, monkeypatch, tmp_path, expected, expected_last, kill_step):
    """Kill a stage=general run (TinyBERT or DistilBERT losses) at `kill_step`, resume it, and compare the training
    state, the summary (the held-out losses before training included) and the export with the uninterrupted run."""
    last = run_until_killed(compose_cfg(*overrides), monkeypatch, at_step(kill_step))
    result, resumed_last = resume(compose_cfg, overrides, last, tmp_path)
    assert_same_training_state(expected_last, resumed_last)
    assert expected["val_start"] and result["val_start"] == expected["val_start"]
    for key in ("steps", "train_first", "train_last", "val"):
        assert result[key] == expected[key], key
    assert_same_export(expected["output_dir"], result["output_dir"])


@pytest.mark.parametrize(("kill_step", "workers"), [
    (4, 0),  # mid-epoch 0, after a dev evaluation
    (6, 0),  # epoch 1's first step, a dev evaluation right after the checkpoint
    (4, 1),  # a loader worker process: it pads, the training process masks
])
def test_general_resumes_exactly_and_keeps_the_losses_before_training(compose_cfg, reference, monkeypatch, tmp_path,
                                                                      tiny_bert, corpus_file, kill_step, workers):
    overrides = [*general_overrides(tiny_bert, corpus_file), f"data.num_workers={workers}"]
    expected, expected_last = reference(*overrides)
    assert expected["corpus"]["train_instances"] == 20  # 5 batches of 4 per epoch, as the kill points assume
    assert_general_style_resume(compose_cfg, overrides, monkeypatch, tmp_path, expected, expected_last, kill_step)


# ------------------------------------------------------------------ stage=general distill=distilbert


@pytest.fixture(scope="module")
def tiny_mlm(tmp_path_factory, minilm_path):
    from tests.test_distilbert import make_tiny_mlm

    return make_tiny_mlm(tmp_path_factory.mktemp("tiny_mlm"), minilm_path)


@pytest.mark.parametrize("smoothing", ["null", "0.7"])  # BERT's uniform masking; the reference's smoothed one
def test_distilbert_resumes_exactly(compose_cfg, reference, monkeypatch, tmp_path, tiny_mlm, corpus_file, smoothing):
    overrides = [
        "stage=general", "distill=distilbert", f"distill.teacher={tiny_mlm}", f"stage.corpus.path={corpus_file}",
        f"distill.mlm_smoothing={smoothing}", "stage.max_seq_length=24", "stage.batch_size=4",
        "stage.eval_batch_size=8", "stage.val_size=4", "stage.max_steps=7", "stage.checkpoint_every_n_steps=3",
        "stage.val_every_n_steps=2", "stage.lr=1e-3", "logger=csv",
    ]
    expected, expected_last = reference(*overrides)
    assert_general_style_resume(compose_cfg, overrides, monkeypatch, tmp_path, expected, expected_last, 3)


# ------------------------------------------------------------------ stage=mlm


def mlm_overrides(model, corpus) -> list[str]:
    # tiny_bert has no masked-LM head: stage=mlm's case. 5 batches per epoch, as for stage=general.
    return [
        "stage=mlm", f"teacher.name_or_path={model}", f"stage.corpus.path={corpus}", "stage.max_seq_length=24",
        "stage.batch_size=4", "stage.eval_batch_size=8", "stage.val_size=4", "stage.max_steps=8",
        "stage.checkpoint_every_n_steps=2", "stage.val_every_n_steps=3", "stage.lr=1e-3",
        "stage.candidate_sentences=20", "logger=csv",
    ]


@pytest.mark.parametrize(("kill_step", "train_encoder"), [
    (4, "false"),  # mid-epoch 0, after a dev evaluation; the head alone trains
    (6, "true"),  # epoch 1's first step; the encoder trains too (its dropout draws from the resumed state)
])
def test_mlm_resumes_exactly_and_keeps_its_summary(compose_cfg, reference, monkeypatch, tmp_path, tiny_bert,
                                                   corpus_file, kill_step, train_encoder):
    overrides = [*mlm_overrides(tiny_bert, corpus_file), f"stage.train_encoder={train_encoder}"]
    expected, expected_last = reference(*overrides)
    assert expected["corpus"]["train_instances"] == 20
    last = run_until_killed(compose_cfg(*overrides), monkeypatch, at_step(kill_step))
    assert load(last)["global_step"] == kill_step
    result, resumed_last = resume(compose_cfg, overrides, last, tmp_path)
    assert_same_training_state(expected_last, resumed_last)
    # the held-out accuracy before training comes from the checkpoint (the resumed model is no longer untrained)
    assert expected["held_out_start"] and result["held_out_start"] == expected["held_out_start"]
    assert "skipped" not in expected["candidate_quality"]
    for key in ("steps", "held_out", "train_first", "train_last", "candidate_quality"):
        assert result[key] == expected[key], key
    assert_same_export(expected["output_dir"], result["output_dir"])
    saved, saved_expected = (json.loads((Path(r["output_dir"]) / "mlm.json").read_text()) for r in (result, expected))
    for summary in (saved, saved_expected):  # each run its own run folder
        del summary["last_checkpoint"]
    assert saved == saved_expected


# ------------------------------------------------------------------ stage=task



def task_overrides(teacher, data_dir) -> list[str]:
    return [
        "stage=task", "task=rte", f"stage.teacher={teacher}", f"paths.data_dir={data_dir}", "logger=csv",
        "student.init=random", *TINY_STUDENT[1:], "stage.batch_size=8", "trainer.limit_val_batches=1",
        "stage.intermediate.max_steps=4", "stage.intermediate.checkpoint_every_n_steps=3",
        "stage.pred.max_steps=4", "stage.pred.val_every_n_steps=2", "stage.measure_latency=false",
        "stage.allow_weak_teacher=true",
    ]


@pytest.mark.parametrize(("phase", "kill_step", "extra"), [
    ("intermediate", 3, []),  # mid phase 1
    ("intermediate", 4, []),  # phase 1 done (its final checkpoint), phase 2 not yet evaluated
    ("pred", 2, []),  # mid phase 2
    ("pred", 2, ["stage.pred.teacher_logits=seen"]),  # mid phase 2, the logit cache filling as batches come
])
def test_task_resumes_exactly_in_either_phase(compose_cfg, reference, monkeypatch, tmp_path, tiny_teacher, data_dir,
                                              phase, kill_step, extra):
    overrides = task_overrides(tiny_teacher, data_dir) + extra
    expected, expected_last = reference(*overrides)
    last = run_until_killed(compose_cfg(*overrides), monkeypatch, at_step(kill_step, phase))
    assert load(last)["hyper_parameters"]["phase"] == phase
    result, resumed_last = resume(compose_cfg, overrides, last, tmp_path)
    assert_same_training_state(expected_last, resumed_last)
    assert result["intermediate"] == expected["intermediate"] and result["intermediate"]["steps"] == 4
    assert (result["pred"]["steps"], result["dev"]) == (expected["pred"]["steps"], expected["dev"])
    assert result["pred"]["evaluations"] == expected["pred"]["evaluations"] == 2
    assert_same_export(expected["output_dir"], result["output_dir"])
    assert_same_export(Path(expected["output_dir"]) / "intermediate", Path(result["output_dir"]) / "intermediate")
    saved = json.loads((Path(result["output_dir"]) / "metrics.json").read_text())
    assert saved["intermediate"] == expected["intermediate"]


def test_task_refuses_a_checkpoint_of_the_other_phase(compose_cfg, monkeypatch, tiny_teacher, data_dir):
    from tinydistill.errors import ConfigError

    overrides = task_overrides(tiny_teacher, data_dir)
    last = run_until_killed(compose_cfg(*overrides), monkeypatch, at_step(3, "intermediate"))
    with pytest.raises(ConfigError, match="phase-1 .* stage.phase=pred"):
        run(compose_cfg(*overrides, "stage.phase=pred", f"ckpt_path={last}"))


def test_task_names_a_checkpoint_it_cannot_resume(tmp_path):
    from tinydistill.errors import ConfigError
    from tinydistill.stages.task.plan import checkpoint_phase

    other = tmp_path / "finetune.ckpt"
    torch.save({"state_dict": {}, "hyper_parameters": {"lr": 1e-3}}, other)  # e.g. a stage=finetune checkpoint
    with pytest.raises(ConfigError, match="not a checkpoint of stage=task"):
        checkpoint_phase(str(other))
    with pytest.raises(ConfigError, match="resumes from a checkpoint file"):
        checkpoint_phase("last")  # Lightning's name for its own latest checkpoint: meaningless in a new process
    torch.save({"hyper_parameters": {"phase": "gold"}}, other)
    assert checkpoint_phase(str(other)) == "gold" and checkpoint_phase(None) is None
