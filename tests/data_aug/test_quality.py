"""`python -m data_aug.quality`."""

from __future__ import annotations

import json
import os
import subprocess
import sys

import pytest

from data_aug import (
    Augmenter,
    GloveNeighbours,
    augment_task,
    load_mlm,
    measure_candidates,
)
from tests.conftest import (
    STOP,
    small_cfg,
    tiny_mlm_model,
)
from tests.data_aug.conftest import MRPC_ROWS, ROOT
from tinydistill.data.glue_tsv import read_glue_tsv
from tinydistill.data.tasks import get_task
from tinydistill.errors import ConfigError


def test_quality_report_measures_a_sample_and_shows_what_augmentation_writes(glue_dir, tmp_path, mlm, small_kv):
    from data_aug.quality import format_report, quality_report, sample_sentences

    kw = dict(mlm=mlm, glove=small_kv, stopwords=STOP)
    report = quality_report(small_cfg(), "mrpc", glue_dir, n_sentences=5, n_examples=3, n_draws=2, **kw)
    table = read_glue_tsv(glue_dir / "glue" / "MRPC" / "train.tsv", get_task("mrpc"))
    sample = sample_sentences(table, 5, 42)
    assert len(sample) == 5 and len({(e, k) for e, k, _ in sample}) == 5
    assert all(table.rows[e][3 + k] == text for e, k, text in sample)
    assert sample != [(e, k, table.rows[e][3 + k]) for e in range(3) for k in (0, 1)][:5]  # shuffled
    aug = Augmenter(mlm, GloveNeighbours(small_kv, 4), STOP, top_k=4)
    expected = measure_candidates(aug, [t for _, _, t in sample])
    assert report["candidate_quality"] == expected and expected["words_with_candidates"] > 5
    # the examples are the first rows `python -m data_aug` writes for that example and column
    out = augment_task(small_cfg(), "mrpc", glue_dir, tmp_path / "aug", progress=False, **kw)
    rows = read_glue_tsv(out, get_task("mrpc")).rows
    assert len(report["examples"]) == 3
    for ex in report["examples"]:
        e, k = ex["example"], ex["column"]
        src = MRPC_ROWS[e]
        written = [r[3 + k] for r in rows if (r[1], r[2]) == (src[1], src[2]) and r[3 + k] != src[3 + k]
                   and r[4 - k] == src[4 - k]]
        assert ex["original"] == src[3 + k] and ex["augmented"] == written[:2] and len(ex["augmented"]) == 2
    text = format_report(report)
    assert "MLM candidates in 5 sentences" in text and report["examples"][0]["augmented"][0] in text
    with pytest.raises(ConfigError, match="n_sentences"):
        quality_report(small_cfg(), "mrpc", glue_dir, n_sentences=0, **kw)


def test_quality_cli_on_a_saved_tiny_model(glue_dir, tmp_path, tokenizer):
    model_dir = tmp_path / "tiny_mlm"
    tiny_mlm_model(tokenizer).save_pretrained(model_dir)
    tokenizer.save_pretrained(model_dir)
    nltk_dir = tmp_path / "nltk_data"
    (nltk_dir / "corpora" / "stopwords").mkdir(parents=True)
    (nltk_dir / "corpora" / "stopwords" / "english").write_text("\n".join(sorted(STOP)) + "\n")
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(ROOT), os.environ.get("PYTHONPATH", "")]),
           "TINYDISTILL_DATA_DIR": str(glue_dir), "TINYDISTILL_ARTIFACTS": str(tmp_path / "art"),
           "HF_HUB_OFFLINE": "1", "TRANSFORMERS_OFFLINE": "1"}
    report_file = tmp_path / "q.json"
    args = [sys.executable, "-m", "data_aug.quality", "task=mrpc", f"aug.mlm_model={model_dir}",
            f"aug.nltk_data={nltk_dir}", "aug.num_threads=1", "aug.top_k=5", "n_sentences=6", "n_examples=2",
            "use_glove=false", f"out={report_file}"]
    res = subprocess.run(args, cwd=tmp_path, env=env, capture_output=True, text=True, timeout=300)
    assert res.returncode == 0, res.stderr[-3000:]
    report = json.loads(report_file.read_text())
    # recomputed here from the saved model, as augmentation would load it
    from data_aug.quality import sample_sentences

    table = read_glue_tsv(glue_dir / "glue" / "MRPC" / "train.tsv", get_task("mrpc"))
    sents = [t for _, _, t in sample_sentences(table, 6, 42)]
    aug = Augmenter(load_mlm(model_dir), None, STOP, top_k=5)
    assert report["candidate_quality"] == measure_candidates(aug, sents)
    q = report["candidate_quality"]
    assert f"{q['words_with_candidates']} words" in res.stdout and f"{q['distinct_candidates']} distinct" in res.stdout
    assert len(report["examples"]) == 2 and report["examples"][0]["original"] in res.stdout
    assert sorted(p.name for p in tmp_path.iterdir()) == sorted(["data", "nltk_data", "tiny_mlm", "q.json"])
    bad = subprocess.run(args[:-1] + ["n_sentences=0"], cwd=tmp_path, env=env, capture_output=True, text=True, timeout=300)
    assert bad.returncode == 2 and "n_sentences" in bad.stderr
