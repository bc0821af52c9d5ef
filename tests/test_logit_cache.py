"""Task phase 2's teacher-logit cache: `stage.pred.teacher_logits=full|seen` (tiny random BERTs, real RTE rows)."""

import pytest
import numpy as np
import torch
from transformers import DataCollatorWithPadding

from tests.test_finetune import train_py
from tests.test_task_distill import make_module, rte_rows, task_overrides
from tinydistill.optim import OptimizerSettings
from tinydistill.data.tasks import get_task
from tinydistill.distill.prediction import (
    cached_teacher_logits,
    compute_teacher_logits,
    logit_cache_path,
    save_logit_cache,
    unknown_rows,
)
from tinydistill.errors import ConfigError
from tinydistill.modules.task import SEEN_LOGITS_KEY, TaskDistillModule
from tinydistill.stages import run

MODEL_INPUTS = ("input_ids", "attention_mask", "token_type_ids")


def batch_of(ds, tok, rows):
    batch = DataCollatorWithPadding(tok)([ds[i] for i in rows])
    return batch, {k: batch[k] for k in MODEL_INPUTS}


def test_seen_mode_computes_rows_as_batches_draw_them(tmp_path, compose_cfg, tiny_teacher, data_dir):
    tok, teacher, ds = rte_rows(tiny_teacher, data_dir, tmp_path, 20)
    logits = cached_teacher_logits(teacher, tiny_teacher, ds, tok, tmp_path / "cache", mode="seen")
    assert logits.shape == (20, 2) and unknown_rows(logits).all()  # nothing computed, nothing written
    assert not logit_cache_path(tmp_path / "cache", tiny_teacher, ds).exists()

    cfg = compose_cfg(*task_overrides(tiny_teacher, data_dir))
    module = make_module("pred", tiny_teacher, cfg, teacher_logits=logits)
    module.teacher.eval()
    reference = compute_teacher_logits(teacher, ds, tok)
    batch, inputs = batch_of(ds, tok, [3, 5, 11])
    targets = module.teacher_targets(batch, inputs)
    assert torch.allclose(targets, reference[[3, 5, 11]], atol=1e-5)
    known = ~unknown_rows(module.teacher_logits)
    assert known.nonzero().flatten().tolist() == [3, 5, 11]
    # A row seen again is looked up, not computed: a value planted in the cache comes back.
    module.teacher_logits[5] = 7.0
    batch, inputs = batch_of(ds, tok, [5, 6])
    targets = module.teacher_targets(batch, inputs)
    assert torch.equal(targets[0], torch.full((2,), 7.0))
    assert torch.allclose(targets[1], reference[6], atol=1e-5)


def test_partial_caches_merge_on_disk_and_full_mode_completes_them(tmp_path, tiny_teacher, data_dir):
    tok, teacher, ds = rte_rows(tiny_teacher, data_dir, tmp_path, 12)
    path = logit_cache_path(tmp_path / "cache", tiny_teacher, ds)
    first, second = torch.full((12, 2), float("nan")), torch.full((12, 2), float("nan"))
    first[[0, 1]] = 7.0
    second[[1, 2]] = 8.0
    save_logit_cache(path, first)
    merged = save_logit_cache(path, second)  # another run's rows on disk are kept, this run's win where both know
    assert (~unknown_rows(merged)).nonzero().flatten().tolist() == [0, 1, 2]
    assert merged[0].tolist() == [7.0, 7.0] and merged[1].tolist() == [8.0, 8.0]
    assert torch.equal(torch.from_numpy(np.load(path, allow_pickle=False)).nan_to_num(-1), merged.nan_to_num(-1))

    seen = cached_teacher_logits(teacher, tiny_teacher, ds, tok, tmp_path / "cache", mode="seen")
    assert torch.equal(seen.nan_to_num(-1), merged.nan_to_num(-1))
    full = cached_teacher_logits(teacher, tiny_teacher, ds, tok, tmp_path / "cache", batch_size=5)
    assert not unknown_rows(full).any()
    assert full[0].tolist() == [7.0, 7.0] and full[2].tolist() == [8.0, 8.0]  # kept, not computed again
    assert torch.allclose(full[3:], compute_teacher_logits(teacher, ds, tok)[3:], atol=1e-5)
    assert torch.equal(torch.from_numpy(np.load(path, allow_pickle=False)), full)


def test_seen_rows_travel_in_checkpoints(tmp_path, compose_cfg, tiny_teacher, data_dir):
    cfg = compose_cfg(*task_overrides(tiny_teacher, data_dir))
    partial = torch.full((10, 2), float("nan"))
    partial[[2, 4]] = torch.tensor([[1.0, 2.0], [3.0, 4.0]])
    module = make_module("pred", tiny_teacher, cfg, teacher_logits=partial.clone())
    checkpoint = {"state_dict": module.state_dict()}
    module.on_save_checkpoint(checkpoint)
    assert SEEN_LOGITS_KEY in checkpoint
    resumed = make_module("pred", tiny_teacher, cfg, teacher_logits=torch.full((10, 2), float("nan")))
    resumed.on_load_checkpoint(checkpoint)
    assert torch.equal(resumed.teacher_logits.nan_to_num(-1), partial.nan_to_num(-1))


def test_logit_cache_errors(tmp_path, compose_cfg, tiny_teacher, data_dir):
    tok, teacher, ds = rte_rows(tiny_teacher, data_dir, tmp_path, 4)
    with pytest.raises(ConfigError, match="stage.pred.teacher_logits='some'"):
        cached_teacher_logits(teacher, tiny_teacher, ds, tok, tmp_path / "cache", mode="some")
    cfg = compose_cfg(*task_overrides(tiny_teacher, data_dir))
    student = make_module("pred", tiny_teacher, cfg, teacher_logits=torch.zeros(4, 2)).classifier
    with pytest.raises(ValueError, match="whole training set, or the teacher"):
        TaskDistillModule(student, get_task("rte"), "pred", OptimizerSettings(lr=1e-3), teacher_logits=torch.full((4, 2), float("nan")))


def test_stage_task_in_seen_mode_leaves_a_partial_cache_that_a_full_run_completes(tmp_path, compose_cfg,
                                                                                  tiny_teacher, data_dir):
    overrides = task_overrides(tiny_teacher, data_dir, "stage.phase=pred", "stage.measure_latency=false")
    cfg = compose_cfg(*overrides, "stage.pred.teacher_logits=seen", "stage.run_name=seen")
    result = run(cfg)
    assert result["pred"]["steps"] == 3
    (path,) = (tmp_path.glob("**/teacher_logits/*.npy"))
    cache = torch.from_numpy(np.load(path, allow_pickle=False))
    known = int((~unknown_rows(cache)).sum())
    assert 0 < known <= 3 * 8 < cache.shape[0]  # the rows of 3 batches of 8, of RTE's 2,490
    run(compose_cfg(*overrides, "stage.run_name=full"))
    assert not unknown_rows(torch.from_numpy(np.load(path, allow_pickle=False))).any()


def test_under_ddp_the_saved_cache_holds_every_process_rows(tmp_path, tiny_teacher, data_dir):
    """Two CPU processes (gloo), 3 batches of 8 each, drawing disjoint rows: the cache and the last checkpoint
    (which a resumed run reads the seen rows from) keep all 48, not rank 0's 24."""
    r = train_py(
        *task_overrides(tiny_teacher, data_dir, "stage.phase=pred"), "stage.measure_latency=false",
        "stage.pred.teacher_logits=seen", "trainer=ddp", "trainer.accelerator=cpu", "trainer.devices=2", "logger=none",
        "trainer.enable_progress_bar=false", f"paths.artifacts_dir={tmp_path / 'artifacts'}",
        f"paths.cache_dir={tmp_path / 'cache'}", f"hydra.run.dir={tmp_path / 'hydra'}",
        env={"TINYDISTILL_DATA_DIR": str(data_dir)},
    )
    assert r.returncode == 0, r.stderr[-3000:]
    (path,) = (tmp_path / "cache").glob("teacher_logits/*.npy")
    assert int((~unknown_rows(torch.from_numpy(np.load(path, allow_pickle=False)))).sum()) == 2 * 3 * 8
    (last,) = tmp_path.glob("**/checkpoints/last.ckpt")
    saved = torch.load(last, map_location="cpu", weights_only=True)[SEEN_LOGITS_KEY]
    assert int((~unknown_rows(saved)).sum()) == 2 * 3 * 8


@pytest.mark.parametrize("chunk_batches", [1, 64])
def test_a_full_pass_leaves_the_random_state_the_single_pass_version_left(tmp_path, tiny_teacher, data_dir,
                                                                          monkeypatch, chunk_batches):
    """Phase 2's dropout draws from the global random state after the logit pass: however many chunks the pass is
    cut into, it leaves the state the single-pass version left (two DataLoader seed draws), so a run that computes its
    logits trains bit for bit as before the chunked cache."""
    from tinydistill.distill import prediction

    tok, teacher, ds = rte_rows(tiny_teacher, data_dir, tmp_path, 12)
    monkeypatch.setattr(prediction, "CHUNK_BATCHES", chunk_batches)
    torch.manual_seed(3)
    for _ in range(2):  # what iterating one DataLoader twice over draws
        torch.empty((), dtype=torch.int64).random_()
    expected = torch.rand(4)
    torch.manual_seed(3)
    cached_teacher_logits(teacher, tiny_teacher, ds, tok, tmp_path / f"cache{chunk_batches}", batch_size=5)
    assert torch.equal(torch.rand(4), expected)
