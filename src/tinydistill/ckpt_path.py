"""Which `ckpt_path=` values a run accepts: remote checkpoints are refused, local ones must be intact.

Lightning reads any `ckpt_path` that starts with "http" as a URL and loads it with
`torch.hub.load_state_dict_from_url(..., weights_only=False)`: full unpickling, which runs whatever code
the file carries. A checkpoint from the internet must be downloaded and checked first, then resumed from
its local path.
"""

from __future__ import annotations

import os
import re
import zipfile
from pathlib import Path
from typing import Any

from tinydistill.errors import ConfigError, DataError, first_line

#: ckpt_path values Lightning resolves itself instead of reading a file.
LIGHTNING_CKPT_NAMES = ("last", "best", "hpc", "registry")

_URL = re.compile(r"https?://", re.IGNORECASE)


def check_ckpt_path(ckpt_path: str | os.PathLike | None) -> None:
    """Raise ConfigError (one line naming `ckpt_path`) for a path Lightning would fetch and fully unpickle."""
    if ckpt_path is None:
        return
    text = str(ckpt_path)
    if _URL.match(text):
        raise ConfigError(
            f"ckpt_path={text!r}: remote checkpoints are refused (Lightning unpickles a URL with "
            f"weights_only=False, which runs any code in the file); download it, check its source, "
            f"and pass the local path"
        )
    if text.startswith("http"):  # Lightning's own test for a URL (lightning.fabric.utilities.cloud_io._load)
        raise ConfigError(
            f"ckpt_path={text!r}: Lightning reads a path starting with 'http' as a URL; write it as ./{text}"
        )


def check_checkpoint_file(ckpt: Any) -> None:
    """A local checkpoint file whose zip structure and CRCs are intact (torch.save's format; nothing unpickled).
    URLs are refused before, by `ckpt_path.check_ckpt_path`."""
    if ckpt is None or str(ckpt) in LIGHTNING_CKPT_NAMES:
        return
    path = Path(str(ckpt)).expanduser()
    if not path.is_file():
        raise ConfigError(f"ckpt_path={ckpt}: no such checkpoint file (resume from "
                          f"<run dir>/checkpoints/last.ckpt, or set ckpt_path=null)")
    try:
        with zipfile.ZipFile(path) as archive:
            if not any(n.rsplit("/", 1)[-1] == "data.pkl" for n in archive.namelist()):
                problem = "not a PyTorch checkpoint (no data.pkl inside)"
            else:
                damaged = archive.testzip()  # reads every member and compares its CRC
                problem = f"damaged ({damaged} fails its CRC check)" if damaged else ""
    except (zipfile.BadZipFile, OSError, EOFError) as e:
        problem = f"not a readable checkpoint, truncated or of another format ({first_line(e)})"
    if problem:
        raise DataError(f"ckpt_path={ckpt}: {problem}; resume from another checkpoint or set ckpt_path=null")
