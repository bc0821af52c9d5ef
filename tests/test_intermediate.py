"""TinyBERT intermediate-layer distillation: projections, per-term losses, layer mapping, weights, config checks."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from transformers import BertConfig

from tinydistill.distill.intermediate import IntermediateDistiller, Projections, intermediate_losses
from tinydistill.errors import ConfigError
from tinydistill.models.capture import Captured

ALL = {"emb": 1.0, "att": 1.0, "hid": 1.0}


def cap(hidden, scores=None, probs=None, mask=None) -> Captured:
    return Captured(
        hidden_states=tuple(torch.as_tensor(h, dtype=torch.float32) for h in hidden),
        attention_scores=None if scores is None else tuple(torch.as_tensor(a, dtype=torch.float32) for a in scores),
        attention_probs=None if probs is None else tuple(torch.as_tensor(a, dtype=torch.float32) for a in probs),
        attention_mask=mask,
        logits=None,
        outputs=None,
    )


def set_linear(linear, weight, bias=None):
    with torch.no_grad():
        linear.weight.copy_(torch.tensor(weight, dtype=torch.float32))
        linear.bias.copy_(torch.tensor(bias if bias is not None else [0.0] * len(weight), dtype=torch.float32))


def layered(num_layers, shape, value_of_layer):
    return [np.full(shape, value_of_layer(i), dtype=np.float32) for i in range(num_layers)]


# ------------------------------------------------------------------ hand-computed values


def test_embedding_term_by_hand_with_shared_projection():
    # E_S (1 x 2 tokens x 2) projected by W (3 x 2): rows [1,0,1] and [0,1,1]; E_T rows [1,0,0] and [0,0,1].
    # Differences [0,0,1] and [0,1,0]: squared sum 2 over 6 elements = 1/3.
    proj = Projections(2, 3, "shared")
    set_linear(proj.shared, [[1, 0], [0, 1], [1, 1]])
    s = cap([[[[1, 0], [0, 1]]], np.zeros((1, 2, 2))])
    t = cap([[[[1, 0, 0], [0, 0, 1]]], np.zeros((1, 2, 3))])
    out = intermediate_losses(s, t, proj, [1], {"emb": 1.0})
    assert set(out) == {"emb", "loss"}
    assert out["emb"].item() == pytest.approx(1 / 3)
    assert out["loss"].item() == pytest.approx(1 / 3)


def test_attention_term_by_hand_reference_zeroing_and_layer_sum():
    # One mapped layer, one head, 2 tokens; key 1 of the student holds -10000 (a masked key in the reference's
    # form) and is zeroed, so entries (0,1), (1,1) compare 0 with the teacher's 0 (masked too).
    s_att = [[[[1.0, -10000.0], [3.0, -10000.0]]]]
    t_att = [[[[2.0, 0.0], [1.0, 0.0]]]]
    # (1-2)^2 + 0 + (3-1)^2 + 0 = 5, / 4 entries
    s = cap([np.zeros((1, 2, 2))] * 2, scores=[s_att])
    t = cap([np.zeros((1, 2, 2))] * 2, scores=[t_att])
    out = intermediate_losses(s, t, Projections(2, 2, "none"), [1], {"att": 1.0})
    assert out["att"].item() == pytest.approx(5 / 4)
    # probabilities are compared as given (no zeroing)
    s_probs = [[[[0.5, 0.5], [1.0, 0.0]]]]  # (1, 1, 2, 2)
    t_probs = [[[[1.0, 0.0], [0.5, 0.5]]]]
    s = cap([np.zeros((1, 2, 2))] * 2, probs=[s_probs])
    t = cap([np.zeros((1, 2, 2))] * 2, probs=[t_probs])
    out = intermediate_losses(s, t, Projections(2, 2, "none"), [1], {"att": 1.0}, attention_kind="probs")
    assert out["att"].item() == pytest.approx((0.25 + 0.25 + 0.25 + 0.25) / 4)
    with pytest.raises(ValueError, match="no attention probs"):
        intermediate_losses(cap([np.zeros((1, 2, 2))] * 2, scores=[s_att]), t, Projections(2, 2, "none"), [1],
                            {"att": 1.0}, attention_kind="probs")


def test_all_terms_against_numpy_with_random_tensors():
    rng = np.random.default_rng(0)
    b, s_len, heads, d_s, d_t, m, n = 2, 3, 2, 4, 5, 2, 4
    mapping = [2, 4]
    s_h = [rng.normal(size=(b, s_len, d_s)) for _ in range(m + 1)]
    t_h = [rng.normal(size=(b, s_len, d_t)) for _ in range(n + 1)]
    s_a = [rng.normal(size=(b, heads, s_len, s_len)) * 3 for _ in range(m)]
    t_a = [rng.normal(size=(b, heads, s_len, s_len)) * 3 for _ in range(n)]
    w_e, b_e = rng.normal(size=(d_t, d_s)), rng.normal(size=d_t)
    w_h, b_h = rng.normal(size=(d_t, d_s)), rng.normal(size=d_t)
    proj = Projections(d_s, d_t, "separate")
    set_linear(proj.embedding, w_e, b_e)
    set_linear(proj.hidden, w_h, b_h)
    weights = {"emb": 0.5, "att": 2.0, "hid": 3.0}
    out = intermediate_losses(cap(s_h, s_a), cap(t_h, t_a), proj, mapping, weights)

    def mse(x, y):
        return float(((np.asarray(x, np.float64) - np.asarray(y, np.float64)) ** 2).mean())

    emb = mse(s_h[0] @ w_e.T + b_e, t_h[0])
    att = sum(mse(s_a[i], t_a[g - 1]) for i, g in enumerate(mapping))  # all |scores| < 100: no zeroing
    hid = sum(mse(s_h[i + 1] @ w_h.T + b_h, t_h[g]) for i, g in enumerate(mapping))
    assert out["emb"].item() == pytest.approx(emb, rel=1e-5)
    assert out["att"].item() == pytest.approx(att, rel=1e-5)
    assert out["hid"].item() == pytest.approx(hid, rel=1e-5)
    assert out["loss"].item() == pytest.approx(0.5 * emb + 2.0 * att + 3.0 * hid, rel=1e-5)


# ------------------------------------------------------------------ mapping, weights, projections


@pytest.mark.parametrize(("mapping", "expected"), [([2, 4], 4 + 16), ([1, 2], 1 + 4), ([3, 4], 9 + 16), ([1, 3], 1 + 9)])
def test_layer_map_is_applied_to_hidden_and_attention(mapping, expected):
    # Teacher layer g holds the constant g everywhere; the student holds zeros (and projects to zeros), so
    # each term is the sum over mapped layers of g^2, which identifies the layers actually used.
    shape_h, shape_a = (1, 2, 3), (1, 2, 2, 2)
    t = cap(layered(5, shape_h, float), scores=layered(4, shape_a, lambda i: float(i + 1)))
    s = cap(layered(3, (1, 2, 2), lambda i: 0.0), scores=layered(2, shape_a, lambda i: 0.0))
    proj = Projections(2, 3, "shared")
    set_linear(proj.shared, np.zeros((3, 2)))
    out = intermediate_losses(s, t, proj, mapping, ALL)
    assert out["hid"].item() == pytest.approx(expected)
    assert out["att"].item() == pytest.approx(expected)
    assert out["emb"].item() == pytest.approx(0.0)  # teacher embeddings are layer 0 = 0.0


def test_zero_weights_skip_terms_and_leave_the_total():
    t = cap(layered(3, (1, 2, 3), lambda i: 1.0), scores=layered(2, (1, 2, 2, 2), lambda i: 2.0))
    s = cap(layered(3, (1, 2, 2), lambda i: 0.0), scores=layered(2, (1, 2, 2, 2), lambda i: 0.0))
    proj = Projections(2, 3, "shared")
    set_linear(proj.shared, np.zeros((3, 2)))
    full = intermediate_losses(s, t, proj, [1, 2], ALL)
    assert full["emb"].item() == pytest.approx(1.0)
    assert full["att"].item() == pytest.approx(8.0) and full["hid"].item() == pytest.approx(2.0)
    assert full["loss"].item() == pytest.approx(11.0)
    no_att = intermediate_losses(s, t, proj, [1, 2], {"emb": 1.0, "att": 0.0, "hid": 1.0})
    assert set(no_att) == {"emb", "hid", "loss"} and no_att["loss"].item() == pytest.approx(3.0)
    only_att = intermediate_losses(s, t, proj, [1, 2], {"att": 0.5})
    assert set(only_att) == {"att", "loss"} and only_att["loss"].item() == pytest.approx(4.0)
    nothing = intermediate_losses(s, t, proj, [1, 2], {})
    assert set(nothing) == {"loss"} and nothing["loss"].item() == 0.0
    with pytest.raises(ConfigError, match=">= 0"):
        intermediate_losses(s, t, proj, [1, 2], {"emb": -1.0})


def test_shared_projection_is_one_map_separate_are_two():
    x = torch.randn(2, 3, 4)
    shared = Projections(4, 6, "shared")
    assert torch.equal(shared.embedding_map(x), shared.hidden_map(x))
    assert sorted(shared.state_dict()) == ["shared.bias", "shared.weight"]
    separate = Projections(4, 6, "separate")
    assert not torch.allclose(separate.embedding_map(x), separate.hidden_map(x))
    assert sorted(separate.state_dict()) == ["embedding.bias", "embedding.weight", "hidden.bias", "hidden.weight"]
    # BERT initialisation, as the reference's fit_dense: std 0.02, zero bias
    big = Projections(300, 400, "shared")
    assert big.shared.weight.std().item() == pytest.approx(0.02, rel=0.05) and big.shared.bias.abs().max() == 0
    ident = Projections(4, 4, "none")
    assert torch.equal(ident.hidden_map(x), x) and len(ident.state_dict()) == 0
    with pytest.raises(ConfigError, match="equal hidden sizes"):
        Projections(4, 6, "none")
    with pytest.raises(ConfigError, match="distill.projection"):
        Projections(4, 6, "diagonal")


@pytest.mark.parametrize("mode", ["shared", "separate", "none"])
def test_projections_save_and_load(tmp_path, mode):
    d_t = 4 if mode == "none" else 6
    proj = Projections(4, d_t, mode)
    proj.save(tmp_path)
    assert (tmp_path / "projections.safetensors").is_file() and (tmp_path / "projections.json").is_file()
    back = Projections.load(tmp_path)
    assert back.mode == mode and (back.student_hidden, back.teacher_hidden) == (4, d_t)
    x = torch.randn(2, 4)
    assert torch.equal(back.embedding_map(x), proj.embedding_map(x))
    assert torch.equal(back.hidden_map(x), proj.hidden_map(x))
    other = "separate" if mode != "separate" else "shared"
    with pytest.raises(ConfigError, match=f"distill.projection={mode}"):
        Projections.load(tmp_path, mode=other)
    with pytest.raises(ConfigError, match="no projections"):
        Projections.load(tmp_path / "missing")


def test_mask_padding_restricts_hidden_average_to_real_tokens():
    # token 1 is padding: only token 0's squared error (1 per element) counts
    t = cap([np.array([[[1.0, 1.0], [5.0, 5.0]]])] * 2)
    s = cap([np.zeros((1, 2, 2))] * 2, mask=torch.tensor([[True, False]]))
    out = intermediate_losses(s, t, Projections(2, 2, "none"), [1], {"hid": 1.0}, mask_padding=True)
    assert out["hid"].item() == pytest.approx(1.0)
    out = intermediate_losses(s, t, Projections(2, 2, "none"), [1], {"hid": 1.0})
    assert out["hid"].item() == pytest.approx((1 + 1 + 25 + 25) / 4)


# ------------------------------------------------------------------ start-up checks from config


def bert(layers, hidden, heads):
    return BertConfig(vocab_size=100, num_hidden_layers=layers, hidden_size=hidden, num_attention_heads=heads)


def test_from_config_builds_mapping_projection_and_capture_kind():
    d = IntermediateDistiller.from_config(
        {"weights": ALL, "layer_map": "uniform", "projection": "separate", "attention": "probs"},
        bert(3, 12, 4), bert(6, 24, 4),
    )
    assert d.mapping == [2, 4, 6] and d.projections.mode == "separate" and d.want_attention == "probs"
    assert d.active_terms == ("emb", "att", "hid")
    assert [n for n, _ in d.named_parameters()] == [
        "projections.embedding.weight", "projections.embedding.bias", "projections.hidden.weight", "projections.hidden.bias",
    ]
    explicit = IntermediateDistiller.from_config({"weights": ALL, "layer_map": [1, 5, 6]}, bert(3, 12, 4), bert(6, 24, 4))
    assert explicit.mapping == [1, 5, 6]
    no_att = IntermediateDistiller.from_config({"weights": {"emb": 1, "hid": 1, "att": 0}}, bert(3, 12, 4), bert(6, 24, 4))
    assert no_att.want_attention is None and no_att.active_terms == ("emb", "hid")
    # a projection no active term uses is frozen (no gradient would reach it)
    no_emb = IntermediateDistiller.from_config({"weights": {"att": 1, "hid": 1}, "projection": "separate"},
                                               bert(3, 12, 4), bert(6, 24, 4))
    trainable = [n for n, p in no_emb.named_parameters() if p.requires_grad]
    assert trainable == ["projections.hidden.weight", "projections.hidden.bias"]


def test_head_count_mismatch_is_a_clear_error_unless_attention_is_off():
    with pytest.raises(ConfigError, match="num_attention_heads=2 and teacher num_attention_heads=4"):
        IntermediateDistiller.from_config({"weights": ALL}, bert(2, 12, 2), bert(4, 24, 4))
    d = IntermediateDistiller.from_config({"weights": {**ALL, "att": 0.0}}, bert(2, 12, 2), bert(4, 24, 4))
    assert d.mapping == [2, 4]


def test_layer_count_errors_suggest_alternatives():
    with pytest.raises(ConfigError, match="top.*bottom.*explicit list"):
        IntermediateDistiller.from_config({"weights": ALL, "layer_map": "uniform"}, bert(4, 12, 4), bert(6, 24, 4))
    with pytest.raises(ConfigError, match="more layers"):
        IntermediateDistiller.from_config({"weights": ALL, "layer_map": "top"}, bert(8, 12, 4), bert(6, 24, 4))
    assert IntermediateDistiller.from_config({"weights": ALL, "layer_map": "top"}, bert(4, 12, 4), bert(6, 24, 4)).mapping == [3, 4, 5, 6]
    assert IntermediateDistiller.from_config({"weights": ALL, "layer_map": "bottom"}, bert(4, 12, 4), bert(6, 24, 4)).mapping == [1, 2, 3, 4]


def test_loaded_projections_must_fit_the_config(tmp_path):
    Projections(12, 24, "shared").save(tmp_path)
    loaded = Projections.load(tmp_path)
    d = IntermediateDistiller.from_config({"weights": ALL}, bert(2, 12, 4), bert(4, 24, 4), projections=loaded)
    assert d.projections is loaded
    with pytest.raises(ConfigError, match="do not fit"):
        IntermediateDistiller.from_config({"weights": ALL}, bert(2, 16, 4), bert(4, 24, 4), projections=loaded)


def test_gradients_reach_student_states_and_projections_only():
    s_h = [torch.randn(1, 2, 2, requires_grad=True) for _ in range(2)]
    s_a = [torch.randn(1, 1, 2, 2, requires_grad=True)]
    t = cap([np.ones((1, 2, 3))] * 3, scores=[np.ones((1, 1, 2, 2))] * 2)
    s = Captured(tuple(s_h), tuple(s_a), None, None, None, None)
    proj = Projections(2, 3, "shared")
    out = intermediate_losses(s, t, proj, [2], ALL)
    out["loss"].backward()
    assert all(h.grad is not None and h.grad.abs().sum() > 0 for h in s_h)
    assert s_a[0].grad.abs().sum() > 0 and proj.shared.weight.grad.abs().sum() > 0
