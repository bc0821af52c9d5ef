"""Augment a task's training file into `<artifacts_dir>/aug/<task>/train_aug.<ext>`, resumably.

GLUE tasks: `<data_dir>/glue/<Task>/train.tsv` into `train_aug.tsv`. A user's task (task=custom): its `task.train`
file into `train_aug.<csv|tsv|jsonl|parquet>`, the same format and columns (the chunks are JSON Lines, joined into
that format at the end; its manifest checks the output by sha256 only, since CSV cells may hold newlines).

Output rows, per training example in file order: the original row unchanged; then for text_a each
augmented sentence (other columns, label included, unchanged); then, for pair tasks, the same for
text_b with text_a unchanged. The two columns are augmented independently, each with its own
random stream seeded by (aug.seed, example index, column), so any chunk can be recomputed alone
and a resumed run writes exactly the bytes of an uninterrupted one.

Work happens in chunks of `aug.chunk_size` examples written to `<out>/.partial/chunk_NNNNN.tsv`
(temp file + rename), each with a record `chunk_NNNNN.json` (row counts, seconds, candidate tally) written
before it, while `.partial/key.json` names the settings they belong to; an interrupted run recomputes only
the chunks missing either file. Several processes (torchrun, data_aug/distributed.py) share the chunks out
the same way. At the end the chunks are joined into
`train_aug.tsv.tmp`, renamed to `train_aug.tsv`, and `manifest.json` is written the same way. A later run
reuses the output only while it is the file the manifest records (row count and sha256); a truncated or
edited one is regenerated, with a warning naming it.

Candidate quality: each chunk's record holds the tally of the masked-LM candidate lists its sentences
used (stats.CandidateTally: lists and token counts, after `aug.alphabetic_only` filtering), so after a
resume the merged tallies are exactly those of an uninterrupted run; `manifest.json["candidate_quality"]`
holds their statistics (stats.candidate_stats), and a one-line summary is logged.
"""

from __future__ import annotations

import contextlib
import csv
import hashlib
import io
import json
import logging
import os
import shutil
import sys
import time
from collections import Counter
from datetime import datetime, timezone
from pathlib import Path
from typing import Any, Mapping

import numpy as np

from data_aug.augmenter import Augmenter
from data_aug.config import AugConfig
from data_aug.distributed import SINGLE, Coordinator
from data_aug.glove import GloveNeighbours, glove_file_fingerprint, load_glove
from data_aug.mlm import MaskedLM, load_mlm
from data_aug.stats import CandidateTally, summary_line
from data_aug.words import load_stopwords, nltk_data_dir, stopwords_fingerprint
from tinydistill.atomic import atomic_write_text
from tinydistill.data import files
from tinydistill.data.glue_tsv import GlueTable
from tinydistill.data.tasks import FORMATS, GlueTask, Task, get_task
from tinydistill.errors import ConfigError

log = logging.getLogger(__name__)

# Bump when the algorithm or output layout changes: older outputs are then regenerated.
FORMAT_VERSION = 1
OUTPUT_NAME = "train_aug.tsv"
MANIFEST_NAME = "manifest.json"
PARTIAL_DIR = ".partial"
KEY_NAME = "key.json"  # in PARTIAL_DIR: the settings the chunks there were made with


def as_task(task: str | Task) -> Task:
    """A GLUE task's name, or a `Task` (a user's task, built by tinydistill.data.files.task_from_config)."""
    return get_task(task) if isinstance(task, str) else task


def aug_dir(artifacts_dir: str | os.PathLike, task: str | Task, output_dir: str | os.PathLike | None = None) -> Path:
    """The output folder: `output_dir` (`aug.output_dir`) if given, else the stable `<artifacts_dir>/aug/<task>/`."""
    return Path(output_dir) if output_dir else Path(artifacts_dir) / "aug" / as_task(task).name


def output_format(task: Task) -> str:
    """The augmented file's format: the training file's, or JSON Lines for a task read from the hub."""
    return "jsonl" if task.format == "hub" else task.format


def output_name(task: Task) -> str:
    """`train_aug.tsv` for GLUE, `train_aug.<ext>` of the training file's format for a user's task (`.jsonl` for a
    hub dataset's)."""
    if task.is_glue:
        return OUTPUT_NAME
    return "train_aug" + {fmt: ext for ext, fmt in FORMATS.items()}[output_format(task)]


def _chunk_suffix(task: Task) -> str:
    """GLUE chunks are TSV, joined byte for byte; a user's task's are JSON Lines (any value, newlines included)."""
    return ".tsv" if task.is_glue else ".jsonl"


def _source(task: Task, data_dir: str | os.PathLike | None) -> Path | None:
    """The training file to augment; None for a user's task read from the hub (`task.dataset`)."""
    if not task.is_glue and task.dataset is not None:
        return None
    return files.task_file(task, "train", _resolve_data_dir(data_dir) if task.is_glue else None)


def _read_source(task: Task, src: Path | None) -> tuple[GlueTable, str, str]:
    """The training rows (without the rows `task.tune_split` holds out), how the manifest names their source, and
    what identifies its content: the file's sha256, or for a hub split its `datasets` fingerprint (with the tune
    split's settings when it is on)."""
    if src is None:
        table, fingerprint = files.read_hub_table(task)
    else:
        table, fingerprint = files.read_table(task, src), _sha256_file(src)
    if task.tune_split is not None:  # the rows task.tune_split holds out are never augmented (nor trained on)
        table = files.without_tune_rows(task, table)
        fingerprint += f"|tune_split={task.tune_split},tune_seed={task.tune_seed}"
    return table, str(table.path if src is None else src), fingerprint


def _sha256_file(path: Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest()


@contextlib.contextmanager
def _locked(out: Path, coordinator: Coordinator = SINGLE):
    """Exclusive lock on `<out>/.lock` so two runs never write the same output (released by the OS if the
    holder dies). In a run of several processes only rank 0 holds it, for all of them."""
    out.mkdir(parents=True, exist_ok=True)
    if not coordinator.is_main:
        yield
        return
    with open(out / ".lock", "a+") as f:
        try:
            import fcntl
        except ImportError:  # pragma: no cover - not POSIX: no locking
            yield
            return
        try:
            fcntl.flock(f, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            log.info("aug: waiting for another process generating %s", out)
            fcntl.flock(f, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(f, fcntl.LOCK_UN)


def _tsv(rows: list[list[str]]) -> str:
    buf = io.StringIO()
    w = csv.writer(buf, delimiter="\t", quoting=csv.QUOTE_NONE, quotechar=None, lineterminator="\n")
    w.writerows(rows)
    return buf.getvalue()


def _columns(table: GlueTable) -> list[int]:
    return [c for c in (table.text_a_col, table.text_b_col) if c is not None]


def _resolve_data_dir(data_dir: str | os.PathLike | None) -> Path:
    if data_dir is None or str(data_dir) in ("", "None", "null"):
        raise ConfigError(
            "paths.data_dir is not set: augmentation reads <paths.data_dir>/glue/<Task>/train.tsv "
            "(set TINYDISTILL_DATA_DIR or paths.data_dir)"
        )
    return Path(data_dir)


def _settings(
    cfg: AugConfig, task: GlueTask, mlm: MaskedLM | str, glove_fp: str, stop_fp: str, source_sha: str
) -> dict[str, Any]:
    """Everything the output depends on; a manifest whose settings differ is out of date."""
    settings = {
        "format_version": FORMAT_VERSION,
        "task": task.name,
        "source_sha256": source_sha,
        "mlm_fingerprint": mlm if isinstance(mlm, str) else mlm.fingerprint,
        "glove_fingerprint": glove_fp,
        "glove_vocab_size": cfg.glove_vocab_size,
        "stopwords_fingerprint": stop_fp,
        "top_k": cfg.top_k,
        "n_aug": cfg.n_aug_for(task.name),
        "p_replace": float(cfg.p_replace),
        "seed": cfg.seed,
        "max_seq_length": cfg.max_seq_length,
        "dtype": cfg.dtype,
        "max_examples": cfg.max_examples,
    }
    if cfg.alphabetic_only:
        # Only when on, so outputs made before the option existed (= off) stay up to date.
        settings["alphabetic_only"] = True
    if cfg.stopwords != "nltk":
        # Named as well as fingerprinted (stop words passed in preloaded are only fingerprinted); only when not
        # the default, so outputs made before the option existed stay up to date.
        settings["stopwords"] = cfg.stopwords
    if not task.is_glue:  # which columns are augmented; GLUE's are fixed (and its settings keep their old keys)
        settings["text_columns"] = [str(c) for c in task.text_columns]
    if not (cfg.dtype == "float32" and cfg.device == "cpu"):
        # bfloat16 (and GPU) kernels are not batch-invariant: the candidates then depend on how
        # masked sentences are grouped into forwards, so these become part of the identity.
        settings.update(mode=cfg.mode, batch_size=cfg.batch_size, chunk_size=cfg.chunk_size)
    if cfg.dtype == "bfloat16":
        # Autocast since session 30; outputs of the earlier whole-model cast have other lists and are not reused.
        settings["bfloat16"] = "autocast"
    return settings


def _settings_hash(settings: Mapping[str, Any]) -> str:
    return hashlib.sha256(json.dumps(settings, sort_keys=True).encode()).hexdigest()[:16]


def _rng(seed: int, example: int, column: int) -> np.random.Generator:
    return np.random.default_rng([seed, example, column])


def augment_rows(
    augmenter: Augmenter,
    table: GlueTable,
    start: int,
    stop: int,
    seed: int,
    stats: Counter | None = None,
    max_examples: int | None = None,
    tally: CandidateTally | None = None,
) -> list[list[str]]:
    """Output rows of examples [start, stop) of `table` (see module docstring for the order).

    Examples at or past `max_examples` are copied without augmentation. `tally` receives the MLM
    candidate lists of every augmented sentence (one per example and text column).
    """
    cols = _columns(table)
    limit = stop if max_examples is None else max(start, min(stop, max_examples))
    copied = [list(row) for row in table.rows[limit:stop]]
    examples = table.rows[start:limit]
    texts = [row[c] for row in examples for c in cols]
    cands = augmenter.candidates(texts)
    if tally is not None:
        tally.add_sentences(cands)
    out: list[list[str]] = []
    for e, row in enumerate(examples):
        out.append(list(row))
        for k, col in enumerate(cols):
            sc = cands[e * len(cols) + k]
            new = augmenter.augment(sc, _rng(seed, start + e, k))
            for text in new:
                r = list(row)
                r[col] = text
                out.append(r)
            if stats is not None:
                stats["sentences"] += 1
                stats["sentences_without_candidates"] += not sc.candidates
                stats["augmented_rows"] += len(new)
                for source in sc.sources.values():
                    stats[f"words_{source}"] += 1
    return out + copied


def _load_components(
    cfg: AugConfig,
    data_dir: Path | None,
    mlm: MaskedLM | str | os.PathLike | None,
    glove: GloveNeighbours | Any | None,
    stopwords: frozenset[str] | set[str] | None,
    coordinator: Coordinator = SINGLE,
) -> tuple[MaskedLM, GloveNeighbours | None, frozenset[str]]:
    """Load what was not passed in. GloVe from cfg is loaded later, only if generation runs."""
    if stopwords is None:
        stopwords = load_stopwords(nltk_data_dir(cfg.nltk_data, data_dir), cfg.stopwords)
    if mlm is None or isinstance(mlm, (str, os.PathLike)):
        mlm = load_mlm(
            str(mlm) if mlm is not None else cfg.mlm_model,
            device=coordinator.device(cfg.device),
            dtype=cfg.dtype,
            max_seq_length=cfg.max_seq_length,
            allow_untrained_head=cfg.allow_untrained_head,
        )
    if glove is not None and not isinstance(glove, GloveNeighbours):
        glove = GloveNeighbours(glove, cfg.top_k)  # preloaded KeyedVectors
    if glove is not None and glove.top_k != cfg.top_k:
        raise ConfigError(f"aug.top_k={cfg.top_k}: the GloveNeighbours passed in use top_k={glove.top_k}")
    return mlm, glove, frozenset(stopwords)


def _glove_neighbours(cfg: AugConfig, glove: GloveNeighbours | None, fingerprint: str) -> GloveNeighbours:
    if glove is not None:
        return glove
    return GloveNeighbours(
        load_glove(cfg.glove, cfg.glove_vocab_size, cfg.allow_gensim_download), cfg.top_k, fingerprint=fingerprint
    )


def _glove_fp(cfg: AugConfig, glove: GloveNeighbours | None) -> str:
    if glove is not None:
        return glove.fingerprint
    fp = glove_file_fingerprint(cfg.glove, cfg.glove_vocab_size)
    if fp is None:
        load_glove(cfg.glove, cfg.glove_vocab_size, cfg.allow_gensim_download)  # raises the error naming aug.glove
        raise AssertionError("unreachable")  # pragma: no cover
    return fp


def augment_task(
    cfg_aug: AugConfig | Mapping[str, Any] | None,
    task_name: str | Task,
    data_dir: str | os.PathLike | None,
    out_dir: str | os.PathLike,
    *,
    mlm: MaskedLM | str | os.PathLike | None = None,
    glove: GloveNeighbours | Any | None = None,
    stopwords: frozenset[str] | set[str] | None = None,
    progress: bool = True,
    coordinator: Coordinator = SINGLE,
) -> Path:
    """Write `<out_dir>/train_aug.tsv` (a user's task: `train_aug.<ext>`) and `manifest.json` for a task (a GLUE
    name or a `Task`); returns the output's path.

    Always (re)generates, resuming from `<out_dir>/.partial/` when it holds chunks made with the
    same settings. `mlm`, `glove` (KeyedVectors or GloveNeighbours) and `stopwords` may be
    passed preloaded (`stopwords` then replaces the `aug.stopwords` list); otherwise they are loaded
    from cfg_aug. `coordinator`: this process's share of a run over several processes
    (data_aug/distributed.py); every process must call this with the same arguments.
    """
    cfg = AugConfig.from_cfg(cfg_aug)
    task = as_task(task_name)
    table, src, source_sha = _read_source(task, _source(task, data_dir))
    mlm, glove, stopwords = _load_components(cfg, data_dir, mlm, glove, stopwords, coordinator)
    glove_fp = _glove_fp(cfg, glove)
    settings = _settings(cfg, task, mlm, glove_fp, stopwords_fingerprint(stopwords), source_sha)
    out = Path(out_dir)
    with _locked(out, coordinator):
        return _generate(cfg, task, table, src, out, settings, mlm, glove, glove_fp, stopwords, progress, coordinator)


def _chunk_record_path(partial: Path, chunk: int) -> Path:
    return partial / f"chunk_{chunk:05d}.json"


def _chunk_path(partial: Path, chunk: int, suffix: str = ".tsv") -> Path:
    return partial / f"chunk_{chunk:05d}{suffix}"


def _finished_chunks(partial: Path, n_chunks: int, suffix: str = ".tsv") -> dict[int, dict]:
    """Records of the chunks in `partial` that are complete: the rows' file and, written before it, the
    record (counts, seconds, candidate tally) both present and the record readable."""
    done = {}
    for i in range(n_chunks):
        if not _chunk_path(partial, i, suffix).is_file():
            continue
        try:
            done[i] = json.loads(_chunk_record_path(partial, i).read_text(encoding="utf-8"))
        except (OSError, ValueError):
            continue  # written by an older version, or lost: the chunk is recomputed
    return done


def _prepare_partial(partial: Path, key: Mapping[str, Any], n_chunks: int, suffix: str) -> dict[int, dict]:
    """Keep `partial`'s chunks if they were made with `key`'s settings, else empty it; the finished chunks."""
    try:
        same = json.loads((partial / KEY_NAME).read_text(encoding="utf-8")) == dict(key)
    except (OSError, ValueError):
        same = False
    done = _finished_chunks(partial, n_chunks, suffix) if same else {}
    if not done and partial.exists():
        shutil.rmtree(partial)
    partial.mkdir(parents=True, exist_ok=True)
    atomic_write_text(partial / KEY_NAME, json.dumps(dict(key), indent=1))
    return done


def _generate(
    cfg: AugConfig,
    task: GlueTask,
    table: GlueTable,
    src: str,
    out: Path,
    settings: dict[str, Any],
    mlm: MaskedLM,
    glove: GloveNeighbours | None,
    glove_fp: str,
    stopwords: frozenset[str],
    progress: bool,
    coordinator: Coordinator = SINGLE,
) -> Path:
    import torch
    from tqdm.auto import tqdm

    started = time.time()
    augmenter = Augmenter(  # loads GloVe: fail before touching the output folder
        mlm,
        _glove_neighbours(cfg, glove, glove_fp),
        stopwords,
        top_k=cfg.top_k,
        n_aug=cfg.n_aug_for(task.name),
        p_replace=cfg.p_replace,
        mode=cfg.mode,
        batch_size=cfg.batch_size,
        alphabetic_only=cfg.alphabetic_only,
    )
    final, manifest_path = out / output_name(task), out / MANIFEST_NAME
    partial = out / PARTIAL_DIR
    suffix = _chunk_suffix(task)
    n = len(table.rows)
    starts = list(range(0, n, cfg.chunk_size))
    key = {"settings_hash": _settings_hash(settings), "chunk_size": cfg.chunk_size, "examples": n}
    done_before: list[int] = []
    if coordinator.is_main:
        out.mkdir(parents=True, exist_ok=True)
        manifest_path.unlink(missing_ok=True)  # no manifest may describe a file being replaced
        done_before = sorted(_prepare_partial(partial, key, len(starts), suffix))
    done_before = coordinator.broadcast(done_before)  # every process skips the same chunks
    skip = set(done_before)
    mine = [i for i in range(len(starts)) if coordinator.owns(i) and i not in skip]
    resumed = sum(min(cfg.chunk_size, n - starts[i]) for i in done_before)
    if resumed and coordinator.is_main:
        log.info("resuming %s augmentation: %d of %d examples already done", task.name, resumed, n)
    if coordinator.distributed and coordinator.is_main:
        log.info("aug: %d processes, this one (rank 0) computes %d of %d chunks", coordinator.world_size,
                 len(mine), len(starts))
    threads_before = torch.get_num_threads()
    if cfg.num_threads:
        torch.set_num_threads(cfg.num_threads)
    share = sum(min(cfg.chunk_size, n - starts[i]) for i in mine)
    bar = tqdm(total=share, unit="ex", desc=f"augment {task.name}", file=sys.stderr,
               disable=not (progress and coordinator.is_main))
    try:
        for i in mine:
            s = starts[i]
            stats: Counter = Counter()
            tally = CandidateTally()
            t0 = time.perf_counter()
            rows = augment_rows(
                augmenter, table, s, min(s + cfg.chunk_size, n), cfg.seed, stats, cfg.max_examples, tally=tally
            )
            record = {"counts": dict(stats), "seconds": round(time.perf_counter() - t0, 3), "tally": tally.to_json()}
            atomic_write_text(_chunk_record_path(partial, i), json.dumps(record))
            _write_chunk(_chunk_path(partial, i, suffix), rows)  # last: the chunk is finished once this file exists
            bar.update(min(cfg.chunk_size, n - s))
    finally:
        bar.close()
        torch.set_num_threads(threads_before)
    coordinator.barrier()  # every chunk written
    if coordinator.is_main:
        _join(cfg, task, table, src, out, settings, key, mlm, glove, stopwords, coordinator,
              threads_before, started, resumed)
    coordinator.barrier()  # the file and its manifest exist before any process returns
    return final


def _join(cfg: AugConfig, task: GlueTask, table: GlueTable, src: str, out: Path, settings: dict[str, Any],
          key: Mapping[str, Any], mlm: MaskedLM, glove: GloveNeighbours | None, stopwords: frozenset[str],
          coordinator: Coordinator, threads_before: int, started: float, resumed: int) -> None:
    """Rank 0, once every chunk is written: join them into the output and write its manifest."""
    final, manifest_path, partial = out / output_name(task), out / MANIFEST_NAME, out / PARTIAL_DIR
    suffix = _chunk_suffix(task)
    n_chunks = len(range(0, len(table.rows), cfg.chunk_size))
    done = _finished_chunks(partial, n_chunks, suffix)
    if len(done) != n_chunks:
        missing = sorted(set(range(n_chunks)) - set(done))
        raise RuntimeError(f"aug: chunks {missing[:5]} of {partial} are missing after every process finished")
    if task.is_glue:
        rows_written = _join_tsv(final, table.header, [_chunk_path(partial, i, suffix) for i in range(n_chunks)])
    else:
        rows = [json.loads(line) for i in range(n_chunks)
                for line in _chunk_path(partial, i, suffix).read_text(encoding="utf-8").splitlines()]
        files.write_table(final, output_format(task), table.header, rows)
        rows_written = len(rows)

    totals: Counter = Counter()
    tally = CandidateTally()
    for i in range(n_chunks):
        totals.update(done[i]["counts"])
        tally.merge(CandidateTally.from_json(done[i]["tally"]))
    quality = tally.stats(stopwords)
    log.info("aug %s: %s", task.name, summary_line(quality))
    manifest = {
        "format_version": FORMAT_VERSION,
        "task": task.name,
        "settings": settings,
        "settings_hash": key["settings_hash"],
        "seed": cfg.seed,
        "config": cfg.as_dict(),
        "mlm_model": getattr(mlm, "name", str(cfg.mlm_model)),
        "glove": cfg.glove if glove is None else "<preloaded>",
        "source": {"path": str(src), "sha256": settings["source_sha256"], "examples": len(table.rows)},
        "output": {"path": str(final), "rows": rows_written, "sha256": _sha256_file(final)},
        "counts": {"examples": len(table.rows), "rows": rows_written, **dict(sorted(totals.items()))},
        # MLM candidate lists of all augmented sentences (see data_aug/stats.py)
        "candidate_quality": quality,
        "time": {
            "seconds_this_run": round(time.time() - started, 2),
            # summed over chunks: with several processes, more than the run's wall time
            "seconds_augmenting_all_chunks": round(sum(r["seconds"] for r in done.values()), 2),
            "resumed_examples": resumed,
            "finished": datetime.now(timezone.utc).isoformat(timespec="seconds"),
        },
        "runtime": {
            "mode": cfg.mode,
            "batch_size": cfg.batch_size,
            "chunk_size": cfg.chunk_size,
            "device": cfg.device,
            "torch_threads": cfg.num_threads or threads_before,
            "processes": coordinator.world_size,
        },
    }
    atomic_write_text(manifest_path, json.dumps(manifest, indent=2) + "\n")
    shutil.rmtree(partial, ignore_errors=True)


def _join_tsv(final: Path, header: list[str] | None, chunks: list[Path]) -> int:
    """GLUE: the header and the TSV chunks' bytes, in order, into `final` (atomically); the rows written."""
    tmp = final.with_name(final.name + ".tmp")
    rows_written = 0
    with open(tmp, "wb") as f:
        if header is not None:
            f.write(_tsv([header]).encode("utf-8"))
        for chunk in chunks:
            data = chunk.read_bytes()
            rows_written += data.count(b"\n")
            f.write(data)
        f.flush()
        os.fsync(f.fileno())
    os.replace(tmp, final)
    return rows_written


def _write_chunk(path: Path, rows: list[list[Any]]) -> None:
    """One chunk's rows: TSV (GLUE) or, for a `.jsonl` chunk path, one JSON list per row."""
    if path.suffix == ".jsonl":
        atomic_write_text(path, "".join(json.dumps(r, ensure_ascii=False) + "\n" for r in rows))
    else:
        atomic_write_text(path, _tsv(rows))


def read_manifest(out_dir: str | os.PathLike) -> dict | None:
    path = Path(out_dir) / MANIFEST_NAME
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None


def _log_quality(task_name: str, manifest: Mapping[str, Any]) -> None:
    quality = manifest.get("candidate_quality")
    if quality:
        log.info("aug %s: %s", task_name, summary_line(quality))
    else:  # made before the statistics were recorded
        log.info(
            "aug %s: the manifest has no candidate statistics; see `python -m data_aug.quality` "
            "(or regenerate with force=true)", task_name,
        )


def ensure_augmented(
    cfg_aug: AugConfig | Mapping[str, Any] | None,
    task_name: str | Task,
    data_dir: str | os.PathLike | None,
    artifacts_dir: str | os.PathLike,
    *,
    mlm_model: MaskedLM | str | os.PathLike | None = None,
    glove: GloveNeighbours | Any | None = None,
    stopwords: frozenset[str] | set[str] | None = None,
    progress: bool = True,
    coordinator: Coordinator = SINGLE,
) -> Path | None:
    """Path of the task's augmented training file, generating it only when needed.

    `task_name`: a GLUE name or a `Task`. Returns `<artifacts_dir>/aug/<task>/train_aug.tsv` (GLUE layout of
    train.tsv; a user's task: `train_aug.<ext>`, the format and columns of its training file) if it exists, is
    the file its manifest records (row count and sha256; a truncated or edited file is regenerated
    with a warning naming it) and the manifest's settings equal the current ones (config numbers,
    seed, MLM weights fingerprint, GloVe fingerprint, stop words, train.tsv sha256); otherwise
    (re)generates it, resuming an interrupted run. `mlm_model` overrides `cfg_aug.mlm_model` (a
    name, a folder, or a loaded MaskedLM). If augmentation is disabled (`aug.enabled: false`) or the task is in
    `aug.skip_tasks` (STS-B by default), returns the original training file (None for a hub dataset: train on
    its split) and logs why. A hub dataset's training split (`task.dataset`) is augmented into `train_aug.jsonl`.
    `coordinator`: as in `augment_task`.
    """
    cfg = AugConfig.from_cfg(cfg_aug)
    task = as_task(task_name)
    src = _source(task, data_dir)
    if not cfg.enabled:
        return src
    if task.name in cfg.skip_tasks:
        log.warning(
            "aug: %s is in aug.skip_tasks (its labels do not survive word replacement); training on "
            "the original %s", task.name, src or f"{task.dataset} split {task.source('train')}",
        )
        return src
    out = aug_dir(artifacts_dir, task, cfg.output_dir)
    table, src, source_sha = _read_source(task, src)
    mlm, glove, stopwords = _load_components(cfg, data_dir, mlm_model, glove, stopwords, coordinator)
    glove_fp = _glove_fp(cfg, glove)
    settings = _settings(cfg, task, mlm, glove_fp, stopwords_fingerprint(stopwords), source_sha)
    final = out / output_name(task)

    def up_to_date(warn: bool) -> bool:
        manifest = read_manifest(out)
        return manifest is not None and manifest.get("settings") == settings and _output_matches(
            final, manifest, task, table, warn=warn
        )

    # Rank 0 decides for every process, so that all of them generate or none does.
    if coordinator.broadcast(up_to_date(warn=True) if coordinator.is_main else None):
        if coordinator.is_main:
            log.info("aug: up to date: %s", final)
            _log_quality(task.name, read_manifest(out) or {})
        return final
    with _locked(out, coordinator):
        # another run may have just finished it
        if coordinator.broadcast(up_to_date(warn=False) if coordinator.is_main else None):
            return final
        if coordinator.is_main:
            log.info("aug: generating %s", final)
        return _generate(cfg, task, table, src, out, settings, mlm, glove, glove_fp, stopwords, progress, coordinator)


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
    h, lines = hashlib.sha256(), 0
    with open(final, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            h.update(block)
            lines += block.count(b"\n")
    rows = None if header_lines is None else lines - header_lines
    if rows is not None and rows != recorded["rows"]:
        return f"has {rows} rows, its manifest records {recorded['rows']}"
    if h.hexdigest() != recorded["sha256"]:
        return "differs from its manifest's sha256 (same row count: edited?)"
    return None


def _output_matches(final: Path, manifest: Mapping[str, Any], task: Task, table: GlueTable, warn: bool = True) -> bool:
    """Whether the output exists and is the file its manifest recorded; warns (naming it) when it is not,
    since it is then regenerated: a truncated or edited file must never pass for up to date."""
    header_lines = None if not task.is_glue else 0 if table.header is None else 1
    problem = output_mismatch(final, manifest, header_lines)
    if problem is None:
        return True
    if warn and final.is_file():  # a missing file is simply generated; a changed one deserves a warning
        log.warning("aug: %s %s; regenerating it", final, problem)
    return False
