"""Results report of task classifiers: a Markdown table and a bar chart, side by side.

    python -m tinydistill.report <folder> [--out <folder>]
    python -m tinydistill.report artifacts/task/mrpc artifacts/finetune/distilbert_minilm_l6/mrpc \
        artifacts/teacher/mrpc --out artifacts/report

Reads every `result.json` (written by stage=task and stage=finetune into their run's log folder) or
`metrics.json` (beside each exported classifier) below each folder, e.g. a Hydra sweep folder, and
writes `report.md` and `report.png` into the folder (`--out`, required with several folders). One row
per run: dev metrics, the teacher's and the retention (when the run names a teacher), parameters,
dev-set latency (ms per example) and speed-up over the teacher. Partial sweeps work: runs that have
not finished have no result file yet and are listed as missing. Hydra multiruns write the report at
the end through `ReportCallback` (conf/hydra/callbacks).
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

log = logging.getLogger(__name__)

RESULT_FILES = ("result.json", "metrics.json")
#: Stages whose results are rows: task-distilled students and fine-tuned models (teachers, baselines).
STAGES = ("task", "finetune")


def load_results(folders: str | os.PathLike | Sequence[str | os.PathLike]) -> list[dict[str, Any]]:
    """Classifier results below one or several folders (one per run; a run's result.json wins over its
    metrics.json; a file reached through two folders counts once)."""
    if isinstance(folders, (str, os.PathLike)):
        folders = [folders]
    found: dict[str, dict[str, Any]] = {}
    for name in RESULT_FILES:
        for folder in folders:
            for path in sorted(Path(folder).rglob(name)):
                data = json.loads(path.read_text())
                if data.get("stage") not in STAGES or "dev" not in data:
                    continue
                key = data.get("output_dir") or f"{data.get('task')}/{data.get('run')}/{path.resolve().parent}"
                found.setdefault(key, {**data, "_file": str(path)})
    return sorted(found.values(), key=lambda r: (r.get("task") or "", run_label(r)))


def run_label(result: dict[str, Any]) -> str:
    """The run's name (older fine-tuning results have none: their model reference)."""
    return str(result.get("run") or result.get("model") or "")


def own(values: dict[str, Any]) -> Any:
    """The row's own model in `parameters` / `latency`: `student` (stage=task) or `model` (stage=finetune)."""
    return values.get("student", values.get("model"))


def unfinished_jobs(folder: Path) -> list[tuple[str, str]]:
    """Hydra job folders (with .hydra/overrides.yaml) below `folder` that hold no result file."""
    out = []
    for overrides in sorted(folder.rglob(".hydra/overrides.yaml")):
        job = overrides.parent.parent
        if not any((job / name).is_file() for name in RESULT_FILES):
            out.append((str(job.relative_to(folder)), " ".join(
                line.strip("- ").strip() for line in overrides.read_text().splitlines() if line.strip())))
    return out


def _fmt(x: Any, digits: int = 4) -> str:
    return "" if x is None else (f"{x:.{digits}f}" if isinstance(x, float) else str(x))


def markdown_table(results: list[dict[str, Any]]) -> str:
    metrics = sorted({m for r in results for m in r.get("dev", {})})
    lines = ["| task | run | " + " | ".join(f"dev {m}" for m in metrics)
             + " | " + " | ".join(f"teacher {m}" for m in metrics)
             + " | " + " | ".join(f"retention {m}" for m in metrics)
             + " | params | teacher params | speed-up | ms/example |"]
    lines.append("|" + "---|" * (6 + 3 * len(metrics)))
    for r in results:
        teacher = r.get("teacher", {}).get("dev", {})
        retention = r.get("retention", {})
        params = r.get("parameters", {})
        latency = own(r.get("latency", {})) or {}
        cells = [r.get("task"), run_label(r)]
        cells += [_fmt(r["dev"].get(m)) for m in metrics]
        cells += [_fmt(teacher.get(m)) for m in metrics]
        cells += [_fmt(retention.get(m) * 100, 1) + "%" if retention.get(m) is not None else "" for m in metrics]
        cells += [f"{own(params) / 1e6:.1f}M" if own(params) else "",
                  f"{params['teacher'] / 1e6:.1f}M" if params.get("teacher") else "",
                  f"{r['speedup']:.1f}x" if r.get("speedup") else "",
                  _fmt(latency.get("ms_per_example"), 2)]
        lines.append("| " + " | ".join(_fmt(c) for c in cells) + " |")
    return "\n".join(lines) + "\n"


def bar_chart(results: list[dict[str, Any]], path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    metrics = sorted({m for r in results for m in r.get("dev", {})})
    labels = [f"{r.get('task')}/{run_label(r)}" for r in results]
    fig, ax = plt.subplots(figsize=(max(6, 1.2 * len(results) * max(1, len(metrics))), 4))
    width = 0.8 / max(1, len(metrics))
    for i, m in enumerate(metrics):
        xs = [j + i * width for j in range(len(results))]
        ax.bar(xs, [r["dev"].get(m) or 0 for r in results], width, label=f"dev {m}")
        teacher = [r.get("teacher", {}).get("dev", {}).get(m) for r in results]
        for x, t in zip(xs, teacher):
            if t is not None:
                ax.hlines(t, x - width / 2, x + width / 2, colors="black", linestyles="dashed")
    ax.set_xticks([j + width * (len(metrics) - 1) / 2 for j in range(len(results))], labels, rotation=20, ha="right")
    ax.set_ylabel("dev metric (dashed: teacher)")
    ax.set_ylim(0, 1)
    ax.legend(loc="lower right")
    fig.tight_layout()
    tmp = path.with_name(path.stem + ".tmp.png")
    fig.savefig(tmp, dpi=120)
    plt.close(fig)
    os.replace(tmp, path)


def write_report(
    folders: str | os.PathLike | Sequence[str | os.PathLike], out: str | os.PathLike | None = None
) -> Path | None:
    """Write report.md and report.png for the runs below `folders` (into `out`, by default the only
    folder); None if there are none yet."""
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
    md = ["# tinydistill report", "", f"Runs below {where}: {len(results)}.", "", markdown_table(results)]
    md += ["Latency: dev-set inference on CPU, same batches for a run and its teacher; `speed-up` is the "
           "teacher's time over the run's. Latencies of different runs are only comparable when measured on "
           "the same machine under the same load.", ""]
    md += ["![dev metrics](report.png)", ""]
    missing = [m for f in folders for m in unfinished_jobs(f)]
    if missing:
        md += ["Sweep jobs without a result yet (running, failed or not started):", ""]
        md += [f"- `{job}`: {overrides}" for job, overrides in missing] + [""]
    report = out / "report.md"
    tmp = report.with_name("report.md.tmp")
    tmp.write_text("\n".join(md))
    os.replace(tmp, report)
    bar_chart(results, out / "report.png")
    return report


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


if __name__ == "__main__":
    main()
