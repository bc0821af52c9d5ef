"""A label column of a user's task: its classes in id order, or a regression when its labels are floats; labels of
mixed types are refused. Labels read as text ("1" an integer class, "0.5" a float) or as JSON values."""

from __future__ import annotations

import math
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from tinydistill.data.tasks import REGRESSION_METRICS
from tinydistill.errors import DataError


def class_list(where: str, values: Sequence[Any], column: str, metric: str | None,
                explicit: tuple[str, ...] | None) -> tuple[str, ...] | None:
    """The classes in id order (None: a regression): `explicit` (checked against the data), else the distinct
    training labels sorted (numerically when all are integers)."""
    names = []
    for i, v in enumerate(values):
        text = label_text(v)
        if text is None:
            raise DataError(f"{where}: row {i + 1}, column {column!r}: empty label")
        names.append(text)
    if explicit is None and (metric in REGRESSION_METRICS or (metric is None and is_float_column(values))):
        return None
    check_label_types(where, values, column)
    found = set(names)
    if explicit is not None:
        extra = next((i for i, n in enumerate(names) if n not in explicit), None)
        if extra is not None:
            raise DataError(f"{where}: row {extra + 1}, column {column!r}: label {names[extra]!r} is not in "
                            f"task.labels={list(explicit)}")
        unused = [n for n in explicit if n not in found]
        if unused:
            raise DataError(f"{where}: column {column!r}: task.labels={list(explicit)} names {unused}, which never "
                            f"occur in the training data; drop them from task.labels")
        return explicit
    if len(found) < 2:
        raise DataError(f"{where}: column {column!r} holds a single class ({names[0]!r}); a classifier needs two "
                        f"or more")
    if all(is_int(n) for n in found):
        return tuple(sorted(found, key=int))
    return tuple(sorted(found))


#: JSON types a class label may be written as, with how an error names one label and several.
LABEL_TYPES = {str: ("a string", "strings"), bool: ("true/false", "true/false"), int: ("a number", "numbers"),
                float: ("a number", "numbers")}


def check_label_types(where: str, values: Sequence[Any], column: str) -> None:
    """DataError when the class labels of a column are of more than one JSON type (a JSON Lines file with one label
    `1` among "entailment"/"not_entailment"): read as text, the odd one would silently become a class of its own.
    Names the first label of the rarer type by its line in a JSON Lines file (as an editor counts), else its row."""
    rows: dict[str, list[int]] = {}
    for i, v in enumerate(values):
        kind = next((names for t, names in LABEL_TYPES.items() if isinstance(v, t)), None)
        if kind is not None:
            rows.setdefault(kind[0], []).append(i)
    if len(rows) < 2:
        return
    odd = min(rows, key=lambda k: (len(rows[k]), rows[k][0]))
    usual = max(rows, key=lambda k: (len(rows[k]), -rows[k][0]))
    lines = row_lines(where)

    def name(i: int) -> str:
        return f"line {lines[i]}" if lines is not None and len(lines) == len(values) else f"row {i + 1}"

    i, j = rows[odd][0], rows[usual][0]
    plural = next(many for one, many in LABEL_TYPES.values() if one == usual)
    raise DataError(f"{where}: {name(i)}, column {column!r}: label {values[i]!r} is {odd}, but the column's other "
                    f"labels are {plural} (e.g. {name(j)}: {values[j]!r}); write every label of a column the same way "
                    f"(all strings, or all numbers)")


def row_lines(where: str) -> list[int] | None:
    """The line number (from 1) of each row of a JSON Lines file (its non-blank lines); None for other sources."""
    path = Path(where)
    if path.suffix.lower() != ".jsonl" or not path.is_file():
        return None
    with open(path, "rb") as f:
        return [n for n, raw in enumerate(f, start=1) if raw.strip()]


def is_int(text: str) -> bool:
    try:
        int(text)
    except ValueError:
        return False
    return True


def label_text(value: Any) -> str | None:
    """A class label as text (None if empty): integers and integral floats as integers, strings stripped."""
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return None
    if isinstance(value, float) and value.is_integer():
        return str(int(value))
    text = str(value).strip()
    return text or None


def is_float_column(values: Sequence[Any]) -> bool:
    """Whether every label is a number and at least one is written as a float (0.5, 4.0, 1e-3): a regression."""
    floats = False
    for v in values:
        if isinstance(v, bool):
            return False
        if isinstance(v, int):
            continue
        if isinstance(v, float):
            floats = True
            continue
        text = str(v).strip()
        if is_int(text):
            continue
        try:
            float(text)
        except ValueError:
            return False
        floats = True
    return floats
