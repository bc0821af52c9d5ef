"""`python -m tinydistill.data.fetch`: the data folder's layout, the manifest, skipping and atomic writes, with the
hub, NLTK's downloader and the GloVe package replaced by small local stand-ins (no network)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from datasets import ClassLabel, Dataset, Features, Value

from tinydistill.data import fetch
from tinydistill.data.glue_tsv import read_glue_tsv, table_to_examples
from tinydistill.data.tasks import get_task

WIKI = [" = Lobster = \n", "", " The lobster is blue . It turns red when cooked . \n", " = = Biology = = \n",
        " It grows to 60 @-@ 70 cm . \n", "", " = Valkyria = \n", " A game released in 2011 . \n"]


def _hub(name: str, config: str, split: str) -> Dataset:
    """Small stand-ins for the hub's GLUE and WikiText splits, with the hub's columns and label types."""
    if name == fetch.HUB_WIKITEXT[0]:
        return Dataset.from_dict({"text": WIKI if split == "train" else []})
    test = split.startswith("test")
    n = 3

    def labels(names):
        return Features({**{c: Value("string") for c in cols}, "label": ClassLabel(names=names), "idx": Value("int32")})

    if config == "sst2":
        cols = ["sentence"]
        data = {"sentence": ["a fine film . ", "dull \"and\" slow", "tab\there"]}
        feats = labels(["negative", "positive"])
    elif config == "cola":
        cols = ["sentence"]
        data = {"sentence": ["The cat sat.", "Cat the sat.", "It rained."]}
        feats = labels(["unacceptable", "acceptable"])
    elif config in ("mrpc", "rte", "wnli"):
        cols = ["sentence1", "sentence2"]
        data = {"sentence1": ["a", "b", "c"], "sentence2": ["x", "y", "z"]}
        feats = labels({"mrpc": ["not_equivalent", "equivalent"], "rte": ["entailment", "not_entailment"],
                        "wnli": ["not_entailment", "entailment"]}[config])
    elif config == "stsb":
        cols = ["sentence1", "sentence2"]
        data = {"sentence1": ["a", "b", "c"], "sentence2": ["x", "y", "z"]}
        feats = Features({"sentence1": Value("string"), "sentence2": Value("string"), "label": Value("float32"),
                          "idx": Value("int32")})
        data["label"] = [-1.0] * n if test else [0.0, 2.5, 5.0]
        return Dataset.from_dict({**data, "idx": list(range(n))}, features=feats)
    else:
        raise AssertionError(f"unexpected hub request {name} {config} {split}")
    data["label"] = [-1] * n if test else [0, 1, 1]
    if test:  # the hub's test labels are -1, which a ClassLabel does not hold
        feats = Features({**{c: Value("string") for c in cols}, "label": Value("int64"), "idx": Value("int32")})
    return Dataset.from_dict({**data, "idx": list(range(n))}, features=feats)


def _nltk(package: str, download_dir: Path) -> None:
    folder = download_dir / fetch.NLTK_PACKAGES[package]
    if package == "stopwords":
        folder.mkdir(parents=True)
        (folder / "english").write_text("the\na\nand\n")
        (folder / "README").write_text("stop words\n")
    else:
        import shutil

        import nltk

        # The real English punkt_tab model, copied from the data folder NLTK finds (the shared one under make test).
        source = Path(nltk.data.find("tokenizers/punkt_tab/english"))
        shutil.copytree(source, folder / "english")
    (download_dir / f"{fetch.NLTK_PACKAGES[package]}.zip").write_text("zip")


@pytest.fixture
def offline_sources(monkeypatch):
    pytest.importorskip("nltk")
    import nltk

    try:
        nltk.data.find("tokenizers/punkt_tab/english")
    except LookupError:
        pytest.skip("NLTK punkt_tab not found (the data folder's nltk_data)")
    calls = []
    monkeypatch.setattr(fetch, "load_hub_dataset", lambda *a: calls.append(a) or _hub(*a))
    monkeypatch.setattr(fetch, "download_nltk", _nltk)
    monkeypatch.setattr(fetch, "glove_rows", lambda n: iter(["the 0.418 0.24968", ", 0.013441 0.23682"][:n]))
    return calls


def test_fetch_writes_the_shared_layout_and_a_manifest(tmp_path, offline_sources, capsys):
    out = fetch.fetch(tmp_path / "data", tasks=["sst2", "mrpc", "cola", "stsb", "rte", "wnli"])
    for task_name in ("sst2", "mrpc", "cola", "stsb", "rte", "wnli"):
        task = get_task(task_name)
        for split in ("train", "dev"):
            examples = table_to_examples(read_glue_tsv(out / "glue" / task.folder / f"{split}.tsv", task), task)
            assert len(examples["text_a"]) == 3, (task_name, split)
            assert len(examples["label"]) == 3
        test = (out / "glue" / task.folder / "test.tsv").read_text(encoding="utf-8").splitlines()
        assert len(test) == 4 and test[0].startswith("index\t"), (task_name, test[0])  # a header, no labels
    sst2 = (out / "glue/SST-2/train.tsv").read_text(encoding="utf-8").splitlines()
    assert sst2[0] == "sentence\tlabel" and sst2[1] == "a fine film . \t0"
    assert sst2[3] == "tab here\t1"  # a tab inside a field would shift the columns
    assert (out / "glue/MRPC/train.tsv").read_bytes().startswith(b"\xef\xbb\xbfQuality\t#1 ID")
    assert (out / "glue/RTE/dev.tsv").read_text().splitlines()[1].endswith("\tentailment")
    assert (out / "glue/WNLI/dev.tsv").read_text().splitlines()[2].endswith("\t1")
    assert (out / "glue/STS-B/train.tsv").read_text().splitlines()[2].endswith("\t2.500")
    assert (out / "glue/CoLA/train.tsv").read_text().splitlines()[0] == "hub\t0\t*\tThe cat sat."
    # The corpus: one sentence per line, a blank line between articles, headings dropped, WikiText's @-@ undone.
    assert (out / fetch.CORPUS_FILE).read_text() == (
        "The lobster is blue .\nIt turns red when cooked .\nIt grows to 60-70 cm .\n\nA game released in 2011 .\n")
    assert (out / fetch.GLOVE_FILE).read_text().startswith("the 0.418 0.24968\n")
    assert (out / "nltk_data/corpora/stopwords/english").is_file()
    assert not list((out / "nltk_data").rglob("*.zip"))
    manifest = json.loads((out / fetch.MANIFEST).read_text())["files"]
    on_disk = {str(p.relative_to(out)) for p in out.rglob("*") if p.is_file() and p.name != fetch.MANIFEST}
    assert set(manifest) == on_disk
    for rel, entry in manifest.items():
        assert entry["sha256"] == fetch.sha256(out / rel) and entry["bytes"] == (out / rel).stat().st_size
    assert not [p for p in out.rglob("*") if ".tmp-" in p.name or p.name.startswith(".nltk-")]
    assert "[fetch] glue/SST-2/train.tsv: 3 rows" in capsys.readouterr().out


def test_a_second_run_skips_what_matches_and_refetches_what_changed(tmp_path, offline_sources, capsys):
    out = fetch.fetch(tmp_path / "data", tasks=["sst2"])
    first = len(offline_sources)
    capsys.readouterr()
    fetch.fetch(out, tasks=["sst2"])
    assert len(offline_sources) == first  # nothing asked of the hub
    assert capsys.readouterr().out.count("up to date, skipped") == 5  # 2 NLTK packages, corpus, SST-2, GloVe
    (out / "glue/SST-2/dev.tsv").write_text("sentence\tlabel\nedited\t1\n")
    fetch.fetch(out, tasks=["sst2"])
    assert len(offline_sources) == first + 3  # SST-2's three splits again, nothing else
    assert "edited" not in (out / "glue/SST-2/dev.tsv").read_text()


def test_a_failed_part_leaves_no_partial_file(tmp_path, offline_sources, monkeypatch):
    def broken(n):
        yield "the 0.1 0.2"
        raise ConnectionError("network went away")

    monkeypatch.setattr(fetch, "glove_rows", broken)
    with pytest.raises(ConnectionError):
        fetch.fetch(tmp_path / "data", tasks=[], parts=["glove"])
    assert not (tmp_path / "data" / fetch.GLOVE_FILE).exists()
    assert not list((tmp_path / "data").rglob("*.tmp-*"))


def test_main_rejects_an_unknown_task(tmp_path):
    with pytest.raises(SystemExit):
        fetch.main(["--out", str(tmp_path), "--tasks", "sst2,nosuch"])


def test_headers_match_the_shared_files(tmp_path, offline_sources):
    import os

    shared = Path(os.environ.get("TINYDISTILL_DATA_DIR") or "/nonexistent")
    if not (shared / "glue").is_dir():
        pytest.skip("no data folder to compare with")
    out = fetch.fetch(tmp_path / "data", tasks=list(fetch.DEFAULT_TASKS), parts=["glue"])
    for name in fetch.DEFAULT_TASKS:
        folder = get_task(name).folder
        for split in ("train", "dev", "test"):
            theirs = shared / "glue" / folder / f"{split}.tsv"
            if not theirs.is_file() or fetch.LAYOUTS[name]["header"] is None and split != "test":
                continue
            first = theirs.read_bytes().split(b"\n", 1)[0]
            assert (out / "glue" / folder / f"{split}.tsv").read_bytes().split(b"\n", 1)[0] == first, (folder, split)
