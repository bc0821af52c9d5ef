"""Bad input gets one clear line before any work (issue #16): each case goes through train.py's main (in this
process, as `python train.py ...` would run it) and must end with exit code 2, exactly one ERROR line naming the
option or file and the value (and line), no traceback, and nothing written: no artifacts, no cache, nothing in the
run folder but Hydra's own config and log. Tiny random BERTs and a few rows of synthetic GLUE data."""

from __future__ import annotations

import logging
import runpy
import shutil
import sys
import zipfile
from pathlib import Path

import pytest
import torch
from hydra.core.global_hydra import GlobalHydra
from transformers import (
    AutoConfig,
    AutoModel,
    AutoModelForSequenceClassification,
    AutoTokenizer,
    BertConfig,
    BertForSequenceClassification,
    GPT2Config,
    RobertaConfig,
)

from tests.conftest import TINY_STUDENT, assert_nothing_written, assert_one_line, compose_config
from tinydistill.errors import ConfigError, DataError
from tinydistill.models.capture import forward_with_capture
from tinydistill.ckpt_path import check_checkpoint_file
from tinydistill.preflight import (
    ENCODER_TYPES,
    STUDENT_TYPES,
    origin,
    position_limit,
    setting,
)

# ------------------------------------------------------------------ helpers


def write_glue(root: Path, folder: str, header: str, rows: dict[str, list[str]]) -> Path:
    """`root/glue/<folder>/<split>.tsv` with `header` and the rows of each split; returns root."""
    (root / "glue" / folder).mkdir(parents=True, exist_ok=True)
    for split, lines in rows.items():
        (root / "glue" / folder / f"{split}.tsv").write_text("\n".join([header, *lines]) + "\n", encoding="utf-8")
    return root


def sst2_rows(n: int) -> list[str]:
    return [f"{'a good film' if i % 2 else 'a bad film'} number {i}\t{i % 2}" for i in range(n)]


@pytest.fixture
def sst2(tmp_path) -> Path:
    return write_glue(tmp_path / "in" / "sst2", "SST-2", "sentence\tlabel", {"train": sst2_rows(12), "dev": sst2_rows(6)})


def stsb_rows(n: int) -> list[str]:
    return [f"a man plays {i}\ta man is playing {i}\t{i % 5}.0" for i in range(n)]


def save_classifier(path: Path, tokenizer_src: Path, max_positions: int = 128) -> Path:
    tok = AutoTokenizer.from_pretrained(tokenizer_src)
    BertForSequenceClassification(BertConfig(
        vocab_size=tok.vocab_size, hidden_size=32, num_hidden_layers=2, num_attention_heads=4, intermediate_size=64,
        max_position_embeddings=max_positions)).save_pretrained(path)
    tok.save_pretrained(path)
    return path


def finetune(model: Path, data: Path, *more: str) -> list[str]:
    return ["stage=finetune", "task=sst2", f"stage.model={model}", f"paths.data_dir={data}", *more]


# ------------------------------------------------------------------ non-UTF-8 bytes


def test_non_utf8_glue_file_names_file_and_line(tmp_path, train_py, tiny_bert, sst2):
    dev = sst2 / "glue" / "SST-2" / "dev.tsv"
    lines = dev.read_bytes().split(b"\n")
    lines[3] = b"caf\xe9 au lait\t1"  # Latin-1, line 4 of the file
    dev.write_bytes(b"\n".join(lines))
    # train.tsv is fine and read first: the dev file is still checked before train is tokenised and cached
    assert_one_line(train_py(*finetune(tiny_bert, sst2)), f"{dev}: line 4: byte 0xe9 (column 4) is not UTF-8")
    assert_nothing_written(tmp_path)


def test_non_utf8_corpus_names_file_and_line(tmp_path, train_py, tiny_bert, corpus):
    lines = corpus.read_bytes().split(b"\n")
    lines[6] = b"the na\xefve cat ."  # line 7
    corpus.write_bytes(b"\n".join(lines))
    result = train_py("stage=general", f"teacher.name_or_path={tiny_bert}", *TINY_STUDENT,
                      f"stage.corpus.path={corpus}", "stage.max_seq_length=32", "stage.max_steps=1", "stage.val_size=2")
    assert_one_line(result, f"{corpus}: line 7: byte 0xef (column 7) is not UTF-8", "corpus file")
    assert_nothing_written(tmp_path)


# ------------------------------------------------------------------ learning rates, batch sizes, seed


@pytest.mark.parametrize(("overrides", "message"), [
    (["stage=finetune", "stage.lr=0"], "stage.lr=0: a learning rate must be a number > 0"),
    (["stage=finetune", "teacher.finetune_lr=-1e-5"], "teacher.finetune_lr=-1e-05 (used as stage.lr)"),
    (["stage=mlm", "stage.lr=-0.001"], "stage.lr=-0.001: a learning rate"),
    (["stage=general", "stage.lr=0.0"], "stage.lr=0.0: a learning rate"),
    (["stage=general", "distill=distilbert", "stage.lr=-5e-4"], "stage.lr=-0.0005: a learning rate"),
    (["stage=task", "stage.intermediate.lr=-1"], "stage.intermediate.lr=-1: a learning rate"),
    (["stage=task", "stage.pred.lr=0"], "stage.pred.lr=0: a learning rate"),
    (["stage=task", "stage.pred.lr=-3e-5"], "stage.pred.lr=-3e-05: a learning rate"),
    (["stage=task", "stage.intermediate.lr=fast"], "stage.intermediate.lr='fast': a learning rate"),
    (["stage=task", "stage.pred.lr=nan"], "stage.pred.lr=nan: a learning rate"),
])
def test_learning_rate_not_positive(tmp_path, train_py, overrides, message):
    assert_one_line(train_py(*overrides), message)
    assert_nothing_written(tmp_path)


@pytest.mark.parametrize(("overrides", "message"), [
    (["stage=finetune", "stage.batch_size=0"], "stage.batch_size=0: a batch size must be a whole number >= 1"),
    (["stage=finetune", "stage.latency_batch_size=-1"], "stage.latency_batch_size=-1: a batch size"),
    (["stage=task", "stage.latency_max_examples=0"],
     "stage.latency_max_examples=0: a number of examples must be a whole number >= 1"),
    (["stage=task", "stage.eval_batch_size=-4"], "stage.eval_batch_size=-4: a batch size"),
    (["stage=general", "stage.batch_size=0"], "stage.batch_size=0: a batch size"),
    (["stage=mlm", "stage.eval_batch_size=0"], "stage.eval_batch_size=0: a batch size"),
    (["stage=finetune", "stage.batch_size=2.5"], "stage.batch_size=2.5: a batch size"),
])
def test_batch_size_not_positive(tmp_path, train_py, overrides, message):
    assert_one_line(train_py(*overrides), message)
    assert_nothing_written(tmp_path)


@pytest.mark.parametrize(("overrides", "message"), [
    (["stage=finetune", "trainer.progress=fancy"], "trainer.progress=fancy: expected one of auto, bar, log"),
    (["stage=task", "trainer.progress_every_s=-1"], "trainer.progress_every_s=-1: expected a number of seconds"),
])
def test_progress_setting_unusable(tmp_path, train_py, overrides, message):
    assert_one_line(train_py(*overrides), message)
    assert_nothing_written(tmp_path)


@pytest.mark.parametrize(("value", "shown"), [("abc", "'abc'"), ("-1", "-1"), ("1.5", "1.5"), ("4294967296", "4294967296")])
def test_seed_not_a_whole_number(tmp_path, train_py, value, shown):
    assert_one_line(train_py(f"seed={value}"), f"seed={shown}: expected a whole number from 0 to 4294967295")
    assert_nothing_written(tmp_path)


def test_origin_follows_interpolations_to_the_option_set(tmp_path):
    cfg = compose_config(tmp_path, "stage=finetune")
    assert origin(cfg, "stage.lr") == "teacher.finetune_lr"
    assert origin(cfg, "stage.teacher") == "stage.teacher"  # a path built from several parts stays itself
    cfg = compose_config(tmp_path, "stage=finetune", "stage.lr=0.1")
    assert setting(cfg, "stage.lr") == "stage.lr=0.1"


# ------------------------------------------------------------------ max_seq_length above the position limit


def test_max_seq_length_above_model_positions_finetune(tmp_path, train_py, tiny_bert, sst2):
    result = train_py(*finetune(tiny_bert, sst2, "task.max_seq_length=129"))
    assert_one_line(result, f"task.max_seq_length=129 exceeds the 128 positions of stage.model={tiny_bert}",
                    "max_position_embeddings=128")
    assert_nothing_written(tmp_path)


def test_max_seq_length_above_teacher_positions_task(tmp_path, train_py, minilm_path, sst2):
    teacher = save_classifier(tmp_path / "in" / "teacher", Path(minilm_path), max_positions=64)
    result = train_py("stage=task", "task=sst2", f"stage.teacher={teacher}", "student.init=random", *TINY_STUDENT,
                      f"paths.data_dir={sst2}", "task.max_seq_length=100")
    assert_one_line(result, f"task.max_seq_length=100 exceeds the 64 positions of stage.teacher={teacher}")
    assert_nothing_written(tmp_path)


def test_max_seq_length_above_random_student_positions_task(tmp_path, train_py, minilm_path, sst2):
    teacher = save_classifier(tmp_path / "in" / "teacher", Path(minilm_path), max_positions=128)
    result = train_py("stage=task", "task=sst2", f"stage.teacher={teacher}", "student.init=random", *TINY_STUDENT,
                      "+student.max_position_embeddings=32", f"paths.data_dir={sst2}", "task.max_seq_length=64")
    assert_one_line(result, "task.max_seq_length=64 exceeds the 32 positions of the random student")
    assert_nothing_written(tmp_path)


def test_roberta_positions_start_after_the_padding_index():
    assert position_limit(RobertaConfig(max_position_embeddings=514, pad_token_id=1)) == 512
    assert position_limit(BertConfig(max_position_embeddings=512)) == 512


# ------------------------------------------------------------------ regression labels


@pytest.mark.parametrize("label", ["nan", "inf", "-inf", "NaN", "Infinity"])
def test_regression_label_not_finite(tmp_path, train_py, tiny_bert, label):
    rows = stsb_rows(10)
    rows[1] = f"a dog runs\ta dog is running\t{label}"  # line 3 (after the header)
    data = write_glue(tmp_path / "in" / "stsb", "STS-B", "sentence1\tsentence2\tscore",
                      {"train": rows, "dev": stsb_rows(4)})
    result = train_py("stage=finetune", "task=stsb", f"stage.model={tiny_bert}", f"paths.data_dir={data}")
    train = data / "glue" / "STS-B" / "train.tsv"
    assert_one_line(result, f"{train}: line 3: label {label!r} is not a finite number (task stsb)")
    assert_nothing_written(tmp_path)


# ------------------------------------------------------------------ ckpt_path


def _checkpoint(path: Path) -> Path:
    torch.save({"state_dict": {"w": torch.arange(4096.0)}, "epoch": 1}, path)
    return path


@pytest.mark.parametrize(("damage", "message"), [
    ("missing", "no such checkpoint file"),
    ("truncated", "not a readable checkpoint, truncated or of another format"),
    ("garbage", "not a readable checkpoint"),
    ("flipped", "damaged ("),
])
def test_ckpt_path_missing_or_corrupt(tmp_path, train_py, tiny_bert, sst2, damage, message):
    ckpt = tmp_path / "in" / "last.ckpt"
    if damage != "missing":
        data = _checkpoint(ckpt).read_bytes()
        if damage == "truncated":
            data = data[: len(data) // 2]
        elif damage == "garbage":
            data = b"not a checkpoint" * 64
        else:  # one byte inside the tensor data: only the CRC shows it
            i = data.index(torch.arange(4096.0).numpy().tobytes()[400:416])
            data = data[:i] + bytes([data[i] ^ 0xFF]) + data[i + 1:]
        ckpt.write_bytes(data)
    assert_one_line(train_py(*finetune(tiny_bert, sst2, f"ckpt_path={ckpt}")), f"ckpt_path={ckpt}: {message}")
    assert_nothing_written(tmp_path)


def test_intact_checkpoint_passes(tmp_path):
    check_checkpoint_file(_checkpoint(tmp_path / "good.ckpt"))
    check_checkpoint_file("last")  # Lightning's own names are left to it
    with zipfile.ZipFile(tmp_path / "other.zip", "w") as z:
        z.writestr("readme.txt", "hello")
    with pytest.raises(DataError, match="no data.pkl"):
        check_checkpoint_file(tmp_path / "other.zip")


# ------------------------------------------------------------------ model folders


def test_corrupt_safetensors_names_the_file(tmp_path, train_py, tiny_bert, sst2):
    model = shutil.copytree(tiny_bert, tmp_path / "in" / "model")
    weights = model / "model.safetensors"
    weights.write_bytes(weights.read_bytes()[:-1000])  # truncated
    result = train_py(*finetune(model, sst2))
    assert_one_line(result, f"{weights}: corrupt or truncated safetensors file")
    assert_nothing_written(tmp_path)


def test_corrupt_teacher_safetensors_task(tmp_path, train_py, minilm_path, sst2):
    teacher = save_classifier(tmp_path / "in" / "teacher", Path(minilm_path))
    (teacher / "model.safetensors").write_bytes(b"\x00" * 64)
    result = train_py("stage=task", "task=sst2", f"stage.teacher={teacher}", "student.init=random", *TINY_STUDENT,
                      f"paths.data_dir={sst2}")
    assert_one_line(result, f"{teacher / 'model.safetensors'}: corrupt or truncated safetensors file")
    assert_nothing_written(tmp_path)


@pytest.fixture
def gpt2(tmp_path) -> Path:
    path = tmp_path / "in" / "gpt2"
    GPT2Config(vocab_size=100, n_embd=32, n_layer=1, n_head=4, n_positions=128).save_pretrained(path)
    return path


def test_gpt2_as_stage_model(tmp_path, train_py, gpt2, sst2):
    assert_one_line(train_py(*finetune(gpt2, sst2)),
                    f"stage.model={gpt2} is a 'gpt2' model, not an encoder stage=finetune can use", "bert")
    assert_nothing_written(tmp_path)


def test_gpt2_as_general_teacher_names_the_option_set(tmp_path, train_py, gpt2, corpus):
    result = train_py("stage=general", f"teacher.name_or_path={gpt2}", f"stage.corpus.path={corpus}")
    assert_one_line(result, f"teacher.name_or_path={gpt2} (used as stage.teacher) is a 'gpt2' model")
    assert_nothing_written(tmp_path)


def test_gpt2_as_task_teacher(tmp_path, train_py, gpt2, sst2):
    result = train_py("stage=task", "task=sst2", f"stage.teacher={gpt2}", "student.init=random", f"paths.data_dir={sst2}")
    assert_one_line(result, f"stage.teacher={gpt2} is a 'gpt2' model, not an encoder stage=task as teacher can use")
    assert_nothing_written(tmp_path)


def test_electra_for_stage_mlm_and_distilbert_student(tmp_path, train_py, minilm_path, sst2, corpus):
    electra = tmp_path / "in" / "electra"
    AutoConfig.for_model("electra", vocab_size=100, embedding_size=32, hidden_size=32, num_hidden_layers=1,
                         num_attention_heads=4, intermediate_size=64).save_pretrained(electra)
    assert_one_line(train_py("stage=mlm", f"stage.model={electra}", f"stage.corpus.path={corpus}"),
                    f"stage.model={electra} is a 'electra' model, not an encoder stage=mlm (a masked LM) can use "
                    f"(model types: bert, camembert, roberta, xlm-roberta)")
    teacher = save_classifier(tmp_path / "in" / "teacher", Path(minilm_path))
    student = tmp_path / "in" / "distilbert"
    AutoConfig.for_model("distilbert", vocab_size=100, dim=32, n_layers=1, n_heads=4, hidden_dim=64).save_pretrained(student)
    assert_one_line(train_py("stage=task", "task=sst2", f"stage.teacher={teacher}", f"student.init={student}",
                             f"paths.data_dir={sst2}"),
                    f"student.init={student} is a 'distilbert' model, not an encoder stage=task as student can use")
    assert_nothing_written(tmp_path)


# Tiny configs of every accepted model type: what makes them acceptable is checked below.
TINY = dict(vocab_size=100, hidden_size=32, num_hidden_layers=2, num_attention_heads=4, intermediate_size=64,
            max_position_embeddings=64)
TINY_CONFIGS = {
    "bert": TINY, "roberta": {**TINY, "pad_token_id": 1}, "xlm-roberta": {**TINY, "pad_token_id": 1},
    "camembert": {**TINY, "pad_token_id": 1}, "electra": {**TINY, "embedding_size": 32},
    "albert": {**TINY, "embedding_size": 32},
    "distilbert": dict(vocab_size=100, dim=32, n_layers=2, n_heads=4, hidden_dim=64, max_position_embeddings=64),
}


@pytest.mark.parametrize("model_type", sorted(ENCODER_TYPES))
def test_every_accepted_model_type_works(model_type):
    """Attention capture (both kinds, padding masked) and a classifier with loss on a padded pair batch; a task
    student's layers sit under `.encoder.` (the parameters phase 1 trains, modules/task.py)."""
    config = AutoConfig.for_model(model_type, **TINY_CONFIGS[model_type])
    batch = {"input_ids": torch.randint(5, 90, (2, 10)), "attention_mask": torch.ones(2, 10, dtype=torch.long),
             "token_type_ids": torch.zeros(2, 10, dtype=torch.long)}
    batch["attention_mask"][1, 7:] = 0
    encoder = AutoModel.from_config(config)
    for kind in ("scores", "probs"):
        captured = forward_with_capture(encoder, batch, kind)
        attention = captured.attention_scores if kind == "scores" else captured.attention_probs
        assert len(attention) == captured.num_layers == 2
    config.num_labels = 2
    classifier = AutoModelForSequenceClassification.from_config(config)
    out = forward_with_capture(classifier, {**batch, "labels": torch.tensor([0, 1])}, None)
    assert torch.isfinite(out.outputs.loss)
    layers = [n for n, _ in classifier.named_parameters() if ".layer." in n]
    assert all(".encoder." in n for n in layers) == (model_type in STUDENT_TYPES), layers[:2]


# ------------------------------------------------------------------ word-vector rows (GloVe, fastText)


@pytest.mark.parametrize(("text", "line", "message"), [
    ("the 0.1 0.2 0.3\ncat 0.5\ndog 0.1 0.2 0.3\n", 2, "1 values, but line 1 has 3"),  # gensim broadcasts this one
    ("the 0.1 0.2 0.3\ncat 0.1 0.2 0.3\ndog 0.1 0.2 0.3 0.4\n", 3, "4 values, but line 1 has 3"),
    # word2vec / fastText .vec header: the rows must have its <dim> values
    ("3 3\nthe 0.1 0.2 0.3\ncat 0.1 0.2\ndog 0.1 0.2 0.3\n", 3, "2 values, but the header (line 1) says 3"),
    ("3 4\nthe 0.1 0.2 0.3\ncat 0.1 0.2 0.3\n", 2, "3 values, but the header (line 1) says 4"),
])
def test_glove_row_of_another_length(tmp_path, text, line, message):
    from data_aug.glove import glove_file_fingerprint, load_glove

    path = tmp_path / "glove.txt"
    path.write_text(text)
    for load in (load_glove, glove_file_fingerprint):
        with pytest.raises(DataError) as e:
            load(str(path), 100)
        assert str(e.value) == f"{path}: line {line}: {message} (aug.word_vectors): every row must be a word and the same " \
                               f"number of values"


def test_glove_rows_past_the_vocabulary_limit_are_not_read(tmp_path):
    from data_aug.glove import load_glove

    path = tmp_path / "glove.txt"
    path.write_text("the 0.1 0.2 0.3\ncat 0.1 0.2 0.4\ndog 0.5\n")
    assert load_glove(str(path), 2).index_to_key == ["the", "cat"]


def test_glove_bad_row_through_data_aug_writes_nothing(tmp_path, capsys, minilm_path, data_dir):
    """`python -m data_aug`: exit code 2, one line, and no aug folder (not even its lock file)."""
    from transformers import BertForMaskedLM

    tok = AutoTokenizer.from_pretrained(minilm_path)
    mlm = tmp_path / "in" / "mlm"
    BertForMaskedLM(BertConfig(vocab_size=tok.vocab_size, hidden_size=32, num_hidden_layers=1, num_attention_heads=4,
                               intermediate_size=64)).save_pretrained(mlm)
    tok.save_pretrained(mlm)
    glove = tmp_path / "in" / "glove.txt"
    glove.write_text("the 0.1 0.2 0.3\ncat 0.5\n")
    data = write_glue(tmp_path / "in" / "data", "SST-2", "sentence\tlabel", {"train": sst2_rows(6)})
    argv = sys.argv
    sys.argv = ["data_aug", "task=sst2", "aug=on", f"aug.mlm_model={mlm}", f"aug.word_vectors={glove}", f"aug.nltk_data={data_dir / 'nltk_data'}",
                f"paths.data_dir={data}", f"paths.artifacts_dir={tmp_path / 'artifacts'}",
                f"hydra.run.dir={tmp_path / 'hydra'}"]
    root = logging.getLogger()
    saved = root.handlers[:]
    try:
        with pytest.raises(SystemExit) as exit_info:
            runpy.run_module("data_aug", run_name="__main__", alter_sys=True)
    finally:
        sys.argv = argv
        for handler in root.handlers:
            if handler not in saved:
                handler.close()
        root.handlers[:] = saved
        GlobalHydra.instance().clear()
    err = capsys.readouterr().err
    assert exit_info.value.code == 2, err[-3000:]
    assert f"error: {glove}: line 2: 1 values, but line 1 has 3 (aug.word_vectors)" in err
    assert not (tmp_path / "artifacts").exists()


# ------------------------------------------------------------------ no data folder


def test_offline_without_data_folder(tmp_path, train_py, tiny_bert, monkeypatch):
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    assert_one_line(train_py("stage=finetune", "task=sst2", f"stage.model={tiny_bert}", "paths.data_dir=null"),
                    "paths.data_dir is not set and HF_HUB_OFFLINE=1: GLUE cannot come from the hub offline",
                    "TINYDISTILL_DATA_DIR or paths.data_dir", "glue/SST-2/")
    assert_nothing_written(tmp_path)


def test_default_corpus_without_data_folder(tmp_path, train_py, tiny_bert):
    result = train_py("stage=general", f"teacher.name_or_path={tiny_bert}", "paths.data_dir=null")
    assert_one_line(result, "paths.data_dir is not set, and stage.corpus.path=${paths.data_dir}/corpus/general_corpus.txt "
                            "needs it", "TINYDISTILL_DATA_DIR or paths.data_dir")
    assert_nothing_written(tmp_path)


def test_unreadable_model_config_is_one_line(tmp_path):
    from tinydistill.preflight import model_config

    folder = tmp_path / "broken"
    folder.mkdir()
    (folder / "config.json").write_text("{not json")
    with pytest.raises(ConfigError) as e:
        model_config(f"stage.model={folder}", folder)
    assert str(e.value).startswith(f"{folder / 'config.json'}: cannot read the model's config (")
    assert "\n" not in str(e.value)
