"""tinydistill.records: one writer and one reader per record; records written by earlier versions still load."""

import json
from pathlib import Path

import pytest

from tinydistill.errors import DataError
from tinydistill.records import METRICS_JSON, ClassifierRecord

ROOT = Path(__file__).resolve().parents[1]


def test_a_classifier_record_round_trips_and_reads_what_its_readers_need(tmp_path):
    fields = {"stage": "task", "task": "sst2", "teacher_dir": "artifacts/teacher/sst2", "seed": 1,
              "intermediate": {"steps": 10}, "pred": {"steps": 5, "evaluations": 3},
              "dev": {"accuracy": 0.8}, "dev_mismatched": {"accuracy": 0.7}, "tune": {"accuracy": 0.9},
              "parameters": {"student": 7, "teacher": 22}}
    record = ClassifierRecord(fields)
    assert ClassifierRecord.from_json(record.to_json()) == record
    assert record.is_result and record.training_steps == 15 and record.pred_evaluations == 3
    assert record.dev_metrics == {"dev": {"accuracy": 0.8}, "dev_mismatched": {"accuracy": 0.7}}
    record.write_log_copy(tmp_path / "log")
    assert ClassifierRecord.read(tmp_path / "log" / "result.json") == record
    (tmp_path / "model").mkdir()
    (tmp_path / "model" / METRICS_JSON).write_text(json.dumps(fields))
    assert ClassifierRecord.read(tmp_path / "model").teacher_dir == "artifacts/teacher/sst2"  # a model folder


def test_older_records_load_a_bare_parameter_count_as_a_mapping():
    assert ClassifierRecord({"stage": "finetune", "parameters": 22}).parameters == {"model": 22}
    assert ClassifierRecord({"stage": "task", "parameters": 7}).parameters == {"student": 7}
    assert not ClassifierRecord({"stage": "general", "dev": {}}).is_result


def test_the_records_in_committed_reports_still_load():
    """Every run record the committed reports hold (as the stages wrote them, some from before records.py)."""
    runs = [run for path in sorted((ROOT / "docs" / "results").rglob("report.json"))
            for run in json.loads(path.read_text()).get("runs", [])]
    assert len(runs) > 20
    for run in runs:
        record = ClassifierRecord.from_json(json.dumps({k: v for k, v in run.items() if k != "_file"}))
        assert record.is_result and record.dev_metrics
        assert all(isinstance(n, int) for n in record.parameters.values())


@pytest.mark.parametrize("text,problem", [("{broken", "not readable JSON"), ("[1, 2]", "expected a JSON object")])
def test_a_broken_record_is_one_line_naming_the_file(tmp_path, text, problem):
    path = tmp_path / METRICS_JSON
    path.write_text(text)
    with pytest.raises(DataError, match=rf"{path}: {problem}"):
        ClassifierRecord.read(path)


def test_a_corpus_record_reads_back_what_its_stage_wrote_and_older_counts(tmp_path):
    from tinydistill.records import GENERAL_JSON, CorpusRecord

    record = CorpusRecord(GENERAL_JSON, {"stage": "general", "parameters": {"student": 5}, "steps": 3})
    (tmp_path / GENERAL_JSON).write_text(record.to_json())
    assert CorpusRecord.read(tmp_path, GENERAL_JSON) == record and record.model_files() == {GENERAL_JSON: record.fields}
    (tmp_path / GENERAL_JSON).write_text(json.dumps({"stage": "general", "parameters": 5}))  # before the mapping
    assert CorpusRecord.read(tmp_path, GENERAL_JSON).parameters == {"student": 5}
    with pytest.raises(DataError, match="cannot read the record"):
        CorpusRecord.read(tmp_path, "missing.json")
