"""A run's settings beside its result (`run_config.yaml`), and what sets runs' settings apart.

Every stage writes its composed config, resolved, next to the result it exports. The report aggregates runs that
share a task, stage and run name over their seeds; :func:`config_differences` names any setting other than the seed
in which they differ, e.g. seeds left by an earlier version of a recipe under the same run name. With
`skip_done=true` a stage whose result already exists does nothing if that result was made with the same settings,
and stops with the setting that differs if not (:func:`result_is_current`): `make sst2` / `make mrpc` rerun after a
recipe changed never keep a result of the old recipe.
"""

from __future__ import annotations

import logging
import re
from pathlib import Path
from typing import Any

import yaml
from omegaconf import DictConfig, OmegaConf

from tinydistill.errors import ConfigError

log = logging.getLogger(__name__)

RUN_CONFIG = "run_config.yaml"
#: Not settings of a result: where a run writes and logs, how it shows progress, and how it was started (resumed,
#: skip_done).
NOT_SETTINGS = ("ckpt_path", "skip_done", "paths.", "logger.", "hydra.", "trainer.progress",
                "trainer.enable_progress_bar")
#: Settings that differ between the seeds of one experiment by design.
PER_RUN = ("seed", *NOT_SETTINGS)
#: Every stage's result is a Hugging Face folder, exported atomically as the stage's last step.
FINISHED = "config.json"
_PATH_ROOTS = ("paths.data_dir", "paths.artifacts_dir", "paths.cache_dir")
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
    for a run with no saved settings, left out), with its values in run order. A setting only some runs saved
    (added to tinydistill, or moved, since the others ran) is not a difference, as for `skip_done`."""
    known = [c for c in configs if c is not None]
    if len(known) < 2:
        return {}

    def comparable(value: Any) -> Any:  # artifacts/.../seed42 and .../seed1 are the same setting
        return _SEED_IN_PATH.sub("seed<N>", value) if isinstance(value, str) else value

    keys = sorted(k for k in set.intersection(*(set(c) for c in known)) if not k.startswith(PER_RUN))
    return {k: [c.get(k) for c in known] for k in keys if len({repr(comparable(c.get(k))) for c in known}) > 1}


def result_is_current(cfg: DictConfig, folder: str | Path) -> bool:
    """For `skip_done=true`: True when `folder` holds a finished result made with `cfg`'s settings (seed included;
    where runs write and log aside), False when it holds no finished result. A result made with other settings
    raises ConfigError naming them; one saved before run_config.yaml existed counts as current, with a warning."""
    folder = Path(folder)
    if not (folder / FINISHED).is_file():
        return False
    saved = load_run_config(folder)
    if saved is None:
        log.warning("skip_done: %s has a result but no %s (made by an older version, or stopped right after its "
                    "export): kept without comparing its settings", folder, RUN_CONFIG)
        return True
    now = flatten(yaml.safe_load(run_config_yaml(cfg)))
    saved = _rebased(saved, now)
    differ = {k: (saved[k], now[k]) for k in sorted(saved.keys() & now.keys())
              if not k.startswith(NOT_SETTINGS) and saved[k] != now[k]}
    if differ:
        shown = "; ".join(f"{k}={there!r} there, {here!r} now" for k, (there, here) in list(differ.items())[:3])
        more = f" (and {len(differ) - 3} more)" if len(differ) > 3 else ""
        raise ConfigError(f"skip_done: {folder} holds a result made with other settings: {shown}{more}; delete that "
                          f"folder to make it again, or write this run elsewhere (stage.run_name or stage.output_dir)")
    unmatched = sorted(k for k in saved.keys() ^ now.keys() if not k.startswith(NOT_SETTINGS))
    if unmatched:  # settings added or removed since that result: their values cannot be compared
        log.warning("skip_done: %s: settings only one of the two runs has, not compared: %s", folder,
                    ", ".join(unmatched))
    log.info("skip_done: %s is up to date (same settings): nothing to do", folder)
    return True


def _rebased(saved: dict[str, Any], now: dict[str, Any]) -> dict[str, Any]:
    """`saved` with its data, artifacts and cache folders replaced by today's wherever a value starts with one: a
    result made in another checkout or with another data folder is the same result."""
    out = dict(saved)
    for key in _PATH_ROOTS:
        old, new = saved.get(key), now.get(key)
        if not (isinstance(old, str) and isinstance(new, str)) or old == new:
            continue
        for k, v in out.items():
            if isinstance(v, str) and (v == old or v.startswith(old.rstrip("/") + "/")):
                out[k] = new + v[len(old):]
    return out
