"""General-distillation corpus as a Lightning DataModule: prepared once, memory-mapped, batched.

Where the text comes from: :mod:`tinydistill.data.corpus_source` (a local file, a ``datasets`` corpus, streamed or
not). How it becomes instances: :mod:`tinydistill.data.corpus_build` (``instances="single"``: consecutive sentences
of one document packed into one ``[CLS] ... [SEP]`` segment, :func:`tinydistill.data.packing.pack_document`;
``instances="pairs"``: the reference's ``[CLS] A [SEP] B [SEP]`` pairs, :mod:`tinydistill.data.pairs`), in parallel
and cached under ``<cache_dir>/corpus/<key>``.

Under DDP, Lightning calls :meth:`CorpusDataModule.prepare_data` on one process per node (``prepare_per_node``,
default) or on one process in all (``prepare_per_node=False``, for a cache folder every node shares); every
process then memory-maps the same prepared files in :meth:`~CorpusDataModule.setup` and reads the instances its
share of the sampler's order names. A process that finds nothing prepared stops with one line instead of
preparing the corpus again.
"""

from __future__ import annotations

import logging
import os
from dataclasses import asdict
from pathlib import Path
from typing import Any

import datasets
import lightning as L
import numpy as np
import torch.distributed as dist
from datasets import Dataset
from torch import Tensor, nn
from torch.utils.data import DataLoader
from transformers import DataCollatorWithPadding, PreTrainedTokenizerBase

from tinydistill.data.corpus_build import INSTANCES, corpus_key, prepare_corpus
from tinydistill.data.corpus_source import CorpusSource
from tinydistill.data.loader import make_loader
from tinydistill.data.masking import UniformMasking
from tinydistill.data.pairs import PairOptions
from tinydistill.errors import ConfigError, DataError

log = logging.getLogger(__name__)


__all__ = ["CorpusDataModule", "CorpusSource"]


# ---------------------------------------------------------------------------------------------- DataModule


class CorpusDataModule(L.LightningDataModule):
    """Corpus instances, padded per batch; ``val_size`` instances held out for a validation loss.

    ``instances``: ``single`` segments or the reference's sentence ``pairs`` (``pairs`` options, drawn with
    ``seed``). ``mlm_probability > 0`` masks inputs BERT-style (80/10/10) for both teacher and student; the
    default 0 feeds unmasked text. ``with_mlm_labels`` keeps the masking's ``labels`` (original ids at masked
    positions, -100 elsewhere) for masked-LM training. Setting the ``masking`` attribute replaces the uniform
    masking by another module with the same interface (DistilBERT's smoothed masking, ``SmoothedMasking``).
    Masking runs in :meth:`on_after_batch_transfer`, in the training process and in step order, not in the collator:
    loader workers draw no random numbers, and the global random state a checkpoint saves is the one the next
    batch's masks come from. ``pad_to_max_length`` pads every batch to ``max_seq_length``, as the reference
    (``group_by_length`` then has nothing to save and is ignored). ``seed`` also draws each epoch's training order.
    ``num_proc`` processes prepare the instances (``None``: every core); ``prepare_per_node`` is Lightning's
    ``prepare_data_per_node``.
    """

    def __init__(
        self,
        source: CorpusSource,
        tokenizer: PreTrainedTokenizerBase,
        max_seq_length: int = 128,
        cache_dir: str | os.PathLike = "artifacts/cache",
        batch_size: int = 32,
        eval_batch_size: int = 64,
        val_size: int = 0,
        seed: int = 42,
        num_workers: int = 0,
        group_by_length: bool = False,
        mlm_probability: float = 0.0,
        with_mlm_labels: bool = False,
        pad_to_max_length: bool = False,
        instances: str = "single",
        pairs: PairOptions | None = None,
        num_proc: int | None = None,
        prepare_per_node: bool = True,
    ) -> None:
        super().__init__()
        self.prepare_data_per_node = prepare_per_node
        if instances not in INSTANCES:
            raise ConfigError(f"stage.instances={instances!r} must be one of {', '.join(INSTANCES)}")
        if val_size < 0:
            raise ConfigError(f"stage.val_size must be >= 0, got {val_size}")
        if not 0.0 <= mlm_probability < 1.0:
            raise ConfigError(f"stage.mlm_probability must be in [0, 1), got {mlm_probability}")
        self.source = source
        self.tokenizer = tokenizer
        self.max_seq_length = max_seq_length
        self.cache_dir = cache_dir
        self.batch_size = batch_size
        self.eval_batch_size = eval_batch_size
        self.val_size = val_size
        self.seed = seed
        self.num_workers = num_workers
        self.pad_to_max_length = pad_to_max_length
        self.group_by_length = group_by_length and not pad_to_max_length
        self.mlm_probability = mlm_probability
        self.with_mlm_labels = with_mlm_labels
        self.instances = instances
        self.pairs = pairs or PairOptions()
        self.num_proc = num_proc
        self._key: str | None = None
        self.train: Dataset | None = None
        self.val: Dataset | None = None
        # Instances never exceed max_seq_length, so rounding up to a multiple of it pads to exactly it.
        multiple = max_seq_length if pad_to_max_length else None
        self._pad = DataCollatorWithPadding(tokenizer, pad_to_multiple_of=multiple)
        self.masking: nn.Module | None = (
            UniformMasking.from_tokenizer(tokenizer, mlm_probability) if mlm_probability > 0 else None
        )

    @property
    def key(self) -> str:
        """The prepared instances' cache key (hashing the source: computed once per process)."""
        if self._key is None:
            self._key = corpus_key(self.source, self.tokenizer, self.max_seq_length, self.instances, self.pairs,
                                   self.seed)
        return self._key

    def prepare_data(self) -> None:
        """Build the cache that setup() then reads: on one process per node (or in all, see the class)."""
        prepare_corpus(self.source, self.tokenizer, self.max_seq_length, self.cache_dir, self.instances, self.pairs,
                       self.seed, self.num_proc, key=self.key)

    def setup(self, stage: str | None = None) -> None:
        if self.train is not None:
            return
        distributed = dist.is_available() and dist.is_initialized() and dist.get_world_size() > 1
        if distributed:  # rank 0's key: no other process hashes the corpus file or loads a hub corpus to find it
            key = [self.key if dist.get_rank() == 0 else None]
            dist.broadcast_object_list(key, src=0)
            self._key = key[0]
        path = Path(self.cache_dir) / "corpus" / self.key
        if not path.is_dir():
            if distributed:
                raise DataError(
                    f"rank {dist.get_rank()}: the prepared corpus {path} is missing: prepare_data ran on another "
                    f"node (stage.prepare.per_node=false needs a paths.cache_dir every node shares)")
            self.prepare_data()  # used without a Trainer (prepare_data not called)
        ds = datasets.load_from_disk(str(path))
        n_val = min(self.val_size, len(ds) - 1)
        order = np.random.default_rng(self.seed).permutation(len(ds))
        # Index mappings only (8 bytes an instance): the rows stay memory-mapped.
        self.val = ds.select(np.sort(order[:n_val]), keep_in_memory=True) if n_val > 0 else None
        self.train = ds.select(np.sort(order[n_val:]), keep_in_memory=True) if n_val > 0 else ds
        log.info("corpus: %d training instances, %d held out", len(self.train), n_val)

    def collate(self, rows: list[dict]) -> dict:
        """Pad ``input_ids`` (and pairs' ``token_type_ids``) to the batch's longest or to ``max_seq_length``
        (``attention_mask`` follows). No random numbers here: masking comes after the transfer."""
        keys = ("input_ids", "token_type_ids") if self.instances == "pairs" else ("input_ids",)
        rows = [{k: r[k] for k in keys} for r in rows]
        return dict(self._pad(rows))

    def on_after_batch_transfer(self, batch: dict[str, Tensor], dataloader_idx: int) -> dict[str, Tensor]:
        """Mask the batch (training and held-out) if this corpus is masked, on the batch's device."""
        if self.masking is None:
            return batch
        batch = self.masking.to(batch["input_ids"].device)(batch)
        if not self.with_mlm_labels:  # distillation matches states, it has no MLM target
            batch.pop("labels", None)
        return batch

    def _loader(self, ds: Dataset, batch_size: int, shuffle: bool) -> DataLoader:
        # Under DDP the training order is cut into this process's share here, not by Lightning's sampler wrapper
        # (the corpus stages' Trainer has use_distributed_sampler=False); held-out batches run whole on each process.
        world = dist.get_world_size() if shuffle and dist.is_available() and dist.is_initialized() else 1
        return make_loader(ds, batch_size, shuffle, self.collate, self.num_workers, self.group_by_length, self.seed,
                           num_replicas=world, rank=dist.get_rank() if world > 1 else 0)

    def train_dataloader(self) -> DataLoader:
        return self._loader(self.train, self.batch_size, shuffle=True)

    def val_dataloader(self) -> list[DataLoader]:
        return [] if self.val is None else [self._loader(self.val, self.eval_batch_size, shuffle=False)]

    def summary(self) -> dict[str, Any]:
        return {
            "source": asdict(self.source),
            "max_seq_length": self.max_seq_length,
            "pad_to_max_length": self.pad_to_max_length,
            "instances": self.instances,
            **({"pairs": asdict(self.pairs)} if self.instances == "pairs" else {}),
            "train_instances": None if self.train is None else len(self.train),
            "val_instances": 0 if self.val is None else len(self.val),
            "mlm_probability": self.mlm_probability,
        }
