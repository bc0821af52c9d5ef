"""Augment a task's training file into `<artifacts_dir>/aug/<task>/train_aug.<ext>`, resumably.

GLUE tasks: `<data_dir>/glue/<Task>/train.tsv` into `train_aug.tsv`. A user's task (task=custom): its `task.train`
file into `train_aug.<csv|tsv|jsonl|parquet>`, the same format and columns (the chunks are JSON Lines, joined into
that format at the end; its manifest checks the output by sha256 only, since CSV cells may hold newlines).

Output rows, per training example in file order: the original row unchanged; then for text_a each
augmented sentence (other columns, label included, unchanged); then, for pair tasks, the same for
text_b with text_a unchanged. The two columns are augmented independently, each with its own
random stream seeded by (aug.seed, example index, column), so any chunk can be recomputed alone
and a resumed run writes exactly the bytes of an uninterrupted one.

Work happens in chunks of `aug.chunk_size` examples, kept by `store.ChunkStore` (chunks, lock, manifest, the
up-to-date check): an interrupted run recomputes only the chunks it lacks, and several processes (torchrun,
data_aug/distributed.py) share the chunks out the same way. What the output depends on is `settings.py`'s; a
truncated or edited output is regenerated, with a warning naming it. One generation is an `AugmentJob`.

Candidate quality: each chunk's record holds the tally of the masked-LM candidate lists its sentences
used (stats.CandidateTally: lists and token counts, after `aug.alphabetic_only` filtering), so after a
resume the merged tallies are exactly those of an uninterrupted run; `manifest.json["candidate_quality"]`
holds their statistics (stats.candidate_stats), and a one-line summary is logged.
"""

from __future__ import annotations

import logging
import os
import sys
import time
from collections import Counter
from dataclasses import dataclass
from datetime import datetime, timezone
from pathlib import Path
from typing import Any, Mapping

from data_aug.augmenter import Augmenter
from data_aug.config import AugConfig
from data_aug.distributed import SINGLE, Coordinator
from data_aug.glove import GloveNeighbours, glove_file_fingerprint, load_glove
from data_aug.mlm import MaskedLM, load_mlm
from data_aug.rows import augment_rows
from data_aug.settings import FORMAT_VERSION, output_settings, settings_hash
from data_aug.stats import CandidateTally, summary_line
from data_aug.store import ChunkStore, read_manifest
from data_aug.words import load_stopwords, nltk_data_dir, stopwords_fingerprint
from tinydistill.data import files
from tinydistill.data.glue_tsv import TaskTable
from tinydistill.data.tasks import Task, get_task
from tinydistill.errors import ConfigError
from tinydistill.hashing import sha256_file

log = logging.getLogger(__name__)


def as_task(task: str | Task) -> Task:
    """A GLUE task's name, or a `Task` (a user's task, built by tinydistill.data.files.task_from_config)."""
    return get_task(task) if isinstance(task, str) else task


def aug_dir(artifacts_dir: str | os.PathLike, task: str | Task, output_dir: str | os.PathLike | None = None) -> Path:
    """The output folder: `output_dir` (`aug.output_dir`) if given, else the stable `<artifacts_dir>/aug/<task>/`."""
    return Path(output_dir) if output_dir else Path(artifacts_dir) / "aug" / as_task(task).name


def source_file(task: Task, data_dir: str | os.PathLike | None) -> Path | None:
    """The training file to augment; None for a user's task read from the hub (`task.dataset`)."""
    if not task.is_glue and task.dataset is not None:
        return None
    return files.task_file(task, "train", _resolve_data_dir(data_dir) if task.is_glue else None)


def read_source(task: Task, src: Path | None) -> tuple[TaskTable, str, str]:
    """The training rows (without the rows `task.tune_split` holds out; only the `task.train_rows` that keep their
    labels), how the manifest names their source, and what identifies its content: the file's sha256, or for a hub
    split its `datasets` fingerprint (with the tune split's and train_rows' settings when they are on)."""
    if src is None:
        table, fingerprint = files.read_hub_table(task)
    else:
        table, fingerprint = files.read_table(task, src), sha256_file(src)
    # Rows held out (tune) or without labels (train_rows) are never augmented, nor trained on.
    table = files.training_rows(task, table)
    if task.tune_split is not None:
        fingerprint += f"|tune_split={task.tune_split},tune_seed={task.tune_seed}"
    if task.train_rows is not None:
        fingerprint += f"|train_rows={task.train_rows},tune_seed={task.tune_seed}"
    return table, str(table.path if src is None else src), fingerprint


def _resolve_data_dir(data_dir: str | os.PathLike | None) -> Path:
    if data_dir is None or str(data_dir) in ("", "None", "null"):
        raise ConfigError(
            "paths.data_dir is not set: augmentation reads <paths.data_dir>/glue/<Task>/train.tsv "
            "(set TINYDISTILL_DATA_DIR or paths.data_dir)"
        )
    return Path(data_dir)


def load_components(
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


def _glove_fp(cfg: AugConfig, glove: GloveNeighbours | None) -> str | None:
    if cfg.mlm_only:
        return None  # no word vectors are read
    if glove is not None:
        return glove.fingerprint
    fp = glove_file_fingerprint(cfg.word_vectors, cfg.word_vectors_vocab_size)
    if fp is None:
        # raises the error naming aug.word_vectors
        load_glove(cfg.word_vectors, cfg.word_vectors_vocab_size, cfg.allow_gensim_download)
        raise AssertionError("unreachable")  # pragma: no cover
    return fp


@dataclass(frozen=True)
class AugmentJob:
    """One augmentation of one task: its settings, rows, models and where the output goes."""

    cfg: AugConfig
    task: Task
    table: TaskTable
    src: str
    store: ChunkStore
    settings: dict[str, Any]
    mlm: MaskedLM
    glove: GloveNeighbours | None
    glove_fp: str | None
    stopwords: frozenset[str]
    progress: bool = True
    coordinator: Coordinator = SINGLE

    @classmethod
    def prepare(cls, cfg: AugConfig, task: Task, src: Path | None, data_dir: str | os.PathLike | None, out: Path,
                mlm: MaskedLM | str | os.PathLike | None, glove: GloveNeighbours | Any | None,
                stopwords: frozenset[str] | set[str] | None, progress: bool, coordinator: Coordinator,
                source: tuple[TaskTable, str, str] | None = None) -> AugmentJob:
        """Read the rows (`source`: rows already read, as `read_source` returns them), load what was not passed in,
        and work out the settings the output depends on."""
        table, name, source_sha = source if source is not None else read_source(task, src)
        mlm, glove, stopwords = load_components(cfg, data_dir, mlm, glove, stopwords, coordinator)
        glove_fp = _glove_fp(cfg, glove)
        settings = output_settings(cfg, task, mlm, glove_fp, stopwords_fingerprint(stopwords), source_sha)
        return cls(cfg, task, table, name, ChunkStore(out, task), settings, mlm, glove, glove_fp, stopwords,
                   progress, coordinator)

    @property
    def chunk_starts(self) -> list[int]:
        return list(range(0, len(self.table.rows), self.cfg.chunk_size))

    def chunk_examples(self, chunk: int) -> int:
        return min(self.cfg.chunk_size, len(self.table.rows) - self.chunk_starts[chunk])

    def augmenter(self) -> Augmenter:
        """The masked LM, the word-vector neighbours (loaded here: fail before touching the output folder; none in
        MLM-only mode) and the sampling settings."""
        cfg = self.cfg
        glove = self.glove
        if glove is None and not cfg.mlm_only:
            glove = GloveNeighbours(load_glove(cfg.word_vectors, cfg.word_vectors_vocab_size,
                                               cfg.allow_gensim_download), cfg.top_k, fingerprint=self.glove_fp)
        return Augmenter.from_settings(cfg, self.mlm, glove, self.stopwords, self.task.name)


def generate(job: AugmentJob) -> Path:
    """Compute this process's missing chunks, then (rank 0) join them and write the manifest."""
    import torch

    started = time.time()
    augmenter = job.augmenter()
    cfg, coordinator, n = job.cfg, job.coordinator, len(job.table.rows)
    starts = job.chunk_starts
    key = {"settings_hash": settings_hash(job.settings), "chunk_size": cfg.chunk_size, "examples": n}
    done_before = sorted(job.store.start(key, len(starts))) if coordinator.is_main else []
    done_before = coordinator.broadcast(done_before)  # every process skips the same chunks
    mine = [i for i in range(len(starts)) if coordinator.owns(i) and i not in set(done_before)]
    resumed = sum(job.chunk_examples(i) for i in done_before)
    if resumed and coordinator.is_main:
        log.info("resuming %s augmentation: %d of %d examples already done", job.task.name, resumed, n)
    if coordinator.distributed and coordinator.is_main:
        log.info("aug: %d processes, this one (rank 0) computes %d of %d chunks", coordinator.world_size,
                 len(mine), len(starts))
    threads_before = torch.get_num_threads()
    if cfg.num_threads:
        torch.set_num_threads(cfg.num_threads)
    try:
        _compute_chunks(job, augmenter, mine)
    finally:
        torch.set_num_threads(threads_before)
    coordinator.barrier()  # every chunk written
    if coordinator.is_main:
        _join(job, key, threads_before, started, resumed)
    coordinator.barrier()  # the file and its manifest exist before any process returns
    return job.store.final


def _compute_chunks(job: AugmentJob, augmenter: Augmenter, chunks: list[int]) -> None:
    from tqdm.auto import tqdm

    cfg, n = job.cfg, len(job.table.rows)
    bar = tqdm(total=sum(job.chunk_examples(i) for i in chunks), unit="ex", desc=f"augment {job.task.name}",
               file=sys.stderr, disable=not (job.progress and job.coordinator.is_main))
    try:
        for i in chunks:
            s = job.chunk_starts[i]
            stats: Counter = Counter()
            tally = CandidateTally()
            t0 = time.perf_counter()
            rows = augment_rows(augmenter, job.table, s, min(s + cfg.chunk_size, n), cfg.seed, stats,
                                cfg.max_examples, tally=tally)
            record = {"counts": dict(stats), "seconds": round(time.perf_counter() - t0, 3), "tally": tally.to_json()}
            job.store.write(i, rows, record)
            bar.update(job.chunk_examples(i))
    finally:
        bar.close()


def _join(job: AugmentJob, key: Mapping[str, Any], threads_before: int, started: float, resumed: int) -> None:
    """Rank 0, once every chunk is written: join them into the output and write its manifest."""
    cfg, store, table = job.cfg, job.store, job.table
    n_chunks = len(job.chunk_starts)
    done = store.finished(n_chunks)
    if len(done) != n_chunks:
        missing = sorted(set(range(n_chunks)) - set(done))
        raise RuntimeError(f"aug: chunks {missing[:5]} of {store.partial} are missing after every process finished")
    rows_written = store.join(table, n_chunks)
    totals: Counter = Counter()
    tally = CandidateTally()
    for i in range(n_chunks):
        totals.update(done[i]["counts"])
        tally.merge(CandidateTally.from_json(done[i]["tally"]))
    quality = tally.stats(job.stopwords)
    log.info("aug %s: %s", job.task.name, summary_line(quality))
    store.finish({
        "format_version": FORMAT_VERSION,
        "task": job.task.name,
        "settings": job.settings,
        "settings_hash": key["settings_hash"],
        "seed": cfg.seed,
        "config": cfg.as_dict(),
        "mlm_model": getattr(job.mlm, "name", str(cfg.mlm_model)),
        "word_vectors": None if cfg.mlm_only else cfg.word_vectors if job.glove is None else "<preloaded>",
        "source": {"path": str(job.src), "sha256": job.settings["source_sha256"], "examples": len(table.rows)},
        "output": {"path": str(store.final), "rows": rows_written, "sha256": sha256_file(store.final)},
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
            "mode": cfg.mode, "batch_size": cfg.batch_size, "chunk_size": cfg.chunk_size, "device": cfg.device,
            "torch_threads": cfg.num_threads or threads_before, "processes": job.coordinator.world_size,
        },
    })


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
    job = AugmentJob.prepare(cfg, task, source_file(task, data_dir), data_dir, Path(out_dir), mlm, glove, stopwords,
                             progress, coordinator)
    with job.store.locked(coordinator):
        return generate(job)


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
    src = source_file(task, data_dir)
    if not cfg.enabled:
        return src
    if task.name in cfg.skip_tasks:
        log.warning(
            "aug: %s is in aug.skip_tasks (its labels do not survive word replacement); training on "
            "the original %s", task.name, src or f"{task.dataset} split {task.source('train')}",
        )
        return src
    job = AugmentJob.prepare(cfg, task, src, data_dir, aug_dir(artifacts_dir, task, cfg.output_dir), mlm_model,
                             glove, stopwords, progress, coordinator)
    return reuse_or_generate(job)


def reuse_or_generate(job: AugmentJob) -> Path:
    """The job's output: reused while up to date, else generated (resuming an interrupted generation)."""
    task, store, coordinator = job.task, job.store, job.coordinator
    main = coordinator.is_main
    # Rank 0 decides for every process, so that all of them generate or none does.
    if coordinator.broadcast(store.up_to_date(job.settings, job.table, warn=True) if main else None):
        if main:
            log.info("aug: up to date: %s", store.final)
            _log_quality(task.name, read_manifest(store.out) or {})
        return store.final
    with store.locked(coordinator):
        # another run may have just finished it
        if coordinator.broadcast(store.up_to_date(job.settings, job.table, warn=False) if main else None):
            return store.final
        if main:
            log.info("aug: generating %s", store.final)
        return generate(job)

