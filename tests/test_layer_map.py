from __future__ import annotations

import ast
import re

import pytest
from transformers import BertConfig

from tinydistill.errors import ConfigError
from tinydistill.models.layer_map import check_compatible, layer_map


@pytest.mark.parametrize(
    ("m", "n", "expected"),
    [(4, 12, [3, 6, 9, 12]), (6, 12, [2, 4, 6, 8, 10, 12]), (3, 6, [2, 4, 6]), (2, 2, [1, 2]), (1, 12, [12])],
)
def test_uniform(m, n, expected):
    assert layer_map("uniform", m, n) == expected


@pytest.mark.parametrize(("m", "n"), [(4, 12), (6, 12), (2, 6), (3, 3), (1, 4)])
def test_uniform_matches_reference_indexing(m, n):
    # TinyBERT: new_teacher_atts = [teacher_atts[i * k + k - 1] for i in range(M)]   (0-based layer outputs)
    #           new_teacher_reps = [teacher_reps[i * k] for i in range(M + 1)]      (0 = embeddings)
    k = n // m
    att_layers = [i * k + k - 1 + 1 for i in range(m)]  # 1-based teacher layers
    rep_layers = [i * k for i in range(m + 1)]
    mapping = layer_map("uniform", m, n)
    assert mapping == att_layers
    assert [0, *mapping] == rep_layers


def test_uniform_indivisible_explains_alternatives():
    with pytest.raises(ConfigError) as err:
        layer_map("uniform", 4, 6)
    msg = str(err.value)
    assert "distill.layer_map" in msg
    assert "top" in msg and "bottom" in msg and "explicit list" in msg
    assert "1, 2, 3, 6" in msg  # student layer counts that divide the teacher's
    # the example list offered in the message is itself a valid mapping
    example = ast.literal_eval(re.search(r"e\.g\. (\[[^\]]*\])", msg).group(1))
    assert layer_map(example, 4, 6) == example


@pytest.mark.parametrize(("m", "n"), [(4, 6), (5, 12), (7, 12), (2, 3), (11, 12), (5, 7)])
def test_uniform_error_example_is_always_valid(m, n):
    with pytest.raises(ConfigError) as err:
        layer_map("uniform", m, n)
    example = ast.literal_eval(re.search(r"e\.g\. (\[[^\]]*\])", str(err.value)).group(1))
    assert layer_map(example, m, n) == example
    assert example[-1] == n


def test_top_and_bottom():
    assert layer_map("top", 4, 12) == [9, 10, 11, 12]
    assert layer_map("bottom", 4, 12) == [1, 2, 3, 4]
    assert layer_map("top", 4, 6) == [3, 4, 5, 6]
    assert layer_map("bottom", 3, 3) == [1, 2, 3]
    assert layer_map("Top", 2, 4) == [3, 4]


@pytest.mark.parametrize("strategy", ["uniform", "top", "bottom"])
def test_student_deeper_than_teacher(strategy):
    with pytest.raises(ConfigError, match="more layers"):
        layer_map(strategy, 8, 6)


def test_unknown_strategy():
    with pytest.raises(ConfigError, match=r"distill\.layer_map='middle'.*uniform, top, bottom"):
        layer_map("middle", 4, 12)


def test_explicit_list():
    assert layer_map([2, 5, 9, 12], 4, 12) == [2, 5, 9, 12]
    assert layer_map((1, 2), 2, 2) == [1, 2]


def test_explicit_list_from_omegaconf():
    from omegaconf import OmegaConf

    cfg = OmegaConf.create({"layer_map": [3, 6, 9, 12]})
    assert layer_map(cfg.layer_map, 4, 12) == [3, 6, 9, 12]


@pytest.mark.parametrize(
    ("value", "pattern"),
    [
        ([3, 6, 9], "has 3 entries but the student has 4 layers"),
        ([0, 6, 9, 12], r"teacher layers \[0\] are out of range"),
        ([3, 6, 9, 13], r"teacher layers \[13\] are out of range"),
        ([3, 9, 6, 12], "strictly increasing"),
        ([3, 3, 9, 12], "strictly increasing"),
        ([3.0, 6, 9, 12], "only integers"),
        (["3", 6, 9, 12], "only integers"),
        ([True, 6, 9, 12], "only integers"),
    ],
)
def test_explicit_list_errors(value, pattern):
    with pytest.raises(ConfigError, match=pattern) as err:
        layer_map(value, 4, 12)
    assert "distill.layer_map" in str(err.value)


def test_non_list_non_string_strategy():
    with pytest.raises(ConfigError, match="distill.layer_map"):
        layer_map(3, 4, 12)  # type: ignore[arg-type]


@pytest.mark.parametrize(("m", "n"), [(0, 12), (4, 0), (-1, 12), (True, 12)])
def test_bad_layer_counts(m, n):
    with pytest.raises(ConfigError, match="num_hidden_layers"):
        layer_map("top", m, n)


def _cfg(heads: int, hidden: int = 48, vocab: int = 100) -> BertConfig:
    return BertConfig(vocab_size=vocab, hidden_size=hidden, num_attention_heads=heads, num_hidden_layers=2)


def test_check_compatible_head_mismatch():
    with pytest.raises(ConfigError) as err:
        check_compatible(_cfg(heads=4), _cfg(heads=12), use_attention=True)
    msg = str(err.value)
    assert "num_attention_heads=4" in msg and "num_attention_heads=12" in msg


def test_check_compatible_passes():
    check_compatible(_cfg(heads=4), _cfg(heads=12), use_attention=False)  # heads irrelevant without attention loss
    check_compatible(_cfg(heads=12, hidden=48), _cfg(heads=12, hidden=96), use_attention=True)  # widths may differ


def test_check_compatible_vocab_mismatch():
    with pytest.raises(ConfigError, match="vocab_size=100.*vocab_size=200"):
        check_compatible(_cfg(heads=4), _cfg(heads=4, vocab=200), use_attention=False)
