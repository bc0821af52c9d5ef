"""stage=finetune: fine-tune a model (the teacher by default) on a GLUE task and export it."""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Any

from lightning.pytorch.callbacks import ModelCheckpoint
from omegaconf import DictConfig, OmegaConf

from tinydistill.data.glue import GlueDataModule
from tinydistill.data.tasks import get_task
from tinydistill.models.loading import export_pretrained, load_classifier, load_tokenizer
from tinydistill.modules.finetune import FinetuneModule
from tinydistill.stages.common import best_checkpoint_callback, dev_metrics, validate_best
from tinydistill.trainer import build_trainer

log = logging.getLogger(__name__)


def run(cfg: DictConfig) -> dict[str, Any]:
    task = get_task(cfg.task.name)
    st = cfg.stage
    tokenizer = load_tokenizer(st.model)
    datamodule = GlueDataModule(
        task.name,
        tokenizer,
        max_seq_length=cfg.task.max_seq_length,
        data_dir=cfg.paths.data_dir,
        cache_dir=cfg.paths.cache_dir,
        batch_size=st.batch_size,
        eval_batch_size=st.eval_batch_size,
        num_workers=cfg.data.num_workers,
        group_by_length=cfg.data.group_by_length,
    )
    module = FinetuneModule(
        load_classifier(st.model, task),
        task,
        lr=st.lr,
        weight_decay=st.weight_decay,
        warmup_proportion=st.warmup_proportion,
        schedule=st.schedule,
    )
    checkpoint = best_checkpoint_callback(cfg, task)
    trainer = build_trainer(cfg, callbacks=[checkpoint])
    trainer.fit(module, datamodule=datamodule, ckpt_path=cfg.ckpt_path)
    metrics = dev_metrics(task, validate_best(trainer, module, datamodule, checkpoint))
    result = {
        "stage": "finetune",
        "task": task.name,
        "model": str(st.model),
        "seed": cfg.seed,
        "epochs": st.epochs,
        "best_checkpoint": checkpoint.best_model_path or None,
        **metrics,
    }
    if trainer.is_global_zero:
        out = export_pretrained(
            st.output_dir, module.classifier, tokenizer, json_files={"metrics.json": result}
        )
        log.info("fine-tuned model: %s", out)
        log.info("dev metrics: %s", metrics)
        result["output_dir"] = str(out)
    return result
