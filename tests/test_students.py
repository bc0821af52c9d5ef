"""Students people have (issue 49): `student.family` (RoBERTa-, ELECTRA- and ModernBERT-shaped students beside BERT's),
and `student.init` as a released checkpoint: a hub name, or a TinyBERT-style folder whose config.json has no
model_type and whose weights hold its general distillation's projections (`fit_dense` / `fit_denses`)."""

from __future__ import annotations

import json
import logging
import os

import pytest
import torch
from transformers import (
    AutoConfig,
    AutoModel,
    AutoModelForSequenceClassification,
    AutoTokenizer,
    BertConfig,
    BertModel,
)

from tests.conftest import assert_nothing_written, assert_one_line
from tinydistill import export
from tinydistill.data.tasks import get_task
from tinydistill.distill.intermediate import IntermediateDistiller, Projections
from tinydistill.errors import ConfigError
from tinydistill.inference import load_classifier
from tinydistill.models.released import checkpoint_config, fit_dense_tensors, resolve_checkpoint
from tinydistill.models.student import FROM_TEACHER, build_student, student_config
from tinydistill.modules.task import TaskDistillModule
from tinydistill.optim import OptimizerSettings
from tinydistill.predict import Inputs, predict
from tinydistill.stages import run

FAMILIES = ("roberta", "electra", "modernbert")
SMALL = {"name": "small", "init": "random", "num_hidden_layers": 2, "hidden_size": 16, "num_attention_heads": 4,
         "intermediate_size": 32}


# ------------------------------------------------------------------ student.family


def test_the_default_family_builds_exactly_the_bert_student_it_always_built(compose_cfg, tiny_bert):
    cfg = compose_cfg("student=demo")
    assert cfg.student.family == "bert"
    teacher = AutoConfig.from_pretrained(tiny_bert)
    config = student_config(cfg.student, teacher)
    # What models/student.py built before student.family existed: BertConfig(teacher's inputs + the group's sizes).
    before = BertConfig(**{k: getattr(teacher, k) for k in FROM_TEACHER},
                        **{k: v for k, v in cfg.student.items() if k not in ("name", "init", "family")})
    assert type(config) is BertConfig and config.to_dict() == before.to_dict()
    built = build_student(cfg.student, teacher, seed=3)
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(3)
        reference = BertModel(before)
    assert type(built) is BertModel
    assert all(torch.equal(a, b) for a, b in zip(built.state_dict().values(), reference.state_dict().values(),
                                                 strict=True))


@pytest.mark.parametrize("family", FAMILIES)
def test_each_family_is_its_own_transformers_architecture_reading_the_teachers_ids(tiny_bert, family):
    teacher = AutoConfig.from_pretrained(tiny_bert)  # BERT: positions from 0, 30522 tokens, pad 0
    model = build_student({**SMALL, "family": family}, teacher, seed=0)
    config = model.config
    assert config.model_type == family and type(model) is AutoModel._model_mapping[type(config)]
    assert (config.vocab_size, config.pad_token_id, config.hidden_size) == (teacher.vocab_size, 0, 16)
    if family == "roberta":  # its embeddings skip pad_token_id + 1 positions
        assert config.max_position_embeddings == teacher.max_position_embeddings + 1
    if family == "electra":
        assert config.embedding_size == 16  # no 128-wide embeddings projected up
    # The teacher's longest input, a pair with segment ids, padded: the student reads it.
    length = teacher.max_position_embeddings
    batch = {"input_ids": torch.randint(5, teacher.vocab_size, (2, length)),
             "attention_mask": torch.ones(2, length, dtype=torch.long),
             "token_type_ids": (torch.arange(length) >= length // 2).long().expand(2, -1)}
    batch["attention_mask"][1, 40:] = 0
    assert torch.isfinite(model(**batch).last_hidden_state).all()


@pytest.mark.parametrize("family", FAMILIES)
def test_task_phase_1_trains_each_familys_encoder_and_not_its_head(tiny_bert, family):
    teacher = AutoModelForSequenceClassification.from_pretrained(tiny_bert, num_labels=2)
    config = student_config({**SMALL, "family": family}, teacher.config)
    config.num_labels = 2
    student = AutoModelForSequenceClassification.from_config(config)
    distiller = IntermediateDistiller.from_config({"weights": {"emb": 1, "att": 1, "hid": 1}}, config, teacher.config)
    module = TaskDistillModule(student, get_task("rte"), "intermediate", OptimizerSettings(lr=1e-3), teacher=teacher,
                               distiller=distiller)
    base = student.base_model_prefix + "."
    trained = {n for n, p in student.named_parameters() if p.requires_grad}
    assert trained == {n for n, _ in student.named_parameters() if n.startswith(base) and ".pooler." not in n}
    assert any(".layer" in n for n in trained) and not any(n.startswith(("classifier", "head")) for n in trained)
    assert module.classifier is student


def test_an_unknown_family_stops_in_one_line_before_anything_is_written(train_py, tmp_path, tiny_bert):
    result = train_py("stage=init_student", f"teacher.name_or_path={tiny_bert}", "student.family=xlnet")
    assert_one_line(result, "student.family='xlnet'", "bert, electra, modernbert, roberta")
    assert_nothing_written(tmp_path)


@pytest.mark.parametrize("family", FAMILIES)
def test_a_family_student_general_distils_task_distils_and_predicts(compose_cfg, tmp_path, tiny_bert, corpus,
                                                                   tiny_teacher, data_dir, family):
    """stage=general (all three intermediate losses), stage=task from it (both phases) and the exported classifier
    answering, for a student of each family taught by a BERT."""
    student = [f"student.family={family}", "student.name=tiny_student", "student.num_hidden_layers=1",
               "student.hidden_size=16", "student.num_attention_heads=4", "student.intermediate_size=32"]
    general = run(compose_cfg("stage=general", f"teacher.name_or_path={tiny_bert}", f"stage.corpus.path={corpus}",
                              "stage.max_seq_length=24", "stage.batch_size=4", "stage.val_size=4", "logger=none",
                              "trainer.fast_dev_run=true", *student))
    assert json.loads(open(os.path.join(general["output_dir"], "config.json")).read())["model_type"] == family
    assert all(torch.isfinite(torch.tensor(v)) for v in general["train_first"].values())
    result = run(compose_cfg(
        "stage=task", "task=rte", f"stage.teacher={tiny_teacher}", f"paths.data_dir={data_dir}", "logger=none",
        "student.init=general", f"stage.general_dir={general['output_dir']}", *student, "stage.batch_size=8",
        "stage.intermediate.max_steps=2", "stage.pred.max_steps=2", "trainer.limit_val_batches=1",
        "stage.measure_latency=false", "stage.allow_weak_teacher=true"))
    assert set(result["intermediate"]["last_losses"]) == {"emb", "att", "hid", "loss"}
    assert result["pred"]["steps"] == 2
    clf = load_classifier(result["output_dir"])
    assert clf.config.model_type == family
    texts = Inputs(["The cat sat.", "It rained."], ["A cat sat.", "The sun shone."])
    answers = predict(clf, texts)
    assert len(answers) == 2 and all(label in clf.label_names and 0.5 <= p <= 1 for label, p in answers)
    # ONNX export, checked against PyTorch on RTE's dev set (export's own check fails beyond --atol), answers the same.
    onnx_dir = export.export_model(result["output_dir"], task="rte", data_dir=str(data_dir),
                                   cache_dir=tmp_path / "export_cache", latency=False)
    onnx = load_classifier(onnx_dir)
    assert onnx.variant == "onnx fp32"
    assert [label for label, _ in predict(onnx, texts)] == [label for label, _ in answers]


# ------------------------------------------------------------------ released checkpoints


def released_tinybert(path, tokenizer_src, fit: str = "fit_denses", fit_size: int = 32, layers: int = 2):
    """A folder as TinyBERT's releases are: a BERT config.json without model_type but with fit_size, a
    pytorch_model.bin whose keys say `bert.` and that holds the projections (`fit_denses.<i>`: one per hidden
    state; `fit_dense`: one shared)."""
    torch.manual_seed(0)
    model = BertModel(BertConfig(vocab_size=AutoTokenizer.from_pretrained(tokenizer_src).vocab_size, hidden_size=16,
                                 num_hidden_layers=layers, num_attention_heads=4, intermediate_size=32,
                                 max_position_embeddings=128))
    state = {f"bert.{k}": v for k, v in model.state_dict().items()}
    names = [f"fit_denses.{i}" for i in range(layers + 1)] if fit == "fit_denses" else ["fit_dense"] if fit else []
    for i, name in enumerate(names):
        state[f"{name}.weight"] = torch.full((fit_size, 16), float(i + 1))
        state[f"{name}.bias"] = torch.full((fit_size,), -float(i + 1))
    path.mkdir()
    torch.save(state, path / "pytorch_model.bin")
    config = model.config.to_dict()
    for key in ("model_type", "architectures", "transformers_version", "dtype", "torch_dtype"):
        config.pop(key, None)
    (path / "config.json").write_text(json.dumps({**config, "fit_size": fit_size}))
    AutoTokenizer.from_pretrained(tokenizer_src).save_pretrained(path)
    return path


def test_a_config_without_model_type_is_read_as_bert_with_one_log_line(tmp_path, minilm_path, caplog):
    folder = released_tinybert(tmp_path / "TinyBERT_General", minilm_path)
    with pytest.raises(ValueError, match="model_type"):
        AutoConfig.from_pretrained(folder)  # what a bare AutoConfig does with it
    with caplog.at_level(logging.INFO, logger="tinydistill.models.released"):
        config = checkpoint_config(str(folder), "student.init")
        assert checkpoint_config(str(folder)).to_dict() == config.to_dict()
    assert type(config) is BertConfig and (config.num_hidden_layers, config.hidden_size) == (2, 16)
    lines = [r.getMessage() for r in caplog.records]
    assert len(lines) == 1 and lines[0].startswith("student.init: config.json has no model_type but BERT's settings "
                                                   "and TinyBERT's fit_size"), lines
    (folder / "config.json").write_text(json.dumps({"hidden_size": 16}))
    with pytest.raises(ConfigError, match=r"has no model_type, and it is not a BERT config either \(it lacks "
                                          r"vocab_size, num_hidden_layers"):
        checkpoint_config(str(folder), "student.init")


@pytest.mark.parametrize(("fit", "mode"), [("fit_denses", "per_layer"), ("fit_dense", "shared")])
def test_released_projections_become_the_projections_of_intermediate_distillation(tmp_path, minilm_path, fit, mode):
    folder = released_tinybert(tmp_path / "released", minilm_path, fit=fit, fit_size=32)
    tensors = fit_dense_tensors(str(folder))
    assert sorted(tensors) == sorted(f"{n}.{p}" for n in ([f"fit_denses.{i}" for i in range(3)]
                                                          if fit == "fit_denses" else ["fit_dense"])
                                     for p in ("weight", "bias"))
    proj, why = Projections.from_fit_denses(tensors, mode, student_layers=2, teacher_hidden=32)
    assert proj is not None and proj.mode == mode and "start the" in why
    x = torch.ones(1, 16)
    # fit_denses.<i> maps hidden state i: weights (i+1), biases -(i+1); so x W + b = 16(i+1) - (i+1) = 15(i+1).
    assert torch.equal(proj.embedding_map(x), torch.full((1, 32), 15.0))
    for m in (1, 2):
        assert torch.equal(proj.hidden_map(x, m), torch.full((1, 32), 15.0 * (m + 1 if mode == "per_layer" else 1)))
    other = "shared" if mode == "per_layer" else "per_layer"
    assert Projections.from_fit_denses(tensors, other, 2, 32)[0] is None
    assert f"set distill.projection={mode}" in Projections.from_fit_denses(tensors, other, 2, 32)[1]
    assert "do not fit the teacher's width 64" in Projections.from_fit_denses(tensors, mode, 2, 64)[1]
    assert Projections.from_fit_denses({}, mode, 2, 32) == (None, "")


def test_a_tinybert_release_through_stage_task_starts_phase_1_from_its_fit_denses(compose_cfg, tmp_path, minilm_path,
                                                                                 tiny_teacher, data_dir, caplog):
    # The tiny teacher is 32 wide: the release's maps (16 -> 32) fit it.
    folder = released_tinybert(tmp_path / "TinyBERT_General_2L_16D", minilm_path, fit="fit_denses", fit_size=32)
    cfg = compose_cfg("stage=task", "task=rte", f"stage.teacher={tiny_teacher}", f"paths.data_dir={data_dir}",
                      "logger=none", f"student.init={folder}", "distill.projection=per_layer", "stage.batch_size=8",
                      "stage.phase=intermediate", "stage.intermediate.max_steps=2", "stage.measure_latency=false",
                      "stage.allow_weak_teacher=true")
    from tinydistill.stages.task import plan
    from tinydistill.stages.task.inputs import load_student

    with caplog.at_level(logging.INFO):
        student, projections = load_student(plan(cfg), AutoModelForSequenceClassification.from_pretrained(tiny_teacher))
    assert student.config.model_type == "bert"
    loaded = torch.load(folder / "pytorch_model.bin", weights_only=True)
    assert torch.equal(student.bert.encoder.layer[1].output.dense.weight,
                       loaded["bert.encoder.layer.1.output.dense.weight"])
    assert projections.mode == "per_layer" and torch.equal(projections.layers[1].weight, loaded["fit_denses.2.weight"])
    assert any("its 3 fit_dense map(s) 16 -> 32 start the per_layer projections" in r.getMessage()
               for r in caplog.records)
    result = run(cfg)
    saved = Projections.load(os.path.join(cfg.stage.output_root, result["run"], f"seed{cfg.seed}", "intermediate"))
    assert saved.mode == "per_layer" and len(saved.layers) == 2
    assert result["intermediate"]["projection"] == "per_layer"


def test_student_init_takes_a_hub_name_and_stops_in_one_line_when_it_cannot_be_reached(train_py, tmp_path, tiny_bert,
                                                                                     tiny_teacher, data_dir):
    assert resolve_checkpoint(str(tiny_bert), "student.init") == str(tiny_bert)  # a folder is used as it is
    with pytest.raises(ConfigError, match=r"student.init: model folder '/no/such/student' does not exist"):
        resolve_checkpoint("/no/such/student", "student.init")
    # The tests run offline (HF_HUB_OFFLINE=1): the real hub code answers, and the run stops before any compute.
    assert os.environ.get("HF_HUB_OFFLINE") == "1"
    result = train_py("stage=task", "task=rte", f"stage.teacher={tiny_teacher}", f"paths.data_dir={data_dir}",
                      "student.init=huawei-noah/TinyBERT_General_4L_312D")
    assert_one_line(result, "student.init=huawei-noah/TinyBERT_General_4L_312D: no model folder of that name, and "
                            "the Hugging Face hub cannot give it", "download it once with network access")
    assert_nothing_written(tmp_path)


def test_the_distilbert_baseline_refuses_another_family_in_one_line(compose_cfg, tiny_bert, corpus):
    cfg = compose_cfg("stage=general", "distill=distilbert", f"distill.teacher={tiny_bert}",
                      f"stage.corpus.path={corpus}", "student.family=roberta")
    with pytest.raises(ConfigError, match=r"^student.family='roberta': the DistilBERT baseline \(distill=distilbert\) "
                                          r"builds its student from the teacher's own layers, in the teacher's family"):
        run(cfg)


def test_a_tinybert_release_fine_tunes_as_the_no_distillation_baseline(compose_cfg, tmp_path, minilm_path, data_dir):
    folder = released_tinybert(tmp_path / "TinyBERT_General_2L_16D", minilm_path)
    result = run(compose_cfg("stage=finetune", "task=rte", f"stage.model={folder}", f"paths.data_dir={data_dir}",
                             "logger=none", "stage.epochs=1", "trainer.limit_train_batches=2",
                             "trainer.limit_val_batches=1", "stage.measure_latency=false"))
    clf = load_classifier(result["output_dir"])
    assert clf.config.model_type == "bert" and clf.config.num_hidden_layers == 2
    # Its encoder started from the release (the classifier head was new): two small steps away from it.
    loaded = torch.load(folder / "pytorch_model.bin", weights_only=True)
    torch.testing.assert_close(clf.model.bert.encoder.layer[0].attention.self.query.weight,
                               loaded["bert.encoder.layer.0.attention.self.query.weight"], rtol=0, atol=1e-3)
