"""Pre-run checks: a run's config and inputs, before any model is built, any data tokenised or anything written.

`check_run(cfg, stage)` runs in `stages.run` before the stage's plan is made; what it checks comes from the stage's
own declarations (`tinydistill.contract`: its learning rates, sequence length, the data it reads and the models it loads). Each problem is one line (ConfigError or DataError;
train.py: exit code 2) naming the option or file and the value:

- **progress**: ``trainer.progress`` one of auto/bar/log, ``trainer.progress_every_s`` >= 0;
- **numbers**: ``seed`` a whole number in NumPy's seed range; every learning rate the stage uses > 0 (named by the
  option the user sets: stage=finetune's ``stage.lr`` is ``${teacher.finetune_lr}``, so the error names
  ``teacher.finetune_lr``); every
  batch size and ``max_seq_length`` a whole number >= 1;
- **ckpt_path**: an existing, intact checkpoint file (its zip structure and CRCs read, nothing unpickled);
- **data source**: ``paths.data_dir`` set where the run cannot do without it (offline GLUE, the default corpus);
- **models**: every model folder the stage loads has a readable config of a supported model type, intact
  ``*.safetensors`` files, and room for ``max_seq_length`` positions;
- **task files** (`check_task_files`, called by the stage's plan with the task it loaded): the train and dev files
  parse (UTF-8, columns, labels: finite numbers for regression), so a bad dev file stops the run before the train
  split is tokenised and cached.

The teacher checks that need the loaded models (untrained head, wrong task, vocabularies, weak teacher) are in
`teacher_checks.py`; the corpus is checked as it is read (`data.corpus`, before tokenising and before its cache is written).
"""

from __future__ import annotations

import math
import os
import re
from pathlib import Path
from typing import Any

from omegaconf import DictConfig, OmegaConf
from transformers import PretrainedConfig

from tinydistill.ckpt_path import check_checkpoint_file
from tinydistill.contract import Stage
from tinydistill.data.files import examples, is_custom
from tinydistill.data.glue_tsv import glue_file, read_glue_tsv
from tinydistill.data.tasks import Task, get_task
from tinydistill.errors import ConfigError, first_line
from tinydistill.models.loading import (
    PACKAGE_SCHEME,
    check_weight_files,
    resolve_model_path,
)
from tinydistill.models.masked_lm import FAMILIES as MASKED_LM_FAMILIES
from tinydistill.models.released import checkpoint_config
from tinydistill.models.student import OFFSET_POSITIONS, student_config
from tinydistill.offline import offline_variable
from tinydistill.progress import check_progress_settings

#: Lightning's seed_everything (NumPy) accepts these seeds.
SEED_RANGE = (0, 2**32 - 1)
BATCH_SIZES = ("stage.batch_size", "stage.eval_batch_size", "stage.latency_batch_size")
#: Model types whose attention goes through transformers' AttentionInterface (models/capture.py) and whose
#: classifiers train on these batches; tests/test_bad_input.py runs each through both with a tiny random model.
ENCODER_TYPES = frozenset({"albert", "bert", "camembert", "distilbert", "electra", "roberta", "xlm-roberta"})
#: Teachers (stage=task, stage=general, stage=init_student) and models stage=finetune fine-tunes into teachers: the
#: encoders above, DeBERTa-v2/v3 (its disentangled attention keeps its scores to itself: TinyBERT's attention loss is
#: refused, distill=minilm reads its queries, keys and values) and ModernBERT; tests/test_teacher_families.py runs a
#: tiny teacher of each through stage=task. Students: see STUDENT_TYPES.
TEACHER_TYPES = ENCODER_TYPES | {"deberta-v2", "modernbert"}
#: Task students: the encoders above (not DistilBERT, kept to the DistilBERT baseline) and the families
#: `student.family` builds (models/student.py; ModernBERT, whose attention capture tests/test_students.py runs);
#: task phase 1 trains their base model's parameters, the pooler aside (modules/task.py).
STUDENT_TYPES = (ENCODER_TYPES - {"distilbert"}) | {"modernbert"}
#: stage=mlm and the DistilBERT baseline train masked LMs of these families (models/masked_lm.py).
MASKED_LM_TYPES = frozenset(MASKED_LM_FAMILIES)

_REFERENCE = re.compile(r"\$\{([\w.]+)\}")


def check_run(cfg: DictConfig, stage: Stage) -> None:
    """Every check of this module for `stage` (a stage module, `tinydistill.contract`), cheapest first; raises on the
    first problem."""
    check_seed(cfg.get("seed"))
    for key in stage.LEARNING_RATES:
        check_learning_rate(cfg, key)
    for key in BATCH_SIZES:
        if OmegaConf.select(cfg, key) is not None:
            check_positive_int(cfg, key, "a batch size")
    if OmegaConf.select(cfg, "stage.latency_max_examples") is not None:
        check_positive_int(cfg, "stage.latency_max_examples", "a number of examples")
    if stage.SEQUENCE_LENGTH is not None:
        check_positive_int(cfg, stage.SEQUENCE_LENGTH, "a sequence length")
    check_progress_settings(cfg.trainer.get("progress", "auto"), cfg.trainer.get("progress_every_s", 60))
    check_checkpoint_file(cfg.get("ckpt_path"))
    check_data_source(cfg, stage.READS)
    check_models(cfg, stage)


# ---------------------------------------------------------------------------------------------- numbers


def origin(cfg: DictConfig, key: str) -> str:
    """`key` followed through plain interpolations to the option a user sets (stage=finetune's stage.lr ->
    teacher.finetune_lr, the teacher group's recipe rate)."""
    for _ in range(10):  # an interpolation cycle fails in OmegaConf itself
        parent_key, _, leaf = key.rpartition(".")
        parent = OmegaConf.select(cfg, parent_key) if parent_key else cfg
        if not isinstance(parent, DictConfig) or leaf not in parent:
            break
        raw = OmegaConf.to_container(parent, resolve=False).get(leaf)
        match = _REFERENCE.fullmatch(raw) if isinstance(raw, str) else None
        if match is None:
            break
        key = match.group(1)
    return key


def setting(cfg: DictConfig, key: str, quote: bool = True) -> str:
    """`option=value` for an error, naming where the value was set when that is another option (strings quoted
    unless `quote` is false: paths read better bare)."""
    source = origin(cfg, key)
    value = OmegaConf.select(cfg, key)
    shown = repr(value) if quote and isinstance(value, str) else str(value)
    return f"{source}={shown}" + (f" (used as {key})" if source != key else "")


def _number(value: Any) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool)


def check_seed(seed: Any) -> None:
    low, high = SEED_RANGE
    if not (isinstance(seed, int) and not isinstance(seed, bool) and low <= seed <= high):
        shown = repr(seed) if isinstance(seed, str) else seed
        raise ConfigError(f"seed={shown}: expected a whole number from {low} to {high}")


def check_learning_rate(cfg: DictConfig, key: str) -> None:
    value = OmegaConf.select(cfg, key)
    if not (_number(value) and math.isfinite(value) and value > 0):
        raise ConfigError(f"{setting(cfg, key)}: a learning rate must be a number > 0")


def check_positive_int(cfg: DictConfig, key: str, what: str) -> None:
    value = OmegaConf.select(cfg, key)
    if not (isinstance(value, int) and not isinstance(value, bool) and value >= 1):
        raise ConfigError(f"{setting(cfg, key)}: {what} must be a whole number >= 1")


# ---------------------------------------------------------------------------------------------- data source


def check_data_source(cfg: DictConfig, reads: frozenset[str]) -> None:
    """`paths.data_dir` where the run needs it: GLUE offline (the hub is the fallback), augmentation of a GLUE task,
    and the default corpus. `reads`: the stage's `READS`."""
    if cfg.paths.get("data_dir") is not None:
        return
    offline = offline_variable()
    if "task" in reads and is_custom(cfg.task):
        return  # a user's task names its own files
    hint = "set TINYDISTILL_DATA_DIR or paths.data_dir to the data folder"
    if "task" in reads and offline:
        raise ConfigError(f"paths.data_dir is not set and {offline}={os.environ[offline]}: GLUE cannot come from "
                          f"the hub offline; {hint} (it holds glue/{get_task(cfg.task.name).folder}/)")
    if "augmentation" in reads and cfg.aug.get("enabled"):
        raise ConfigError(f"paths.data_dir is not set: aug=on reads <data_dir>/glue/<Task>/train.tsv; {hint}")
    corpus = cfg.stage.get("corpus")
    if "corpus" in reads and corpus is not None and corpus.get("dataset") is None:
        raw = OmegaConf.to_container(corpus, resolve=False).get("path")
        if isinstance(raw, str) and "${paths.data_dir}" in raw:
            raise ConfigError(f"paths.data_dir is not set, and stage.corpus.path={raw} needs it; {hint} (it holds "
                              f"corpus/general_corpus.txt), or point stage.corpus.path at a text file")


# ---------------------------------------------------------------------------------------------- models


def model_config(label: str, ref: Any) -> PretrainedConfig:
    """The config of the model `label` (``option=value`` for errors) names, after checking a local folder's
    weight files."""
    try:
        resolved = resolve_model_path(str(ref))
    except ConfigError as e:
        raise ConfigError(f"{label}: {e}") from None
    folder = Path(resolved)
    try:
        config = checkpoint_config(resolved, label)  # also a BERT config.json without model_type (TinyBERT's)
    except Exception as e:  # noqa: BLE001 - bad JSON, unknown model type, hub errors: one line
        where = folder / "config.json" if folder.is_dir() else label
        raise ConfigError(f"{where}: cannot read the model's config ({type(e).__name__}: {first_line(e)})") from None
    if folder.is_dir():
        check_weight_files(folder)
    return config


def check_model_type(label: str, config: PretrainedConfig, allowed: frozenset[str], role: str) -> None:
    kind = getattr(config, "model_type", None)
    if kind not in allowed:
        raise ConfigError(f"{label} is a {kind!r} model, not an encoder {role} can use "
                          f"(model types: {', '.join(sorted(allowed))})")


def position_limit(config: PretrainedConfig) -> int | None:
    """How many positions the model embeds (RoBERTa-style models lose pad_token_id + 1 of them)."""
    limit = getattr(config, "max_position_embeddings", None)
    if limit is not None and getattr(config, "model_type", None) in OFFSET_POSITIONS:
        limit -= (getattr(config, "pad_token_id", None) or 0) + 1
    return limit


def check_length(cfg: DictConfig, length_key: str, label: str, config: PretrainedConfig) -> None:
    length, limit = OmegaConf.select(cfg, length_key), position_limit(config)
    if limit is not None and length > limit:
        raise ConfigError(f"{setting(cfg, length_key)} exceeds the {limit} positions of {label} "
                          f"(max_position_embeddings={config.max_position_embeddings}); lower {origin(cfg, length_key)}")


def _has_model(ref: Any) -> bool:
    """A local folder with a config (stages give their own hint when a folder they expect is missing)."""
    return (Path(str(ref)).expanduser() / "config.json").is_file()


def _checkable(ref: Any) -> bool:
    """A package model, a hub name, or a model folder; not a path to nothing (the stage's own error says which
    stage makes it, e.g. distill.teacher -> stage=mlm)."""
    text = str(ref)
    if text.startswith(PACKAGE_SCHEME) or _has_model(text):
        return True
    return not (Path(text).expanduser().exists() or text.startswith((".", "/", "~")) or text.count("/") > 1)


def check_models(cfg: DictConfig, stage: Stage) -> None:
    """Config, model type, weight files and position limit of every model the stage loads (`stage.models(cfg)`).
    A random task student takes its positions from the teacher, so that limit is checked against the teacher's."""
    length_key = stage.SEQUENCE_LENGTH
    configs: dict[str, PretrainedConfig] = {}
    for need in stage.models(cfg):
        ref = OmegaConf.select(cfg, need.key)
        if (need.if_present and not _has_model(ref)) or not _checkable(ref):
            continue
        label = setting(cfg, need.key, quote=False)
        config = model_config(label, ref)
        check_model_type(label, config, need.allowed, need.role)
        if length_key is not None:
            check_length(cfg, length_key, label, config)
        configs[need.key] = config
    teacher = configs.get("stage.teacher")
    if stage.NAME == "task" and str(cfg.student.init) == "random" and teacher is not None:
        student = student_config(cfg.student, teacher)
        check_length(cfg, "task.max_seq_length", f"the random student (student={cfg.student.name})", student)


# ---------------------------------------------------------------------------------------------- task files


def check_task_files(task: Task, data_dir: str | None) -> None:
    """Parse the train and dev files a task stage reads; DataError names file and line (or row and column) of the
    first problem. A user's task reads its own files; a GLUE task without a data folder comes from the hub."""
    if not task.is_glue:
        for split in ("train", *task.dev_splits):
            examples(task, split)
        return
    if data_dir is None:
        return
    for split in ("train", *task.dev_splits):
        read_glue_tsv(glue_file(data_dir, task, split), task)
