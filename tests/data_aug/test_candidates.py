"""Masked-LM and GloVe candidates (data_aug/augmenter.py, data_aug/mlm.py): routing, the reference's input, batched mode's bits."""

from __future__ import annotations

import pytest
import torch

from data_aug import (
    AugConfig,
    Augmenter,
    GloveNeighbours,
    MaskedLM,
    basic_tokenize,
    is_candidate_word,
)
from data_aug.settings import output_settings
from tests.conftest import (
    STOP,
    tiny_mlm_model,
)
from tests.data_aug.conftest import MRPC_ROWS, ROOT
from tinydistill.data.tasks import get_task


def test_candidates_route_single_piece_to_mlm_and_multi_piece_to_glove(tokenizer, mlm, small_kv):
    aug = Augmenter(mlm, GloveNeighbours(small_kv, top_k=3), STOP, top_k=6)
    sent = "Amrozi accused his brother, whom he called \"the witness\", of deliberately distorting 2 zzzqxv cafés."
    (sc,) = aug.candidates([sent])
    assert sc.words == basic_tokenize(sent)
    for i, w in enumerate(sc.words):
        if not is_candidate_word(w, STOP):
            assert i not in sc.sources, w  # stop words, punctuation, numbers, non-ASCII: untouched
            continue
        n_pieces = len(tokenizer.tokenize(w))
        if n_pieces == 1:
            assert sc.sources[i] == "mlm", w
        elif w in small_kv.key_to_index:
            assert sc.sources[i] == "glove", w
        else:
            assert sc.sources[i] == "kept" and i not in sc.candidates, w  # OOV: keep the word
    assert sc.sources[sc.words.index("accused")] == "mlm"
    assert sc.candidates[sc.words.index("amrozi")] == ["samudra", "bashir", "hambali"]
    assert sc.candidates[sc.words.index("distorting")] == ["distort", "misrepresenting", "bashir"]
    assert sc.sources[sc.words.index("zzzqxv")] == "kept"
    assert sc.words.index("cafes") in sc.sources  # accents stripped: an ASCII candidate


def reference_mlm_top_k(model, tokenizer, sentence: str, word_index: int, k: int) -> list[str] | None:
    """The reference TinyBERT algorithm for one word, written independently of data_aug.mlm."""
    pieces = ["[CLS]"] + tokenizer.tokenize(sentence)
    idx, span = -1, []
    for i in range(1, len(pieces)):
        if not pieces[i].startswith("##"):
            idx += 1
            if idx == word_index:
                span = [i]
            elif idx > word_index:
                break
        elif idx == word_index:
            span.append(i)
    if len(span) != 1:
        return None
    masked = list(pieces)
    masked[span[0]] = "[MASK]"
    tokens = masked + ["[SEP]"] + pieces[1:] + ["[SEP]"]
    segments = [0] * (len(pieces) + 1) + [1] * (len(tokens) - len(pieces) - 1)
    with torch.no_grad():
        logits = model(torch.tensor([tokenizer.convert_tokens_to_ids(tokens)]), token_type_ids=torch.tensor([segments])).logits
    top = torch.argsort(logits[0, span[0]], descending=True)[:k].tolist()
    return [t for t in tokenizer.convert_ids_to_tokens(top) if not t.startswith("##")]


def test_mlm_candidates_follow_reference_input_and_drop_subword_and_special_tokens(tokenizer):
    model = tiny_mlm_model(tokenizer, seed=1)
    # Push a ## piece, [SEP] and an [unusedN] entry to the top of every prediction.
    bias = model.cls.predictions.decoder.bias
    pushed = tokenizer.convert_tokens_to_ids(["##ing", "[SEP]", "[unused7]"])
    with torch.no_grad():
        for n, tid in enumerate(pushed):
            bias[tid] = 1000.0 - n
    mlm = MaskedLM(model, tokenizer, name="biased")
    aug = Augmenter(mlm, None, STOP, top_k=8)
    sent = MRPC_ROWS[2][3]
    (sc,) = aug.candidates([sent])
    assert any(s == "mlm" for s in sc.sources.values())
    for i, cands in sc.candidates.items():
        ref = reference_mlm_top_k(model, tokenizer, sent, i, 8)
        assert ref is not None and ref[0] == "[SEP]"  # the reference keeps special tokens...
        # ...we drop them and every other bracketed entry ([UNK], [unusedN], ...)
        assert cands == [t for t in ref if not (t.startswith("[") and t.endswith("]"))]
        assert 0 < len(cands) <= 8 - 3
        assert not any(c.startswith("##") or c.startswith("[") for c in cands)


def test_batched_and_sequential_modes_give_identical_candidates(mlm, small_kv):
    sentences = [r[c] for r in MRPC_ROWS[:4] for c in (3, 4)] + ["Short one.", "Another short sentence here."]
    glove = GloveNeighbours(small_kv, top_k=3)
    seq = Augmenter(mlm, glove, STOP, top_k=15, mode="sequential").candidates(sentences)
    n_seq_forwards = mlm.forwards
    for bs in (1, 3, 64):
        before = mlm.forwards
        bat = Augmenter(mlm, glove, STOP, top_k=15, mode="batched", batch_size=bs).candidates(sentences)
        assert bat == seq, f"batch_size={bs}"
        if bs == 64:
            assert mlm.forwards - before < n_seq_forwards / 3  # really batched
    assert sum(s == "mlm" for sc in seq for s in sc.sources.values()) > 25


def test_batched_mode_on_two_threads_runs_forwards_side_by_side_with_the_same_lists(tokenizer, small_kv):
    """With 2 torch threads, batched mode runs its forwards in 2 Python threads of one torch thread each: the lists
    are those of one forward at a time and of sequential mode, and the thread setting comes back."""
    import threading

    model = tiny_mlm_model(tokenizer)
    side_by_side, one_at_a_time = MaskedLM(model, tokenizer), MaskedLM(model, tokenizer, parallel_batches=False)
    seen: list[tuple[int, int]] = []  # (Python thread, torch threads) of each forward
    model.bert.embeddings.register_forward_hook(lambda *_: seen.append((threading.get_ident(), torch.get_num_threads())))
    sentences = [r[c] for r in MRPC_ROWS for c in (3, 4)]
    glove = GloveNeighbours(small_kv, top_k=3)
    torch.set_num_threads(2)
    try:
        lists = Augmenter(side_by_side, glove, STOP, top_k=15, mode="batched", batch_size=4).candidates(sentences)
        assert torch.get_num_threads() == 2
        pooled, seen[:] = list(seen), []
        assert len(pooled) > 4 and all(t != threading.get_ident() and n == 1 for t, n in pooled)
        assert Augmenter(one_at_a_time, glove, STOP, top_k=15, mode="batched", batch_size=4).candidates(sentences) == lists
        assert all(t == threading.get_ident() and n == 2 for t, n in seen)
        assert Augmenter(side_by_side, glove, STOP, top_k=15, mode="sequential").candidates(sentences) == lists
    finally:
        torch.set_num_threads(1)


def test_batched_candidates_are_the_reference_algorithms(mlm, small_kv):
    """bench/bench_aug.py re-implements the reference script's own way (WordPiece-tokenise again per word, a full
    forward with autograd, the whole vocabulary sorted at the mask): the batched lists are exactly its lists, once
    the bracketed tokens the project never proposes ([UNK], [unused3]) are taken out of the reference's."""
    import importlib.util

    spec = importlib.util.spec_from_file_location("bench_aug", ROOT / "bench" / "bench_aug.py")
    bench = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(bench)
    sentences = [r[c] for r in MRPC_ROWS for c in (3, 4)]
    glove = GloveNeighbours(small_kv, top_k=15)
    trainable = [p.requires_grad for p in mlm.model.parameters()]
    reference = bench.reference_candidates(mlm, glove, STOP, sentences, 15)
    assert [p.requires_grad for p in mlm.model.parameters()] == trainable  # autograd switched back
    batched = Augmenter(mlm, glove, STOP, top_k=15, mode="batched").candidates(sentences)
    agreement = bench.list_agreement(reference, batched)
    assert agreement["lists"] > 40 and agreement["identical_share_without_bracketed"] == 1.0, agreement


def test_encoder_hidden_states_do_not_depend_on_the_batch(mlm, tokenizer):
    """The premise of batched == sequential in float32: a row's hidden states are batch-invariant."""
    ids = tokenizer(MRPC_ROWS[0][3], add_special_tokens=False)["input_ids"]
    x = torch.tensor([[tokenizer.cls_token_id, *ids, tokenizer.sep_token_id]]).repeat(5, 1)
    x[torch.arange(5), torch.arange(1, 6)] = tokenizer.mask_token_id
    with torch.inference_mode():
        batched = mlm.encoder(input_ids=x).last_hidden_state
        single = torch.cat([mlm.encoder(input_ids=x[i : i + 1]).last_hidden_state for i in range(5)])
    assert torch.equal(batched, single)


@pytest.mark.parametrize("threads", [1, 2])
def test_last_layer_at_the_masks_only_gives_the_full_encoders_bits(tokenizer, threads):
    """Batched mode runs the last layer's output projection and feed-forward at the masks only: the hidden states
    there are bit for bit the full encoder's, for buckets below 16 copies (padded to 16 rows) as for larger ones."""
    model = tiny_mlm_model(tokenizer)
    pruned = MaskedLM(model, tokenizer, name="tiny")
    full = MaskedLM(model, tokenizer, name="tiny", last_layer_at_masks=False)
    assert pruned._layers is not None and full._layers is None
    seen: list[int] = []  # rows reaching the last layer's feed-forward
    model.bert.encoder.layer[-1].intermediate.register_forward_hook(lambda m, i, o: seen.append(i[0].numel() // 32))
    torch.set_num_threads(threads)
    try:
        g = torch.Generator().manual_seed(0)
        for length, copies in [(9, 1), (9, 2), (23, 3), (12, 5), (15, 10), (40, 17)]:
            x = torch.randint(1000, 20000, (copies, length), generator=g)
            seg = (torch.arange(length) >= length // 2).long().expand(copies, -1)
            rows, pos = torch.arange(copies), torch.randint(1, length, (copies,), generator=g)
            with torch.inference_mode():
                got = pruned._hidden_at_masks(x, seg, rows, pos)
                want = full._hidden_at_masks(x, seg, rows, pos)
                whole = model.bert(input_ids=x, token_type_ids=seg).last_hidden_state[rows, pos]
            assert torch.equal(got, want) and torch.equal(want, whole), (length, copies)
            assert seen[-3:] == [max(copies, 16), copies * length, copies * length]  # the work skipped
    finally:
        torch.set_num_threads(1)


def test_manifest_settings_cover_what_changes_the_output():
    cfg = AugConfig()
    task = get_task("mrpc")
    base = output_settings(cfg, task, "m", "g", "s", "src")
    assert "batch_size" not in base and "mode" not in base  # float32 on CPU: batching-invariant
    for change in ({"seed": 1}, {"top_k": 5}, {"n_aug": 3}, {"p_replace": 0.3}, {"word_vectors_vocab_size": 10},
                   {"alphabetic_only": True}, {"stopwords": "reference"}, {"n_aug_per_task": {"mrpc": 30}}):
        assert output_settings(AugConfig(**change), task, "m", "g", "s", "src") != base
    # defaults leave the settings of outputs made before these options existed
    assert "alphabetic_only" not in base and "stopwords" not in base and base["n_aug"] == 20
    assert output_settings(AugConfig(stopwords="reference"), task, "m", "g", "s", "src")["stopwords"] == "reference"
    # another task's N_a changes nothing here
    assert output_settings(AugConfig(n_aug_per_task={"rte": 30}), task, "m", "g", "s", "src") == base
    bf16 = output_settings(AugConfig(dtype="bfloat16"), task, "m", "g", "s", "src")
    assert bf16["batch_size"] == 64 and bf16["chunk_size"] == 128 and bf16["mode"] == "batched"
    assert bf16["bfloat16"] == "autocast" and "bfloat16" not in base  # not the lists of the earlier whole-model cast


def test_mask_beyond_max_length_gets_no_candidates(tokenizer):
    mlm = MaskedLM(tiny_mlm_model(tokenizer), tokenizer, name="tiny", max_seq_length=12)
    sent = "alpha bravo charlie delta echo foxtrot golf hotel india juliet kilo lima"
    for mode in ("batched", "sequential"):
        (sc,) = Augmenter(mlm, None, STOP, top_k=5, mode=mode).candidates([sent])
        # inputs are [CLS] w1..w10 | truncated: words at WordPiece index >= 11 cannot be masked
        pieces = [len(tokenizer.tokenize(w)) for w in sc.words]
        for i in sc.sources:
            start = sum(pieces[:i])
            if pieces[i] == 1:
                assert (i in sc.candidates) == (1 + start < 12), (mode, sc.words[i])
