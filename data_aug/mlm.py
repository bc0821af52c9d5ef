"""Masked-LM candidates for words: single-piece words, and in MLM-only mode (aug.mlm_only) multi-piece words too.

For a word at piece position j of a sentence with pieces P, the model reads (as the reference
TinyBERT code does) `[CLS] P-with-P[j]-masked [SEP] P [SEP]` with segment ids 0 for the first part
(up to and including the first [SEP]) and 1 for the rest (models with token types only), truncated to the
model's maximum length; a mask that falls beyond it gets no candidates. The special tokens are the tokenizer's
own (tokens.py: RoBERTa and XLM-R read `<s> masked </s></s> original </s>`). A word of n > 1 pieces (MLM-only
mode) is masked with one mask in place of its n pieces, so the model proposes one token for the whole word (see
data_aug/README.md for why one). The top-k predictions at the mask are kept, minus the entries that are not whole
words (tokens.py: `##` continuation pieces, as the reference; for BPE and SentencePiece, pieces without the
word-start marker) and bracketed or special entries such as [SEP], [UNK], [unused12] (a deviation: writing `[SEP]`
into a training sentence would corrupt it).

Two modes, same inputs and same candidates:

* `batched` (fast): masked copies from many sentences are grouped by exact length (no padding, so
  the numbers match an unbatched forward), `batch_size` per forward; inference_mode. Little runs
  whose result is not read: the MLM head runs only at the masks, and so do the last encoder
  layer's attention output projection and feed-forward (BERT-style layers; other layouts run the
  whole encoder). That skips 3/4 of the last layer's matrix products, 1/8 of a 6-layer encoder's,
  and gives the same bits as the full forward. On a CPU with N torch threads, N forwards run at
  once in N Python threads, one torch thread each (small products share threads poorly).
* `sequential` (the reference algorithm): one forward of the complete masked LM per masked word,
  logits at every position, then top-k at the mask.

Exactly equal candidate lists in both modes: float32 matrix products give results that differ in
the last bits with the shape of the product (a head applied to 1 row or to 50 rows), enough to swap
two near-tied predictions. So the float32 logits only preselect the top k+16 tokens, which are
then re-scored in float64 from the hidden state at the mask (BERT's `cls.predictions`, RoBERTa's and XLM-R's
`lm_head`) and ordered by that score (ties: lower token id first); heads of other layouts (ELECTRA, ModernBERT) use
the float32 order. The encoder's hidden states themselves do not depend on the batch (checked by the tests).

`dtype="bfloat16"` (aug.dtype) runs the encoder and head under autocast: bfloat16 matrix products, float32
weights and everything else. It is faster on CPUs with bfloat16 instructions but changes some lists, and its
products do depend on the batch.
"""

from __future__ import annotations

import contextlib
import copy
import hashlib
from collections import defaultdict
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Sequence

import torch

from data_aug.tokens import check_tokenizer, load_tokenizer, pair_template, vocabulary
from tinydistill.errors import ConfigError
from tinydistill.hardware import warn_if_emulated_bf16
from tinydistill.models.loading import load_reporting_fresh

# Model types whose encoder is embeddings followed by BERT layers, so the last one can run at the masks only.
_BERT_STYLE = frozenset({"bert", "roberta", "xlm-roberta", "camembert"})
_MARGIN = 16  # extra float32 preselected tokens re-scored in float64
# Matrix products of fewer rows than this may take other kernels (seen: 2-3 rows on one thread, 5-11 on two),
# whose last bits differ from the full encoder's, so the last layer's rows at the masks are padded to it.
_MIN_ROWS = 16


def _autocast(device: torch.device, dtype: str) -> contextlib.AbstractContextManager:
    """bfloat16: the matrix products under autocast, with float32 weights, LayerNorm, softmax and residual sums
    (it kept more float32 lists than casting the whole model to bfloat16, at about the same speed:
    docs/results/benchmarks.md). Autocast is per thread: enter it in the thread that runs the forward."""
    if dtype == "bfloat16":
        return torch.autocast(device.type, dtype=torch.bfloat16)
    return contextlib.nullcontext()


def _encoder_and_head(model) -> tuple[torch.nn.Module | None, torch.nn.Module | None]:
    """The masked LM's encoder and head when both are found (BERT's `cls`, RoBERTa's `lm_head`), else (None, None)."""
    base = getattr(model, getattr(model, "base_model_prefix", ""), None)
    head = getattr(model, "cls", None)
    if head is None:
        head = getattr(model, "lm_head", None)
    return (base, head) if (base is not None and head is not None) else (None, None)


def _max_positions(model) -> int:
    """Longest input the model takes: its position embeddings, less the positions RoBERTa-style embeddings
    reserve below the padding id (they number positions from padding_idx + 1: 514 embeddings, 512 tokens)."""
    limit = int(getattr(model.config, "max_position_embeddings", 512) or 512)
    base = getattr(model, getattr(model, "base_model_prefix", ""), None)
    padding_idx = getattr(getattr(base, "embeddings", None), "padding_idx", None)
    return limit - (padding_idx + 1) if isinstance(padding_idx, int) else limit


def _rescoring_head(model, device: torch.device) -> tuple[torch.nn.Module | None, torch.nn.Module | None]:
    """A float64 copy of the head's transform and the head's decoder, for heads that end in `decoder(transform(h))`:
    BERT's `cls.predictions` (transform) and RoBERTa's / XLM-R's `lm_head` (dense, gelu, layer_norm); else None."""
    pred = getattr(getattr(model, "cls", None), "predictions", None)
    if pred is not None and hasattr(pred, "transform") and isinstance(getattr(pred, "decoder", None), torch.nn.Linear):
        return copy.deepcopy(pred.transform).to(device=device, dtype=torch.float64), pred.decoder
    head = getattr(model, "lm_head", None)
    parts = ("dense", "layer_norm", "decoder")
    if head is not None and all(hasattr(head, a) for a in parts) and isinstance(head.decoder, torch.nn.Linear):
        transform = torch.nn.Sequential(copy.deepcopy(head.dense), torch.nn.GELU(), copy.deepcopy(head.layer_norm))
        return transform.to(device=device, dtype=torch.float64), head.decoder
    return None, None


class MaskedLM:
    """A Hugging Face masked LM and its fast tokenizer (WordPiece, BPE or SentencePiece), ready to propose words."""

    def __init__(
        self,
        model,
        tokenizer,
        *,
        name: str | None = None,
        device: str = "cpu",
        dtype: str = "float32",
        max_seq_length: int | None = None,
        last_layer_at_masks: bool = True,
        parallel_batches: bool = True,
    ):
        check_tokenizer(tokenizer, name)
        self.name = name or getattr(model, "name_or_path", None) or type(model).__name__
        self.tokenizer = tokenizer
        # Hash before any dtype change so the identity does not depend on aug.dtype.
        self._fingerprint: str | None = None
        self.model = model
        self.fingerprint  # noqa: B018 - computed now, on the float32 weights
        self.device = torch.device(device)
        self.dtype = dtype
        if dtype == "bfloat16":
            warn_if_emulated_bf16("aug.dtype=bfloat16", device)
        model.eval()
        model.to(device=self.device, dtype=torch.float32)  # bfloat16 runs under autocast (_autocast)
        cfg = model.config
        limit = _max_positions(model)
        self.max_len = min(limit, max_seq_length) if max_seq_length else limit
        self.use_token_types = int(getattr(cfg, "type_vocab_size", 0) or 0) >= 2
        self.encoder, self.head = _encoder_and_head(model)
        # The encoder's layers when they are BERT-style (embeddings, then layers with attention.self.query/key/
        # value, attention.output, intermediate, output), so the last one can run at the masks only.
        self._layers = _bert_layers(self.encoder) if last_layer_at_masks else None
        self.parallel_batches = parallel_batches
        # float64 re-scoring for heads of a known layout (transform -> decoder): see the module docstring
        self._transform64, self._decoder = _rescoring_head(model, self.device)
        self.head_ids, self.mid_ids, self.tail_ids = pair_template(tokenizer)  # BERT: [CLS] | [SEP] | [SEP]
        self.mask_id = tokenizer.mask_token_id
        self.id_to_token, self.excluded = vocabulary(tokenizer, int(cfg.vocab_size))
        self.forwards = 0  # number of forward passes run (for the benchmark)

    # ---------------------------------------------------------------- identity
    @property
    def fingerprint(self) -> str:
        """sha256 of the weights (float32 as loaded) and the vocabulary."""
        if self._fingerprint is None:
            h = hashlib.sha256()
            for key, t in sorted(self.model.state_dict().items()):
                t = t.detach().to("cpu").contiguous()
                h.update(f"{key}:{t.dtype}:{tuple(t.shape)};".encode())
                h.update(t.reshape(-1).view(torch.uint8).numpy().tobytes())
            vocab = self.tokenizer.get_vocab()
            h.update("\n".join(sorted(vocab, key=vocab.__getitem__)).encode())
            self._fingerprint = h.hexdigest()[:16]
        return self._fingerprint

    # ---------------------------------------------------------------- tokens
    def word_pieces(self, sentences: Sequence[Sequence[str]]) -> list[list[list[int]]]:
        """WordPiece ids of each word of each (already basic-tokenised) sentence."""
        out: list[list[list[int]]] = [[] for _ in sentences]
        nonempty = [i for i, words in enumerate(sentences) if words]
        if not nonempty:
            return out
        enc = self.tokenizer(
            [list(sentences[i]) for i in nonempty],
            is_split_into_words=True,
            add_special_tokens=False,
        )
        for row, i in enumerate(nonempty):
            per_word: list[list[int]] = [[] for _ in sentences[i]]
            for tid, wid in zip(enc["input_ids"][row], enc.word_ids(row)):
                if wid is not None:
                    per_word[wid].append(tid)
            out[i] = per_word
        return out

    def _inputs(self, pieces: Sequence[int], j: int = 0, n: int = 1) -> tuple[list[int], list[int]]:
        """`[CLS] first [SEP] pieces [SEP]` (the tokenizer's specials) and its segments, where `first` is `pieces` with
        the n pieces from j on replaced by the first of them (the mask goes there)."""
        first = list(pieces) if n == 1 else [*pieces[: j + 1], *pieces[j + n :]]
        a, b = [*self.head_ids, *first, *self.mid_ids], [*pieces, *self.tail_ids]
        return [*a, *b][: self.max_len], ([0] * len(a) + [1] * len(b))[: self.max_len]

    def _top_k(self, logits: torch.Tensor, hidden: torch.Tensor, k: int) -> list[list[str]]:
        """Candidates from float32 `logits` (M, V) and the hidden states at the masks (M, H)."""
        if self._transform64 is None:
            top = torch.topk(logits.float(), k, dim=-1).indices.cpu()
        else:
            pre = torch.topk(logits.float(), min(k + _MARGIN, logits.shape[-1]), dim=-1).indices
            pre = torch.sort(pre, dim=-1).values  # token-id order, so ties go to the lower id
            t = self._transform64(hidden.to(torch.float64))  # (M, H)
            w = self._decoder.weight[pre].to(torch.float64)  # (M, k+m, H)
            score = torch.einsum("mh,mkh->mk", t, w)
            if self._decoder.bias is not None:
                score = score + self._decoder.bias[pre].to(torch.float64)
            order = torch.sort(score, dim=-1, descending=True, stable=True).indices[:, :k]
            top = torch.gather(pre, 1, order).cpu()
        return [[self.id_to_token[i] for i in row[~self.excluded[row]].tolist()] for row in top]

    # ---------------------------------------------------------------- prediction
    @torch.inference_mode()
    def predict(
        self,
        sentences: Sequence[Sequence[int]],
        requests: Sequence[tuple[int, int] | tuple[int, int, int]],
        top_k: int,
        mode: str = "batched",
        batch_size: int = 64,
    ) -> list[list[str]]:
        """Candidates for each request: (sentence index, index of the word's first piece[, its number of pieces])."""
        results: list[list[str]] = [[] for _ in requests]
        bases: dict[tuple[int, int, int], tuple[torch.Tensor, torch.Tensor]] = {}
        keys: dict[int, tuple[int, int, int]] = {}  # request -> its input: the sentence's, or its own for n > 1
        valid: list[int] = []
        start = len(self.head_ids)
        for r, (s, j, *rest) in enumerate(requests):
            n = rest[0] if rest else 1
            if start + j >= self.max_len:
                continue  # mask truncated away: no candidates (reference returns [])
            keys[r] = key = (s, 0, 1) if n == 1 else (s, j, n)
            if key not in bases:
                ids, seg = self._inputs(sentences[s], j, n)
                bases[key] = (torch.tensor(ids), torch.tensor(seg))
            valid.append(r)
        k = min(top_k, len(self.id_to_token))
        if mode == "sequential":
            for r in valid:
                results[r] = self._predict_one(bases[keys[r]], requests[r][1], k)
            return results
        if mode != "batched":
            raise ConfigError(f"aug.mode={mode!r}: expected 'batched' or 'sequential'")
        buckets: dict[int, list[int]] = defaultdict(list)
        for r in valid:
            buckets[len(bases[keys[r]][0])].append(r)
        batches = [group[i : i + batch_size] for _, group in sorted(buckets.items())
                   for i in range(0, len(group), batch_size)]
        inputs = [[(bases[keys[r]], requests[r][1]) for r in batch] for batch in batches]
        for batch, cands in zip(batches, self._run_batches(inputs, k)):
            for r, c in zip(batch, cands):
                results[r] = c
        return results

    def _predict_one(self, base: tuple[torch.Tensor, torch.Tensor], j: int, k: int) -> list[str]:
        """Sequential mode: one forward for one mask (the reference's way)."""
        ids, seg = base
        x, at = ids.clone(), len(self.head_ids) + j
        x[at] = self.mask_id
        kwargs = {"token_type_ids": seg[None].to(self.device)} if self.use_token_types else {}
        with _autocast(self.device, self.dtype):
            out = self.model(input_ids=x[None].to(self.device), output_hidden_states=True, **kwargs)
        self.forwards += 1
        hidden = out.hidden_states[-1][:, at]
        return self._top_k(out.logits[:, at], hidden, k)[0]

    @torch.inference_mode()  # grad mode is per thread: the pool's threads need it too
    def _predict_batch(self, batch: list[tuple[tuple[torch.Tensor, torch.Tensor], int]], k: int) -> list[list[str]]:
        """Batched mode: one forward for masked copies of sentences of one length, one mask each."""
        x = torch.stack([base[0] for base, _ in batch])
        pos = torch.tensor([len(self.head_ids) + j for _, j in batch])
        rows = torch.arange(len(batch))
        x[rows, pos] = self.mask_id
        x = x.to(self.device)
        kwargs = {}
        if self.use_token_types:
            kwargs["token_type_ids"] = torch.stack([base[1] for base, _ in batch]).to(self.device)
        rows_d, pos_d = rows.to(self.device), pos.to(self.device)
        with _autocast(self.device, self.dtype):
            if self.encoder is not None:
                hidden = self._hidden_at_masks(x, kwargs.get("token_type_ids"), rows_d, pos_d)
                logits = self.head(hidden)
            else:  # unknown head layout: full logits, then gather
                out = self.model(input_ids=x, output_hidden_states=True, **kwargs)
                hidden, logits = out.hidden_states[-1][rows_d, pos_d], out.logits[rows_d, pos_d]
        return self._top_k(logits, hidden, k)

    def _run_batches(self, batches: list[list[tuple[tuple[torch.Tensor, torch.Tensor], int]]],
                     k: int) -> list[list[list[str]]]:
        """Every batch's candidates, in order; on N CPU threads, N single-threaded forwards side by side."""
        workers = torch.get_num_threads() if self.parallel_batches and self.device.type == "cpu" else 1
        if workers > 1 and len(batches) > 1:
            # Small matrix products share a CPU's threads poorly: one single-threaded forward per thread, the
            # biggest batches first so the threads end together. The results are the same bits (tests).
            def size(i: int) -> int:
                return len(batches[i]) * len(batches[i][0][0][0])

            torch.set_num_threads(1)
            pool = ThreadPoolExecutor(workers)
            try:
                futures = {i: pool.submit(self._predict_batch, batches[i], k)
                           for i in sorted(range(len(batches)), key=size, reverse=True)}
                outputs = [futures[i].result() for i in range(len(batches))]
            finally:  # an error or Ctrl-C drops the forwards not yet started
                pool.shutdown(wait=True, cancel_futures=True)
                torch.set_num_threads(workers)
        else:
            outputs = [self._predict_batch(batch, k) for batch in batches]
        self.forwards += len(batches)
        return outputs

    def _hidden_at_masks(
        self, x: torch.Tensor, token_types: torch.Tensor | None, rows: torch.Tensor, pos: torch.Tensor
    ) -> torch.Tensor:
        """The encoder's last hidden state at (rows, pos) of `x` (B, L), without padding."""
        if self._layers is None:
            kwargs = {} if token_types is None else {"token_type_ids": token_types}
            return self.encoder(input_ids=x, **kwargs).last_hidden_state[rows, pos]
        h = self.encoder.embeddings(input_ids=x, token_type_ids=token_types)
        *body, last = self._layers
        for layer in body:
            h = layer(h)  # no attention mask: every row of a bucket has the same length
        return _bert_layer_at(last, h, rows, pos)


def _bert_layers(encoder) -> list | None:
    """The layers of a BERT-style encoder (see MaskedLM), or None for another layout. Only the model types whose
    encoder is embeddings then such layers and nothing else: DeBERTa-v2's layers look alike but need its relative
    position embeddings and a mask, ELECTRA's may project its embeddings first."""
    layers = getattr(getattr(encoder, "encoder", None), "layer", None)
    model_type = getattr(getattr(encoder, "config", None), "model_type", None)
    if model_type not in _BERT_STYLE or getattr(encoder, "embeddings", None) is None or not layers:
        return None
    for layer in layers:
        att = getattr(layer, "attention", None)
        parts = ((att, "self"), (att, "output"), (layer, "intermediate"), (layer, "output"))
        if not all(hasattr(m, a) for m, a in parts):
            return None
        if getattr(layer, "is_decoder", False) or getattr(layer, "chunk_size_feed_forward", 0):
            return None
    return list(layers)


def _bert_layer_at(layer, h: torch.Tensor, rows: torch.Tensor, pos: torch.Tensor) -> torch.Tensor:
    """One BERT layer's output at (rows, pos) of `h` (B, L, H) only. Self-attention runs at every position (its
    share of the layer's work is small), since one query row alone goes through another kernel and would change
    the last bits; the attention output projection and the feed-forward, 3/4 of the layer's matrix products, run
    at (rows, pos) only, which gives the same bits as the full layer there (row-wise operations). Products of a
    few rows take other kernels, with other last bits, so fewer than _MIN_ROWS rows are padded with repeats."""
    n = len(rows)
    if n < _MIN_ROWS:
        pad = torch.zeros(_MIN_ROWS - n, dtype=torch.long, device=rows.device)
        rows, pos = torch.cat([rows, rows[pad]]), torch.cat([pos, pos[pad]])
    ctx, _ = layer.attention.self(h)  # (B, L, H); no attention mask (no padding)
    a = layer.attention.output(ctx[rows, pos], h[rows, pos])
    return layer.output(layer.intermediate(a), a)[:n]


def load_mlm(
    name_or_path: str | Path,
    *,
    device: str = "cpu",
    dtype: str = "float32",
    max_seq_length: int | None = None,
    allow_untrained_head: bool = False,
) -> MaskedLM:
    """Load a masked LM (`AutoModelForMaskedLM`) and its tokenizer from a hub name or folder.

    Raises ConfigError naming `aug.mlm_model` if it cannot be loaded or if its MLM head is not
    in the checkpoint (e.g. a BertModel such as all-MiniLM-L6-v2: its predictions would be noise),
    unless allow_untrained_head.
    """
    from transformers import AutoModelForMaskedLM

    name = str(name_or_path)
    try:
        tokenizer = load_tokenizer(name)
        model, fresh = load_reporting_fresh(AutoModelForMaskedLM, name)
    except Exception as e:
        hint = "" if Path(name).exists() else " (not a local folder; hub names need internet or the HF cache)"
        raise ConfigError(f"aug.mlm_model={name!r}: cannot load a masked LM{hint}: {type(e).__name__}: {e}") from e
    # Loaded weights' tied twins (the decoder is the word embeddings) do not count: only the head's own weights.
    head_missing = [k for k in fresh if not k.startswith(getattr(model, "base_model_prefix", "\0") + ".")]
    if head_missing and not allow_untrained_head:
        raise ConfigError(
            f"aug.mlm_model={name!r}: the checkpoint has no trained masked-LM head (missing "
            f"{', '.join(head_missing[:4])}{' ...' if len(head_missing) > 4 else ''}); its candidates "
            f"would be noise. Use a model with an MLM head (run stage=mlm to give the teacher one) "
            f"or set aug.allow_untrained_head=true for a speed test"
        )
    return MaskedLM(model, tokenizer, name=name, device=device, dtype=dtype, max_seq_length=max_seq_length)
