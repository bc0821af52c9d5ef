"""stage=finetune: fine-tune a model (the teacher by default) on a task (GLUE, or your own: task=custom) and export it.

    python train.py stage=finetune task=mrpc                           # the teacher -> artifacts/teacher/mrpc
    python train.py stage=finetune task=mrpc stage.model=<folder> stage.output_dir=<folder>
    python train.py stage=finetune experiment=distilbert/finetune      # the DistilBERT student, beside the teacher
    python train.py stage=finetune experiment=nodistill task=mrpc      # the no-distillation baseline

`metrics.json` beside the model (and `result.json` in the run's log folder) holds the dev metrics, parameter
count and dev-set latency; with `stage.compare_to=<fine-tuned teacher>` also the teacher's dev metrics, retention,
parameters, and latency on the same batches, so `python -m tinydistill.report` can put the model beside the
task-distilled students. `stage.match_steps_of=<task-distilled run>` gives it that run's optimiser steps and, with
`stage.evals=matched`, its number of dev evaluations: the matched no-distillation baseline.
"""

from __future__ import annotations

import logging
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from omegaconf import DictConfig
from transformers import PreTrainedModel

from tinydistill.callbacks import EvaluationCount, best_checkpoint
from tinydistill.contract import ModelNeed, RunContext
from tinydistill.data.files import task_from_config, task_json
from tinydistill.errors import ConfigError
from tinydistill.models.loading import (
    PACKAGE_SCHEME,
    export_pretrained,
    load_tokenizer,
)
from tinydistill.models.measure import count_parameters
from tinydistill.models.released import load_student_classifier
from tinydistill.models.student import load_config
from tinydistill.modules.finetune import FinetuneModule
from tinydistill.optim import OptimizerSettings
from tinydistill.paths import recorded_path
from tinydistill.preflight import TEACHER_TYPES, check_task_files
from tinydistill.records import METRICS_JSON, ClassifierRecord
from tinydistill.stages.classifier import (
    Latency,
    TaskBatches,
    add_latency,
    add_yardsticks,
    dev_metrics,
    task_datamodule,
    validate_best,
)
from tinydistill.teacher_checks import load_teacher_classifier
from tinydistill.trainer import (
    TrainerPlan,
    build_trainer,
    validate_every_n_steps,
    validate_n_times_per_epoch,
)

log = logging.getLogger(__name__)

NAME = "finetune"
LEARNING_RATES = ("stage.lr",)
SEQUENCE_LENGTH = "task.max_seq_length"
READS = frozenset({"task"})


@dataclass(frozen=True)
class FinetunePlan:
    ctx: RunContext
    batches: TaskBatches
    model: str
    run_name: str
    output_dir: Path
    compare_to: str | None
    matched_steps_of: str | None
    epochs: int | None
    budget: dict[str, Any]  # Trainer overrides: the step budget (empty: stage.epochs)
    schedule: dict[str, Any]  # Trainer overrides: when to evaluate on dev
    optim: OptimizerSettings
    latency: Latency
    task_files: dict[str, Any]  # task.json beside the model of a user's task


def models(cfg: DictConfig) -> Iterator[ModelNeed]:
    yield ModelNeed("stage.model", TEACHER_TYPES, "stage=finetune")
    if cfg.stage.get("compare_to") is not None:
        yield ModelNeed("stage.compare_to", TEACHER_TYPES, "stage.compare_to", if_present=True)


def result_dir(cfg: DictConfig) -> Path:
    return Path(cfg.stage.output_dir)


def plan(cfg: DictConfig) -> FinetunePlan:
    st = cfg.stage
    task = task_from_config(cfg.task)
    ctx = RunContext.from_config(cfg)
    check_task_files(task, ctx.data_dir)
    compare_to = st.get("compare_to")
    if compare_to is not None and not (Path(str(compare_to)) / "config.json").is_file():
        raise ConfigError(
            f"stage.compare_to={compare_to}: no fine-tuned classifier there; run `python train.py stage=finetune "
            f"task={task.name}` first, or set stage.compare_to=null"
        )
    matched = None if st.get("match_steps_of") is None else matched_run(str(st.match_steps_of))
    budget = step_budget(matched, st.get("max_steps", -1))
    return FinetunePlan(
        ctx=ctx,
        batches=TaskBatches.from_config(cfg, task),
        model=str(st.model),
        run_name=run_name(st.get("run_name"), str(st.model)),
        output_dir=Path(st.output_dir),
        compare_to=None if compare_to is None else str(compare_to),
        matched_steps_of=None if matched is None else str(st.match_steps_of),
        epochs=st.epochs if not budget else None,
        budget=budget,
        schedule=evaluation_schedule(ctx.trainer, st.get("evals"), st.evals_per_epoch, matched, budget),
        optim=OptimizerSettings.from_stage(st),
        latency=Latency.from_stage(st),
        task_files=task_json(cfg.task, task),
    )


def run_name(name: str | None, model: str) -> str:
    """`stage.run_name`, or the model reference: a package name, a hub id, or a folder's last two parts
    (`artifacts/distilbert/minilm_l6` -> `distilbert/minilm_l6`)."""
    if name:
        return str(name)
    if model.startswith(PACKAGE_SCHEME):
        return model[len(PACKAGE_SCHEME):]
    path = Path(model).expanduser()
    return "/".join(path.resolve().parts[-2:]) if path.exists() else model


def matched_run(folder: str) -> tuple[Path, ClassifierRecord]:
    """`stage.match_steps_of`'s record (path and content)."""
    path = Path(folder) / METRICS_JSON
    if not path.is_file():
        raise ConfigError(f"stage.match_steps_of={folder}: no metrics.json of a task-distilled run there; run "
                          f"`python train.py stage=task` with the same seed first, or set stage.match_steps_of=null")
    return path, ClassifierRecord.read(path)


def step_budget(matched: tuple[Path, ClassifierRecord] | None, max_steps: int | None) -> dict[str, Any]:
    """Trainer overrides for a step budget, which replaces `stage.epochs`: as many optimiser steps as the matched
    task-distilled run took in both phases (the budget of the no-distillation baseline), else `stage.max_steps` > 0;
    {} when neither is set."""
    if matched is None:
        # Otherwise Lightning would stop at whichever of epochs and steps comes first, short of the asked steps.
        return {"max_steps": int(max_steps), "max_epochs": -1} if max_steps and max_steps > 0 else {}
    path, record = matched
    steps = record.training_steps
    if steps <= 0:
        raise ConfigError(f"stage.match_steps_of={path.parent}: {path} records no training steps")
    return {"max_steps": steps, "max_epochs": -1}


def evaluation_schedule(trainer: TrainerPlan, evals: Any, evals_per_epoch: Any,
                        matched: tuple[Path, ClassifierRecord] | None, budget: dict[str, Any]) -> dict[str, Any]:
    """Trainer overrides for when to evaluate on dev. `stage.evals=<n>`: n evaluations spread evenly over the step
    budget (every ⌊steps / n⌋ steps, so the last comes at most n − 1 steps before the end); `stage.evals=matched`:
    as many as the `stage.match_steps_of` run's prediction phase made, so a baseline picks its best from as many
    dev evaluations as the distilled student did. `stage.evals=null`: `stage.evals_per_epoch`."""
    if evals is None:
        return validate_n_times_per_epoch(trainer, evals_per_epoch, "stage.evals_per_epoch")
    option = f"stage.evals={evals}"
    if evals == "matched":
        if matched is None:
            raise ConfigError("stage.evals=matched counts the dev evaluations of the stage.match_steps_of run: set "
                              "stage.match_steps_of, or give a number (stage.evals=3)")
        path, record = matched
        evals = record.pred_evaluations
        if evals is None:
            raise ConfigError(f"stage.evals=matched: {path} does not record its prediction phase's dev evaluations "
                              f"(runs before pred.evaluations existed); give their number, e.g. stage.evals=3")
    if isinstance(evals, bool) or not isinstance(evals, int) or evals < 1:
        raise ConfigError(f"stage.evals={evals}: expected a whole number of dev evaluations, at least 1, or matched")
    steps = budget.get("max_steps", -1)
    if steps <= 0:
        raise ConfigError(f"{option} spreads evaluations over a step budget: set "
                          f"stage.match_steps_of or stage.max_steps, or use stage.evals_per_epoch")
    if evals > steps:
        raise ConfigError(f"stage.evals={evals}: more dev evaluations than the {steps} training steps")
    return validate_every_n_steps(trainer, steps // evals)


def comparison_teacher(p: FinetunePlan) -> PreTrainedModel | None:
    """`stage.compare_to`'s classifier, loaded (untrained-head and wrong-task checks) before training."""
    if p.compare_to is None:
        return None
    return load_teacher_classifier(p.compare_to, p.batches.task, setting="stage.compare_to")


def run(p: FinetunePlan) -> dict[str, Any]:
    task = p.batches.task
    teacher = comparison_teacher(p)  # checked before training, not after
    tokenizer = load_tokenizer(p.model)
    if p.compare_to is not None and load_config(p.compare_to).vocab_size < len(tokenizer):
        raise ConfigError(f"stage.compare_to={p.compare_to}: its vocabulary is smaller than the tokenizer of "
                          f"stage.model={p.model}; latency is measured on the same token ids for both")
    datamodule = task_datamodule(p.batches, p.ctx, tokenizer)
    # A released checkpoint too (a TinyBERT config.json without model_type): the no-distillation baseline of a student
    module = FinetuneModule(load_student_classifier(p.model, task, "stage.model"), task, p.optim)
    checkpoint, evaluations = best_checkpoint(p.ctx.log_dir, task.metric), EvaluationCount()
    trainer = build_trainer(p.ctx.trainer, callbacks=[checkpoint, evaluations], **p.schedule, **p.budget)
    trainer.fit(module, datamodule=datamodule, ckpt_path=p.ctx.ckpt_path)
    made = evaluations.count  # before validate_best, whose checkpoint restores the count saved with it
    metrics = dev_metrics(task, validate_best(trainer, module, datamodule, checkpoint))
    result: dict[str, Any] = {
        "stage": NAME,
        "task": task.name,
        "task_spec": task.summary(),  # a user's task's labels and metrics, for the report
        "run": p.run_name,
        "model": p.model,
        "seed": p.ctx.seed,
        "epochs": p.epochs,
        "steps": trainer.global_step,
        "matched_steps_of": p.matched_steps_of,
        "lr": p.optim.lr,
        "evaluations": made,
        "best_checkpoint": recorded_path(checkpoint.best_model_path),
        **metrics,
        "parameters": {"model": count_parameters(module.classifier)},
    }
    models = {"model": module.classifier}
    if teacher is not None:
        models["teacher"] = teacher
        result["teacher_dir"] = p.compare_to
        result["parameters"]["teacher"] = count_parameters(teacher)
    add_yardsticks(p.ctx.data_dir, task, result, p.compare_to)
    if trainer.is_global_zero:
        if p.latency.measure:
            add_latency(p.latency, result, models, datamodule, own="model")
        record = ClassifierRecord(result)
        out = export_pretrained(p.output_dir, module.classifier, tokenizer,
                                json_files={**record.model_files(), **p.task_files})
        record.write_log_copy(p.ctx.log_dir)
        log.info("fine-tuned model: %s", out)
        log.info("dev metrics: %s", metrics)
        result["output_dir"] = str(out)
    return result
