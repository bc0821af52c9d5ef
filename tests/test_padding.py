"""data.pad_to_max_length: every batch padded to max_seq_length, as the reference; per-batch padding otherwise."""

from __future__ import annotations

import random
from pathlib import Path

import pytest
from transformers import AutoTokenizer

from tinydistill.data.corpus import CorpusDataModule, CorpusSource
from tinydistill.data.glue import TaskDataModule

WORDS = "the a cat dog sat ran on under mat tree quickly slowly big small red old".split()


@pytest.fixture(scope="module")
def tok(minilm_path):
    return AutoTokenizer.from_pretrained(minilm_path)


def sentence(rng: random.Random) -> str:
    return " ".join(rng.choices(WORDS, k=rng.randint(2, 8))) + " ."


def write_rte(data_dir: Path, n_train: int = 40, n_dev: int = 12) -> Path:
    rng = random.Random(0)
    for split, n in (("train", n_train), ("dev", n_dev)):
        rows = [f"{i}\t{sentence(rng)}\t{sentence(rng)}\t{rng.choice(['entailment', 'not_entailment'])}"
                for i in range(n)]
        f = data_dir / "glue" / "RTE" / f"{split}.tsv"
        f.parent.mkdir(parents=True, exist_ok=True)
        f.write_text("index\tsentence1\tsentence2\tlabel\n" + "\n".join(rows) + "\n")
    return data_dir


def write_corpus(path: Path) -> Path:
    rng = random.Random(1)
    docs = ["\n".join(sentence(rng) for _ in range(rng.randint(2, 6))) for _ in range(30)]
    path.write_text("\n\n".join(docs) + "\n")
    return path


def glue_batches(tmp_path: Path, tok, pad: bool) -> list[dict]:
    dm = TaskDataModule("rte", tok, max_seq_length=48, data_dir=str(write_rte(tmp_path)), cache_dir=str(tmp_path / "c"),
                        batch_size=8, eval_batch_size=5, group_by_length=True, with_index=True, pad_to_max_length=pad)
    dm.prepare_data()
    dm.setup("fit")
    return [*dm.train_dataloader(), *[b for loader in dm.val_dataloader() for b in loader]]


def test_glue_batches_are_padded_to_max_seq_length_with_the_option(tmp_path, tok):
    padded = glue_batches(tmp_path, tok, pad=True)
    for b in padded:
        assert b["input_ids"].shape[1] == 48
        assert b["input_ids"].shape == b["attention_mask"].shape == b["token_type_ids"].shape
        n = b["attention_mask"].sum(1)
        assert int(n.max()) < 48  # the texts are short: the rest is padding
        for row, types, k in zip(b["input_ids"], b["token_type_ids"], n):
            assert (row[int(k):] == tok.pad_token_id).all() and (types[int(k):] == 0).all()
    dynamic = glue_batches(tmp_path, tok, pad=False)
    assert all(b["input_ids"].shape[1] == int(b["attention_mask"].sum(1).max()) < 48 for b in dynamic)
    # same examples either way: padding adds positions only
    assert sorted(int(b["attention_mask"].sum()) for b in padded[-2:]) == \
        sorted(int(b["attention_mask"].sum()) for b in dynamic[-2:])


@pytest.mark.parametrize("instances", ["single", "pairs"])
@pytest.mark.parametrize("mlm_probability", [0.0, 0.3])
def test_corpus_batches_are_padded_to_max_seq_length_with_the_option(tmp_path, tok, instances, mlm_probability):
    f = write_corpus(tmp_path / "c.txt")

    def batches(pad: bool) -> list[dict]:
        dm = CorpusDataModule(CorpusSource(path=str(f)), tok, max_seq_length=40, cache_dir=tmp_path / "cache",
                              batch_size=4, eval_batch_size=3, val_size=5, group_by_length=True,
                              mlm_probability=mlm_probability, instances=instances, pad_to_max_length=pad)
        dm.setup("fit")
        return [*dm.train_dataloader(), *dm.val_dataloader()[0]]

    padded = batches(True)
    assert all(b["input_ids"].shape == b["attention_mask"].shape == (b["input_ids"].shape[0], 40) for b in padded)
    if instances == "pairs":
        assert all(b["token_type_ids"].shape[1] == 40 for b in padded)
    dynamic = batches(False)
    assert all(b["input_ids"].shape[1] == int(b["attention_mask"].sum(1).max()) for b in dynamic)
    assert any(b["input_ids"].shape[1] < 40 for b in dynamic)


def test_stages_pass_the_option_on(compose_cfg, tmp_path, tok, monkeypatch):
    from tinydistill.data.tasks import get_task
    from tinydistill.contract import RunContext
    from tinydistill.stages import classifier, finetune
    from tinydistill.stages.classifier import TaskBatches, task_datamodule

    assert compose_cfg().data.pad_to_max_length is False
    cfg = compose_cfg("stage=task", "task=rte", "data.pad_to_max_length=true")
    dm = task_datamodule(TaskBatches.from_config(cfg, get_task("rte")), RunContext.from_config(cfg), tok)
    assert dm.pad_to_max_length and not dm.group_by_length and dm.max_seq_length == cfg.task.max_seq_length

    class Built(Exception):
        pass

    def capture(*args, **kwargs):
        raise Built(kwargs)

    monkeypatch.setattr(classifier, "TaskDataModule", capture)
    for value in (True, False):
        cfg = compose_cfg("stage=finetune", "task=rte", f"data.pad_to_max_length={value}")
        with pytest.raises(Built) as built:
            finetune.run(finetune.plan(cfg))
        assert built.value.args[0]["pad_to_max_length"] is value
