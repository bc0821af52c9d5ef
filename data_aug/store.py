"""The augmented set on disk: the output file and its manifest, the chunks of a generation in progress, and the lock
that keeps two runs from writing the same output.

Work happens in chunks written to `<out>/.partial/chunk_NNNNN.<tsv|jsonl>` (temp file + rename), each with a record
`chunk_NNNNN.json` (row counts, seconds, candidate tally) written before it, while `.partial/key.json` names the
settings they belong to: an interrupted run recomputes only the chunks missing either file. At the end the chunks are
joined into the output (atomically) and `manifest.json` is written the same way. A later run reuses the output only
while it is the file the manifest records (row count and sha256).
"""

from __future__ import annotations

import contextlib
import csv
import io
import json
import logging
import os
import shutil
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Mapping

from data_aug.distributed import SINGLE, Coordinator
from tinydistill.atomic import atomic_write_text
from tinydistill.data import files
from tinydistill.data.glue_tsv import TaskTable
from tinydistill.data.tasks import FORMATS, Task
from tinydistill.hashing import sha256_file

log = logging.getLogger("data_aug.pipeline")

OUTPUT_NAME = "train_aug.tsv"
MANIFEST_NAME = "manifest.json"
PARTIAL_DIR = ".partial"
KEY_NAME = "key.json"  # in PARTIAL_DIR: the settings the chunks there were made with


def output_format(task: Task) -> str:
    """The augmented file's format: the training file's, or JSON Lines for a task read from the hub."""
    return "jsonl" if task.format == "hub" else task.format


def output_name(task: Task) -> str:
    """`train_aug.tsv` for GLUE, `train_aug.<ext>` of the training file's format for a user's task (`.jsonl` for a
    hub dataset's)."""
    if task.is_glue:
        return OUTPUT_NAME
    return "train_aug" + {fmt: ext for ext, fmt in FORMATS.items()}[output_format(task)]


def tsv(rows: list[list[str]]) -> str:
    buf = io.StringIO()
    w = csv.writer(buf, delimiter="\t", quoting=csv.QUOTE_NONE, quotechar=None, lineterminator="\n")
    w.writerows(rows)
    return buf.getvalue()


def write_chunk(path: Path, rows: list[list[Any]]) -> None:
    """One chunk's rows: TSV (GLUE) or, for a `.jsonl` chunk path, one JSON list per row."""
    if path.suffix == ".jsonl":
        atomic_write_text(path, "".join(json.dumps(r, ensure_ascii=False) + "\n" for r in rows))
    else:
        atomic_write_text(path, tsv(rows))


def read_manifest(out_dir: str | os.PathLike) -> dict | None:
    path = Path(out_dir) / MANIFEST_NAME
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None


def output_mismatch(final: Path, manifest: Mapping[str, Any], header_lines: int | None) -> str | None:
    """Why `final` is not the file `manifest` describes (missing, other row count or sha256), or None if it is.

    `header_lines`: lines before the data rows (1 for tasks whose files have a header); the manifest counts rows.
    None: a file whose rows are not lines (a user's CSV or Parquet): the sha256 alone decides.
    """
    if not final.is_file():
        return "is missing"
    recorded = manifest.get("output")
    if not isinstance(recorded, Mapping) or "sha256" not in recorded or "rows" not in recorded:
        return "has no output sha256 and row count in its manifest"
    lines = 0

    def count_lines(block: bytes) -> None:
        nonlocal lines
        lines += block.count(b"\n")

    digest = sha256_file(final, on_block=count_lines)
    rows = None if header_lines is None else lines - header_lines
    if rows is not None and rows != recorded["rows"]:
        return f"has {rows} rows, its manifest records {recorded['rows']}"
    if digest != recorded["sha256"]:
        return "differs from its manifest's sha256 (same row count: edited?)"
    return None


@dataclass(frozen=True)
class ChunkStore:
    """One task's augmented set in the folder `out`."""

    out: Path
    task: Task

    @property
    def final(self) -> Path:
        return self.out / output_name(self.task)

    @property
    def manifest_path(self) -> Path:
        return self.out / MANIFEST_NAME

    @property
    def partial(self) -> Path:
        return self.out / PARTIAL_DIR

    @property
    def suffix(self) -> str:
        """GLUE chunks are TSV, joined byte for byte; a user's task's are JSON Lines (any value, newlines included)."""
        return ".tsv" if self.task.is_glue else ".jsonl"

    def chunk_path(self, chunk: int) -> Path:
        return self.partial / f"chunk_{chunk:05d}{self.suffix}"

    def record_path(self, chunk: int) -> Path:
        return self.partial / f"chunk_{chunk:05d}.json"

    @contextlib.contextmanager
    def locked(self, coordinator: Coordinator = SINGLE) -> Iterator[None]:
        """Exclusive lock on `<out>/.lock` so two runs never write the same output (released by the OS if the
        holder dies). In a run of several processes only rank 0 holds it, for all of them."""
        self.out.mkdir(parents=True, exist_ok=True)
        if not coordinator.is_main:
            yield
            return
        with open(self.out / ".lock", "a+") as f:
            try:
                import fcntl
            except ImportError:  # pragma: no cover - not POSIX: no locking
                yield
                return
            try:
                fcntl.flock(f, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except BlockingIOError:
                log.info("aug: waiting for another process generating %s", self.out)
                fcntl.flock(f, fcntl.LOCK_EX)
            try:
                yield
            finally:
                fcntl.flock(f, fcntl.LOCK_UN)

    def finished(self, n_chunks: int) -> dict[int, dict]:
        """Records of the complete chunks: the rows' file and, written before it, the record (counts, seconds,
        candidate tally) both present and the record readable."""
        done = {}
        for i in range(n_chunks):
            if not self.chunk_path(i).is_file():
                continue
            try:
                done[i] = json.loads(self.record_path(i).read_text(encoding="utf-8"))
            except (OSError, ValueError):
                continue  # written by an older version, or lost: the chunk is recomputed
        return done

    def start(self, key: Mapping[str, Any], n_chunks: int) -> dict[int, dict]:
        """Begin (or resume) a generation: no manifest may describe a file being replaced; chunks made with `key`'s
        settings are kept, any others removed. Returns the finished chunks' records."""
        self.out.mkdir(parents=True, exist_ok=True)
        self.manifest_path.unlink(missing_ok=True)
        try:
            same = json.loads((self.partial / KEY_NAME).read_text(encoding="utf-8")) == dict(key)
        except (OSError, ValueError):
            same = False
        done = self.finished(n_chunks) if same else {}
        if not done and self.partial.exists():
            shutil.rmtree(self.partial)
        self.partial.mkdir(parents=True, exist_ok=True)
        atomic_write_text(self.partial / KEY_NAME, json.dumps(dict(key), indent=1))
        return done

    def write(self, chunk: int, rows: list[list[Any]], record: Mapping[str, Any]) -> None:
        """The chunk's record, then its rows: the chunk is finished once the rows' file exists."""
        atomic_write_text(self.record_path(chunk), json.dumps(dict(record)))
        write_chunk(self.chunk_path(chunk), rows)

    def join(self, table: TaskTable, n_chunks: int) -> int:
        """Every chunk, in order, into the output file (atomically), in the training file's format; the rows
        written."""
        chunks = [self.chunk_path(i) for i in range(n_chunks)]
        if not self.task.is_glue:
            rows = [json.loads(line) for chunk in chunks for line in chunk.read_text(encoding="utf-8").splitlines()]
            files.write_table(self.final, output_format(self.task), table.header, rows)
            return len(rows)
        tmp = self.final.with_name(self.final.name + ".tmp")
        rows_written = 0
        with open(tmp, "wb") as f:
            if table.header is not None:
                f.write(tsv([table.header]).encode("utf-8"))
            for chunk in chunks:
                data = chunk.read_bytes()
                rows_written += data.count(b"\n")
                f.write(data)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, self.final)
        return rows_written

    def finish(self, manifest: Mapping[str, Any]) -> None:
        """The manifest, once the output is in place; the chunks are no longer needed."""
        atomic_write_text(self.manifest_path, json.dumps(dict(manifest), indent=2) + "\n")
        shutil.rmtree(self.partial, ignore_errors=True)

    def up_to_date(self, settings: Mapping[str, Any], table: TaskTable, warn: bool = True) -> bool:
        """Whether the output exists, was made with `settings` and is the file its manifest recorded; warns (naming
        it) when it is not, since it is then regenerated: a truncated or edited file must never pass for up to
        date."""
        manifest = read_manifest(self.out)
        if manifest is None or manifest.get("settings") != settings:
            return False
        header_lines = None if not self.task.is_glue else 0 if table.header is None else 1
        problem = output_mismatch(self.final, manifest, header_lines)
        if problem is None:
            return True
        if warn and self.final.is_file():  # a missing file is simply generated; a changed one deserves a warning
            log.warning("aug: %s %s; regenerating it", self.final, problem)
        return False
