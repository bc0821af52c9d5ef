"""skip_done=true: a stage whose result exists with the same settings does nothing; one made with other settings stops
the run with a one-line error naming them (what `make sst2` / `make mrpc` rely on to continue after an interruption
without keeping a result of an older recipe)."""

from __future__ import annotations

import logging
from pathlib import Path

import pytest
import yaml

from tests.conftest import compose_config
from tinydistill.errors import ConfigError
from tinydistill.report import load_results
from tinydistill.run_config import RUN_CONFIG, result_is_current, run_config_yaml
from tinydistill.stages import result_dir, run


def finetune_overrides(tiny_bert, data_dir, *extra):
    return ("stage=finetune", "task=rte", f"teacher.name_or_path={tiny_bert}", f"paths.data_dir={data_dir}",
            "logger=none", "stage.epochs=1", "trainer.limit_train_batches=2", "trainer.limit_val_batches=1",
            "stage.measure_latency=false", "trainer.enable_progress_bar=false", "skip_done=true", *extra)


def test_a_finished_run_is_skipped_and_a_changed_setting_stops_the_next(tmp_path, tiny_bert, data_dir, caplog):
    first = run(compose_config(tmp_path, *finetune_overrides(tiny_bert, data_dir)))
    out = Path(first["output_dir"])
    weights = out / "model.safetensors"
    stamp = weights.stat().st_mtime_ns

    # Same settings, another log folder (a new run of `make`, or a multirun's job): nothing is trained, and the
    # log folder gets the finished run's record, so a sweep folder alone still holds every job's row.
    again = compose_config(tmp_path, *finetune_overrides(tiny_bert, data_dir))
    again.paths.output_dir = str(tmp_path / "run2")
    with caplog.at_level(logging.INFO, logger="tinydistill.run_config"):
        assert run(again) == {"skipped": str(out)}
    assert "up to date" in caplog.text
    assert weights.stat().st_mtime_ns == stamp
    assert sorted(p.name for p in (tmp_path / "run2").iterdir()) == ["result.json"]
    assert (tmp_path / "run2" / "result.json").read_text() == (out / "metrics.json").read_text()
    assert [r["_file"] for r in load_results(tmp_path / "run2")] == [str(tmp_path / "run2" / "result.json")]

    # Another learning rate, written to the same folder: a clear error, and the old result is left as it was.
    changed = compose_config(tmp_path, *finetune_overrides(tiny_bert, data_dir, "stage.lr=1e-3"))
    with pytest.raises(ConfigError, match=r"skip_done: .* other settings: stage\.lr=.* there, 0\.001 now; delete"):
        run(changed)
    assert weights.stat().st_mtime_ns == stamp

    # The seed is a setting of the result too when the folder does not name it.
    with pytest.raises(ConfigError, match=r"seed=42 there, 7 now"):
        run(compose_config(tmp_path, *finetune_overrides(tiny_bert, data_dir, "seed=7")))


def test_folders_without_a_finished_result_run_and_older_results_are_kept(tmp_path, compose_cfg, caplog):
    cfg = compose_cfg("stage=mlm", "skip_done=true")
    folder = Path(cfg.stage.output_dir)
    assert not result_is_current(cfg, folder)  # nothing there
    folder.mkdir(parents=True)
    (folder / RUN_CONFIG).write_text(run_config_yaml(cfg))
    assert not result_is_current(cfg, folder)  # settings but no exported model: a crashed run, not a result
    (folder / "config.json").write_text("{}")
    assert result_is_current(cfg, folder)
    (folder / RUN_CONFIG).unlink()  # a result from before run_config.yaml: kept, with a warning
    with caplog.at_level(logging.WARNING, logger="tinydistill.run_config"):
        assert result_is_current(cfg, folder)
    assert "no run_config.yaml" in caplog.text


def test_a_result_made_in_another_checkout_or_data_folder_is_the_same_result(tmp_path, compose_cfg):
    cfg = compose_cfg("stage=task", "skip_done=true", "paths.data_dir=/data/here")
    folder = result_dir(cfg)
    folder.mkdir(parents=True)
    (folder / "config.json").write_text("{}")
    saved = yaml.safe_load(run_config_yaml(cfg))
    # the same run made elsewhere: its artifacts and data folders, and every path under them, differ
    text = run_config_yaml(cfg).replace(str(cfg.paths.artifacts_dir), "/old/clone/artifacts")
    text = text.replace("/data/here", "/old/data")
    assert yaml.safe_load(text) != saved
    (folder / RUN_CONFIG).write_text(text)
    assert result_is_current(cfg, folder)
    # a setting added since that result (absent from its file) is not held against it
    assert "  temperature:" in text
    (folder / RUN_CONFIG).write_text(text.replace("  temperature:", "  old_temperature:"))
    assert result_is_current(cfg, folder)


def test_a_result_saved_before_the_task_budgets_moved_to_the_stage_is_current(tmp_path, compose_cfg):
    """Results made before the task stage's budgets, rates and teacher caches moved from `distill.*` to
    `stage.intermediate.*` / `stage.pred.*` saved both names (the stage's resolved): they stay current, and one
    made with another rate is still refused."""
    cfg = compose_cfg("stage=task", "skip_done=true", "experiment=sst2/task")
    folder = result_dir(cfg)
    folder.mkdir(parents=True)
    (folder / "config.json").write_text("{}")
    old = yaml.safe_load(run_config_yaml(cfg))
    old["distill"].update(intermediate_epochs=1, intermediate_lr=6e-4, pred_epochs=3, pred_lr=1e-4,
                          teacher_cache=True, teacher_cache_max_gb=6.0, teacher_logits="full")
    for phase, key in (("intermediate", "teacher_cache"), ("intermediate", "teacher_cache_max_gb"),
                       ("pred", "teacher_logits")):
        del old["stage"][phase][key]
    (folder / RUN_CONFIG).write_text(yaml.safe_dump(old))
    assert result_is_current(cfg, folder)
    old["stage"]["intermediate"]["lr"] = 3e-4
    (folder / RUN_CONFIG).write_text(yaml.safe_dump(old))
    with pytest.raises(ConfigError, match=r"stage.intermediate.lr=0.0003 there, 0.0006 now"):
        result_is_current(cfg, folder)


def test_each_stage_names_the_folder_its_result_goes_to(compose_cfg):
    t = compose_cfg("stage=task", "task=sst2", "seed=3", "stage.run_name=myrun")
    assert result_dir(t) == Path(t.paths.artifacts_dir) / "task" / "sst2" / "myrun" / "seed3"
    g = compose_cfg("stage=general", "distill=distilbert")
    assert result_dir(g) == Path(g.distill.output_dir) != Path(g.stage.output_dir)
    assert result_dir(compose_cfg("stage=general")) == Path(compose_cfg("stage=general").stage.output_dir)
    m = compose_cfg("stage=mlm")
    assert result_dir(m) == Path(m.stage.output_dir)
