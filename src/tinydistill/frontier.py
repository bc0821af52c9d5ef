"""The speed/accuracy frontier: dev main metric against speed-up over the teacher, one point per model and variant.

`python -m tinydistill.report` draws it as `frontier.png` from the rows of its report: the teacher (speed-up 1),
every run (students, baselines) as PyTorch fp32 with the speed-up its stage measured, and, where
`python -m tinydistill.export --task` checked an export, each exported variant (PyTorch fp32, ONNX fp32, ONNX
int8) with the speed-ups of that export's one timing run, which then replace the stage's point. The constant
predictor runs no model, so it has no speed-up: it is the dotted line every useful model must clear. The dashed
line joins the points no other point beats on both axes (the Pareto front): the model to ship is the fastest
point on it that meets the accuracy bar. One row of two panels per task: batch 32 and batch 1.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from tinydistill.atomic import atomic_file
from tinydistill.data.tasks import get_task

MARKERS = {"pytorch fp32": "o", "onnx fp32": "s", "onnx int8": "^"}
#: The backend `serve bench` chose (filled: over the PyTorch fp32 teacher; hollow: over the teacher's own backend).
SERVED_MARKER = "*"
#: Speed-up keys of a row, and the panel titles.
PANELS = (("speedup", "batch 32"), ("speedup_batch1", "batch 1"))


def main_metric(row: dict[str, Any]) -> str:
    """The main metric of a report row's task: the row's own (`metric`, from the run's `task_spec`; a user's task),
    else the GLUE preset's."""
    return row.get("metric") or get_task(row["task"]).metric


def _mean(s: Any) -> float | None:
    return s["mean"] if isinstance(s, dict) and isinstance(s.get("mean"), (int, float)) else None


def frontier_points(rows: list[dict[str, Any]], variant_rows: list[dict[str, Any]],
                    serve_rows: list[dict[str, Any]] = ()) -> list[dict[str, Any]]:
    """The frontier's points, from the report's rows, its exported-variant rows and its serving rows: per point
    `task`, `label` (the model), `variant`, `metric`, `value` (mean dev metric) and `speedup` / `speedup_batch1`
    (mean, or None); a served point also has `vs_teacher_best` / `vs_teacher_best_batch1` and `flop_ratio`."""
    points: list[dict[str, Any]] = []
    exported = {(v["task"], v["model_key"]) for v in variant_rows}
    for r in rows:
        metric = main_metric(r)
        value = _mean(r.get("dev", {}).get(metric))
        if value is None or r["kind"] == "constant":
            continue
        if r["kind"] == "teacher" or r.get("is_teacher"):
            speed = {"speedup": 1.0, "speedup_batch1": 1.0}
            label = "teacher"
        else:
            speed = {k: _mean(r.get(k)) for k, _ in PANELS}
            label = r["run"]
        key = (r["task"], "teacher" if label == "teacher" else f"{r.get('stage')}/{r['run']}")
        if key in exported:
            continue  # its export's points, timed in one run with its ONNX variants, stand for it
        points.append({"task": r["task"], "label": label, "variant": "pytorch fp32", "metric": metric,
                       "value": value, **speed})
    for v in variant_rows:
        metric = main_metric(v)
        value = _mean(v.get("dev", {}).get(metric))
        if value is None:
            continue
        points.append({"task": v["task"], "label": "teacher" if v.get("is_teacher") else v["run"],
                       "variant": v["variant"], "metric": metric, "value": value,
                       **{k: _mean(v.get(k)) for k, _ in PANELS}})
    points += served_points(serve_rows)
    seen: set[tuple[str, str, str]] = set()
    unique = []
    for p in points:  # a teacher both exported itself and timed by its students' exports: one point
        key = (p["task"], p["label"], p["variant"])
        if key not in seen:
            seen.add(key)
            unique.append(p)
    return unique


def served_points(serve_rows: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """One point per model `serve bench` timed: its chosen backend on every core (the most threads timed), at
    the speed-ups over the PyTorch fp32 teacher, with those over the teacher's own backend beside them."""
    out: dict[tuple, dict[str, Any]] = {}
    for r in serve_rows:
        value = r["dev"].get(r["metric"])
        key = (r["task"], r["run"], r["seed"])
        if value is None or (key in out and out[key]["threads"] > r["threads"]):
            continue
        point = out.get(key) if key in out and out[key]["threads"] == r["threads"] else None
        point = point or {"task": r["task"], "label": r["run"], "variant": f"served: {r['choice']}",
                          "metric": r["metric"], "value": value, "threads": r["threads"],
                          "flop_ratio": r["flop_ratio"], "teacher_choice": r["teacher_choice"]}
        suffix = "" if r["batch"] != 1 else "_batch1"
        point["speedup" + suffix] = r["vs_teacher_fp32"]
        point["vs_teacher_best" + suffix] = r["vs_teacher_best"]
        out[key] = point
    return list(out.values())


def pareto(points: list[dict[str, Any]], key: str) -> list[dict[str, Any]]:
    """The points no other point beats on both speed-up (`key`) and value, fastest first."""
    out: list[dict[str, Any]] = []
    best = float("-inf")
    for p in sorted((p for p in points if p.get(key)), key=lambda p: (-p[key], -p["value"])):
        if p["value"] > best:
            out.append(p)
            best = p["value"]
    return out


def _served_yardsticks(ax: Any, served: list[dict[str, Any]], key: str, colours: dict[str, str]) -> None:
    """For each served point: a hollow star at its speed-up over the teacher's own backend, joined to it, and a
    dotted vertical line at the encoder FLOP ratio (where that speed-up would be if time followed FLOPs)."""
    best_key = "vs_teacher_best" + key.removeprefix("speedup")
    for p in served:
        if not p.get(best_key):
            continue
        ax.scatter(p[best_key], p["value"], marker=SERVED_MARKER, s=80, facecolors="white",
                   edgecolors=colours[p["label"]], zorder=3)
        ax.plot([p[best_key], p[key]], [p["value"]] * 2, color=colours[p["label"]], linewidth=0.6, zorder=2)
        ax.axvline(p["flop_ratio"], color=colours[p["label"]], linestyle=":", linewidth=0.8)
        ax.annotate(f"FLOP ratio {p['flop_ratio']:.1f}", (p["flop_ratio"], p["value"]), textcoords="offset points",
                    xytext=(3, -20), fontsize=7, color=colours[p["label"]])


def plot_frontier(points: list[dict[str, Any]], constants: dict[str, float], path: Path) -> Path | None:
    """Write the frontier plot to `path` (None, and nothing written, when no point has a speed-up)."""
    if not any(p.get(k) for p in points for k, _ in PANELS):
        return None
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    from matplotlib.ticker import FuncFormatter, LogLocator, NullFormatter

    tasks = sorted({p["task"] for p in points})
    fig, axes = plt.subplots(len(tasks), 2, figsize=(12, 4.5 * len(tasks)), squeeze=False)
    labels = sorted({p["label"] for p in points}, key=lambda s: (s != "teacher", s))
    colours = {label: f"C{i % 10}" for i, label in enumerate(labels)}
    for row, task in zip(axes, tasks):
        mine = [p for p in points if p["task"] == task]
        metric = mine[0]["metric"]
        for ax, (key, title) in zip(row, PANELS):
            shown = [p for p in mine if p.get(key)]
            for i, p in enumerate(sorted(shown, key=lambda p: (p[key], p["value"]))):
                ax.scatter(p[key], p["value"], marker=MARKERS.get(p["variant"], SERVED_MARKER), s=60,
                           color=colours[p["label"]], edgecolors="black", linewidths=0.5, zorder=3)
                short = "" if p["variant"] == "pytorch fp32" else " " + p["variant"].replace("onnx ", "onnx-")
                short = short.replace(" served: ", " served ")
                # alternate above and below, so neighbours' labels do not print over each other
                ax.annotate(p["label"] + short, (p[key], p["value"]), textcoords="offset points",
                            xytext=(5, 5 if i % 2 == 0 else -11), fontsize=7)
            _served_yardsticks(ax, [p for p in shown if "flop_ratio" in p], key, colours)
            front = pareto(shown, key)
            if len(front) > 1:
                ax.plot([p[key] for p in front], [p["value"] for p in front], "k--", linewidth=0.8, zorder=2,
                        label="Pareto front")
            if task in constants:
                ax.axhline(constants[task], color="grey", linestyle=":", label="constant predictor")
            if shown:
                ax.set_xscale("log")
                ax.xaxis.set_major_locator(LogLocator(subs=(1.0, 2.0, 5.0)))
                ax.xaxis.set_major_formatter(FuncFormatter(lambda v, _: f"{v:g}x"))
                ax.xaxis.set_minor_formatter(NullFormatter())
            ax.set_title(f"{task}: {title}")
            second = "; hollow stars: over the teacher's own backend" if any("flop_ratio" in p for p in shown) else ""
            ax.set_xlabel(f"speed-up over the PyTorch fp32 teacher (log scale{second})")
            ax.set_ylabel(f"dev {metric}")
            for variant, marker in MARKERS.items():
                ax.scatter([], [], marker=marker, color="white", edgecolors="black", label=variant)
            if any("flop_ratio" in p for p in shown):
                ax.scatter([], [], marker=SERVED_MARKER, color="grey", label="served (serve bench)")
                ax.scatter([], [], marker=SERVED_MARKER, color="white", edgecolors="grey",
                           label="served, over the teacher's own backend")
            ax.legend(loc="best", fontsize=7)
            ax.grid(True, which="both", alpha=0.3)
    fig.tight_layout()
    with atomic_file(path) as tmp:
        fig.savefig(tmp, dpi=120, format="png")
    plt.close(fig)
    return path
