"""data_aug/pipeline.py: augmenting a task's training file, resume, reuse; data_aug/settings.py."""

from __future__ import annotations

import json
from collections import Counter

import pytest

from data_aug import (
    Augmenter,
    GloveNeighbours,
    augment_task,
    basic_tokenize,
    candidate_stats,
    ensure_augmented,
    is_candidate_word,
    pipeline,
    store,
)
from tests.conftest import (
    STOP,
    interrupt_chunk_write,
    small_cfg,
)
from tests.data_aug.conftest import MRPC_HEADER, MRPC_ROWS, find_data_dir
from tinydistill.data.glue_tsv import read_glue_tsv
from tinydistill.data.tasks import get_task


def test_pair_task_columns_augmented_independently_label_kept(glue_dir, tmp_path, mlm, small_kv):
    out = augment_task(small_cfg(), "mrpc", glue_dir, tmp_path / "out", mlm=mlm, glove=small_kv,
                       stopwords=STOP, progress=False)
    table = read_glue_tsv(out, get_task("mrpc"))
    assert table.header == MRPC_HEADER
    raw = out.read_text(encoding="utf-8")
    assert not raw.startswith("\ufeff") and "\r" not in raw
    groups: dict[tuple[str, str], list[list[str]]] = {}
    for row in table.rows:
        groups.setdefault((row[1], row[2]), []).append(row)
    assert list(groups) == [(r[1], r[2]) for r in MRPC_ROWS]  # example order kept
    changed = Counter()
    for src, (key, rows) in zip(MRPC_ROWS, groups.items()):
        assert rows[0] == src  # the original first, untouched
        assert len({tuple(r) for r in rows}) == len(rows)  # no duplicates
        seen_b = False
        for r in rows[1:]:
            assert r[0] == src[0]  # label kept
            a_changed, b_changed = r[3] != src[3], r[4] != src[4]
            assert a_changed != b_changed  # exactly one column replaced per row
            assert not (a_changed and seen_b)  # text_a rows first, then text_b rows
            seen_b |= b_changed
            col = 3 if a_changed else 4
            orig, new = basic_tokenize(src[col]), r[col].split(" ")
            assert len(new) == len(orig) and new != orig
            for o, n in zip(orig, new):
                assert o == n or is_candidate_word(o, STOP)  # only candidate words change
            changed[col] += 1
    assert changed[3] >= len(MRPC_ROWS) and changed[4] >= len(MRPC_ROWS)
    manifest = json.loads((out.parent / "manifest.json").read_text())
    assert manifest["counts"]["rows"] == len(table.rows)
    assert manifest["counts"]["examples"] == len(MRPC_ROWS)
    assert manifest["counts"]["augmented_rows"] == len(table.rows) - len(MRPC_ROWS)
    assert manifest["settings"]["seed"] == 42 and manifest["settings"]["n_aug"] == 6
    assert not (out.parent / ".partial").exists()
    # candidate statistics: those of the MLM lists of every augmented sentence (example x column)
    aug = Augmenter(mlm, GloveNeighbours(small_kv, 4), STOP, top_k=4)
    lists = [sc.candidates[i] for sc in aug.candidates([r[c] for r in MRPC_ROWS for c in (3, 4)])
             for i in sorted(sc.candidates) if sc.sources[i] == "mlm"]
    quality = manifest["candidate_quality"]
    assert quality == candidate_stats(lists, STOP)
    assert quality["words_with_candidates"] == manifest["counts"]["words_mlm"] == len(lists) > 10


def test_resume_after_interruption_gives_the_same_bytes(glue_dir, tmp_path, mlm, small_kv, monkeypatch):
    kw = dict(mlm=mlm, glove=small_kv, stopwords=STOP, progress=False)
    whole = augment_task(small_cfg(), "mrpc", glue_dir, tmp_path / "whole", **kw)

    real_write = store.write_chunk
    interrupt_chunk_write(monkeypatch, 3)
    with pytest.raises(KeyboardInterrupt):
        augment_task(small_cfg(), "mrpc", glue_dir, tmp_path / "resumed", **kw)
    out_dir = tmp_path / "resumed"
    assert not (out_dir / "train_aug.tsv").exists() and not (out_dir / "manifest.json").exists()
    assert sorted(p.name for p in (out_dir / ".partial").glob("chunk_*.tsv")) == ["chunk_00000.tsv", "chunk_00001.tsv"]

    monkeypatch.setattr(store, "write_chunk", real_write)
    real_rows = pipeline.augment_rows
    calls = {"rows": []}

    def counting_rows(augmenter, table, start, stop, seed, stats=None, max_examples=None, **kw):
        calls["rows"].append(start)
        return real_rows(augmenter, table, start, stop, seed, stats, max_examples, **kw)

    monkeypatch.setattr(pipeline, "augment_rows", counting_rows)
    resumed = augment_task(small_cfg(), "mrpc", glue_dir, out_dir, **kw)
    assert calls["rows"] == [4, 6]  # chunks 0 and 1 (examples 0-3) were not recomputed
    assert resumed.read_bytes() == whole.read_bytes()
    m_whole = json.loads((whole.parent / "manifest.json").read_text())
    m_res = json.loads((resumed.parent / "manifest.json").read_text())
    assert m_res["counts"] == m_whole["counts"] and m_res["time"]["resumed_examples"] == 4
    # statistics of the resumed run: resumed chunks' tallies merged with the new ones
    assert m_res["candidate_quality"] == m_whole["candidate_quality"]
    assert m_res["candidate_quality"]["words_with_candidates"] == m_res["counts"]["words_mlm"] > 0
    assert m_res["output"]["sha256"] == m_whole["output"]["sha256"]


def test_chunk_without_candidate_tally_is_recomputed_on_resume(glue_dir, tmp_path, mlm, small_kv, monkeypatch):
    """Chunks finished by a version that wrote no tally file (or whose tally was lost) are redone,
    so the manifest's statistics always cover every chunk."""
    kw = dict(mlm=mlm, glove=small_kv, stopwords=STOP, progress=False)
    whole = augment_task(small_cfg(), "mrpc", glue_dir, tmp_path / "whole", **kw)
    real_write = store.write_chunk
    interrupt_chunk_write(monkeypatch, 3)
    with pytest.raises(KeyboardInterrupt):
        augment_task(small_cfg(), "mrpc", glue_dir, tmp_path / "o", **kw)
    (tmp_path / "o" / ".partial" / "chunk_00001.json").unlink()
    monkeypatch.setattr(store, "write_chunk", real_write)
    starts = []
    real_rows = pipeline.augment_rows
    monkeypatch.setattr(pipeline, "augment_rows", lambda *a, **k: starts.append(a[2]) or real_rows(*a, **k))
    out = augment_task(small_cfg(), "mrpc", glue_dir, tmp_path / "o", **kw)
    assert starts == [2, 4, 6]  # chunk 0 resumed, chunk 1 redone
    assert out.read_bytes() == whole.read_bytes()
    m = json.loads((out.parent / "manifest.json").read_text())
    assert m["candidate_quality"] == json.loads((whole.parent / "manifest.json").read_text())["candidate_quality"]


def test_output_does_not_depend_on_chunk_or_batch_size(glue_dir, tmp_path, mlm, small_kv):
    kw = dict(mlm=mlm, glove=small_kv, stopwords=STOP, progress=False)
    a = augment_task(small_cfg(chunk_size=2, batch_size=8), "mrpc", glue_dir, tmp_path / "a", **kw)
    b = augment_task(small_cfg(chunk_size=7, batch_size=3), "mrpc", glue_dir, tmp_path / "b", **kw)
    assert a.read_bytes() == b.read_bytes()


def test_max_examples_augments_a_prefix_and_copies_the_rest(glue_dir, tmp_path, mlm, small_kv):
    kw = dict(mlm=mlm, glove=small_kv, stopwords=STOP, progress=False)
    full = read_glue_tsv(augment_task(small_cfg(), "mrpc", glue_dir, tmp_path / "full", **kw), get_task("mrpc"))
    out = augment_task(small_cfg(max_examples=2), "mrpc", glue_dir, tmp_path / "part", **kw)
    part = read_glue_tsv(out, get_task("mrpc"))
    # the first two examples exactly as in the full run, then the others once each, unchanged
    first_two = [r for r in full.rows if (r[1], r[2]) in {(x[1], x[2]) for x in MRPC_ROWS[:2]}]
    assert part.rows == first_two + [list(r) for r in MRPC_ROWS[2:]]
    assert len(first_two) > 2
    assert json.loads((out.parent / "manifest.json").read_text())["settings"]["max_examples"] == 2


def test_progress_of_other_settings_is_discarded(glue_dir, tmp_path, mlm, small_kv, monkeypatch):
    kw = dict(mlm=mlm, glove=small_kv, stopwords=STOP, progress=False)
    real_write = store.write_chunk
    interrupt_chunk_write(monkeypatch, 2)
    with pytest.raises(KeyboardInterrupt):
        augment_task(small_cfg(seed=1), "mrpc", glue_dir, tmp_path / "o", **kw)
    monkeypatch.setattr(store, "write_chunk", real_write)
    got = augment_task(small_cfg(seed=2), "mrpc", glue_dir, tmp_path / "o", **kw)
    fresh = augment_task(small_cfg(seed=2), "mrpc", glue_dir, tmp_path / "fresh", **kw)
    assert got.read_bytes() == fresh.read_bytes()


def test_ensure_augmented_reuses_and_regenerates(glue_dir, tmp_path, mlm, small_kv, monkeypatch):
    kw = dict(mlm_model=mlm, glove=small_kv, stopwords=STOP, progress=False)
    art = tmp_path / "artifacts"
    path = ensure_augmented(small_cfg(), "mrpc", glue_dir, art, **kw)
    assert path == art / "aug" / "mrpc" / "train_aug.tsv" and path.is_file()
    first = path.read_bytes()

    def no_generation(*a, **k):
        raise AssertionError("regenerated although up to date")

    with monkeypatch.context() as m:
        m.setattr(pipeline, "generate", no_generation)
        assert ensure_augmented(small_cfg(), "mrpc", glue_dir, art, **kw) == path
        # runtime-only settings do not invalidate the output
        assert ensure_augmented(small_cfg(batch_size=3, mode="sequential", chunk_size=5), "mrpc", glue_dir, art, **kw) == path
    assert ensure_augmented(small_cfg(seed=7), "mrpc", glue_dir, art, **kw) == path
    assert path.read_bytes() != first
    assert json.loads((path.parent / "manifest.json").read_text())["settings"]["seed"] == 7
    generated = []
    real_generate = pipeline.generate
    with monkeypatch.context() as m:
        m.setattr(pipeline, "generate", lambda *a, **k: generated.append(a[0]) or real_generate(*a, **k))
        ensure_augmented(small_cfg(seed=7, alphabetic_only=True), "mrpc", glue_dir, art, **kw)
        assert [job.cfg.alphabetic_only for job in generated] == [True]  # the option regenerates
        manifest = json.loads((path.parent / "manifest.json").read_text())
        assert manifest["settings"]["alphabetic_only"] is True and manifest["config"]["alphabetic_only"] is True
        assert manifest["candidate_quality"]["non_alphabetic_share"] == 0
        ensure_augmented(small_cfg(seed=7, alphabetic_only=True), "mrpc", glue_dir, art, **kw)
        ensure_augmented(small_cfg(seed=7), "mrpc", glue_dir, art, **kw)
        assert len(generated) == 2  # reused, then regenerated without the option
    # a changed source file also invalidates it
    src = glue_dir / "glue" / "MRPC" / "train.tsv"
    src.write_text(src.read_text(encoding="utf-8-sig").replace("Amrozi", "Amrozy"), encoding="utf-8")
    ensure_augmented(small_cfg(seed=7), "mrpc", glue_dir, art, **kw)
    assert "Amrozy" in path.read_text(encoding="utf-8")

    # aug.output_dir: a second file with other settings beside the first, neither regenerating the other
    other = tmp_path / "aug_seed3"
    assert ensure_augmented(small_cfg(seed=3, output_dir=str(other)), "mrpc", glue_dir, art, **kw) == other / path.name
    assert json.loads((other / "manifest.json").read_text())["settings"]["seed"] == 3
    kept = path.read_bytes()
    with monkeypatch.context() as m:
        m.setattr(pipeline, "generate", no_generation)
        assert ensure_augmented(small_cfg(seed=7), "mrpc", glue_dir, art, **kw) == path
        assert ensure_augmented(small_cfg(seed=3, output_dir=str(other)), "mrpc", glue_dir, art, **kw) == other / path.name
    assert path.read_bytes() == kept and (other / path.name).read_bytes() != kept

    train = glue_dir / "glue" / "MRPC" / "train.tsv"
    assert ensure_augmented(small_cfg(enabled=False), "mrpc", glue_dir, art, **kw) == train
    stsb = glue_dir / "glue" / "STS-B"
    stsb.mkdir()
    assert ensure_augmented(small_cfg(), "stsb", glue_dir, art, **kw) == stsb / "train.tsv"


def test_stopword_list_is_part_of_the_manifest(glue_dir, tmp_path, mlm, small_kv):
    d = find_data_dir()
    if d is None or not (d / "nltk_data").is_dir():
        pytest.skip("shared data folder with nltk_data/ not found")
    kw = dict(mlm_model=mlm, glove=small_kv, progress=False)  # stop words loaded from aug.stopwords
    art = tmp_path / "artifacts"
    manifests, texts = {}, {}
    for which in ("nltk", "reference", "nltk"):
        path = ensure_augmented(small_cfg(stopwords=which, nltk_data=str(d / "nltk_data")), "mrpc", glue_dir, art, **kw)
        manifests[which] = json.loads((path.parent / "manifest.json").read_text())["settings"]
        texts[which] = [r[3] for r in read_glue_tsv(path, get_task("mrpc")).rows if r[1] == MRPC_ROWS[0][1]]
    assert manifests["reference"]["stopwords"] == "reference" and "stopwords" not in manifests["nltk"]
    assert manifests["reference"]["stopwords_fingerprint"] != manifests["nltk"]["stopwords_fingerprint"]
    # "whom" in the first sentence: never replaced with NLTK's list, replaced in some draw with the reference's
    assert all("whom" in t for t in texts["nltk"])
    assert any("whom" not in t for t in texts["reference"])
