"""stage=mlm: train a masked-LM head on the general corpus for an encoder that has none.

    python train.py stage=mlm                 # MiniLM teacher -> artifacts/mlm/minilm_l6/
    python train.py stage=mlm stage.train_encoder=true

The result is a `BertForMaskedLM` in Hugging Face format with `mlm.json` holding its masked-token
accuracy on held-out corpus instances (the same 15% 80/10/10 masking as training).
"""

from __future__ import annotations

import logging
from typing import Any

from omegaconf import DictConfig
from transformers import BertForMaskedLM

from tinydistill.data.corpus import CorpusDataModule, CorpusSource
from tinydistill.models.loading import export_pretrained, load_tokenizer, resolve_model_path
from tinydistill.modules.mlm import MlmModule
from tinydistill.trainer import build_trainer, validate_every_n_steps

log = logging.getLogger(__name__)

RESULT_JSON = "mlm.json"


def run(cfg: DictConfig) -> dict[str, Any]:
    st = cfg.stage
    tokenizer = load_tokenizer(st.model)
    # The encoder's weights load; the head (transform, bias) starts from BERT's initialisation.
    model = BertForMaskedLM.from_pretrained(resolve_model_path(st.model))
    module = MlmModule(
        model, lr=st.lr, train_encoder=st.train_encoder, weight_decay=st.weight_decay,
        warmup_proportion=st.warmup_proportion, schedule=st.schedule,
    )
    datamodule = CorpusDataModule(
        CorpusSource.from_config(st.corpus), tokenizer, max_seq_length=st.max_seq_length,
        cache_dir=cfg.paths.cache_dir, batch_size=st.batch_size, eval_batch_size=st.eval_batch_size,
        val_size=st.val_size, seed=cfg.seed, num_workers=cfg.data.num_workers,
        group_by_length=cfg.data.group_by_length, mlm_probability=st.mlm_probability, with_mlm_labels=True,
    )
    overrides: dict[str, Any] = {}
    if st.max_steps > 0:
        overrides["max_epochs"] = -1
    overrides.update(validate_every_n_steps(cfg, st.val_every_n_steps))
    trainer = build_trainer(cfg, enable_checkpointing=False, **overrides)
    trainer.fit(module, datamodule=datamodule, ckpt_path=cfg.ckpt_path)
    val = {}
    for r in trainer.validate(module, datamodule=datamodule, verbose=False):
        val.update({k.split("/", 1)[1]: float(v) for k, v in r.items()})
    result = {
        "stage": "mlm",
        "model": str(st.model),
        "train_encoder": bool(st.train_encoder),
        "steps": trainer.global_step,
        "mlm_probability": st.mlm_probability,
        "held_out": val,
        "corpus": datamodule.summary(),
        "seed": cfg.seed,
    }
    if trainer.is_global_zero:
        out = export_pretrained(st.output_dir, module.model, tokenizer, json_files={RESULT_JSON: result})
        log.info("masked LM: %s (held-out masked-token accuracy %.3f)", out, val.get("masked_accuracy", float("nan")))
        result["output_dir"] = str(out)
    return result
