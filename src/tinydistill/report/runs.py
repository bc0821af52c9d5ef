"""The report's runs: classifier records (result.json, metrics.json) below folders, aggregated over seeds beside
their yardsticks (the constant predictor and each teacher)."""

from __future__ import annotations

import json
import logging
import os
import statistics
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from tinydistill.baselines import gap_closed
from tinydistill.data.tasks import get_task
from tinydistill.errors import DataError
from tinydistill.records import LOG_RESULT_JSON, METRICS_JSON, ClassifierRecord
from tinydistill.run_config import config_differences, load_run_config

log = logging.getLogger("tinydistill.report")

#: The classifier stages' records (task-distilled students, fine-tuned models): the log folder's copy and the one
#: beside the model.
RESULT_FILES = (LOG_RESULT_JSON, METRICS_JSON)


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
                try:
                    record = ClassifierRecord.read(path)
                except DataError as e:
                    log.warning("report: skipping %s: %s", path, e)
                    continue
                if record.is_result:
                    found.setdefault(_record_key(record.fields), {**record.fields, "_file": str(path)})
    return sorted(found.values(), key=lambda r: (r.get("task") or "", run_label(r), r.get("seed") or 0))


def read_result(path: Path) -> dict[str, Any] | None:
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


def summaries(dicts: list[dict[str, Any]]) -> dict[str, dict[str, Any]]:
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


def task_metric(r: dict[str, Any]) -> dict[str, str]:
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
        **task_metric(first),
        "stage": first.get("stage"),
        "run": run_label(first),
        "n": len(runs),
        "seeds": [r.get("seed") for r in runs],
        "files": [r["_file"] for r in runs],
        "dev": summaries([r["dev"] for r in runs]),
        # task.tune_split: the held-out training rows the runs' checkpoints were selected on (report.json only)
        **({"tune": summaries([r["tune"] for r in runs if "tune" in r])} if any("tune" in r for r in runs) else {}),
        "retention": summaries([r.get("retention", {}) for r in runs]),
        "gap_closed": summaries([_gap_closed(r) for r in runs]),
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
            rows.append({"kind": "constant", "task": task, **task_metric(mine[0]),
                         "run": f"constant predictor ({constant.get('prediction')})",
                         "n": None, "dev": {k: summary([v]) for k, v in constant.get("dev", {}).items()}})
        # One row per teacher folder, however the records name it (relative or absolute): the first name seen.
        teachers: dict[str, tuple[str, dict[str, Any]]] = {}
        for r in mine:
            t_dir = r.get("teacher_dir")
            if r.get("teacher") and t_dir and resolved(t_dir) not in row_dirs:
                teachers.setdefault(resolved(t_dir), (str(t_dir), r))
        for t_dir, r in sorted(teachers.values(), key=lambda named: named[0]):
            latency = {s: (r.get("latency" + s, {}) or {}).get("teacher") for s in ("", "_batch1")}
            rows.append({
                "kind": "teacher", "task": task, **task_metric(r), "run": f"teacher ({t_dir})", "n": None,
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
        row["is_teacher"] = any(resolved(Path(f).parent) in teachers for f in row["files"])
    yard = yardstick_rows(results, runs)
    order = {"constant": 0, "teacher": 1, "run": 2}
    return sorted(yard + runs, key=lambda row: (row["task"] or "", order[row["kind"]]))


def resolved(path: str | os.PathLike) -> str:
    return str(Path(path).resolve())


def teacher_dirs(results: list[dict[str, Any]]) -> set[str]:
    """The teacher folders the records name (relative ones from the working directory, as the stages wrote them)."""
    return {resolved(r["teacher_dir"]) for r in results if r.get("teacher_dir")}
