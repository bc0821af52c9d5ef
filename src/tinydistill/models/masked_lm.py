"""Masked LMs of the families that `stage=mlm` and the DistilBERT baseline train: the encoder and the head, apart.

Both stages run the encoder on every token and the masked-LM head only at the positions a loss reads (the
vocabulary projection is most of a small model's cost), so they need the two parts separately. Each family's
``*ForMaskedLM`` class names them differently; this table is the one place that knows how:

============  ===================  ============  ===================================
model_type    class                encoder       head (weights' prefix)
============  ===================  ============  ===================================
bert          BertForMaskedLM      ``bert``      ``cls`` (``cls.predictions.``)
roberta       RobertaForMaskedLM   ``roberta``   ``lm_head`` (``lm_head.``)
xlm-roberta   XLMRobertaForMLM     ``roberta``   ``lm_head``
camembert     CamembertForMLM      ``roberta``   ``lm_head``
============  ===================  ============  ===================================

Other families (ELECTRA's generator, DeBERTa-v2, ModernBERT) split their heads differently or train with other
objectives; they are refused with one line naming the setting.
"""

from __future__ import annotations

from dataclasses import dataclass

from torch import nn
from transformers import PretrainedConfig, PreTrainedModel

from tinydistill.errors import ConfigError


@dataclass(frozen=True)
class MaskedLmParts:
    encoder: str  # attribute of the *ForMaskedLM model holding the encoder
    head: str  # attribute holding the masked-LM head (hidden states -> vocabulary logits)

    @property
    def head_prefix(self) -> str:
        """The state-dict prefix of the head's own weights."""
        return f"{self.head}.predictions." if self.head == "cls" else f"{self.head}."


_ROBERTA = MaskedLmParts("roberta", "lm_head")
#: model_type -> where its masked LM keeps encoder and head.
FAMILIES: dict[str, MaskedLmParts] = {
    "bert": MaskedLmParts("bert", "cls"),
    "roberta": _ROBERTA,
    "xlm-roberta": _ROBERTA,
    "camembert": _ROBERTA,
}


def masked_lm_parts(config: PretrainedConfig, setting: str = "the model") -> MaskedLmParts:
    """The parts of a masked LM of `config`'s family; ConfigError naming `setting` for another family."""
    model_type = getattr(config, "model_type", None)
    if model_type not in FAMILIES:
        raise ConfigError(f"{setting}: a {model_type!r} model; this stage trains masked LMs of the families "
                          f"{', '.join(sorted(FAMILIES))} (docs/guide.md, model families)")
    return FAMILIES[model_type]


def encoder_of(model: PreTrainedModel) -> nn.Module:
    """The encoder of a masked LM (its hidden states feed the head)."""
    return getattr(model, masked_lm_parts(model.config).encoder)


def head_of(model: PreTrainedModel) -> nn.Module:
    """The masked-LM head of a masked LM (hidden states -> vocabulary logits)."""
    return getattr(model, masked_lm_parts(model.config).head)
