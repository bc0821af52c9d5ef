"""Augmenting rows other than a task's training file: the unlabelled rows `stage.unlabeled.augment` chooses, with the
labelled rows' settings, into `<aug folder>/unlabeled/train_aug.jsonl` (reused while up to date, resumable)."""

from __future__ import annotations

import hashlib
import json
import os
from dataclasses import replace
from pathlib import Path
from typing import Any, Mapping

from datasets import Dataset

from data_aug.config import AugConfig
from data_aug.distributed import SINGLE
from data_aug.mlm import MaskedLM
from data_aug.pipeline import AugmentJob, aug_dir, reuse_or_generate
from tinydistill.data.glue_tsv import TaskTable
from tinydistill.data.tasks import Task

#: Under a task's augmentation folder: the augmented unlabelled rows (stage.unlabeled.augment).
UNLABELED_DIR = "unlabeled"


def rows_task(task: Task, pair: bool) -> Task:
    """`task` as augmentation sees a table of unlabelled rows: a user's table with columns text_a (and text_b) and no
    label, written as JSON Lines. It keeps the task's name, so `aug.n_aug_per_task` applies to both sets alike."""
    return replace(task, folder=None, hub_config=None, text_a="text_a", text_b="text_b" if pair else None,
                   label="label", files=(("train", f"{UNLABELED_DIR}.jsonl"),), dataset=None, dataset_config=None)


def ensure_augmented_rows(
    cfg_aug: AugConfig | Mapping[str, Any] | None,
    task: Task,
    rows: Dataset,
    data_dir: str | os.PathLike | None,
    artifacts_dir: str | os.PathLike,
    *,
    source: str,
    mlm_model: MaskedLM | str | os.PathLike | None = None,
    progress: bool = True,
) -> Path:
    """`rows` (columns text_a and, for pairs, text_b: unlabelled text, `source` naming where it came from) augmented
    as `ensure_augmented` augments the training file, with the same settings, into
    `<aug folder>/unlabeled/train_aug.jsonl` (columns text_a, text_b). Its manifest fingerprints the rows' content,
    so other rows, or other settings, regenerate it; an interrupted generation resumes."""
    cfg = AugConfig.from_cfg(cfg_aug)
    pair = "text_b" in rows.column_names
    header = ["text_a", "text_b"] if pair else ["text_a"]
    values = [list(r) for r in zip(*(rows[c] for c in header))]
    digest = hashlib.sha256()
    for r in values:
        digest.update(json.dumps(r, ensure_ascii=False).encode() + b"\n")
    table = TaskTable(Path(source), header, values, list(range(1, len(values) + 1)), 0, 1 if pair else None, None)
    out = aug_dir(artifacts_dir, task, cfg.output_dir) / UNLABELED_DIR
    job = AugmentJob.prepare(cfg, rows_task(task, pair), None, data_dir, out, mlm_model, None, None, progress, SINGLE,
                             source=(table, source, f"rows:{digest.hexdigest()}"))
    return reuse_or_generate(job)
