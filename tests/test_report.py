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
        write(tmp_path / "task" / "mrpc" / "none" / f"seed{seed}", task_record(seed, f1, acc, speedup=sp))
        # the run's log folder holds the same record (plus output_dir): it must not count twice
        write(tmp_path / "logs" / str(seed), {**task_record(seed, f1, acc, speedup=sp), "output_dir": "x"}, "result.json")
    write(tmp_path / "task" / "mrpc" / "no_pred" / "seed1", {**task_record(1, 0.80, 0.66), "run": "no_pred"})
    results = load_results(tmp_path)
    assert len(results) == 4
    rows = report_rows(results)
    assert [r["kind"] for r in rows] == ["constant", "teacher", "run", "run"]
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
    assert f"| mrpc | none | 3 | {acc} |" in row and gap in row and "| 7.1M | 6.0 ± 1.0x | 3.0 ± 0.0x |" in row
    assert "| mrpc | constant predictor (1) |  | 0.6800 | 0.8100 |" in text
    assert "| mrpc | teacher (artifacts/teacher/mrpc) |  | 0.7900 | 0.8600 |" in text
    single = next(line for line in text.splitlines() if line.startswith("| mrpc | no_pred |"))
    assert "| 1 | 0.6600 | 0.8000 |" in single and "±" not in single and "-18%" in single  # (0.66-0.68)/0.11

    saved = json.loads((tmp_path / "report" / "report.json").read_text())
    assert [r["run"] for r in saved["rows"]] == [r["run"] for r in rows]
    assert next(r for r in saved["rows"] if r["run"] == "none")["dev"]["f1"]["values"] == f1s
    assert len(saved["runs"]) == 4
    assert (tmp_path / "report" / "report.png").stat().st_size > 1000


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
