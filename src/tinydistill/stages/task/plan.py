"""stage=task's plan: the config read once, checked, and resolved into plain values for the phases."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
from omegaconf import DictConfig, OmegaConf

from tinydistill.ckpt_path import LIGHTNING_CKPT_NAMES
from tinydistill.contract import RunContext
from tinydistill.data.files import task_from_config, task_json
from tinydistill.data.tasks import UNLABELED_REST, Task
from tinydistill.data.unlabeled import UnlabeledMix, is_file, unlabeled_examples
from tinydistill.distill.methods import METHODS
from tinydistill.errors import ConfigError
from tinydistill.modules.frozen_teacher import check_teacher_mode
from tinydistill.models.released import resolve_checkpoint
from tinydistill.modules.task import PHASES
from tinydistill.optim import OptimizerSettings
from tinydistill.preflight import check_task_files
from tinydistill.stages.classifier import Latency, TaskBatches

INTERMEDIATE_DIR = "intermediate"


@dataclass(frozen=True)
class PhaseSettings:
    """One of the two fits: its budget (`max_steps` > 0 replaces `epochs`), optimiser, precision, and when it
    checkpoints (phase 1, which has no dev evaluation) or evaluates (phase 2 with a step budget)."""

    epochs: int
    max_steps: int
    optim: OptimizerSettings
    precision: str
    checkpoint_every_n_steps: int | None = None
    val_every_n_steps: int | None = None

    @property
    def has_step_budget(self) -> bool:
        return self.max_steps > 0

    @classmethod
    def from_config(cls, cfg: DictConfig, ph: DictConfig) -> PhaseSettings:
        max_steps = ph.get("max_steps", -1)
        own = ph.get("precision")
        return cls(
            epochs=int(ph.epochs),
            max_steps=-1 if max_steps is None or max_steps <= 0 else int(max_steps),
            optim=OptimizerSettings.from_stage(cfg.stage, lr=ph.lr, warmup_proportion=ph.warmup_proportion,
                                               schedule=ph.schedule),
            precision=str(own if own is not None else cfg.trainer.precision),
            checkpoint_every_n_steps=ph.get("checkpoint_every_n_steps") or None,
            val_every_n_steps=ph.get("val_every_n_steps"),
        )


@dataclass(frozen=True)
class TeacherSettings:
    """The frozen teacher: where it is, how it runs (`distill.teacher_mode`, `distill.teacher_dtype` in phase 1),
    what phase 1 may keep of it (`stage.intermediate.teacher_cache*`) and how phase 2 gets its logits
    (`stage.pred.teacher_logits`), and how far above the constant predictor it must score."""

    folder: str
    mode: str
    dtype: str
    cache: bool
    cache_max_gb: float | None
    logits: str
    min_margin: float
    allow_weak: bool

    @property
    def phase1_caches(self) -> bool:
        return phase1_caches_teacher(self.cache, self.mode)


@dataclass(frozen=True)
class TaskPlan:
    ctx: RunContext
    batches: TaskBatches
    teacher: TeacherSettings
    run_name: str
    out_dir: Path
    phase: str  # intermediate | pred | both
    resumed: str | None  # the phase ckpt_path belongs to
    student_init: str
    student_source: str | None  # the folder the student starts from; None: random
    student: dict[str, Any]  # the student group (a random student's sizes)
    distill: dict[str, Any]  # the distill group, resolved (distiller_from_config reads it)
    ablation: str
    gold: bool  # phase 2 on gold labels (ablation.pred=gold)
    pred_weight: float
    temperature: float
    regression_target: str
    aug: dict[str, Any] | None  # the aug group when augmentation is on
    aug_skips_task: bool
    phase1: PhaseSettings
    phase2: PhaseSettings
    accelerator: str
    latency: Latency
    task_files: dict[str, Any]
    unlabeled: UnlabeledMix | None = None  # task.unlabeled's rows join the training set (stage.unlabeled.*)

    @property
    def task(self) -> Task:
        return self.batches.task

    @property
    def inter_dir(self) -> Path:
        return self.out_dir / INTERMEDIATE_DIR

    @property
    def intermediate_request(self) -> str | None:
        """What asks for intermediate-layer distillation (a student with another tokenizer than the teacher's cannot
        have it), or None: phase 1 runs and the ablation leaves an intermediate weight above 0."""
        weights = {t: float(w or 0) for t, w in (self.distill.get("weights") or {}).items() if t != "pred"}
        on = [t for t, w in weights.items() if w > 0]
        if self.phase == "pred" or not on:
            return None
        return f"stage.phase={self.phase} with ablation={self.ablation} (distill.weights {', '.join(on)} > 0)"


def phase1_caches_teacher(teacher_cache: bool, teacher_mode: str) -> bool:
    """Whether phase 1 may keep the teacher's targets: `stage.intermediate.teacher_cache` on and an eval-mode
    teacher (a train-mode teacher's dropout makes every batch's targets new, as in the reference)."""
    return bool(teacher_cache) and teacher_mode == "eval"


def run_name(cfg: DictConfig) -> str:
    """`stage.run_name`, or one derived from the switches that define a run: ablation, aug, init."""
    if cfg.stage.get("run_name"):
        return str(cfg.stage.run_name)
    name = cfg.ablation.name
    if not cfg.aug.enabled:
        name += "-noaug"
    if cfg.task.get("unlabeled") is not None:
        name += "-unlabeled"
    if cfg.student.init != "general":
        name += "-init_" + ("random" if cfg.student.init == "random" else "path")
    return name


def result_dir(cfg: DictConfig) -> Path:
    """`<stage.output_root>/<run name>/seed<seed>/`: runs that differ only in seed sit side by side, and the
    report aggregates them."""
    return Path(cfg.stage.output_root) / run_name(cfg) / f"seed{cfg.seed}"


def checkpoint_phase(ckpt_path: str | None) -> str | None:
    """Which training phase wrote `ckpt_path` (`intermediate`, `pred` or `gold`), from its saved hyperparameters;
    None without a checkpoint. Loaded with weights_only=True (tensors and plain values only) and memory-mapped."""
    if ckpt_path is None:
        return None
    if str(ckpt_path) in LIGHTNING_CKPT_NAMES:
        raise ConfigError(f"ckpt_path={ckpt_path}: stage=task resumes from a checkpoint file, the phase it belongs to; "
                          f"give <run dir>/checkpoints/last.ckpt")
    checkpoint = torch.load(str(ckpt_path), map_location="cpu", weights_only=True, mmap=True)
    phase = checkpoint.get("hyper_parameters", {}).get("phase")
    if phase not in PHASES:
        raise ConfigError(f"ckpt_path={ckpt_path}: not a checkpoint of stage=task (no training phase in it); resume "
                          f"from a stage=task run's <run dir>/checkpoints/last.ckpt")
    return phase


def teacher_dir(cfg: DictConfig, task: Task) -> str:
    path = Path(str(cfg.stage.teacher))
    if not (path / "config.json").is_file():
        raise ConfigError(
            f"stage.teacher={path}: no fine-tuned teacher there; run "
            f"`python train.py stage=finetune task={task.name}` first or point stage.teacher at one"
        )
    return str(path)


def student_source(cfg: DictConfig, phase: str, inter_dir: Path) -> str | None:
    """Folder the student starts from, or None for a random initialisation; `stage.phase=pred` continues from this
    run's phase 1 when it exists."""
    if phase == "pred" and (inter_dir / "config.json").is_file():
        return str(inter_dir)
    init = str(cfg.student.init)
    if init == "random":
        return None
    path = Path(cfg.stage.general_dir) if init == "general" else Path(init).expanduser()
    if init != "general" and not path.exists():  # a hub name (a released general student), fetched now
        return resolve_checkpoint(init, "student.init")
    if not (path / "config.json").is_file():
        hint = "run `python train.py stage=general` first, or " if init == "general" else ""
        raise ConfigError(f"student.init={init}: no model at {path}; {hint}set student.init=random, a model folder "
                          f"or a hub name")
    return str(path)


def check_switches(cfg: DictConfig, resumed: str | None) -> None:
    st = cfg.stage
    if cfg.distill.name not in METHODS:
        raise ConfigError(f"stage=task is TinyBERT's task distillation (distill=tinybert, or distill=minilm for MiniLM-v2's "
                          f"relation loss in phase 1), got distill={cfg.distill.name}; "
                          f"the DistilBERT baseline is fine-tuned with stage=finetune (experiment=distilbert/finetune)")
    if st.phase not in ("intermediate", "pred", "both"):
        raise ConfigError(f"stage.phase={st.phase!r} must be intermediate, pred or both")
    if cfg.ablation.pred not in ("distill", "gold"):
        raise ConfigError(f"ablation.pred={cfg.ablation.pred!r} must be distill or gold")


def unlabeled_mix(task: Task, options: dict[str, Any], ablation: str, gold: bool,
                  regression_target: str, aug_runs: bool = False) -> UnlabeledMix | None:
    """`stage.unlabeled`'s choice (`options`) of unlabelled rows when `task.unlabeled` is set (None otherwise).
    Refuses, in one line, the settings that need a gold label on every training row, and `augment` when the
    augmentation does not run on the task (`aug_runs` false), and reads an unlabelled file now, so its errors come
    before any compute."""
    if task.unlabeled is None:
        return None
    if gold:
        raise ConfigError(f"ablation={ablation} trains on gold labels, which task.unlabeled={task.unlabeled}'s rows "
                          f"do not have: drop task.unlabeled or the ablation")
    if task.is_regression and regression_target == "gold":
        raise ConfigError(f"distill.regression_target=gold needs a gold score on every row; task.unlabeled="
                          f"{task.unlabeled}'s rows have none: use regression_target=teacher")
    if task.unlabeled != UNLABELED_REST and is_file(task.unlabeled):
        unlabeled_examples(task)
    mix = UnlabeledMix.from_config(options, task.tune_seed)
    if mix.augment and not aug_runs:
        raise ConfigError(f"stage.unlabeled.augment=true augments the unlabelled rows as aug=on augments the labelled "
                          f"ones, but augmentation does not run on {task.name} (aug off, or in aug.skip_tasks): set "
                          f"aug=on or stage.unlabeled.augment=false")
    return mix


def check_resume(cfg: DictConfig, resumed: str | None) -> None:
    phase = cfg.stage.phase
    if resumed == "intermediate" and phase == "pred":
        raise ConfigError(f"ckpt_path={cfg.ckpt_path} is a phase-1 (intermediate) checkpoint, but stage.phase=pred; "
                          f"resume it with stage.phase=both or intermediate")
    if resumed in ("pred", "gold") and phase == "intermediate":
        raise ConfigError(f"ckpt_path={cfg.ckpt_path} is a phase-2 ({resumed}) checkpoint, but "
                          f"stage.phase=intermediate; resume it with stage.phase=both or pred")


def plan(cfg: DictConfig) -> TaskPlan:
    st, d = cfg.stage, cfg.distill
    task = task_from_config(cfg.task)
    ctx = RunContext.from_config(cfg)
    check_task_files(task, ctx.data_dir)
    check_switches(cfg, None)
    resumed = checkpoint_phase(ctx.ckpt_path)
    check_resume(cfg, resumed)
    teacher = TeacherSettings(
        folder=teacher_dir(cfg, task), mode=check_teacher_mode(d.get("teacher_mode", "eval")),
        dtype=str(d.get("teacher_dtype", "float32")), cache=bool(st.intermediate.teacher_cache),
        cache_max_gb=st.intermediate.teacher_cache_max_gb, logits=str(st.pred.teacher_logits),
        min_margin=float(st.min_teacher_margin), allow_weak=bool(st.allow_weak_teacher),
    )
    out_dir = result_dir(cfg)
    aug_on = bool(cfg.aug.enabled)
    aug_skips_task = task.name in [str(t).lower() for t in (cfg.aug.get("skip_tasks") or [])]
    return TaskPlan(
        ctx=ctx,
        batches=TaskBatches.from_config(cfg, task),
        teacher=teacher,
        run_name=run_name(cfg),
        out_dir=out_dir,
        phase=str(st.phase),
        resumed=resumed,
        student_init=str(cfg.student.init),
        student_source=student_source(cfg, str(st.phase), out_dir / INTERMEDIATE_DIR),
        student=OmegaConf.to_container(cfg.student, resolve=True),
        distill=OmegaConf.to_container(d, resolve=True),
        ablation=str(cfg.ablation.name),
        gold=cfg.ablation.pred == "gold",
        pred_weight=float(d.weights.pred),
        temperature=float(d.temperature),
        regression_target=str(d.regression_target),
        aug=OmegaConf.to_container(cfg.aug, resolve=True) if aug_on else None,
        aug_skips_task=aug_skips_task,
        phase1=PhaseSettings.from_config(cfg, st.intermediate),
        phase2=PhaseSettings.from_config(cfg, st.pred),
        accelerator=str(cfg.trainer.accelerator),
        latency=Latency.from_stage(st),
        task_files=task_json(cfg.task, task),
        unlabeled=unlabeled_mix(task, OmegaConf.to_container(st.unlabeled, resolve=True), str(cfg.ablation.name),
                                cfg.ablation.pred == "gold", str(d.regression_target), aug_on and not aug_skips_task),
    )
