"""The student: a randomly initialised ``BertModel`` shaped by ``cfg.student`` and compatible with the teacher.

Vocabulary, position and segment sizes and the activation/normalisation settings come from the teacher's config
(the student reads the teacher's ``input_ids`` with the teacher's tokenizer); depth and widths come from the
``student`` config group. Initialisation is BERT's (normal, std ``initializer_range``), as TinyBERT's
``from_scratch``.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from transformers import (
    AutoConfig,
    AutoModel,
    BertConfig,
    BertModel,
    PretrainedConfig,
    PreTrainedModel,
)

from tinydistill.errors import ConfigError
from tinydistill.models.loading import resolve_model_path

#: Copied from the teacher's config: the student must read the same inputs.
FROM_TEACHER = (
    "vocab_size",
    "max_position_embeddings",
    "type_vocab_size",
    "pad_token_id",
    "hidden_act",
    "layer_norm_eps",
    "hidden_dropout_prob",
    "attention_probs_dropout_prob",
    "initializer_range",
)
#: Keys of the student config group that are not BertConfig attributes.
NOT_ARCHITECTURE = ("name", "init")
REQUIRED = ("num_hidden_layers", "hidden_size", "num_attention_heads", "intermediate_size")


def student_config(student: Mapping[str, Any], teacher_config: PretrainedConfig) -> BertConfig:
    """A ``BertConfig`` from the teacher's input/normalisation settings and the student group's sizes.

    Any other key of the student group (e.g. ``max_position_embeddings``) overrides the value taken from the
    teacher.
    """
    missing = [k for k in REQUIRED if student.get(k) is None]
    if missing:
        raise ConfigError(f"student config lacks {missing} (see conf/student/*.yaml)")
    if student["hidden_size"] % student["num_attention_heads"]:
        raise ConfigError(
            f"student hidden_size={student['hidden_size']} is not a multiple of "
            f"num_attention_heads={student['num_attention_heads']}"
        )
    kwargs = {k: getattr(teacher_config, k) for k in FROM_TEACHER if getattr(teacher_config, k, None) is not None}
    if kwargs.get("type_vocab_size", 1) < 1:  # DeBERTa-v2/v3 have no token-type embeddings; tokenizers still give ids
        del kwargs["type_vocab_size"]  # BertConfig's 2
    kwargs.update({k: v for k, v in student.items() if k not in NOT_ARCHITECTURE})
    return BertConfig(**kwargs)


def build_student(student: Mapping[str, Any], teacher_config: PretrainedConfig, seed: int | None = None) -> BertModel:
    """A randomly initialised ``BertModel`` (with pooler, so a reload is complete and deterministic)."""
    import torch

    config = student_config(student, teacher_config)
    if seed is None:
        return BertModel(config)
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        return BertModel(config)


def load_encoder(name_or_path: str) -> PreTrainedModel:
    """A BERT-family encoder (``AutoModel``; the encoder of a classifier checkpoint works too)."""
    return AutoModel.from_pretrained(resolve_model_path(name_or_path))


def load_config(name_or_path: str) -> PretrainedConfig:
    return AutoConfig.from_pretrained(resolve_model_path(name_or_path))
