"""What the report adds beside the runs: each stage's wall time (timing.json) and the exported variants of each model
(export.json of `python -m tinydistill.export --task`), aggregated over seeds like the runs."""

from __future__ import annotations

import os
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from tinydistill.inference import EXPORT_JSON
from tinydistill.report.runs import (
    read_result,
    resolved,
    summaries,
    summary,
    task_metric,
)
from tinydistill.timing import TIMING_JSON


def load_timings(folders: Sequence[str | os.PathLike], results: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """Each stage's timing.json below `folders` and in the teacher and start-student folders the records name
    (the pipeline behind them), each once, in the order the stages started."""
    paths = [p for f in folders for p in sorted(Path(f).rglob(TIMING_JSON))]
    for r in results:
        paths += [Path(r[k]) / TIMING_JSON for k in ("teacher_dir", "student_source") if r.get(k)]
    found: dict[str, dict[str, Any]] = {}
    for path in paths:
        if not path.is_file() or resolved(path) in found:
            continue
        data = read_result(path)
        if data is not None and isinstance(data.get("wall_seconds"), (int, float)):
            found[resolved(path)] = {**data, "folder": str(path.parent)}
    return sorted(found.values(), key=lambda t: str(t.get("started") or ""))


#: Row order of the variants of one model.
VARIANTS = ("pytorch fp32", "onnx fp32", "onnx int8")


def load_exports(folders: Sequence[str | os.PathLike]) -> list[dict[str, Any]]:
    """The export.json files below `folders` that hold a dev check (`export --task`) or a serving table
    (`serve bench`), each once."""
    found: dict[str, dict[str, Any]] = {}
    for folder in folders:
        for path in sorted(Path(folder).rglob(EXPORT_JSON)):
            data = read_result(path)
            if data and (_checked(data) or isinstance(data.get("serve"), dict)):
                found.setdefault(resolved(path), {**data, "_file": str(path)})
    return list(found.values())


def _checked(data: dict[str, Any]) -> bool:
    check = data.get("check")
    return isinstance(check, dict) and bool(check.get("rows")) and bool(check.get("task"))


def variant_records(exports: list[dict[str, Any]], teachers: set[str]) -> list[dict[str, Any]]:
    """One record per variant row of each export: the exported model's variants (as the run its metrics.json
    names), and the teacher it was timed against. Speed-ups are kept only when they are over the teacher: the
    export timed a teacher, or the exported model is a teacher the report's runs name."""
    out = []
    for e in (e for e in exports if _checked(e)):
        check, record, source = e["check"], e.get("record") or {}, str(e.get("source"))
        main_bs = str(check.get("batch_sizes", [32])[0])
        source_is_teacher = resolved(source) in teachers
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
                "task": check["task"], **task_metric(check), "stage": stage, "run": run, "seed": seed,
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
            **task_metric(first),
            "n": len(g), "seeds": [r["seed"] for r in g], "files": [r["_file"] for r in g],
            "dev": summaries([r["dev"] for r in g]),
        }
        for key in ("size_mb", "agreement", "max_logit_diff", "ms_per_example", "ms_per_example_batch1", "speedup",
                    "speedup_batch1"):
            values = [r[key] for r in g if isinstance(r.get(key), (int, float))]
            row[key] = summary(values) if values else None
        rows.append(row)
    return rows


def serve_rows(exports: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """One row per export timed by `python -m tinydistill.serve bench` and per thread count and batch size: the
    chosen backend, the teacher's, and the two yardsticks beside the FLOP ratio."""
    out = []
    for e in exports:
        serve = e.get("serve")
        if not isinstance(serve, dict) or not serve.get("yardsticks"):
            continue
        record = e.get("record") or {}
        chosen = next((r for r in serve.get("rows", []) if r.get("model") == "student"
                       and r.get("name") == serve["choice"]["name"]), {})
        for threads, sizes in serve["yardsticks"].items():
            for batch, y in sizes.items():
                out.append({"task": serve["task"], "metric": serve.get("metric"),
                            "run": record.get("run") or Path(str(e.get("source"))).name, "seed": record.get("seed"),
                            "threads": int(threads), "batch": int(batch), "choice": serve["choice"]["name"],
                            "teacher_choice": serve.get("teacher_choice"), "cpu": serve.get("cpu"),
                            "dev": chosen.get("dev") or {}, "agreement": chosen.get("agreement"), **y,
                            "_file": e["_file"]})
    return sorted(out, key=lambda r: (r["task"], r["run"], str(r["seed"]), r["threads"], -r["batch"]))
