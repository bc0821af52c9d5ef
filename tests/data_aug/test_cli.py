"""`python -m data_aug`, on one process and on two (torchrun)."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from data_aug import (
    augment_task,
)
from tests.conftest import (
    STOP,
    VEC_WORDS,
    interrupt_chunk_write,
    tiny_mlm_model,
)
from tests.data_aug.conftest import MRPC_ROWS, ROOT


@pytest.fixture
def cli_inputs(glue_dir, tmp_path, tokenizer) -> tuple[dict, list[str]]:
    """A saved tiny MLM, a GloVe text file and NLTK data on disk: the environment and the arguments of a
    `python -m data_aug` command writing to <tmp_path>/art (arguments from `task=mrpc` on)."""
    model_dir = tmp_path / "tiny_mlm"
    tiny_mlm_model(tokenizer).save_pretrained(model_dir)
    tokenizer.save_pretrained(model_dir)
    glove = tmp_path / "vectors.txt"
    glove.write_text("".join(f"{w} {' '.join(map(str, v))}\n" for w, v in VEC_WORDS.items()), encoding="utf-8")
    nltk_dir = tmp_path / "nltk_data"
    (nltk_dir / "corpora" / "stopwords").mkdir(parents=True)
    (nltk_dir / "corpora" / "stopwords" / "english").write_text("\n".join(sorted(STOP)) + "\n")
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(ROOT), os.environ.get("PYTHONPATH", "")]),
           "TINYDISTILL_DATA_DIR": str(glue_dir), "TINYDISTILL_ARTIFACTS": str(tmp_path / "art"),
           "HF_HUB_OFFLINE": "1", "TRANSFORMERS_OFFLINE": "1", "OMP_NUM_THREADS": "1"}
    args = ["task=mrpc", f"aug.mlm_model={model_dir}", f"aug.word_vectors={glove}",
            f"aug.nltk_data={nltk_dir}", "aug.n_aug=3", "aug.chunk_size=2", "aug.num_threads=1"]
    return env, args


def test_cli_writes_train_aug_and_manifest(glue_dir, tmp_path, cli_inputs):
    """`python -m data_aug` end to end, with a saved tiny MLM, a GloVe text file and NLTK data."""
    env, cli_args = cli_inputs
    args = [sys.executable, "-m", "data_aug", *cli_args]
    res = subprocess.run(args, cwd=tmp_path, env=env, capture_output=True, text=True, timeout=300)
    assert res.returncode == 0, res.stderr[-3000:]
    out = tmp_path / "art" / "aug" / "mrpc"
    assert (out / "train_aug.tsv").is_file() and (out / "manifest.json").is_file()
    manifest = json.loads((out / "manifest.json").read_text())
    assert manifest["settings"]["n_aug"] == 3 and manifest["counts"]["examples"] == len(MRPC_ROWS)
    assert manifest["runtime"]["processes"] == 1
    assert sorted(p.name for p in tmp_path.iterdir()) == sorted(["art", "data", "nltk_data", "tiny_mlm", "vectors.txt"])
    bad = subprocess.run(args + ["aug.p_replace=2"], cwd=tmp_path, env=env, capture_output=True, text=True, timeout=300)
    assert bad.returncode == 2 and "aug.p_replace" in bad.stderr


def torchrun_data_aug(nproc: int, args: list[str], env: dict, cwd: Path) -> subprocess.CompletedProcess:
    """`torchrun --standalone --nproc-per-node <nproc> -m data_aug <args>` (CPU processes, gloo)."""
    cmd = [sys.executable, "-m", "torch.distributed.run", "--standalone", f"--nproc-per-node={nproc}",
           "-m", "data_aug", *args]
    return subprocess.run(cmd, cwd=cwd, env=env, capture_output=True, text=True, timeout=600)


def test_two_processes_write_the_bytes_of_one_also_after_an_interruption(glue_dir, tmp_path, cli_inputs,
                                                                         monkeypatch):
    """Two torchrun processes (gloo) share the chunks: the file is byte-identical to one process's, and so is
    a two-process run that resumes chunks an interrupted one-process run left behind."""
    env, args = cli_inputs
    one = subprocess.run([sys.executable, "-m", "data_aug", *args], cwd=tmp_path, env=env, capture_output=True,
                         text=True, timeout=300)
    assert one.returncode == 0, one.stderr[-3000:]
    expected = (tmp_path / "art" / "aug" / "mrpc" / "train_aug.tsv").read_bytes()
    assert expected.count(b"\n") > len(MRPC_ROWS) + 1  # augmented rows beyond the header and the originals

    two = torchrun_data_aug(2, [*args, "force=true"], {**env, "TINYDISTILL_ARTIFACTS": str(tmp_path / "art2")},
                            tmp_path)
    assert two.returncode == 0, two.stderr[-3000:]
    out2 = tmp_path / "art2" / "aug" / "mrpc"
    assert (out2 / "train_aug.tsv").read_bytes() == expected
    manifest = json.loads((out2 / "manifest.json").read_text())
    assert manifest["runtime"]["processes"] == 2 and manifest["output"]["rows"] == expected.count(b"\n") - 1
    assert not (out2 / ".partial").exists()

    # An interrupted one-process run (same settings, in this process) leaves 2 of 4 chunks; two processes finish it.
    cfg = {k.split("=")[0][len("aug."):]: k.split("=", 1)[1] for k in args if k.startswith("aug.")}
    cfg.update(n_aug=3, chunk_size=2, num_threads=1)
    out3 = tmp_path / "art3" / "aug" / "mrpc"
    interrupt_chunk_write(monkeypatch, 3)
    with pytest.raises(KeyboardInterrupt):
        augment_task(cfg, "mrpc", glue_dir, out3, progress=False)
    assert len(list((out3 / ".partial").glob("chunk_*.tsv"))) == 2
    resumed = torchrun_data_aug(2, args, {**env, "TINYDISTILL_ARTIFACTS": str(tmp_path / "art3")}, tmp_path)
    assert resumed.returncode == 0, resumed.stderr[-3000:]
    assert (out3 / "train_aug.tsv").read_bytes() == expected
    assert json.loads((out3 / "manifest.json").read_text())["time"]["resumed_examples"] == 4
