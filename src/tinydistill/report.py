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
import statistics
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from hydra.experimental.callback import Callback

from tinydistill.atomic import atomic_file, atomic_write_text
from tinydistill.baselines import gap_closed
from tinydistill.data.tasks import get_task
from tinydistill.frontier import frontier_points, main_metric, plot_frontier
from tinydistill.inference import EXPORT_JSON
from tinydistill.run_config import config_differences, load_run_config
from tinydistill.timing import ALONE_SHARE, TIMING_JSON

log = logging.getLogger(__name__)

RESULT_FILES = ("result.json", "metrics.json")
#: Stages whose results are rows: task-distilled students and fine-tuned models (teachers, baselines).
STAGES = ("task", "finetune")


def load_results(folders: str | os.PathLike | Sequence[str | os.PathLike]) -> list[dict[str, Any]]:
    """Classifier results below one or several folders (one per run: a run's result.json in its log folder
    and the metrics.json beside its model hold the same record and count once, as does a file reached
    through two folders). A file that is not a JSON object (corrupt, truncated, unreadable) is skipped with a
    warning naming it, so one bad file does not stop the report."""
    if isinstance(folders, (str, os.PathLike)):
        folders = [folders]
    found: dict[str, dict[str, Any]] = {}
    for name in RESULT_FILES:
        for folder in folders:
            for path in sorted(Path(folder).rglob(name)):
                data = _read_result(path)
                if data is None or data.get("stage") not in STAGES or "dev" not in data:
                    continue
                found.setdefault(_record_key(data), {**data, "_file": str(path)})
    return sorted(found.values(), key=lambda r: (r.get("task") or "", run_label(r), r.get("seed") or 0))


def _read_result(path: Path) -> dict[str, Any] | None:
    """The JSON object in `path`, or None after a warning naming the file."""
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, ValueError) as e:
        log.warning("report: skipping %s: not readable JSON (%s: %s)", path, type(e).__name__, e)
        return None
    if not isinstance(data, dict):
        log.warning("report: skipping %s: expected a JSON object, found %s", path, type(data).__name__)
        return None
    return data


def _record_key(data: dict[str, Any]) -> str:
    """What identifies one run's record in both files it is written to (the log folder's copy also has
    `output_dir`, the exported one does not)."""
    return json.dumps({k: v for k, v in data.items() if k != "output_dir"}, sort_keys=True, default=str)


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


# --- aggregation -------------------------------------------------------------------------------------------

def summary(values: list[float]) -> dict[str, Any]:
    """Mean, sample standard deviation (None for one value) and n."""
    values = [float(v) for v in values]
    return {"mean": statistics.fmean(values), "sd": statistics.stdev(values) if len(values) > 1 else None,
            "n": len(values), "values": values}


def _summaries(dicts: list[dict[str, Any]]) -> dict[str, dict[str, Any]]:
    """Per key, the summary of the values the dicts hold for it (keys missing from some dicts use the rest)."""
    keys = sorted({k for d in dicts for k, v in d.items() if isinstance(v, (int, float))})
    return {k: summary([d[k] for d in dicts if isinstance(d.get(k), (int, float))]) for k in keys}


def _gap_closed(r: dict[str, Any]) -> dict[str, float]:
    """The record's gap closed (older records without it: computed from its teacher and constant fields)."""
    if "gap_closed" in r:
        return r["gap_closed"]
    if r.get("teacher") and r.get("constant") and r.get("task"):
        return gap_closed(get_task(r["task"]), r, r["teacher"], r["constant"])
    return {}


def _metric(r: dict[str, Any]) -> dict[str, str]:
    """`{"metric": <main metric>}` of a record whose task it names (`task_spec` of a run, `metric` of an export's
    check), for a user's task that no registry knows; {} otherwise (a GLUE record made before they were written)."""
    metric = (r.get("task_spec") or {}).get("metric") or r.get("metric")
    return {"metric": metric} if metric else {}


def _speedup(r: dict[str, Any], suffix: str) -> float | None:
    value = r.get("speedup" + suffix)
    return value if isinstance(value, (int, float)) else None


def budget(r: dict[str, Any]) -> tuple[int | None, int | None]:
    """The optimiser steps a record trained (both phases of stage=task) and the training-time dev evaluations its
    exported checkpoint was picked from; None where the record does not say (older records: no evaluations)."""
    if r.get("stage") == "task":
        pred = r.get("pred") or {}
        steps = None if pred.get("steps") is None else pred["steps"] + (r.get("intermediate") or {}).get("steps", 0)
        return steps, pred.get("evaluations")
    return r.get("steps"), r.get("evaluations")


def _span(values: list[int | None]) -> str | None:
    """`8420` when the seeds agree, `3393-3400` when not; None when no record says."""
    known = [v for v in values if v is not None]
    if not known:
        return None
    return str(min(known)) if min(known) == max(known) else f"{min(known)}-{max(known)}"


def aggregate_run(runs: list[dict[str, Any]]) -> dict[str, Any]:
    """One row from the records of runs that differ only in seed."""
    first = runs[0]
    row: dict[str, Any] = {
        "kind": "run",
        "task": first.get("task"),
        **_metric(first),
        "stage": first.get("stage"),
        "run": run_label(first),
        "n": len(runs),
        "seeds": [r.get("seed") for r in runs],
        "files": [r["_file"] for r in runs],
        "dev": _summaries([r["dev"] for r in runs]),
        # task.tune_split: the held-out training rows the runs' checkpoints were selected on (report.json only)
        **({"tune": _summaries([r["tune"] for r in runs if "tune" in r])} if any("tune" in r for r in runs) else {}),
        "retention": _summaries([r.get("retention", {}) for r in runs]),
        "gap_closed": _summaries([_gap_closed(r) for r in runs]),
        "parameters": own(first.get("parameters", {})),
        "teacher_parameters": first.get("parameters", {}).get("teacher"),
        "teacher_dir": first.get("teacher_dir"),
        "steps": _span([budget(r)[0] for r in runs]),
        "evaluations": _span([budget(r)[1] for r in runs]),
        # settings other than the seed that differ between the aggregated runs (runs with run_config.yaml)
        "config_differences": config_differences([load_run_config(Path(r["_file"]).parent) for r in runs]),
    }
    for suffix in ("", "_batch1"):
        speedups = [s for s in (_speedup(r, suffix) for r in runs) if s is not None]
        row["speedup" + suffix] = summary(speedups) if speedups else None
        ms = [own(r.get("latency" + suffix, {}) or {}) for r in runs]
        ms = [m["ms_per_example"] for m in ms if m]
        row["ms_per_example" + suffix] = summary(ms) if ms else None
    return row


def yardstick_rows(results: list[dict[str, Any]], runs: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """Per task, the constant predictor and each teacher the runs name (unless the teacher's own fine-tuning
    record is already a row)."""
    rows: list[dict[str, Any]] = []
    row_dirs = {str(Path(f).parent.resolve()) for row in runs for f in row["files"]}
    for task in sorted({r.get("task") for r in results if r.get("task")}):
        mine = [r for r in results if r.get("task") == task]
        constant = next((r["constant"] for r in mine if r.get("constant")), None)
        if constant:
            rows.append({"kind": "constant", "task": task, **_metric(mine[0]),
                         "run": f"constant predictor ({constant.get('prediction')})",
                         "n": None, "dev": {k: summary([v]) for k, v in constant.get("dev", {}).items()}})
        teachers: dict[str, dict[str, Any]] = {}
        for r in mine:
            t_dir = r.get("teacher_dir")
            if r.get("teacher") and t_dir and str(Path(t_dir).resolve()) not in row_dirs:
                teachers.setdefault(str(t_dir), r)
        for t_dir, r in sorted(teachers.items()):
            latency = {s: (r.get("latency" + s, {}) or {}).get("teacher") for s in ("", "_batch1")}
            rows.append({
                "kind": "teacher", "task": task, "run": f"teacher ({t_dir})", "n": None,
                "dev": {k: summary([v]) for k, v in r["teacher"].get("dev", {}).items()},
                "parameters": r.get("parameters", {}).get("teacher"),
                **{"ms_per_example" + s: summary([lat["ms_per_example"]]) if lat else None for s, lat in latency.items()},
            })
    return rows


def report_rows(results: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """Yardstick rows, then one row per group of runs that differ only in seed, per task."""
    groups: dict[tuple, list[dict[str, Any]]] = {}
    for r in results:
        groups.setdefault((r.get("task") or "", r.get("stage") or "", run_label(r)), []).append(r)
    runs = [aggregate_run(g) for _, g in sorted(groups.items())]
    teachers = teacher_dirs(results)
    for row in runs:  # a teacher's own fine-tuning record: speed-up 1 on the frontier
        row["is_teacher"] = any(_resolved(Path(f).parent) in teachers for f in row["files"])
    yard = yardstick_rows(results, runs)
    order = {"constant": 0, "teacher": 1, "run": 2}
    return sorted(yard + runs, key=lambda row: (row["task"] or "", order[row["kind"]]))


def _resolved(path: str | os.PathLike) -> str:
    return str(Path(path).resolve())


def teacher_dirs(results: list[dict[str, Any]]) -> set[str]:
    """The teacher folders the records name (relative ones from the working directory, as the stages wrote them)."""
    return {_resolved(r["teacher_dir"]) for r in results if r.get("teacher_dir")}


# --- wall times (timing.json, tinydistill.timing) ---------------------------------------------------------

def load_timings(folders: Sequence[str | os.PathLike], results: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """Each stage's timing.json below `folders` and in the teacher and start-student folders the records name
    (the pipeline behind them), each once, in the order the stages started."""
    paths = [p for f in folders for p in sorted(Path(f).rglob(TIMING_JSON))]
    for r in results:
        paths += [Path(r[k]) / TIMING_JSON for k in ("teacher_dir", "student_source") if r.get(k)]
    found: dict[str, dict[str, Any]] = {}
    for path in paths:
        if not path.is_file() or _resolved(path) in found:
            continue
        data = _read_result(path)
        if data is not None and isinstance(data.get("wall_seconds"), (int, float)):
            found[_resolved(path)] = {**data, "folder": str(path.parent)}
    return sorted(found.values(), key=lambda t: str(t.get("started") or ""))


def timings_table(timings: list[dict[str, Any]]) -> str:
    head = ["stage", "folder", "started (UTC)", "wall (min)", "torch threads", "other processes' CPU share", "alone",
            "CPU"]
    lines = ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    for t in timings:
        share = t.get("others_cpu_share")
        alone = {True: "yes", False: "no", None: "unknown"}[t.get("alone")]
        cells = [t.get("stage"), f"`{t['folder']}`", t.get("started"), f"{t['wall_seconds'] / 60:.1f}",
                 t.get("torch_threads"), "" if share is None else f"{share:.0%}",
                 alone + (" (resumed: partial)" if t.get("resumed") else ""), t.get("cpu") or "unknown"]
        lines.append("| " + " | ".join(_fmt(c) for c in cells) + " |")
    return "\n".join(lines) + "\n"


# --- exported variants (python -m tinydistill.export --task) -----------------------------------------------

#: Row order of the variants of one model.
VARIANTS = ("pytorch fp32", "onnx fp32", "onnx int8")


def load_exports(folders: Sequence[str | os.PathLike]) -> list[dict[str, Any]]:
    """The export.json files below `folders` that hold a dev check (`export --task`), each once."""
    found: dict[str, dict[str, Any]] = {}
    for folder in folders:
        for path in sorted(Path(folder).rglob(EXPORT_JSON)):
            data = _read_result(path)
            check = data.get("check") if data else None
            if not isinstance(check, dict) or not check.get("rows") or not check.get("task"):
                continue
            found.setdefault(_resolved(path), {**data, "_file": str(path)})
    return list(found.values())


def variant_records(exports: list[dict[str, Any]], teachers: set[str]) -> list[dict[str, Any]]:
    """One record per variant row of each export: the exported model's variants (as the run its metrics.json
    names), and the teacher it was timed against. Speed-ups are kept only when they are over the teacher: the
    export timed a teacher, or the exported model is a teacher the report's runs name."""
    out = []
    for e in exports:
        check, record, source = e["check"], e.get("record") or {}, str(e.get("source"))
        main_bs = str(check.get("batch_sizes", [32])[0])
        source_is_teacher = _resolved(source) in teachers
        for row in check["rows"]:
            own = row.get("model") == source
            is_teacher = source_is_teacher if own else True
            timed = is_teacher or check.get("reference_role") == "teacher"
            if own:
                stage, run = record.get("stage", "export"), record.get("run") or Path(source).name
                seed = record.get("seed")
            else:
                stage, run, seed = "teacher", str(row.get("model")), None
            latency, speedup = row.get("latency") or {}, row.get("speedup") or {}
            vs = (row.get("vs") or {}).get("pytorch fp32", {})
            out.append({
                "task": check["task"], **_metric(check), "stage": stage, "run": run, "seed": seed,
                "variant": row.get("variant"),
                "is_teacher": is_teacher, "model_key": "teacher" if is_teacher else f"{stage}/{run}",
                "dev": row.get("dev") or {}, "size_mb": row.get("size_mb"), "agreement": vs.get("agreement"),
                "max_logit_diff": vs.get("max_logit_diff"),
                "ms_per_example": (latency.get(main_bs) or {}).get("ms_per_example"),
                "ms_per_example_batch1": (latency.get("1") or {}).get("ms_per_example"),
                "speedup": speedup.get(main_bs) if timed else None,
                "speedup_batch1": speedup.get("1") if timed else None,
                "_file": e["_file"],
            })
    return out


def variant_rows(records: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """Records of the same task, model and variant aggregated (seeds, or the teacher timed by several exports)."""
    groups: dict[tuple, list[dict[str, Any]]] = {}
    for r in records:
        order = VARIANTS.index(r["variant"]) if r["variant"] in VARIANTS else len(VARIANTS)
        groups.setdefault((r["task"], not r["is_teacher"], r["stage"], r["run"], order, r["variant"]), []).append(r)
    rows = []
    for _, g in sorted(groups.items(), key=lambda kv: tuple(str(k) for k in kv[0])):
        first = g[0]
        row: dict[str, Any] = {
            "kind": "variant", **{k: first[k] for k in ("task", "stage", "run", "variant", "is_teacher", "model_key")},
            **_metric(first),
            "n": len(g), "seeds": [r["seed"] for r in g], "files": [r["_file"] for r in g],
            "dev": _summaries([r["dev"] for r in g]),
        }
        for key in ("size_mb", "agreement", "max_logit_diff", "ms_per_example", "ms_per_example_batch1", "speedup",
                    "speedup_batch1"):
            values = [r[key] for r in g if isinstance(r.get(key), (int, float))]
            row[key] = summary(values) if values else None
        rows.append(row)
    return rows


# --- rendering ---------------------------------------------------------------------------------------------

def _fmt(x: Any, digits: int = 4) -> str:
    return "" if x is None else (f"{x:.{digits}f}" if isinstance(x, float) else str(x))


def _pm(s: dict[str, Any] | None, digits: int = 4, scale: float = 1.0, unit: str = "") -> str:
    """`mean ± sd` (just the value for one run)."""
    if not s:
        return ""
    text = f"{s['mean'] * scale:.{digits}f}"
    if s.get("sd") is not None:
        text += f" ± {s['sd'] * scale:.{digits}f}"
    return text + unit


def markdown_table(rows: list[dict[str, Any]]) -> str:
    metrics = sorted({m for r in rows for m in r.get("dev", {})})
    head = (["task", "run", "n"] + [f"dev {m}" for m in metrics] + [f"retention {m}" for m in metrics]
            + [f"gap closed {m}" for m in metrics]
            + ["steps", "dev evals", "params", "speed-up (batch 32)", "speed-up (batch 1)", "ms/example (batch 32)"])
    lines = ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    for r in rows:
        params = r.get("parameters")
        cells = [r["task"], r["run"], _fmt(r.get("n"))]
        cells += [_pm(r.get("dev", {}).get(m)) for m in metrics]
        cells += [_pm(r.get("retention", {}).get(m), 1, 100, "%") for m in metrics]
        cells += [_pm(r.get("gap_closed", {}).get(m), 0, 100, "%") for m in metrics]
        cells += [r.get("steps"), r.get("evaluations"), f"{params / 1e6:.1f}M" if params else "",
                  _pm(r.get("speedup"), 1, unit="x"), _pm(r.get("speedup_batch1"), 1, unit="x"),
                  _pm(r.get("ms_per_example"), 2)]
        lines.append("| " + " | ".join(_fmt(c) for c in cells) + " |")
    return "\n".join(lines) + "\n"


def variants_table(rows: list[dict[str, Any]]) -> str:
    """The exported variants: dev metrics, agreement with PyTorch, size and latency of each."""
    metrics = sorted({m for r in rows for m in r.get("dev", {})})
    head = (["task", "model", "variant", "n"] + [f"dev {m}" for m in metrics]
            + ["agreement with PyTorch", "size (MB)", "ms/example (batch 32)", "ms/example (batch 1)",
               "speed-up (batch 32)", "speed-up (batch 1)"])
    lines = ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    for r in rows:
        name = f"teacher ({r['run']})" if r["is_teacher"] else r["run"]
        cells = [r["task"], name, r["variant"], _fmt(r["n"])]
        cells += [_pm(r["dev"].get(m)) for m in metrics]
        cells += [_pm(r.get("agreement"), 1, 100, "%"), _pm(r.get("size_mb"), 1), _pm(r.get("ms_per_example"), 2),
                  _pm(r.get("ms_per_example_batch1"), 2), _pm(r.get("speedup"), 1, unit="x"),
                  _pm(r.get("speedup_batch1"), 1, unit="x")]
        lines.append("| " + " | ".join(_fmt(c) for c in cells) + " |")
    return "\n".join(lines) + "\n"


def bar_chart(rows: list[dict[str, Any]], path: Path) -> None:
    """Each run's dev metrics (error bars: sd over seeds); the task's teacher dashed, the constant dotted."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    runs = [r for r in rows if r["kind"] == "run"]
    metrics = sorted({m for r in runs for m in r.get("dev", {})})
    lines = {(r["task"], r["kind"]): r["dev"] for r in rows if r["kind"] != "run"}
    labels = [f"{r['task']}/{r['run']}" + (f" (n={r['n']})" if r["n"] > 1 else "") for r in runs]
    fig, ax = plt.subplots(figsize=(max(6, 1.2 * len(runs) * max(1, len(metrics))), 4))
    width = 0.8 / max(1, len(metrics))
    for i, m in enumerate(metrics):
        xs = [j + i * width for j in range(len(runs))]
        dev = [r["dev"].get(m) for r in runs]
        ax.bar(xs, [d["mean"] if d else 0 for d in dev], width, label=f"dev {m}",
               yerr=[(d["sd"] or 0) if d else 0 for d in dev], capsize=3)
        for x, r in zip(xs, runs):
            for kind, style in (("teacher", "dashed"), ("constant", "dotted")):
                ref = lines.get((r["task"], kind), {}).get(m)
                if ref:
                    ax.hlines(ref["mean"], x - width / 2, x + width / 2, colors="black", linestyles=style)
    ax.set_xticks([j + width * (len(metrics) - 1) / 2 for j in range(len(runs))], labels, rotation=20, ha="right")
    ax.set_ylabel("dev metric")
    ax.plot([], [], "k--", label="teacher")
    ax.plot([], [], "k:", label="constant predictor")
    ax.set_ylim(0, 1)
    ax.legend(loc="lower right")
    fig.tight_layout()
    with atomic_file(path) as tmp:
        fig.savefig(tmp, dpi=120, format="png")
    plt.close(fig)


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
    md = ["# tinydistill report", "", f"Runs below {where}: {len(results)}.", "", markdown_table(rows)]
    md += ["- `n`: runs that differ only in seed, aggregated as mean ± sample standard deviation.",
           "- `gap closed`: (run − constant predictor) / (teacher − constant predictor); 100% is the teacher, "
           "0% the constant predictor (the majority training label; the mean training score for regression).",
           "- `steps`: optimiser steps (both phases of task distillation); `dev evals`: the dev evaluations during "
           "training that the exported checkpoint was picked from (a baseline compared with a distilled run should "
           "match both: the best of more evaluations flatters a run).",
           "- Latency: dev-set inference on CPU, each run and its teacher on the same batches; `speed-up` is the "
           "teacher's time over the run's. Latencies of different runs are only comparable when measured on "
           "the same machine under the same load.", ""]
    md += ["![dev metrics](report.png)", ""]
    mixed = [row for row in rows if row.get("config_differences")]
    for row in mixed:
        log.warning("report: %s aggregates seeds whose settings differ: %s", row["run"], row["config_differences"])
    if mixed:
        md += ["**Rows whose seeds differ in more than the seed** (their `run_config.yaml`; rerun or rename one):", ""]
        md += [f"- `{row['run']}` ({row['task']}): " + "; ".join(
            f"`{key}` = {', '.join(str(v) for v in values)}" for key, values in row["config_differences"].items())
            for row in mixed] + [""]
    missing = [m for f in folders for m in unfinished_jobs(f)]
    if missing:
        md += ["Sweep jobs without a result yet (running, failed or not started):", ""]
        md += [f"- `{job}`: {overrides}" for job, overrides in missing] + [""]
    exports = load_exports(folders)
    variants = variant_rows(variant_records(exports, teacher_dirs(results)))
    if variants:
        md += ["## Exported variants", "", variants_table(variants)]
        md += ["- `python -m tinydistill.export --task` timed each model as PyTorch fp32, ONNX fp32 and ONNX int8 "
               "beside its PyTorch fp32 teacher, in one process on the same dev batches and threads; `speed-up` is "
               "that teacher's time over the variant's. `n`: exports aggregated (seeds; for a teacher, the exports "
               "that timed it).",
               "- `agreement with PyTorch`: share of dev predictions equal to the same model's in PyTorch fp32. "
               "`size`: the weights file (model.safetensors, model.onnx, model_int8.onnx).", ""]
    points = frontier_points(rows, variants)
    constants = {r["task"]: r["dev"][main_metric(r)]["mean"] for r in rows
                 if r["kind"] == "constant" and main_metric(r) in r.get("dev", {})}
    frontier = plot_frontier(points, constants, out / "frontier.png")
    if frontier is not None:
        md += ["## Speed and accuracy frontier", "", "![frontier](frontier.png)", "",
               "Dev main metric against speed-up over the PyTorch fp32 teacher, one point per model and variant "
               "(exported variants with their export's timings); the dotted line is the constant predictor, the "
               "dashed line the points nothing beats on both axes.", ""]
    timings = load_timings(folders, results)
    if timings:
        md += ["## Wall times", "", timings_table(timings),
               "- Each stage's `timing.json`: its wall time, and the CPU time all other processes used meanwhile as a "
               f"share of the machine (wall time x cores). `alone`: under {ALONE_SHARE:.0%}, so the wall time may be "
               "quoted as measured alone.", ""]
    report = out / "report.md"
    atomic_write_text(report, "\n".join(md))
    atomic_write_text(out / "report.json", json.dumps(
        {"folders": [str(f) for f in folders], "rows": rows, "runs": results,
         "missing": [{"job": j, "overrides": o} for j, o in missing], "variants": variants,
         "exports": [e["_file"] for e in exports], "frontier": points, "timings": timings}, indent=2, default=str) + "\n")
    bar_chart(rows, out / "report.png")
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
