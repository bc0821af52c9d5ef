"""The result records the stages write beside their models, with one writer and one reader each.

- `ClassifierRecord`: stage=task's and stage=finetune's ``metrics.json`` beside the exported classifier, copied as
  ``result.json`` into the run's log folder (a sweep folder alone is then enough for the report). Read by the
  report, the matched no-distillation baseline (``stage.match_steps_of``) and export.
- `CorpusRecord`: the corpus stages' record beside their model (``general_distill.json``, ``distilbert.json``,
  ``mlm.json``, ``init_student.json``).

Records written by earlier versions load too: ``parameters`` was a bare count in some of them, and is always a
mapping ``{role: count}`` when read.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from tinydistill.atomic import atomic_write_text
from tinydistill.errors import DataError

#: A classifier stage's record beside its model, and its copy in the run's log folder.
METRICS_JSON = "metrics.json"
LOG_RESULT_JSON = "result.json"
#: The corpus stages' records, by stage (stage=general distill=distilbert writes DISTILBERT_JSON).
GENERAL_JSON = "general_distill.json"
DISTILBERT_JSON = "distilbert.json"
MLM_JSON = "mlm.json"
INIT_STUDENT_JSON = "init_student.json"
#: Task phase 1's summary beside the phase-1 student (`<run>/intermediate/`).
PHASE_JSON = "phase.json"
#: The stages whose records are classifier results (report rows).
CLASSIFIER_STAGES = ("task", "finetune")


def _parameters(value: Any, role: str) -> dict[str, int]:
    if isinstance(value, dict):
        return {str(k): int(v) for k, v in value.items()}
    return {} if value is None else {role: int(value)}


def _loads(text: str, where: str) -> dict[str, Any]:
    try:
        data = json.loads(text)
    except ValueError as e:
        raise DataError(f"{where}: not readable JSON ({e})") from None
    if not isinstance(data, dict):
        raise DataError(f"{where}: expected a JSON object, found {type(data).__name__}")
    return data


@dataclass(frozen=True)
class ClassifierRecord:
    """A task-distilled student's or a fine-tuned model's result. `fields` is the whole record, as written; the
    properties are what its readers use."""

    fields: dict[str, Any]

    @property
    def stage(self) -> str | None:
        return self.fields.get("stage")

    @property
    def task(self) -> str | None:
        return self.fields.get("task")

    @property
    def teacher_dir(self) -> str | None:
        return self.fields.get("teacher_dir")

    @property
    def is_result(self) -> bool:
        """A finished classifier result with dev metrics (a report row)."""
        return self.stage in CLASSIFIER_STAGES and "dev" in self.fields

    @property
    def training_steps(self) -> int:
        """Optimiser steps of both task phases (0 for a fine-tuned model's record: see `steps`)."""
        return int(self.fields.get("intermediate", {}).get("steps", 0)) + int(self.fields.get("pred", {}).get("steps", 0))

    @property
    def pred_evaluations(self) -> int | None:
        """Dev evaluations of the prediction phase (None: a record from before they were counted)."""
        return self.fields.get("pred", {}).get("evaluations")

    @property
    def dev_metrics(self) -> dict[str, Any]:
        """Every `dev*` split's metrics."""
        return {k: v for k, v in self.fields.items() if k.startswith("dev")}

    @property
    def parameters(self) -> dict[str, int]:
        return _parameters(self.fields.get("parameters"), "student" if self.stage == "task" else "model")

    def to_json(self) -> str:
        return json.dumps(self.fields, indent=2) + "\n"

    @classmethod
    def from_json(cls, text: str, where: str = "record") -> ClassifierRecord:
        return cls(_loads(text, where))

    @classmethod
    def read(cls, path: str | Path) -> ClassifierRecord:
        """The record in `path` (a file, or a model folder holding METRICS_JSON); DataError naming the file."""
        path = Path(path)
        if path.is_dir():
            path = path / METRICS_JSON
        try:
            text = path.read_text(encoding="utf-8")
        except (OSError, UnicodeDecodeError) as e:
            raise DataError(f"{path}: cannot read the record ({type(e).__name__}: {e})") from None
        return cls.from_json(text, str(path))

    def write_log_copy(self, log_dir: str | Path) -> None:
        """The copy in the run's log folder (`LOG_RESULT_JSON`)."""
        Path(log_dir).mkdir(parents=True, exist_ok=True)
        atomic_write_text(Path(log_dir) / LOG_RESULT_JSON, self.to_json())

    def model_files(self) -> dict[str, dict[str, Any]]:
        """What `models.loading.export_pretrained` writes beside the model."""
        return {METRICS_JSON: self.fields}


@dataclass(frozen=True)
class CorpusRecord:
    """A corpus stage's result (general distillation, the DistilBERT baseline, the masked LM, the untrained
    student), in the file `name` beside its model."""

    name: str
    fields: dict[str, Any] = field(default_factory=dict)

    @property
    def parameters(self) -> dict[str, int]:
        return _parameters(self.fields.get("parameters"), "student")

    def to_json(self) -> str:
        return json.dumps(self.fields, indent=2, sort_keys=True) + "\n"

    @classmethod
    def read(cls, folder: str | Path, name: str) -> CorpusRecord:
        path = Path(folder) / name
        try:
            text = path.read_text(encoding="utf-8")
        except (OSError, UnicodeDecodeError) as e:
            raise DataError(f"{path}: cannot read the record ({type(e).__name__}: {e})") from None
        return cls(name, _loads(text, str(path)))

    def model_files(self) -> dict[str, dict[str, Any]]:
        return {self.name: self.fields}
