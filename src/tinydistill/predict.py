"""Label texts with an exported classifier: one output line per input line, batched, on PyTorch or ONNX Runtime.

    python -m tinydistill.predict artifacts/task/sst2/none-noaug/seed42 --file reviews.tsv
    echo "a gripping , funny film ." | python -m tinydistill.predict artifacts/task/sst2/none-noaug/seed42/onnx
    python -m tinydistill.predict artifacts/task/mrpc/none/seed42/onnx/model_int8.onnx --file pairs.jsonl

The model is a classifier folder (PyTorch), a folder written by `python -m tinydistill.export` (ONNX Runtime, its
model.onnx) or an .onnx file in such a folder (e.g. model_int8.onnx). When `python -m tinydistill.serve bench` has
recorded a choice for the folder (its export.json), that backend serves it (`--backend as-given`: the path as
given; `--backend <name>`: another candidate of its table).

Input (`--file`, default `-`: stdin), one input per line:
- TSV (any file but .jsonl/.json): a text, or two tab-separated texts for a sentence pair;
- JSONL (`.jsonl`, `.json`): {"text": ...} or {"text": ..., "text_pair": ...} (`"text_pair": null`: a single text).
Stdin is JSONL when its first line starts with `{` (`--input-format` decides otherwise). Every line must be well
formed, all single texts or all pairs: a bad line stops the command with one line naming the file and line, exit
code 2, before anything is predicted.

Output: `<label>\\t<score>` per input, the label name (the config's id2label) and its softmax probability; for a
regression model (STS-B) the predicted score alone. `--format jsonl`: {"label": ..., "score": ...} per line.
"""

from __future__ import annotations

import argparse
import json
import sys
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import BinaryIO, TextIO

import numpy as np
import torch
from transformers.utils import logging as hf_logging

from tinydistill.errors import ConfigError, DataError, TinyDistillError
from tinydistill.inference import Classifier, load_choice, load_classifier, recorded_choice

STDIN = "-"
#: --backend: the backend `serve bench` recorded (else the path as given), or the path as given.
RECORDED, AS_GIVEN = "recorded", "as-given"
JSONL_SUFFIXES = (".jsonl", ".json")
JSONL_KEYS = ("text", "text_pair")


@dataclass
class Inputs:
    texts: list[str]
    pairs: list[str] | None  # None: single texts

    def __len__(self) -> int:
        return len(self.texts)


def _lines(name: str, stream: BinaryIO) -> Iterator[tuple[int, str]]:
    """(line number, text) of every line, decoded as UTF-8 without its line ending."""
    for n, raw in enumerate(stream, start=1):
        try:
            line = raw.decode("utf-8")
        except UnicodeDecodeError as e:
            raise DataError(f"{name}: line {n}: byte 0x{raw[e.start]:02x} (column {e.start + 1}) is not UTF-8; "
                            f"the input must be UTF-8 text") from None
        if n == 1:
            line = line.removeprefix("\ufeff")  # a byte-order mark some editors write
        yield n, line.rstrip("\r\n")


def _collect(name: str, rows: Iterator[tuple[int, list[str]]]) -> Inputs:
    """Texts (and pairs) from (line number, [text] or [text, pair]) rows, all of one kind."""
    texts: list[str] = []
    pairs: list[str] = []
    width = None
    for n, cols in rows:
        for i, c in enumerate(cols):
            if not c.strip():
                raise DataError(f"{name}: line {n}: {'text' if i == 0 else 'the pair text'} is empty")
        if width is None:
            width = len(cols)
        elif len(cols) != width:
            kinds = {1: "a single text", 2: "a sentence pair"}
            raise DataError(f"{name}: line {n}: {kinds[len(cols)]}, but line 1 is {kinds[width]}: give single "
                            f"texts or sentence pairs, not both")
        texts.append(cols[0])
        if len(cols) == 2:
            pairs.append(cols[1])
    return Inputs(texts, pairs if width == 2 else None)


def parse_tsv(name: str, lines: Iterator[tuple[int, str]]) -> Inputs:
    def rows() -> Iterator[tuple[int, list[str]]]:
        for n, line in lines:
            if not line.strip():
                raise DataError(f"{name}: line {n}: empty line; every line is one input (a text, or two "
                                f"tab-separated texts)")
            cols = line.split("\t")
            if len(cols) > 2:
                raise DataError(f"{name}: line {n}: {len(cols)} tab-separated columns; expected 1 (a text) or 2 "
                                f"(a sentence pair)")
            yield n, cols

    return _collect(name, rows())


def parse_jsonl(name: str, lines: Iterator[tuple[int, str]]) -> Inputs:
    def rows() -> Iterator[tuple[int, list[str]]]:
        for n, line in lines:
            try:
                obj = json.loads(line)
            except ValueError as e:
                raise DataError(f"{name}: line {n}: not valid JSON ({e})") from None
            if not isinstance(obj, dict):
                raise DataError(f"{name}: line {n}: expected a JSON object {{\"text\": ...}}, found "
                                f"{type(obj).__name__}")
            unknown = sorted(set(obj) - set(JSONL_KEYS))
            if unknown:
                raise DataError(f"{name}: line {n}: unknown key {unknown[0]!r}; the keys are \"text\" and, for a "
                                f"sentence pair, \"text_pair\"")
            if "text" not in obj:
                raise DataError(f"{name}: line {n}: no \"text\"")
            if "text_pair" in obj and obj["text_pair"] is None:  # a null pair: a single text, as without the key
                del obj["text_pair"]
            cols = [obj[k] for k in JSONL_KEYS if k in obj]
            bad = next((k for k in JSONL_KEYS if k in obj and not isinstance(obj[k], str)), None)
            if bad:
                raise DataError(f"{name}: line {n}: \"{bad}\" must be a string, found {type(obj[bad]).__name__}")
            yield n, cols

    return _collect(name, rows())


def read_inputs(source: str, input_format: str = "auto", stdin: BinaryIO | None = None) -> Inputs:
    """The inputs in `source` (a file, or `-` for stdin) as TSV or JSONL (`auto`: by suffix; stdin by its first
    line)."""
    if source == STDIN:
        name = "<stdin>"
        data = (stdin or sys.stdin.buffer).read().splitlines(keepends=True)
    else:
        path = Path(source)
        name = str(path)
        if not path.is_file():
            raise DataError(f"{name}: file not found" if not path.exists() else f"{name}: not a file")
        data = path.read_bytes().splitlines(keepends=True)
    if input_format == "auto":
        if source == STDIN:
            first = next((line.lstrip() for line in data if line.strip()), b"")
            input_format = "jsonl" if first.startswith((b"{", b"\xef\xbb\xbf{")) else "tsv"
        else:
            input_format = "jsonl" if Path(source).suffix.lower() in JSONL_SUFFIXES else "tsv"
    parse = parse_jsonl if input_format == "jsonl" else parse_tsv
    return parse(name, _lines(name, iter(data)))


def predict(
    clf: Classifier, inputs: Inputs, batch_size: int = 32, max_seq_length: int = 128
) -> list[tuple[str, float]]:
    """(label name, probability) per input; for a regression model (label "score", predicted score)."""
    out: list[tuple[str, float]] = []
    names = clf.label_names
    for start in range(0, len(inputs), batch_size):
        texts = inputs.texts[start:start + batch_size]
        pairs = inputs.pairs[start:start + batch_size] if inputs.pairs is not None else None
        batch = clf.tokenizer(texts, pairs, padding=True, truncation=True, max_length=max_seq_length,
                              return_tensors="pt")
        logits = clf.logits(batch)
        if clf.is_regression:
            out += [("score", float(v)) for v in logits.reshape(-1)]
            continue
        probs = torch.softmax(torch.from_numpy(np.ascontiguousarray(logits)), dim=-1)
        score, idx = probs.max(dim=-1)
        out += [(names[i], float(s)) for i, s in zip(idx.tolist(), score.tolist())]
    return out


def load_model(path: str, threads: int | None = None, backend: str = RECORDED) -> Classifier:
    """The classifier to serve: `recorded`, the backend `python -m tinydistill.serve bench` chose for the folder
    (the path as given when none is recorded); `as-given`, the path as given; else a candidate of the recorded
    table by name (`pytorch bf16`, ...)."""
    if backend == AS_GIVEN:
        return load_classifier(path, threads)
    choice = recorded_choice(path, None if backend == RECORDED else backend)
    if choice is None and backend != RECORDED:
        raise ConfigError(f"--backend {backend}: {path} has no table of `python -m tinydistill.serve bench`")
    return load_choice(choice, threads) if choice is not None else load_classifier(path, threads)


def write_predictions(results: Sequence[tuple[str, float]], fmt: str, regression: bool, stream: TextIO) -> None:
    for label, score in results:
        if fmt == "jsonl":
            stream.write(json.dumps({"score": score} if regression else {"label": label, "score": score}) + "\n")
        else:
            stream.write(f"{score:.4f}\n" if regression else f"{label}\t{score:.4f}\n")


def main(argv: list[str] | None = None) -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("model", help="classifier folder, export folder (model.onnx) or .onnx file")
    p.add_argument("--file", default=STDIN, help="input file (.tsv/.txt or .jsonl), or - for stdin (default)")
    p.add_argument("--input-format", choices=("auto", "tsv", "jsonl"), default="auto")
    p.add_argument("--format", choices=("tsv", "jsonl"), default="tsv", help="output format")
    p.add_argument("--batch-size", type=int, default=32)
    p.add_argument("--max-seq-length", type=int, default=128, help="longer inputs are truncated")
    p.add_argument("--threads", type=int, default=None, help="threads for PyTorch or ONNX Runtime")
    p.add_argument("--backend", default=RECORDED, help=f"{RECORDED} (default): the backend `python -m "
                   f"tinydistill.serve bench` chose for this model, if any; {AS_GIVEN}: the path as given; or a "
                   f"candidate's name from that table (e.g. 'pytorch fp32')")
    a = p.parse_args(argv)
    hf_logging.disable_progress_bar()  # stderr keeps to warnings and errors
    if a.batch_size < 1 or a.max_seq_length < 2:
        p.error("--batch-size must be >= 1 and --max-seq-length >= 2")
    if a.threads:
        torch.set_num_threads(a.threads)
    try:
        clf = load_model(a.model, a.threads, a.backend)  # the model first: a wrong path never waits for stdin
        inputs = read_inputs(a.file, a.input_format)
        results = predict(clf, inputs, a.batch_size, a.max_seq_length)
    except TinyDistillError as e:
        print(f"error: {e}", file=sys.stderr)
        sys.exit(2)
    write_predictions(results, a.format, clf.is_regression, sys.stdout)


if __name__ == "__main__":
    main()
