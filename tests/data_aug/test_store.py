"""data_aug/store.py: verified outputs; GloVe names that need the gensim opt-in."""

from __future__ import annotations

import json

import pytest

from data_aug import (
    AugConfig,
    ensure_augmented,
    load_glove,
    pipeline,
    store,
)
from tests.conftest import (
    STOP,
    VEC_WORDS,
    small_cfg,
)
from tinydistill.errors import ConfigError


def test_truncated_or_edited_output_is_regenerated_a_matching_one_reused(glue_dir, tmp_path, mlm, small_kv,
                                                                        monkeypatch, caplog):
    kw = dict(mlm_model=mlm, glove=small_kv, stopwords=STOP, progress=False)
    art = tmp_path / "artifacts"
    path = ensure_augmented(small_cfg(), "mrpc", glue_dir, art, **kw)
    whole = path.read_bytes()
    rows = json.loads((path.parent / "manifest.json").read_text())["output"]["rows"]

    def no_generation(*a, **k):
        raise AssertionError("regenerated although up to date")

    with monkeypatch.context() as m:  # a matching file: no work
        m.setattr(pipeline, "generate", no_generation)
        assert ensure_augmented(small_cfg(), "mrpc", glue_dir, art, **kw) == path
    assert store.output_mismatch(path, json.loads((path.parent / "manifest.json").read_text()), 1) is None

    path.write_bytes(b"".join(whole.splitlines(keepends=True)[:5]))  # cut to the header and 4 rows
    with caplog.at_level("WARNING", logger="data_aug.pipeline"):
        assert ensure_augmented(small_cfg(), "mrpc", glue_dir, art, **kw) == path
    assert path.read_bytes() == whole
    assert f"{path} has 4 rows, its manifest records {rows}; regenerating it" in caplog.text
    caplog.clear()

    path.write_bytes(whole.replace(b"Amrozi", b"Amrozy", 1))  # same row count, other bytes
    with caplog.at_level("WARNING", logger="data_aug.pipeline"):
        ensure_augmented(small_cfg(), "mrpc", glue_dir, art, **kw)
    assert path.read_bytes() == whole and "differs from its manifest's sha256" in caplog.text


def test_gensim_data_name_needs_the_opt_in(monkeypatch, caplog, small_kv):
    import gensim.downloader

    calls = []
    monkeypatch.setattr(gensim.downloader, "load", lambda name: calls.append(name) or small_kv)
    with pytest.raises(ConfigError) as e:
        load_glove("glove-wiki-gigaword-50")
    msg = str(e.value)
    assert "\n" not in msg and msg.startswith("aug.word_vectors='glove-wiki-gigaword-50' is a gensim-data name")
    assert "imports Python code from the internet" in msg and "HF_HUB_OFFLINE" in msg
    assert "aug.allow_gensim_download=true" in msg and calls == []  # refused before the downloader runs
    with caplog.at_level("WARNING", logger="data_aug.glove"):
        kv = load_glove("glove-wiki-gigaword-50", vocab_size=None, allow_gensim_download=True)
    assert calls == ["glove-wiki-gigaword-50"] and len(kv.index_to_key) == len(VEC_WORDS)
    assert "gensim.downloader" in caplog.text and "from the internet" in caplog.text
    with pytest.raises(ConfigError, match="aug.allow_gensim_download"):
        AugConfig.from_cfg({"allow_gensim_download": "yes"})


def test_augmentation_with_the_default_gensim_name_stops_without_writing(glue_dir, tmp_path, mlm, monkeypatch):
    import gensim.downloader

    monkeypatch.setattr(gensim.downloader, "load", lambda name: pytest.fail("gensim downloader called"))
    assert AugConfig().word_vectors == "glove-wiki-gigaword-300" and AugConfig().allow_gensim_download is False
    art = tmp_path / "artifacts"
    with pytest.raises(ConfigError, match="allow_gensim_download"):
        ensure_augmented(small_cfg(), "mrpc", glue_dir, art, mlm_model=mlm, stopwords=STOP, progress=False)
    assert not list((art / "aug" / "mrpc").glob("*.tsv")) and not (art / "aug" / "mrpc" / "manifest.json").exists()


def test_offline_glove_file_needs_no_opt_in(tmp_path):
    f = tmp_path / "vectors.txt"
    f.write_text("".join(f"{w} {' '.join(map(str, v))}\n" for w, v in VEC_WORDS.items()), encoding="utf-8")
    assert len(load_glove(str(f), vocab_size=None).index_to_key) == len(VEC_WORDS)


def test_aug_configs_keep_the_gensim_download_off(compose_cfg):
    on = AugConfig.from_cfg(compose_cfg("aug=on").aug)
    assert on.word_vectors == "glove-wiki-gigaword-300" and on.allow_gensim_download is False
    offline = AugConfig.from_cfg(compose_cfg("aug=offline").aug)
    assert offline.word_vectors.endswith("glove/glove.6B.50d.top50k.txt") and offline.allow_gensim_download is False
