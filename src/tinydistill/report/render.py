"""The report's Markdown tables and bar chart, from rows (pure rendering)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from tinydistill.atomic import atomic_file


def fmt(x: Any, digits: int = 4) -> str:
    return "" if x is None else (f"{x:.{digits}f}" if isinstance(x, float) else str(x))


def pm(s: dict[str, Any] | None, digits: int = 4, scale: float = 1.0, unit: str = "") -> str:
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
        cells = [r["task"], r["run"], fmt(r.get("n"))]
        cells += [pm(r.get("dev", {}).get(m)) for m in metrics]
        cells += [pm(r.get("retention", {}).get(m), 1, 100, "%") for m in metrics]
        cells += [pm(r.get("gap_closed", {}).get(m), 0, 100, "%") for m in metrics]
        cells += [r.get("steps"), r.get("evaluations"), f"{params / 1e6:.1f}M" if params else "",
                  pm(r.get("speedup"), 1, unit="x"), pm(r.get("speedup_batch1"), 1, unit="x"),
                  pm(r.get("ms_per_example"), 2)]
        lines.append("| " + " | ".join(fmt(c) for c in cells) + " |")
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
        cells = [r["task"], name, r["variant"], fmt(r["n"])]
        cells += [pm(r["dev"].get(m)) for m in metrics]
        cells += [pm(r.get("agreement"), 1, 100, "%"), pm(r.get("size_mb"), 1), pm(r.get("ms_per_example"), 2),
                  pm(r.get("ms_per_example_batch1"), 2), pm(r.get("speedup"), 1, unit="x"),
                  pm(r.get("speedup_batch1"), 1, unit="x")]
        lines.append("| " + " | ".join(fmt(c) for c in cells) + " |")
    return "\n".join(lines) + "\n"


def serve_table(rows: list[dict[str, Any]]) -> str:
    """The chosen serving backend per thread count and batch size, with its two yardsticks and the FLOP ratio."""
    head = ["task", "model", "seed", "threads", "batch", "served as", "dev", "speed-up over the PyTorch fp32 teacher",
            "teacher served as", "speed-up over that teacher", "encoder FLOP ratio", "share of the FLOP ratio",
            "load average", "CPU"]
    lines = ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    for r in rows:
        dev = r["dev"].get(r["metric"])
        cells = [r["task"], r["run"], fmt(r["seed"]), r["threads"], r["batch"], r["choice"],
                 f"{r['metric']} {dev:.4f}" if dev is not None else "", f"{r['vs_teacher_fp32']:.1f}x",
                 r["teacher_choice"], f"{r['vs_teacher_best']:.1f}x", f"{r['flop_ratio']:.1f}",
                 f"{100 * r['share_of_flop_ratio']:.0f}%", f"{r['load_average']:.1f}", r.get("cpu") or ""]
        lines.append("| " + " | ".join(fmt(c) for c in cells) + " |")
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
        lines.append("| " + " | ".join(fmt(c) for c in cells) + " |")
    return "\n".join(lines) + "\n"
