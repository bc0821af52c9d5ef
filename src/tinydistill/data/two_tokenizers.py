"""The same texts in two encodings: the student's and, for a teacher whose tokenizer differs, the teacher's.

Task distillation then runs on the prediction layer only (the logits need the same texts, not the same tokens;
`teacher_checks.student_tokenizer` decides). Each training row carries the teacher's encoding of its text in columns
prefixed ``teacher_`` (`with_teacher_encoding`), and `TwoEncodingCollator` pads each encoding with its own
tokenizer, so a batch holds ``input_ids`` (the student's) and ``teacher_input_ids`` (the teacher's) of the same rows.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import Any

from datasets import Dataset, concatenate_datasets

from tinydistill.errors import DataError

TEACHER_PREFIX = "teacher_"
#: The columns of an encoding (the tokenizer's output); labels and row indices are the student's.
ENCODING_COLUMNS = ("input_ids", "attention_mask", "token_type_ids")


def with_teacher_encoding(own: Dataset, teacher: Dataset) -> Dataset:
    """`own` (the student's encoding, with its labels and row indices) with `teacher`'s encoding of the same rows,
    in the same order, as ``teacher_*`` columns."""
    if len(own) != len(teacher):
        raise DataError(f"the teacher's encoding has {len(teacher)} rows, the student's {len(own)}: not the same texts")
    columns = [c for c in ENCODING_COLUMNS if c in teacher.column_names]
    renamed = teacher.select_columns(columns).rename_columns({c: TEACHER_PREFIX + c for c in columns})
    return concatenate_datasets([own, renamed], axis=1)


def split_encodings(batch: Mapping[str, Any]) -> tuple[dict[str, Any], dict[str, Any]]:
    """A batch (or row) as (its own columns, the teacher's encoding without the prefix; empty without one)."""
    own = {k: v for k, v in batch.items() if not k.startswith(TEACHER_PREFIX)}
    teacher = {k[len(TEACHER_PREFIX):]: v for k, v in batch.items() if k.startswith(TEACHER_PREFIX)}
    return own, teacher


class TwoEncodingCollator:
    """Pads the student's encoding with `own` and the teacher's (``teacher_*`` columns) with `teacher`, each with
    its own tokenizer's padding token; rows without a teacher encoding (dev splits) are `own`'s alone."""

    def __init__(self, own: Callable[[list[dict]], Any], teacher: Callable[[list[dict]], Any]) -> None:
        self.own, self.teacher = own, teacher

    def __call__(self, features: list[dict[str, Any]]) -> Any:
        pairs = [split_encodings(f) for f in features]
        batch = self.own([mine for mine, _ in pairs])
        if pairs and pairs[0][1]:
            batch.update({TEACHER_PREFIX + k: v for k, v in self.teacher([theirs for _, theirs in pairs]).items()})
        return batch
