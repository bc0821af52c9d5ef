"""Entry point: compose the Hydra config and run the chosen stage.

    python train.py stage=finetune task=mrpc
    python train.py stage=general
    python train.py stage=task task=mrpc aug=on
    python train.py -m stage=task task=mrpc ablation=none,no_trm,no_emb,no_pred
"""

from __future__ import annotations

import logging
import sys

import hydra
from omegaconf import DictConfig

from tinydistill.errors import StageInterrupted, TinyDistillError

log = logging.getLogger("tinydistill")


@hydra.main(version_base="1.3", config_path="conf", config_name="config")
def main(cfg: DictConfig) -> None:
    # Imported here, after Hydra has composed the config: torch and Lightning take seconds to import, and a typo in
    # an override (an unknown task or option) should fail at once.
    from tinydistill.stages import run

    try:
        run(cfg)
    except TinyDistillError as e:
        # Bad input (data, config, paths): one clear line, no traceback.
        log.error("%s", e)
        sys.exit(2)
    except StageInterrupted as e:
        log.error("%s", e)
        sys.exit(e.exit_code)


if __name__ == "__main__":
    main()
