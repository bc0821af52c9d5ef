"""`python -m data_aug task=<name> [aug.<key>=<value> ...]`: write <artifacts_dir>/aug/<task>/.
A user's task takes the same keys as train.py: `python -m data_aug task=custom task.train=... task.dev=...`.

Several processes share the work when started by torchrun (data_aug/distributed.py), e.g.
`torchrun --standalone --nproc-per-node 2 -m data_aug task=sst2 aug.num_threads=1`."""

from __future__ import annotations

from pathlib import Path

import hydra
from omegaconf import DictConfig

from data_aug import distributed
from data_aug.config import run_cli
from data_aug.pipeline import aug_dir, augment_task, ensure_augmented, read_manifest
from tinydistill.data.files import task_from_config
from tinydistill.errors import ConfigError

CONF_DIR = str(Path(__file__).resolve().parent.parent / "conf")


def run(cfg: DictConfig) -> Path | None:
    task = task_from_config(cfg.task)
    if not cfg.aug.enabled:
        raise ConfigError("aug.enabled is false (aug=off): nothing to do; use aug=on")
    if task.name in [str(t).lower() for t in (cfg.aug.skip_tasks or [])]:
        raise ConfigError(
            f"task {task.name} is in aug.skip_tasks={list(cfg.aug.skip_tasks)} (word replacement would "
            f"invalidate its labels); override with aug.skip_tasks=[] to augment it anyway"
        )
    data_dir = cfg.paths.data_dir
    artifacts = cfg.paths.artifacts_dir
    coordinator = distributed.from_environment()
    try:
        if cfg.get("force", False):
            out = aug_dir(artifacts, task, cfg.aug.get("output_dir"))
            path = augment_task(cfg.aug, task, data_dir, out, coordinator=coordinator)
        else:
            path = ensure_augmented(cfg.aug, task, data_dir, artifacts, coordinator=coordinator)
    finally:
        distributed.shutdown(coordinator)
    if not coordinator.is_main:
        return path
    m = read_manifest(path.parent) or {}
    counts = m.get("counts", {})
    print(
        f"{path}: {counts.get('rows', '?')} rows from {counts.get('examples', '?')} examples "
        f"(manifest: {path.parent / 'manifest.json'})"
    )
    return path


@hydra.main(version_base="1.3", config_path=CONF_DIR, config_name="augment")
def main(cfg: DictConfig) -> None:
    run_cli(run, cfg)


if __name__ == "__main__":
    main()
