"""stage=finetune: fine-tune a model (the teacher by default) on a task (GLUE, or your own: task=custom) and export it.

    python train.py stage=finetune task=mrpc                           # the teacher -> artifacts/teacher/mrpc
    python train.py stage=finetune task=mrpc stage.model=<folder> stage.output_dir=<folder>
    python train.py stage=finetune experiment=distilbert/finetune      # the DistilBERT student, beside the teacher

`metrics.json` beside the model (and `result.json` in the run's log folder) holds the dev metrics, parameter
count and dev-set latency; with `stage.compare_to=<fine-tuned teacher>` also the teacher's dev metrics, retention,
parameters, and latency on the same batches, so `python -m tinydistill.report` can put the model beside the
task-distilled students.
"""

from __future__ import annotations

import json
import logging
from pathlib import Path
from typing import Any

from omegaconf import DictConfig
from transformers import PreTrainedModel

from tinydistill.atomic import atomic_write_text
from tinydistill.bench import count_parameters
from tinydistill.checks import load_teacher_classifier
from tinydistill.data.files import load_task, task_json
from tinydistill.data.glue import GlueDataModule
from tinydistill.data.tasks import GlueTask
from tinydistill.errors import ConfigError
from tinydistill.models.loading import PACKAGE_SCHEME, export_pretrained, load_classifier, load_tokenizer
from tinydistill.models.student import load_config
from tinydistill.modules.finetune import FinetuneModule
from tinydistill.optim import optimizer_options
from tinydistill.paths import recorded_path
from tinydistill.stages.common import (
    EvaluationCount,
    add_latency,
    add_yardsticks,
    best_checkpoint_callback,
    dev_metrics,
    validate_best,
)
from tinydistill.trainer import build_trainer, validate_every_n_steps, validate_n_times_per_epoch

log = logging.getLogger(__name__)


def run_name(cfg: DictConfig) -> str:
    """`stage.run_name`, or the model reference: a package name, a hub id, or a folder's last two parts
    (`artifacts/distilbert/minilm_l6` -> `distilbert/minilm_l6`)."""
    if cfg.stage.get("run_name"):
        return str(cfg.stage.run_name)
    ref = str(cfg.stage.model)
    if ref.startswith(PACKAGE_SCHEME):
        return ref[len(PACKAGE_SCHEME):]
    path = Path(ref).expanduser()
    return "/".join(path.resolve().parts[-2:]) if path.exists() else ref


def comparison_teacher(cfg: DictConfig, task: GlueTask) -> tuple[str, PreTrainedModel] | tuple[None, None]:
    """`stage.compare_to`: a fine-tuned classifier folder to measure this model against and its model, loaded
    (untrained-head and wrong-task checks of tinydistill/checks.py) before training; (None, None) when unset."""
    ref = cfg.stage.get("compare_to")
    if ref is None:
        return None, None
    if not (Path(str(ref)) / "config.json").is_file():
        raise ConfigError(
            f"stage.compare_to={ref}: no fine-tuned classifier there; run `python train.py stage=finetune "
            f"task={task.name}` first, or set stage.compare_to=null"
        )
    return str(ref), load_teacher_classifier(str(ref), task, setting="stage.compare_to")


def matched_run(cfg: DictConfig) -> tuple[Path, dict[str, Any]] | None:
    """`stage.match_steps_of`'s metrics.json (path and content), or None when unset."""
    ref = cfg.stage.get("match_steps_of")
    if ref is None:
        return None
    path = Path(str(ref)) / "metrics.json"
    if not path.is_file():
        raise ConfigError(f"stage.match_steps_of={ref}: no metrics.json of a task-distilled run there; run "
                          f"`python train.py stage=task` with the same seed first, or set stage.match_steps_of=null")
    return path, json.loads(path.read_text())


def step_budget(cfg: DictConfig) -> dict[str, Any]:
    """Trainer overrides for a step budget, which replaces `stage.epochs`: `stage.match_steps_of=<task-distilled run
    folder>` (as many optimiser steps as that run took in both phases, by its metrics.json: the budget of the
    no-distillation baseline), else `stage.max_steps` > 0; {} when neither is set."""
    matched = matched_run(cfg)
    if matched is None:
        max_steps = cfg.stage.get("max_steps", -1)
        # Otherwise Lightning would stop at whichever of epochs and steps comes first, short of the asked steps.
        return {"max_steps": int(max_steps), "max_epochs": -1} if max_steps and max_steps > 0 else {}
    path, data = matched
    steps = int(data.get("intermediate", {}).get("steps", 0)) + int(data.get("pred", {}).get("steps", 0))
    if steps <= 0:
        raise ConfigError(f"stage.match_steps_of={cfg.stage.match_steps_of}: {path} records no training steps")
    return {"max_steps": steps, "max_epochs": -1}


def evaluation_schedule(cfg: DictConfig, budget: dict[str, Any]) -> dict[str, Any]:
    """Trainer overrides for when to evaluate on dev. `stage.evals=<n>`: n evaluations spread evenly over the step
    budget (every ⌊steps / n⌋ steps, so the last comes at most n − 1 steps before the end); `stage.evals=matched`:
    as many as the `stage.match_steps_of` run's prediction phase made, so a baseline picks its best from as many
    dev evaluations as the distilled student did. `stage.evals=null`: `stage.evals_per_epoch`."""
    evals = cfg.stage.get("evals")
    if evals is None:
        return validate_n_times_per_epoch(cfg, cfg.stage.evals_per_epoch, "stage.evals_per_epoch")
    if evals == "matched":
        matched = matched_run(cfg)
        if matched is None:
            raise ConfigError("stage.evals=matched counts the dev evaluations of the stage.match_steps_of run: set "
                              "stage.match_steps_of, or give a number (stage.evals=3)")
        path, data = matched
        evals = data.get("pred", {}).get("evaluations")
        if evals is None:
            raise ConfigError(f"stage.evals=matched: {path} does not record its prediction phase's dev evaluations "
                              f"(runs before pred.evaluations existed); give their number, e.g. stage.evals=3")
    if isinstance(evals, bool) or not isinstance(evals, int) or evals < 1:
        raise ConfigError(f"stage.evals={evals}: expected a whole number of dev evaluations, at least 1, or matched")
    steps = budget.get("max_steps", -1)
    if steps <= 0:
        raise ConfigError(f"stage.evals={cfg.stage.evals} spreads evaluations over a step budget: set "
                          f"stage.match_steps_of or stage.max_steps, or use stage.evals_per_epoch")
    if evals > steps:
        raise ConfigError(f"stage.evals={evals}: more dev evaluations than the {steps} training steps")
    return validate_every_n_steps(cfg, steps // evals)


def run(cfg: DictConfig) -> dict[str, Any]:
    task = load_task(cfg)
    st = cfg.stage
    compare_to, teacher = comparison_teacher(cfg, task)  # checked before training, not after
    budget = step_budget(cfg)
    schedule = evaluation_schedule(cfg, budget)  # its errors before any loading
    tokenizer = load_tokenizer(st.model)
    if compare_to is not None and load_config(compare_to).vocab_size < len(tokenizer):
        raise ConfigError(f"stage.compare_to={compare_to}: its vocabulary is smaller than the tokenizer of "
                          f"stage.model={st.model}; latency is measured on the same token ids for both")
    datamodule = GlueDataModule(
        task,
        tokenizer,
        max_seq_length=cfg.task.max_seq_length,
        data_dir=cfg.paths.data_dir,
        cache_dir=cfg.paths.cache_dir,
        batch_size=st.batch_size,
        eval_batch_size=st.eval_batch_size,
        num_workers=cfg.data.num_workers,
        group_by_length=cfg.data.group_by_length,
        pad_to_max_length=cfg.data.pad_to_max_length,
        seed=cfg.seed,
    )
    module = FinetuneModule(
        load_classifier(st.model, task),
        task,
        lr=st.lr,
        weight_decay=st.weight_decay,
        warmup_proportion=st.warmup_proportion,
        schedule=st.schedule,
        **optimizer_options(st),
    )
    checkpoint, evaluations = best_checkpoint_callback(cfg, task), EvaluationCount()
    trainer = build_trainer(cfg, callbacks=[checkpoint, evaluations], **schedule, **budget)
    trainer.fit(module, datamodule=datamodule, ckpt_path=cfg.ckpt_path)
    made = evaluations.count  # before validate_best, whose checkpoint restores the count saved with it
    metrics = dev_metrics(task, validate_best(trainer, module, datamodule, checkpoint))
    result: dict[str, Any] = {
        "stage": "finetune",
        "task": task.name,
        "task_spec": task.summary(),  # a user's task's labels and metrics, for the report
        "run": run_name(cfg),
        "model": str(st.model),
        "seed": cfg.seed,
        "epochs": st.epochs if not budget else None,
        "steps": trainer.global_step,
        "matched_steps_of": str(st.match_steps_of) if st.get("match_steps_of") is not None else None,
        "lr": st.lr,
        "evaluations": made,
        "best_checkpoint": recorded_path(checkpoint.best_model_path),
        **metrics,
        "parameters": {"model": count_parameters(module.classifier)},
    }
    models = {"model": module.classifier}
    if teacher is not None:
        models["teacher"] = teacher
        result["teacher_dir"] = compare_to
        result["parameters"]["teacher"] = count_parameters(teacher)
    add_yardsticks(cfg, task, result, compare_to)
    if trainer.is_global_zero:
        if st.measure_latency:
            add_latency(cfg, result, models, datamodule, own="model")
        out = export_pretrained(
            st.output_dir, module.classifier, tokenizer, json_files={"metrics.json": result, **task_json(cfg, task)}
        )
        # The run's own log folder gets a copy, so a sweep folder alone is enough for the report.
        Path(cfg.paths.output_dir).mkdir(parents=True, exist_ok=True)
        atomic_write_text(Path(cfg.paths.output_dir) / "result.json", json.dumps(result, indent=2) + "\n")
        log.info("fine-tuned model: %s", out)
        log.info("dev metrics: %s", metrics)
        result["output_dir"] = str(out)
    return result
