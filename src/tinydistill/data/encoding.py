"""Locating the byte that makes a text file not UTF-8, for errors that name its line.

Readers decode as usual and call :func:`non_utf8_error` only when decoding failed, so a good file is read once.
"""

from __future__ import annotations

import os
from pathlib import Path

from tinydistill.errors import DataError


def first_non_utf8(path: str | os.PathLike) -> tuple[int, int, int] | None:
    """(line, column, byte) of the first byte that is not valid UTF-8, 1-based; None if the file is UTF-8."""
    with open(path, "rb") as f:
        # Per line: a newline byte never occurs inside a multi-byte UTF-8 sequence.
        for number, line in enumerate(f, 1):
            try:
                line.decode("utf-8")
            except UnicodeDecodeError as e:
                return number, e.start + 1, line[e.start]
    return None


def non_utf8_error(path: str | os.PathLike, what: str) -> DataError:
    """The one-line DataError for a `what` file (e.g. "GLUE file") that is not UTF-8, naming line and byte."""
    found = first_non_utf8(path)
    where = f"line {found[0]}: byte 0x{found[2]:02x} (column {found[1]})" if found else "a byte"
    return DataError(f"{Path(path)}: {where} is not UTF-8; a {what} must be UTF-8 text (re-save it as UTF-8)")
