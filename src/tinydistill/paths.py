"""Paths as results record them (metrics.json, reports).

Logs and checkpoints live under Hydra's absolute output folder. Recorded as is, a committed report would
carry one machine's absolute paths and point nowhere on another. Paths under the working directory (the one
train.py runs from, which relative config paths are already relative to) are therefore recorded relative to it.
"""

from __future__ import annotations

import os
from pathlib import Path


def recorded_path(path: str | os.PathLike | None) -> str | None:
    """`path` relative to the working directory when it lies inside it, else absolute; None or "" stays None."""
    if not path:
        return None
    resolved = Path(path).resolve()
    try:
        return str(resolved.relative_to(Path.cwd().resolve()))
    except ValueError:
        return str(resolved)
