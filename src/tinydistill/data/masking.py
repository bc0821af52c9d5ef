"""DistilBERT's token-frequency-smoothed masking (``distill.mlm_smoothing``).

The reference (HF ``examples/research_projects/distillation``: ``train.py`` and ``Distiller.prepare_batch_mlm``,
after XLM) does not mask each token with the same probability, as BERT does. It counts every token over the
training data once, gives token ``t`` the weight ``max(count(t), 1) ** -s`` (``--mlm_smoothing`` s = 0.7; special
tokens 0) and then, per batch, draws exactly ``ceil(mlm_probability * real tokens)`` positions without replacement
with probabilities proportional to the weights of the tokens standing there. Rare tokens become targets more
often, frequent ones ("the", ",") less. The chosen tokens are then corrupted as BERT does: 80% [MASK], 10% a
random token, 10% unchanged.

Pure pieces: :func:`token_counts`, :func:`token_weights`, :func:`smoothed_positions`, :func:`uniform_positions`,
:func:`corrupt`. :class:`SmoothedMasking` applies them to a padded batch; :class:`UniformMasking` is BERT's masking
(``DataCollatorForLanguageModeling``'s: each token a target with the same probability), used with
``distill.mlm_smoothing: null`` and by ``stage.mlm_probability``. Both draw from the global random state, in the
training process after the batch transfer (``CorpusDataModule.on_after_batch_transfer``), never in a DataLoader
worker: so checkpoints hold the state the next batch's masks come from, and a resumed run masks as the uninterrupted
one.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Sequence

import numpy as np
import torch
from torch import Tensor, nn

from tinydistill.errors import ConfigError

#: Label of positions without a masked-LM target (``DataCollatorForLanguageModeling``, ``CrossEntropyLoss``).
IGNORE_INDEX = -100


def token_counts(sequences: Iterable[Sequence[int]], vocab_size: int, chunk: int = 4096) -> np.ndarray:
    """How often each token id occurs in ``sequences`` (``int64``, length ``vocab_size``), counted in chunks."""
    counts = np.zeros(vocab_size, dtype=np.int64)
    buffer: list[np.ndarray] = []

    def flush() -> None:
        if buffer:
            ids = np.concatenate(buffer)
            if ids.size and (ids.min() < 0 or ids.max() >= vocab_size):
                raise ValueError(f"token ids must be in [0, {vocab_size}), got {ids.min()}..{ids.max()}")
            counts[:] += np.bincount(ids, minlength=vocab_size)
            buffer.clear()

    for seq in sequences:
        buffer.append(np.asarray(seq, dtype=np.int64))
        if len(buffer) >= chunk:
            flush()
    flush()
    return counts


def token_weights(counts: np.ndarray, smoothing: float, special_ids: Iterable[int]) -> Tensor:
    """Masking weight per token id: ``max(count, 1) ** -smoothing`` (unseen tokens count as seen once), 0 for the
    special tokens, which are never targets. ``smoothing=0`` weighs every other token equally."""
    if isinstance(smoothing, bool) or not isinstance(smoothing, (int, float)) or not smoothing >= 0:
        raise ConfigError(f"distill.mlm_smoothing={smoothing!r}: expected null or a number >= 0 (the reference: 0.7)")
    weights = np.maximum(np.asarray(counts, dtype=np.float64), 1.0) ** -float(smoothing)
    weights[list(special_ids)] = 0.0
    return torch.from_numpy(weights).float()


def smoothed_positions(
    input_ids: Tensor,
    attention_mask: Tensor,
    weights: Tensor,
    mlm_probability: float,
    generator: torch.Generator | None = None,
) -> Tensor:
    """Boolean ``input_ids``-shaped mask of the masked-LM targets of one batch.

    ``ceil(mlm_probability * real tokens)`` positions (special tokens count as real, as the reference's lengths
    do, but are never drawn), drawn over the whole batch without replacement with probabilities proportional to
    ``weights[input_ids]``; padding is never drawn. Fewer only if fewer positions have a weight.
    """
    w = weights[input_ids] * attention_mask.to(weights.dtype)
    n = min(math.ceil(mlm_probability * int(attention_mask.sum())), int((w > 0).sum()))
    chosen = torch.zeros(input_ids.numel(), dtype=torch.bool, device=input_ids.device)
    if n > 0:
        chosen[torch.multinomial(w.flatten(), n, replacement=False, generator=generator)] = True
    return chosen.view_as(input_ids)


def uniform_positions(
    input_ids: Tensor,
    attention_mask: Tensor,
    special: Tensor,
    mlm_probability: float,
    generator: torch.Generator | None = None,
) -> Tensor:
    """Boolean ``input_ids``-shaped mask of BERT's masked-LM targets: every real token that is not a special token
    (``special[input_ids]``), each with probability ``mlm_probability`` on its own, as
    ``DataCollatorForLanguageModeling``; padding is never drawn."""
    candidates = (attention_mask.bool() & ~special[input_ids]).cpu()
    probability = torch.full(input_ids.shape, float(mlm_probability)).masked_fill(~candidates, 0.0)
    return torch.bernoulli(probability, generator=generator).bool().to(input_ids.device)


def corrupt(
    input_ids: Tensor,
    positions: Tensor,
    mask_token_id: int,
    vocab_size: int,
    mask_replace_prob: float = 0.8,
    random_replace_prob: float = 0.1,
    generator: torch.Generator | None = None,
) -> tuple[Tensor, Tensor]:
    """BERT's corruption of the chosen ``positions``: [MASK] with ``mask_replace_prob``, a uniformly random token id
    below ``vocab_size`` with ``random_replace_prob``, else unchanged. Returns ``(inputs, labels)``: labels hold the
    original ids at the positions and ``-100`` elsewhere (``DataCollatorForLanguageModeling``'s layout)."""
    labels = input_ids.masked_fill(~positions, IGNORE_INDEX)
    u = torch.rand(input_ids.shape, generator=generator).to(input_ids.device)
    to_mask = positions & (u < mask_replace_prob)
    to_random = positions & (u >= mask_replace_prob) & (u < mask_replace_prob + random_replace_prob)
    random_ids = torch.randint(vocab_size, input_ids.shape, generator=generator).to(input_ids.device)
    inputs = input_ids.masked_fill(to_mask, mask_token_id)
    inputs = torch.where(to_random, random_ids, inputs)
    return inputs, labels


class SmoothedMasking(nn.Module):
    """Masks a padded batch (``input_ids``, ``attention_mask``) as the reference: :func:`smoothed_positions`, then
    :func:`corrupt`; adds ``labels``. The weights are a non-persistent buffer: they follow the module's device and
    stay out of checkpoints (a resumed run recounts them from the same instances)."""

    def __init__(self, weights: Tensor, mlm_probability: float, mask_token_id: int, vocab_size: int) -> None:
        super().__init__()
        if not 0.0 < mlm_probability < 1.0:
            raise ConfigError(f"distill.mlm_probability={mlm_probability} must be in (0, 1)")
        self.register_buffer("weights", weights, persistent=False)
        self.mlm_probability = mlm_probability
        self.mask_token_id = mask_token_id
        self.vocab_size = vocab_size

    @classmethod
    def from_instances(
        cls, sequences: Iterable[Sequence[int]], tokenizer, smoothing: float, mlm_probability: float
    ) -> SmoothedMasking:
        """Weights from the token counts of ``sequences`` (the training instances) and ``tokenizer``'s special and
        mask tokens; random replacements are drawn from the whole tokenizer, as the collator does."""
        counts = token_counts(sequences, len(tokenizer))
        weights = token_weights(counts, smoothing, tokenizer.all_special_ids)
        return cls(weights, mlm_probability, tokenizer.mask_token_id, len(tokenizer))

    def forward(self, batch: dict[str, Tensor]) -> dict[str, Tensor]:
        positions = smoothed_positions(batch["input_ids"], batch["attention_mask"], self.weights, self.mlm_probability)
        inputs, labels = corrupt(batch["input_ids"], positions, self.mask_token_id, self.vocab_size)
        return {**batch, "input_ids": inputs, "labels": labels}


class UniformMasking(nn.Module):
    """Masks a padded batch (``input_ids``, ``attention_mask``) as BERT: :func:`uniform_positions`, then
    :func:`corrupt` (80% [MASK], 10% a random token id below the tokenizer's length, 10% unchanged); adds
    ``labels``. The special-token table is a non-persistent buffer (it follows the batch's device)."""

    def __init__(self, special_ids: Iterable[int], mlm_probability: float, mask_token_id: int, vocab_size: int) -> None:
        super().__init__()
        if not 0.0 < mlm_probability < 1.0:
            raise ConfigError(f"mlm_probability={mlm_probability} must be in (0, 1)")
        special = torch.zeros(vocab_size, dtype=torch.bool)
        special[list(special_ids)] = True
        self.register_buffer("special", special, persistent=False)
        self.mlm_probability = mlm_probability
        self.mask_token_id = mask_token_id
        self.vocab_size = vocab_size

    @classmethod
    def from_tokenizer(cls, tokenizer, mlm_probability: float) -> UniformMasking:
        return cls(tokenizer.all_special_ids, mlm_probability, tokenizer.mask_token_id, len(tokenizer))

    def forward(self, batch: dict[str, Tensor]) -> dict[str, Tensor]:
        positions = uniform_positions(batch["input_ids"], batch["attention_mask"], self.special, self.mlm_probability)
        inputs, labels = corrupt(batch["input_ids"], positions, self.mask_token_id, self.vocab_size)
        return {**batch, "input_ids": inputs, "labels": labels}
