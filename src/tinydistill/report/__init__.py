"""Results report of task classifiers: a Markdown table, a bar chart and JSON, side by side.

    python -m tinydistill.report <folder> [--out <folder>]
    python -m tinydistill.report artifacts/task/mrpc artifacts/finetune/distilbert_minilm_l6/mrpc \
        artifacts/teacher/mrpc --out artifacts/report

Reads every `result.json` (written by stage=task and stage=finetune into their run's log folder) or
`metrics.json` (beside each exported classifier) below each folder, e.g. a Hydra sweep folder, and
writes `report.md`, `report.png`, `report.json` and `frontier.png` into the folder (`--out`, required with several
folders).

Rows, per task:
- the **constant predictor** (majority training label; mean score for regression) and each **teacher** the
  runs were measured against: the yardsticks;
- one row per run, where runs that differ only in seed (same task, stage and run name) are aggregated:
  mean ± sample standard deviation over the n seeds of the dev metrics, retention (student / teacher),
  **gap closed** ((student - constant) / (teacher - constant)), parameters, and speed-up over the teacher at
  batch 32 and at batch 1 (each run times itself and its teacher on the same batches).

Serving backends: every export.json with a `serve` table (`python -m tinydistill.serve bench`) adds rows for the
chosen backend per thread count and batch size, with speed-ups over the PyTorch fp32 teacher and over the teacher
in its own chosen backend, beside the encoder FLOP ratio.

Exported variants: every `export.json` below the folders with a dev check (`python -m tinydistill.export --task`)
adds rows for its model as PyTorch fp32, ONNX fp32 and ONNX int8 (dev metrics, agreement with PyTorch, size in MB,
latency and speed-up over the teacher timed in the same export), aggregated over seeds like the runs.
`frontier.png` (module `frontier`) plots the dev main metric against the speed-up over the teacher for every
model and variant.

Partial sweeps work: runs that have not finished have no result file yet and are listed as missing. Hydra
multiruns write the report at the end through `ReportCallback` (conf/config.yaml, hydra.callbacks).
"""

from __future__ import annotations

import argparse
import json
import logging
import os
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from hydra.experimental.callback import Callback

from tinydistill.atomic import atomic_write_text
from tinydistill.frontier import frontier_points, main_metric, plot_frontier
from tinydistill.report.extras import (
    load_exports,
    load_timings,
    serve_rows,
    variant_records,
    variant_rows,
)
from tinydistill.report.render import (
    bar_chart,
    markdown_table,
    serve_table,
    timings_table,
    variants_table,
)
from tinydistill.report.runs import (
    load_results,
    report_rows,
    teacher_dirs,
    unfinished_jobs,
)
from tinydistill.timing import ALONE_SHARE

log = logging.getLogger(__name__)

__all__ = ["ReportCallback", "load_results", "main", "report_rows", "write_report"]


def write_report(
    folders: str | os.PathLike | Sequence[str | os.PathLike], out: str | os.PathLike | None = None
) -> Path | None:
    """Write report.md, report.png and report.json for the runs below `folders` (into `out`, by default the
    only folder); None if there are none yet."""
    folders = [Path(folders)] if isinstance(folders, (str, os.PathLike)) else [Path(f) for f in folders]
    if out is None:
        if len(folders) != 1:
            raise ValueError("write_report: give `out` when reporting on several folders")
        out = folders[0]
    out = Path(out)
    results = load_results(folders)
    where = ", ".join(f"`{f}`" for f in folders)
    if not results:
        log.warning("no task-distillation or fine-tuning results below %s", where)
        return None
    out.mkdir(parents=True, exist_ok=True)
    rows = report_rows(results)
    missing = [m for f in folders for m in unfinished_jobs(f)]
    md = ["# tinydistill report", "", f"Runs below {where}: {len(results)}.", "", markdown_table(rows), *RUN_NOTES,
          "![dev metrics](report.png)", "", *_mixed_seeds(rows), *_missing_jobs(missing)]
    exports = load_exports(folders)
    variants = variant_rows(variant_records(exports, teacher_dirs(results)))
    if variants:
        md += ["## Exported variants", "", variants_table(variants), *VARIANT_NOTES]
    served = serve_rows(exports)
    if served:
        md += ["## Serving backends", "", serve_table(served), *SERVE_NOTES]
    points = frontier_points(rows, variants, served)
    constants = {r["task"]: r["dev"][main_metric(r)]["mean"] for r in rows
                 if r["kind"] == "constant" and main_metric(r) in r.get("dev", {})}
    if plot_frontier(points, constants, out / "frontier.png") is not None:
        md += ["## Speed and accuracy frontier", "", "![frontier](frontier.png)", "", FRONTIER_NOTE, ""]
    timings = load_timings(folders, results)
    if timings:
        md += ["## Wall times", "", timings_table(timings), TIMINGS_NOTE, ""]
    report = out / "report.md"
    atomic_write_text(report, "\n".join(md))
    atomic_write_text(out / "report.json", json.dumps(
        {"folders": [str(f) for f in folders], "rows": rows, "runs": results,
         "missing": [{"job": j, "overrides": o} for j, o in missing], "variants": variants,
         "exports": [e["_file"] for e in exports], "serve": served, "frontier": points, "timings": timings}, indent=2, default=str) + "\n")
    bar_chart(rows, out / "report.png")
    return report


RUN_NOTES = [
    "- `n`: runs that differ only in seed, aggregated as mean ± sample standard deviation.",
    "- `gap closed`: (run − constant predictor) / (teacher − constant predictor); 100% is the teacher, "
    "0% the constant predictor (the majority training label; the mean training score for regression).",
    "- `steps`: optimiser steps (both phases of task distillation); `dev evals`: the dev evaluations during "
    "training that the exported checkpoint was picked from (a baseline compared with a distilled run should "
    "match both: the best of more evaluations flatters a run).",
    "- Latency: dev-set inference on CPU, each run and its teacher on the same batches; `speed-up` is the "
    "teacher's time over the run's. Latencies of different runs are only comparable when measured on "
    "the same machine under the same load.", ""]
VARIANT_NOTES = [
    "- `python -m tinydistill.export --task` timed each model as PyTorch fp32, ONNX fp32 and ONNX int8 "
    "beside its PyTorch fp32 teacher, in one process on the same dev batches and threads; `speed-up` is "
    "that teacher's time over the variant's. `n`: exports aggregated (seeds; for a teacher, the exports "
    "that timed it).",
    "- `agreement with PyTorch`: share of dev predictions equal to the same model's in PyTorch fp32. "
    "`size`: the weights file (model.safetensors, model.onnx, model_int8.onnx).", ""]
SERVE_NOTES = [
    "- `python -m tinydistill.serve bench` timed every backend of the model and of its teacher on this machine "
    "(PyTorch fp32/bf16, ONNX Runtime fp32 and int8, OpenVINO where installed), alternated in one process on the "
    "same dev rows, and served each in the fastest one that agrees with its PyTorch fp32 on at least 99% of dev "
    "predictions within 1 point of its metric. Two yardsticks: the PyTorch fp32 teacher, and the teacher served "
    "as fast as the same rule allows; the FLOP ratio (teacher / student encoder FLOPs) is what the second could "
    "reach if time followed FLOPs.",
    "- `load average`: the machine's 1-minute load when the setting was timed: on a shared machine ratios hold, "
    "absolute times do not.", ""]
FRONTIER_NOTE = ("Dev main metric against speed-up over the PyTorch fp32 teacher, one point per model and variant "
                 "(exported variants with their export's timings); the dotted line is the constant predictor, the "
                 "dashed line the points nothing beats on both axes.")
TIMINGS_NOTE = ("- Each stage's `timing.json`: its wall time, and the CPU time all other processes used meanwhile as a "
                f"share of the machine (wall time x cores). `alone`: under {ALONE_SHARE:.0%}, so the wall time may be "
                "quoted as measured alone.")


def _mixed_seeds(rows: list[dict[str, Any]]) -> list[str]:
    """Lines naming the rows whose seeds differ in more than the seed (their run_config.yaml), with a warning."""
    mixed = [row for row in rows if row.get("config_differences")]
    for row in mixed:
        log.warning("report: %s aggregates seeds whose settings differ: %s", row["run"], row["config_differences"])
    if not mixed:
        return []
    return ["**Rows whose seeds differ in more than the seed** (their `run_config.yaml`; rerun or rename one):", "",
            *(f"- `{row['run']}` ({row['task']}): " + "; ".join(
                f"`{key}` = {', '.join(str(v) for v in values)}" for key, values in row["config_differences"].items())
              for row in mixed), ""]


def _missing_jobs(missing: list[tuple[str, str]]) -> list[str]:
    if not missing:
        return []
    return ["Sweep jobs without a result yet (running, failed or not started):", "",
            *(f"- `{job}`: {overrides}" for job, overrides in missing), ""]


class ReportCallback(Callback):
    """Hydra callback: write the report into the sweep folder when a multirun ends."""

    def on_multirun_end(self, config, **kwargs: Any) -> None:
        path = write_report(config.hydra.sweep.dir)
        if path is not None:
            log.info("report: %s", path)


def main(argv: list[str] | None = None) -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("folders", nargs="+", metavar="folder")
    p.add_argument("--out", default=None,
                   help="where to write report.md/report.png (default: the folder; required with several)")
    a = p.parse_args(argv)
    if a.out is None and len(a.folders) > 1:
        p.error("--out is required with several folders")
    path = write_report(a.folders, a.out)
    if path is None:
        raise SystemExit(f"no results (result.json / metrics.json of stage=task or stage=finetune) below "
                         f"{' '.join(a.folders)}")
    print(path.read_text())

