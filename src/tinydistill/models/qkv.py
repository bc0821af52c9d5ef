"""The queries, keys and values of every self-attention layer of a model, for the relation loss (MiniLM-v2).

:func:`record_qkv` records, for one forward pass of a ``transformers`` encoder, each attention layer's query, key and
value vectors, every head's concatenated: per layer a ``(3, B, S, H * d_head)`` tensor (query, key, value), in
layer order. Gradients flow through them (they are the model's own tensors). Two ways, by the kind of model:

* **attention through transformers' ``AttentionInterface``** (BERT, RoBERTa, XLM-R, ELECTRA, ALBERT, ModernBERT...):
  for the duration of the block the model runs the attention function ``"tinydistill_qkv"``, which notes the query,
  key and value it receives and hands them to transformers' own ``sdpa`` attention, so the layer outputs are the
  ``sdpa`` implementation's (same mask, same dropout). ModernBERT's queries and keys arrive after its rotary
  position embedding: they are the vectors its attention compares. Grouped key/value heads are repeated to the
  query heads, as the attention itself does.
* **DeBERTa-v2/v3**, whose disentangled attention (content plus relative-position terms) is its own code and does not
  go through the interface: forward hooks on each attention module's ``query_proj``, ``key_proj`` and ``value_proj``,
  keeping each projection's first output of every attention call (with ``share_att_key`` DeBERTa also passes its
  relative-position embeddings through ``query_proj`` and ``key_proj`` afterwards: those are not token vectors).

Nothing is kept after the block: the recorder lives in the ``with`` statement, the hooks are removed on exit.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from contextvars import ContextVar
from typing import Any

import torch
from torch import Tensor, nn
from transformers import AttentionInterface, PreTrainedModel
from transformers.integrations.sdpa_attention import sdpa_attention_forward
from transformers.masking_utils import AttentionMaskInterface, sdpa_mask

from tinydistill.errors import ConfigError

IMPLEMENTATION = "tinydistill_qkv"
#: DeBERTa-v2's projection names (its ``DisentangledSelfAttention``).
PROJECTIONS = ("query_proj", "key_proj", "value_proj")

# The layers recorded by the innermost active `record_qkv` block (None outside one).
_ACTIVE: ContextVar[list[Tensor] | None] = ContextVar("tinydistill_qkv", default=None)


def _heads_last(x: Tensor) -> Tensor:
    """``(B, H, S, d)`` -> ``(B, S, H * d)``: the heads' vectors concatenated, as before the head split."""
    b, h, s, d = x.shape
    return x.transpose(1, 2).reshape(b, s, h * d)


def _qkv_attention(module: nn.Module, query: Tensor, key: Tensor, value: Tensor, attention_mask: Tensor | None,
                   **kwargs: Any) -> tuple[Tensor, Any]:
    """transformers' sdpa attention, noting ``(query, key, value)`` in the active recorder."""
    layers = _ACTIVE.get()
    if layers is not None:
        n_rep = query.shape[1] // key.shape[1]  # grouped-query attention: the key/value heads each query head reads
        k, v = (key, value) if n_rep == 1 else (key.repeat_interleave(n_rep, 1), value.repeat_interleave(n_rep, 1))
        layers.append(torch.stack([_heads_last(query), _heads_last(k), _heads_last(v)]))
    return sdpa_attention_forward(module, query, key, value, attention_mask, **kwargs)


AttentionInterface.register(IMPLEMENTATION, _qkv_attention)
AttentionMaskInterface.register(IMPLEMENTATION, sdpa_mask)  # sdpa's boolean mask (true = attend)


def projection_modules(model: nn.Module) -> list[nn.Module]:
    """The attention modules holding ``query_proj``, ``key_proj`` and ``value_proj`` linear maps (DeBERTa-v2)."""
    return [m for m in model.modules() if all(isinstance(getattr(m, p, None), nn.Linear) for p in PROJECTIONS)]


def capture_route(model: PreTrainedModel) -> str:
    """How :func:`record_qkv` reaches `model`'s queries, keys and values: ``"interface"`` or ``"projections"``.

    Raises:
        ConfigError: a model whose attention neither goes through ``AttentionInterface`` nor has DeBERTa's
            projections.
    """
    if model._can_set_attn_implementation():  # transformers' own test of whether the interface is used
        return "interface"
    if projection_modules(model):
        return "projections"
    raise ConfigError(
        f"{type(model).__name__} ({model.config.model_type}): its queries, keys and values cannot be captured (its "
        f"attention does not go through transformers' AttentionInterface and has no query_proj/key_proj/value_proj), "
        f"so the relation loss (distill=minilm) cannot read it"
    )


@contextmanager
def _through_interface(model: PreTrainedModel, layers: list[Tensor]) -> Iterator[None]:
    previous = model.config._attn_implementation
    token = _ACTIVE.set(layers)
    model.set_attn_implementation(IMPLEMENTATION)
    try:
        yield
    finally:
        _ACTIVE.reset(token)
        if model.config._attn_implementation != previous:
            model.set_attn_implementation(previous)


@contextmanager
def _through_projections(model: PreTrainedModel, layers: list[Tensor]) -> Iterator[None]:
    slot: dict[str, Tensor] = {}

    def start(module: nn.Module, args: Any) -> None:
        slot.clear()

    def note(name: str):
        def hook(module: nn.Module, args: Any, output: Tensor) -> None:
            slot.setdefault(name, output)  # the first call is the tokens'; later ones are position embeddings
        return hook

    def finish(module: nn.Module, args: Any, output: Any) -> None:
        layers.append(torch.stack([slot[p] for p in PROJECTIONS]))

    handles = []
    for attention in projection_modules(model):
        handles.append(attention.register_forward_pre_hook(start))
        handles += [getattr(attention, p).register_forward_hook(note(p)) for p in PROJECTIONS]
        handles.append(attention.register_forward_hook(finish))
    try:
        yield
    finally:
        for handle in handles:
            handle.remove()


@contextmanager
def record_qkv(model: PreTrainedModel) -> Iterator[list[Tensor]]:
    """Within the block, the returned list fills with one ``(3, B, S, H * d_head)`` tensor (query, key, value) per
    attention layer the model runs, in order. The model's previous attention implementation is restored on exit
    (also on error); nests (the innermost block records)."""
    layers: list[Tensor] = []
    route = _through_interface if capture_route(model) == "interface" else _through_projections
    with route(model, layers):
        yield layers
