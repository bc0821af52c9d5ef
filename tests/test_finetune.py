"""stage=finetune end to end: tiny random BERTs for mechanics, the real MiniLM teacher once."""

import csv
import glob
import json
import os
import subprocess
import sys

import pytest
import torch
from transformers import AutoModel, AutoModelForSequenceClassification, AutoTokenizer

from tests.conftest import ROOT
from tinydistill.errors import ConfigError
from tinydistill.stages import run
from tinydistill.trainer import TrainerPlan, validate_n_times_per_epoch


def tiny_finetune_overrides(tiny_bert, data_dir, *extra):
    return [
        "stage=finetune",
        f"teacher.name_or_path={tiny_bert}",
        f"paths.data_dir={data_dir}",
        "logger=csv",
        "stage.epochs=1",
        "stage.batch_size=8",
        "trainer.limit_train_batches=3",
        "trainer.limit_val_batches=2",
        "stage.latency_repeats=1", "stage.latency_max_examples=32",
        *extra,
    ]


def test_fast_dev_run_tiny_bert(compose_cfg, tiny_bert, data_dir):
    cfg = compose_cfg(*tiny_finetune_overrides(tiny_bert, data_dir, "task=rte", "trainer.fast_dev_run=true"))
    result = run(cfg)
    out = result["output_dir"]
    assert out.endswith("teacher/rte")
    assert set(result["dev"]) == {"accuracy"}
    assert 0.0 <= result["dev"]["accuracy"] <= 1.0


def test_export_reloads_with_same_outputs(compose_cfg, tiny_bert, data_dir):
    cfg = compose_cfg(*tiny_finetune_overrides(tiny_bert, data_dir, "task=mrpc"))
    result = run(cfg)
    out = result["output_dir"]
    files = set(os.listdir(out))
    assert {"config.json", "model.safetensors", "tokenizer.json", "metrics.json"} <= files
    assert not any(f.endswith(".bin") for f in files)
    saved = json.loads(open(os.path.join(out, "metrics.json")).read())
    assert saved["dev"] == result["dev"] and set(saved["dev"]) == {"f1", "accuracy"}
    assert saved["best_checkpoint"] and os.path.exists(saved["best_checkpoint"])

    model = AutoModelForSequenceClassification.from_pretrained(out).eval()
    tok = AutoTokenizer.from_pretrained(out)
    assert model.config.id2label == {0: "not_equivalent", 1: "equivalent"}  # MRPC's names (its files: 0, 1)
    batch = tok(["The cat sat .", "A dog ran ."], ["A cat sat .", "Dogs run ."], return_tensors="pt", padding=True)
    # The export holds the *best* checkpoint's weights: compare with that checkpoint directly.
    state = torch.load(saved["best_checkpoint"], map_location="cpu", weights_only=False)["state_dict"]
    ref = AutoModelForSequenceClassification.from_pretrained(out)
    ref.load_state_dict({k[len("classifier."):]: v for k, v in state.items() if k.startswith("classifier.")})
    with torch.no_grad():
        assert torch.allclose(model(**batch).logits, ref.eval()(**batch).logits)
    # and the encoder alone loads with AutoModel
    assert AutoModel.from_pretrained(out).config.hidden_size == 32
    # size and dev-set latency for the report (no comparison teacher by default)
    assert saved["parameters"] == {"model": sum(p.numel() for p in model.parameters())}
    assert saved["latency"]["model"]["ms_per_example"] > 0 and "speedup" not in saved
    assert saved["run"] == os.path.basename(os.path.dirname(str(tiny_bert))) + "/" + os.path.basename(str(tiny_bert))


@pytest.mark.parametrize("evals", [1, 2])
def test_resume_from_last_checkpoint(compose_cfg, tiny_bert, data_dir, evals):
    overrides = tiny_finetune_overrides(tiny_bert, data_dir, "task=wnli", f"stage.evals_per_epoch={evals}")
    cfg = compose_cfg(*overrides)
    run(cfg)
    last = os.path.join(cfg.paths.output_dir, "checkpoints", "last.ckpt")
    assert os.path.exists(last)
    cfg2 = compose_cfg(*overrides, "stage.epochs=2", f"ckpt_path={last}")
    run(cfg2)
    state = torch.load(os.path.join(cfg2.paths.output_dir, "checkpoints", "last.ckpt"), weights_only=False)
    assert state["global_step"] == 6  # continued, not restarted
    if evals == 1:
        # last.ckpt was written at the end of epoch 0: the resumed run trained and validated epoch 1 only
        # (the last row is the final validation of the best checkpoint). With several evaluations per epoch
        # last.ckpt is written mid-epoch by Lightning's book-keeping, and the resumed run validates once
        # more before it starts epoch 1.
        metrics_csv = sorted(glob.glob(os.path.join(cfg2.paths.output_dir, "csv", "version_*", "metrics.csv")))[-1]
        with open(metrics_csv) as f:
            epochs = {row["epoch"] for row in csv.DictReader(f) if row.get("val/accuracy")}
        assert "1" in epochs and "0" not in epochs


def test_stsb_regression_uses_mse(compose_cfg, tiny_bert, data_dir):
    cfg = compose_cfg(*tiny_finetune_overrides(tiny_bert, data_dir, "task=stsb", "trainer.fast_dev_run=true"))
    result = run(cfg)
    assert set(result["dev"]) == {"pearson", "spearman"}
    model = AutoModelForSequenceClassification.from_pretrained(result["output_dir"])
    assert model.config.num_labels == 1 and model.config.problem_type == "regression"


def train_py(*args, env=None, timeout=600):
    return subprocess.run(
        [sys.executable, "train.py", *args],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=timeout,
        env={**os.environ, "WANDB_SILENT": "true", **(env or {})},
    )


def test_missing_data_file_is_one_clear_error(tmp_path, tiny_bert):
    (tmp_path / "glue").mkdir()
    r = train_py("stage=finetune", "task=rte", f"teacher.name_or_path={tiny_bert}", f"paths.data_dir={tmp_path}",
                 f"paths.artifacts_dir={tmp_path / 'a'}", "logger=none")
    assert r.returncode == 2
    assert f"{tmp_path}/glue/RTE/train.tsv: file not found" in r.stderr + r.stdout
    assert "Traceback" not in r.stderr


def test_unknown_task_lists_the_options(tmp_path):
    r = train_py("stage=finetune", "task=mrcp", f"paths.artifacts_dir={tmp_path}")
    assert r.returncode != 0
    assert "Could not find 'task/mrcp'" in r.stderr and "mrpc" in r.stderr


def test_ddp_two_cpu_processes(tmp_path, tiny_bert, data_dir):
    """A tiny fine-tune under Lightning's DDP strategy with 2 CPU processes talking over gloo."""
    r = train_py(
        "trainer=ddp", "trainer.accelerator=cpu", "trainer.devices=2",
        *tiny_finetune_overrides(tiny_bert, data_dir, "task=rte"),
        f"paths.artifacts_dir={tmp_path}",
        env={"TINYDISTILL_DATA_DIR": str(data_dir)},
    )
    assert r.returncode == 0, r.stderr[-3000:]
    assert "Initializing distributed: GLOBAL_RANK: 1, MEMBER: 2/2" in r.stderr + r.stdout
    metrics = json.loads((tmp_path / "teacher" / "rte" / "metrics.json").read_text())
    assert 0.0 <= metrics["dev"]["accuracy"] <= 1.0


@pytest.mark.integration
def test_minilm_teacher_finetunes_on_real_mrpc_rows(compose_cfg, data_dir, minilm_path):
    cfg = compose_cfg(
        "stage=finetune", "task=mrpc", f"paths.data_dir={data_dir}", "logger=csv",
        "stage.epochs=1", "trainer.limit_train_batches=4", "trainer.limit_val_batches=1", "stage.latency_repeats=1",
        "stage.latency_max_examples=64",
    )
    result = run(cfg)
    assert result["latency_batch1"]["model"]["examples"] == 64 and result["latency"]["model"]["ms_per_example"] > 0
    model = AutoModelForSequenceClassification.from_pretrained(result["output_dir"])
    assert model.config.num_hidden_layers == 6 and model.config.hidden_size == 384
    assert model.num_labels == 2
    # classifier head is new, the encoder is MiniLM's own
    teacher = AutoModel.from_pretrained(minilm_path)
    assert not torch.equal(model.bert.embeddings.word_embeddings.weight, teacher.embeddings.word_embeddings.weight)
    assert torch.allclose(model.bert.embeddings.word_embeddings.weight, teacher.embeddings.word_embeddings.weight, atol=1e-2)


def test_compare_to_must_be_a_finetuned_classifier(compose_cfg, tiny_bert, data_dir, tmp_path):
    from tinydistill.errors import ConfigError

    cfg = compose_cfg(*tiny_finetune_overrides(tiny_bert, data_dir, "task=rte", f"stage.compare_to={tmp_path / 'no'}"))
    with pytest.raises(ConfigError, match=r"stage.compare_to=.*run `python train.py stage=finetune task=rte` first"):
        run(cfg)


def test_validate_n_times_per_epoch(compose_cfg):
    cfg = TrainerPlan.from_config(compose_cfg("stage=finetune"))
    assert validate_n_times_per_epoch(cfg, 2, "stage.evals_per_epoch") == {"val_check_interval": 0.5}
    assert validate_n_times_per_epoch(cfg, 1, "stage.evals_per_epoch") == {}
    # the user's own trainer.val_check_interval wins
    user = TrainerPlan.from_config(compose_cfg("stage=finetune", "trainer.val_check_interval=100"))
    assert validate_n_times_per_epoch(user, 2, "stage.evals_per_epoch") == {}
    for bad in (0, -1, 0.5, True, "2"):
        with pytest.raises(ConfigError, match=r"stage\.evals_per_epoch="):
            validate_n_times_per_epoch(cfg, bad, "stage.evals_per_epoch")


@pytest.mark.parametrize("evals", [1, 2])
def test_dev_evaluations_per_epoch(compose_cfg, tiny_bert, data_dir, evals):
    cfg = compose_cfg(*tiny_finetune_overrides(
        tiny_bert, data_dir, "task=wnli", "trainer.limit_train_batches=4", f"stage.evals_per_epoch={evals}",
        "stage.measure_latency=false"))
    result = run(cfg)
    metrics_csv = glob.glob(os.path.join(cfg.paths.output_dir, "csv", "version_*", "metrics.csv"))[0]
    with open(metrics_csv) as f:
        steps = [row["step"] for row in csv.DictReader(f) if row.get("val/accuracy")]
    # `evals` evaluations during the epoch, then the final one of the exported (best) checkpoint
    assert steps[:-1] == [str(4 // evals * (i + 1) - 1) for i in range(evals)]
    assert os.path.basename(result["best_checkpoint"]).startswith("best-epoch=0-step=")


def test_max_steps_replaces_epochs(compose_cfg, tiny_bert, data_dir):
    # 3 batches per epoch (limit_train_batches) and 1 epoch: without the step budget replacing stage.epochs,
    # Lightning would stop at the end of the epoch, after 3 of the 7 steps asked for.
    cfg = compose_cfg(*tiny_finetune_overrides(
        tiny_bert, data_dir, "task=wnli", "stage.max_steps=7", "stage.measure_latency=false"))
    result = run(cfg)
    assert result["steps"] == 7
    assert result["epochs"] is None and result["matched_steps_of"] is None
