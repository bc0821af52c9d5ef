"""tinydistill.trainer: the Trainer built from the composed config, the library noise it keeps out of logs, and where
it runs."""

import warnings

import pytest
import torch


def test_build_trainer_silences_lightnings_leafspec_deprecation(compose_cfg):
    from lightning.pytorch.utilities._pytree import _tree_flatten

    from tinydistill.trainer import TrainerPlan, build_trainer

    with warnings.catch_warnings(record=True) as seen:
        warnings.simplefilter("always")
        _tree_flatten(1)  # Lightning builds a LeafSpec for a leaf: torch 2.13 warns
        assert any("LeafSpec" in str(w.message) for w in seen), "this torch no longer warns: drop the filter"
        seen.clear()
        build_trainer(TrainerPlan.from_config(compose_cfg("stage=task", "logger=none")))
        _tree_flatten(1)
    assert not [w for w in seen if "LeafSpec" in str(w.message)]


# ------------------------------------------------------------------ progress as log lines (trainer.progress)


def _fit_with_log_progress(caplog, tmp_path, max_steps, **trainer_kwargs):
    import lightning as L
    from lightning.pytorch.demos.boring_classes import BoringModel

    from tinydistill.progress import LogProgress

    class Logged(BoringModel):
        def training_step(self, batch, batch_idx):
            out = super().training_step(batch, batch_idx)
            self.log("train/loss", out["loss"], prog_bar=True)
            return out

    trainer = L.Trainer(max_steps=max_steps, callbacks=[LogProgress(every_s=0)], logger=False,
                        enable_checkpointing=False, enable_model_summary=False, limit_val_batches=0,
                        default_root_dir=tmp_path, **trainer_kwargs)
    with caplog.at_level("INFO", logger="tinydistill.progress"):
        trainer.fit(Logged())
    return [r.getMessage() for r in caplog.records if r.name == "tinydistill.progress"]


def test_log_progress_reports_step_rate_time_left_and_metrics(caplog, tmp_path):
    lines = _fit_with_log_progress(caplog, tmp_path, max_steps=4)
    # every_s=0: a line after each batch, and one more when training ends
    assert [line.split(",")[0] for line in lines] == [f"train: step {i}/4 ({i * 25}%)" for i in (1, 2, 3, 4, 4)]
    assert all(" s/step" in line and "train/loss " in line for line in lines)
    assert all(" min left" in line for line in lines[:3]) and "min left" not in lines[-1]


def test_log_progress_counts_epochs_when_no_step_budget(caplog, tmp_path):
    # BoringModel's loader has 64 batches: 2 epochs of 3 batches each are 6 steps in all
    lines = _fit_with_log_progress(caplog, tmp_path, max_steps=-1, max_epochs=2, limit_train_batches=3)
    assert lines[-1].startswith("train: step 6/6 (100%)")


def test_progress_mode_picks_bar_or_log_lines(compose_cfg):
    from lightning.pytorch.callbacks.progress import ProgressBar

    from tinydistill.progress import LogProgress, progress_callbacks
    from tinydistill.trainer import TrainerPlan, build_trainer

    def shown(*overrides):
        bar = build_trainer(TrainerPlan.from_config(compose_cfg("stage=task", "logger=none", *overrides))).progress_bar_callback
        return type(bar) if bar is not None else None

    assert shown("trainer.progress=log") is LogProgress
    bar = shown("trainer.progress=bar")
    assert bar is not LogProgress and issubclass(bar, ProgressBar)  # Lightning's own
    assert shown("trainer.progress=log", "trainer.enable_progress_bar=false") is None
    # auto: the live bar in a terminal, log lines when the output is a file
    assert progress_callbacks("auto", 60, interactive=True) == []
    assert [type(c) for c in progress_callbacks("auto", 60, interactive=False)] == [LogProgress]
    assert progress_callbacks("log", 5, interactive=True)[0].every_s == 5.0


@pytest.mark.parametrize("cuda", [True, False])
def test_training_device_names_where_each_accelerator_runs(monkeypatch, cuda):
    """The bfloat16 warning and hint ask this whether the work runs on the CPU."""
    from tinydistill.hardware import training_device

    monkeypatch.setattr(torch.cuda, "is_available", lambda: cuda)
    assert training_device("auto") == ("cuda" if cuda else "cpu")
    assert (training_device("cpu"), training_device("gpu"), training_device("mps")) == ("cpu", "cuda", "mps")
