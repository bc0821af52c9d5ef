"""Settings of the augmentation (the `aug` config group), validated into a dataclass."""

from __future__ import annotations

import logging
import sys
from collections.abc import Callable
from dataclasses import asdict, dataclass, field, fields
from typing import Any, Mapping

from data_aug.words import STOPWORD_LISTS, WORD_RULES, is_stopword_file
from tinydistill.errors import ConfigError, TinyDistillError

MODES = ("batched", "sequential")
# Options renamed since (an old key gets a one-line error saying the new name).
RENAMED = {"glove": "word_vectors", "glove_vocab_size": "word_vectors_vocab_size"}
DTYPES = ("float32", "bfloat16")


@dataclass(frozen=True)
class AugConfig:
    """Every number of TinyBERT's augmentation; defaults are the paper's / reference code's.

    See conf/aug/on.yaml for what each field means.
    """

    enabled: bool = True
    mlm_model: str = "bert-base-uncased"
    word_vectors: str = "glove-wiki-gigaword-300"
    word_vectors_vocab_size: int | None = 100_000
    mlm_only: bool = False
    words: str = "reference"
    top_k: int = 15
    n_aug: int = 20
    n_aug_per_task: dict[str, int] = field(default_factory=dict)
    p_replace: float = 0.4
    alphabetic_only: bool = False
    stopwords: str = "nltk"
    seed: int = 42
    mode: str = "batched"
    batch_size: int = 64
    max_seq_length: int | None = None
    dtype: str = "float32"
    device: str = "cpu"
    num_threads: int | None = None
    chunk_size: int = 128
    skip_tasks: tuple[str, ...] = ("stsb",)
    max_examples: int | None = None
    nltk_data: str | None = None
    allow_untrained_head: bool = False
    allow_gensim_download: bool = False
    output_dir: str | None = None

    @classmethod
    def from_cfg(cls, cfg: "AugConfig | Mapping[str, Any] | None") -> "AugConfig":
        """Build from the `aug` node of a Hydra config (DictConfig), a dict, or an AugConfig.

        Raises ConfigError naming the option (`aug.<key>`) for an unknown key or a bad value.
        """
        if cfg is None:
            return cls()
        if isinstance(cfg, AugConfig):
            cfg.validate()
            return cfg
        try:  # DictConfig -> plain dict, interpolations resolved
            from omegaconf import DictConfig, OmegaConf

            if isinstance(cfg, DictConfig):
                cfg = OmegaConf.to_container(cfg, resolve=True)
        except ImportError:  # pragma: no cover - omegaconf comes with hydra
            pass
        if not isinstance(cfg, Mapping):
            raise ConfigError(f"aug: expected a mapping of options, got {type(cfg).__name__}")
        known = {f.name for f in fields(cls)}
        for old, new in RENAMED.items():
            if old in cfg:
                raise ConfigError(f"aug.{old}: renamed to aug.{new} (GloVe, fastText .vec or word2vec files)")
        unknown = sorted(set(cfg) - known)
        if unknown:
            raise ConfigError(
                f"aug.{unknown[0]}: unknown option (known options: {', '.join(sorted(known))})"
            )
        kwargs = dict(cfg)
        if "skip_tasks" in kwargs:
            st = kwargs["skip_tasks"]
            if st is None:
                st = ()
            if isinstance(st, str) or not isinstance(st, (list, tuple)):
                raise ConfigError(f"aug.skip_tasks: expected a list of task names, got {st!r}")
            kwargs["skip_tasks"] = tuple(str(t).lower() for t in st)
        if "n_aug_per_task" in kwargs:
            kwargs["n_aug_per_task"] = _per_task(kwargs["n_aug_per_task"])
        for key in ("mlm_model", "word_vectors", "nltk_data"):
            if kwargs.get(key) is not None:
                kwargs[key] = str(kwargs[key])
        out = cls(**kwargs)
        out.validate()
        return out

    def validate(self) -> None:
        def bad(key: str, why: str) -> ConfigError:
            return ConfigError(f"aug.{key}={getattr(self, key)!r}: {why}")

        def is_int(v: Any) -> bool:
            return isinstance(v, int) and not isinstance(v, bool)

        if not isinstance(self.enabled, bool):
            raise bad("enabled", "expected true or false")
        for key in ("top_k", "n_aug", "batch_size", "chunk_size"):
            v = getattr(self, key)
            if not is_int(v) or v < 1:
                raise bad(key, "expected a positive integer")
        if not is_int(self.seed):
            raise bad("seed", "expected an integer")
        for key in ("word_vectors_vocab_size", "max_seq_length", "num_threads", "max_examples"):
            v = getattr(self, key)
            if v is not None and (not is_int(v) or v < 1):
                raise bad(key, "expected a positive integer or null")
        if self.max_seq_length is not None and self.max_seq_length < 8:
            raise bad("max_seq_length", "too short for [CLS] masked [SEP] original [SEP]")
        if isinstance(self.p_replace, bool) or not isinstance(self.p_replace, (int, float)) or not (
            0.0 <= float(self.p_replace) <= 1.0
        ):
            raise bad("p_replace", "expected a probability between 0 and 1")
        if self.mode not in MODES:
            raise bad("mode", f"expected one of {list(MODES)}")
        if self.dtype not in DTYPES:
            raise bad("dtype", f"expected one of {list(DTYPES)}")
        if not isinstance(self.mlm_model, str) or not self.mlm_model:
            raise bad("mlm_model", "expected a Hugging Face masked-LM name or a local folder")
        if not isinstance(self.word_vectors, str) or not self.word_vectors:
            raise bad("word_vectors", "expected a GloVe or fastText (.vec) file, or a gensim-data name")
        if not isinstance(self.mlm_only, bool):
            raise bad("mlm_only", "expected true or false")
        if self.words not in WORD_RULES:
            raise bad("words", f"expected one of {list(WORD_RULES)}")
        if not isinstance(self.device, str) or not (
            self.device == "cpu" or self.device.startswith(("cuda", "mps"))
        ):
            raise bad("device", "expected cpu, cuda, cuda:N or mps")
        if not isinstance(self.alphabetic_only, bool):
            raise bad("alphabetic_only", "expected true or false")
        if not isinstance(self.allow_untrained_head, bool):
            raise bad("allow_untrained_head", "expected true or false")
        if not isinstance(self.allow_gensim_download, bool):
            raise bad("allow_gensim_download", "expected true or false")
        if self.stopwords not in STOPWORD_LISTS and not is_stopword_file(self.stopwords):
            raise bad("stopwords", f"expected one of {list(STOPWORD_LISTS)} or a file of stop words (one a line)")
        if not isinstance(self.n_aug_per_task, Mapping) or any(
            not is_int(v) or v < 1 for v in self.n_aug_per_task.values()
        ):
            raise bad("n_aug_per_task", "expected a mapping of task name to a positive integer")
        if _per_task(self.n_aug_per_task) != dict(self.n_aug_per_task):  # n_aug_for looks names up as given
            raise bad("n_aug_per_task", "expected lower-case task names (mrpc, sst2, ...)")

    def n_aug_for(self, task_name: str) -> int:
        """N_a for a task: its `n_aug_per_task` entry, else `n_aug`."""
        return self.n_aug_per_task.get(task_name, self.n_aug)

    def as_dict(self) -> dict[str, Any]:
        d = asdict(self)
        d["skip_tasks"] = list(self.skip_tasks)
        return d


def _per_task(value: Any) -> dict[str, int]:
    """`aug.n_aug_per_task` with canonical (lower-case) task names, each checked."""
    from tinydistill.data.tasks import get_task

    if value is None:
        return {}
    if not isinstance(value, Mapping):
        raise ConfigError(f"aug.n_aug_per_task={value!r}: expected a mapping of task name to N_a")
    try:
        return {get_task(str(k)).name: v for k, v in value.items()}
    except ConfigError as e:
        raise ConfigError(f"aug.n_aug_per_task: {e}") from None


def run_cli(run: Callable[[Any], object], cfg: Any) -> None:
    """Body of a `python -m data_aug...` command: progress logged, gensim quiet, and a bad input (data, config,
    paths) reported as one line on stderr with exit code 2 instead of a traceback."""
    logging.getLogger("data_aug").setLevel(logging.INFO)
    logging.getLogger("gensim").setLevel(logging.WARNING)
    try:
        run(cfg)
    except TinyDistillError as e:
        print(f"error: {e}", file=sys.stderr)
        sys.exit(2)
