"""Distillation losses: small pure functions on tensors (no models, no training loop).

TinyBERT (Jiao et al., 2020; reference code ``huawei-noah/Pretrained-Language-Model/TinyBERT``):

* :func:`hidden_mse` -- embedding-layer and hidden-state loss, ``MSE(H_S W_h, H_T)``; the caller applies the
  projection ``W_h`` (the reference's ``fit_dense``) before calling.
* :func:`attention_loss` -- attention-matrix loss for one mapped layer pair, on pre-softmax scores.
* :func:`soft_cross_entropy` -- prediction-layer loss.

MiniLM-v2 (Wang et al., 2021, "MiniLMv2: Multi-Head Self-Attention Relation Distillation"):

* :func:`relation_kl` -- self-attention relation loss on one kind of vector (queries, keys or values) of one layer
  pair; needs neither equal head counts nor equal widths.

DistilBERT triple loss (Sanh et al., 2019; HF ``examples/research_projects/distillation/distiller.py``):

* :func:`distillation_kl` -- ``T^2 * KL(teacher || student)`` at temperature ``T`` over selected positions.
* :func:`cosine_hidden_loss` -- ``1 - cos(h_S, h_T)`` averaged over selected (non-padding) positions.
* :func:`masked_lm_cross_entropy` -- the student's own masked-LM loss (labels ``-100`` ignored).

Every function returns a scalar tensor. Shape mismatches raise ``ValueError``; a bad temperature raises
:class:`~tinydistill.errors.ConfigError`. When a mask selects nothing the loss is ``0`` (still attached to the
student's graph) rather than ``nan``.
"""

from __future__ import annotations

from typing import Literal

import torch
import torch.nn.functional as F
from torch import Tensor

from tinydistill.data.masking import (
    IGNORE_INDEX,  # positions without a masked-LM target
)
from tinydistill.errors import ConfigError

#: The reference zeroes attention scores ``<= -1e2`` (its masked keys hold ``score - 10000``).
REFERENCE_SCORE_FLOOR = -1e2


def _check_same_shape(name: str, student: Tensor, teacher: Tensor) -> None:
    if student.shape != teacher.shape:
        raise ValueError(
            f"{name}: student and teacher shapes differ: {tuple(student.shape)} vs {tuple(teacher.shape)}"
        )


def _check_temperature(temperature: float) -> None:
    if not temperature > 0:  # also rejects nan
        raise ConfigError(f"distillation temperature must be > 0, got {temperature!r}")


def _zero_like_graph(x: Tensor) -> Tensor:
    """A scalar 0 that keeps ``x`` in the autograd graph (so ``backward()`` works on an empty selection)."""
    return x.sum() * 0.0


def _token_mask(mask: Tensor, shape: torch.Size, name: str) -> Tensor:
    """``mask`` as bool, checked to match the leading (token) dimensions ``shape``."""
    if tuple(mask.shape) != tuple(shape):
        raise ValueError(f"{name}: mask shape {tuple(mask.shape)} does not match token dimensions {tuple(shape)}")
    return mask.to(dtype=torch.bool)


def hidden_mse(student_h: Tensor, teacher_h: Tensor, mask: Tensor | None = None) -> Tensor:
    """Mean squared error between (already projected) student and teacher hidden states.

    Formula, for ``h`` of shape ``(..., D)``::

        mask is None:  mean over all elements of (h_S - h_T)^2                       # reference MSELoss()
        mask given:    sum_{p: mask[p]} sum_d (h_S[p, d] - h_T[p, d])^2 / (n_selected * D)

    The reference (``torch.nn.MSELoss()``) averages over every element, padding positions included, so that is
    the default. ``mask`` (shape ``h.shape[:-1]``, true = real token) restricts the average to real tokens.

    Args:
        student_h: student states after the projection to the teacher's width, e.g. ``(B, S, D_T)``.
        teacher_h: teacher states, same shape.
        mask: optional bool/0-1 tensor of shape ``h.shape[:-1]``.
    """
    _check_same_shape("hidden_mse", student_h, teacher_h)
    if mask is None:
        return F.mse_loss(student_h, teacher_h)
    keep = _token_mask(mask, student_h.shape[:-1], "hidden_mse")
    if not keep.any():
        return _zero_like_graph(student_h)
    diff = student_h[keep] - teacher_h[keep]  # (n_selected, D)
    return diff.pow(2).mean()


def attention_loss(
    student_att: Tensor,
    teacher_att: Tensor,
    mask: Tensor | None = None,
    zero_below: float | None = REFERENCE_SCORE_FLOOR,
) -> Tensor:
    """MSE between the student's and teacher's attention matrices of one mapped layer pair.

    Inputs are ``(B, H, S, S)`` (query rows, key columns), normally the pre-softmax scores
    ``Q K^T / sqrt(d_head)`` from :func:`tinydistill.models.capture.forward_with_capture`, whose masked
    (padding) key entries are already exactly 0. Post-softmax probabilities work too.

    Formula::

        z(A) = where(A <= zero_below, 0, A)          # applied to each input; skipped if zero_below is None
        mask is None:  mean over all B*H*S*S elements of (z(A_S) - z(A_T))^2
        mask given:    sum_{b,h,i,j} v[b,i,j] (z(A_S) - z(A_T))^2 / (H * sum_{b,i,j} v[b,i,j]),
                       v[b,i,j] = mask[b,i] and mask[b,j]   (real query and real key)

    A mean over all elements equals the paper's ``1/h * sum_heads MSE(head)``, since every head has the same
    number of entries. The total TinyBERT attention loss is the *sum* of this over the mapped layers.

    Reference behaviour (the default): TinyBERT adds ``-10000`` to masked keys' scores and then replaces every
    score ``<= -1e2`` by 0 in both student and teacher before ``MSELoss()`` over all elements, padding query
    rows included. ``zero_below=-1e2`` reproduces this whatever form masked keys arrive in (0 from capture,
    ``-10000``, or ``finfo.min``), including the reference's side effect of also zeroing any genuine score
    ``<= -100`` (no gradient flows through those). ``zero_below=None`` compares the tensors as given.

    Args:
        student_att: student attention scores or probabilities, ``(B, H, S, S)``.
        teacher_att: teacher tensor of the same shape (same head count: see ``check_compatible``).
        mask: optional ``(B, S)`` bool/0-1 token mask (true = real token) restricting the average to entries
            whose query and key are both real tokens.
        zero_below: threshold for the reference zeroing, or ``None`` to disable it.
    """
    _check_same_shape("attention_loss", student_att, teacher_att)
    if student_att.dim() != 4 or student_att.shape[-1] != student_att.shape[-2]:
        raise ValueError(f"attention_loss expects (batch, heads, seq, seq) tensors, got {tuple(student_att.shape)}")
    if zero_below is not None:
        student_att = torch.where(student_att <= zero_below, torch.zeros_like(student_att), student_att)
        teacher_att = torch.where(teacher_att <= zero_below, torch.zeros_like(teacher_att), teacher_att)
    if mask is None:
        return F.mse_loss(student_att, teacher_att)
    b, h, s, _ = student_att.shape
    keep = _token_mask(mask, torch.Size((b, s)), "attention_loss")
    pair = (keep[:, :, None] & keep[:, None, :])[:, None, :, :]  # (B, 1, S, S)
    n = pair.sum() * h
    if n == 0:
        return _zero_like_graph(student_att)
    sq = torch.where(pair, (student_att - teacher_att).pow(2), torch.zeros_like(student_att))
    return sq.sum() / n


def _relations(x: Tensor, heads: int, keep: Tensor | None) -> Tensor:
    """``log softmax(A_r A_r^T / sqrt(d_r))`` per relation head ``r``: ``(B, S, D)`` -> ``(B, R, S, S)``, masked keys
    (``keep`` false) at probability 0."""
    b, s, d = x.shape
    if d % heads:
        raise ValueError(f"relation_kl: width {d} is not a multiple of {heads} relation heads")
    a = x.reshape(b, s, heads, d // heads).transpose(1, 2)  # (B, R, S, d_r)
    scores = torch.matmul(a, a.transpose(-1, -2)) * (d // heads) ** -0.5
    if keep is not None:
        scores = scores.masked_fill(~keep[:, None, None, :], torch.finfo(scores.dtype).min)
    return F.log_softmax(scores, dim=-1)


def relation_kl(student_x: Tensor, teacher_x: Tensor, heads: int, mask: Tensor | None = None) -> Tensor:
    """MiniLM-v2's self-attention relation loss for one kind of vector (queries, keys or values) of one layer pair.

    Each model's vectors ``A`` (``(B, S, D)``: every attention head's concatenated) are split into ``R = heads``
    relation heads of width ``d_r = D / R`` (``R`` need not be either model's head count; each width must be a
    multiple of it), and each relation head gives a relation over the sequence::

        Rel[b, r, i, :] = softmax_j(A_r[b, i] . A_r[b, j] / sqrt(d_r))        over real keys j (mask[b, j])
        KL[b, r, i]     = sum_j Rel_T[b, r, i, j] * (log Rel_T[b, r, i, j] - log Rel_S[b, r, i, j])
        loss            = sum_{b, r, i: mask[b, i]} KL[b, r, i] / (R * n_real)        n_real = sum_{b, i} mask[b, i]

    i.e. ``KL(teacher || student)`` averaged over relation heads and real query tokens (padding queries excluded,
    padding keys masked). ``mask is None``: every position is real. The paper sums this over queries, keys and
    values (the caller does). Student and teacher widths may differ: each relation is ``(S, S)``.

    Args:
        student_x: ``(B, S, D_S)`` student queries, keys or values.
        teacher_x: ``(B, S, D_T)`` the teacher's of the same kind (no gradient needed).
        heads: ``R``, the number of relation heads (divides ``D_S`` and ``D_T``).
        mask: optional ``(B, S)`` bool/0-1 token mask (true = real token).
    """
    if student_x.dim() != 3 or teacher_x.dim() != 3 or student_x.shape[:2] != teacher_x.shape[:2]:
        raise ValueError(f"relation_kl expects (batch, seq, width) tensors with equal batch and sequence sizes, got "
                         f"{tuple(student_x.shape)} and {tuple(teacher_x.shape)}")
    if isinstance(heads, bool) or not isinstance(heads, int) or heads < 1:
        raise ValueError(f"relation_kl: heads must be a positive integer, got {heads!r}")
    keep = None if mask is None else _token_mask(mask, student_x.shape[:2], "relation_kl")
    if keep is not None and not keep.any():
        return _zero_like_graph(student_x)
    log_s, log_t = _relations(student_x, heads, keep), _relations(teacher_x, heads, keep)
    kl_terms = log_t.exp() * (log_t - log_s)  # (B, R, S, S)
    if keep is not None:  # masked keys have teacher probability 0: their terms are 0 (not 0 * (min - min))
        kl_terms = kl_terms.masked_fill(~keep[:, None, None, :], 0.0)
    kl = kl_terms.sum(dim=-1)  # (B, R, S)
    if keep is None:
        return kl.mean()
    rows = keep[:, None, :].expand_as(kl)
    return kl[rows].sum() / rows.sum()


def soft_cross_entropy(
    student_logits: Tensor,
    teacher_logits: Tensor,
    temperature: float = 1.0,
    reduction: Literal["mean", "batchmean"] = "mean",
) -> Tensor:
    """TinyBERT's prediction-layer loss: cross-entropy of the student against the teacher's soft labels.

    Formula, with ``p_T = softmax(z_T / T)`` and ``log p_S = log_softmax(z_S / T)`` over the last dim (C classes)::

        elementwise  e = -p_T * log p_S                        # shape (..., C)
        "mean":      mean over all elements of e  = (1/C) * mean over rows of sum_c e   # reference
        "batchmean": mean over rows of sum_c e                # textbook soft cross-entropy (the paper's CE)

    No ``T^2`` factor, as in the reference (``task_distill.py`` divides both logits by ``T`` and calls
    ``soft_cross_entropy``, which ends in ``(- targets_prob * student_likelihood).mean()``). The default
    ``"mean"`` is that reference reduction; it is the textbook value divided by the number of classes ``C``.

    Args:
        student_logits: ``(..., C)`` raw student logits.
        teacher_logits: ``(..., C)`` raw teacher logits (no gradient needed).
        temperature: ``T > 0``.
        reduction: ``"mean"`` (reference) or ``"batchmean"``.
    """
    _check_same_shape("soft_cross_entropy", student_logits, teacher_logits)
    _check_temperature(temperature)
    log_p_s = F.log_softmax(student_logits / temperature, dim=-1)
    p_t = F.softmax(teacher_logits / temperature, dim=-1)
    elementwise = -p_t * log_p_s
    if reduction == "mean":
        return elementwise.mean()
    if reduction == "batchmean":
        return elementwise.sum(dim=-1).mean()
    raise ConfigError(f"soft_cross_entropy reduction must be 'mean' or 'batchmean', got {reduction!r}")


def distillation_kl(
    student_logits: Tensor,
    teacher_logits: Tensor,
    temperature: float,
    mask: Tensor | None = None,
) -> Tensor:
    """DistilBERT's soft-target loss: ``T^2 * KL(p_T || p_S)`` averaged over the selected rows.

    Formula, with ``p = softmax(z / T)`` over the last dim and rows = positions selected by ``mask``::

        T^2 * (1 / n_rows) * sum_rows sum_c p_T[c] * (log p_T[c] - log p_S[c])

    which is ``KLDivLoss(reduction="batchmean")(log_softmax(z_S/T), softmax(z_T/T)) * T^2`` on the selected rows,
    as in HF's ``distiller.py`` (it selects rows with ``attention_mask``, or with the MLM label mask when
    ``restrict_ce_to_mask``). Terms with ``p_T[c] = 0`` contribute 0.

    Args:
        student_logits: ``(..., C)`` e.g. ``(B, S, V)`` MLM logits or ``(B, C)`` classification logits.
        teacher_logits: same shape.
        temperature: ``T > 0`` (DistilBERT uses 2.0).
        mask: optional bool/0-1 tensor of shape ``logits.shape[:-1]``; ``None`` selects every row.
    """
    _check_same_shape("distillation_kl", student_logits, teacher_logits)
    _check_temperature(temperature)
    if mask is not None:
        keep = _token_mask(mask, student_logits.shape[:-1], "distillation_kl")
        if not keep.any():
            return _zero_like_graph(student_logits)
        student_logits, teacher_logits = student_logits[keep], teacher_logits[keep]
    if student_logits.numel() == 0:  # no rows (e.g. rows pre-selected by the caller, none this batch)
        return _zero_like_graph(student_logits)
    c = student_logits.shape[-1]
    s_rows = student_logits.reshape(-1, c)
    t_rows = teacher_logits.reshape(-1, c)
    kl = F.kl_div(
        F.log_softmax(s_rows / temperature, dim=-1),
        F.softmax(t_rows / temperature, dim=-1),
        reduction="batchmean",
    )
    return kl * temperature**2


def cosine_hidden_loss(student_h: Tensor, teacher_h: Tensor, mask: Tensor | None = None) -> Tensor:
    """DistilBERT's cosine loss aligning the directions of student and teacher hidden states.

    Formula, over positions ``p`` selected by ``mask`` (all positions if ``None``)::

        mean_p (1 - cos(h_S[p], h_T[p]))

    i.e. ``CosineEmbeddingLoss`` with target ``1`` on the selected rows, as HF's ``distiller.py`` applies to the
    last hidden layer over non-padding tokens (cosine as in PyTorch, with its ``eps`` in the norms). Student and
    teacher widths must match (DistilBERT keeps the teacher's hidden size).

    Args:
        student_h: ``(..., D)`` student hidden states.
        teacher_h: same shape.
        mask: optional bool/0-1 tensor of shape ``h.shape[:-1]`` (true = real token).
    """
    _check_same_shape("cosine_hidden_loss", student_h, teacher_h)
    if mask is not None:
        keep = _token_mask(mask, student_h.shape[:-1], "cosine_hidden_loss")
        if not keep.any():
            return _zero_like_graph(student_h)
        student_h, teacher_h = student_h[keep], teacher_h[keep]
    d = student_h.shape[-1]
    s_rows = student_h.reshape(-1, d)
    t_rows = teacher_h.reshape(-1, d)
    target = s_rows.new_ones(s_rows.shape[0])
    return F.cosine_embedding_loss(s_rows, t_rows, target, reduction="mean")


def masked_lm_cross_entropy(logits: Tensor, labels: Tensor) -> Tensor:
    """Masked-LM cross-entropy: mean over the positions with a target (``labels != -100``).

    Formula, over positions ``p`` with ``labels[p] != -100``::

        mean_p -log softmax(z[p])[labels[p]]

    ``CrossEntropyLoss()`` on the flattened tensors, as ``BertForMaskedLM`` and HF's ``distiller.py``, except that a
    batch with no target at all gives ``0`` (attached to the graph) instead of ``nan``.

    Args:
        logits: ``(..., V)`` student MLM logits (e.g. ``(B, S, V)``, or ``(n_rows, V)`` for selected rows).
        labels: ``logits.shape[:-1]`` token ids, ``-100`` where there is no target.
    """
    if tuple(labels.shape) != tuple(logits.shape[:-1]):
        raise ValueError(
            f"masked_lm_cross_entropy: labels shape {tuple(labels.shape)} does not match logits {tuple(logits.shape)}"
        )
    flat_labels = labels.reshape(-1)
    if not (flat_labels != IGNORE_INDEX).any():
        return _zero_like_graph(logits)
    return F.cross_entropy(logits.reshape(-1, logits.shape[-1]), flat_labels, ignore_index=IGNORE_INDEX)
