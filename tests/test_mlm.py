"""stage=mlm: a masked-LM head for an encoder that has none."""

import json
import math
import os

import torch
from transformers import AutoModelForMaskedLM, AutoTokenizer, BertModel

from tinydistill.data.corpus import CorpusDataModule, CorpusSource
from tinydistill.data.packing import pack_corpus
from tinydistill.modules.mlm import masked_accuracy
from tinydistill.stages import run
from tinydistill.stages.mlm import held_out_sentences


def test_masked_accuracy_counts_only_masked_positions():
    logits = torch.tensor([[[0.0, 1.0], [1.0, 0.0], [0.0, 1.0]]])
    labels = torch.tensor([[1, -100, 0]])
    correct, total = masked_accuracy(logits, labels)
    assert (int(correct), int(total)) == (1, 2)


def test_tiny_mlm_stage_trains_head_only_and_exports(compose_cfg, tiny_bert, tmp_path):
    corpus = tmp_path / "corpus.txt"
    corpus.write_text("\n\n".join("\n".join(f"The cat number {d} sat on mat {i} ." for i in range(6)) for d in range(30)))
    cfg = compose_cfg(
        "stage=mlm", f"teacher.name_or_path={tiny_bert}", f"stage.corpus.path={corpus}", "logger=csv",
        "stage.max_steps=4", "stage.batch_size=4", "stage.val_size=8", "stage.val_every_n_steps=2",
        "stage.max_seq_length=32",
    )
    result = run(cfg)
    out = result["output_dir"]
    assert out.endswith("mlm/minilm_l6")
    mlm = AutoModelForMaskedLM.from_pretrained(out)
    assert type(mlm).__name__ == "BertForMaskedLM"
    # Head only: the encoder is exactly the original one; the head's bias moved from zero.
    original = BertModel.from_pretrained(tiny_bert)
    exported = mlm.bert.state_dict()
    compared = [n for n, _ in original.named_parameters() if n in exported]
    assert len(compared) > 20
    for name, a in original.named_parameters():
        if name in exported:
            assert torch.equal(a, exported[name]), name
    assert mlm.cls.predictions.bias.abs().sum() > 0
    info = json.loads(open(os.path.join(out, "mlm.json")).read())
    assert info["steps"] == 4 and 0.0 <= info["held_out"]["masked_accuracy"] <= 1.0
    assert info["train_encoder"] is False
    # Candidate statistics: recomputed from the exported model on the same held-out sentences,
    # with data_aug's candidate code and the aug defaults (top_k 15).
    from data_aug import Augmenter, load_mlm, load_stopwords, measure_candidates
    from data_aug.words import nltk_data_dir

    quality = info["candidate_quality"]
    assert "skipped" not in quality, quality
    tok = AutoTokenizer.from_pretrained(out)
    dm = CorpusDataModule(CorpusSource(path=str(corpus)), tok, max_seq_length=32, cache_dir=cfg.paths.cache_dir,
                          val_size=8, seed=cfg.seed)
    dm.setup()
    sentences = held_out_sentences([d.split("\n") for d in corpus.read_text().split("\n\n")], tok, 32,
                                   dm.val["input_ids"], 100)
    assert len(sentences) == quality["sentences"] > 8  # every whole sentence of the 8 held-out instances
    stop = load_stopwords(nltk_data_dir(None, cfg.paths.data_dir))
    augmenter = Augmenter(load_mlm(out), None, stop, top_k=15)
    assert quality == {**measure_candidates(augmenter, sentences), "top_k": 15, "alphabetic_only": False}
    # "the cat number 3 sat on mat 4 .": cat, number, sat, mat are single-piece candidate words
    assert quality["words_with_candidates"] == 4 * quality["sentences"]


def test_masked_only_loss_equals_the_models_own_loss(tiny_bert):
    from tinydistill.modules.mlm import masked_lm_loss

    model = AutoModelForMaskedLM.from_pretrained(tiny_bert).eval()
    torch.manual_seed(0)
    ids = torch.randint(1000, 2000, (3, 12))
    labels = torch.full_like(ids, -100)
    labels[0, 2], labels[1, 5], labels[2, 0], labels[2, 11] = 11, 22, 33, 44
    batch = {"input_ids": ids, "attention_mask": torch.ones_like(ids), "labels": labels}
    with torch.no_grad():
        loss, logits, target = masked_lm_loss(model, batch)
        full = model(**batch)
    assert torch.allclose(loss, full.loss, atol=1e-5)
    assert torch.allclose(logits, full.logits[labels != -100], atol=1e-5)
    assert target.tolist() == [11, 22, 33, 44]


def test_held_out_sentences_are_whole_sentences_of_held_out_instances(tiny_bert):
    tok = AutoTokenizer.from_pretrained(tiny_bert)
    words = "apple river stone cloud forest candle mirror garden silver window bridge harbor meadow".split()
    docs = []
    for d in range(6):
        doc = [" ".join(words[(d + i + j) % len(words)] for j in range(1 + (d * 3 + i) % 5)) + f" {d} {i} ."
               for i in range(7)]
        if d == 2:  # longer than an instance: cut into pieces, never returned
            doc.insert(3, " ".join(words * 3) + " .")
        docs.append(doc)
    docs.insert(3, [])  # documents without sentences are skipped by the packing
    docs[4].insert(2, "")
    max_len = 16
    packed = [list(x) for x in pack_corpus(docs, tok, max_len)["input_ids"]]
    assert any(len(x) == max_len for x in packed)
    held_idx = [1, 4, 5, 9, 12, len(packed) - 1]
    held = [packed[i] for i in held_idx]
    ids = {s: tok(s, add_special_tokens=False)["input_ids"] for d in docs for s in d if s}

    def whole_in(instance):  # independent oracle: sentences whose ids appear contiguously in it
        content = instance[1:-1]
        found = []
        for s, t in ids.items():
            for p in range(len(content) - len(t) + 1):
                if content[p : p + len(t)] == t:
                    found.append((p, s))
        return [s for _, s in sorted(found)]

    per_instance = [whole_in(packed[i]) for i in held_idx]
    assert sum(map(len, per_instance)) > len(held_idx)  # several sentences per instance
    everything = [s for group in per_instance for s in group]
    assert held_out_sentences(docs, tok, max_len, held, 1000) == everything
    for n in (3, 8):
        per = math.ceil(n / len(held))
        expected = [s for group in per_instance for s in group[:per]][:n]
        assert held_out_sentences(docs, tok, max_len, held, n) == expected
    long = " ".join(words * 3) + " ."
    # every instance held out: every sentence but the cut one, in corpus order
    assert held_out_sentences(docs, tok, max_len, packed, 10_000) == [s for d in docs for s in d if s and s != long]
    assert held_out_sentences(docs, tok, max_len, [], 10) == []
    assert held_out_sentences(docs, tok, max_len, held, 0) == []
