"""Each loss against a hand computation (plain Python loops / numpy), not the same torch expression."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch

from tinydistill.errors import ConfigError
from tinydistill.losses import (
    attention_loss,
    cosine_hidden_loss,
    distillation_kl,
    hidden_mse,
    masked_lm_cross_entropy,
    soft_cross_entropy,
)


def _t(x) -> torch.Tensor:
    return torch.tensor(x, dtype=torch.float32)


def _softmax(row: list[float]) -> list[float]:
    m = max(row)
    e = [math.exp(v - m) for v in row]
    z = sum(e)
    return [v / z for v in e]


# ---------------------------------------------------------------- hidden_mse

S_H = [[[1.0, 2.0], [0.5, -1.0], [3.0, 0.0]]]  # (B=1, S=3, D=2)
T_H = [[[0.0, 2.0], [1.5, 1.0], [0.0, 4.0]]]


def test_hidden_mse_is_mean_over_all_elements_including_padding():
    # squared differences: 1, 0, 1, 4, 9, 16 -> mean 31/6
    assert hidden_mse(_t(S_H), _t(T_H)).item() == pytest.approx(31 / 6)


def test_hidden_mse_with_mask_averages_over_real_tokens_only():
    mask = torch.tensor([[True, True, False]])
    # positions 0 and 1: 1 + 0 + 1 + 4 = 6 over 2 tokens * 2 dims
    assert hidden_mse(_t(S_H), _t(T_H), mask).item() == pytest.approx(6 / 4)
    assert hidden_mse(_t(S_H), _t(T_H), mask.long()).item() == pytest.approx(6 / 4)


def test_hidden_mse_empty_mask_is_zero_and_differentiable():
    s = _t(S_H).requires_grad_()
    loss = hidden_mse(s, _t(T_H), torch.zeros(1, 3, dtype=torch.bool))
    assert loss.item() == 0.0
    loss.backward()
    assert torch.equal(s.grad, torch.zeros_like(s))


def test_hidden_mse_shape_mismatch():
    with pytest.raises(ValueError, match="shapes differ"):
        hidden_mse(torch.zeros(1, 3, 2), torch.zeros(1, 3, 4))
    with pytest.raises(ValueError, match="mask shape"):
        hidden_mse(torch.zeros(1, 3, 2), torch.zeros(1, 3, 2), torch.ones(1, 2, dtype=torch.bool))


# ---------------------------------------------------------------- attention_loss

# One example, one head, 3 tokens, key 2 is padding. Raw scores (before any mask):
RAW_S = [[0.5, -1.0, 2.0], [1.0, 0.0, -3.0], [0.25, 0.75, 1.0]]
RAW_T = [[1.5, -2.0, 7.0], [0.0, 0.0, 4.0], [1.25, 0.75, -5.0]]
PAD_KEY = 2


def _masked(raw: list[list[float]], fill: float) -> torch.Tensor:
    rows = [[fill if j == PAD_KEY else v for j, v in enumerate(r)] for r in raw]
    return _t([[rows]])  # (1, 1, 3, 3)


def _reference_expected() -> float:
    """Reference: masked keys zeroed in both, then mean over all 9 entries (padding column contributes 0)."""
    total = 0.0
    for i in range(3):
        for j in range(3):
            s = 0.0 if j == PAD_KEY else RAW_S[i][j]
            t = 0.0 if j == PAD_KEY else RAW_T[i][j]
            total += (s - t) ** 2
    return total / 9  # = (1 + 1 + 1 + 0 + 1 + 0) / 9


def test_attention_loss_reference_value():
    assert _reference_expected() == pytest.approx(4 / 9)
    assert attention_loss(_masked(RAW_S, 0.0), _masked(RAW_T, 0.0)).item() == pytest.approx(4 / 9)


@pytest.mark.parametrize("fill", [-10000.0, torch.finfo(torch.float32).min])
def test_attention_loss_same_for_reference_additive_masks(fill):
    # The reference passes score + (-10000) at masked keys; transformers' eager mask uses finfo.min.
    s = _masked([[v + (fill if j == PAD_KEY else 0.0) for j, v in enumerate(r)] for r in RAW_S], fill)
    t = _masked(RAW_T, fill)
    assert attention_loss(s, t).item() == pytest.approx(4 / 9)


def test_attention_loss_zero_below_reproduces_reference_quirk_and_can_be_disabled():
    s = _t([[[[-150.0, 1.0], [0.0, 2.0]]]])
    t = _t([[[[-140.0, 3.0], [1.0, 2.0]]]])
    # reference zeroes both -150 and -140 (genuine scores <= -100): (0 + 4 + 1 + 0) / 4
    assert attention_loss(s, t).item() == pytest.approx(5 / 4)
    # disabled: (10^2 + 4 + 1 + 0) / 4
    assert attention_loss(s, t, zero_below=None).item() == pytest.approx(105 / 4)
    s.requires_grad_()
    attention_loss(s, t).backward()
    assert s.grad[0, 0, 0, 0].item() == 0.0  # no gradient through zeroed entries, as in the reference
    assert s.grad[0, 0, 0, 1].item() == pytest.approx(2 * (1.0 - 3.0) / 4)


def test_attention_loss_with_token_mask_counts_real_query_key_pairs_per_head():
    torch.manual_seed(0)
    s = torch.randn(2, 2, 3, 3)
    t = torch.randn(2, 2, 3, 3)
    mask = torch.tensor([[1, 1, 1], [1, 1, 0]])
    a, b, m = s.numpy().astype(np.float64), t.numpy().astype(np.float64), mask.numpy()
    total, count = 0.0, 0
    for bi in range(2):
        for h in range(2):
            for i in range(3):
                for j in range(3):
                    if m[bi, i] and m[bi, j]:
                        total += (a[bi, h, i, j] - b[bi, h, i, j]) ** 2
                        count += 1
    assert count == 2 * (9 + 4)
    assert attention_loss(s, t, mask=mask, zero_below=None).item() == pytest.approx(total / count, rel=1e-5)


def test_attention_loss_mean_over_elements_equals_mean_of_per_head_mse():
    torch.manual_seed(1)
    s, t = torch.randn(2, 3, 4, 4), torch.randn(2, 3, 4, 4)
    a, b = s.numpy().astype(np.float64), t.numpy().astype(np.float64)
    per_head = [((a[:, h] - b[:, h]) ** 2).mean() for h in range(3)]
    assert attention_loss(s, t, zero_below=None).item() == pytest.approx(sum(per_head) / 3, rel=1e-5)


def test_attention_loss_rejects_bad_shapes():
    with pytest.raises(ValueError, match="shapes differ"):
        attention_loss(torch.zeros(1, 4, 3, 3), torch.zeros(1, 2, 3, 3))
    with pytest.raises(ValueError, match="batch, heads, seq, seq"):
        attention_loss(torch.zeros(4, 3, 3), torch.zeros(4, 3, 3))


# ---------------------------------------------------------------- soft_cross_entropy

S_LOGITS = [[1.0, 2.0, 3.0], [0.0, -1.0, 0.5]]
T_LOGITS = [[3.0, 1.0, 0.0], [2.0, 2.0, -1.0]]


def _soft_ce_rows(temperature: float) -> list[float]:
    rows = []
    for s, t in zip(S_LOGITS, T_LOGITS):
        p_t = _softmax([v / temperature for v in t])
        p_s = _softmax([v / temperature for v in s])
        rows.append(-sum(pt * math.log(ps) for pt, ps in zip(p_t, p_s)))
    return rows


@pytest.mark.parametrize("temperature", [1.0, 2.0])
def test_soft_cross_entropy_reference_mean_and_batchmean(temperature):
    rows = _soft_ce_rows(temperature)
    batchmean = sum(rows) / len(rows)
    got_ref = soft_cross_entropy(_t(S_LOGITS), _t(T_LOGITS), temperature).item()
    got_bm = soft_cross_entropy(_t(S_LOGITS), _t(T_LOGITS), temperature, reduction="batchmean").item()
    assert got_bm == pytest.approx(batchmean, rel=1e-6)
    # reference: (- targets_prob * student_likelihood).mean() -> mean over all B*C elements, no T^2 factor
    assert got_ref == pytest.approx(batchmean / 3, rel=1e-6)


def test_soft_cross_entropy_known_value():
    # identical uniform logits over 2 classes: -sum 0.5*log(0.5) = log 2 per row
    z = torch.zeros(4, 2)
    assert soft_cross_entropy(z, z, reduction="batchmean").item() == pytest.approx(math.log(2))
    assert soft_cross_entropy(z, z).item() == pytest.approx(math.log(2) / 2)


@pytest.mark.parametrize("temperature", [0.0, -1.0, float("nan")])
def test_bad_temperature_raises_config_error(temperature):
    with pytest.raises(ConfigError, match="temperature"):
        soft_cross_entropy(_t(S_LOGITS), _t(T_LOGITS), temperature)
    with pytest.raises(ConfigError, match="temperature"):
        distillation_kl(_t(S_LOGITS), _t(T_LOGITS), temperature)


def test_soft_cross_entropy_bad_reduction():
    with pytest.raises(ConfigError, match="reduction"):
        soft_cross_entropy(_t(S_LOGITS), _t(T_LOGITS), reduction="sum")  # type: ignore[arg-type]


# ---------------------------------------------------------------- distillation_kl

# (B=1, S=3, V=3) token logits; position 2 is padding
KL_S = [[[1.0, 0.0, -1.0], [0.5, 0.5, 2.0], [9.0, -9.0, 0.0]]]
KL_T = [[[0.0, 1.0, 0.0], [2.0, 0.0, 1.0], [-9.0, 9.0, 0.0]]]


def _kl_rows(positions: list[int], temperature: float) -> float:
    total = 0.0
    for p in positions:
        p_s = _softmax([v / temperature for v in KL_S[0][p]])
        p_t = _softmax([v / temperature for v in KL_T[0][p]])
        total += sum(t * (math.log(t) - math.log(s)) for t, s in zip(p_t, p_s))
    return total / len(positions) * temperature**2


@pytest.mark.parametrize("temperature", [1.0, 2.0])
def test_distillation_kl_masked_rows_batchmean_times_t_squared(temperature):
    mask = torch.tensor([[1, 1, 0]])
    got = distillation_kl(_t(KL_S), _t(KL_T), temperature, mask).item()
    assert got == pytest.approx(_kl_rows([0, 1], temperature), rel=1e-5)
    got_all = distillation_kl(_t(KL_S), _t(KL_T), temperature).item()
    assert got_all == pytest.approx(_kl_rows([0, 1, 2], temperature), rel=1e-5)


def test_distillation_kl_is_zero_for_identical_logits_and_on_empty_selection():
    z = _t(KL_S).requires_grad_()
    assert distillation_kl(z, _t(KL_S), 2.0).item() == pytest.approx(0.0, abs=1e-6)
    empty = distillation_kl(z, _t(KL_T), 2.0, torch.zeros(1, 3, dtype=torch.bool))
    assert empty.item() == 0.0
    empty.backward()  # still part of the graph
    # rows already selected by the caller, none in this batch
    no_rows = distillation_kl(z[0, :0], _t(KL_T)[0, :0], 2.0)
    assert no_rows.item() == 0.0
    no_rows.backward()


def test_distillation_kl_temperature_scaling():
    # T^2 * KL(softmax(z_T/T) || softmax(z_S/T)) == T^2 * (the T=1 loss on logits divided by T)
    s, t = _t(KL_S), _t(KL_T)
    for temperature in (0.5, 2.0, 4.0):
        scaled = distillation_kl(s / temperature, t / temperature, 1.0).item()
        assert distillation_kl(s, t, temperature).item() == pytest.approx(temperature**2 * scaled, rel=1e-5)
    # a higher temperature softens both distributions: the un-scaled KL shrinks
    assert distillation_kl(s, t, 4.0).item() / 16 < distillation_kl(s, t, 1.0).item()


def test_distillation_kl_on_masked_positions_only():
    # DistilBERT's restrict_ce_to_mask: rows selected by the MLM labels (here only position 1 has a target)
    labels = torch.tensor([[-100, 7, -100]])
    got = distillation_kl(_t(KL_S), _t(KL_T), 2.0, labels != -100).item()
    assert got == pytest.approx(_kl_rows([1], 2.0), rel=1e-5)


def test_distillation_kl_equals_hf_distiller_expression():
    torch.manual_seed(1)
    s, t = torch.randn(2, 5, 11), torch.randn(2, 5, 11)
    mask = torch.tensor([[1, 1, 1, 0, 0], [1, 1, 1, 1, 1]]).bool()
    temperature = 2.0
    # distiller.py: select rows with the attention mask, KLDivLoss(batchmean)(log p_S, p_T) * T^2
    s_sel, t_sel = s[mask], t[mask]
    expected = torch.nn.KLDivLoss(reduction="batchmean")(
        torch.log_softmax(s_sel / temperature, -1), torch.softmax(t_sel / temperature, -1)) * temperature**2
    assert distillation_kl(s, t, temperature, mask).item() == pytest.approx(expected.item(), rel=1e-5)


# ---------------------------------------------------------------- masked_lm_cross_entropy


def test_masked_lm_cross_entropy_hand_computed():
    # (B=1, S=3, V=3); targets at positions 0 (id 2) and 2 (id 0); position 1 ignored
    logits = [[[1.0, 0.0, -1.0], [5.0, 5.0, 5.0], [0.0, 2.0, 1.0]]]
    labels = torch.tensor([[2, -100, 0]])
    expected = (-math.log(_softmax(logits[0][0])[2]) - math.log(_softmax(logits[0][2])[0])) / 2
    assert masked_lm_cross_entropy(_t(logits), labels).item() == pytest.approx(expected, rel=1e-6)
    # rows already selected (n_rows, V) give the same value
    rows = torch.tensor([True, False, True])
    assert masked_lm_cross_entropy(_t(logits)[0][rows], labels[0][rows]).item() == pytest.approx(expected, rel=1e-6)


def test_masked_lm_cross_entropy_without_targets_is_zero_not_nan():
    z = torch.randn(1, 3, 4, requires_grad=True)
    loss = masked_lm_cross_entropy(z, torch.full((1, 3), -100))
    assert loss.item() == 0.0
    loss.backward()
    with pytest.raises(ValueError, match="does not match"):
        masked_lm_cross_entropy(z, torch.zeros(1, 4, dtype=torch.long))


# ---------------------------------------------------------------- cosine_hidden_loss


def test_cosine_hidden_loss_over_non_padding_positions():
    s = [[[1.0, 0.0], [1.0, 1.0], [3.0, 4.0]]]
    t = [[[0.0, 2.0], [2.0, 2.0], [-3.0, -4.0]]]
    # cosines: 0, 1, -1 -> 1 - cos: 1, 0, 2
    assert cosine_hidden_loss(_t(s), _t(t), torch.tensor([[1, 1, 0]])).item() == pytest.approx(0.5)
    assert cosine_hidden_loss(_t(s), _t(t)).item() == pytest.approx(1.0)


def test_cosine_hidden_loss_random_against_numpy():
    torch.manual_seed(2)
    s, t = torch.randn(2, 4, 5), torch.randn(2, 4, 5)
    mask = torch.tensor([[1, 1, 1, 0], [1, 0, 0, 0]])
    a, b, m = s.numpy().astype(np.float64), t.numpy().astype(np.float64), mask.numpy()
    vals = []
    for i in range(2):
        for j in range(4):
            if m[i, j]:
                cos = float(a[i, j] @ b[i, j] / (np.linalg.norm(a[i, j]) * np.linalg.norm(b[i, j])))
                vals.append(1 - cos)
    assert cosine_hidden_loss(s, t, mask).item() == pytest.approx(sum(vals) / len(vals), rel=1e-5)


def test_cosine_hidden_loss_needs_equal_widths():
    with pytest.raises(ValueError, match="shapes differ"):
        cosine_hidden_loss(torch.zeros(1, 2, 3), torch.zeros(1, 2, 4))


def test_cosine_hidden_loss_equals_cosine_embedding_loss_with_target_one():
    torch.manual_seed(3)
    s, t = torch.randn(2, 4, 6), torch.randn(2, 4, 6)
    mask = torch.tensor([[1, 1, 0, 0], [1, 1, 1, 1]]).bool()
    expected = torch.nn.CosineEmbeddingLoss(reduction="mean")(s[mask], t[mask], torch.ones(int(mask.sum())))
    assert cosine_hidden_loss(s, t, mask).item() == pytest.approx(expected.item(), rel=1e-6)
