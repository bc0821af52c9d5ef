"""Teachers of other families (DeBERTa-v2/v3, ModernBERT, RoBERTa, ELECTRA, XLM-R) in stage=task phase 1, with
MiniLM-v2's relation loss (distill=minilm) and with TinyBERT's losses where they apply; tiny random models on the
student's (MiniLM's bert-base-uncased) tokenizer, fine-tuned briefly by stage=finetune."""

import json
import math
from pathlib import Path

import pytest
import torch
from omegaconf import OmegaConf
from transformers import AutoConfig, AutoModelForSequenceClassification, AutoTokenizer

from tests.conftest import TINY_STUDENT, assert_one_line, compose_config
from tinydistill.distill.methods import distiller_from_config
from tinydistill.models.capture import forward_with_capture
from tinydistill.modules.task import TaskDistillModule
from tinydistill.optim import OptimizerSettings
from tinydistill.stages import run
from tinydistill.stages.task import plan
from tinydistill.stages.task.inputs import load_student

SIZES = dict(hidden_size=32, num_hidden_layers=2, num_attention_heads=4, intermediate_size=64)
#: Each family's tiny config beside SIZES, on bert-base-uncased's ids ([PAD] 0, [CLS] 101, [SEP] 102).
FAMILIES = {
    "deberta-v2": dict(max_position_embeddings=128, type_vocab_size=0, relative_attention=True, position_buckets=16,
                       max_relative_positions=32, pos_att_type=["p2c", "c2p"], position_biased_input=False),
    "modernbert": dict(max_position_embeddings=128, pad_token_id=0, bos_token_id=101,
                       eos_token_id=102, cls_token_id=101, sep_token_id=102, local_attention=8,
                       global_attn_every_n_layers=2),  # layer 1 global, layer 2 sliding-window
    "roberta": dict(max_position_embeddings=130, pad_token_id=0),  # positions start after the padding index
    "xlm-roberta": dict(max_position_embeddings=130, pad_token_id=0),
    "electra": dict(max_position_embeddings=128, embedding_size=32),
}
PHASE1 = ["stage.phase=intermediate", "stage.intermediate.max_steps=4", "stage.batch_size=8",
          "trainer.limit_val_batches=1", "stage.allow_weak_teacher=true", "student.init=random", *TINY_STUDENT]
MINILM = ["distill=minilm", "distill.relation_heads=4"]  # 4 divides the student's width 16 and the teachers' 32


@pytest.fixture(scope="module", params=sorted(FAMILIES))
def family_teacher(request, tmp_path_factory, minilm_path, data_dir) -> tuple[str, str]:
    """(model type, folder of a tiny classifier of that family fine-tuned on RTE for 3 batches)."""
    kind = request.param
    root = tmp_path_factory.mktemp(kind)
    tokenizer = AutoTokenizer.from_pretrained(minilm_path)
    config = AutoConfig.for_model(kind, vocab_size=tokenizer.vocab_size, **{**SIZES, **FAMILIES[kind]})
    torch.manual_seed(0)
    AutoModelForSequenceClassification.from_config(config).save_pretrained(root / "init")
    tokenizer.save_pretrained(root / "init")
    cfg = compose_config(root, "stage=finetune", "task=rte", f"stage.model={root / 'init'}", f"paths.data_dir={data_dir}",
                         "logger=none", "stage.epochs=1", "trainer.limit_train_batches=3", "trainer.limit_val_batches=1",
                         "stage.measure_latency=false")
    return kind, run(cfg)["output_dir"]


def phase1(tmp_path, teacher: str, data_dir, *extra: str) -> dict:
    cfg = compose_config(tmp_path, "stage=task", "task=rte", f"stage.teacher={teacher}", f"paths.data_dir={data_dir}",
                         "logger=none", *PHASE1, *extra)
    return run(cfg)["intermediate"]


def test_minilm_phase1_runs_for_every_family(tmp_path, family_teacher, data_dir):
    kind, teacher = family_teacher
    summary = phase1(tmp_path, teacher, data_dir, *MINILM)
    assert summary["method"] == "minilm" and summary["steps"] == 4
    assert summary["teacher_layer"] == 1 and summary["student_layer"] == 2  # upper_middle of 2 layers: 1
    assert set(summary["last_losses"]) == {"rel_q", "rel_k", "rel_v", "loss"}
    assert all(math.isfinite(v) and v >= 0 for v in summary["last_losses"].values())
    saved = json.loads((Path(tmp_path) / "artifacts").glob("task/rte/*/seed42/intermediate/phase.json").__next__()
                       .read_text())
    assert saved["relation_heads"] == 4


def test_tinybert_phase1_where_its_losses_apply(tmp_path, family_teacher, data_dir):
    """Equal head counts and capturable scores: all three terms; DeBERTa: embeddings and hidden states only."""
    kind, teacher = family_teacher
    extra = ["ablation=no_attn"] if kind == "deberta-v2" else []
    summary = phase1(tmp_path, teacher, data_dir, *extra)
    terms = {"emb", "hid", "loss"} | (set() if kind == "deberta-v2" else {"att"})
    assert set(summary["last_losses"]) == terms
    assert all(math.isfinite(v) for v in summary["last_losses"].values())


@pytest.mark.parametrize("method", ["minilm", "tinybert"])
def test_loss_falls_on_a_repeated_batch_and_reaches_the_student(tmp_path, family_teacher, data_dir, method):
    """The student, teacher and distiller stage=task builds; Adam on one RTE batch: finite, falling, gradients."""
    kind, teacher_dir = family_teacher
    extra = MINILM if method == "minilm" else (["ablation=no_attn"] if kind == "deberta-v2" else [])
    cfg = compose_config(tmp_path, "stage=task", "task=rte", f"stage.teacher={teacher_dir}",
                         f"paths.data_dir={data_dir}", *PHASE1, *extra)
    p = plan(cfg)
    teacher = AutoModelForSequenceClassification.from_pretrained(teacher_dir).eval()
    student, _ = load_student(p, teacher)
    distiller = distiller_from_config(p.distill, student.config, teacher.config)
    tokenizer = AutoTokenizer.from_pretrained(teacher_dir)
    batch = dict(tokenizer(["a man is playing a guitar on stage .", "the cat sat"],
                           ["someone plays music .", "a cat was sitting on the mat today"], padding=True,
                           return_tensors="pt"))
    with torch.no_grad():
        target = forward_with_capture(teacher, batch, distiller.want_attention)
    # The phase-1 module decides what trains: the encoder, less what the distiller's loss does not reach.
    module = TaskDistillModule(student, p.task, "intermediate", OptimizerSettings(lr=3e-3), teacher=teacher,
                               distiller=distiller)
    trained = {n: q for n, q in [*student.named_parameters(), *distiller.named_parameters()] if q.requires_grad}
    opt = torch.optim.Adam(trained.values(), lr=3e-3)
    losses = []
    for step in range(12):
        loss = distiller(forward_with_capture(module.classifier, batch, distiller.want_attention), target)["loss"]
        opt.zero_grad()
        loss.backward()
        if step == 0:  # every trainable parameter gets a gradient (as DDP demands), the embeddings included
            assert [n for n, q in trained.items() if q.grad is None] == []
            assert student.bert.embeddings.word_embeddings.weight.grad.abs().sum() > 0
        opt.step()
        losses.append(loss.item())
    last = len(student.bert.encoder.layer) - 1
    feed_forward = student.bert.encoder.layer[last].output.dense.weight
    assert feed_forward.requires_grad == (method == "tinybert")  # the relation loss reads the last layer's q, k, v
    assert all(math.isfinite(x) for x in losses) and losses[-1] < 0.8 * losses[0], (kind, method, losses)


@pytest.mark.parametrize("family_teacher", ["deberta-v2"], indirect=True)
def test_deberta_with_tinybert_attention_is_one_line_suggesting_minilm(tmp_path, train_py, family_teacher, data_dir):
    _, teacher = family_teacher
    assert_one_line(train_py("stage=task", "task=rte", f"stage.teacher={teacher}", f"paths.data_dir={data_dir}",
                             *PHASE1),
                    "distill.weights.att > 0, but the teacher is a 'deberta-v2' model", "use distill=minilm")


def test_minilm_composes_with_tinybert_task_settings(tmp_path):
    cfg = compose_config(tmp_path, "stage=task", "distill=minilm")
    d = OmegaConf.to_container(cfg.distill, resolve=True)
    assert d["name"] == "minilm" and d["weights"]["rel"] == 1.0 and d["weights"]["pred"] == 1.0
    assert {d["weights"][t] for t in ("emb", "att", "hid")} == {0.0}
    assert d["temperature"] == 1.0 and d["teacher_mode"] == "eval"  # TinyBERT's shared settings, inherited
    assert cfg.stage.intermediate.lr == compose_config(tmp_path, "stage=task").stage.intermediate.lr  # the stage's


@pytest.mark.parametrize("family_teacher", ["deberta-v2", "modernbert"], indirect=True)
def test_both_phases_with_the_families_tinybert_cannot_fully_read(tmp_path, family_teacher, data_dir):
    """Phase 2 (the teacher's logits) and the latency comparison run on these teachers too."""
    kind, teacher = family_teacher
    cfg = compose_config(tmp_path, "stage=task", "task=rte", f"stage.teacher={teacher}", f"paths.data_dir={data_dir}",
                         "logger=none", *[o for o in PHASE1 if o != "stage.phase=intermediate"], *MINILM,
                         "stage.pred.max_steps=2", "stage.pred.teacher_logits=seen", "stage.latency_repeats=1",
                         "stage.latency_max_examples=16", "stage.latency_batch1=false")
    metrics = json.loads((Path(run(cfg)["output_dir"]) / "metrics.json").read_text())
    assert metrics["intermediate"]["method"] == "minilm" and metrics["pred"]["steps"] == 2
    assert 0.0 <= metrics["dev"]["accuracy"] <= 1.0 and metrics["latency"]["teacher"]["examples"] == 16


@pytest.mark.parametrize("family_teacher", ["deberta-v2", "modernbert"], indirect=True)
def test_general_distillation_from_these_teachers(tmp_path, family_teacher, corpus):
    """stage=general reads the encoder of the family's checkpoint: the relation loss (any family), TinyBERT's
    embedding and hidden-state losses across widths (a projection 16 -> 32)."""
    kind, teacher = family_teacher
    common = ["stage=general", f"teacher.name_or_path={teacher}", f"stage.corpus.path={corpus}", "logger=none",
              "student.name=tiny", *TINY_STUDENT, "stage.max_seq_length=24", "stage.batch_size=4", "stage.val_size=4",
              "stage.max_steps=2"]
    relation = run(compose_config(tmp_path / "minilm", *common, *MINILM))
    assert set(relation["val"]) == {"rel_q", "rel_k", "rel_v", "loss"}
    layers = run(compose_config(tmp_path / "tinybert", *common, "ablation=no_attn"))
    assert set(layers["val"]) == {"emb", "hid", "loss"} and all(math.isfinite(v) for v in layers["val"].values())
