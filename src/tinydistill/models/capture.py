"""Hidden states and attention scores from ordinary ``transformers`` BERT-family models.

Teacher and student stay plain ``transformers`` models (``BertModel``, ``BertForSequenceClassification``,
``BertForMaskedLM``, any checkpoint whose attention goes through ``AttentionInterface``). Nothing of BERT's code
is copied: the models compute queries and keys with their own projections and call the attention function
named by ``config._attn_implementation``. This module registers two such functions:

* ``"tinydistill_scores"`` -- eager attention that returns, as its attention weights, the pre-softmax scores
  ``Q K^T * scaling`` (``scaling = 1/sqrt(d_head)``) with **masked (padding) key entries set to exactly 0**;
* ``"tinydistill_probs"`` -- eager attention that returns the softmax probabilities (before attention dropout).

Both compute the layer output exactly like eager attention (same mask, same softmax, the model's own attention
dropout when training), so the model's outputs do not change. :func:`capture_attention` switches a model to one of
them for the duration of a ``with`` block (restoring the previous implementation, e.g. ``sdpa``, afterwards);
with ``output_attentions=True`` transformers' own output collection then returns the per-layer tensors in
``outputs.attentions``. :func:`forward_with_capture` wraps all of this into one call returning :class:`Captured`.

No tensors are kept anywhere between calls: the recorded tensors live only in the returned outputs.

Masked keys: ``transformers`` 5 builds the padding mask per attention implementation (``None`` when nothing is
padded, bool, or float additive with ``finfo(dtype).min``). For the two implementations here it is registered
as the boolean ``sdpa_mask`` (true = attend), so masked keys are known exactly and zeroed in the captured
scores. This matches the reference (TinyBERT adds ``-10000`` to masked keys' scores, then replaces values
``<= -1e2`` by 0 before the MSE): query rows of padding tokens are kept as computed, like the reference.
If a caller passes a prepared 4D float mask instead, entries ``<= -1e2`` count as masked.
"""

from __future__ import annotations

import inspect
from collections.abc import Iterable, Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass, replace
from typing import Any, Literal

import torch
import torch.nn.functional as F
from torch import Tensor, nn
from transformers import AttentionInterface, PreTrainedModel
from transformers.masking_utils import AttentionMaskInterface, sdpa_mask
from transformers.utils import ModelOutput

from tinydistill.errors import ConfigError
from tinydistill.models.qkv import record_qkv

#: What a forward pass may capture of the attention: TinyBERT's scores or probabilities, or the relation loss's
#: queries, keys and values (`models/qkv.py`).
AttentionKind = Literal["scores", "probs", "qkv"]

#: ``config._attn_implementation`` names registered by this module, by captured kind.
IMPLEMENTATIONS: dict[str, str] = {"scores": "tinydistill_scores", "probs": "tinydistill_probs"}

#: Model types whose attention does not go through ``AttentionInterface``, so their scores cannot be captured: DeBERTa's
#: disentangled attention adds relative-position terms in its own code (`models/qkv.py` reads its queries, keys and
#: values through hooks instead).
UNCAPTURED_SCORES = frozenset({"deberta", "deberta-v2"})

#: In an additive float mask, entries at or below this count as masked keys (the reference's threshold).
MASKED_BIAS_THRESHOLD = -1e2


def _eager_attention_capturing(
    kind: AttentionKind,
    module: nn.Module,
    query: Tensor,
    key: Tensor,
    value: Tensor,
    attention_mask: Tensor | None,
    scaling: float | None = None,
    dropout: float = 0.0,
    **kwargs: Any,
) -> tuple[Tensor, Tensor]:
    """Eager attention returning ``(output, scores_or_probs)``; see the module docstring for the contract."""
    if key.shape[1] != query.shape[1]:  # grouped-query attention: share each key/value head across queries
        n_rep = query.shape[1] // key.shape[1]
        key = key.repeat_interleave(n_rep, dim=1)
        value = value.repeat_interleave(n_rep, dim=1)
    if scaling is None:
        scaling = query.size(-1) ** -0.5

    scores = torch.matmul(query, key.transpose(-1, -2)) * scaling  # (B, H, Sq, Sk)

    keep: Tensor | None
    if attention_mask is None:
        keep, logits = None, scores
    elif attention_mask.dtype == torch.bool:
        keep = attention_mask
        logits = scores.masked_fill(~keep, torch.finfo(scores.dtype).min)
    else:  # additive float mask (prepared by the caller)
        keep = attention_mask > MASKED_BIAS_THRESHOLD
        logits = scores + attention_mask

    probs = F.softmax(logits, dim=-1)
    attn_output = torch.matmul(F.dropout(probs, p=dropout, training=module.training), value)
    attn_output = attn_output.transpose(1, 2).contiguous()

    if kind == "probs":
        return attn_output, probs
    if keep is not None:
        scores = scores.masked_fill(~keep, 0.0)
    return attn_output, scores


def _scores_attention(module: nn.Module, query: Tensor, key: Tensor, value: Tensor, attention_mask: Tensor | None,
                      **kwargs: Any) -> tuple[Tensor, Tensor]:
    return _eager_attention_capturing("scores", module, query, key, value, attention_mask, **kwargs)


def _probs_attention(module: nn.Module, query: Tensor, key: Tensor, value: Tensor, attention_mask: Tensor | None,
                     **kwargs: Any) -> tuple[Tensor, Tensor]:
    return _eager_attention_capturing("probs", module, query, key, value, attention_mask, **kwargs)


# Registration is global in transformers (a name -> function table); it holds functions, never tensors.
AttentionInterface.register(IMPLEMENTATIONS["scores"], _scores_attention)
AttentionInterface.register(IMPLEMENTATIONS["probs"], _probs_attention)
for _name in IMPLEMENTATIONS.values():
    AttentionMaskInterface.register(_name, sdpa_mask)  # boolean mask (true = attend), None when nothing is padded


def _check_kind(want_attention: Any, allowed: Iterable[str] = IMPLEMENTATIONS) -> None:
    if want_attention not in allowed:
        raise ConfigError(
            f"want_attention={want_attention!r} is not supported; use 'scores' (pre-softmax, TinyBERT), "
            f"'probs' (post-softmax), 'qkv' (queries, keys, values: the relation loss) or None"
        )


def _pretrained(model: nn.Module) -> PreTrainedModel:
    """The ``PreTrainedModel`` inside ``model`` (unwrapping ``.module`` wrappers such as DDP)."""
    inner = model
    while not isinstance(inner, PreTrainedModel) and isinstance(getattr(inner, "module", None), nn.Module):
        inner = inner.module
    if not isinstance(inner, PreTrainedModel):
        raise TypeError(f"attention capture needs a transformers PreTrainedModel, got {type(model).__name__}")
    return inner


@contextmanager
def capture_attention(model: nn.Module, kind: AttentionKind = "scores") -> Iterator[None]:
    """Within the block, ``model(..., output_attentions=True).attentions`` holds captured scores or probabilities.

    Switches ``model``'s attention implementation to ``"tinydistill_scores"`` / ``"tinydistill_probs"`` and
    restores the previous one on exit (also on error). Nests; not meant for concurrent use of one model from
    several threads.

    Raises:
        ConfigError: unknown ``kind``, or a model whose attention does not go through ``AttentionInterface``.
    """
    _check_kind(kind)
    inner = _pretrained(model)
    previous = inner.config._attn_implementation
    target = IMPLEMENTATIONS[kind]
    inner.set_attn_implementation(target)
    try:
        if inner.config._attn_implementation != target:
            raise ConfigError(
                f"{type(inner).__name__} does not support switching its attention implementation "
                f"(it does not use transformers' AttentionInterface), so its attention scores cannot be captured"
            )
        yield
    finally:
        if inner.config._attn_implementation != previous:
            inner.set_attn_implementation(previous)


@dataclass(frozen=True)
class Captured:
    """What one forward pass exposes for distillation.

    Attributes:
        hidden_states: ``(embedding output, layer 1 output, ..., layer N output)``, each ``(B, S, D)``;
            ``hidden_states[0]`` is the embedding output (after its LayerNorm and dropout), the input of layer 1.
        attention_scores: per layer ``(B, H, S, S)`` pre-softmax ``Q K^T / sqrt(d_head)`` with masked (padding)
            key columns exactly 0, or ``None`` unless ``want_attention="scores"``.
        attention_probs: per layer ``(B, H, S, S)`` softmax probabilities (before attention dropout), or ``None``
            unless ``want_attention="probs"``.
        attention_mask: ``(B, S)`` bool, true = real token, from the batch's ``attention_mask`` (``None`` if the
            batch had none, i.e. nothing is padded).
        qkv: per layer ``(3, B, S, H * d_head)`` queries, keys and values (every head's concatenated), or ``None``
            unless ``want_attention="qkv"`` (`models/qkv.py`).
        logits: ``outputs.logits`` if the model has a head producing it (classification ``(B, C)``, MLM
            ``(B, S, V)``), else ``None``.
        outputs: the model's full output object (e.g. ``outputs.loss`` when the batch held ``labels``).
    """

    hidden_states: tuple[Tensor, ...]
    attention_scores: tuple[Tensor, ...] | None
    attention_probs: tuple[Tensor, ...] | None
    attention_mask: Tensor | None
    logits: Tensor | None
    outputs: ModelOutput
    qkv: tuple[Tensor, ...] | None = None

    @property
    def num_layers(self) -> int:
        """Number of transformer layers N (``len(hidden_states) - 1``)."""
        return len(self.hidden_states) - 1

    def float(self) -> "Captured":
        """The same captures in float32 (itself if they already are): a teacher run in bfloat16 still gives the
        losses float32 targets."""
        if self.hidden_states[0].dtype == torch.float32:
            return self

        def cast(ts: tuple[Tensor, ...] | None) -> tuple[Tensor, ...] | None:
            return None if ts is None else tuple(t.float() for t in ts)

        return replace(self, hidden_states=cast(self.hidden_states), attention_scores=cast(self.attention_scores),
                       attention_probs=cast(self.attention_probs), qkv=cast(self.qkv),
                       logits=None if self.logits is None else self.logits.float())

    def keep(self, hidden: Iterable[int], attention: Iterable[int]) -> "Captured":
        """Only the hidden states and attention layers (0-based indices into the tuples; `attention` also picks the
        layers of `qkv`) a loss reads, for
        keeping: the others become empty tensors (the tuples keep their length, so ``num_layers`` and the layer
        indices stay valid), and the logits and the model's output object, which hold every layer, are dropped."""
        hidden, attention = set(hidden), set(attention)
        empty = torch.empty(0)

        def pick(ts: tuple[Tensor, ...] | None, wanted: set[int]) -> tuple[Tensor, ...] | None:
            return None if ts is None else tuple(_own(t) if i in wanted else empty for i, t in enumerate(ts))

        return Captured(hidden_states=pick(self.hidden_states, hidden),
                        attention_scores=pick(self.attention_scores, attention),
                        attention_probs=pick(self.attention_probs, attention),
                        attention_mask=self.attention_mask, logits=None, outputs=ModelOutput(),
                        qkv=pick(self.qkv, attention))

    def to(self, device: torch.device | str) -> "Captured":
        """The same captures on `device` (tensors already there are not copied)."""

        def move(ts: tuple[Tensor, ...] | None) -> tuple[Tensor, ...] | None:
            return None if ts is None else tuple(t.to(device) for t in ts)

        mask = None if self.attention_mask is None else self.attention_mask.to(device)
        return replace(self, hidden_states=move(self.hidden_states), attention_scores=move(self.attention_scores),
                       attention_probs=move(self.attention_probs), attention_mask=mask, qkv=move(self.qkv),
                       logits=None if self.logits is None else self.logits.to(device))

    @property
    def nbytes(self) -> int:
        """Bytes held by the tensors (each counted once, views of one storage included)."""
        tensors = [*self.hidden_states, *(self.attention_scores or ()), *(self.attention_probs or ()),
                   *(self.qkv or ())]
        if self.attention_mask is not None:
            tensors.append(self.attention_mask)
        storages = {t.untyped_storage().data_ptr(): t.untyped_storage().nbytes() for t in tensors if t.numel()}
        return sum(storages.values())


def _own(t: Tensor) -> Tensor:
    """`t`, or a copy of it when it is a view into a larger storage that keeping it would keep alive."""
    return t.clone() if t.untyped_storage().nbytes() > t.numel() * t.element_size() else t


def _forward_arguments(model: nn.Module, batch: Mapping[str, Any]) -> dict[str, Any]:
    """The entries of ``batch`` that ``model.forward`` names as parameters."""
    forward = _pretrained(model).forward
    params = inspect.signature(forward).parameters
    names = {n for n, p in params.items() if p.kind not in (p.VAR_KEYWORD, p.VAR_POSITIONAL)}
    args = {k: v for k, v in batch.items() if k in names}
    if "input_ids" not in args and "inputs_embeds" not in args:
        raise ValueError(f"batch needs 'input_ids' (or 'inputs_embeds'); it has {sorted(batch)}")
    return args


def forward_with_capture(
    model: nn.Module,
    batch: Mapping[str, Any],
    want_attention: AttentionKind | None = "scores",
) -> Captured:
    """Run ``model`` on ``batch`` and return its hidden states, attention tensors and logits.

    The batch entries the model's ``forward`` accepts are passed (``input_ids``, ``attention_mask``,
    ``token_type_ids``, ``labels`` for models with a head...); others (e.g. an example index) are ignored.
    Gradients and dropout follow the caller's context: call the student in training mode with grad enabled
    (gradients flow through the captured scores), the teacher in eval mode under ``torch.no_grad()``.

    Args:
        model: a transformers BERT-family model (or a wrapper with ``.module``).
        batch: mapping of model inputs.
        want_attention: ``"scores"`` (pre-softmax, masked keys 0: TinyBERT's attention loss), ``"probs"``
            (softmax probabilities), ``"qkv"`` (queries, keys and values: the relation loss) or ``None`` (no attention capture; the model runs its usual implementation).

    Raises:
        ConfigError: unknown ``want_attention`` or a model whose attention cannot be captured.
    """
    if want_attention is not None:
        _check_kind(want_attention, (*IMPLEMENTATIONS, "qkv"))
    args = _forward_arguments(model, batch)
    args["output_hidden_states"] = True
    args["return_dict"] = True
    attentions, qkv = None, None
    if want_attention is None:
        outputs = model(**args)
    elif want_attention == "qkv":
        with record_qkv(_pretrained(model)) as layers:
            outputs = model(**args)
        qkv = tuple(layers)
        _check_layer_count(model, len(qkv), "query/key/value")
    else:
        with capture_attention(model, want_attention):
            outputs = model(**args, output_attentions=True)
        attentions = tuple(outputs.attentions) if outputs.attentions is not None else ()
        _check_layer_count(model, len(attentions), "attention")

    mask = batch.get("attention_mask")
    return Captured(
        hidden_states=tuple(outputs.hidden_states),
        attention_scores=attentions if want_attention == "scores" else None,
        attention_probs=attentions if want_attention == "probs" else None,
        attention_mask=None if mask is None else mask.to(dtype=torch.bool),
        logits=getattr(outputs, "logits", None),
        outputs=outputs,
        qkv=qkv,
    )


def _check_layer_count(model: nn.Module, found: int, what: str) -> None:
    """One captured tensor per layer, or a ConfigError: the model's attention escaped the capture."""
    expected = getattr(_pretrained(model).config, "num_hidden_layers", None)
    if not found or (expected is not None and found != expected):
        raise ConfigError(
            f"{type(_pretrained(model)).__name__} returned {found} {what} tensors for "
            f"{expected} layers; its attention does not go through transformers' AttentionInterface"
        )
