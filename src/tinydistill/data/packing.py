"""Packing a corpus's tokenised sentences into training instances: ``single`` segments (consecutive sentences of one
document, :func:`pack_document`) or the reference's sentence ``pairs`` (:mod:`tinydistill.data.pairs`)."""

from __future__ import annotations

import logging
from collections.abc import Sequence

from datasets import Dataset
from transformers import PreTrainedTokenizerBase

from tinydistill.data.pairs import PairOptions, TokenizedDocuments, pair_instances, pair_template
from tinydistill.errors import ConfigError

log = logging.getLogger("tinydistill.data.corpus")


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


def pack_corpus(
    documents: list[list[str]], tokenizer: PreTrainedTokenizerBase, max_seq_length: int, desc: str = "corpus"
) -> Dataset:
    """Tokenise documents once and pack them: a Dataset with columns ``input_ids``, ``length``."""
    prefix, suffix = special_tokens(tokenizer)
    budget = max_seq_length - len(prefix) - len(suffix)
    if budget < 1:
        raise ConfigError(f"max_seq_length={max_seq_length} leaves no room for text after the special tokens")

    def pack(batch: dict) -> dict:
        flat = [s for doc in batch["sentences"] for s in doc]
        ids = tokenizer(flat, add_special_tokens=False)["input_ids"] if flat else []
        instances: list[list[int]] = []
        i = 0
        for doc in batch["sentences"]:
            instances.extend(pack_document(ids[i : i + len(doc)], budget, prefix, suffix))
            i += len(doc)
        return {"input_ids": instances, "length": [len(x) for x in instances]}

    docs = Dataset.from_dict({"sentences": documents})
    return docs.map(
        pack, batched=True, batch_size=64, remove_columns=["sentences"], desc=f"Tokenising and packing {desc}"
    )


def pair_corpus(
    documents: list[list[str]],
    tokenizer: PreTrainedTokenizerBase,
    max_seq_length: int,
    options: PairOptions,
    seed: int,
    desc: str = "corpus",
    tokenize_batch: int = 4096,
) -> Dataset:
    """Tokenise documents once and draw sentence pairs from them: a Dataset with columns ``input_ids``,
    ``token_type_ids``, ``length``, ``is_random_next`` (:func:`tinydistill.data.pairs.pair_instances`)."""
    template = pair_template(tokenizer)
    flat = [s for doc in documents for s in doc]
    ids: list[list[int]] = []
    for i in range(0, len(flat), tokenize_batch):
        ids.extend(tokenizer(flat[i : i + tokenize_batch], add_special_tokens=False)["input_ids"])
    log.info("corpus %s: %d sentences tokenised for pair instances", desc, len(ids))
    by_doc, i = [], 0
    for doc in documents:
        by_doc.append(ids[i : i + len(doc)])
        i += len(doc)
    return Dataset.from_dict(
        pair_instances(TokenizedDocuments.from_ids(by_doc), template, max_seq_length, options, seed)
    )
