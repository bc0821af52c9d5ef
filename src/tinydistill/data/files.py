"""A user's task files (CSV, TSV, JSON Lines, Parquet) or `datasets` splits, read into `datasets` and checked.

`task_from_config` turns the Hydra `task` node into a `Task`: a GLUE preset (`task=mrpc`) as it is, a user's task
(`task=custom`, conf/task/custom.yaml) with its classes taken from the training labels (sorted; integers in numeric
order) or from `task.labels`, and as a regression when its labels are floats or its metric is a correlation.
`examples` reads one split into the columns every stage uses (`text_a`, `text_b`, `label`); `read_table` reads a
training file row by row for augmentation and `write_table` writes rows back in the same format.

Bad input raises `DataError` (a file, its row and column) or `ConfigError` (a `task.<key>`) before anything is
tokenised or written. CSV and TSV cells are read as text, so labels are typed the same way in every format: "1"
is an integer class, "0.5" a float. TSV files are read without quoting, as GLUE's: a `"` in a text is a character.
"""

from __future__ import annotations

import csv
import functools
import json
import logging
import math
import os
import tempfile
from collections.abc import Sequence
from dataclasses import replace
from pathlib import Path
from typing import Any

import datasets
from datasets import Dataset
from omegaconf import DictConfig, OmegaConf

from tinydistill.atomic import atomic_file
from tinydistill.data.encoding import non_utf8_error
from tinydistill.data.glue_tsv import TaskTable, read_glue_tsv, write_glue_tsv
from tinydistill.data.tasks import (
    FORMATS,
    TASKS,
    Task,
    check_train_rows,
    check_tune_split,
    check_unlabeled,
    custom_task,
    get_task,
)
from tinydistill.data.labels import check_label_types, class_list, label_text
from tinydistill.errors import ConfigError, DataError

#: The keys of a user's task (conf/task/custom.yaml).
CUSTOM_KEYS = ("name", "train", "dev", "dataset", "dataset_config", "text", "label", "labels", "metric",
               "max_seq_length", "tune_split", "tune_seed", "train_rows", "unlabeled")


# ---------------------------------------------------------------------------------------------- the task


def _plain(node: Any) -> dict[str, Any]:
    """A config node (DictConfig, interpolations resolved) or a mapping as a plain dict."""
    return OmegaConf.to_container(node, resolve=True) if isinstance(node, DictConfig) else dict(node)


def is_custom(node: Any) -> bool:
    """Whether the `task` node describes a user's task (files or a `datasets` name) rather than a GLUE preset."""
    return any(node.get(k) is not None for k in ("train", "dev", "dataset"))


def task_from_config(node: Any) -> Task:
    """The task the Hydra `task` node describes: a GLUE preset by name, or a user's task from its keys (its
    training labels are read here to find the classes), with its tune_split, tune_seed, train_rows, unlabeled."""
    values = _plain(node)
    tune_split, tune_seed = check_tune_split(values.get("tune_split"), values.get("tune_seed", 0))
    train_rows = check_train_rows(values.get("train_rows"))
    unlabeled = check_unlabeled(values.get("unlabeled"), train_rows)
    return replace(_task_from_values(values), tune_split=tune_split, tune_seed=tune_seed, train_rows=train_rows,
                   unlabeled=unlabeled)


def _task_from_values(values: dict[str, Any]) -> Task:
    name = str(values.get("name") or "")
    if not is_custom(values):
        if name.lower() not in TASKS:
            raise ConfigError(f"task={name}: set task.train and task.dev (files) or task.dataset, or pick a GLUE "
                              f"task ({', '.join(sorted(TASKS))})")
        return replace(get_task(name), max_seq_length=int(values.get("max_seq_length") or 0))
    unknown = sorted(set(values) - set(CUSTOM_KEYS))
    if unknown:
        raise ConfigError(f"task.{unknown[0]}: unknown key of a user's task (keys: {', '.join(CUSTOM_KEYS)})")
    train, dev, dataset = values.get("train"), values.get("dev"), values.get("dataset")
    for key, value in (("train", train), ("dev", dev)):
        if value is None:
            what = "a split name of task.dataset" if dataset else "a .csv, .tsv, .jsonl or .parquet file"
            raise ConfigError(f"task.{key} is not set: a user's task needs task.train and task.dev ({what})")
    text = values.get("text", "text")  # conf/task/custom.yaml's defaults, for a node without them
    text = [text] if isinstance(text, str) else list(text or [])
    label = values.get("label", "label")
    if not isinstance(label, str) or not label:
        raise ConfigError(f"task.label={label!r}: expected the name of the label column")
    metric = values.get("metric")
    explicit = values.get("labels")
    if explicit is not None:
        explicit = tuple(label_text(v) for v in explicit)
        if None in explicit or len(set(explicit)) != len(explicit):
            raise ConfigError(f"task.labels={list(explicit)}: expected distinct, non-empty class names")
    # The keys (name, columns, formats) are checked before any file is read; the classes are decided below.
    spec = custom_task(name, train=str(train), dev=str(dev), text=tuple(map(str, text)), label=label,
                       label_names=None, dataset=dataset, dataset_config=values.get("dataset_config"))
    where, raw = raw_split(spec, "train")
    _check_columns(spec, where, raw)
    label_names = class_list(where, raw[label], label, metric, explicit)
    return custom_task(name, train=str(train), dev=str(dev), text=tuple(map(str, text)), label=label,
                       label_names=label_names, metric=metric, dataset=dataset,
                       dataset_config=values.get("dataset_config"),
                       max_seq_length=int(values.get("max_seq_length") or 0))


TASK_JSON = "task.json"


def task_json(task_node: Any, task: Task) -> dict[str, Any]:
    """`{"task.json": <the task node>}` for a model folder of a user's task (files as absolute paths), so that
    `--task <model dir>/task.json` of export and bench finds the same data; {} for GLUE."""
    if task.is_glue:
        return {}
    node = _plain(task_node)
    if task.dataset is None:
        node.update({split: str(Path(path).expanduser().resolve()) for split, path in task.files})
    return {TASK_JSON: node}


def task_from_argument(value: str) -> Task:
    """A command-line `--task`: a GLUE name, or a YAML/JSON file holding a user's task keys (conf/task/custom.yaml's,
    e.g. the task.json the stages write beside a model of a user's task)."""
    path = Path(value).expanduser()
    if path.suffix.lower() in (".yaml", ".yml", ".json"):
        if not path.is_file():
            raise ConfigError(f"--task {value}: no such task file")
        return task_from_config(OmegaConf.load(path))
    return get_task(value)


# ---------------------------------------------------------------------------------------------- reading


def raw_split(task: Task, split: str, file: str | os.PathLike | None = None) -> tuple[str, Dataset]:
    """Every column of a user's task's `split` (or of `file`, e.g. an augmented training set) and how errors
    name it (the file, or `dataset[split]`)."""
    if file is not None or task.dataset is None:
        path = Path(file if file is not None else task.source(split)).expanduser()
        return str(path), read_file(path)
    return f"{task.dataset}[{task.source(split)}]", _load_hub_split(task, task.source(split))


def read_file(path: str | os.PathLike) -> Dataset:
    """All columns of a CSV, TSV, JSON Lines or Parquet file (CSV and TSV cells as text), read once per content."""
    path = Path(path)
    if not path.is_file():
        raise DataError(f"{path}: file not found")
    if path.stat().st_size == 0:
        raise DataError(f"{path}: file is empty")
    fmt = FORMATS.get(path.suffix.lower())
    if fmt is None:
        raise DataError(f"{path}: unknown file format {path.suffix!r}; expected {', '.join(FORMATS)}")
    stat = path.stat()
    return _read_file(str(path.resolve()), fmt, stat.st_mtime_ns, stat.st_size)


@functools.lru_cache(maxsize=8)
def _read_file(path: str, fmt: str, mtime_ns: int, size: int) -> Dataset:
    """Cached by path, modification time and size: the config check, the class list and the stage read the same
    file once. A temporary `datasets` cache, kept in memory: reading writes nothing that outlives the call."""
    builder, kwargs = {
        "csv": ("csv", {"sep": ",", "quoting": csv.QUOTE_MINIMAL}),
        "tsv": ("csv", {"sep": "\t", "quoting": csv.QUOTE_NONE}),
        "jsonl": ("json", {}),
        "parquet": ("parquet", {}),
    }[fmt]
    if builder == "csv":  # every cell as text (features with the header's names), empty cells as ""
        header = _csv_header(path, kwargs["sep"], kwargs["quoting"])
        kwargs.update(encoding="utf-8-sig", keep_default_na=False, na_filter=False,
                      features=datasets.Features({c: datasets.Value("string") for c in header}))
    bars = datasets.utils.logging.is_progress_bar_enabled()
    datasets.disable_progress_bars()
    json_log = logging.getLogger("datasets.packaged_modules.json.json")  # its ERROR line repeats the one raised below
    json_level = json_log.level
    json_log.setLevel(logging.CRITICAL)
    try:
        with tempfile.TemporaryDirectory() as cache:
            ds = datasets.load_dataset(builder, data_files=path, split="train", cache_dir=cache,
                                       keep_in_memory=True, **kwargs)
    except UnicodeDecodeError:
        raise non_utf8_error(path, f"{fmt.upper()} file") from None
    except Exception as e:  # noqa: BLE001 - pandas, pyarrow and json raise many types: one line naming the file
        cause = e.__cause__ or e
        if "corresponds to no data" in str(e):  # datasets' words for a file without rows
            raise DataError(f"{path}: no examples" + (" (only a header row)" if builder == "csv" else "")) from None
        if isinstance(cause, UnicodeDecodeError):
            raise non_utf8_error(path, f"{fmt.upper()} file") from None
        bad_line = _malformed_json_line(path) if fmt == "jsonl" else None
        if bad_line:  # pyarrow counts rows from 0 and skips blank lines: name the line as an editor shows it
            raise DataError(f"{path}: not a readable JSONL file: {bad_line}") from None
        text = str(cause).strip().splitlines()
        raise DataError(f"{path}: not a readable {fmt.upper()} file ({type(cause).__name__}: "
                        f"{text[0] if text else ''})") from None
    finally:
        json_log.setLevel(json_level)
        if bars:
            datasets.enable_progress_bars()
    if fmt == "jsonl":  # pyarrow keeps a JSON string's bytes that are not UTF-8, and fails only when they are read
        try:
            ds.data.table.validate(full=True)
        except ValueError:  # pyarrow's ArrowInvalid: "Invalid UTF8 sequence"
            raise non_utf8_error(path, f"{fmt.upper()} file") from None
    return ds


def _malformed_json_line(path: str) -> str | None:
    """`line <n> is malformed JSON (...)` for the first line of a JSON Lines file that holds no JSON value (e.g. a
    line cut short), counted from 1 as in an editor; None if every non-blank line parses."""
    with open(path, "rb") as f:
        for n, raw in enumerate(f, start=1):
            line = raw.rstrip(b"\r\n")
            if not line.strip():
                continue
            try:
                json.loads(line)
            except UnicodeDecodeError as e:
                return f"line {n} is malformed JSON (byte 0x{line[e.start]:02x} (column {e.start + 1}) is not UTF-8)"
            except json.JSONDecodeError as e:
                return f"line {n} is malformed JSON (column {e.colno}: {e.msg})"
            except ValueError as e:
                return f"line {n} is malformed JSON ({e})"
    return None


def _csv_header(path: str, sep: str, quoting: int) -> list[str]:
    try:
        with open(path, encoding="utf-8-sig", newline="") as f:
            header = next(csv.reader(f, delimiter=sep, quoting=quoting), [])
    except UnicodeDecodeError:
        raise non_utf8_error(path, "data file") from None
    header = [h.strip() for h in header]
    duplicate = next((h for h in header if header.count(h) > 1), None)
    if duplicate is not None or not all(header):
        raise DataError(f"{path}: line 1 (header): column names must be distinct and non-empty, got {header}")
    return header


def _load_hub_split(task: Task, split: str) -> Dataset:
    """A split of the `datasets` name `task.dataset` (online), class ids turned into their names."""
    try:
        ds = datasets.load_dataset(task.dataset, task.dataset_config, split=split)
    except Exception as e:  # noqa: BLE001 - hub, network and builder errors: one line
        raise DataError(f"cannot load task.dataset={task.dataset} (config {task.dataset_config}) split {split}: "
                        f"{type(e).__name__}: {str(e).strip().splitlines()[0] if str(e).strip() else ''}") from None
    feature = ds.features.get(task.label)
    if isinstance(feature, datasets.ClassLabel):
        names = feature.names
        ds = ds.map(lambda ex: {task.label: names[ex[task.label]] if ex[task.label] >= 0 else None},
                    features=datasets.Features({**ds.features, task.label: datasets.Value("string")}))
    return ds


def _check_columns(task: Task, where: str, raw: Dataset) -> None:
    keys = [("task.text", c) for c in task.text_columns] + [("task.label", task.label)]
    for key, column in keys:
        if column not in raw.column_names:
            raise DataError(f"{where}: missing column {column!r} ({key}); columns: {raw.column_names}")
    if len(raw) == 0:
        raise DataError(f"{where}: no examples (only a header row)")


def _texts(where: str, raw: Dataset, column: str) -> list[str]:
    out = []
    for i, v in enumerate(raw[column]):
        text = "" if v is None else str(v)
        if not text.strip():
            raise DataError(f"{where}: row {i + 1}, column {column!r}: empty text")
        out.append(text)
    return out


def _labels(task: Task, split: str, where: str, raw: Dataset) -> list[int] | list[float]:
    column = task.label
    if task.is_regression:
        out: list[float] = []
        for i, v in enumerate(raw[column]):
            text = label_text(v)
            if text is None:
                raise DataError(f"{where}: row {i + 1}, column {column!r}: empty label")
            try:
                number = float(text)
            except ValueError:
                raise DataError(f"{where}: row {i + 1}, column {column!r}: label {v!r} is not a number (task "
                                f"{task.name} is a regression)") from None
            if not math.isfinite(number):
                raise DataError(f"{where}: row {i + 1}, column {column!r}: label {v!r} is not a finite number")
            out.append(number)
        return out
    check_label_types(where, raw[column], column)
    index = {n: i for i, n in enumerate(task.label_names)}
    ids: list[int] = []
    for i, v in enumerate(raw[column]):
        text = label_text(v)
        if text is None:
            raise DataError(f"{where}: row {i + 1}, column {column!r}: empty label")
        if text not in index:
            origin = "does not occur in the training data" if split != "train" else "is not one of the task's classes"
            raise DataError(f"{where}: row {i + 1}, column {column!r}: label {v!r} {origin} (classes: "
                            f"{list(task.label_names)})")
        ids.append(index[text])
    return ids


def examples(task: Task, split: str, file: str | os.PathLike | None = None) -> Dataset:
    """A user's task's `split` (or `file`) as `text_a`, (`text_b`), `label` (class id, or float for regression),
    every row checked."""
    where, raw = raw_split(task, split, file)
    return _checked_examples(task, split, where, raw)


def _checked_examples(task: Task, split: str, where: str, raw: Dataset) -> Dataset:
    """`examples` of rows already read (`where` names them in errors)."""
    _check_columns(task, where, raw)
    out: dict[str, list] = {"text_a": _texts(where, raw, task.text_a)}
    if task.text_b is not None:
        out["text_b"] = _texts(where, raw, task.text_b)
    out["label"] = _labels(task, split, where, raw)
    return Dataset.from_dict(out)


def task_file(task: Task, split: str, data_dir: str | os.PathLike | None) -> Path:
    """The file a task's `split` is read from: `<data_dir>/glue/<Task>/<split>.tsv` for GLUE, the configured one
    otherwise. ConfigError for a task read from the hub (no file)."""
    if task.is_glue:
        if data_dir is None:
            raise ConfigError(f"paths.data_dir is not set: {task.name}'s files are <data_dir>/glue/{task.folder}/ "
                              f"(set TINYDISTILL_DATA_DIR or paths.data_dir)")
        return Path(data_dir) / "glue" / task.folder / f"{split}.tsv"
    if task.dataset is not None:
        raise ConfigError(f"task.dataset={task.dataset}: this step needs the training data as a file; save the split "
                          f"as JSON Lines (datasets' Dataset.to_json) and set task.train/task.dev to the files")
    return Path(task.source(split)).expanduser()


# ---------------------------------------------------------------------------------------------- rows (augmentation)


def read_table(task: Task, path: str | os.PathLike) -> TaskTable:
    """A training file row by row, every column kept (GLUE: raw TSV cells; others: the values as read), checked
    as `examples` checks it; the text and label columns as indices into each row."""
    if task.is_glue:
        return read_glue_tsv(path, task)
    examples(task, "train", path)  # the checks, with the same messages
    return _table(task, Path(path), read_file(path))


def training_rows(task: Task, table: TaskTable) -> TaskTable:
    """The rows of `table` (a task's whole training file) that `load_examples(task, "train")` holds: without the
    rows `task.tune_split` holds out, and only the `task.train_rows` that keep their labels, so augmentation never
    sees another row; `table` itself when both are off."""
    if not task.splits_training_rows:
        return table
    keep = task.split_rows("train", len(table.rows))
    return replace(table, rows=[table.rows[i] for i in keep], line_numbers=[table.line_numbers[i] for i in keep])


def read_hub_table(task: Task) -> tuple[TaskTable, str]:
    """`read_table` for a task read from the hub (`task.dataset`): its training split's rows, and the split's
    `datasets` fingerprint (what changes when the data does), since there is no file to hash."""
    where, raw = raw_split(task, "train")
    _checked_examples(task, "train", where, raw)  # the checks of `examples`, on the split read once
    return _table(task, Path(where), raw), raw._fingerprint


def _table(task: Task, path: Path, raw: Dataset) -> TaskTable:
    header = list(raw.column_names)
    rows = [[row[c] for c in header] for row in raw]
    return TaskTable(path, header, rows, list(range(1, len(rows) + 1)), header.index(task.text_a),
                     None if task.text_b is None else header.index(task.text_b), header.index(task.label))


def write_table(path: str | os.PathLike, fmt: str, header: list[str], rows: Sequence[Sequence[Any]]) -> None:
    """Rows in `fmt` (csv, tsv, jsonl, parquet) with `header`'s columns, written atomically (temp file, rename)."""
    path = Path(path)
    if fmt == "tsv":
        write_glue_tsv(path, header, [list(map(str, r)) for r in rows])
        return
    with atomic_file(path) as tmp:
        if fmt == "parquet":
            import pyarrow as pa
            import pyarrow.parquet as pq

            pq.write_table(pa.Table.from_pylist([dict(zip(header, r)) for r in rows]), tmp)
            return
        with open(tmp, "w", encoding="utf-8", newline="") as f:
            if fmt == "csv":
                w = csv.writer(f, lineterminator="\n")
                w.writerow(header)
                w.writerows(rows)
            else:  # jsonl
                f.writelines(json.dumps(dict(zip(header, r)), ensure_ascii=False) + "\n" for r in rows)
