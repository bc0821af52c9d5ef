"""stage=init_student: export a randomly initialised student, the "no general distillation" baseline.

    python train.py stage=init_student            # -> artifacts/random/<student.name>/

The student is built exactly as stage=general builds its starting point (same config, same ``seed``, the
teacher's tokenizer), so fine-tuning it against the general-distilled one compares like with like.
"""

from __future__ import annotations

import logging
from typing import Any

from omegaconf import DictConfig

from tinydistill.models.loading import export_pretrained, load_tokenizer
from tinydistill.models.student import build_student, load_config

log = logging.getLogger(__name__)


def run(cfg: DictConfig) -> dict[str, Any]:
    st = cfg.stage
    student = build_student(cfg.student, load_config(st.teacher), seed=cfg.seed)
    result = {
        "stage": "init_student",
        "teacher": str(st.teacher),
        "student": cfg.student.name,
        "seed": cfg.seed,
        "parameters": sum(p.numel() for p in student.parameters()),
    }
    out = export_pretrained(st.output_dir, student, load_tokenizer(st.teacher), json_files={"init_student.json": result})
    log.info("randomly initialised student: %s", out)
    result["output_dir"] = str(out)
    return result
