"""A run's settings beside its result (`run_config.yaml`), and what sets runs' settings apart.

Every stage writes its composed config, resolved, next to the result it exports. The report aggregates runs that
share a task, stage and run name over their seeds; :func:`config_differences` names any setting other than the seed
in which they differ, e.g. seeds left by an earlier version of a recipe under the same run name.
"""

from __future__ import annotations

import logging
import re
from pathlib import Path
from typing import Any

import yaml
from omegaconf import DictConfig, OmegaConf

log = logging.getLogger(__name__)

RUN_CONFIG = "run_config.yaml"
#: Settings that differ between the seeds of one experiment by design: where each run writes and logs.
PER_RUN = ("seed", "ckpt_path", "paths.", "logger.", "hydra.")
_SEED_IN_PATH = re.compile(r"seed\d+")


def run_config_yaml(cfg: DictConfig) -> str:
    """The composed config as YAML, interpolations resolved (unresolved if one cannot be, outside a Hydra app)."""
    try:
        return OmegaConf.to_yaml(cfg, resolve=True)
    except Exception as e:  # noqa: BLE001 - any resolver failure: keep the settings as written
        log.debug("run config left unresolved: %s", e)
        return OmegaConf.to_yaml(cfg)


def load_run_config(folder: str | Path) -> dict[str, Any] | None:
    """The settings saved in `folder`, flattened to dotted keys; None when the folder has none (older runs) or
    they do not parse."""
    path = Path(folder) / RUN_CONFIG
    if not path.is_file():
        return None
    try:
        data = yaml.safe_load(path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, yaml.YAMLError) as e:
        log.warning("%s: not readable (%s); its run is not compared", path, e)
        return None
    return flatten(data) if isinstance(data, dict) else None


def flatten(tree: dict[str, Any], prefix: str = "") -> dict[str, Any]:
    flat: dict[str, Any] = {}
    for key, value in tree.items():
        name = f"{prefix}{key}"
        if isinstance(value, dict) and value:
            flat.update(flatten(value, name + "."))
        else:
            flat[name] = value
    return flat


def config_differences(configs: list[dict[str, Any] | None]) -> dict[str, list[Any]]:
    """Each setting, other than the seed and where runs write, that differs between `configs` (one per run; None
    for a run with no saved settings, left out), with its values in run order."""
    known = [c for c in configs if c is not None]
    if len(known) < 2:
        return {}

    def comparable(value: Any) -> Any:  # artifacts/.../seed42 and .../seed1 are the same setting
        return _SEED_IN_PATH.sub("seed<N>", value) if isinstance(value, str) else value

    keys = sorted({k for c in known for k in c if not k.startswith(PER_RUN)})
    return {k: [c.get(k) for c in known] for k in keys if len({repr(comparable(c.get(k))) for c in known}) > 1}
