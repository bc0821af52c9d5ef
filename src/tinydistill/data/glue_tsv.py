"""Reading (and writing) GLUE TSV files in the official layout, with errors that name file and line.

Official GLUE files are tab-separated, UTF-8 (MRPC train.tsv starts with a byte-order mark), have a
header row except CoLA train/dev, and must be read with *no quoting*: sentences contain bare `"`
characters that a CSV reader would treat as quotes and silently merge rows.
"""

from __future__ import annotations

import csv
import math
import os
import sys
from dataclasses import dataclass
from pathlib import Path

from tinydistill.atomic import atomic_file
from tinydistill.data.encoding import non_utf8_error
from tinydistill.data.tasks import Task
from tinydistill.errors import DataError

# Some GLUE rows (QQP, MNLI) hold very long fields.
csv.field_size_limit(sys.maxsize)


@dataclass
class TaskTable:
    """The raw rows of one TSV file plus where text_a / text_b / label sit in them."""

    path: Path
    header: list[str] | None
    rows: list[list[str]]
    line_numbers: list[int]  # 1-based line in the file of each row, for error messages
    text_a_col: int
    text_b_col: int | None
    label_col: int | None  # None when the file has no labels (test files)


def _resolve_column(spec: str | int, header: list[str] | None, path: Path, what: str) -> int:
    if isinstance(spec, int):
        return spec
    assert header is not None
    if spec not in header:
        raise DataError(
            f"{path}: line 1 (header): missing {what} column {spec!r}; found columns {header}"
        )
    return header.index(spec)


def read_glue_tsv(path: str | os.PathLike, task: Task, require_label: bool = True) -> TaskTable:
    """Read one GLUE TSV file for `task`, validating every row.

    Raises DataError naming the file and line for a missing file, missing column, a row with
    too few columns, or a label outside the task's label set, and for a file without rows.
    """
    path = Path(path)
    if not path.is_file():
        raise DataError(
            f"{path}: file not found (expected the {task.folder} split in GLUE TSV layout; "
            f"set paths.data_dir / TINYDISTILL_DATA_DIR to the folder that holds glue/{task.folder}/)"
        )
    try:
        with open(path, encoding="utf-8-sig", newline="") as f:
            raw = list(csv.reader(f, delimiter="\t", quoting=csv.QUOTE_NONE))
    except UnicodeDecodeError:
        raise non_utf8_error(path, "GLUE file") from None
    header: list[str] | None = None
    first_line = 1
    if task.has_header:
        if not raw:
            raise DataError(f"{path}: file is empty (expected a header row)")
        header, raw = [h.strip() for h in raw[0]], raw[1:]
        first_line = 2
    text_a_col = _resolve_column(task.text_a, header, path, "text_a")
    text_b_col = (
        None if task.text_b is None else _resolve_column(task.text_b, header, path, "text_b")
    )
    label_col: int | None
    if header is not None and isinstance(task.label, str) and task.label not in header:
        if require_label:
            raise DataError(
                f"{path}: line 1 (header): missing label column {task.label!r}; "
                f"found columns {header}"
            )
        label_col = None
    else:
        label_col = _resolve_column(task.label, header, path, "label")
    needed = max(c for c in (text_a_col, text_b_col, label_col, task.min_columns - 1) if c is not None) + 1
    rows, lines = [], []
    for i, row in enumerate(raw):
        line = first_line + i
        if not row or (len(row) == 1 and not row[0].strip()):
            continue  # tolerate blank lines (e.g. a trailing newline)
        if len(row) < needed:
            raise DataError(
                f"{path}: line {line}: expected at least {needed} tab-separated columns, "
                f"found {len(row)}: {row!r:.200}"
            )
        if label_col is not None:
            _check_label(row[label_col], task, path, line)
        rows.append(row)
        lines.append(line)
    if not rows:  # nothing to train or evaluate on; caught here, before anything is tokenised or cached
        raise DataError(f"{path}: no examples ({'only a header row' if header is not None else 'empty file'})")
    return TaskTable(path, header, rows, lines, text_a_col, text_b_col, label_col)


def _check_label(value: str, task: Task, path: Path, line: int) -> None:
    if task.label_names is None:
        try:
            number = float(value)
        except ValueError:
            raise DataError(
                f"{path}: line {line}: label {value!r} is not a number (task {task.name} "
                f"is a regression task)"
            ) from None
        if not math.isfinite(number):  # float() takes nan and inf; they would end as NaN in metrics.json
            raise DataError(f"{path}: line {line}: label {value!r} is not a finite number (task {task.name})")
    elif value.strip() not in task.label_values:
        raise DataError(
            f"{path}: line {line}: label {value!r} is not one of {list(task.label_values)} "
            f"(task {task.name})"
        )


def table_to_examples(table: TaskTable, task: Task) -> dict[str, list]:
    """Columns `text_a`, `text_b` (pair tasks only) and `label` (int id, or float for STS-B)."""
    out: dict[str, list] = {"text_a": [r[table.text_a_col] for r in table.rows]}
    if table.text_b_col is not None:
        out["text_b"] = [r[table.text_b_col] for r in table.rows]
    if table.label_col is not None:
        raw = [r[table.label_col].strip() for r in table.rows]
        if task.label_names is None:
            out["label"] = [float(v) for v in raw]
        else:
            index = {n: i for i, n in enumerate(task.label_values)}
            out["label"] = [index[v] for v in raw]
    return out


def write_glue_tsv(path: str | os.PathLike, header: list[str] | None, rows: list[list[str]]) -> None:
    """Write rows in GLUE layout atomically (temp file, then rename)."""
    with atomic_file(path) as tmp, open(tmp, "w", encoding="utf-8", newline="") as f:
        w = csv.writer(f, delimiter="\t", quoting=csv.QUOTE_NONE, quotechar=None, lineterminator="\n")
        if header is not None:
            w.writerow(header)
        w.writerows(rows)


def glue_file(data_dir: str | os.PathLike, task: Task, split: str) -> Path:
    """Path of `split` ("train", "dev", "dev_matched", "test", ...) under `<data_dir>/glue/<Folder>/`."""
    return Path(data_dir) / "glue" / task.folder / f"{split}.tsv"
