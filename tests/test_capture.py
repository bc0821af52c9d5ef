"""Attention-score capture on tiny random BERT models (2 layers, hidden 32, 4 heads, vocab 100)."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from transformers import BertConfig, BertForMaskedLM, BertForSequenceClassification, BertModel

from tinydistill.errors import ConfigError
from tinydistill.models.capture import Captured, capture_attention, forward_with_capture

HEADS, HIDDEN, LAYERS = 4, 32, 2
LENGTHS = [7, 5, 3]  # rows 1 and 2 are padded


def _config(**kw) -> BertConfig:
    base = dict(
        vocab_size=100,
        hidden_size=HIDDEN,
        num_hidden_layers=LAYERS,
        num_attention_heads=HEADS,
        intermediate_size=37,
        max_position_embeddings=32,
        num_labels=3,
    )
    base.update(kw)
    return BertConfig(**base)


def _model(cls=BertModel, seed: int = 0, **kw):
    torch.manual_seed(seed)
    return cls(_config(**kw)).eval()


@pytest.fixture
def batch() -> dict[str, torch.Tensor]:
    g = torch.Generator().manual_seed(123)
    seq = max(LENGTHS)
    input_ids = torch.randint(1, 100, (len(LENGTHS), seq), generator=g)
    attention_mask = torch.zeros(len(LENGTHS), seq, dtype=torch.long)
    for i, n in enumerate(LENGTHS):
        attention_mask[i, :n] = 1
    input_ids[attention_mask == 0] = 0
    token_type_ids = torch.zeros_like(input_ids)
    token_type_ids[:, 2:4] = 1
    return {"input_ids": input_ids, "attention_mask": attention_mask, "token_type_ids": token_type_ids}


def _self_attention(model, layer: int):
    base = model if isinstance(model, BertModel) else model.bert
    return base.encoder.layer[layer].attention.self


def _numpy_scores(model, hidden: torch.Tensor, layer: int) -> np.ndarray:
    """Q K^T / sqrt(d) in float64 numpy from the layer's own weights and its input hidden states."""
    att = _self_attention(model, layer)
    h = hidden.detach().numpy().astype(np.float64)  # (B, S, D)
    wq, bq = (p.detach().numpy().astype(np.float64) for p in (att.query.weight, att.query.bias))
    wk, bk = (p.detach().numpy().astype(np.float64) for p in (att.key.weight, att.key.bias))
    q, k = h @ wq.T + bq, h @ wk.T + bk  # (B, S, D)
    b, s, _ = h.shape
    d = HIDDEN // HEADS
    q = q.reshape(b, s, HEADS, d).transpose(0, 2, 1, 3)
    k = k.reshape(b, s, HEADS, d).transpose(0, 2, 1, 3)
    return np.einsum("bhid,bhjd->bhij", q, k) / np.sqrt(d)


def _key_padding(n_batch: int) -> np.ndarray:
    seq = max(LENGTHS)
    return np.array([[j >= LENGTHS[i] for j in range(seq)] for i in range(n_batch)])  # True = padding key


def test_scores_equal_independent_recomputation(batch):
    model = _model()
    with torch.no_grad():
        cap = forward_with_capture(model, batch, want_attention="scores")
        plain = model(**batch, output_hidden_states=True)  # the model's own (sdpa) path
    assert isinstance(cap, Captured)
    assert cap.num_layers == LAYERS and len(cap.attention_scores) == LAYERS and cap.attention_probs is None
    # the hidden states fed to the recomputation are the model's, not something capture made up
    for ours, theirs in zip(cap.hidden_states, plain.hidden_states, strict=True):
        torch.testing.assert_close(ours, theirs, rtol=1e-5, atol=1e-5)

    pad = _key_padding(len(LENGTHS))
    for layer in range(LAYERS):
        got = cap.attention_scores[layer]
        assert got.shape == (len(LENGTHS), HEADS, max(LENGTHS), max(LENGTHS))
        expected = _numpy_scores(model, cap.hidden_states[layer], layer)
        expected[np.broadcast_to(pad[:, None, None, :], expected.shape)] = 0.0  # masked keys are exactly 0
        np.testing.assert_allclose(got.numpy(), expected, rtol=1e-4, atol=1e-5)
        # padding key columns are exact zeros; real entries are not (so the comparison above means something)
        assert (got[1, :, :, LENGTHS[1]:] == 0).all() and (got[2, :, :, LENGTHS[2]:] == 0).all()
        assert (got[0] != 0).all()
        # padding query rows are kept as computed (reference behaviour), not zeroed
        assert (got[2, :, LENGTHS[2]:, : LENGTHS[2]] != 0).all()


def test_probs_are_masked_softmax(batch):
    model = _model()
    with torch.no_grad():
        cap = forward_with_capture(model, batch, want_attention="probs")
    assert cap.attention_scores is None
    pad = _key_padding(len(LENGTHS))
    for layer in range(LAYERS):
        scores = _numpy_scores(model, cap.hidden_states[layer], layer)
        scores[np.broadcast_to(pad[:, None, None, :], scores.shape)] = -np.inf
        e = np.exp(scores - scores.max(-1, keepdims=True))
        np.testing.assert_allclose(cap.attention_probs[layer].numpy(), e / e.sum(-1, keepdims=True), atol=1e-5)


def test_no_padding_needs_no_mask():
    model = _model()
    ids = torch.randint(1, 100, (2, 5), generator=torch.Generator().manual_seed(5))
    with torch.no_grad():
        cap = forward_with_capture(model, {"input_ids": ids})
    assert cap.attention_mask is None
    expected = _numpy_scores(model, cap.hidden_states[0], 0)
    np.testing.assert_allclose(cap.attention_scores[0].numpy(), expected, rtol=1e-4, atol=1e-5)


def test_prepared_additive_float_mask(batch):
    # A caller-prepared 4D additive mask (reference style, -10000 at padding keys) gives the same scores.
    model = _model()
    additive = (1.0 - batch["attention_mask"][:, None, None, :].float()) * -10000.0
    additive = additive.expand(-1, 1, max(LENGTHS), -1)
    with torch.no_grad():
        cap = forward_with_capture(model, batch)
        with capture_attention(model, "scores"):
            out = model(input_ids=batch["input_ids"], token_type_ids=batch["token_type_ids"],
                        attention_mask=additive, output_attentions=True)
    for ours, theirs in zip(out.attentions, cap.attention_scores, strict=True):
        torch.testing.assert_close(ours, theirs)


@pytest.mark.parametrize("cls", [BertModel, BertForSequenceClassification, BertForMaskedLM])
def test_outputs_unchanged_and_implementation_restored(cls, batch):
    model = _model(cls)
    before = model.config._attn_implementation
    with torch.no_grad():
        plain = model(**batch)
        cap = forward_with_capture(model, batch, want_attention="scores")
    assert model.config._attn_implementation == before
    if cls is BertModel:
        assert cap.logits is None
        torch.testing.assert_close(cap.outputs.last_hidden_state, plain.last_hidden_state, rtol=1e-5, atol=1e-5)
    else:
        expected_shape = (3, 3) if cls is BertForSequenceClassification else (3, max(LENGTHS), 100)
        assert cap.logits.shape == expected_shape
        torch.testing.assert_close(cap.logits, plain.logits, rtol=1e-5, atol=1e-5)
    assert len(cap.attention_scores) == LAYERS and len(cap.hidden_states) == LAYERS + 1
    # the attention scores come from the task model's own encoder weights
    expected = _numpy_scores(model, cap.hidden_states[1], 1)
    real = cap.attention_scores[1][0].numpy()  # row 0 has no padding
    np.testing.assert_allclose(real, expected[0], rtol=1e-4, atol=1e-5)


def test_dropout_matches_eager_in_training_mode(batch):
    # Capture keeps the model's attention dropout: with the same RNG state it reproduces eager attention exactly.
    model = _model(BertForSequenceClassification, attention_probs_dropout_prob=0.5, hidden_dropout_prob=0.1)
    model.set_attn_implementation("eager")
    model.train()
    torch.manual_seed(7)
    eager = model(**batch).logits
    torch.manual_seed(7)
    cap = forward_with_capture(model, batch)
    torch.testing.assert_close(cap.logits, eager)
    torch.manual_seed(8)
    assert not torch.allclose(forward_with_capture(model, batch).logits, eager)  # dropout is really active
    assert model.config._attn_implementation == "eager"


def test_gradients_flow_through_student_scores(batch):
    student = _model(BertForSequenceClassification).train()
    cap = forward_with_capture(student, batch)
    assert all(s.requires_grad for s in cap.attention_scores)
    cap.attention_scores[0].pow(2).sum().backward()
    att0 = _self_attention(student, 0)
    assert att0.query.weight.grad is not None and att0.query.weight.grad.abs().sum() > 0
    assert att0.key.weight.grad is not None and att0.key.weight.grad.abs().sum() > 0
    assert att0.value.weight.grad is None or att0.value.weight.grad.abs().sum() == 0  # scores do not use V
    emb = student.bert.embeddings.word_embeddings.weight.grad
    assert emb is not None and emb.abs().sum() > 0


def test_teacher_under_no_grad_has_no_graph(batch):
    teacher = _model(BertForMaskedLM)
    with torch.no_grad():
        cap = forward_with_capture(teacher, batch)
    assert not any(t.requires_grad for t in (*cap.attention_scores, *cap.hidden_states, cap.logits))


def test_batch_extras_are_filtered_and_labels_used(batch):
    model = _model(BertForSequenceClassification)
    extra = {**batch, "labels": torch.tensor([0, 2, 1]), "idx": torch.arange(3)}
    with torch.no_grad():
        cap = forward_with_capture(model, extra)
    assert cap.outputs.loss is not None and cap.outputs.loss.ndim == 0
    assert cap.attention_mask.dtype == torch.bool and cap.attention_mask.sum().item() == sum(LENGTHS)
    with torch.no_grad():  # BertModel has no `labels` parameter: it is dropped, not passed on
        forward_with_capture(_model(), extra)
    with pytest.raises(ValueError, match="input_ids"):
        forward_with_capture(model, {"attention_mask": batch["attention_mask"]})


def test_no_attention_capture(batch):
    model = _model()
    with torch.no_grad():
        cap = forward_with_capture(model, batch, want_attention=None)
    assert cap.attention_scores is None and cap.attention_probs is None
    assert len(cap.hidden_states) == LAYERS + 1 and cap.outputs.attentions is None


def test_bad_kind_raises_config_error(batch):
    model = _model()
    with pytest.raises(ConfigError, match="want_attention='logits'"):
        forward_with_capture(model, batch, want_attention="logits")  # type: ignore[arg-type]
    with pytest.raises(ConfigError):
        with capture_attention(model, "logits"):  # type: ignore[arg-type]
            pass
    assert model.config._attn_implementation == "sdpa"


def test_implementation_restored_after_error(batch):
    model = _model()
    before = model.config._attn_implementation
    bad = {**batch, "input_ids": batch["input_ids"] + 1000}  # out of vocabulary -> IndexError inside forward
    with pytest.raises(IndexError):
        forward_with_capture(model, bad)
    assert model.config._attn_implementation == before


def test_nested_capture_restores_each_level(batch):
    model = _model()
    with capture_attention(model, "probs"):
        with capture_attention(model, "scores"):
            assert model.config._attn_implementation == "tinydistill_scores"
        assert model.config._attn_implementation == "tinydistill_probs"
        with torch.no_grad():
            probs = model(**batch, output_attentions=True).attentions
    assert model.config._attn_implementation == "sdpa"
    torch.testing.assert_close(probs[0].sum(-1), torch.ones(3, HEADS, max(LENGTHS)))


def test_wrapped_model_is_unwrapped(batch):
    class Wrapper(torch.nn.Module):
        def __init__(self, module):
            super().__init__()
            self.module = module

        def forward(self, **kw):
            return self.module(**kw)

    model = _model()
    with torch.no_grad():
        cap = forward_with_capture(Wrapper(model), batch)
        direct = forward_with_capture(model, batch)
    torch.testing.assert_close(cap.attention_scores[1], direct.attention_scores[1])
    with pytest.raises(TypeError, match="PreTrainedModel"):
        forward_with_capture(torch.nn.Linear(2, 2), batch)


def test_bfloat16_teacher_captures_come_back_as_float32_and_close(batch):
    """distill.teacher_dtype=bfloat16: the frozen teacher runs in bf16, its captures reach the losses in float32,
    within bf16's precision of the float32 teacher's."""
    from tinydistill.modules.frozen_teacher import FrozenTeacherMixin, teacher_dtype

    class Holder(FrozenTeacherMixin, torch.nn.Module):
        def __init__(self, teacher):
            super().__init__()
            self.teacher = teacher

    fp32 = Holder(_model(BertForSequenceClassification)).teacher_captures(batch, "scores")
    bf16 = Holder(_model(BertForSequenceClassification).to(teacher_dtype("bfloat16"))).teacher_captures(batch, "scores")
    assert fp32.float() is fp32  # already float32: no copy
    for a, b in [(fp32.hidden_states, bf16.hidden_states), (fp32.attention_scores, bf16.attention_scores),
                 ((fp32.logits,), (bf16.logits,))]:
        for x, y in zip(a, b):
            assert y.dtype == torch.float32
            assert not torch.equal(x, y)  # it really ran in bf16
            torch.testing.assert_close(y, x, rtol=0.05, atol=0.05)
    assert not bf16.hidden_states[0].requires_grad
    with pytest.raises(ConfigError, match="distill.teacher_dtype='float16' must be one of float32, bfloat16"):
        teacher_dtype("float16")
