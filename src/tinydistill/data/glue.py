"""A task's examples (GLUE: local TSV or the hub; a user's task: its files, tinydistill.data.files) and the
LightningDataModule that tokenises and batches them."""

from __future__ import annotations

import hashlib
import logging
import os
import shutil
import weakref
from pathlib import Path

import datasets
import lightning as L
from datasets import Dataset
from torch.utils.data import DataLoader
from transformers import DataCollatorWithPadding, PreTrainedTokenizerBase

from tinydistill.atomic import atomic_directory
from tinydistill.data import files
from tinydistill.data.glue_tsv import glue_file, read_glue_tsv, table_to_examples
from tinydistill.data.loader import make_loader
from tinydistill.data.tasks import TUNE_SPLIT, UNLABELED_REST, UNLABELLED_SPLIT, Task, get_task
from tinydistill.data.two_tokenizers import TwoEncodingCollator, with_teacher_encoding
from tinydistill.data.unlabeled import UnlabeledMix, sentinel_label, unlabeled_examples
from tinydistill.errors import ConfigError, DataError
from tinydistill.hashing import sha256_file

log = logging.getLogger(__name__)

HUB_DATASET = "nyu-mll/glue"
# Bump when tokenisation or the cached columns change, so old caches are not reused.
CACHE_VERSION = 1


def hub_split(task: Task, split: str) -> str:
    """Our split name (train, dev, dev_matched, ...) to the hub's (train, validation, ...)."""
    if split == "train":
        return "train"
    if split == "test":
        return "test"
    return task.hub_dev_splits[task.dev_splits.index(split)]


def load_examples(
    task: Task, split: str, data_dir: str | os.PathLike | None, file: str | os.PathLike | None = None
) -> Dataset:
    """Examples with columns `text_a`, (`text_b`), `label`.

    From `file` if given (e.g. an augmented train set), else `<data_dir>/glue/<Task>/<split>.tsv`,
    else (data_dir is None) the Hugging Face hub. A user's task reads its own files (or `datasets` name).
    With `task.tune_split` set, `train` (from the task's own training data) is its rows minus the held-out ones and
    `tune` those rows; with `task.train_rows`, `train` is only that many of the rows left (`Task.split_rows`). An
    augmented `file` is made from the training rows only. `unlabelled`: `task.unlabeled`'s rows, every label
    `sentinel_label` (`rest`: the training rows train_rows leaves out; `file`: those rows augmented instead).
    """
    if split == UNLABELLED_SPLIT:
        return _unlabeled(task, data_dir, file)
    if _splits_training_rows(task, split, data_dir, file):
        rows = _load_examples(task, "train", data_dir, None)
        return rows.select(task.split_rows(split, len(rows)))
    return _load_examples(task, split, data_dir, file)


def _unlabeled(task: Task, data_dir: str | os.PathLike | None, file: str | os.PathLike | None = None) -> Dataset:
    if task.unlabeled is None:
        raise ConfigError(f"task {task.name}: no unlabelled rows (task.unlabeled is null)")
    if file is not None or task.unlabeled != UNLABELED_REST:
        return unlabeled_examples(task, None if file is None else str(file))
    rows = _load_examples(task, "train", data_dir, None)
    rows = rows.select(task.split_rows(UNLABELLED_SPLIT, len(rows)))
    if len(rows) == 0:
        raise DataError(f"task.unlabeled=rest: task.train_rows={task.train_rows} leaves no training row of "
                        f"{task.name} unlabelled")
    label = sentinel_label(task)
    kind = datasets.Value("float64" if isinstance(label, float) else "int64")
    return rows.map(lambda _: {"label": label}, features=datasets.Features({**rows.features, "label": kind}))


def _splits_training_rows(task: Task, split: str, data_dir, file) -> bool:
    """Whether `split` is cut out of the task's training rows by `task.tune_split` or `task.train_rows`: train or
    tune, read from the task's own training data (not from another file, e.g. an augmented one)."""
    if not task.splits_training_rows or split not in ("train", TUNE_SPLIT):
        return False
    if file is None:
        return True
    try:  # the task's training file passed as `file` (e.g. aug.skip_tasks hands it back)
        return Path(file).expanduser().resolve() == files.task_file(task, "train", data_dir).expanduser().resolve()
    except ConfigError:  # no training file (hub): `file` is another one
        return False


def _load_examples(
    task: Task, split: str, data_dir: str | os.PathLike | None, file: str | os.PathLike | None = None
) -> Dataset:
    if not task.is_glue:
        return files.examples(task, split, file)
    if file is None and data_dir is not None:
        file = glue_file(data_dir, task, split)
    if file is not None:
        return Dataset.from_dict(table_to_examples(read_glue_tsv(file, task), task))  # raises on a file without rows
    ds = _load_hub_examples(task, split)
    if len(ds) == 0:
        raise DataError(f"hub dataset {HUB_DATASET}/{task.hub_config} split {hub_split(task, split)}: no examples")
    return ds


def _load_hub_examples(task: Task, split: str) -> Dataset:
    ds = datasets.load_dataset(HUB_DATASET, task.hub_config, split=hub_split(task, split))
    columns = {task.hub_text_a: "text_a"}
    if task.hub_text_b is not None:
        columns[task.hub_text_b] = "text_b"
    keep = [*columns, "label"]
    ds = ds.remove_columns([c for c in ds.column_names if c not in keep]).rename_columns(columns)
    return remap_hub_labels(ds, task)


def remap_hub_labels(ds: Dataset, task: Task) -> Dataset:
    """Re-number hub label ids into our label order, matching by label *name*.

    The hub's MNLI ClassLabel is (entailment, neutral, contradiction); the reference code and
    this registry use (contradiction, entailment, neutral). Test splits (label -1) stay -1.
    """
    if task.label_names is None:
        return ds
    hub_names = ds.features["label"].names
    missing = [n for n in hub_names if n not in task.label_names]
    if missing:
        raise DataError(f"hub labels {missing} of {HUB_DATASET}/{task.hub_config} are not in {task.label_names}")
    remap = [task.label_names.index(n) for n in hub_names]
    # Plain ints from here on: the hub's ClassLabel names would now describe the wrong ids.
    ds = ds.cast_column("label", datasets.Value("int64"))
    if remap == list(range(len(remap))):
        return ds
    return ds.map(lambda ex: {"label": remap[ex["label"]] if ex["label"] >= 0 else -1})


def _source_fingerprint(task: Task, split: str, data_dir, file) -> str:
    if not task.is_glue:
        if file is None and task.dataset is not None:
            return f"hub:{task.dataset}/{task.dataset_config}/{task.source(split)}"
        file = file if file is not None else files.task_file(task, split, data_dir)
    elif file is None and data_dir is not None:
        file = glue_file(data_dir, task, split)
    if file is None:
        return f"hub:{HUB_DATASET}/{task.hub_config}/{hub_split(task, split)}"
    path = Path(file)
    if not path.is_file():
        return f"missing:{path}"  # load_examples raises the proper DataError
    return f"file:{sha256_file(path)}"


#: Each tokenizer object's fingerprint, with the settings it was computed under (see tokenizer_fingerprint).
_FINGERPRINTS: weakref.WeakKeyDictionary[PreTrainedTokenizerBase, tuple[tuple, str]] = weakref.WeakKeyDictionary()


def tokenizer_fingerprint(tokenizer: PreTrainedTokenizerBase) -> str:
    """datasets' hash of the tokenizer (vocabulary, settings, class), computed once per tokenizer object: it pickles
    the whole vocabulary (about a second), and a stage asks for it for every split, in prepare_data and setup. It is
    computed again if tokens were added or a setting that changes the encoding was set since."""
    settings = (len(tokenizer), tokenizer.padding_side, tokenizer.truncation_side, tokenizer.model_max_length)
    known = _FINGERPRINTS.get(tokenizer)
    if known is None or known[0] != settings:
        known = (settings, datasets.fingerprint.Hasher.hash(tokenizer))
        _FINGERPRINTS[tokenizer] = known
    return known[1]


def _cache_key(task: Task, split: str, tokenizer: PreTrainedTokenizerBase, max_seq_length: int,
               data_dir: str | os.PathLike | None, file: str | os.PathLike | None) -> str:
    """What a tokenised split depends on: its source's content, the tokenizer and length; a user's task also how its
    file is read; a split of the training rows (task.tune_split, task.train_rows) which rows it holds."""
    if split == UNLABELLED_SPLIT:
        return _unlabeled_key(task, tokenizer, max_seq_length, data_dir, file)
    tune = _splits_training_rows(task, split, data_dir, file)
    parts = [
        str(CACHE_VERSION),
        task.name,
        _source_fingerprint(task, "train" if tune else split, data_dir, None if tune else file),
        tokenizer_fingerprint(tokenizer),
        str(max_seq_length),
    ]
    if not task.is_glue:  # GLUE keeps its keys, so existing caches stay valid
        parts.append(task.fingerprint())
    if tune:  # which training rows the split holds (train_rows only when set: older keys stay valid)
        parts.append(f"tune_split={task.tune_split},tune_seed={task.tune_seed},split={split}")
        if task.train_rows is not None and split == "train":
            parts.append(f"train_rows={task.train_rows}")
    return hashlib.sha256("|".join(parts).encode()).hexdigest()[:16]


def _unlabeled_key(task: Task, tokenizer: PreTrainedTokenizerBase, max_seq_length: int,
                   data_dir: str | os.PathLike | None, file: str | os.PathLike | None = None) -> str:
    """The unlabelled split's key: the training rows it is (`rest`) or its file's content (a `datasets` name: the
    name; augmented rows: their file's content), how its texts are read, the tokenizer and length."""
    source = task.unlabeled
    if file is not None:
        source = f"augmented:{sha256_file(Path(file))}"
    elif source == UNLABELED_REST:
        source = (f"rest:{_source_fingerprint(task, 'train', data_dir, None)},tune_split={task.tune_split},"
                  f"tune_seed={task.tune_seed},train_rows={task.train_rows}")
    elif Path(source).expanduser().is_file():
        source = f"file:{sha256_file(Path(source).expanduser())}"
    parts = [str(CACHE_VERSION), task.name, UNLABELLED_SPLIT, source, tokenizer_fingerprint(tokenizer),
             str(max_seq_length), task.fingerprint()]
    return hashlib.sha256("|".join(parts).encode()).hexdigest()[:16]


def tokenized_split(
    task: Task,
    split: str,
    tokenizer: PreTrainedTokenizerBase,
    max_seq_length: int,
    data_dir: str | os.PathLike | None,
    cache_dir: str | os.PathLike,
    file: str | os.PathLike | None = None,
    write_cache: bool = True,
) -> Dataset:
    """Tokenised split, cached on disk and keyed by source content, tokenizer and length (a user's task: also how
    its file is read, `Task.fingerprint`, so a changed column or class list tokenises again).

    `write_cache=False` reads an existing cache but keeps a new tokenisation in memory (the teacher checks run
    before a run may write anything)."""
    key = _cache_key(task, split, tokenizer, max_seq_length, data_dir, file)
    cache = Path(cache_dir) / ("glue" if task.is_glue else "tasks") / task.name / f"{split}-{key}"
    if cache.is_dir():
        cached = _load_cache(cache)
        if cached is not None:
            return cached
    examples = load_examples(task, split, data_dir, file)
    pair = "text_b" in examples.column_names

    def tokenize(batch: dict) -> dict:
        # longest_first truncates the longer of the two texts first, as the reference's
        # _truncate_seq_pair does.
        enc = tokenizer(
            batch["text_a"],
            batch["text_b"] if pair else None,
            truncation=True,
            max_length=max_seq_length,
        )
        if "label" in batch:
            enc["labels"] = batch["label"]
        return enc

    tokenized = examples.map(
        tokenize,
        batched=True,
        remove_columns=examples.column_names,
        desc=f"Tokenising {task.name}/{split}",
    )
    if len(tokenized) == 0:  # load_examples refuses empty splits; never cache one (it would fail every rerun)
        raise DataError(f"{task.name}/{split}: no examples to tokenise")
    if not write_cache:
        return tokenized
    atomic_directory(cache, lambda tmp: tokenized.save_to_disk(str(tmp)))
    return datasets.load_from_disk(str(cache))


def _load_cache(cache: Path) -> Dataset | None:
    """The cached split, or None (after removing it, with a warning) if it is empty or unreadable, e.g. the 0-row
    caches earlier versions wrote for header-only files: rebuilt from the source instead of failing every rerun."""
    try:
        ds = datasets.load_from_disk(str(cache))
        problem = "has no rows" if len(ds) == 0 else None
    except Exception as e:  # whatever broke it, a rebuilt cache replaces it
        ds, problem = None, f"is unreadable ({type(e).__name__}: {e})"
    if problem is None:
        return ds
    log.warning("tokenised cache %s %s: removing it and tokenising again", cache, problem)
    shutil.rmtree(cache, ignore_errors=True)
    return None


class TaskDataModule(L.LightningDataModule):
    """Tokenised batches of one task (a GLUE name, or any `Task`), padded to the batch's longest example or, with `pad_to_max_length`,
    to `max_seq_length` as the reference (`group_by_length` is then ignored: every batch has the same length).

    `train_file` replaces the training split's file (used for augmented training sets).
    `with_index` adds an `idx` column (example position) to training batches, so per-example
    values computed once (cached teacher logits) can be looked up.
    `seed` draws the training order of every epoch (`tinydistill.data.sampler.SeededSampler`); with `fixed_batches`
    set (an attribute, so one DataModule can serve a phase with it and one without) every epoch reuses the first
    epoch's batches in a new order.
    Validation uses every dev split of the task (MNLI: matched, then mismatched), after the tune split when
    `task.tune_split` is set (`Task.val_splits`: the first is the one checkpoints are selected on).
    `teacher_tokenizer` (a teacher with another tokenizer than the student's): training rows also carry its encoding
    (`data.two_tokenizers`); `teacher_view` gives it alone. `unlabeled` (`task.unlabeled`): the training split is
    the labelled (or augmented) rows, then the unlabelled rows it chooses (label `sentinel_label`), or all of
    `unlabeled_file`'s (rows chosen and augmented beforehand, `data_aug.ensure_augmented_rows`)."""

    def __init__(
        self,
        task: str | Task,
        tokenizer: PreTrainedTokenizerBase,
        max_seq_length: int,
        data_dir: str | None,
        cache_dir: str,
        batch_size: int = 32,
        eval_batch_size: int = 64,
        num_workers: int = 0,
        train_file: str | None = None,
        group_by_length: bool = False,
        with_index: bool = False,
        pad_to_max_length: bool = False,
        seed: int = 0,
        teacher_tokenizer: PreTrainedTokenizerBase | None = None,
        unlabeled: UnlabeledMix | None = None,
        unlabeled_file: str | None = None,
    ) -> None:
        super().__init__()
        self.unlabeled = unlabeled
        self.unlabeled_file = unlabeled_file
        self.labelled_rows: int | None = None  # the training split's labelled rows, the first ones (with unlabeled)
        self.task = get_task(task) if isinstance(task, str) else task
        self.seed = seed
        self.tokenizer = tokenizer
        self.max_seq_length = max_seq_length
        self.data_dir = data_dir
        self.cache_dir = cache_dir
        self.batch_size = batch_size
        self.eval_batch_size = eval_batch_size
        self.num_workers = num_workers
        self.train_file = train_file
        self.pad_to_max_length = pad_to_max_length
        self.group_by_length = group_by_length and not pad_to_max_length
        self.with_index = with_index
        self.fixed_batches = False
        # Examples are truncated to max_seq_length, so rounding up to a multiple of it pads to exactly it.
        multiple = max_seq_length if pad_to_max_length else None
        self.collator = DataCollatorWithPadding(tokenizer, pad_to_multiple_of=multiple)
        self.teacher_tokenizer = teacher_tokenizer
        if teacher_tokenizer is not None:
            self.collator = TwoEncodingCollator(
                self.collator, DataCollatorWithPadding(teacher_tokenizer, pad_to_multiple_of=multiple))
        self.splits: dict[str, Dataset] = {}

    @property
    def dev_splits(self) -> tuple[str, ...]:
        return self.task.dev_splits

    def _train_split(self, tokenizer: PreTrainedTokenizerBase | None = None) -> Dataset:
        """The training split as `tokenizer` (default: the student's) encodes it: the labelled rows, then the
        unlabelled rows `self.unlabeled` chooses (the same rows for either encoding)."""
        train = self._split("train", tokenizer)
        if self.unlabeled is None:
            return train
        pool = self._split(UNLABELLED_SPLIT, tokenizer)
        rows = list(range(len(pool))) if self.unlabeled_file else self.unlabeled.rows(len(train), len(pool))
        if tokenizer is None:
            self.labelled_rows = len(train)
            log.info("training set of %s: %d labelled rows, %d of %d unlabelled", self.task.name, len(train),
                     len(rows), len(pool))
        return datasets.concatenate_datasets([train, pool.select(rows)]) if rows else train

    def _split(self, split: str, tokenizer: PreTrainedTokenizerBase | None = None) -> Dataset:
        file = {"train": self.train_file, UNLABELLED_SPLIT: self.unlabeled_file}.get(split)
        return tokenized_split(
            self.task, split, tokenizer or self.tokenizer, self.max_seq_length, self.data_dir, self.cache_dir, file
        )

    def teacher_view(self) -> tuple[Dataset, PreTrainedTokenizerBase]:
        """The training rows as the teacher reads them, and its tokenizer (the teacher-logit cache keys on this
        encoding): the teacher's own encoding when its tokenizer differs, else the training split itself."""
        if self.teacher_tokenizer is None:
            return self.splits["train"], self.tokenizer
        return self._train_split(self.teacher_tokenizer), self.teacher_tokenizer

    def prepare_data(self) -> None:
        # Runs on one process only: builds the on-disk caches that setup() then reads.
        for split in ("train", *self.task.val_splits):
            self._split(split)
        if self.teacher_tokenizer is not None:
            self._split("train", self.teacher_tokenizer)
        if self.unlabeled is not None:
            self._split(UNLABELLED_SPLIT)
            if self.teacher_tokenizer is not None:
                self._split(UNLABELLED_SPLIT, self.teacher_tokenizer)

    def setup(self, stage: str | None = None) -> None:
        for split in ("train", *self.task.val_splits):
            if split not in self.splits:
                ds = self._train_split() if split == "train" else self._split(split)
                if split == "train" and self.with_index:
                    ds = ds.add_column("idx", list(range(len(ds))))
                if split == "train" and self.teacher_tokenizer is not None:
                    ds = with_teacher_encoding(ds, self.teacher_view()[0])
                self.splits[split] = ds
        if len(self.splits["train"]) == 0:
            raise DataError(f"task {self.task.name}: the training split is empty")

    def _loader(self, ds: Dataset, batch_size: int, shuffle: bool) -> DataLoader:
        return make_loader(ds, batch_size, shuffle, self.collator, self.num_workers, self.group_by_length, self.seed,
                           fixed_batches=self.fixed_batches and shuffle)

    def train_dataloader(self) -> DataLoader:
        return self._loader(self.splits["train"], self.batch_size, shuffle=True)

    def val_dataloader(self) -> list[DataLoader]:
        return [self._loader(self.splits[s], self.eval_batch_size, shuffle=False) for s in self.task.val_splits]
