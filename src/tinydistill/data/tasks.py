"""What a task is: its text fields, labels, metrics and files; the GLUE tasks as presets.

A `Task` tells the rest of the code everything it needs: `name`, `is_pair`, `num_labels`, `label_names`,
`is_regression`, `metric` (the main one, for checkpoint selection) and `metrics`. Every reader turns a task's
files into three fields: `text_a`, `text_b` (None for single texts) and `label`.

Two kinds share the class: the nine GLUE presets (`TASKS`, `get_task`) read the *official GLUE TSV layout* (as in
`glue_data/` from the GLUE download script) or the Hugging Face hub layout (`nyu-mll/glue`); a user's task (`task=custom`,
built by `custom_task` from the Hydra `task` node, see conf/task/custom.yaml) names its own files (CSV, TSV, JSON
Lines, Parquet) or hub dataset, text and label columns. `tinydistill.data.files.task_from_config` builds either
from the config; this module reads no data, so anything may import it.
"""

from __future__ import annotations

import hashlib
import json
import random
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from tinydistill.errors import ConfigError, DataError

#: Metrics a task can name (tinydistill.metrics): accuracy, F1 averaged over classes, F1 of the positive class
#: (label id 1), Matthews correlation; Pearson and Spearman correlation for regression.
CLASSIFICATION_METRICS = ("accuracy", "macro_f1", "f1", "mcc")
REGRESSION_METRICS = ("pearson", "spearman")
#: Metrics that only make sense for two classes.
BINARY_METRICS = ("f1",)
#: File formats of a user's task, by extension (read with `datasets`).
FORMATS = {".csv": "csv", ".tsv": "tsv", ".jsonl": "jsonl", ".parquet": "parquet"}
#: The split of training rows `task.tune_split` holds out for checkpoint and setting selection.
TUNE_SPLIT = "tune"
#: The unlabelled rows (`task.unlabeled`): e.g. the training rows `task.train_rows` leaves without their labels
#: (`Task.split_rows`); only stage=task reads them, distilling on the teacher's outputs alone.
UNLABELLED_SPLIT = "unlabelled"
#: `task.unlabeled=rest`: the unlabelled rows are the training rows `task.train_rows` leaves out.
UNLABELED_REST = "rest"


@dataclass(frozen=True)
class Task:
    name: str
    folder: str | None  # GLUE presets: folder under <data_dir>/glue/; None for a user's task
    hub_config: str | None  # GLUE presets: config name in nyu-mll/glue
    # Columns: a header name, or an int index for GLUE files without a header (CoLA).
    text_a: str | int
    text_b: str | int | None
    label: str | int
    label_names: tuple[str, ...] | None  # None for regression (STS-B)
    metric: str  # main metric, used for checkpoint selection
    metrics: tuple[str, ...]
    has_header: bool = True
    dev_splits: tuple[str, ...] = ("dev",)
    hub_text_a: str = "sentence"
    hub_text_b: str | None = None
    hub_dev_splits: tuple[str, ...] = ("validation",)
    # Number of columns a well-formed row has; a row with fewer is malformed.
    min_columns: int = field(default=0)
    # A user's task: (split, file) pairs, or a `datasets` name (and config) whose splits the pairs name instead.
    files: tuple[tuple[str, str], ...] = ()
    dataset: str | None = None
    dataset_config: str | None = None
    # Truncation length (conf/task/*.yaml's max_seq_length); 0: the usual 128 for pairs, 64 for single texts.
    max_seq_length: int = 0
    # GLUE presets whose TSV files write the labels as ids (SST-2's 0/1): those values, in id order; None: the names.
    file_labels: tuple[str, ...] | None = None
    # task.tune_split: a fraction (0 < f < 1) or a count (int >= 1) of the training rows, drawn with tune_seed (not the
    # run's seed), held out of training as the `tune` split that checkpoints and settings are selected on; None: off.
    tune_split: float | int | None = None
    tune_seed: int = 0
    # task.train_rows: how many of the training rows left after the tune split keep their labels (a few-labels
    # setting), drawn with tune_seed and nested (the first k of one seeded order, so 1,000 rows are among 2,000's);
    # the others form UNLABELLED_SPLIT. None: every row left is a training row.
    train_rows: int | None = None
    # task.unlabeled: unlabelled in-domain text for stage=task (tinydistill.data.unlabeled): a file, a `datasets`
    # name, or UNLABELED_REST; None: none.
    unlabeled: str | None = None

    @property
    def splits_training_rows(self) -> bool:
        """Whether `train` is a part of the task's training rows (`tune_split` or `train_rows` set)."""
        return self.tune_split is not None or self.train_rows is not None

    @property
    def val_splits(self) -> tuple[str, ...]:
        """The splits evaluated during training, the first one monitored for checkpoint selection: the dev splits,
        after the tune split when `tune_split` is set. The yardsticks (retention, gap closed) stay on dev_splits[0]."""
        return (TUNE_SPLIT, *self.dev_splits) if self.tune_split is not None else self.dev_splits

    def split_rows(self, split: str, n: int) -> list[int]:
        """The indices (ascending) of the `n` training rows that form `split`: train, tune (`tune_split`) or
        unlabelled (the rows `train_rows` leaves out); the same rows for every run seed, every stage and
        augmentation. ConfigError naming the key when tune_split would hold out no row or every row, or train_rows
        asks for more rows than the tune split leaves."""
        tune = self._tune_rows(n)
        if split == TUNE_SPLIT:
            return tune
        held = set(tune)
        left = [i for i in range(n) if i not in held]
        if self.train_rows is None:
            return left if split == "train" else []
        if self.train_rows > len(left):
            after = f" after task.tune_split={self.tune_split}" if held else ""
            raise ConfigError(f"task.train_rows={self.train_rows}: {self.name} has only {len(left)} training rows"
                              f"{after}; ask for at most {len(left)}, or null for all of them")
        # One seeded order of the rows left (its own stream of tune_seed): the first train_rows keep their labels.
        order = random.Random(f"train_rows:{self.tune_seed}").sample(left, len(left))
        return sorted(order[: self.train_rows] if split == "train" else order[self.train_rows:])

    def _tune_rows(self, n: int) -> list[int]:
        if self.tune_split is None:
            return []
        k = self.tune_split if isinstance(self.tune_split, int) else round(float(self.tune_split) * n)
        if k < 1 or k >= n:
            raise ConfigError(f"task.tune_split={self.tune_split}: holds out {k} of the {n} training rows of "
                              f"{self.name}; it must hold out at least one and leave at least one")
        return sorted(random.Random(self.tune_seed).sample(range(n), k))

    @property
    def is_regression(self) -> bool:
        return self.label_names is None

    @property
    def label_values(self) -> tuple[str, ...] | None:
        """The labels as a GLUE TSV file writes them, in id order: `file_labels`, else the names."""
        return self.file_labels or self.label_names

    @property
    def num_labels(self) -> int:
        return 1 if self.label_names is None else len(self.label_names)

    @property
    def is_pair(self) -> bool:
        return self.text_b is not None

    @property
    def is_glue(self) -> bool:
        return self.folder is not None

    @property
    def text_columns(self) -> tuple[str | int, ...]:
        return (self.text_a,) if self.text_b is None else (self.text_a, self.text_b)

    @property
    def length(self) -> int:
        """The truncation length: `max_seq_length`, else 128 for pairs and 64 for single texts (the TinyBERT paper's)."""
        return self.max_seq_length or (128 if self.is_pair else 64)

    def source(self, split: str) -> str:
        """A user's task: the file (or hub split name) of `split` (train, dev)."""
        return dict(self.files)[split]

    @property
    def format(self) -> str:
        """A user's task: csv, tsv, jsonl or parquet (its training file's), `hub` for a `datasets` name."""
        return "hub" if self.dataset is not None else FORMATS[Path(self.source("train")).suffix.lower()]

    def summary(self) -> dict[str, Any]:
        """What a result record needs to be read without the data (tinydistill.report): labels, metrics, splits."""
        out = {"name": self.name, "label_names": None if self.label_names is None else list(self.label_names),
               "metric": self.metric, "metrics": list(self.metrics), "dev_splits": list(self.dev_splits),
               "text": [str(c) for c in self.text_columns]}
        if self.tune_split is not None:
            out["tune_split"], out["tune_seed"] = self.tune_split, self.tune_seed
        if self.train_rows is not None:
            out["train_rows"], out["tune_seed"] = self.train_rows, self.tune_seed
        if self.unlabeled is not None:
            out["unlabeled"] = self.unlabeled
        return out

    def fingerprint(self) -> str:
        """Hash of what decides a file's examples (text and label columns, classes), for cache keys: another column
        or class order tokenises again, another metric does not."""
        read = [[str(c) for c in self.text_columns], str(self.label), self.label_names]
        return hashlib.sha256(json.dumps(read).encode()).hexdigest()[:16]


# Label orders follow the BERT/TinyBERT reference processors (`run_classifier.py`). MNLI is the
# one task where the hub differs: the hub's ClassLabel is (entailment, neutral, contradiction)
# while the reference code uses (contradiction, entailment, neutral). We keep the reference order
# so that checkpoints trained with the reference code agree with ours label for label, and map the
# hub's integers through their *names* (see glue.py), never by position.
# Label names are the hub's ClassLabel names; where the TSV files write ids instead (CoLA, SST-2,
# MRPC, QQP, WNLI: 0/1), `file_labels` holds those, and id i is still the file's value i.
TASKS: dict[str, Task] = {
    t.name: t
    for t in [
        Task(
            "cola", "CoLA", "cola", text_a=3, text_b=None, label=1, label_names=("unacceptable", "acceptable"),
            metric="mcc", metrics=("mcc", "accuracy"), has_header=False, min_columns=4, file_labels=("0", "1"),
        ),
        Task(
            "sst2", "SST-2", "sst2", text_a="sentence", text_b=None, label="label",
            label_names=("negative", "positive"), metric="accuracy", metrics=("accuracy",), file_labels=("0", "1"),
        ),
        Task(
            "mrpc", "MRPC", "mrpc", text_a="#1 String", text_b="#2 String", label="Quality",
            label_names=("not_equivalent", "equivalent"), metric="f1", metrics=("f1", "accuracy"),
            hub_text_a="sentence1", hub_text_b="sentence2", file_labels=("0", "1"),
        ),
        Task(
            "stsb", "STS-B", "stsb", text_a="sentence1", text_b="sentence2", label="score",
            label_names=None, metric="spearman", metrics=("pearson", "spearman"),
            hub_text_a="sentence1", hub_text_b="sentence2",
        ),
        Task(
            "qqp", "QQP", "qqp", text_a="question1", text_b="question2", label="is_duplicate",
            label_names=("not_duplicate", "duplicate"), metric="f1", metrics=("f1", "accuracy"),
            hub_text_a="question1", hub_text_b="question2", file_labels=("0", "1"),
        ),
        Task(
            "mnli", "MNLI", "mnli", text_a="sentence1", text_b="sentence2", label="gold_label",
            label_names=("contradiction", "entailment", "neutral"), metric="accuracy",
            metrics=("accuracy",), dev_splits=("dev_matched", "dev_mismatched"),
            hub_text_a="premise", hub_text_b="hypothesis",
            hub_dev_splits=("validation_matched", "validation_mismatched"),
        ),
        Task(
            "qnli", "QNLI", "qnli", text_a="question", text_b="sentence", label="label",
            label_names=("entailment", "not_entailment"), metric="accuracy", metrics=("accuracy",),
            hub_text_a="question", hub_text_b="sentence",
        ),
        Task(
            "rte", "RTE", "rte", text_a="sentence1", text_b="sentence2", label="label",
            label_names=("entailment", "not_entailment"), metric="accuracy", metrics=("accuracy",),
            hub_text_a="sentence1", hub_text_b="sentence2",
        ),
        Task(
            "wnli", "WNLI", "wnli", text_a="sentence1", text_b="sentence2", label="label",
            label_names=("not_entailment", "entailment"), metric="accuracy", metrics=("accuracy",),
            hub_text_a="sentence1", hub_text_b="sentence2", file_labels=("0", "1"),
        ),
    ]
}


def get_task(name: str) -> Task:
    """Look a GLUE preset up by its lower-case name (`mrpc`, `sst2`, ...)."""
    try:
        return TASKS[name.lower()]
    except KeyError:
        raise ConfigError(
            f"unknown task {name!r}; expected one of: {', '.join(sorted(TASKS))}"
        ) from None


def check_tune_split(value: Any, seed: Any = 0) -> tuple[float | int | None, int]:
    """`task.tune_split` and `task.tune_seed` as the Task holds them; ConfigError naming the key for a value that is
    neither null, a fraction strictly between 0 and 1, nor a whole count of at least 1."""
    if isinstance(seed, bool) or not isinstance(seed, int):
        raise ConfigError(f"task.tune_seed={seed!r}: expected a whole number (the seed that draws the tune rows)")
    if value is None:
        return None, seed
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        raise ConfigError(f"task.tune_split={value!r}: expected null, a fraction of the training rows (0 < f < 1) or "
                          f"a number of rows (at least 1)")
    if isinstance(value, int) and value >= 1:
        return value, seed
    if isinstance(value, float) and 0.0 < value < 1.0:
        return value, seed
    raise ConfigError(f"task.tune_split={value}: expected a fraction of the training rows strictly between 0 and 1 "
                      f"(e.g. 0.1) or a whole number of rows (at least 1)")


def check_train_rows(value: Any) -> int | None:
    """`task.train_rows` as the Task holds it: null, or a whole number of rows of at least 1 (ConfigError naming
    the key otherwise; too many for the task's training rows is found when they are read, `Task.split_rows`)."""
    if value is None or (isinstance(value, int) and not isinstance(value, bool) and value >= 1):
        return value
    raise ConfigError(f"task.train_rows={value!r}: expected null (every training row) or a whole number of "
                      f"training rows that keep their labels (at least 1)")


def check_unlabeled(value: Any, train_rows: int | None) -> str | None:
    """`task.unlabeled` as the Task holds it: null, `rest` (needs task.train_rows), a file or a `datasets` name
    (ConfigError naming the key otherwise; the file itself is read by stage=task, tinydistill.data.unlabeled)."""
    if value is None:
        return None
    if not isinstance(value, str) or not value.strip():
        raise ConfigError(f"task.unlabeled={value!r}: expected null, rest, a .csv/.tsv/.jsonl/.parquet file or a "
                          f"datasets name")
    if value == UNLABELED_REST and train_rows is None:
        raise ConfigError("task.unlabeled=rest: the unlabelled rows are those task.train_rows leaves out; set "
                          "task.train_rows (e.g. 1000) or name a file")
    return value


def file_format(path: str, key: str) -> str:
    """csv, tsv, jsonl or parquet, from the file's extension; ConfigError naming `key` (task.train) otherwise."""
    suffix = Path(path).suffix.lower()
    if suffix not in FORMATS:
        raise ConfigError(f"{key}={path}: unknown file format {suffix or '(no extension)'!r}; a task's files are "
                          f"{', '.join(FORMATS)} (recognised by extension)")
    return FORMATS[suffix]


def custom_task(
    name: str,
    *,
    train: str,
    dev: str,
    text: tuple[str, ...],
    label: str,
    label_names: tuple[str, ...] | None,
    metric: str | None = None,
    dataset: str | None = None,
    dataset_config: str | None = None,
    max_seq_length: int = 0,
) -> Task:
    """A user's task (`task=custom`): `train`/`dev` are files (or, with `dataset`, its split names), `text` one or two
    columns, `label` the label column, `label_names` the classes in id order (None: regression). `metric`: the main
    metric (None: accuracy, or spearman for regression); accuracy (classification) or the other correlation
    (regression) is reported beside it. ConfigError names the `task.<key>` at fault."""
    if not name or "/" in name or name.lower() in TASKS:
        raise ConfigError(f"task.name={name!r}: a user's task needs its own name (not a GLUE task's, no '/'); it "
                          f"names the artifacts folders, e.g. task.name=tickets")
    if len(text) not in (1, 2) or len(set(text)) != len(text):
        raise ConfigError(f"task.text={list(text)}: expected one text column (single texts) or two different ones "
                          f"(pairs)")
    if label in text:
        raise ConfigError(f"task.label={label!r} is also a text column (task.text={list(text)})")
    if dataset is None:
        formats = {key: file_format(path, f"task.{key}") for key, path in (("train", train), ("dev", dev))}
        if formats["train"] != formats["dev"]:
            for path in (train, dev):  # a missing file is the mistake to report, not the other's format
                if not Path(path).expanduser().is_file():
                    raise DataError(f"{Path(path).expanduser()}: file not found")
            raise ConfigError(f"task.train={train} is {formats['train']} but task.dev={dev} is {formats['dev']}: use "
                              f"one format for both (augmentation writes the training file's format)")
    regression = label_names is None
    allowed = REGRESSION_METRICS if regression else CLASSIFICATION_METRICS
    metric = metric or ("spearman" if regression else "accuracy")
    if metric not in allowed:
        kind = "a regression (float labels)" if regression else "a classification"
        raise ConfigError(f"task.metric={metric!r}: {name} is {kind}; choose one of {', '.join(allowed)}")
    if label_names is not None and len(label_names) < 2:
        raise ConfigError(f"task {name}: a classifier needs at least two classes, got {list(label_names)}")
    if metric in BINARY_METRICS and len(label_names) != 2:
        raise ConfigError(f"task.metric={metric}: F1 of the positive class needs two classes, {name} has "
                          f"{len(label_names)} ({list(label_names)}); use macro_f1")
    companions = REGRESSION_METRICS if regression else ("accuracy",)
    metrics = (metric, *(m for m in companions if m != metric))
    if regression:
        metrics = tuple(m for m in REGRESSION_METRICS if m in metrics)  # pearson, spearman: STS-B's order
    return Task(
        name, None, None, text_a=text[0], text_b=text[1] if len(text) == 2 else None, label=label,
        label_names=label_names, metric=metric, metrics=metrics, files=(("train", train), ("dev", dev)),
        dataset=dataset, dataset_config=dataset_config, max_seq_length=max_seq_length,
    )
