"""Released checkpoints as students: a folder or a hub name, including the configs without ``model_type``.

TinyBERT's released general students (``huawei-noah/TinyBERT_General_4L_312D`` and its siblings) and Google's BERT
miniatures ship a BERT ``config.json`` without ``model_type``, which ``AutoConfig`` rejects unless the name happens to
contain "bert". `checkpoint_config` recognises such a config by BERT's own settings and loads it as ``BertConfig``,
saying so in one log line. TinyBERT's weights also hold the projections of its general distillation, student width
to teacher width: one shared ``fit_dense`` (the reference code's) or one ``fit_denses.<i>`` per hidden state
(embeddings, then each layer: the released checkpoints'); `fit_dense_tensors` reads them for
`distill.intermediate.Projections.from_fit_denses`.

Every file comes through transformers' own hub code (``PretrainedConfig.get_config_dict``, ``cached_file``): a hub
name is downloaded once and then read from the Hugging Face cache, as ``from_pretrained`` does.
"""

from __future__ import annotations

import logging
import re

from torch import Tensor
from transformers import AutoConfig, BertConfig, PretrainedConfig, PreTrainedModel
from transformers.utils import SAFE_WEIGHTS_NAME, WEIGHTS_NAME, cached_file

from tinydistill.data.tasks import Task
from tinydistill.errors import ConfigError, first_line
from tinydistill.models.loading import load_as_classifier, resolve_model_path

log = logging.getLogger(__name__)

#: A config.json without model_type is read as BERT's when it has all of these (TinyBERT's and Google's do).
BERT_SETTINGS = ("vocab_size", "hidden_size", "num_hidden_layers", "num_attention_heads", "intermediate_size",
                 "type_vocab_size", "max_position_embeddings")
#: `fit_dense.weight` (shared) or `fit_denses.3.bias` (one per hidden state), under any prefix.
FIT_DENSE = re.compile(r"(?:^|\.)(fit_denses?)\.(?:(\d+)\.)?(weight|bias)$")
#: Checkpoints already announced as BERT (the pre-run checks and the stage both read the config: one line).
_ANNOUNCED: set[str] = set()


def resolve_checkpoint(name_or_path: str, setting: str) -> str:
    """`resolve_model_path` (folder, `pkg:` or hub name), and for a hub name its config fetched now (or read from
    the Hugging Face cache), so a name that cannot be reached stops the run in one line naming `setting`."""
    try:
        resolved = resolve_model_path(name_or_path)
    except ConfigError as e:
        raise ConfigError(f"{setting}: {e}") from None
    try:
        PretrainedConfig.get_config_dict(resolved)
    except OSError as e:
        raise ConfigError(f"{setting}={name_or_path}: no model folder of that name, and the Hugging Face hub cannot "
                          f"give it ({first_line(e)}); download it once with network access (it is then read from "
                          f"the Hugging Face cache) or point {setting} at a model folder") from None
    return resolved


def checkpoint_config(name_or_path: str, label: str | None = None) -> PretrainedConfig:
    """The checkpoint's config: ``AutoConfig``'s, or ``BertConfig`` for a config.json without ``model_type`` that has
    BERT's settings (logged once). `label` names it in messages (default: the path)."""
    path = resolve_model_path(name_or_path)
    settings, _ = PretrainedConfig.get_config_dict(path)
    if "model_type" in settings:
        return AutoConfig.from_pretrained(path)
    label = label or str(name_or_path)
    missing = [k for k in BERT_SETTINGS if k not in settings]
    if missing:
        raise ConfigError(f"{label}: config.json has no model_type, and it is not a BERT config either (it lacks "
                          f"{', '.join(missing)}); add the model_type of its architecture to config.json")
    if path not in _ANNOUNCED:
        _ANNOUNCED.add(path)
        extra = " and TinyBERT's fit_size" if "fit_size" in settings else ""
        log.info("%s: config.json has no model_type but BERT's settings%s (a TinyBERT or Google BERT release): "
                 "loading it as BERT", label, extra)
    return BertConfig.from_pretrained(path)


def load_student_classifier(name_or_path: str, task: Task, label: str) -> PreTrainedModel:
    """A student classifier for `task` from a folder or hub name (`load_as_classifier`); a config.json without
    model_type is read as `checkpoint_config` reads it."""
    config = checkpoint_config(name_or_path, label)
    declared = "model_type" in PretrainedConfig.get_config_dict(resolve_model_path(name_or_path))[0]
    return load_as_classifier(name_or_path, task, config=None if declared else config)


def fit_dense_tensors(name_or_path: str) -> dict[str, Tensor]:
    """The checkpoint's TinyBERT projections, ``{"fit_dense.weight": ..}`` or ``{"fit_denses.0.weight": ..}`` (prefixes
    dropped); {} when it has none. Reads the safetensors weights (lazily, only these tensors), else
    ``pytorch_model.bin`` (``weights_only``: tensors, nothing unpickled)."""
    path = resolve_model_path(name_or_path)
    file = cached_file(path, SAFE_WEIGHTS_NAME, _raise_exceptions_for_missing_entries=False)
    if file is not None:
        from safetensors import safe_open

        with safe_open(file, "pt") as f:
            return {_short(k): f.get_tensor(k) for k in f.keys() if FIT_DENSE.search(k)}  # noqa: SIM118 - not a dict
    file = cached_file(path, WEIGHTS_NAME, _raise_exceptions_for_missing_entries=False)
    if file is None:
        return {}
    import torch

    state = torch.load(file, map_location="cpu", weights_only=True, mmap=True)
    return {_short(k): v for k, v in state.items() if FIT_DENSE.search(k)}


def _short(key: str) -> str:
    name, index, kind = FIT_DENSE.search(key).groups()
    return f"{name}.{index}.{kind}" if index is not None else f"{name}.{kind}"
