"""The student: a randomly initialised encoder shaped by ``cfg.student`` and compatible with the teacher.

``student.family`` picks its architecture, a transformers model type (`FAMILIES`): ``bert`` (default, a
``BertModel``), ``roberta``, ``electra`` or ``modernbert``; the config comes from transformers' own config class
(``AutoConfig.for_model``), the model from its Auto classes. Vocabulary, position and segment sizes and (BERT-like
families) the activation/normalisation settings come from the teacher's config (the student reads the teacher's
``input_ids`` with the teacher's tokenizer); depth and widths come from the ``student`` config group.
Initialisation is the family's own (BERT's: normal, std ``initializer_range``, as TinyBERT's ``from_scratch``).
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
#: Keys of the student config group that are not config attributes.
NOT_ARCHITECTURE = ("name", "init", "family")
REQUIRED = ("num_hidden_layers", "hidden_size", "num_attention_heads", "intermediate_size")
#: `student.family` values: transformers model types a student can be built from (docs/guide.md's family table).
FAMILIES = ("bert", "electra", "modernbert", "roberta")
#: RoBERTa-style embeddings number positions from pad_token_id + 1.
OFFSET_POSITIONS = frozenset({"camembert", "roberta", "xlm-roberta"})
#: Special-token ids ModernBERT's config holds (its defaults are ids of ModernBERT's own vocabulary).
SPECIAL_IDS = ("bos_token_id", "eos_token_id", "cls_token_id", "sep_token_id")
#: ModernBERT names BERT's settings differently; its dropouts and activation stay its own (its design, not BERT's).
MODERNBERT_FROM_TEACHER = ("vocab_size", "max_position_embeddings", "pad_token_id", "initializer_range", *SPECIAL_IDS)


def student_family(student: Mapping[str, Any]) -> str:
    """`student.family` (default ``bert``), checked."""
    family = str(student.get("family") or "bert")
    if family not in FAMILIES:
        raise ConfigError(f"student.family={family!r}: a student can be built as {', '.join(FAMILIES)} "
                          f"(docs/guide.md, model families)")
    return family


def teacher_settings(family: str, teacher_config: PretrainedConfig) -> dict[str, Any]:
    """What a `family` student takes from the teacher's config: the inputs it reads (and, BERT-like, the teacher's
    activation and normalisation). A RoBERTa-style student of a teacher that numbers positions from 0 gets the
    pad_token_id + 1 positions its embeddings skip."""
    keys = MODERNBERT_FROM_TEACHER if family == "modernbert" else FROM_TEACHER
    kwargs = {k: getattr(teacher_config, k) for k in keys if getattr(teacher_config, k, None) is not None}
    if family in OFFSET_POSITIONS and getattr(teacher_config, "model_type", None) not in OFFSET_POSITIONS:
        kwargs["max_position_embeddings"] += (kwargs.get("pad_token_id") or 0) + 1
    if family == "modernbert":  # ids the teacher's config lacks are not ModernBERT's defaults (other vocabulary)
        kwargs.update({k: None for k in SPECIAL_IDS if k not in kwargs})
    return kwargs


def student_config(student: Mapping[str, Any], teacher_config: PretrainedConfig) -> PretrainedConfig:
    """The `student.family` config (``BertConfig`` by default) from the teacher's input/normalisation settings and
    the student group's sizes.

    Any other key of the student group (e.g. ``max_position_embeddings``) overrides the value taken from the
    teacher.
    """
    family = student_family(student)
    missing = [k for k in REQUIRED if student.get(k) is None]
    if missing:
        raise ConfigError(f"student config lacks {missing} (see conf/student/*.yaml)")
    if student["hidden_size"] % student["num_attention_heads"]:
        raise ConfigError(
            f"student hidden_size={student['hidden_size']} is not a multiple of "
            f"num_attention_heads={student['num_attention_heads']}"
        )
    kwargs = teacher_settings(family, teacher_config)
    if kwargs.get("type_vocab_size", 1) < 1:  # DeBERTa-v2/v3 have no token-type embeddings; tokenizers still give ids
        del kwargs["type_vocab_size"]  # the student family's default
    if family == "electra":  # ELECTRA's default 128-wide embeddings would add a projection nobody asked for
        kwargs["embedding_size"] = student["hidden_size"]
    kwargs.update({k: v for k, v in student.items() if k not in NOT_ARCHITECTURE})
    if family == "bert":
        return BertConfig(**kwargs)
    return AutoConfig.for_model(family, **kwargs)


def build_student(student: Mapping[str, Any], teacher_config: PretrainedConfig,
                  seed: int | None = None) -> PreTrainedModel:
    """A randomly initialised encoder of `student.family` (a BERT with pooler, so a reload is complete and
    deterministic)."""
    import torch

    config = student_config(student, teacher_config)
    model_class = BertModel if isinstance(config, BertConfig) else AutoModel.from_config
    if seed is None:
        return model_class(config)
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        return model_class(config)


def load_encoder(name_or_path: str) -> PreTrainedModel:
    """A BERT-family encoder (``AutoModel``; the encoder of a classifier checkpoint works too)."""
    return AutoModel.from_pretrained(resolve_model_path(name_or_path))


def load_config(name_or_path: str) -> PretrainedConfig:
    return AutoConfig.from_pretrained(resolve_model_path(name_or_path))
