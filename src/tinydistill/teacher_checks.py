"""Checks that catch the classic distillation mistakes before any compute is spent.

Each check is a small function that raises :class:`ConfigError` (train.py: one log line, exit code 2) or
returns a warning text; the stages call them right after loading the models, before augmentation, teacher
logits or training:

- **untrained head** (`newly_initialised`, `load_teacher_classifier`, and `models.distilbert.load_mlm_teacher`):
  loading the teacher initialises weights its checkpoint lacks (a masked LM or a bare encoder loaded as a
  classifier gets a random classifier and pooler). Judged from transformers' own loading report
  (``output_loading_info=True``), not from file names.
- **wrong task** (`task_mismatch`): the teacher's number of labels, problem type or label names differ from the
  task's.
- **weak teacher** (`check_teacher_strength`): the teacher's freshly measured dev metric is not clearly above the
  constant predictor's (a teacher fine-tuned on another task with the same labels passes the first two checks).
- **vocabulary** (`tokenizer_difference`, `student_tokenizer`): teacher and student read text with different
  tokenizers; TinyBERT's intermediate losses compare the two models position by position, so only the prediction
  layer can be distilled (each model reading the texts with its own tokenizer), and asking for more stops the run.
- **augmentation model** (`aug_vocabulary_warning`): ``aug.mlm_model`` has another vocabulary than the task's
  tokenizer. A warning only: augmentation hands words, not token ids, to the student's tokenizer.

Callers: `stages/task/inputs.py` (all of them, in this order, before augmentation and teacher logits; the dev evaluation
the weak-teacher check reads is `stages/classifier.evaluate_teacher`), `stages/finetune.py` (``stage.compare_to``:
untrained head and wrong task) and `models/distilbert.py` (the masked-LM teacher's head).
"""

from __future__ import annotations

import logging
import math
import re
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from transformers import (
    AutoModelForSequenceClassification,
    AutoTokenizer,
    PretrainedConfig,
    PreTrainedModel,
    PreTrainedTokenizerBase,
)

from tinydistill.data.tasks import Task
from tinydistill.errors import ConfigError
from tinydistill.models.loading import load_reporting_fresh, load_tokenizer
from tinydistill.models.released import checkpoint_config

log = logging.getLogger(__name__)

#: transformers' placeholder label names (`LABEL_0`, ...): a checkpoint with these says nothing about its labels.
GENERIC_LABEL = re.compile(r"^LABEL_\d+$")
#: Mixed case and accents: an uncased and a cased tokenizer over the same vocabulary split it differently.
PROBE = "Hello WORLD, naïve Café Zürich"
#: How many weight names an error lists before "...".
SHOWN_KEYS = 4
#: Files that make a model folder carry its own tokenizer.
TOKENIZER_FILES = ("tokenizer.json", "vocab.txt", "tokenizer_config.json")


def _keys(keys: list[str]) -> str:
    return ", ".join(keys[:SHOWN_KEYS]) + (f" (+{len(keys) - SHOWN_KEYS} more)" if len(keys) > SHOWN_KEYS else "")


# ------------------------------------------------------------------ untrained heads


def load_teacher_classifier(path: str, task: Task, setting: str = "stage.teacher") -> PreTrainedModel:
    """The fine-tuned teacher for `task`, frozen (eval mode, no gradients), after the untrained-head and
    wrong-task checks. Its config then carries the task's labels, as `models.loading.load_as_classifier` gives."""
    # Load with the checkpoint's own config: forcing the task's num_labels would hide a wrong-task teacher
    # behind transformers' size-mismatch error (or re-initialise its head).
    model, fresh = load_reporting_fresh(AutoModelForSequenceClassification, path)
    if fresh:
        raise ConfigError(
            f"{setting}={path} is not a classifier fine-tuned on {task.name}: loading it initialises {_keys(fresh)} "
            f"at random (they are not in its checkpoint), so its logits would be noise; run `python train.py "
            f"stage=finetune task={task.name}` first (add stage.model={path} to fine-tune this model) and point "
            f"{setting} at its output"
        )
    reason = task_mismatch(model.config, task)
    if reason:
        raise ConfigError(
            f"{setting}={path} was fine-tuned for another task: {reason}; fine-tune a teacher with `python train.py "
            f"stage=finetune task={task.name}` and point {setting} at its output"
        )
    use_task_labels(model.config, task)
    return model.eval().requires_grad_(False)


# ------------------------------------------------------------------ wrong task


def problem_type(config: PretrainedConfig) -> str:
    """The config's problem type, or the one transformers infers at the first forward (1 output: regression)."""
    if config.problem_type:
        return str(config.problem_type)
    return "regression" if config.num_labels == 1 else "single_label_classification"


def label_names(config: PretrainedConfig) -> list[str] | None:
    """The config's label names in id order; None when they are transformers' placeholders (LABEL_0, ...)."""
    id2label = {int(k): str(v) for k, v in (config.id2label or {}).items()}
    names = [id2label.get(i, f"LABEL_{i}") for i in range(config.num_labels)]
    return None if all(GENERIC_LABEL.match(n) for n in names) else names


def task_mismatch(config: PretrainedConfig, task: Task, with_names: bool = True) -> str | None:
    """Why a classifier with `config` cannot be `task`'s teacher, or None if it can (`with_names=False`: its outputs
    only, not its label names).

    Placeholder label names (LABEL_0, ...) are accepted: hub checkpoints fine-tuned elsewhere often keep them; so
    are a GLUE preset's file labels ("0", "1"), which teachers fine-tuned before the presets had names carry.
    """
    want = "regression" if task.is_regression else "single_label_classification"
    if config.num_labels != task.num_labels:
        return f"it has {config.num_labels} output(s), {task.name} needs {task.num_labels}"
    if problem_type(config) != want:
        return f"its problem type is {problem_type(config)}, {task.name}'s is {want}"
    names = None if task.is_regression or not with_names else label_names(config)
    if names is not None and names not in (list(task.label_names), list(task.label_values)):
        return f"its labels are {names}, {task.name}'s are {list(task.label_names)}"
    return None


def use_task_labels(config: PretrainedConfig, task: Task) -> None:
    """Give a checked teacher's config the task's problem type and label names (placeholders replaced)."""
    config.problem_type = "regression" if task.is_regression else "single_label_classification"
    if not task.is_regression:
        config.id2label = dict(enumerate(task.label_names))
        config.label2id = {n: i for i, n in enumerate(task.label_names)}


# ------------------------------------------------------------------ weak teacher


def teacher_strength(
    task: Task, teacher_metrics: Mapping[str, Any], constant: Mapping[str, Any], margin: float
) -> dict[str, Any]:
    """The teacher's and the constant predictor's main metric on the main dev split, and whether the teacher is
    weak: not at least `margin` (absolute, in the metric's units) above the constant predictor."""
    split, metric = task.dev_splits[0], task.metric
    value = teacher_metrics.get(split, {}).get(metric)
    if value is None:
        raise ConfigError(f"the teacher's dev evaluation gave no {split} {metric} (is trainer.limit_val_batches 0?)")
    value = 0.0 if math.isnan(value) else float(value)  # a constant teacher has no correlation (as baselines.py)
    base = float(constant[split][metric])
    return {"split": split, "metric": metric, "teacher": value, "constant": base, "margin": margin,
            "weak": value < base + margin}


def check_teacher_strength(
    task: Task,
    teacher_metrics: Mapping[str, Any],
    constant: Mapping[str, Any],
    margin: Any,
    allow_weak: bool,
    teacher: str,
    setting: str = "stage.teacher",
) -> dict[str, Any]:
    """`teacher_strength`, raising ConfigError for a weak teacher unless `allow_weak` (then a warning). Returns the
    record the run keeps in metrics.json (`teacher_check`)."""
    if isinstance(margin, bool) or not isinstance(margin, (int, float)) or not margin >= 0:
        raise ConfigError(f"stage.min_teacher_margin={margin!r}: expected a number >= 0 (absolute, in metric units)")
    record = teacher_strength(task, teacher_metrics, constant, float(margin))
    if not record["weak"]:
        return {**record, "allowed_weak": False}
    figures = (
        f"its {record['split']} {record['metric']} is {record['teacher']:.4f}, the constant predictor's (always "
        f"{constant.get('prediction')!r}) {record['constant']:.4f}, and stage.min_teacher_margin={margin} asks for "
        f"at least {record['constant'] + record['margin']:.4f}"
    )
    if not allow_weak:
        raise ConfigError(
            f"{setting}={teacher} is too weak to teach {task.name}: {figures}. Was it fine-tuned on another task, too "
            f"briefly, or not at all? Fine-tune it with `python train.py stage=finetune task={task.name}`, or set "
            f"stage.allow_weak_teacher=true to distil it anyway"
        )
    log.warning("%s=%s is weak for %s: %s; distilling it anyway (stage.allow_weak_teacher=true)",
                setting, teacher, task.name, figures)
    return {**record, "allowed_weak": True}


# ------------------------------------------------------------------ vocabularies


def tokenizer_difference(a: PreTrainedTokenizerBase, b: PreTrainedTokenizerBase) -> str | None:
    """How tokenizer `b` reads text differently from `a` (vocabulary, then lower-casing/accents), or None."""
    va, vb = a.get_vocab(), b.get_vocab()
    if va != vb:
        ia, ib = {i: t for t, i in va.items()}, {i: t for t, i in vb.items()}
        differ = sorted(i for i in ia.keys() | ib.keys() if ia.get(i) != ib.get(i))
        example = f", e.g. id {differ[0]} is {ia.get(differ[0])!r} and {ib.get(differ[0])!r}" if differ else ""
        return f"their vocabularies differ ({len(va)} and {len(vb)} tokens; {len(differ)} token ids differ{example})"
    pa, pb = a.tokenize(PROBE), b.tokenize(PROBE)
    if pa != pb:
        return f"same vocabulary, but lower-casing or accent stripping differs ({PROBE!r} -> {pa} and {pb})"
    return None


def folder_tokenizer(path: str | Path) -> PreTrainedTokenizerBase | None:
    """The tokenizer saved in a model folder (or hub repository), or None if it has none."""
    if Path(path).is_dir():
        return AutoTokenizer.from_pretrained(str(path)) if any((Path(path) / f).is_file() for f in TOKENIZER_FILES) \
            else None
    try:
        return load_tokenizer(str(path))
    except (OSError, ValueError):  # a hub repository without tokenizer files
        return None


def student_tokenizer(
    teacher_tokenizer: PreTrainedTokenizerBase, teacher: str, student: str, student_setting: str = "student.init",
    intermediate: str | None = None,
) -> PreTrainedTokenizerBase:
    """The tokenizer the student reads: its own when it has one that reads text differently from the teacher's (then
    only the prediction layer can be distilled, each model reading the same texts with its own tokenizer; one log
    line says so), else the teacher's, whose ids the student's embedding matrix must then cover.

    `intermediate` (what asks for intermediate layers, e.g. ``stage.phase=both``) makes another tokenizer an error:
    TinyBERT's intermediate losses compare the two models position by position over the same token ids."""
    why = (f"TinyBERT's intermediate losses compare teacher and student position by position over the same token "
           f"ids; general-distil the student from this teacher's pretrained model (`python train.py stage=general "
           f"teacher.name_or_path=<it>`) or set {student_setting}=random")
    own = folder_tokenizer(student)
    diff = None if own is None else tokenizer_difference(teacher_tokenizer, own)
    if diff and intermediate:
        raise ConfigError(f"{student_setting}={student} and stage.teacher={teacher} use different tokenizers: {diff}, "
                          f"and {intermediate} asks for intermediate layers. {why}, or set stage.phase=pred to "
                          f"distil the prediction layer only (each model reading the texts with its own tokenizer)")
    if diff:
        log.info("%s=%s and stage.teacher=%s use different tokenizers (%s): distilling the prediction layer only, each "
                 "model reading the same texts with its own tokenizer", student_setting, student, teacher, diff)
        return own
    vocab_size = checkpoint_config(student, student_setting).vocab_size
    if vocab_size < len(teacher_tokenizer):
        raise ConfigError(f"{student_setting}={student} has a vocabulary of {vocab_size} tokens, the tokenizer of "
                          f"stage.teacher={teacher} {len(teacher_tokenizer)}. {why}")
    return teacher_tokenizer


def whole_words(tokenizer: PreTrainedTokenizerBase) -> set[str]:
    """Vocabulary entries that can stand as a word: no `##` continuation pieces, no [bracketed] specials."""
    return {t for t in tokenizer.get_vocab() if not t.startswith("##") and not (t.startswith("[") and t.endswith("]"))}


def aug_vocabulary_warning(
    mlm_tokenizer: PreTrainedTokenizerBase, mlm: str, task_tokenizer: PreTrainedTokenizerBase, teacher: str
) -> str | None:
    """A one-line warning when `aug.mlm_model` reads text differently from the task's tokenizer, or None.

    Only a warning: augmentation writes words into a TSV and the student's tokenizer reads them like any text, so
    nothing breaks; but replacement words outside the student's vocabulary reach it as word pieces or [UNK].
    """
    diff = tokenizer_difference(task_tokenizer, mlm_tokenizer)
    if diff is None:
        return None
    mlm_words = whole_words(mlm_tokenizer)
    foreign = len(mlm_words - whole_words(task_tokenizer)) / max(len(mlm_words), 1)
    return (f"aug.mlm_model={mlm} and the task's tokenizer (stage.teacher={teacher}) differ: {diff}; "
            f"{foreign:.0%} of the masked LM's whole-word tokens are not whole words for the student, so its "
            f"replacements may reach the student as word pieces or [UNK]. Continuing (a warning: augmentation "
            f"exchanges words, not token ids); use the teacher's masked LM (stage=mlm) to avoid it")
