"""Checks of a run's config and inputs before any model is built, any data tokenised or anything written.

`check_run(cfg)` runs in `stages.run` before any stage starts. Each problem is one line (ConfigError or DataError;
train.py: exit code 2) naming the option or file and the value:

- **progress**: ``trainer.progress`` one of auto/bar/log, ``trainer.progress_every_s`` >= 0;
- **numbers**: ``seed`` a whole number in NumPy's seed range; every learning rate the stage uses > 0 (named by the
  option the user sets: ``stage.pred.lr`` is ``${distill.pred_lr}``, so the error names ``distill.pred_lr``); every
  batch size and ``max_seq_length`` a whole number >= 1;
- **ckpt_path**: an existing, intact checkpoint file (its zip structure and CRCs read, nothing unpickled);
- **data source**: ``paths.data_dir`` set where the run cannot do without it (offline GLUE, the default corpus);
- **models**: every model folder the stage loads has a readable config of a supported model type, intact
  ``*.safetensors`` files, and room for ``max_seq_length`` positions;
- **GLUE files**: the train and dev files the stage reads parse (UTF-8, columns, labels: finite numbers for
  regression), so a bad dev file stops the run before the train split is tokenised and cached.

The teacher checks that need the loaded models (untrained head, wrong task, vocabularies, weak teacher) are in
`checks.py`; the corpus is checked as it is read (`data.corpus`, before tokenising and before its cache is written).
"""

from __future__ import annotations

import math
import os
import re
import zipfile
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from omegaconf import DictConfig, OmegaConf
from transformers import AutoConfig, PretrainedConfig

from tinydistill.data.files import examples, is_custom, load_task
from tinydistill.data.glue_tsv import glue_file, read_glue_tsv
from tinydistill.data.tasks import get_task
from tinydistill.errors import ConfigError, DataError
from tinydistill.models.loading import PACKAGE_SCHEME, resolve_model_path
from tinydistill.models.student import student_config
from tinydistill.progress import check_progress_settings

#: Lightning's seed_everything (NumPy) accepts these seeds.
SEED_RANGE = (0, 2**32 - 1)
#: Learning rates, batch sizes and sequence lengths each stage reads (stage=general covers distill=distilbert).
LEARNING_RATES = {
    "finetune": ("stage.lr",),
    "mlm": ("stage.lr",),
    "general": ("stage.lr",),
    "task": ("stage.intermediate.lr", "stage.pred.lr"),
}
BATCH_SIZES = ("stage.batch_size", "stage.eval_batch_size", "stage.latency_batch_size")
SEQUENCE_LENGTH = {"finetune": "task.max_seq_length", "task": "task.max_seq_length",
                   "mlm": "stage.max_seq_length", "general": "stage.max_seq_length"}
#: Model types whose attention goes through transformers' AttentionInterface (models/capture.py) and whose
#: classifiers train on these batches; tests/test_bad_input.py runs each through both with a tiny random model.
ENCODER_TYPES = frozenset({"albert", "bert", "camembert", "distilbert", "electra", "roberta", "xlm-roberta"})
#: Task phase 1 trains the student's parameters under `.embeddings.` and `.encoder.` (modules/task.py); DistilBERT
#: calls its layers `.transformer.`, so its phase 1 would train the embeddings only.
STUDENT_TYPES = ENCODER_TYPES - {"distilbert"}
#: stage=mlm loads BertForMaskedLM; the DistilBERT baseline copies BERT layers (models/distilbert.py).
BERT_ONLY = frozenset({"bert"})
#: RoBERTa-style embeddings number positions from pad_token_id + 1.
OFFSET_POSITIONS = frozenset({"camembert", "roberta", "xlm-roberta"})
#: ckpt_path values Lightning resolves itself instead of reading a file.
LIGHTNING_CKPT_NAMES = ("last", "best", "hpc", "registry")
#: Environment variables that keep `datasets` and the hub offline; values huggingface_hub reads as true.
OFFLINE_VARIABLES = ("HF_HUB_OFFLINE", "HF_DATASETS_OFFLINE")
TRUE_VALUES = ("1", "on", "yes", "true")

TASK_TEACHER = "stage=task as teacher"

_REFERENCE = re.compile(r"\$\{([\w.]+)\}")


def check_run(cfg: DictConfig) -> None:
    """All checks of this module for `cfg.stage.name`, cheapest first; raises on the first problem."""
    stage = str(cfg.stage.name)
    check_seed(cfg.get("seed"))
    for key in LEARNING_RATES.get(stage, ()):
        check_learning_rate(cfg, key)
    for key in BATCH_SIZES:
        if OmegaConf.select(cfg, key) is not None:
            check_positive_int(cfg, key, "a batch size")
    if OmegaConf.select(cfg, "stage.latency_max_examples") is not None:
        check_positive_int(cfg, "stage.latency_max_examples", "a number of examples")
    if stage in SEQUENCE_LENGTH:
        check_positive_int(cfg, SEQUENCE_LENGTH[stage], "a sequence length")
    check_progress_settings(cfg.trainer.get("progress", "auto"), cfg.trainer.get("progress_every_s", 60))
    check_checkpoint_file(cfg.get("ckpt_path"))
    check_data_source(cfg)
    check_models(cfg)
    check_glue_files(cfg)


# ---------------------------------------------------------------------------------------------- numbers


def origin(cfg: DictConfig, key: str) -> str:
    """`key` followed through plain interpolations to the option a user sets (stage.pred.lr -> distill.pred_lr)."""
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


# ---------------------------------------------------------------------------------------------- checkpoint


def check_checkpoint_file(ckpt: Any) -> None:
    """A local checkpoint file whose zip structure and CRCs are intact (torch.save's format; nothing unpickled).
    URLs are refused before, by `ckpt_path.check_ckpt_path`."""
    if ckpt is None or str(ckpt) in LIGHTNING_CKPT_NAMES:
        return
    path = Path(str(ckpt)).expanduser()
    if not path.is_file():
        raise ConfigError(f"ckpt_path={ckpt}: no such checkpoint file (resume from "
                          f"<run dir>/checkpoints/last.ckpt, or set ckpt_path=null)")
    try:
        with zipfile.ZipFile(path) as archive:
            if not any(n.rsplit("/", 1)[-1] == "data.pkl" for n in archive.namelist()):
                problem = "not a PyTorch checkpoint (no data.pkl inside)"
            else:
                damaged = archive.testzip()  # reads every member and compares its CRC
                problem = f"damaged ({damaged} fails its CRC check)" if damaged else ""
    except (zipfile.BadZipFile, OSError, EOFError) as e:
        problem = f"not a readable checkpoint, truncated or of another format ({_first_line(e)})"
    if problem:
        raise DataError(f"ckpt_path={ckpt}: {problem}; resume from another checkpoint or set ckpt_path=null")


# ---------------------------------------------------------------------------------------------- data source


def offline_variable() -> str | None:
    """The environment variable that makes this run offline, if any."""
    return next((v for v in OFFLINE_VARIABLES if os.environ.get(v, "").strip().lower() in TRUE_VALUES), None)


def check_data_source(cfg: DictConfig) -> None:
    """`paths.data_dir` where the run needs it: GLUE offline (the hub is the fallback) and the default corpus."""
    if cfg.paths.get("data_dir") is not None:
        return
    stage, offline = str(cfg.stage.name), offline_variable()
    if stage in ("finetune", "task") and is_custom(cfg.task):
        return  # a user's task names its own files
    hint = "set TINYDISTILL_DATA_DIR or paths.data_dir to the data folder"
    if stage in ("finetune", "task") and offline:
        raise ConfigError(f"paths.data_dir is not set and {offline}={os.environ[offline]}: GLUE cannot come from "
                          f"the hub offline; {hint} (it holds glue/{get_task(cfg.task.name).folder}/)")
    if stage == "task" and cfg.aug.get("enabled"):
        raise ConfigError(f"paths.data_dir is not set: aug=on reads <data_dir>/glue/<Task>/train.tsv; {hint}")
    corpus = cfg.stage.get("corpus")
    if stage in ("general", "mlm") and corpus is not None and corpus.get("dataset") is None:
        raw = OmegaConf.to_container(corpus, resolve=False).get("path")
        if isinstance(raw, str) and "${paths.data_dir}" in raw:
            raise ConfigError(f"paths.data_dir is not set, and stage.corpus.path={raw} needs it; {hint} (it holds "
                              f"corpus/general_corpus.txt), or point stage.corpus.path at a text file")


# ---------------------------------------------------------------------------------------------- models


def _first_line(e: BaseException) -> str:
    text = str(e).strip()
    return text.splitlines()[0] if text else type(e).__name__


def check_weight_files(folder: Path) -> None:
    """Every `*.safetensors` in `folder` has an intact header that covers the whole file (cheap: a memory map)."""
    from safetensors import safe_open

    for file in sorted(folder.glob("*.safetensors")):
        try:
            with safe_open(str(file), "pt"):
                pass
        except Exception as e:  # noqa: BLE001 - SafetensorError and OSError: one line naming the file
            raise DataError(f"{file}: corrupt or truncated safetensors file ({_first_line(e)}); export or "
                            f"download the model again") from None


def model_config(label: str, ref: Any) -> PretrainedConfig:
    """The config of the model `label` (``option=value`` for errors) names, after checking a local folder's
    weight files."""
    try:
        resolved = resolve_model_path(str(ref))
    except ConfigError as e:
        raise ConfigError(f"{label}: {e}") from None
    folder = Path(resolved)
    try:
        config = AutoConfig.from_pretrained(resolved)
    except Exception as e:  # noqa: BLE001 - bad JSON, unknown model type, hub errors: one line
        where = folder / "config.json" if folder.is_dir() else label
        raise ConfigError(f"{where}: cannot read the model's config ({type(e).__name__}: {_first_line(e)})") from None
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


def stage_models(cfg: DictConfig) -> Iterator[tuple[str, Any, frozenset[str], str]]:
    """(``option=value`` for errors, reference, allowed model types, role) of each pretrained model the stage
    loads."""
    stage, st = str(cfg.stage.name), cfg.stage

    def model(key: str, allowed: frozenset[str], role: str) -> tuple[str, Any, frozenset[str], str]:
        return setting(cfg, key, quote=False), OmegaConf.select(cfg, key), allowed, role

    if stage == "finetune":
        yield model("stage.model", ENCODER_TYPES, "stage=finetune")
        if st.get("compare_to") is not None and _has_model(st.compare_to):
            yield model("stage.compare_to", ENCODER_TYPES, "stage.compare_to")
    elif stage == "mlm":
        yield model("stage.model", BERT_ONLY, "stage=mlm (BertForMaskedLM)")
    elif stage == "general" and cfg.distill.name == "distilbert":
        yield model("distill.teacher", BERT_ONLY, "the DistilBERT baseline")
    elif stage in ("general", "init_student"):
        yield model("stage.teacher", ENCODER_TYPES, f"stage={stage} as teacher")
    elif stage == "task":
        if _has_model(st.teacher):
            yield model("stage.teacher", ENCODER_TYPES, TASK_TEACHER)
        init = str(cfg.student.init)
        if init == "general" and _has_model(st.general_dir):
            yield model("stage.general_dir", STUDENT_TYPES, "stage=task as student (student.init=general)")
        elif init not in ("general", "random") and _has_model(init):
            yield model("student.init", STUDENT_TYPES, "stage=task as student")


def check_models(cfg: DictConfig) -> None:
    """Config, model type, weight files and position limit of every model the stage loads."""
    stage = str(cfg.stage.name)
    length_key = SEQUENCE_LENGTH.get(stage)
    teacher: PretrainedConfig | None = None
    for label, ref, allowed, role in stage_models(cfg):
        if not _checkable(ref):
            continue
        config = model_config(label, ref)
        check_model_type(label, config, allowed, role)
        if length_key is not None:
            check_length(cfg, length_key, label, config)
        if role == TASK_TEACHER:
            teacher = config
    if stage == "task" and str(cfg.student.init) == "random" and teacher is not None:
        student = student_config(cfg.student, teacher)  # a random student takes its positions from the teacher
        check_length(cfg, "task.max_seq_length", f"the random student (student={cfg.student.name})", student)


# ---------------------------------------------------------------------------------------------- GLUE files


def check_glue_files(cfg: DictConfig) -> None:
    """Parse the train and dev files a task stage reads; DataError names file and line (or row and column) of the
    first problem. A user's task is built here, so its keys and class list are checked too."""
    if str(cfg.stage.name) not in ("finetune", "task"):
        return
    if is_custom(cfg.task):
        task = load_task(cfg)
        for split in ("train", *task.dev_splits):
            examples(task, split)
        return
    if cfg.paths.get("data_dir") is None:
        return
    task = get_task(cfg.task.name)
    for split in ("train", *task.dev_splits):
        read_glue_tsv(glue_file(cfg.paths.data_dir, task, split), task)
