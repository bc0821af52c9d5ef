"""Tiny random masked LMs of other families, built offline: a RoBERTa with a byte-level BPE tokenizer and an XLM-R
with a SentencePiece (Unigram) tokenizer, both trained with `tokenizers` on a few sentences."""

from __future__ import annotations

import json
from pathlib import Path

import torch

from tests.data_aug.conftest import MRPC_ROWS

SPECIAL = ["<s>", "<pad>", "</s>", "<unk>", "<mask>"]  # XLM-R's order: unk is id 3
FRENCH = [
    "Les élèves ont été très contents de la réponse du professeur.",
    "Le gouvernement a publié une annonce sur Internet le dix juin.",
    "Les actions de la banque ont augmenté de vingt cents vendredi.",
]
TEXTS = [r[c] for r in MRPC_ROWS for c in (3, 4)] + FRENCH


def bpe_tokenizer(add_prefix_space: bool = True, vocab_size: int = 420):
    """A RoBERTa tokenizer (byte-level BPE, `Ġ` word starts, `<mask>`) trained on TEXTS."""
    from tokenizers import Tokenizer, models, pre_tokenizers, trainers
    from transformers import RobertaTokenizer

    tok = Tokenizer(models.BPE())
    tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=True)
    trainer = trainers.BpeTrainer(vocab_size=vocab_size, special_tokens=SPECIAL,
                                  initial_alphabet=pre_tokenizers.ByteLevel.alphabet())
    tok.train_from_iterator(TEXTS * 3, trainer)
    model = json.loads(tok.to_str())["model"]
    merges = [tuple(m) if isinstance(m, list) else tuple(m.split(" ")) for m in model["merges"]]
    return RobertaTokenizer(vocab=model["vocab"], merges=merges, add_prefix_space=add_prefix_space)


def unigram_tokenizer(vocab_size: int = 260):
    """An XLM-R tokenizer (SentencePiece Unigram, `▁` word starts) trained on TEXTS."""
    from tokenizers import Tokenizer, models, pre_tokenizers, trainers
    from transformers import XLMRobertaTokenizer

    tok = Tokenizer(models.Unigram())
    tok.pre_tokenizer = pre_tokenizers.Sequence([pre_tokenizers.WhitespaceSplit(), pre_tokenizers.Metaspace()])
    tok.train_from_iterator(TEXTS * 3, trainers.UnigramTrainer(vocab_size=vocab_size, special_tokens=SPECIAL,
                                                               unk_token="<unk>"))
    vocab = json.loads(tok.to_str())["model"]["vocab"]
    return XLMRobertaTokenizer(vocab=[(piece, score) for piece, score in vocab])


def tiny_masked_lm(family: str, tokenizer, seed: int = 0, max_tokens: int = 128):
    """A random 2-layer RobertaForMaskedLM or XLMRobertaForMaskedLM for `tokenizer` (initializer_range 0.5, as
    tests/conftest.py's tiny BERT, so that predictions depend strongly on the input)."""
    from transformers import RobertaConfig, RobertaForMaskedLM, XLMRobertaConfig, XLMRobertaForMaskedLM

    config_cls, model_cls = {"roberta": (RobertaConfig, RobertaForMaskedLM),
                             "xlm-roberta": (XLMRobertaConfig, XLMRobertaForMaskedLM)}[family]
    torch.manual_seed(seed)
    pad = tokenizer.pad_token_id
    cfg = config_cls(
        vocab_size=len(tokenizer), hidden_size=32, num_hidden_layers=2, num_attention_heads=2, intermediate_size=64,
        max_position_embeddings=max_tokens + pad + 1, type_vocab_size=1, initializer_range=0.5, pad_token_id=pad,
        bos_token_id=tokenizer.cls_token_id, eos_token_id=tokenizer.sep_token_id,
    )
    return model_cls(cfg).eval()


def save_masked_lm(folder: Path, model, tokenizer) -> Path:
    model.save_pretrained(folder)
    tokenizer.save_pretrained(folder)
    return folder


def tiny_other_masked_lm(family: str, tokenizer):
    """A random 2-layer ELECTRA, DeBERTa-v2 or ModernBERT masked LM for `tokenizer` (initializer_range 0.5)."""
    from transformers import (DebertaV2Config, DebertaV2ForMaskedLM, ElectraConfig, ElectraForMaskedLM,
                              ModernBertConfig, ModernBertForMaskedLM)

    torch.manual_seed(0)
    size = dict(vocab_size=len(tokenizer), hidden_size=32, num_hidden_layers=2, num_attention_heads=2,
                intermediate_size=64, max_position_embeddings=256, initializer_range=0.5,
                pad_token_id=tokenizer.pad_token_id)
    if family == "electra":
        return ElectraForMaskedLM(ElectraConfig(embedding_size=16, **size)).eval()  # embeddings projected to 32
    if family == "deberta-v2":
        return DebertaV2ForMaskedLM(DebertaV2Config(relative_attention=True, pos_att_type=["p2c", "c2p"],
                                                    position_biased_input=False, **size)).eval()
    ids = dict(bos_token_id=tokenizer.cls_token_id, eos_token_id=tokenizer.sep_token_id,
               cls_token_id=tokenizer.cls_token_id, sep_token_id=tokenizer.sep_token_id)
    return ModernBertForMaskedLM(ModernBertConfig(**size, **ids)).eval()
