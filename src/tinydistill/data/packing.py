"""Packing a corpus's tokenised sentences into ``single`` training instances: consecutive sentences of one document
(:func:`pack_document`). The reference's sentence ``pairs`` are drawn in :mod:`tinydistill.data.pairs`."""

from __future__ import annotations

import os
from collections.abc import Sequence

from datasets import Dataset
from transformers import PreTrainedTokenizerBase

from tinydistill.errors import ConfigError


def special_tokens(tokenizer: PreTrainedTokenizerBase) -> tuple[list[int], list[int]]:
    """The ids the tokenizer puts before and after a single segment (BERT: ``[CLS]`` and ``[SEP]``)."""
    probe = "hello world"
    content = tokenizer(probe, add_special_tokens=False)["input_ids"]
    full = tokenizer(probe, add_special_tokens=True)["input_ids"]
    for i in range(len(full) - len(content) + 1):
        if full[i : i + len(content)] == content:
            return list(full[:i]), list(full[i + len(content) :])
    raise ConfigError(f"cannot locate the special tokens of {type(tokenizer).__name__} around a single segment")


def pack_spans(lengths: Sequence[int], budget: int) -> list[list[tuple[int, int, int]]]:
    """How `pack_document` packs sentences of these token `lengths`: per instance, its (sentence, start, end) token
    spans. Greedy, in order: a sentence joins the current instance if it fits, else starts a new one; a sentence
    longer than ``budget`` is cut into ``budget``-sized pieces (the last piece may be continued by the next
    sentence); empty sentences are skipped."""
    out: list[list[tuple[int, int, int]]] = []
    cur: list[tuple[int, int, int]] = []
    used = 0
    for i, n in enumerate(lengths):
        if n == 0:
            continue
        if cur and used + n > budget:
            out.append(cur)
            cur, used = [], 0
        start = 0
        while n - start > budget:  # only when cur is empty
            out.append([(i, start, start + budget)])
            start += budget
        cur.append((i, start, n))
        used += n - start
    if cur:
        out.append(cur)
    return out


def pack_document(
    sentences: Sequence[Sequence[int]], budget: int, prefix: Sequence[int] = (), suffix: Sequence[int] = ()
) -> list[list[int]]:
    """Pack one document's tokenised sentences into instances of at most ``budget`` content tokens (`pack_spans`);
    each instance is ``prefix + content + suffix``."""
    if budget < 1:
        raise ConfigError(f"max_seq_length leaves no room for text after {len(prefix) + len(suffix)} special tokens")
    spans = pack_spans([len(s) for s in sentences], budget)
    return [[*prefix, *(t for s, a, e in inst for t in sentences[s][a:e]), *suffix] for inst in spans]


def tokenize_documents(documents: Sequence[Sequence[str]],
                       tokenizer: PreTrainedTokenizerBase) -> list[list[list[int]]]:
    """Each document's sentences as token ids (no special tokens), all sentences in one tokenizer call."""
    flat = [s for doc in documents for s in doc]
    ids = tokenizer(flat, add_special_tokens=False)["input_ids"] if flat else []
    out, i = [], 0
    for doc in documents:
        out.append(ids[i : i + len(doc)])
        i += len(doc)
    return out


def _pack_batch(batch: dict, tokenizer: PreTrainedTokenizerBase, budget: int, prefix: list[int],
                suffix: list[int]) -> dict:
    instances = [inst for doc in tokenize_documents(batch["sentences"], tokenizer)
                 for inst in pack_document(doc, budget, prefix, suffix)]
    return {"input_ids": instances, "length": [len(x) for x in instances]}


def pack_corpus(
    documents: Dataset | list[list[str]],
    tokenizer: PreTrainedTokenizerBase,
    max_seq_length: int,
    desc: str = "corpus",
    num_proc: int = 1,
    cache_file: str | os.PathLike | None = None,
    fingerprint: str | None = None,
) -> Dataset:
    """Tokenise documents (a Dataset with column ``sentences``, or lists of sentences) once and pack them: a
    Dataset with columns ``input_ids``, ``length``. ``num_proc`` processes pack contiguous shards of the documents,
    so the instances are the same for any count; ``cache_file`` (and its ``fingerprint``) writes them to disk
    instead of memory, and reuses the shards a stopped run finished."""
    prefix, suffix = special_tokens(tokenizer)
    budget = max_seq_length - len(prefix) - len(suffix)
    if budget < 1:
        raise ConfigError(f"max_seq_length={max_seq_length} leaves no room for text after the special tokens")
    docs = documents if isinstance(documents, Dataset) else Dataset.from_dict({"sentences": documents})
    return docs.map(
        _pack_batch, remove_columns=["sentences"],
        fn_kwargs={"tokenizer": tokenizer, "budget": budget, "prefix": prefix, "suffix": suffix},
        **map_options(num_proc, cache_file, fingerprint, f"Tokenising and packing {desc}"),
    )


def map_options(num_proc: int, cache_file: str | os.PathLike | None, fingerprint: str | None, desc: str) -> dict:
    """`Dataset.map` settings of the corpus steps: batches of 64 documents, `num_proc` processes over contiguous
    shards (none for 1), written to `cache_file` (memory otherwise) under `fingerprint`."""
    return {"batched": True, "batch_size": 64, "num_proc": num_proc if num_proc > 1 else None,
            "cache_file_name": None if cache_file is None else str(cache_file), "new_fingerprint": fingerprint,
            "desc": desc}
