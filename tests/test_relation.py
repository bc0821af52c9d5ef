"""MiniLM-v2's relation loss (losses.relation_kl), its distiller (distill/relation.py) and the capture of queries,
keys and values (models/qkv.py), on small numbers and tiny random models."""

import math

import pytest
import torch
from transformers import (
    AutoModel,
    BertConfig,
    BertModel,
    DebertaV2Config,
    ModernBertConfig,
)

from tinydistill.distill.methods import distiller_from_config
from tinydistill.distill.relation import RelationDistiller, upper_middle
from tinydistill.errors import ConfigError
from tinydistill.losses import relation_kl
from tinydistill.models.capture import forward_with_capture
from tinydistill.models.layer_map import check_compatible
from tinydistill.models.qkv import capture_route, record_qkv


def by_hand(student: list, teacher: list, heads: int, real: list) -> float:
    """relation_kl for one sequence with explicit loops: lists of token vectors, `real` the real-token flags."""
    def relation(x, r, i):
        d = len(x[0]) // heads
        dots = [sum(x[i][r * d + c] * x[j][r * d + c] for c in range(d)) / math.sqrt(d) if real[j] else None
                for j in range(len(x))]
        z = sum(math.exp(v) for v in dots if v is not None)
        return [None if v is None else math.exp(v) / z for v in dots]

    total, rows = 0.0, 0
    for r in range(heads):
        for i in range(len(student)):
            if not real[i]:
                continue
            p_t, p_s = relation(teacher, r, i), relation(student, r, i)
            total += sum(t * (math.log(t) - math.log(s)) for t, s in zip(p_t, p_s) if t is not None)
            rows += 1
    return total / rows


def test_relation_kl_equals_a_hand_computation():
    # One sequence of 3 tokens (the last one padding), 2 relation heads; student width 4, teacher width 6.
    student = [[0.5, -1.0, 0.2, 0.3], [1.0, 0.0, -0.4, 0.8], [0.1, 0.9, 0.7, -0.2]]
    teacher = [[0.2, 0.4, -0.6, 1.0, 0.0, 0.5], [-0.3, 0.8, 0.1, 0.2, 0.9, -0.7], [2.0, -2.0, 1.5, 0.3, 0.3, 0.3]]
    real = [True, True, False]
    got = relation_kl(torch.tensor([student]), torch.tensor([teacher]), 2, torch.tensor([real]))
    assert got.item() == pytest.approx(by_hand(student, teacher, 2, real), rel=1e-5)
    everything = relation_kl(torch.tensor([student]), torch.tensor([teacher]), 2)
    assert everything.item() == pytest.approx(by_hand(student, teacher, 2, [True] * 3), rel=1e-5)


def test_relation_kl_needs_neither_equal_widths_nor_head_counts():
    torch.manual_seed(0)
    mask = torch.tensor([[1, 1, 1, 1, 0], [1, 1, 1, 1, 1]], dtype=torch.bool)
    s = torch.randn(2, 5, 12, requires_grad=True)  # e.g. a student with 3 attention heads of 4
    t = torch.randn(2, 5, 48)  # a teacher with 4 heads of 12: relation heads are neither
    loss = relation_kl(s, t, 6, mask)
    assert torch.isfinite(loss) and loss > 0
    loss.backward()
    assert s.grad.abs().sum() > 0
    assert relation_kl(t, t, 6, mask).item() == pytest.approx(0.0, abs=1e-6)  # identical relations: no loss


def test_relation_kl_ignores_padding():
    torch.manual_seed(1)
    s, t = torch.randn(2, 6, 8), torch.randn(2, 6, 8)
    mask = torch.ones(2, 6, dtype=torch.bool)
    mask[0, 4:] = False
    s2, t2 = s.clone(), t.clone()
    s2[0, 4:], t2[0, 4:] = 100.0, -50.0  # whatever sits at padding positions
    assert relation_kl(s, t, 2, mask).item() == pytest.approx(relation_kl(s2, t2, 2, mask).item(), rel=1e-6)
    assert relation_kl(s, t, 2, torch.zeros(2, 6, dtype=torch.bool)).item() == 0.0


def test_relation_kl_rejects_bad_shapes():
    with pytest.raises(ValueError, match="not a multiple of 3 relation heads"):
        relation_kl(torch.randn(1, 4, 8), torch.randn(1, 4, 9), 3)
    with pytest.raises(ValueError, match="equal batch and sequence"):
        relation_kl(torch.randn(1, 4, 8), torch.randn(1, 5, 8), 2)


def test_upper_middle_layer():
    assert [upper_middle(n) for n in (24, 12, 6, 4, 2, 1)] == [21, 11, 5, 3, 1, 1]


def bert(layers=2, hidden=16, heads=2) -> BertModel:
    torch.manual_seed(0)
    return BertModel(BertConfig(vocab_size=100, hidden_size=hidden, num_hidden_layers=layers, num_attention_heads=heads,
                                intermediate_size=32, max_position_embeddings=64))


SETTINGS = {"name": "minilm", "relation_heads": 4, "relations": ["query", "key", "value"], "weights": {"rel": 1.0},
            "teacher_layer": "upper_middle", "student_layer": "last"}


@pytest.mark.parametrize(("change", "message"), [
    ({"relation_heads": 3}, "distill.relation_heads=3 must divide the attention widths of both models (the student's "
                            "is 16, the teacher's is 24)"),
    ({"relation_heads": 0}, "distill.relation_heads=0 must be a whole number >= 1"),
    ({"teacher_layer": 7}, "distill.teacher_layer=7: the model has layers 1..6"),
    ({"teacher_layer": "middle"}, "distill.teacher_layer='middle' must be upper_middle or last, or a layer number"),
    ({"student_layer": "upper_middle"}, "distill.student_layer='upper_middle' must be last, or a layer number in 1..2"),
    ({"relations": ["query", "attention"]}, "distill.relations=['query', 'attention'] must list some of query, key"),
    ({"weights": {"rel": 1.0, "hid": 1.0}}, "distill=minilm has one intermediate term, weights.rel"),
])
def test_settings_are_checked_against_both_models(change, message):
    with pytest.raises(ConfigError) as e:
        distiller_from_config({**SETTINGS, **change}, bert().config, bert(6, 24, 4).config)
    assert message in str(e.value)


def test_distiller_defaults_and_reads():
    d = distiller_from_config(SETTINGS, bert().config, bert(6, 24, 4).config)
    assert isinstance(d, RelationDistiller)
    assert (d.teacher_layer, d.student_layer, d.heads) == (5, 2, 4)
    assert d.teacher_reads == (set(), {4}) and d.want_attention == "qkv" and d.projections is None
    assert d.active_terms == ("rel_q", "rel_k", "rel_v")


BATCH = {"input_ids": torch.tensor([[2, 5, 9, 13, 3, 0], [2, 7, 8, 3, 0, 0]]),
         "attention_mask": torch.tensor([[1, 1, 1, 1, 1, 0], [1, 1, 1, 1, 0, 0]]),
         "token_type_ids": torch.zeros(2, 6, dtype=torch.long)}
DEBERTA = DebertaV2Config(vocab_size=100, hidden_size=24, num_hidden_layers=2, num_attention_heads=4,
                          intermediate_size=48, max_position_embeddings=64, relative_attention=True,
                          pos_att_type=["p2c", "c2p"], position_buckets=8, max_relative_positions=16, type_vocab_size=0,
                          position_biased_input=False)
MODERNBERT = ModernBertConfig(vocab_size=100, hidden_size=24, num_hidden_layers=3, num_attention_heads=4,
                              intermediate_size=48, max_position_embeddings=64, pad_token_id=0, bos_token_id=2,
                              eos_token_id=3, cls_token_id=2, sep_token_id=3, local_attention=4,
                              global_attn_every_n_layers=2)


def assert_projections(captured, projections) -> None:
    """Each layer's captured queries, keys and values are its own projections of the hidden states it read."""
    for i, layer_projections in enumerate(projections):
        for j, proj in enumerate(layer_projections):
            assert torch.allclose(captured.qkv[i][j], proj(captured.hidden_states[i]), atol=1e-6)


def test_bert_queries_keys_values_are_its_projections():
    model = bert().eval()
    before = model.config._attn_implementation
    plain = model(**BATCH).last_hidden_state
    captured = forward_with_capture(model, BATCH, "qkv")
    assert torch.allclose(captured.hidden_states[-1], plain, atol=1e-5)  # the outputs do not change
    assert model.config._attn_implementation == before  # and the implementation is restored
    assert_projections(captured, [(s.query, s.key, s.value) for s in (x.attention.self for x in model.encoder.layer)])


def captured_qkv(config, route: str, layers: int, atol: float):
    """A model of `config` captured through `route`: its outputs unchanged, one (q, k, v) per layer."""
    torch.manual_seed(0)
    model = AutoModel.from_config(config).eval()
    assert capture_route(model) == route
    plain = model(**BATCH).last_hidden_state
    captured = forward_with_capture(model, BATCH, "qkv")
    assert torch.allclose(captured.outputs.last_hidden_state, plain, atol=atol)
    assert len(captured.qkv) == layers and captured.qkv[-1].shape == (3, 2, 6, 24)
    return model, captured


def test_deberta_queries_keys_values_come_from_hooks_on_its_projections():
    model, captured = captured_qkv(DEBERTA, "projections", 2, 1e-6)
    assert_projections(captured, [(s.query_proj, s.key_proj, s.value_proj)  # the tokens', not the positions'
                                  for s in (x.attention.self for x in model.encoder.layer)])
    with record_qkv(model) as layers:
        pass
    assert layers == [] and not any(m._forward_hooks for m in model.modules())  # hooks removed on exit


def test_modernbert_goes_through_the_attention_interface():
    captured_qkv(MODERNBERT, "interface", 3, 1e-5)


def test_tinybert_attention_loss_refuses_deberta_and_suggests_minilm():
    with pytest.raises(ConfigError, match="'deberta-v2' model: its disentangled attention .* use distill=minilm"):
        check_compatible(bert(2, 24, 4).config, DEBERTA, use_attention=True)
    check_compatible(bert(2, 24, 4).config, DEBERTA, use_attention=False)  # hidden states and embeddings: fine
    with pytest.raises(ConfigError, match="or use distill=minilm"):
        check_compatible(bert(2, 16, 2).config, MODERNBERT, use_attention=True)  # 2 heads against 4


def test_relation_loss_decreases_on_a_repeated_batch_across_families():
    """A 2-head student of width 16 learns a 4-head width-24 DeBERTa's relations: the loss falls, gradients arrive."""
    torch.manual_seed(0)
    teacher, student = AutoModel.from_config(DEBERTA).eval(), bert()
    d = distiller_from_config({**SETTINGS, "teacher_layer": "last"}, student.config, teacher.config)
    with torch.no_grad():
        target = forward_with_capture(teacher, BATCH, "qkv")
    opt = torch.optim.Adam(student.parameters(), lr=1e-2)
    losses = []
    for _ in range(15):
        loss = d(forward_with_capture(student, BATCH, "qkv"), target)["loss"]
        opt.zero_grad()
        loss.backward()
        losses.append(loss.item())
        if len(losses) == 1:
            assert student.embeddings.word_embeddings.weight.grad.abs().sum() > 0
        opt.step()
    assert all(math.isfinite(x) for x in losses) and losses[-1] < 0.5 * losses[0], losses


def test_kept_teacher_captures_hold_only_the_layer_the_loss_reads():
    """The phase-1 teacher cache keeps `Captured.keep(*distiller.teacher_reads)`: for the relation loss, one
    layer's queries, keys and values and no hidden states."""
    teacher = bert(6, 24, 4).eval()
    d = distiller_from_config(SETTINGS, bert().config, teacher.config)
    with torch.no_grad():
        full = forward_with_capture(teacher, BATCH, "qkv")
    kept = full.keep(*d.teacher_reads)
    assert [t.numel() > 0 for t in kept.qkv] == [i == 4 for i in range(6)]
    assert all(t.numel() == 0 for t in kept.hidden_states) and kept.num_layers == 6
    assert torch.equal(kept.qkv[4], full.qkv[4]) and kept.nbytes == full.qkv[4].numel() * 4 + BATCH["input_ids"].numel()
    student = forward_with_capture(bert(), BATCH, "qkv")
    assert torch.equal(d(student, kept.to("cpu").float())["loss"], d(student, full)["loss"])
