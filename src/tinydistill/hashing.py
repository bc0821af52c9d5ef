"""Content hashes of files, read in blocks so a large corpus never sits in memory."""

from __future__ import annotations

import hashlib
import os
from collections.abc import Callable

BLOCK = 1 << 20


def sha256_file(path: str | os.PathLike, on_block: Callable[[bytes], None] | None = None) -> str:
    """The hex sha256 of the file's bytes; `on_block` sees each block too (e.g. to count lines in the same pass)."""
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(BLOCK), b""):
            h.update(block)
            if on_block is not None:
                on_block(block)
    return h.hexdigest()
