"""`python -m data_aug.quality task=<name> aug.mlm_model=<name or folder>`: masked-LM candidate quality.

Config: conf/augment_quality.yaml (conf/augment.yaml plus n_sentences, n_examples, n_draws,
use_glove, out). Draws a fixed sample of the task's training sentences (seed aug.seed), runs the
augmentation's candidate generation on them with the aug.* settings (top_k, mode, alphabetic_only,
...), prints the statistics of data_aug/stats.py and a few sentences with the augmented versions
`python -m data_aug` would write for them. Hub names and local folders work as for aug.mlm_model.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import hydra
import numpy as np
from omegaconf import DictConfig

from data_aug.augmenter import Augmenter
from data_aug.config import AugConfig, run_cli
from data_aug.glove import GloveNeighbours, load_glove
from data_aug.pipeline import as_task, load_components, source_file
from data_aug.rows import example_rng, text_columns
from data_aug.stats import CandidateTally, summary_line
from tinydistill.atomic import atomic_write_text
from tinydistill.data import files
from tinydistill.data.glue_tsv import TaskTable
from tinydistill.data.tasks import Task
from tinydistill.errors import ConfigError

CONF_DIR = str(Path(__file__).resolve().parent.parent / "conf")


def sample_sentences(table: TaskTable, n: int, seed: int) -> list[tuple[int, int, str]]:
    """(example index, column number, text) of `n` sentences: examples in a seeded random order,
    every text column of each (column number 0 = text_a, 1 = text_b, as the augmentation seeds)."""
    out: list[tuple[int, int, str]] = []
    cols = text_columns(table)
    for e in np.random.default_rng(seed).permutation(len(table.rows)).tolist():
        for k, col in enumerate(cols):
            if len(out) == n:
                return out
            out.append((e, k, table.rows[e][col]))
    return out


def quality_report(
    cfg_aug: AugConfig | Any,
    task_name: str | Task,
    data_dir: str | Path | None,
    *,
    n_sentences: int = 100,
    n_examples: int = 5,
    n_draws: int = 3,
    use_glove: bool = True,
    mlm=None,
    glove=None,
    stopwords=None,
) -> dict[str, Any]:
    """Candidate statistics of a sample of the task's training sentences, plus examples.

    `mlm`, `glove` (KeyedVectors or GloveNeighbours) and `stopwords` may be passed preloaded.
    """
    cfg = AugConfig.from_cfg(cfg_aug)
    for key, v, least in (("n_sentences", n_sentences, 1), ("n_examples", n_examples, 0), ("n_draws", n_draws, 0)):
        if isinstance(v, bool) or not isinstance(v, int) or v < least:
            raise ConfigError(f"{key}={v!r}: expected an integer >= {least}")
    task = as_task(task_name)
    table = files.read_table(task, source_file(task, data_dir))
    mlm, glove, stopwords = load_components(cfg, data_dir, mlm, glove, stopwords)
    if glove is None and use_glove and n_examples > 0 and not cfg.mlm_only:
        glove = GloveNeighbours(load_glove(cfg.word_vectors, cfg.word_vectors_vocab_size, cfg.allow_gensim_download),
                                cfg.top_k)
    augmenter = Augmenter.from_settings(cfg, mlm, glove, stopwords, task.name)
    sample = sample_sentences(table, n_sentences, cfg.seed)
    cands = augmenter.candidates([text for _, _, text in sample])
    tally = CandidateTally()
    tally.add_sentences(cands)
    stats = {"sentences": len(sample), **tally.stats(stopwords)}
    examples = []
    for (e, k, text), sc in list(zip(sample, cands))[:n_examples]:
        examples.append({
            "example": e,
            "column": k,
            "original": text,
            "augmented": augmenter.augment(sc, example_rng(cfg.seed, e, k))[:n_draws],
            "candidates": {sc.words[i]: c for i, c in sorted(sc.candidates.items())},
        })
    return {
        "task": task.name,
        "mlm_model": getattr(mlm, "name", cfg.mlm_model),
        "mlm_fingerprint": mlm.fingerprint,
        "settings": {"top_k": cfg.top_k, "alphabetic_only": cfg.alphabetic_only, "stopwords": cfg.stopwords,
                     "seed": cfg.seed, "words": cfg.words, "mlm_only": cfg.mlm_only},
        "candidate_quality": stats,
        "examples": examples,
    }


def format_report(report: dict[str, Any]) -> str:
    q = report["candidate_quality"]
    lines = [
        f"masked LM {report['mlm_model']} (weights {report['mlm_fingerprint']}), task {report['task']}, "
        f"top_k={report['settings']['top_k']}, alphabetic_only={str(report['settings']['alphabetic_only']).lower()}",
        summary_line(q, n_top=10),
    ]
    per_word = q["candidates_per_word"]
    lines.append(
        f"  {q['sentences']} sentences, {q['words_with_candidates']} words with MLM candidates, "
        f"{'n/a' if per_word is None else f'{per_word:.1f}'} candidates per word, "
        f"{q['distinct_candidates']} distinct tokens"
    )
    lines.append("  most frequent: " + ", ".join(f"{t!r} x{c}" for t, c, _ in q["most_frequent"]))
    for ex in report["examples"]:
        lines.append("")
        lines.append(f"example {ex['example']} text_{'ab'[ex['column']]}: {ex['original']}")
        for a in ex["augmented"]:
            lines.append(f"  -> {a}")
        if not ex["augmented"]:
            lines.append("  (no augmented version: no word got candidates)")
    return "\n".join(lines)


def run(cfg: DictConfig) -> dict[str, Any]:
    if cfg.aug.get("num_threads"):
        import torch

        torch.set_num_threads(int(cfg.aug.num_threads))
    report = quality_report(
        cfg.aug, files.task_from_config(cfg.task), cfg.paths.data_dir, n_sentences=cfg.n_sentences,
        n_examples=cfg.n_examples, n_draws=cfg.n_draws, use_glove=cfg.use_glove,
    )
    print(format_report(report))
    if cfg.get("out"):
        out = atomic_write_text(cfg.out, json.dumps(report, indent=2) + "\n")
        print(f"\nwritten: {out}")
    return report


@hydra.main(version_base="1.3", config_path=CONF_DIR, config_name="augment_quality")
def main(cfg: DictConfig) -> None:
    run_cli(run, cfg)


if __name__ == "__main__":
    main()
