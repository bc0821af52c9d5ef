"""The student of the cross-tokenizer run: a demo-shaped BERT (3 layers, hidden 192, 12 heads, FFN 768) at random,
reading text with its own tokenizer, a cased WordPiece vocabulary of 8000 tokens trained with `tokenizers` on the
SST-2 training sentences (the teacher's is MiniLM's uncased bert-base vocabulary, 30522 tokens).

    python docs/results/cross_tokenizer/own_vocab_student.py <data_dir> <out folder> [seed]
"""

from __future__ import annotations

import sys

import torch
from tokenizers import Tokenizer, decoders, models, normalizers, pre_tokenizers, processors, trainers
from transformers import BertConfig, BertModel, PreTrainedTokenizerFast

from tinydistill.data.glue import load_examples
from tinydistill.data.tasks import get_task

VOCAB_SIZE = 8000
SPECIALS = ["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]"]


def own_tokenizer(texts: list[str], vocab_size: int = VOCAB_SIZE,
                  specials: list[str] = SPECIALS) -> PreTrainedTokenizerFast:
    """A cased WordPiece tokenizer of `vocab_size` tokens trained on `texts` (the teacher's is uncased); the tests
    build theirs with it too (tests/test_cross_tokenizer.py)."""
    tok = Tokenizer(models.WordPiece(unk_token="[UNK]"))
    tok.normalizer = normalizers.BertNormalizer(lowercase=False)  # cased: the teacher's is uncased
    tok.pre_tokenizer = pre_tokenizers.BertPreTokenizer()
    tok.train_from_iterator(texts, trainers.WordPieceTrainer(vocab_size=vocab_size, special_tokens=specials))
    cls, sep = tok.token_to_id("[CLS]"), tok.token_to_id("[SEP]")
    tok.post_processor = processors.TemplateProcessing(
        single="[CLS] $A [SEP]", pair="[CLS] $A [SEP] $B:1 [SEP]:1", special_tokens=[("[CLS]", cls), ("[SEP]", sep)])
    tok.decoder = decoders.WordPiece()
    return PreTrainedTokenizerFast(tokenizer_object=tok, unk_token="[UNK]", cls_token="[CLS]", sep_token="[SEP]",
                                   pad_token="[PAD]", mask_token="[MASK]")


def main(data_dir: str, out: str, seed: int = 42) -> None:
    texts = list(load_examples(get_task("sst2"), "train", data_dir)["text_a"])
    tok = own_tokenizer(texts)
    torch.manual_seed(seed)
    model = BertModel(BertConfig(vocab_size=len(tok), hidden_size=192, num_hidden_layers=3, num_attention_heads=12,
                                 intermediate_size=768, max_position_embeddings=512, pad_token_id=tok.pad_token_id))
    model.save_pretrained(out)
    tok.save_pretrained(out)
    print(f"{out}: {sum(p.numel() for p in model.parameters())} parameters, {len(tok)} tokens")


if __name__ == "__main__":
    main(sys.argv[1], sys.argv[2], *(int(a) for a in sys.argv[3:]))
