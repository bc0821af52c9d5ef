"""`task.unlabeled`: a user's unlabelled in-domain text, which stage=task distils on beside the labelled rows with the
teacher's outputs as its only targets.

`unlabeled_examples` reads a file (CSV, TSV, JSON Lines, Parquet, read as `task.train` is, with the same one-line
errors) or a `datasets` name (its `train` split) into `text_a`, (`text_b`) and a `label` column holding
`sentinel_label` on every row; `task.unlabeled=rest` (the training rows `task.train_rows` leaves out) is read by
`tinydistill.data.glue`. `UnlabeledMix` (`stage.unlabeled.*`) chooses how many of the rows join the training set.
"""

from __future__ import annotations

import logging
import math
import random
from dataclasses import dataclass

import datasets
from datasets import Dataset

from tinydistill.data.files import _texts, read_file
from tinydistill.data.tasks import FORMATS, Task
from tinydistill.errors import ConfigError, DataError

log = logging.getLogger(__name__)

#: The label of an unlabelled row: no class (cross-entropy's ignore index), NaN for a regression. Nothing that needs
#: a gold label on every row (ablation=no_pred, distill.regression_target=gold) runs with unlabelled rows.
IGNORE_LABEL = -100


def sentinel_label(task: Task) -> int | float:
    return math.nan if task.is_regression else IGNORE_LABEL


def is_file(value: str) -> bool:
    """Whether `task.unlabeled` names a file (by extension) rather than a `datasets` name."""
    return any(value.lower().endswith(ext) for ext in FORMATS)


def text_columns(task: Task) -> tuple[str, ...]:
    """The columns the unlabelled text is read from: the task's text columns (a GLUE preset whose files have no
    header, CoLA: the hub's names)."""
    hub = (task.hub_text_a, task.hub_text_b)
    return tuple(c if isinstance(c, str) else hub[i] for i, c in enumerate(task.text_columns))


def unlabeled_examples(task: Task, augmented: str | None = None) -> Dataset:
    """`task.unlabeled` (a file or a `datasets` name) as `text_a`, (`text_b`), `label` (`sentinel_label`), every
    text checked as `task.train`'s are. A label column present is ignored, with one log line. `augmented`: the file
    of the augmented unlabelled rows instead (`data_aug.ensure_augmented_rows`: columns text_a, text_b)."""
    source = str(task.unlabeled if augmented is None else augmented)
    if is_file(source):
        where, raw = source, read_file(source)
    else:
        where, raw = f"{source}[train]", _hub_split(source)
    columns = text_columns(task) if augmented is None else ("text_a", "text_b")[: len(task.text_columns)]
    for column in columns:
        if column not in raw.column_names:
            raise DataError(f"{where}: missing column {column!r} (task.text); columns: {raw.column_names}")
    if len(raw) == 0:
        raise DataError(f"{where}: no examples (only a header row)")
    label = task.label if isinstance(task.label, str) else "label"
    if label in raw.column_names:
        log.info("%s: column %r ignored: task.unlabeled's rows are distilled on the teacher's outputs only", where,
                 label)
    out = {"text_a": _texts(where, raw, columns[0])}
    if len(columns) == 2:
        out["text_b"] = _texts(where, raw, columns[1])
    out["label"] = [sentinel_label(task)] * len(raw)
    return Dataset.from_dict(out)


def _hub_split(name: str) -> Dataset:
    try:
        return datasets.load_dataset(name, split="train")
    except Exception as e:  # noqa: BLE001 - hub, network and builder errors: one line
        text = str(e).strip().splitlines()
        raise DataError(f"cannot load task.unlabeled={name} split train: {type(e).__name__}: "
                        f"{text[0] if text else ''}") from None


@dataclass(frozen=True)
class UnlabeledMix:
    """How many unlabelled rows join the training set (`stage.unlabeled`): `ratio` unlabelled rows per labelled
    (or augmented) training row, rounded (None: all), at most `max_rows` (None: no limit). The rows are the first of
    one order drawn with `seed` (task.tune_seed, never the run's), so every seed trains on the same rows and shares
    one teacher-logit cache, and a smaller set is part of a larger one. `augment` (with aug=on): the rows chosen are
    augmented as the labelled ones are; `ratio` then counts labelled rows before augmentation, since both sets grow
    alike."""

    max_rows: int | None = None
    ratio: float | None = None
    seed: int = 0
    augment: bool = False

    @classmethod
    def from_config(cls, node: dict, seed: int) -> UnlabeledMix:
        max_rows, ratio = node.get("max_rows"), node.get("ratio")
        if max_rows is not None and (isinstance(max_rows, bool) or not isinstance(max_rows, int) or max_rows < 1):
            raise ConfigError(f"stage.unlabeled.max_rows={max_rows!r}: expected null (every row) or a whole number "
                              f"of unlabelled rows (at least 1)")
        if ratio is not None and (isinstance(ratio, bool) or not isinstance(ratio, (int, float)) or ratio <= 0):
            raise ConfigError(f"stage.unlabeled.ratio={ratio!r}: expected null (every row) or a positive number of "
                              f"unlabelled rows per labelled training row (e.g. 4)")
        augment = node.get("augment", False)
        if not isinstance(augment, bool):
            raise ConfigError(f"stage.unlabeled.augment={augment!r}: expected true (aug=on also augments the "
                              f"unlabelled rows chosen) or false")
        return cls(max_rows, None if ratio is None else float(ratio), seed, augment)

    def rows(self, labelled: int, available: int) -> list[int]:
        """The indices (ascending) of the `available` unlabelled rows that join `labelled` training rows."""
        n = available if self.ratio is None else min(available, round(self.ratio * labelled))
        n = n if self.max_rows is None else min(n, self.max_rows)
        order = random.Random(f"unlabeled:{self.seed}").sample(range(available), available)
        return sorted(order[:n])
