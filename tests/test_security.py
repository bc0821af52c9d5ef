"""Nothing from outside is unpickled: remote checkpoints are refused, the teacher-logit cache is loaded with
allow_pickle=False (a tampered cache runs no code and is recomputed)."""

from __future__ import annotations

import os
import pickle
import subprocess
import sys
from pathlib import Path

import pytest
import numpy as np
import torch
from datasets import Dataset

from tinydistill.ckpt_path import check_ckpt_path
from tinydistill.distill import prediction
from tinydistill.errors import ConfigError
from tinydistill.stages import run

ROOT = Path(__file__).resolve().parents[1]


@pytest.mark.parametrize("url", ["https://example.com/last.ckpt", "http://10.0.0.1/x.ckpt", "HTTPS://example.com/a"])
def test_remote_checkpoint_is_refused(url):
    with pytest.raises(ConfigError) as e:
        check_ckpt_path(url)
    msg = str(e.value)
    assert "\n" not in msg and msg.startswith(f"ckpt_path={url!r}: remote checkpoints are refused")
    assert "weights_only=False" in msg


def test_local_paths_pass_and_an_http_named_folder_is_told_how_to_write_it():
    for ok in (None, "runs/last.ckpt", "./http_runs/last.ckpt", "/abs/last.ckpt", Path("a/b.ckpt")):
        check_ckpt_path(ok)
    with pytest.raises(ConfigError, match=r"ckpt_path='http_runs/last.ckpt': .* write it as \./http_runs/last\.ckpt"):
        check_ckpt_path("http_runs/last.ckpt")


def test_run_refuses_a_remote_checkpoint_before_any_work(compose_cfg, tmp_path):
    cfg = compose_cfg("stage=finetune", "ckpt_path=https://example.com/last.ckpt", "logger=none")
    with pytest.raises(ConfigError, match="remote checkpoints are refused"):
        run(cfg)
    assert not (tmp_path / "artifacts").exists() and not (tmp_path / "run").exists()


def test_train_py_exits_2_with_one_line(tmp_path):
    env = {**os.environ, "TINYDISTILL_ARTIFACTS": str(tmp_path / "art"), "HF_HUB_OFFLINE": "1", "WANDB_MODE": "offline"}
    r = subprocess.run(
        [sys.executable, str(ROOT / "train.py"), "ckpt_path=https://example.com/last.ckpt", "logger=none",
         f"hydra.run.dir={tmp_path / 'run'}"],
        cwd=tmp_path, env=env, capture_output=True, text=True, timeout=300,
    )
    assert r.returncode == 2, r.stderr[-3000:]
    lines = [line for line in (r.stdout + r.stderr).splitlines() if "remote checkpoints are refused" in line]
    assert len(lines) == 1 and "Traceback" not in r.stderr
    assert not (tmp_path / "art").exists()


class _Trap:
    """Unpickling this (weights_only=False) would create a folder: code from the file would run."""

    def __init__(self, marker: Path) -> None:
        self.marker = str(marker)

    def __reduce__(self):
        return (os.mkdir, (self.marker,))


@pytest.fixture
def tiny_classifier(tmp_path, minilm_path):
    from transformers import AutoTokenizer, BertConfig, BertForSequenceClassification

    torch.manual_seed(0)
    model = BertForSequenceClassification(BertConfig(
        vocab_size=30522, hidden_size=8, num_hidden_layers=1, num_attention_heads=2, intermediate_size=16,
        max_position_embeddings=32, num_labels=2)).eval()
    teacher_dir = tmp_path / "teacher"
    model.save_pretrained(teacher_dir)
    return model, str(teacher_dir), AutoTokenizer.from_pretrained(minilm_path)


def test_teacher_logit_cache_is_loaded_weights_only_and_a_tampered_one_is_recomputed(
    tmp_path, tiny_classifier, monkeypatch, caplog
):
    model, teacher_dir, tok = tiny_classifier
    ds = Dataset.from_dict({"input_ids": [[101, 2023, 102], [101, 2008, 2003, 102]],
                            "attention_mask": [[1, 1, 1], [1, 1, 1, 1]]})
    cache = tmp_path / "cache"
    fresh = prediction.cached_teacher_logits(model, teacher_dir, ds, tok, cache).clone()  # not the file's map
    (path,) = (cache / "teacher_logits").iterdir()

    loads = []
    real_load = np.load
    monkeypatch.setattr(prediction.np, "load", lambda *a, **k: loads.append(k) or real_load(*a, **k))
    assert torch.equal(prediction.cached_teacher_logits(model, teacher_dir, ds, tok, cache), fresh)
    assert loads and all(k.get("allow_pickle") is False for k in loads)

    marker = tmp_path / "code_ran"
    for tamper in (lambda: torch.save(_Trap(marker), path), lambda: path.write_bytes(pickle.dumps(_Trap(marker)))):
        tamper()
        caplog.clear()
        with caplog.at_level("WARNING", logger="tinydistill.distill.prediction"):
            again = prediction.cached_teacher_logits(model, teacher_dir, ds, tok, cache)
        assert not marker.exists() and torch.equal(again, fresh)
        assert f"teacher-logit cache {path} is unreadable" in caplog.text
    assert torch.equal(torch.from_numpy(real_load(path, allow_pickle=False)), fresh)  # rewritten with the real logits
