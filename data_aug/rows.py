"""A training table's rows and their augmented copies, in output order (see data_aug/pipeline.py): the original row,
then each augmented sentence of text_a, then of text_b. Each example's column draws from its own random stream, so
any chunk of rows can be recomputed alone."""

from __future__ import annotations

from collections import Counter

import numpy as np

from data_aug.augmenter import Augmenter
from data_aug.stats import CandidateTally
from tinydistill.data.glue_tsv import TaskTable


def text_columns(table: TaskTable) -> list[int]:
    return [c for c in (table.text_a_col, table.text_b_col) if c is not None]


def example_rng(seed: int, example: int, column: int) -> np.random.Generator:
    """The random stream of one example's text column: any chunk can be recomputed alone."""
    return np.random.default_rng([seed, example, column])


def augment_rows(
    augmenter: Augmenter,
    table: TaskTable,
    start: int,
    stop: int,
    seed: int,
    stats: Counter | None = None,
    max_examples: int | None = None,
    tally: CandidateTally | None = None,
) -> list[list[str]]:
    """Output rows of examples [start, stop) of `table` (see module docstring for the order).

    Examples at or past `max_examples` are copied without augmentation. `tally` receives the MLM
    candidate lists of every augmented sentence (one per example and text column).
    """
    cols = text_columns(table)
    limit = stop if max_examples is None else max(start, min(stop, max_examples))
    copied = [list(row) for row in table.rows[limit:stop]]
    examples = table.rows[start:limit]
    texts = [row[c] for row in examples for c in cols]
    cands = augmenter.candidates(texts)
    if tally is not None:
        tally.add_sentences(cands)
    out: list[list[str]] = []
    for e, row in enumerate(examples):
        out.append(list(row))
        for k, col in enumerate(cols):
            sc = cands[e * len(cols) + k]
            new = augmenter.augment(sc, example_rng(seed, start + e, k))
            for text in new:
                r = list(row)
                r[col] = text
                out.append(r)
            if stats is not None:
                stats["sentences"] += 1
                stats["sentences_without_candidates"] += not sc.candidates
                stats["augmented_rows"] += len(new)
                for source in sc.sources.values():
                    stats[f"words_{source}"] += 1
    return out + copied
