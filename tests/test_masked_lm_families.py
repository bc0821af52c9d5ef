"""Masked LMs of other families in stage=mlm and the DistilBERT baseline (models/masked_lm.py): a RoBERTa teacher's
student starts from every other teacher layer, as DistilRoBERTa did; families without a supported masked-LM head are
refused in one line. Tiny random RoBERTa models on the MiniLM tokenizer's vocabulary (the architecture is what
differs; the tokenizer does not matter to these stages)."""

from __future__ import annotations

import json
import os

import pytest
import torch
from transformers import (
    AutoModelForMaskedLM,
    AutoTokenizer,
    DebertaV2Config,
    DebertaV2ForMaskedLM,
    ElectraConfig,
    ElectraForMaskedLM,
    RobertaConfig,
    RobertaForMaskedLM,
    RobertaModel,
)

from tests.conftest import assert_one_line
from tinydistill.errors import ConfigError
from tinydistill.models.distilbert import init_from_teacher, load_mlm_teacher
from tinydistill.models.masked_lm import encoder_of, head_of, masked_lm_parts
from tinydistill.stages import run


def roberta_config(tok, layers: int = 4) -> RobertaConfig:
    # RoBERTa numbers positions from pad_token_id + 1, so it needs two positions more than the longest input.
    return RobertaConfig(vocab_size=tok.vocab_size, hidden_size=32, num_hidden_layers=layers, num_attention_heads=4,
                         intermediate_size=64, max_position_embeddings=130, pad_token_id=tok.pad_token_id,
                         type_vocab_size=1)


@pytest.fixture(scope="module")
def tiny_roberta_mlm(tmp_path_factory, minilm_path):
    """A randomly initialised RobertaForMaskedLM with a non-trivial head (random output bias)."""
    path = tmp_path_factory.mktemp("roberta_mlm")
    tok = AutoTokenizer.from_pretrained(minilm_path)
    torch.manual_seed(0)
    model = RobertaForMaskedLM(roberta_config(tok))
    with torch.no_grad():
        model.lm_head.bias.normal_(0, 0.5)
    model.save_pretrained(path)
    tok.save_pretrained(path)
    return path


def test_parts_name_each_familys_encoder_and_head(tiny_roberta_mlm):
    model = load_mlm_teacher(str(tiny_roberta_mlm))
    assert isinstance(model, RobertaForMaskedLM)
    assert encoder_of(model) is model.roberta and head_of(model) is model.lm_head
    assert masked_lm_parts(model.config).head_prefix == "lm_head."
    hidden = encoder_of(model)(input_ids=torch.tensor([[5, 6, 7]])).last_hidden_state
    assert torch.equal(head_of(model)(hidden), model(input_ids=torch.tensor([[5, 6, 7]])).logits)


def test_roberta_student_starts_as_every_other_teacher_layer(tiny_roberta_mlm):
    teacher = load_mlm_teacher(str(tiny_roberta_mlm))
    student = init_from_teacher(teacher, [0, 2])
    assert isinstance(student, RobertaForMaskedLM) and student.config.num_hidden_layers == 2
    assert student.config.architectures == ["RobertaForMaskedLM"]
    t, s = teacher.state_dict(), student.state_dict()
    assert torch.equal(s["roberta.encoder.layer.1.output.dense.weight"], t["roberta.encoder.layer.2.output.dense.weight"])
    assert torch.equal(s["lm_head.bias"], t["lm_head.bias"]) and torch.equal(s["lm_head.dense.weight"],
                                                                              t["lm_head.dense.weight"])
    # the decoder stays tied to the student's own word embeddings, not the teacher's
    emb = student.roberta.embeddings.word_embeddings.weight
    assert student.lm_head.decoder.weight.data_ptr() == emb.data_ptr()
    assert emb.data_ptr() != teacher.roberta.embeddings.word_embeddings.weight.data_ptr()


def test_distilbert_baseline_with_a_roberta_teacher(compose_cfg, tiny_roberta_mlm, corpus):
    cfg = compose_cfg("stage=general", "distill=distilbert", f"distill.teacher={tiny_roberta_mlm}",
                      f"stage.corpus.path={corpus}", "stage.max_seq_length=24", "stage.batch_size=4",
                      "stage.eval_batch_size=8", "stage.val_size=4", "stage.max_steps=3", "stage.lr=1e-3",
                      "distill.freeze_pos_embs=true", "logger=csv")
    result = run(cfg)
    out = result["output_dir"]
    assert result["steps"] == 3 and all(torch.isfinite(torch.tensor(v)) for v in result["train_last"].values())
    assert json.loads(open(os.path.join(out, "config.json")).read())["architectures"] == ["RobertaForMaskedLM"]
    student = AutoModelForMaskedLM.from_pretrained(out)
    teacher = RobertaForMaskedLM.from_pretrained(tiny_roberta_mlm)
    assert isinstance(student, RobertaForMaskedLM) and student.config.num_hidden_layers == 2
    # trained: layers moved away from the teacher layers they started as; positions frozen at the teacher's
    assert not torch.equal(student.roberta.encoder.layer[1].output.dense.weight,
                           teacher.roberta.encoder.layer[2].output.dense.weight)
    assert torch.equal(student.roberta.embeddings.position_embeddings.weight,
                       teacher.roberta.embeddings.position_embeddings.weight)


def test_mlm_stage_trains_a_head_for_a_roberta_encoder(compose_cfg, minilm_path, tmp_path):
    tok = AutoTokenizer.from_pretrained(minilm_path)
    torch.manual_seed(0)
    encoder_dir = tmp_path / "roberta_encoder"
    RobertaModel(roberta_config(tok, layers=2)).save_pretrained(encoder_dir)  # an encoder without a masked-LM head
    tok.save_pretrained(encoder_dir)
    corpus = tmp_path / "corpus.txt"
    corpus.write_text("\n\n".join("\n".join(f"The cat number {d} sat on mat {i} ." for i in range(6)) for d in range(30)))
    cfg = compose_cfg("stage=mlm", f"teacher.name_or_path={encoder_dir}", f"stage.corpus.path={corpus}", "logger=csv",
                      "stage.max_steps=4", "stage.batch_size=4", "stage.val_size=8", "stage.val_every_n_steps=2",
                      "stage.max_seq_length=32", "stage.candidate_sentences=0")
    out = run(cfg)["output_dir"]
    mlm = AutoModelForMaskedLM.from_pretrained(out)
    assert isinstance(mlm, RobertaForMaskedLM)
    original = RobertaModel.from_pretrained(encoder_dir)
    for name, weight in original.named_parameters():  # head only: the encoder is unchanged
        if name in mlm.roberta.state_dict():
            assert torch.equal(weight, mlm.roberta.state_dict()[name]), name
    assert mlm.lm_head.bias.abs().sum() > 0


@pytest.mark.parametrize("family", ["electra", "deberta-v2"])
def test_other_families_are_refused_in_one_line(tmp_path, minilm_path, corpus, train_py, family):
    tok = AutoTokenizer.from_pretrained(minilm_path)
    sizes = dict(vocab_size=tok.vocab_size, hidden_size=32, num_hidden_layers=2, num_attention_heads=4,
                 intermediate_size=64, max_position_embeddings=128)
    model = ElectraForMaskedLM(ElectraConfig(embedding_size=32, **sizes)) if family == "electra" else \
        DebertaV2ForMaskedLM(DebertaV2Config(**sizes))
    folder = tmp_path / family
    model.save_pretrained(folder)
    tok.save_pretrained(folder)
    with pytest.raises(ConfigError, match=rf"a '{family}' model; .*camembert, roberta, xlm-roberta"):
        load_mlm_teacher(str(folder))
    assert_one_line(train_py("stage=general", "distill=distilbert", f"distill.teacher={folder}",
                             f"stage.corpus.path={corpus}"), "distill.teacher", "the DistilBERT baseline", family)
