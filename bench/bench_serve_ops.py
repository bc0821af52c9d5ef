"""Where a served student's time goes, operator by operator, beside its teacher's: why its speed-up over the
teacher can fall short of the encoder FLOP ratio.

    python bench/bench_serve_ops.py artifacts/task/sst2/none-noaug/seed42 --task sst2 --threads 1,2 --json ops.json

Both models are built as one `serve bench` candidate (`--candidate`, default the int8 graph it chooses on x86) and
run over the same first `--examples` dev rows at batch 32 and batch 1, per thread count (`--threads`). Recorded
per model: the wall time per example (the models taking turns pass by pass, as in `serve bench`, best of
`--repeats`), and from ONNX Runtime's profiler, in a pass of its own, the time inside the session and its
operators' kernel time, by operator type. Per operator group, the teacher's time over the student's sits beside
the FLOP ratio: matrix products shrink with the FLOP ratio, attention's score products with layers x hidden x
length squared, and operators that work element by element (layer norms, GELU, quantising activations) only with
layers x hidden size; what is left is per-call overhead.
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import sys
import tempfile
from collections import defaultdict
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "src"))

from tinydistill.atomic import atomic_write_text  # noqa: E402
from tinydistill.backends import CANDIDATES, build_candidates  # noqa: E402
from tinydistill.bench import batched, dev_set, versions  # noqa: E402
from tinydistill.data.files import task_from_argument  # noqa: E402
from tinydistill.errors import ConfigError, TinyDistillError  # noqa: E402
from tinydistill.export import find_teacher, load_teacher  # noqa: E402
from tinydistill.hardware import cpu_model  # noqa: E402
from tinydistill.inference import load_onnx_classifier, load_torch_classifier  # noqa: E402
from tinydistill.serve import BATCH_SIZES, flop_ratio, thread_counts, time_alternated  # noqa: E402

#: ONNX Runtime operator types by what they compute (any other type counts as element-wise).
GROUPS = {
    "matrix products": {"MatMul", "FusedMatMul", "Gemm", "FusedGemm", "MatMulInteger", "DynamicQuantizeMatMul",
                        "MatMulIntegerToFloat", "QGemm", "QLinearMatMul"},
    "attention (projections and scores)": {"Attention", "QAttention", "MultiHeadAttention", "Softmax"},
}


def group_of(op: str) -> str:
    return next((g for g, ops in GROUPS.items() if op in ops), "element-wise and other")


def operator_times(profile_file: str, examples: int) -> dict[str, Any]:
    """ms per example inside the session and in the operators' kernels (by type) from an ORT profile, leaving
    out the profile's first run (the untimed batch that warms the session)."""
    events = json.loads(Path(profile_file).read_text())
    runs = sorted((e for e in events if e.get("cat") == "Session" and e["name"] == "model_run"),
                  key=lambda e: e["ts"])
    start = runs[1]["ts"]
    nodes = [e for e in events if e.get("cat") == "Node" and e["name"].endswith("_kernel_time") and e["ts"] >= start]
    by_op: dict[str, float] = defaultdict(float)
    for e in nodes:
        by_op[e["args"].get("op_name", "?")] += e["dur"] / 1000 / examples
    return {"session_ms": sum(e["dur"] for e in runs[1:]) / 1000 / examples,
            "kernel_ms": sum(by_op.values()), "operators_per_run": len(nodes) / (len(runs) - 1),
            "by_op": dict(sorted(by_op.items(), key=lambda kv: -kv[1]))}


def by_group(by_op: dict[str, float]) -> dict[str, float]:
    out: dict[str, float] = defaultdict(float)
    for op, ms in by_op.items():
        out[group_of(op)] += ms
    return dict(out)


def measure(files: dict[str, Path], spinning: bool, timed: dict[int, list[dict]], threads: list[int], repeats: int,
            work: Path) -> dict[str, dict]:
    """Per thread count and batch size, per model (role -> ONNX file): wall time, then the profiled pass."""
    out: dict[str, dict] = {}
    for t in threads:
        clfs = {role: load_onnx_classifier(f, t, spinning) for role, f in files.items()}
        for bs, batches in timed.items():
            examples = sum(len(b["input_ids"]) for b in batches)
            wall = time_alternated({r: c.logits for r, c in clfs.items()}, batches, repeats)
            cell = out.setdefault(str(t), {}).setdefault(str(bs), {"load_average": os.getloadavg()[0]})
            for role, f in files.items():
                prof = load_onnx_classifier(f, t, spinning, profile=str(work / f"{role}-{t}-{bs}"))
                for b in [batches[0], *batches]:
                    prof.logits(b)
                ops = operator_times(prof.session.end_profiling(), examples)
                cell[role] = {"wall_ms": 1000 * wall[role] / examples, **ops, "by_group": by_group(ops["by_op"])}
            s, te = cell["student"], cell["teacher"]
            cell["teacher_over_student"] = {
                "wall": te["wall_ms"] / s["wall_ms"], "kernel": te["kernel_ms"] / s["kernel_ms"],
                **{g: te["by_group"][g] / s["by_group"][g] for g in s["by_group"] if te["by_group"].get(g)}}
    return out


def run(model: str, task_name: str, teacher: str | None, candidate: str, threads: list[int], examples: int,
        repeats: int, data_dir: str | None, cache_dir: str, work: Path) -> dict[str, Any]:
    task = task_from_argument(task_name)
    clf = load_torch_classifier(Path(model))
    t_dir = find_teacher(Path(model), teacher)
    if t_dir is None:
        raise ConfigError(f"{model}: no teacher to compare with (give --teacher, or a metrics.json teacher_dir)")
    models = {"student": clf, "teacher": load_teacher(t_dir, clf)}
    files, built = {}, None
    for role, c in models.items():
        (work / role).mkdir(parents=True, exist_ok=True)
        built = build_candidates(c, work / role, [], (candidate,))[-1]
        if built.name != candidate:
            raise ConfigError(f"--candidate {candidate!r}: not available on this machine (see the log line above)")
        files[role] = work / role / built.file
    dev, _ = dev_set(task, clf.tokenizer, task.length, data_dir, cache_dir, write_cache=False)
    subset = dev.select(range(min(examples, len(dev))))
    timed = {bs: batched(subset, clf.tokenizer, bs) for bs in BATCH_SIZES}
    return {"task": task.name, "student": model, "teacher": str(t_dir), "candidate": candidate,
            "examples": len(subset), "repeats": repeats, "cpu": cpu_model(), "cpu_count": os.cpu_count(),
            "versions": versions(), "flop_ratio": flop_ratio(models["teacher"], clf, timed[BATCH_SIZES[0]]),
            "groups": {g: sorted(ops) for g, ops in GROUPS.items()},
            "threads": measure(files, built.spinning, timed, threads, repeats, work)}


def summary(result: dict[str, Any]) -> str:
    lines = [f"{result['cpu']}; {result['candidate']}; FLOP ratio {result['flop_ratio']:.1f}"]
    for t, sizes in result["threads"].items():
        for bs, cell in sizes.items():
            s, r = cell["student"], cell["teacher_over_student"]
            lines.append(f"{t} thread(s), batch {bs}: student {s['wall_ms']:.3f} ms/example, teacher "
                         f"{cell['teacher']['wall_ms']:.3f}: x{r['wall']:.2f}; by group: "
                         + ", ".join(f"{g} {s['by_group'][g]:.3f} ms (teacher x{r[g]:.2f})"
                                     for g in s["by_group"] if g in r))
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> None:
    onnx = [c for c in CANDIDATES if c.startswith("onnx") and "static" not in c]  # static int8 needs calibration
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("model", help="the student's folder (save_pretrained)")
    p.add_argument("--task", required=True, help="a GLUE name, or a user's task file")
    p.add_argument("--teacher", default=None, help="teacher folder (default: the model's metrics.json teacher_dir)")
    p.add_argument("--candidate", default="onnx int8 dynamic per-channel", choices=onnx)
    p.add_argument("--threads", default=None, help="comma-separated thread counts (default: 1 and every core)")
    p.add_argument("--examples", type=int, default=128)
    p.add_argument("--repeats", type=int, default=5)
    p.add_argument("--json", default=None, help="write the result to this JSON file")
    p.add_argument("--data-dir", default=os.environ.get("TINYDISTILL_DATA_DIR"))
    p.add_argument("--cache-dir", default=os.environ.get("TINYDISTILL_CACHE", "artifacts/cache"))
    a = p.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(message)s")  # a candidate skipped: one line saying why
    for noisy in ("onnxruntime", "root", "tinydistill.export"):
        logging.getLogger(noisy).setLevel(logging.WARNING)
    try:
        with tempfile.TemporaryDirectory(prefix="serve-ops-") as work:
            result = run(a.model, a.task, a.teacher, a.candidate, thread_counts(a.threads), a.examples, a.repeats,
                         a.data_dir, a.cache_dir, Path(work))
    except TinyDistillError as e:
        print(f"error: {e}", file=sys.stderr)
        sys.exit(2)
    print(summary(result))
    if a.json:
        atomic_write_text(a.json, json.dumps(result, indent=2) + "\n")


if __name__ == "__main__":
    main()
