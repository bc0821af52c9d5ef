"""GLUE task registry: where each task's files live, which columns hold what, its labels and metric.

The registry describes the *official GLUE TSV layout* (as in `glue_data/` from the GLUE download
script) and the Hugging Face hub layout (`nyu-mll/glue`) of every task, so that the rest of the code
only ever sees three fields: `text_a`, `text_b` (None for single-sentence tasks) and `label`.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from tinydistill.errors import ConfigError


@dataclass(frozen=True)
class GlueTask:
    name: str
    folder: str  # folder under <data_dir>/glue/
    hub_config: str  # config name in nyu-mll/glue
    # TSV columns: a header name, or an int index for files without a header (CoLA).
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

    @property
    def is_regression(self) -> bool:
        return self.label_names is None

    @property
    def num_labels(self) -> int:
        return 1 if self.label_names is None else len(self.label_names)

    @property
    def is_pair(self) -> bool:
        return self.text_b is not None


# Label orders follow the BERT/TinyBERT reference processors (`run_classifier.py`). MNLI is the
# one task where the hub differs: the hub's ClassLabel is (entailment, neutral, contradiction)
# while the reference code uses (contradiction, entailment, neutral). We keep the reference order
# so that checkpoints trained with the reference code agree with ours label for label, and map the
# hub's integers through their *names* (see glue.py), never by position.
TASKS: dict[str, GlueTask] = {
    t.name: t
    for t in [
        GlueTask(
            "cola", "CoLA", "cola", text_a=3, text_b=None, label=1, label_names=("0", "1"),
            metric="mcc", metrics=("mcc", "accuracy"), has_header=False, min_columns=4,
        ),
        GlueTask(
            "sst2", "SST-2", "sst2", text_a="sentence", text_b=None, label="label",
            label_names=("0", "1"), metric="accuracy", metrics=("accuracy",),
        ),
        GlueTask(
            "mrpc", "MRPC", "mrpc", text_a="#1 String", text_b="#2 String", label="Quality",
            label_names=("0", "1"), metric="f1", metrics=("f1", "accuracy"),
            hub_text_a="sentence1", hub_text_b="sentence2",
        ),
        GlueTask(
            "stsb", "STS-B", "stsb", text_a="sentence1", text_b="sentence2", label="score",
            label_names=None, metric="spearman", metrics=("pearson", "spearman"),
            hub_text_a="sentence1", hub_text_b="sentence2",
        ),
        GlueTask(
            "qqp", "QQP", "qqp", text_a="question1", text_b="question2", label="is_duplicate",
            label_names=("0", "1"), metric="f1", metrics=("f1", "accuracy"),
            hub_text_a="question1", hub_text_b="question2",
        ),
        GlueTask(
            "mnli", "MNLI", "mnli", text_a="sentence1", text_b="sentence2", label="gold_label",
            label_names=("contradiction", "entailment", "neutral"), metric="accuracy",
            metrics=("accuracy",), dev_splits=("dev_matched", "dev_mismatched"),
            hub_text_a="premise", hub_text_b="hypothesis",
            hub_dev_splits=("validation_matched", "validation_mismatched"),
        ),
        GlueTask(
            "qnli", "QNLI", "qnli", text_a="question", text_b="sentence", label="label",
            label_names=("entailment", "not_entailment"), metric="accuracy", metrics=("accuracy",),
            hub_text_a="question", hub_text_b="sentence",
        ),
        GlueTask(
            "rte", "RTE", "rte", text_a="sentence1", text_b="sentence2", label="label",
            label_names=("entailment", "not_entailment"), metric="accuracy", metrics=("accuracy",),
            hub_text_a="sentence1", hub_text_b="sentence2",
        ),
        GlueTask(
            "wnli", "WNLI", "wnli", text_a="sentence1", text_b="sentence2", label="label",
            label_names=("0", "1"), metric="accuracy", metrics=("accuracy",),
            hub_text_a="sentence1", hub_text_b="sentence2",
        ),
    ]
}


def get_task(name: str) -> GlueTask:
    """Look a task up by its lower-case name (`mrpc`, `sst2`, ...)."""
    try:
        return TASKS[name.lower()]
    except KeyError:
        raise ConfigError(
            f"unknown task {name!r}; expected one of: {', '.join(sorted(TASKS))}"
        ) from None
