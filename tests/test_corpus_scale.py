"""Corpus preparation at scale: the same instances for any process count and across an interrupted run, pairs drawn
without the corpus in memory, a streamed hub corpus, and one preparation for all DDP processes."""

from __future__ import annotations

import json
import random
import subprocess
import sys
import time
import tracemalloc
from pathlib import Path

import pytest
from transformers import AutoTokenizer

import tinydistill.data.pairs as pairs_mod
from tinydistill.data.corpus_build import corpus_key, packed_corpus
from tinydistill.data.corpus_source import UTF8_SLICE, CorpusSource, iter_documents, source_fingerprint
from tinydistill.errors import DataError
from tinydistill.data.packing import pack_corpus
from tinydistill.data.pairs import PairOptions, TokenizedDocuments, pair_instances, pair_template

ROOT = Path(__file__).resolve().parents[1]
WORDS = ("cat dog bird fish horse river mountain city house garden music paper window table chair "
         "school market summer winter morning evening").split()


@pytest.fixture(scope="module")
def tok(minilm_path):
    return AutoTokenizer.from_pretrained(minilm_path)


def write_corpus(path: Path, n_docs: int, seed: int = 0) -> Path:
    rng = random.Random(seed)
    docs = ["\n".join(" ".join(rng.choices(WORDS, k=rng.randint(3, 14))) + " ." for _ in range(rng.randint(1, 9)))
            for _ in range(n_docs)]
    path.write_text("\n\n".join(docs) + "\n", encoding="utf-8")
    return path


def columns(ds) -> dict[str, list]:
    return {c: ds[c] for c in ds.column_names}


@pytest.mark.parametrize("instances", ["single", "pairs"])
def test_instances_are_the_same_for_one_and_two_processes(tmp_path, tok, instances):
    src = CorpusSource(path=str(write_corpus(tmp_path / "c.txt", 300)))
    one = columns(packed_corpus(src, tok, 40, tmp_path / "one", instances, seed=3, num_proc=1))
    two = columns(packed_corpus(src, tok, 40, tmp_path / "two", instances, seed=3, num_proc=2))
    assert one == two and len(one["input_ids"]) > 300
    # ... and the same as packing or pairing the whole corpus in memory, as earlier versions did
    docs = list(iter_documents(src))
    if instances == "single":
        assert one == columns(pack_corpus(docs, tok, 40))
    else:
        ids = [[tok(s, add_special_tokens=False)["input_ids"] for s in d] for d in docs]
        expected = pair_instances(TokenizedDocuments.from_ids(ids), pair_template(tok), 40, PairOptions(), seed=3)
        assert one == expected


def test_an_interrupted_preparation_resumes_to_the_same_instances(tmp_path, tok, monkeypatch):
    """Killed while drawing the second half's pairs, the preparation is run again: it reuses the documents, the
    tokens and the finished half (a second run that redrew a document of it would fail here), and gives the same
    instances as an uninterrupted run."""
    src = CorpusSource(path=str(write_corpus(tmp_path / "c.txt", 200)))
    full = columns(packed_corpus(src, tok, 40, tmp_path / "full", "pairs", seed=1, num_proc=2))
    cache = tmp_path / "cache"
    work = cache / "corpus" / f"{corpus_key(src, tok, 40, 'pairs', seed=1)}.partial"
    real = pairs_mod.document_pairs

    def killed_in_second_half(docs, d, *args):
        if d >= 100:  # the second of two shards of 200 documents: wait for the first to be written, then die
            deadline = time.monotonic() + 60
            while not (work / "pairs_00000_of_00002.arrow").exists() and time.monotonic() < deadline:
                time.sleep(0.05)
            raise RuntimeError("killed")
        return real(docs, d, *args)

    monkeypatch.setattr(pairs_mod, "document_pairs", killed_in_second_half)
    with pytest.raises(RuntimeError, match="killed"):
        packed_corpus(src, tok, 40, cache, "pairs", seed=1, num_proc=2)
    assert (work / "pairs_00000_of_00002.arrow").exists() and not (cache / "corpus" / work.stem).exists()

    def first_half_is_not_redrawn(docs, d, *args):
        assert d >= 100, f"document {d} was drawn again"
        return real(docs, d, *args)

    monkeypatch.setattr(pairs_mod, "document_pairs", first_half_is_not_redrawn)
    assert columns(packed_corpus(src, tok, 40, cache, "pairs", seed=1, num_proc=2)) == full
    assert not work.exists()  # the work in progress is removed once the cache is complete


def test_the_utf8_check_reads_characters_split_between_slices(tmp_path):
    """The fingerprint checks UTF-8 in slices (corpus_source.UTF8_SLICE): a character cut by a slice (or a 1 MB
    block) boundary is still read whole, and a bad byte far into the file is still found."""
    good = tmp_path / "good.txt"
    text = ("x" * (UTF8_SLICE - 1) + "é") * 70  # every é straddles a slice boundary, some a block boundary
    good.write_text(text + "\n", encoding="utf-8")
    assert source_fingerprint(CorpusSource(path=str(good))).startswith("file:")
    bad = tmp_path / "bad.txt"
    bad.write_bytes(text.encode() + b"\nlast \xef line\n")
    with pytest.raises(DataError, match="is not UTF-8"):
        source_fingerprint(CorpusSource(path=str(bad)))


def test_pairs_are_drawn_without_the_corpus_in_memory(tmp_path, tok):
    """The Python heap's peak while preparing pairs does not grow with the corpus (4x the documents here). Earlier
    versions held every document's sentences and token ids in lists: a peak about 4x larger."""
    peaks = {}
    for n in (1, 4):
        src = CorpusSource(path=str(write_corpus(tmp_path / f"c{n}.txt", 2000 * n, seed=n)))
        tracemalloc.start()
        ds = packed_corpus(src, tok, 40, tmp_path / f"cache{n}", "pairs", seed=0, num_proc=1)
        peaks[n] = tracemalloc.get_traced_memory()[1]
        tracemalloc.stop()
        assert len(ds) > 2000 * n
    assert peaks[4] < 1.5 * peaks[1], peaks


def test_streamed_hub_corpus_gives_the_instances_of_the_downloaded_one(tmp_path, tok):
    """A hub corpus read as it downloads (a local JSON Lines corpus stands in for the hub): wikitext-style rows,
    blank rows between documents."""
    rng = random.Random(0)
    rows = [{"text": " ".join(rng.choices(WORDS, k=6)) + " ." if i % 5 else ""} for i in range(400)]
    f = tmp_path / "corpus.jsonl"
    f.write_text("".join(json.dumps(r) + "\n" for r in rows))
    stored = CorpusSource(dataset="json", data_files=str(f))
    streamed = CorpusSource(dataset="json", data_files=str(f), streaming=True)
    assert corpus_key(stored, tok, 32) != corpus_key(streamed, tok, 32)
    for instances in ("single", "pairs"):
        a = columns(packed_corpus(stored, tok, 32, tmp_path / "cache", instances, num_proc=2))
        b = columns(packed_corpus(streamed, tok, 32, tmp_path / "cache", instances, num_proc=2))
        assert a == b and len(a["input_ids"]) >= 80


@pytest.mark.slow
def test_two_ddp_processes_prepare_the_corpus_once(tmp_path, tiny_bert, corpus):
    """stage=general on two CPU processes over gloo: one preparation, both processes train on the prepared files."""
    proc = subprocess.run(
        [sys.executable, "train.py", "stage=general", f"teacher.name_or_path={tiny_bert}",
         f"stage.corpus.path={corpus}", "student.name=tiny_student", "student.num_hidden_layers=1",
         "student.hidden_size=16", "student.num_attention_heads=4", "student.intermediate_size=32",
         "stage.max_seq_length=24", "stage.batch_size=4", "stage.max_steps=3", "stage.val_size=4",
         "logger=none", "trainer=ddp", "trainer.accelerator=cpu", "trainer.devices=2",
         "trainer.enable_progress_bar=false", f"paths.artifacts_dir={tmp_path / 'artifacts'}",
         f"paths.cache_dir={tmp_path / 'cache'}", f"hydra.run.dir={tmp_path / 'hydra'}"],
        cwd=ROOT, capture_output=True, text=True, timeout=600,
    )
    out = proc.stdout + proc.stderr
    assert proc.returncode == 0, out[-3000:]
    lines = out.splitlines()
    assert sum("MEMBER: 2/2" in line for line in lines if "[INFO]" in line) == 1, out[-3000:]
    assert sum("preparing single instances" in line for line in lines) == 1, out[-3000:]
    assert sum("training instances" in line for line in lines if "[INFO]" in line) == 2, out[-3000:]
    assert (tmp_path / "artifacts" / "general" / "tiny_student" / "model.safetensors").exists()


def test_ddp_shares_cut_the_order_as_distributed_sampler_and_resume_on_every_rank():
    """Each of 3 processes gets every 3rd index of the epoch's order, padded like torch's DistributedSampler, and a
    position saved on rank 0 resumes every rank at the same place of its own share."""
    from torch.utils.data import DistributedSampler

    from tinydistill.data.sampler import SeededSampler

    n, world = 10, 3
    full = SeededSampler([0] * n, 4, seed=5)
    full.set_epoch(2)
    order = list(full)
    shares = []
    for rank in range(world):
        s = SeededSampler([0] * n, 4, seed=5, num_replicas=world, rank=rank)
        s.set_epoch(2)
        shares.append(list(s))
        assert len(s) == 4
        # torch's DistributedSampler over the same order cuts the same share
        torch_share = list(DistributedSampler(order, num_replicas=world, rank=rank, shuffle=False))
        assert shares[-1] == [order[i] for i in torch_share]
    assert sorted({i for share in shares for i in share}) == list(range(n))
    for rank in range(world):
        s = SeededSampler([0] * n, 4, seed=5, num_replicas=world, rank=rank)
        s.set_epoch(2)
        it = iter(s)
        head = [next(it), next(it)]
        resumed = SeededSampler([0] * n, 4, seed=5, num_replicas=world, rank=rank)
        resumed.load_state_dict(s.state_dict())
        assert head + list(resumed) == shares[rank]
