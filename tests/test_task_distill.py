"""stage=task: phases, cached teacher logits, ablations, the multirun report (tiny random BERTs)."""

import csv
import json
import os
import subprocess
import sys

import pytest
import numpy as np
import torch
from omegaconf import OmegaConf
from safetensors.torch import load_file
from transformers import AutoModelForSequenceClassification, AutoTokenizer

from tests.conftest import ROOT, TINY_STUDENT, compose_config
from tinydistill.optim import OptimizerSettings
from tinydistill.data.glue import TaskDataModule
from tinydistill.data.tasks import get_task
from tinydistill.distill.intermediate import IntermediateDistiller
from tinydistill.distill.prediction import cached_teacher_logits, compute_teacher_logits, prediction_loss
from tinydistill.modules.task import TaskDistillModule
from tinydistill.report import load_results, report_rows, write_report
from tinydistill.stages import run


def task_overrides(tiny_teacher, data_dir, *extra):
    return [
        "stage=task", "task=rte", f"stage.teacher={tiny_teacher}", f"paths.data_dir={data_dir}", "logger=csv",
        "student.init=random", *TINY_STUDENT, "stage.batch_size=8",
        "stage.intermediate.max_steps=3", "stage.pred.max_steps=3", "trainer.limit_val_batches=1",
        "stage.latency_repeats=1", "stage.latency_max_examples=32",
        # The tiny teacher is barely trained (3 batches): no better than the constant predictor on RTE dev.
        "stage.allow_weak_teacher=true", *extra,
    ]


def make_module(phase, tiny_teacher, cfg, teacher_logits=None):
    task = get_task("rte")
    teacher = AutoModelForSequenceClassification.from_pretrained(tiny_teacher)
    from tinydistill.stages.task import plan
    from tinydistill.stages.task.inputs import load_student

    student, _ = load_student(plan(cfg), teacher)
    distiller = IntermediateDistiller.from_config(
        OmegaConf.to_container(cfg.distill, resolve=True), student.config, teacher.config
    )
    return TaskDistillModule(
        student, task, phase, OptimizerSettings(lr=1e-3), teacher=teacher, distiller=distiller, teacher_logits=teacher_logits
    )


def trainable(module):
    return {n for n, p in module.classifier.named_parameters() if p.requires_grad}


def test_phase_switching_trains_the_right_parameters(compose_cfg, tiny_teacher, data_dir):
    cfg = compose_cfg(*task_overrides(tiny_teacher, data_dir))
    inter = make_module("intermediate", tiny_teacher, cfg)
    names = trainable(inter)
    assert names and all(".embeddings." in n or ".encoder." in n for n in names)
    assert not any(n.startswith("classifier.") or ".pooler." in n for n in names)
    pred = make_module("pred", tiny_teacher, cfg, teacher_logits=torch.zeros(10, 2))
    assert trainable(pred) == {n for n, _ in pred.classifier.named_parameters()}
    assert pred.distiller is None  # projections are not trained in phase 2
    # The teacher is never trained, never in training mode, nor saved in checkpoints.
    assert all(not p.requires_grad for p in inter.teacher.parameters())
    inter.train()
    assert inter.classifier.training and not inter.teacher.training
    checkpoint = {"state_dict": inter.state_dict()}
    inter.on_save_checkpoint(checkpoint)
    assert checkpoint["state_dict"] and not any(k.startswith("teacher.") for k in checkpoint["state_dict"])
    gold = TaskDistillModule(pred.classifier, get_task("rte"), "gold", OptimizerSettings(lr=1e-3))  # no teacher needed
    assert gold.teacher is None and gold.train() is gold and gold.classifier.training


@pytest.mark.parametrize("dtype", ["float32", "bfloat16"])
def test_intermediate_phase_leaves_classifier_unchanged(compose_cfg, tiny_teacher, data_dir, dtype):
    cfg = compose_cfg(*task_overrides(tiny_teacher, data_dir, "stage.phase=intermediate",
                                      f"distill.teacher_dtype={dtype}"))
    result = run(cfg)
    assert all(torch.isfinite(torch.tensor(v)) for v in result["intermediate"]["last_losses"].values())
    inter = os.path.join(cfg.stage.output_root, result["run"], f"seed{cfg.seed}", "intermediate")
    state = load_file(os.path.join(inter, "model.safetensors"))
    assert {"projections.json", "projections.safetensors", "phase.json"} <= set(os.listdir(inter))
    # Same seed, same random init: the head equals a freshly built student's head, the encoder moved.
    from tinydistill.stages.task import plan
    from tinydistill.stages.task.inputs import load_student

    fresh, _ = load_student(plan(cfg), AutoModelForSequenceClassification.from_pretrained(tiny_teacher))
    assert torch.equal(state["classifier.weight"], fresh.classifier.weight)
    assert not torch.equal(state["bert.encoder.layer.0.attention.self.query.weight"],
                           fresh.bert.encoder.layer[0].attention.self.query.weight)
    assert result["intermediate"]["steps"] == 3
    assert set(result["intermediate"]["last_losses"]) == {"emb", "att", "hid", "loss"}


def rte_rows(tiny_teacher, data_dir, tmp_path, n: int):
    """The tiny teacher (eval mode), its tokenizer and the first `n` indexed RTE training rows."""
    tok = AutoTokenizer.from_pretrained(tiny_teacher)
    teacher = AutoModelForSequenceClassification.from_pretrained(tiny_teacher).eval()
    dm = TaskDataModule("rte", tok, 128, str(data_dir), str(tmp_path / "cache"), with_index=True)
    dm.setup()
    return tok, teacher, dm.splits["train"].select(range(n))


def test_cached_teacher_logits_equal_fresh_ones(tmp_path, tiny_teacher, data_dir):
    tok, teacher, ds = rte_rows(tiny_teacher, data_dir, tmp_path, 40)
    # A copy: the returned tensor maps the file, which this test then overwrites in place (the toolkit never does).
    logits = cached_teacher_logits(teacher, tiny_teacher, ds, tok, tmp_path / "cache", batch_size=16).clone()
    with torch.no_grad():
        for i in [0, 7, 39]:
            ex = ds[i]
            fresh = teacher(input_ids=torch.tensor([ex["input_ids"]]), token_type_ids=torch.tensor([ex["token_type_ids"]])).logits[0]
            assert torch.allclose(logits[ex["idx"]], fresh, atol=1e-5)
    files = list((tmp_path / "cache" / "teacher_logits").glob("*.npy"))
    assert len(files) == 1
    # A second call reads the file instead of running the teacher.
    # (replaced as tinydistill writes files, a new file renamed over the old: `logits` maps the old one)
    np.save(files[0].with_suffix(".tmp.npy"), torch.full_like(logits, 7.0).numpy())
    os.replace(files[0].with_suffix(".tmp.npy"), files[0])
    again = cached_teacher_logits(teacher, tiny_teacher, ds, tok, tmp_path / "cache", batch_size=16)
    assert torch.equal(again, torch.full_like(logits, 7.0))
    assert torch.allclose(compute_teacher_logits(teacher, ds, tok, batch_size=7), logits, atol=1e-5)


def test_teacher_logit_cache_removes_stale_temporaries_of_its_key(tmp_path, tiny_teacher, data_dir):
    from tinydistill.atomic import host_tag

    tok, teacher, ds = rte_rows(tiny_teacher, data_dir, tmp_path, 8)
    cached_teacher_logits(teacher, tiny_teacher, ds, tok, tmp_path / "cache", batch_size=8)
    folder = tmp_path / "cache" / "teacher_logits"
    (cached,) = folder.iterdir()
    cached.unlink()  # the next call writes again
    exited = subprocess.Popen([sys.executable, "-c", "pass"])  # a writer killed mid-write: its pid is gone
    exited.wait()
    live = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(60)"])  # a concurrent writer
    host, gone, key = host_tag(), exited.pid, cached.name
    try:
        names = {
            f"{key}.tmp-{gone}": False,  # what a killed writer of the previous version leaves
            f"{key}.tmp-{host}-{gone}-0a1b2c3d": False,  # ... and of this one
            f"{key}.tmp-{live.pid}": True,
            f"{key}.tmp-{host}-{live.pid}-0a1b2c3d": True,
            f"{key}.tmp-otherhost-{gone}-0a1b2c3d": True,  # another machine's writer may be alive
            f"0123456789abcdef.npy.tmp-{gone}": True,  # another key: not this write's business
        }
        for name in names:
            (folder / name).write_bytes(b"partial")
        logits = cached_teacher_logits(teacher, tiny_teacher, ds, tok, tmp_path / "cache", batch_size=8)
        assert logits.shape[0] == 8 and cached.is_file()
        kept = {p.name for p in folder.iterdir()}
        assert kept == {key} | {name for name, keep in names.items() if keep}
    finally:
        live.kill()
        live.wait()


def test_prediction_loss_soft_ce_and_regression_targets():
    s = torch.tensor([[1.0, 0.0], [0.0, 2.0]])
    t = torch.tensor([[0.0, 0.0], [3.0, 0.0]])
    # reference soft CE: mean over all elements of -softmax(t) * log_softmax(s)
    ls = torch.log_softmax(s, -1)
    expected = (-(torch.tensor([[0.5, 0.5], [0.952574, 0.047426]]) * ls)).mean()
    assert prediction_loss(s, t, None, get_task("mrpc")).item() == pytest.approx(expected.item(), abs=1e-5)
    sr, tr, gold = torch.tensor([[1.0], [3.0]]), torch.tensor([[2.0], [3.0]]), torch.tensor([4.0, 3.0])
    assert prediction_loss(sr, tr, gold, get_task("stsb"), regression_target="teacher").item() == pytest.approx(0.5)
    assert prediction_loss(sr, tr, gold, get_task("stsb"), regression_target="gold").item() == pytest.approx(4.5)


@pytest.mark.parametrize(
    "ablation, terms, pred",
    [
        ("none", ("emb", "att", "hid"), "distill"),
        ("no_trm", ("emb",), "distill"),
        ("no_emb", ("att", "hid"), "distill"),
        ("no_attn", ("emb", "hid"), "distill"),
        ("no_hidn", ("emb", "att"), "distill"),
        ("no_pred", ("emb", "att", "hid"), "gold"),
    ],
)
def test_each_ablation_turns_the_right_losses_off(compose_cfg, tiny_bert, ablation, terms, pred):
    from transformers import BertConfig

    cfg = compose_cfg("stage=task", f"ablation={ablation}", *TINY_STUDENT)
    teacher_config = BertConfig.from_pretrained(tiny_bert)
    from tinydistill.models.student import student_config

    distiller = IntermediateDistiller.from_config(
        OmegaConf.to_container(cfg.distill, resolve=True), student_config(cfg.student, teacher_config), teacher_config
    )
    assert distiller.active_terms == terms
    assert cfg.ablation.pred == pred
    assert (distiller.want_attention is None) == ("att" not in terms)


def test_no_pred_trains_on_gold_labels_of_the_original_set(compose_cfg, tiny_teacher, data_dir):
    cfg = compose_cfg(*task_overrides(tiny_teacher, data_dir, "ablation=no_pred"))
    result = run(cfg)
    assert result["pred"]["phase"] == "gold"
    # pred.max_steps=3 ends mid-epoch: the dev evaluation at the last step still picks a checkpoint.
    assert result["pred"]["steps"] == 3 and "best-epoch=0-step=3" in result["pred"]["best_checkpoint"]
    assert result["run"] == "no_pred-noaug-init_random"
    saved = json.loads(open(os.path.join(result["output_dir"], "metrics.json")).read())
    assert saved["dev"] == result["dev"] and 0 <= saved["dev"]["accuracy"] <= 1
    assert saved["retention"]["accuracy"] == pytest.approx(saved["dev"]["accuracy"] / saved["teacher"]["dev"]["accuracy"])
    model = AutoModelForSequenceClassification.from_pretrained(result["output_dir"])
    assert model.config.num_hidden_layers == 2 and model.config.hidden_size == 16
    assert not any(f.startswith("projections") for f in os.listdir(result["output_dir"]))


@pytest.mark.parametrize("precision", ["trainer.precision", "stage.intermediate.precision"])
def test_bfloat16_speed_settings_run_both_phases_and_save_a_float32_student(tmp_path, tiny_teacher, data_dir,
                                                                           precision):
    """The documented speed settings (bfloat16 teacher, bf16-mixed student with the trainer's clipping), in both
    phases or in phase 1 only, train both phases and save a float32 student with finite weights."""
    cfg = compose_config(tmp_path, *task_overrides(tiny_teacher, data_dir, "distill.teacher_dtype=bfloat16",
                                                   f"{precision}=bf16-mixed", "stage.latency_batch1=false"))
    out = run(cfg)
    assert out["intermediate"]["steps"] == 3 and out["pred"]["steps"] == 3
    # the run's settings beside its result and its log folder's result.json, interpolations resolved
    for folder in (out["output_dir"], cfg.paths.output_dir):
        saved = OmegaConf.load(os.path.join(folder, "run_config.yaml"))
        assert saved.distill.teacher_dtype == "bfloat16" and OmegaConf.select(saved, precision) == "bf16-mixed"
        assert saved.stage.intermediate.lr == cfg.stage.intermediate.lr  # a number, not ${stage.intermediate.lr}
    weights = load_file(os.path.join(out["output_dir"], "model.safetensors"))
    assert {t.dtype for t in weights.values()} == {torch.float32}
    assert all(torch.isfinite(t).all() for t in weights.values())


def test_missing_teacher_is_a_clear_error(compose_cfg, tmp_path, data_dir):
    from tinydistill.errors import ConfigError

    cfg = compose_cfg("stage=task", f"stage.teacher={tmp_path / 'nothing'}", f"paths.data_dir={data_dir}")
    with pytest.raises(ConfigError, match="run `python train.py stage=finetune task=mrpc` first"):
        run(cfg)


def test_multirun_of_two_ablations_writes_a_report(tmp_path, tiny_teacher, data_dir):
    r = subprocess.run(
        [sys.executable, "train.py", "-m", *task_overrides(tiny_teacher, data_dir, "ablation=none,no_emb"),
         f"paths.artifacts_dir={tmp_path}", "logger=none", f"hydra.sweep.dir={tmp_path / 'sweep'}"],
        cwd=ROOT, capture_output=True, text=True, timeout=900,
        env={**os.environ, "WANDB_SILENT": "true"},
    )
    assert r.returncode == 0, r.stderr[-3000:]
    report = (tmp_path / "sweep" / "report.md").read_text()
    rows = [line for line in report.splitlines() if line.startswith("| rte |")]
    assert len(rows) == 4 and "| rte | constant predictor (entailment) |" in rows[0]
    assert rows[1].startswith("| rte | teacher (")
    assert any("| none-noaug-init_random |" in row for row in rows)
    assert any("| no_emb-noaug-init_random |" in row for row in rows)
    assert (tmp_path / "sweep" / "report.png").stat().st_size > 1000


def test_seeds_sit_side_by_side_and_the_nodistill_baseline_matches_their_steps(tmp_path, tiny_teacher, tiny_bert, data_dir):
    """Two seeds of one run write seed<N>/ folders; experiment=nodistill fine-tunes on gold labels for as many
    steps as the distilled run of its seed took; the report aggregates each pair of seeds into one row."""

    results = {}
    for seed in (1, 2):
        # Seed 1 evaluates after each prediction step (3 evaluations), seed 2 once at the end.
        every = ["stage.pred.val_every_n_steps=1"] if seed == 1 else []
        cfg = compose_config(tmp_path, *task_overrides(tiny_teacher, data_dir, f"seed={seed}", *every))
        cfg.paths.output_dir = str(tmp_path / "logs" / f"task{seed}")
        results[seed] = run(cfg)
        with open(tmp_path / "logs" / f"task{seed}" / "csv" / "version_1" / "metrics.csv") as f:
            logged = sum(1 for row in csv.DictReader(f) if row.get("val/accuracy"))
        # The log also holds the final evaluation of the best checkpoint, which is no training-time evaluation.
        assert results[seed]["pred"]["evaluations"] == logged - 1 == (3 if seed == 1 else 1)
        assert results[seed]["output_dir"].endswith(os.path.join("none-noaug-init_random", f"seed{seed}"))
        saved = json.loads(open(os.path.join(results[seed]["output_dir"], "metrics.json")).read())
        assert saved["constant"]["prediction"] == "entailment" and saved["constant"]["dev"]["accuracy"] > 0.5
        assert saved["latency_batch1"]["student"]["ms_per_example"] > 0 and saved["speedup_batch1"] > 0
    baseline = {}
    for seed in (1, 2):
        cfg = compose_config(
            tmp_path, "stage=finetune", "experiment=nodistill", "task=rte", f"seed={seed}", f"stage.model={tiny_bert}",
            f"stage.compare_to={tiny_teacher}", f"paths.data_dir={data_dir}", "logger=none",
            f"stage.match_steps_of={results[seed]['output_dir']}", "stage.batch_size=8", "trainer.limit_val_batches=1",
            "stage.latency_repeats=1", "stage.latency_batch1=false")
        cfg.paths.output_dir = str(tmp_path / "logs" / f"nodistill{seed}")
        baseline[seed] = run(cfg)
        assert baseline[seed]["steps"] == results[seed]["intermediate"]["steps"] + results[seed]["pred"]["steps"] == 6
        # stage.evals=matched: as many dev evaluations as the distilled run's prediction phase, spread evenly.
        assert baseline[seed]["evaluations"] == results[seed]["pred"]["evaluations"]
        assert baseline[seed]["output_dir"].endswith(os.path.join("nodistill", "rte", "demo_3l_192", f"seed{seed}"))
        assert "gap_closed" in baseline[seed] or baseline[seed]["teacher"]["dev"]["accuracy"] <= 0.5271
    rows = report_rows(load_results(tmp_path / "logs"))
    runs = {r["run"]: r for r in rows if r["kind"] == "run"}
    assert set(runs) == {"none-noaug-init_random", "nodistill-demo_3l_192"}
    assert all(r["n"] == 2 and sorted(r["seeds"]) == [1, 2] for r in runs.values())
    # Every stage run leaves its wall time beside its result; the report lists them, the teacher's included.
    folders = [results[s]["output_dir"] for s in (1, 2)] + [baseline[s]["output_dir"] for s in (1, 2)]
    for folder in folders:
        timing = json.loads(open(os.path.join(folder, "timing.json")).read())
        assert timing["stage"] in ("task", "finetune") and timing["wall_seconds"] > 0 and not timing["resumed"]
        assert timing["cpu_seconds"] > 0 and timing["started"] <= timing["finished"]
    text = write_report(tmp_path / "artifacts", out=tmp_path / "report").read_text()
    table = text.split("## Wall times")[1]
    assert all(f"`{folder}`" in table for folder in folders) and f"`{tiny_teacher}`" in table
    assert "| alone | CPU |" in table and f"| {timing['cpu']} |" in table  # which machine the times are from


def test_nodistill_needs_the_distilled_run(compose_cfg, tmp_path, tiny_bert, data_dir):
    from tinydistill.errors import ConfigError

    cfg = compose_cfg("stage=finetune", "experiment=nodistill", "task=rte", f"stage.model={tiny_bert}",
                      "stage.compare_to=null", f"paths.data_dir={data_dir}")
    with pytest.raises(ConfigError, match=r"stage.match_steps_of=.*none/seed42: no metrics.json"):
        run(cfg)


@pytest.mark.parametrize("overrides,error", [
    (["stage.evals=matched"], r"stage.evals=matched: .*metrics.json does not record .* stage.evals=3"),
    (["stage.evals=matched", "stage.match_steps_of=null"], r"stage.evals=matched counts .* set stage.match_steps_of"),
    (["stage.evals=0"], r"stage.evals=0: expected a whole number"),
    (["stage.evals=7"], r"stage.evals=7: more dev evaluations than the 6 training steps"),
    (["stage.evals=2", "stage.match_steps_of=null"], r"stage.evals=2 spreads evaluations over a step budget"),
])
def test_baseline_evaluation_count_errors(compose_cfg, tmp_path, tiny_bert, data_dir, overrides, error):
    """stage.evals names what is wrong before anything loads; `matched` needs a distilled run that counted its
    evaluations (runs older than pred.evaluations did not)."""
    from tinydistill.errors import ConfigError

    old_run = tmp_path / "task" / "seed42"
    old_run.mkdir(parents=True)
    (old_run / "metrics.json").write_text(json.dumps({"intermediate": {"steps": 3}, "pred": {"steps": 3}}))
    cfg = compose_cfg("stage=finetune", "experiment=nodistill", "task=rte", f"stage.model={tiny_bert}",
                      "stage.compare_to=null", f"paths.data_dir={data_dir}", f"stage.match_steps_of={old_run}",
                      *overrides)
    with pytest.raises(ConfigError, match=error):
        run(cfg)


def test_step_budget_replaces_the_phase_epochs(compose_cfg, tiny_teacher, data_dir):
    """As in stage=general, mlm and finetune: `max_steps` > 0 trains that many steps even past the phase's epochs
    (Lightning alone would stop at whichever of the two comes first)."""
    from tinydistill.stages.task import plan
    from tinydistill.stages.task.phase1 import phase_trainer

    cfg = compose_cfg(*task_overrides(tiny_teacher, data_dir, "stage.intermediate.epochs=1",
                                      "stage.intermediate.max_steps=500", "stage.pred.max_steps=-1"))
    p = plan(cfg)
    budget = phase_trainer(p.ctx.trainer, p.phase1)
    assert budget.max_steps == 500 and budget.max_epochs == -1
    epochs = phase_trainer(p.ctx.trainer, p.phase2)
    assert epochs.max_steps == -1 and epochs.max_epochs == cfg.stage.pred.epochs


def test_a_phase_precision_replaces_the_trainers_for_that_phase_only(compose_cfg, tiny_teacher, data_dir):
    """stage.intermediate.precision=bf16-mixed: phase 1 under CPU autocast, phase 2 at trainer.precision."""
    from lightning.pytorch.plugins.precision import MixedPrecision

    from tinydistill.stages.task import plan
    from tinydistill.stages.task.phase1 import phase_trainer

    cfg = compose_cfg(*task_overrides(tiny_teacher, data_dir, "stage.intermediate.precision=bf16-mixed"))
    p = plan(cfg)
    phase1, phase2 = phase_trainer(p.ctx.trainer, p.phase1), phase_trainer(p.ctx.trainer, p.phase2)
    assert isinstance(phase1.precision_plugin, MixedPrecision) and phase1.precision_plugin.precision == "bf16-mixed"
    assert not isinstance(phase2.precision_plugin, MixedPrecision) and phase2.precision_plugin.precision == "32-true"
    both = plan(compose_cfg(*task_overrides(tiny_teacher, data_dir, "trainer.precision=bf16-mixed")))
    assert phase_trainer(both.ctx.trainer, both.phase2).precision_plugin.precision == "bf16-mixed"


@pytest.mark.parametrize("native", [True, False])
def test_a_float32_phase_1_on_a_cpu_with_native_bfloat16_hints_at_the_faster_setting(compose_cfg, tiny_teacher,
                                                                                      data_dir, monkeypatch, native):
    """The hint names both overrides, only where bfloat16 is native, and not once the run already uses either."""
    import tinydistill.stages.task.phase1 as task_stage
    from tinydistill.stages.task import plan

    def hint_of(cfg):
        p = plan(cfg)
        return task_stage.bf16_hint(p.accelerator, p.teacher.dtype, p.phase1.precision)

    monkeypatch.setattr(task_stage, "native_cpu_bf16", lambda: native)
    hint = hint_of(compose_cfg(*task_overrides(tiny_teacher, data_dir)))
    if not native:
        assert hint is None
        return
    assert "distill.teacher_dtype=bfloat16 stage.intermediate.precision=bf16-mixed" in hint
    for override in ("distill.teacher_dtype=bfloat16", "stage.intermediate.precision=bf16-mixed",
                     "trainer.precision=bf16-mixed", "trainer.accelerator=gpu"):
        assert hint_of(compose_cfg(*task_overrides(tiny_teacher, data_dir, override))) is None, override


@pytest.mark.parametrize("native", [True, False])
def test_bfloat16_settings_warn_on_a_cpu_that_would_emulate_them(compose_cfg, tiny_teacher, data_dir, monkeypatch,
                                                                caplog, native):
    """Without avx512_bf16 or AMX torch emulates bfloat16, slower than float32: the speed settings say so once each."""
    import tinydistill.hardware
    from tinydistill.modules.frozen_teacher import teacher_dtype
    from tinydistill.stages.task import plan
    from tinydistill.stages.task.phase1 import phase_trainer

    monkeypatch.setattr(tinydistill.hardware, "native_cpu_bf16", lambda: native)
    p = plan(compose_cfg(*task_overrides(tiny_teacher, data_dir, "stage.intermediate.precision=bf16-mixed")))
    with caplog.at_level("WARNING", logger="tinydistill.hardware"):
        phase_trainer(p.ctx.trainer, p.phase2)  # float32: never a warning
        teacher_dtype("float32")
        assert not caplog.records
        phase_trainer(p.ctx.trainer, p.phase1)
        assert teacher_dtype("bfloat16") == torch.bfloat16
    expected = [] if native else ["precision=bf16-mixed", "distill.teacher_dtype=bfloat16"]
    assert len(caplog.records) == len(expected)
    assert all(r.getMessage().startswith(e) for r, e in zip(caplog.records, expected))
    assert all("no bfloat16 instructions" in r.getMessage() for r in caplog.records)
