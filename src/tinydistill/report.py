"""Results report of task-distillation runs: a Markdown table and a bar chart.

    python -m tinydistill.report <folder> [--out <folder>]

Reads every `result.json` (written by stage=task into its run's log folder) or task `metrics.json`
below <folder>, e.g. a Hydra sweep folder, and writes `report.md` and `report.png` there. Partial
sweeps work: runs that have not finished have no result file yet and are listed as missing.
Hydra multiruns write the report at the end through `ReportCallback` (conf/hydra/callbacks).
"""

from __future__ import annotations

import argparse
import json
import logging
import os
from pathlib import Path
from typing import Any

from hydra.experimental.callback import Callback

log = logging.getLogger(__name__)

RESULT_FILES = ("result.json", "metrics.json")


def load_results(folder: str | os.PathLike) -> list[dict[str, Any]]:
    """Task-stage results below `folder` (one per run; a run's result.json wins over its metrics.json)."""
    found: dict[str, dict[str, Any]] = {}
    for name in RESULT_FILES:
        for path in sorted(Path(folder).rglob(name)):
            data = json.loads(path.read_text())
            if data.get("stage") not in ("task", "finetune_baseline") or "dev" not in data:
                continue
            key = data.get("output_dir") or f"{data.get('task')}/{data.get('run')}/{path.parent}"
            found.setdefault(key, {**data, "_file": str(path)})
    return sorted(found.values(), key=lambda r: (r.get("task", ""), r.get("run", "")))


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
             + " | student params | teacher params | speed-up |"]
    lines.append("|" + "---|" * (5 + 3 * len(metrics)))
    for r in results:
        teacher = r.get("teacher", {}).get("dev", {})
        retention = r.get("retention", {})
        params = r.get("parameters", {})
        cells = [r.get("task"), r.get("run")]
        cells += [_fmt(r["dev"].get(m)) for m in metrics]
        cells += [_fmt(teacher.get(m)) for m in metrics]
        cells += [_fmt(retention.get(m) * 100, 1) + "%" if retention.get(m) is not None else "" for m in metrics]
        cells += [f"{params['student'] / 1e6:.1f}M" if params.get("student") else "",
                  f"{params['teacher'] / 1e6:.1f}M" if params.get("teacher") else "",
                  f"{r['speedup']:.1f}x" if r.get("speedup") else ""]
        lines.append("| " + " | ".join(_fmt(c) for c in cells) + " |")
    return "\n".join(lines) + "\n"


def bar_chart(results: list[dict[str, Any]], path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    metrics = sorted({m for r in results for m in r.get("dev", {})})
    labels = [f"{r.get('task')}/{r.get('run')}" for r in results]
    fig, ax = plt.subplots(figsize=(max(6, 1.2 * len(results) * max(1, len(metrics))), 4))
    width = 0.8 / max(1, len(metrics))
    for i, m in enumerate(metrics):
        xs = [j + i * width for j in range(len(results))]
        ax.bar(xs, [r["dev"].get(m) or 0 for r in results], width, label=f"student {m}")
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


def write_report(folder: str | os.PathLike, out: str | os.PathLike | None = None) -> Path | None:
    """Write report.md and report.png for the runs below `folder`; None if there are none yet."""
    folder = Path(folder)
    out = Path(out) if out is not None else folder
    results = load_results(folder)
    if not results:
        log.warning("no task-distillation results below %s", folder)
        return None
    out.mkdir(parents=True, exist_ok=True)
    md = ["# tinydistill report", "", f"Runs below `{folder}`: {len(results)}.", "", markdown_table(results)]
    md += ["![dev metrics](report.png)", ""]
    missing = unfinished_jobs(folder)
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
    p.add_argument("folder")
    p.add_argument("--out", default=None, help="where to write report.md/report.png (default: the folder)")
    a = p.parse_args(argv)
    path = write_report(a.folder, a.out)
    if path is None:
        raise SystemExit(f"no task-distillation results (result.json / metrics.json) below {a.folder}")
    print(path.read_text())


if __name__ == "__main__":
    main()
