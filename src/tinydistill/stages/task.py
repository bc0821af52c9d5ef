"""stage=task: TinyBERT task-specific distillation of a fine-tuned teacher into a student classifier.

    python train.py stage=task task=mrpc aug=on
    python train.py -m stage=task task=mrpc ablation=none,no_trm,no_emb,no_pred

Phase 1 (intermediate) and phase 2 (prediction) run as two Lightning fits with their own epochs,
learning rates and schedules, as the reference runs task_distill.py twice. `stage.phase` picks
`intermediate`, `pred` or `both`. Results go to `<stage.output_root>/<run name>/seed<seed>/`:
`intermediate/` (phase-1 student + projections, the start of phase 2) and the final student
(`BertForSequenceClassification`, projections dropped) with `metrics.json`.

Both phases write checkpoints into the run's `checkpoints/` folder (phase 1 every
`stage.intermediate.checkpoint_every_n_steps` steps, phase 2 at each dev evaluation); `last.ckpt` is the latest of
either. `ckpt_path=<run dir>/checkpoints/last.ckpt` resumes the phase the checkpoint belongs to: a phase-1
checkpoint continues phase 1 and then runs phase 2; a phase-2 checkpoint skips the finished phase 1 (its summary is
read back from `intermediate/phase.json`) and continues phase 2.

Before any compute (augmentation, teacher logits, training) the run checks, and stops with a one-line ConfigError
naming the folder (tinydistill/checks.py): a teacher whose classifier or pooler would be initialised at random (not
fine-tuned: run stage=finetune first), a teacher of another task (labels, problem type, label names), a student
folder with another tokenizer than the teacher's, and a teacher whose dev score, measured now, is not
`stage.min_teacher_margin` above the constant predictor's (`stage.allow_weak_teacher=true`: a warning instead).
An `aug.mlm_model` with another vocabulary only warns. The teacher figures in `metrics.json` (`teacher`,
`teacher_check`, retention, gap closed) are this fresh evaluation, never the teacher folder's own metrics.json.
"""

from __future__ import annotations

import copy
import json
import logging
import math
import shutil
import warnings
from pathlib import Path
from typing import Any

import torch
from omegaconf import DictConfig, OmegaConf
from transformers import AutoModelForSequenceClassification, PreTrainedModel

from tinydistill.atomic import atomic_write_text
from tinydistill.baselines import constant_predictor
from tinydistill.bench import count_parameters
from tinydistill.checks import (
    aug_vocabulary_warning,
    check_student_vocabulary,
    check_teacher_strength,
    load_teacher_classifier,
)
from tinydistill.data.files import load_task, task_json
from tinydistill.data.glue import GlueDataModule
from tinydistill.data.tasks import GlueTask
from tinydistill.distill.intermediate import IntermediateDistiller, Projections, PROJECTIONS_JSON
from tinydistill.distill.prediction import cached_teacher_logits, logit_cache_path, save_logit_cache
from tinydistill.distill.teacher_cache import TeacherCache, teacher_cache_bytes
from tinydistill.errors import ConfigError
from tinydistill.hardware import native_cpu_bf16, training_device
from tinydistill.models.loading import export_pretrained, load_classifier, load_tokenizer
from tinydistill.models.student import student_config
from tinydistill.modules.frozen_teacher import check_teacher_mode, teacher_dtype
from tinydistill.modules.task import PHASES, TaskDistillModule
from tinydistill.optim import optimizer_options
from tinydistill.paths import recorded_path
from tinydistill.resume import ResumableCheckpoint
from tinydistill.stages.common import (
    EvaluationCount,
    add_latency,
    add_yardsticks,
    best_checkpoint_callback,
    dev_metrics,
    evaluate_teacher,
    validate_best,
)
from tinydistill.stages.general import FirstAndLastLosses
from tinydistill.trainer import build_trainer, validate_every_n_steps
from tinydistill.validate import LIGHTNING_CKPT_NAMES

log = logging.getLogger(__name__)

INTERMEDIATE_DIR = "intermediate"
PHASE_JSON = "phase.json"
RESULT_JSON = "metrics.json"


def result_dir(cfg: DictConfig) -> Path:
    """`<stage.output_root>/<run name>/seed<seed>/`: runs that differ only in seed sit side by side, and the
    report aggregates them."""
    return Path(cfg.stage.output_root) / run_name(cfg) / f"seed{cfg.seed}"


def run_name(cfg: DictConfig) -> str:
    """`stage.run_name`, or one derived from the switches that define a run: ablation, aug, init."""
    if cfg.stage.get("run_name"):
        return str(cfg.stage.run_name)
    name = cfg.ablation.name
    if not cfg.aug.enabled:
        name += "-noaug"
    if cfg.student.init != "general":
        name += "-init_" + ("random" if cfg.student.init == "random" else "path")
    return name


def teacher_dir(cfg: DictConfig, task: GlueTask) -> str:
    path = Path(str(cfg.stage.teacher))
    if not (path / "config.json").is_file():
        raise ConfigError(
            f"stage.teacher={path}: no fine-tuned teacher there; run "
            f"`python train.py stage=finetune task={task.name}` first or point stage.teacher at one"
        )
    return str(path)


def student_source(cfg: DictConfig) -> str | None:
    """Folder the student starts from, or None for a random initialisation."""
    init = str(cfg.student.init)
    if init == "random":
        return None
    path = Path(cfg.stage.general_dir) if init == "general" else Path(init)
    if not (path / "config.json").is_file():
        hint = "run `python train.py stage=general` first, or " if init == "general" else ""
        raise ConfigError(f"student.init={init}: no model at {path}; {hint}set student.init=random or a model folder")
    return str(path)


def load_student(source: str | None, cfg: DictConfig, task: GlueTask, teacher: PreTrainedModel) -> PreTrainedModel:
    if source is not None:
        return load_classifier(source, task)
    config = student_config(cfg.student, teacher.config)
    config.num_labels = task.num_labels
    config.problem_type = teacher.config.problem_type
    config.id2label, config.label2id = teacher.config.id2label, teacher.config.label2id
    torch.manual_seed(cfg.seed)
    return AutoModelForSequenceClassification.from_config(config)


def load_projections(source: str | None, cfg: DictConfig) -> Projections | None:
    """Continue from the projections saved beside the student (general distillation), if any."""
    if source is None or not (Path(source) / PROJECTIONS_JSON).is_file():
        return None
    return Projections.load(source, mode=cfg.distill.projection)


def datamodule(cfg: DictConfig, task: GlueTask, tokenizer, train_file: str | None) -> GlueDataModule:
    return GlueDataModule(
        task,
        tokenizer,
        max_seq_length=cfg.task.max_seq_length,
        data_dir=cfg.paths.data_dir,
        cache_dir=cfg.paths.cache_dir,
        batch_size=cfg.stage.batch_size,
        eval_batch_size=cfg.stage.eval_batch_size,
        num_workers=cfg.data.num_workers,
        train_file=train_file,
        group_by_length=cfg.data.group_by_length, pad_to_max_length=cfg.data.pad_to_max_length,
        with_index=True,
        seed=cfg.seed,
    )


def augmented_train_file(cfg: DictConfig, task: GlueTask) -> str | None:
    if not cfg.aug.enabled:
        return None
    from data_aug import ensure_augmented  # only needed with aug=on

    if cfg.paths.data_dir is None and task.is_glue:
        raise ConfigError("aug=on needs paths.data_dir (the augmentation reads <data_dir>/glue/<Task>/train.tsv)")
    path = ensure_augmented(cfg.aug, task, cfg.paths.data_dir, cfg.paths.artifacts_dir)
    return None if path is None else str(path)  # None: a skipped hub dataset, trained on its own split


def warn_aug_vocabulary(cfg: DictConfig, task: GlueTask, tokenizer, t_dir: str) -> str | None:
    """Warn (and return the warning) when `aug.mlm_model` reads text differently from the task's tokenizer. Only
    its tokenizer is loaded; a model that cannot be loaded is left to the augmentation's own clear error."""
    if not cfg.aug.enabled or task.name in [str(t).lower() for t in (cfg.aug.get("skip_tasks") or [])]:
        return None
    mlm = str(cfg.aug.mlm_model)
    try:
        mlm_tokenizer = load_tokenizer(mlm)
    except Exception as e:  # noqa: BLE001 - data_aug.load_mlm reports it, naming aug.mlm_model
        log.debug("aug.mlm_model=%s: tokenizer not loadable here (%s); vocabulary not compared", mlm, e)
        return None
    warning = aug_vocabulary_warning(mlm_tokenizer, mlm, tokenizer, t_dir)
    if warning:
        log.warning("%s", warning)
    return warning


def phase_trainer(cfg: DictConfig, phase_cfg: DictConfig, callbacks=(), **overrides):
    """The phase's Trainer. A step budget (`max_steps` > 0) replaces the phase's epochs, as in every stage: the
    phase trains exactly that many steps, over as many epochs as it takes. The phase's `precision`, when set,
    replaces `trainer.precision` for this phase."""
    max_steps = phase_cfg.get("max_steps", -1)
    max_steps = -1 if max_steps is None or max_steps <= 0 else int(max_steps)
    overrides.setdefault("max_epochs", phase_cfg.epochs if max_steps < 0 else -1)
    overrides.setdefault("max_steps", max_steps)
    overrides.setdefault("precision", phase_precision(cfg, phase_cfg))
    return build_trainer(cfg, callbacks=callbacks, **overrides)


def phase_precision(cfg: DictConfig, phase_cfg: DictConfig) -> str:
    """The phase's Lightning precision: its own `precision` (e.g. bf16-mixed in phase 1 only), else trainer.precision."""
    own = phase_cfg.get("precision")
    return str(own if own is not None else cfg.trainer.precision)


def bf16_phase1_hint(cfg: DictConfig, phase_cfg: DictConfig) -> str | None:
    """A hint when phase 1 runs in float32 on a CPU with native bfloat16, where the phase-1 bfloat16 setting is
    faster at no measured cost; float32 stays the default (the paper's precision, the same figures everywhere)."""
    on_cpu = training_device(cfg.trainer.accelerator) == "cpu"
    float32 = (cfg.distill.get("teacher_dtype", "float32") == "float32"
               and phase_precision(cfg, phase_cfg) in ("32", "32-true"))
    if not (on_cpu and float32 and native_cpu_bf16()):
        return None
    return ("this CPU runs bfloat16 natively: distill.teacher_dtype=bfloat16 stage.intermediate.precision=bf16-mixed "
            "runs phase 1 1.3-1.4x as fast, with no accuracy loss beyond seed noise on MRPC and SST-2 "
            "(docs/guide.md); float32, the default, is the paper's precision")


def step_budget_validation(cfg: DictConfig, phase_cfg: DictConfig) -> dict[str, Any]:
    """A phase with a step budget can end mid-epoch, before any end-of-epoch dev evaluation: evaluate every
    `val_every_n_steps` steps instead (default: once, at the last step)."""
    max_steps = phase_cfg.get("max_steps", -1)
    if max_steps is None or max_steps <= 0:
        return {}
    return validate_every_n_steps(cfg, phase_cfg.get("val_every_n_steps") or max_steps)


def loop_options(cfg: DictConfig) -> dict[str, Any]:
    """The training-loop switches both phases share: teacher mode, optimiser and its clipping threshold."""
    return {"teacher_mode": check_teacher_mode(cfg.distill.get("teacher_mode", "eval")), **optimizer_options(cfg.stage)}


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


def intermediate_checkpoint(cfg: DictConfig) -> ResumableCheckpoint:
    """Phase 1 has no dev evaluation: a checkpoint every `stage.intermediate.checkpoint_every_n_steps` steps (null:
    at the end of each epoch), plus `last.ckpt`."""
    every = cfg.stage.intermediate.get("checkpoint_every_n_steps")
    return ResumableCheckpoint(
        dirpath=Path(cfg.paths.output_dir) / "checkpoints",
        filename="intermediate-step-{step}",
        auto_insert_metric_name=False,
        every_n_train_steps=every or None,
        save_top_k=1,  # no monitor: the most recent one
        save_last=True,
    )


def finished_intermediate(cfg: DictConfig, teacher, student, inter_dir: Path) -> dict[str, Any]:
    """What `run_intermediate` returned in the run a phase-2 checkpoint belongs to: the summary its phase 1 left in
    `intermediate/phase.json`, or `{"skipped": True}` when the ablation has no intermediate loss."""
    distill = OmegaConf.to_container(cfg.distill, resolve=True)
    if not IntermediateDistiller.from_config(distill, student.config, teacher.config).active_terms:
        return {"skipped": True}
    path = inter_dir / PHASE_JSON
    if not path.is_file():
        raise ConfigError(f"{inter_dir}: no finished phase 1 ({PHASE_JSON}) for the phase-2 checkpoint to continue; "
                          f"resume from a checkpoint of this run's output folder")
    saved = json.loads(path.read_text())
    saved.pop("losses", None)  # older phase.json files: the same values as last_losses
    return saved


def phase1_caches_teacher(cfg: DictConfig) -> bool:
    """Whether `distill.*` lets phase 1 keep the teacher's targets: `distill.teacher_cache` on and an eval-mode
    teacher (a train-mode teacher's dropout makes every batch's targets new, as in the reference)."""
    return bool(cfg.distill.get("teacher_cache", False)) and loop_options(cfg)["teacher_mode"] == "eval"


def batches_per_epoch(cfg: DictConfig, batches: int) -> int:
    """The batches an epoch of `batches` runs under `trainer.limit_train_batches` (Lightning's meaning: an int is a
    number of batches, a float a fraction of the epoch)."""
    limit = cfg.trainer.get("limit_train_batches")
    if limit is None:
        return batches
    if isinstance(limit, float):
        return max(1, int(batches * limit)) if limit <= 1.0 else min(batches, int(limit))
    return min(batches, int(limit))


def intermediate_teacher_cache(cfg: DictConfig, distiller: IntermediateDistiller,
                               dm: GlueDataModule) -> TeacherCache | None:
    """`distill.teacher_cache`: a `TeacherCache` for phase 1 when it can pay off: `phase1_caches_teacher`, more steps
    than one epoch runs (the cache is read only when a batch comes back) and one process (under DDP each process's
    share of an epoch is cut into new batches every epoch, so none would come back). Else None."""
    if not phase1_caches_teacher(cfg):
        return None
    if str(cfg.trainer.devices) != "1" or int(cfg.trainer.num_nodes) != 1:
        log.info("trainer.devices=%s, trainer.num_nodes=%s: no phase-1 teacher cache with several processes",
                 cfg.trainer.devices, cfg.trainer.num_nodes)
        return None
    ph = cfg.stage.intermediate
    dm.prepare_data()
    dm.setup("fit")
    per_epoch = batches_per_epoch(cfg, math.ceil(len(dm.splits["train"]) / dm.batch_size))
    steps = ph.max_steps if ph.get("max_steps") and ph.max_steps > 0 else ph.epochs * per_epoch
    if steps <= per_epoch:
        log.info("phase 1 runs %d steps, no more than one epoch (%d batches): no teacher cache", steps, per_epoch)
        return None
    hidden, attention = distiller.teacher_reads
    return TeacherCache(hidden, attention, teacher_cache_bytes(cfg.distill.get("teacher_cache_max_gb")))


def run_intermediate(cfg, task, teacher, student, projections, dm, out_dir: Path,
                     ckpt_path: str | None = None) -> dict[str, Any]:
    distill = OmegaConf.to_container(cfg.distill, resolve=True)
    distiller = IntermediateDistiller.from_config(distill, student.config, teacher.config, projections)
    if not distiller.active_terms:
        log.info("all intermediate-layer weights are 0 (ablation %s): skipping phase 1", cfg.ablation.name)
        return {"skipped": True}
    ph = cfg.stage.intermediate
    if hint := bf16_phase1_hint(cfg, ph):
        log.info(hint)
    dtype = teacher_dtype(cfg.distill.get("teacher_dtype", "float32"))
    if dtype != torch.float32:  # a copy: the prediction phase's logits and the latency use the float32 teacher
        teacher = copy.deepcopy(teacher).to(dtype)
    cache = intermediate_teacher_cache(cfg, distiller, dm)
    module = TaskDistillModule(
        student, task, "intermediate", lr=ph.lr, teacher=teacher, distiller=distiller,
        weight_decay=cfg.stage.weight_decay, warmup_proportion=ph.warmup_proportion, schedule=ph.schedule,
        teacher_cache=cache, **loop_options(cfg),
    )
    # No dev evaluation: the classifier does not train in this phase.
    history = FirstAndLastLosses()  # in checkpoints: a resumed phase reports the last losses of the whole phase
    trainer = phase_trainer(cfg, ph, callbacks=[intermediate_checkpoint(cfg), history], limit_val_batches=0)
    dm.fixed_batches = cache is not None  # the cache's batches come back in later epochs; phase 2's need not
    try:
        trainer.fit(module, datamodule=dm, ckpt_path=ckpt_path)
    finally:
        dm.fixed_batches = False
        if cache is not None:
            cache.clear()  # gigabytes that phase 2 does not read
    losses = dict(history.last)
    summary = {"steps": trainer.global_step, "last_losses": losses, **distiller.describe()}
    if cache is not None:
        summary["teacher_cache"] = cache.summary()
        log.info("phase 1 teacher cache: %s", cache.summary())
    if trainer.is_global_zero:
        # "losses": the key earlier versions wrote
        export_pretrained(out_dir, student, dm.tokenizer, json_files={PHASE_JSON: {**summary, "losses": losses}},
                          extra=distiller.projections.save)
    return summary


def run_prediction(cfg, task, teacher, t_dir, student, dm, dm_gold,
                   ckpt_path: str | None = None) -> tuple[TaskDistillModule, Any, dict]:
    ph = cfg.stage.pred
    gold = cfg.ablation.pred == "gold"
    data = dm_gold if gold else dm
    kwargs: dict[str, Any] = {}
    seen_cache = None  # distill.teacher_logits=seen: where the rows this run computes are saved for later runs
    if gold:
        phase = "gold"
    elif loop_options(cfg)["teacher_mode"] == "train":
        phase = "pred"
        kwargs["teacher"] = teacher  # the reference: fresh logits with dropout every batch, no cache
    else:
        phase = "pred"
        data.prepare_data()
        data.setup("fit")
        logits_mode = cfg.distill.get("teacher_logits", "full")
        kwargs["teacher_logits"] = cached_teacher_logits(
            teacher, t_dir, data.splits["train"], dm.tokenizer, cfg.paths.cache_dir, cfg.stage.eval_batch_size,
            mode=logits_mode,
        )
        if logits_mode == "seen":
            kwargs["teacher"] = teacher  # fills the cache's missing rows as batches draw them
            seen_cache = logit_cache_path(cfg.paths.cache_dir, t_dir, data.splits["train"])
    module = TaskDistillModule(
        student, task, phase, lr=ph.lr, pred_weight=cfg.distill.weights.pred, temperature=cfg.distill.temperature,
        regression_target=cfg.distill.regression_target, weight_decay=cfg.stage.weight_decay,
        warmup_proportion=ph.warmup_proportion, schedule=ph.schedule, **loop_options(cfg), **kwargs,
    )
    checkpoint, evaluations = best_checkpoint_callback(cfg, task), EvaluationCount()
    trainer = phase_trainer(cfg, ph, callbacks=[checkpoint, evaluations], **step_budget_validation(cfg, ph))
    trainer.fit(module, datamodule=data, ckpt_path=ckpt_path)
    if seen_cache is not None and trainer.is_global_zero:
        # The rows this run computed, for later runs on the same data and teacher (other seeds).
        save_logit_cache(seen_cache, module.teacher_logits)
    made = evaluations.count  # before validate_best, whose checkpoint restores the count saved with it
    metrics = dev_metrics(task, validate_best(trainer, module, data, checkpoint))
    return module, trainer, {"phase": phase, "steps": trainer.global_step, "evaluations": made,
                             "best_checkpoint": recorded_path(checkpoint.best_model_path), **metrics}


def run(cfg: DictConfig) -> dict[str, Any]:
    warnings.filterwarnings("ignore", message=r"Found \d+ module\(s\) in eval mode")
    # Phase 2 checkpoints into the folder of phase 1's on purpose (one last.ckpt for the run).
    warnings.filterwarnings("ignore", message=r"Checkpoint directory .* exists and is not empty")
    task = load_task(cfg)
    st = cfg.stage
    if cfg.distill.name != "tinybert":
        raise ConfigError(f"stage=task is TinyBERT's task distillation (distill=tinybert), got distill={cfg.distill.name}; "
                          f"the DistilBERT baseline is fine-tuned with stage=finetune (experiment=distilbert/finetune)")
    if st.phase not in ("intermediate", "pred", "both"):
        raise ConfigError(f"stage.phase={st.phase!r} must be intermediate, pred or both")
    if cfg.ablation.pred not in ("distill", "gold"):
        raise ConfigError(f"ablation.pred={cfg.ablation.pred!r} must be distill or gold")
    resumed = checkpoint_phase(cfg.ckpt_path)
    if resumed == "intermediate" and st.phase == "pred":
        raise ConfigError(f"ckpt_path={cfg.ckpt_path} is a phase-1 (intermediate) checkpoint, but stage.phase=pred; "
                          f"resume it with stage.phase=both or intermediate")
    if resumed in ("pred", "gold") and st.phase == "intermediate":
        raise ConfigError(f"ckpt_path={cfg.ckpt_path} is a phase-2 ({resumed}) checkpoint, but "
                          f"stage.phase=intermediate; resume it with stage.phase=both or pred")
    t_dir = teacher_dir(cfg, task)
    # Checks before any compute (tinydistill/checks.py): untrained head or wrong task, then vocabularies, then
    # the teacher's dev score against the constant predictor's. Nothing is written before they pass.
    teacher = load_teacher_classifier(t_dir, task)
    tokenizer = load_tokenizer(t_dir)
    out_dir = result_dir(cfg)
    inter_dir = out_dir / INTERMEDIATE_DIR

    source = student_source(cfg)
    if st.phase == "pred" and (inter_dir / "config.json").is_file():
        source = str(inter_dir)  # continue from this run's phase 1
    if source is not None:
        check_student_vocabulary(tokenizer, t_dir, source,
                                 "student.init" if source != str(inter_dir) else "the phase-1 student")
    warn_aug_vocabulary(cfg, task, tokenizer, t_dir)
    constant = constant_predictor(task, cfg.paths.data_dir)
    teacher_dev = evaluate_teacher(cfg, task, teacher, tokenizer)
    teacher_check = check_teacher_strength(task, teacher_dev, constant, st.min_teacher_margin,
                                           bool(st.allow_weak_teacher), t_dir)
    log.info("teacher dev metrics (measured now): %s", teacher_dev)

    student = load_student(source, cfg, task, teacher)
    projections = load_projections(source, cfg)

    train_file = augmented_train_file(cfg, task)
    dm = datamodule(cfg, task, tokenizer, train_file)
    dm_gold = datamodule(cfg, task, tokenizer, None) if cfg.ablation.pred == "gold" else None
    result: dict[str, Any] = {
        "stage": "task",
        "task": task.name,
        "task_spec": task.summary(),  # a user's task's labels and metrics, for the report
        "run": run_name(cfg),
        "ablation": cfg.ablation.name,
        "aug": bool(cfg.aug.enabled),
        "train_file": train_file,
        "teacher_dir": t_dir,
        "student": cfg.student.name,
        "student_init": str(cfg.student.init),
        "student_source": source,
        "seed": cfg.seed,
        "teacher_check": teacher_check,
    }
    if st.phase in ("intermediate", "both"):
        if resumed in ("pred", "gold"):  # phase 1 finished before the checkpoint; its weights are in it
            result["intermediate"] = finished_intermediate(cfg, teacher, student, inter_dir)
        else:
            result["intermediate"] = run_intermediate(cfg, task, teacher, student, projections, dm, inter_dir,
                                                      ckpt_path=cfg.ckpt_path if resumed else None)
    if st.phase == "intermediate":
        return result

    module, trainer, pred = run_prediction(cfg, task, teacher, t_dir, student, dm, dm_gold,
                                           ckpt_path=cfg.ckpt_path if resumed in ("pred", "gold") else None)
    result["pred"] = pred
    result.update({k: pred[k] for k in task.val_splits})
    # The teacher's figures are those measured at the start, never a (possibly stale) metrics.json beside it.
    add_yardsticks(cfg, task, result, t_dir, teacher_metrics=teacher_dev, constant=constant)
    result["parameters"] = {"student": count_parameters(module.classifier), "teacher": count_parameters(teacher)}
    if trainer.is_global_zero:
        if st.measure_latency:
            data = dm_gold if dm_gold is not None else dm
            add_latency(cfg, result, {"teacher": teacher, "student": module.classifier}, data, own="student")
        export_pretrained(out_dir, module.classifier, tokenizer,
                          json_files={RESULT_JSON: result, **task_json(cfg, task)},
                          extra=lambda tmp: _keep_intermediate(inter_dir, tmp))
        # The run's own log folder gets a copy, so a sweep folder alone is enough for the report.
        Path(cfg.paths.output_dir).mkdir(parents=True, exist_ok=True)
        atomic_write_text(Path(cfg.paths.output_dir) / "result.json", json.dumps(result, indent=2) + "\n")
        log.info("task-distilled student: %s", out_dir)
        log.info("dev metrics: %s", {k: result[k] for k in task.dev_splits})
        result["output_dir"] = str(out_dir)
    return result


def _keep_intermediate(inter_dir: Path, tmp: Path) -> None:
    """The final export replaces the run folder: carry the phase-1 result over (a copy, so a crash
    before the swap loses nothing)."""
    if inter_dir.is_dir():
        shutil.copytree(inter_dir, tmp / INTERMEDIATE_DIR)
