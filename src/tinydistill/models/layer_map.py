"""Which teacher layer each student layer learns from, and student/teacher compatibility checks.

Layers are numbered like ``hidden_states`` of a ``transformers`` BERT model: 0 is the embedding output,
1..N are the transformer layers. :func:`layer_map` maps the student's transformer layers 1..M to teacher
layers in 1..N; the embedding output is always matched to the embedding output (0 -> 0), separately.

With a mapping ``g = layer_map(...)``:

* hidden-state loss for student layer ``m`` (1..M): ``student.hidden_states[m]`` vs
  ``teacher.hidden_states[g[m - 1]]``, plus the embedding term ``student.hidden_states[0]`` vs ``teacher.hidden_states[0]``;
* attention loss for student layer ``m``: ``student.attention_scores[m - 1]`` vs
  ``teacher.attention_scores[g[m - 1] - 1]`` (the attention tuples have no embedding entry).

TinyBERT's reference code uses ``uniform``: with ``k = N / M`` it pairs student layer ``m`` with teacher layer
``m * k`` for both attention and hidden states (``teacher_atts[i * k + k - 1]`` and ``teacher_reps[i * k]``,
0-based, in ``general_distill.py`` / ``task_distill.py``).
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

from tinydistill.errors import ConfigError
from tinydistill.models.capture import UNCAPTURED_SCORES

OPTION = "distill.layer_map"
STRATEGIES = ("uniform", "top", "bottom")


def _divisors(n: int) -> list[int]:
    return [d for d in range(1, n + 1) if n % d == 0]


def _check_count(name: str, value: Any) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or value < 1:
        raise ConfigError(f"{name} must be a positive integer, got {value!r}")
    return value


def layer_map(strategy: str | Iterable[int], num_student_layers: int, num_teacher_layers: int) -> list[int]:
    """Teacher layer (1-based) for each student layer 1..M, as a list of length M.

    Args:
        strategy: ``"uniform"`` (student layer m learns teacher layer ``m * N / M``; needs ``N % M == 0``),
            ``"top"`` (the last M teacher layers, ``N - M + 1 .. N``), ``"bottom"`` (the first M, ``1 .. M``),
            or an explicit list of M teacher layers, each in ``1..N`` and strictly increasing (a student
            layer deeper than another learns from a deeper teacher layer; repeats and reversals are
            almost always typos).
        num_student_layers: M, the student's ``num_hidden_layers``.
        num_teacher_layers: N, the teacher's ``num_hidden_layers``.

    Raises:
        ConfigError: unknown strategy, ``uniform`` with ``N % M != 0``, ``M > N``, or an invalid explicit list;
            the message names ``distill.layer_map`` and the value.
    """
    m = _check_count("student num_hidden_layers", num_student_layers)
    n = _check_count("teacher num_hidden_layers", num_teacher_layers)
    return _named(strategy, m, n) if isinstance(strategy, str) else _explicit(strategy, m, n)


def _named(strategy: str, m: int, n: int) -> list[int]:
    """A named strategy's teacher layers (uniform, top, bottom)."""
    name = strategy.strip().lower()
    if name not in STRATEGIES:
        raise ConfigError(
            f"{OPTION}={strategy!r} is not a known strategy; use one of {', '.join(STRATEGIES)} "
            f"or an explicit list of {m} teacher layers in 1..{n}"
        )
    if m > n:
        raise ConfigError(
            f"{OPTION}={strategy!r}: the student has more layers ({m}) than the teacher ({n}); "
            f"a {m}-layer student cannot be mapped one-to-one onto {n} teacher layers"
        )
    if name == "uniform":
        if n % m != 0:
            divisors = ", ".join(str(d) for d in _divisors(n))
            raise ConfigError(
                f"{OPTION}='uniform' needs the teacher's layer count ({n}) to be a multiple of the "
                f"student's ({m}). Alternatives: {OPTION}=top (teacher layers {n - m + 1}..{n}), "
                f"{OPTION}=bottom (teacher layers 1..{m}), an explicit list of {m} increasing teacher "
                f"layers in 1..{n} (e.g. {_spread(m, n)}), or a student with a layer count dividing "
                f"{n}: {divisors}"
            )
        k = n // m
        return [k * i for i in range(1, m + 1)]
    if name == "top":
        return list(range(n - m + 1, n + 1))
    return list(range(1, m + 1))  # bottom


def _explicit(strategy: Iterable[int], m: int, n: int) -> list[int]:
    """An explicit list of teacher layers, checked."""
    try:
        layers = list(strategy)
    except TypeError:
        raise ConfigError(
            f"{OPTION}={strategy!r} must be one of {', '.join(STRATEGIES)} or a list of {m} teacher layers"
        ) from None
    if any(isinstance(x, bool) or not isinstance(x, int) for x in layers):
        raise ConfigError(f"{OPTION}={layers!r} must contain only integers (teacher layers in 1..{n})")
    if len(layers) != m:
        raise ConfigError(
            f"{OPTION}={layers!r} has {len(layers)} entries but the student has {m} layers; "
            f"give exactly one teacher layer per student layer"
        )
    bad = [x for x in layers if not 1 <= x <= n]
    if bad:
        raise ConfigError(
            f"{OPTION}={layers!r}: teacher layers {bad} are out of range; the teacher has layers 1..{n} "
            f"(0, the embeddings, is always mapped to the student's embeddings and is not listed)"
        )
    if any(b <= a for a, b in zip(layers, layers[1:])):
        raise ConfigError(
            f"{OPTION}={layers!r} must be strictly increasing "
            f"(deeper student layers learn from deeper teacher layers)"
        )
    return [int(x) for x in layers]


def _spread(m: int, n: int) -> list[int]:
    """An evenly spread increasing choice of m layers in 1..n ending at n (an example for error messages)."""
    return [max(i, round(i * n / m)) for i in range(1, m + 1)]


def check_compatible(student_config: Any, teacher_config: Any, use_attention: bool) -> None:
    """Check that a student and a teacher config can be distilled together.

    * ``vocab_size`` must match: both models read the same ``input_ids``.
    * If ``use_attention``: ``num_attention_heads`` must match, since the attention loss compares the
      (batch, heads, seq, seq) matrices head by head. Hidden sizes may differ (the hidden-state loss
      projects the student), so they are not checked here.

    Raises:
        ConfigError: naming the mismatched option and both values.
    """
    s_vocab = getattr(student_config, "vocab_size", None)
    t_vocab = getattr(teacher_config, "vocab_size", None)
    if s_vocab is not None and t_vocab is not None and s_vocab != t_vocab:
        raise ConfigError(
            f"student vocab_size={s_vocab} differs from teacher vocab_size={t_vocab}; the student must use the "
            f"teacher's tokenizer, so set the student's vocab_size to {t_vocab}"
        )
    if use_attention:
        kind = getattr(teacher_config, "model_type", None)
        if kind in UNCAPTURED_SCORES:
            raise ConfigError(
                f"distill.weights.att > 0, but the teacher is a {kind!r} model: its disentangled attention adds "
                f"relative-position terms in its own code, so it has no attention scores to compare with the student's; "
                f"use distill=minilm (relation loss on queries, keys and values) or ablation=no_attn (embeddings and "
                f"hidden states only)"
            )
        s_heads = getattr(student_config, "num_attention_heads", None)
        t_heads = getattr(teacher_config, "num_attention_heads", None)
        if s_heads != t_heads:
            raise ConfigError(
                f"attention distillation needs equal head counts, but student num_attention_heads={s_heads} and "
                f"teacher num_attention_heads={t_heads}; give the student {t_heads} heads (its hidden_size must "
                f"be a multiple of {t_heads}), turn the attention loss off (ablation=no_attn) or use distill=minilm "
                f"(its relation loss needs no equal head counts)"
            )
