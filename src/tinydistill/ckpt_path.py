"""Which `ckpt_path=` values a run accepts: remote checkpoints are refused.

Lightning reads any `ckpt_path` that starts with "http" as a URL and loads it with
`torch.hub.load_state_dict_from_url(..., weights_only=False)`: full unpickling, which runs whatever code
the file carries. A checkpoint from the internet must be downloaded and checked first, then resumed from
its local path.
"""

from __future__ import annotations

import os
import re

from tinydistill.errors import ConfigError

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
