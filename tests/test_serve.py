"""Serving on the CPU it runs on (issue 51): the backend table, the agreement and metric guard (a deliberately
broken candidate is rejected however fast it is), the recorded choice that predict serves, and candidates this
machine lacks skipped with one log line; bench/bench_serve_ops.py's split of each model's time by operator group.
Tiny random BERT classifiers and a few synthetic SST-2 rows; no timings are asserted."""

from __future__ import annotations

import importlib.util
import json
import logging
import sys
from pathlib import Path

import numpy as np
import pytest

pytest.importorskip("onnxruntime", reason="the export extra is not installed (pip install -e '.[export]')")
pytest.importorskip("onnxscript", reason="the export extra is not installed (pip install -e '.[export]')")

from tinydistill import backends, predict, serve  # noqa: E402
from tinydistill.backends import CANDIDATES, REFERENCE, Candidate, build_candidates  # noqa: E402
from tinydistill.errors import ConfigError  # noqa: E402
from tinydistill.inference import (  # noqa: E402
    EXPORT_JSON,
    OnnxClassifier,
    TorchClassifier,
    load_torch_classifier,
    recorded_choice,
)
from tests.test_export import LABELS, WORDS, make_model  # noqa: E402

ROOT = Path(__file__).resolve().parents[1]

FAST = ("pytorch fp32", "onnx fp32", "onnx fp32 no-spin", "onnx int8 dynamic", "onnx int8 static")


@pytest.fixture(scope="module")
def sst2_dir(tmp_path_factory) -> Path:
    """<dir>/glue/SST-2/{train,dev}.tsv: 40 and 24 synthetic rows."""
    root = tmp_path_factory.mktemp("serve_data")
    rng = np.random.default_rng(0)
    words = WORDS.split()
    (root / "glue" / "SST-2").mkdir(parents=True)
    for split, n in (("train", 40), ("dev", 24)):
        rows = ["sentence\tlabel"] + [" ".join(rng.choice(words, rng.integers(2, 12))) + f"\t{i % 2}" for i in range(n)]
        (root / "glue" / "SST-2" / f"{split}.tsv").write_text("\n".join(rows) + "\n")
    return root


@pytest.fixture(scope="module")
def pair(tmp_path_factory) -> dict[str, Path]:
    """A teacher and a student of the same tiny shape (their FLOP ratio is 1); the student's metrics.json names
    the teacher."""
    root = tmp_path_factory.mktemp("serve_models")
    ids = {"id2label": LABELS, "label2id": {v: k for k, v in LABELS.items()}}
    teacher = make_model(root / "teacher", seed=1, **ids)
    student = make_model(root / "student", seed=2, **ids)
    (student / "metrics.json").write_text(json.dumps({"stage": "task", "task": "sst2", "run": "tiny", "seed": 42,
                                                      "dev": {"accuracy": 0.5}, "teacher_dir": str(teacher)}))
    return {"teacher": teacher, "student": student}


@pytest.fixture(scope="module")
def result(pair, sst2_dir, tmp_path_factory) -> dict:
    work = tmp_path_factory.mktemp("serve_work")
    out = serve.bench(pair["student"], "sst2", threads=[1], examples=8, repeats=1, calibration=16, wanted=FAST,
                      data_dir=str(sst2_dir), cache_dir=work / "cache", work=work)
    serve.record(out, work, pair["student"] / "onnx", pair["student"])
    return out


def test_table_has_every_candidate_of_both_models_with_dev_rows_and_latency(result):
    names = {(r["model"], r["name"]) for r in result["rows"]}
    assert names == {(m, n) for m in ("student", "teacher") for n in FAST}
    for r in result["rows"]:
        assert set(r["latency"]) == {"1"} and set(r["latency"]["1"]) == {"32", "1"}
        assert all(lat["seconds"] > 0 and "load_average" in lat for lat in r["latency"]["1"].values())
        assert 0.0 <= r["agreement"] <= 1.0 and "accuracy" in r["dev"]
    ref = next(r for r in result["rows"] if r["model"] == "student" and r["name"] == REFERENCE)
    assert ref["agreement"] == 1.0 and ref["max_logit_diff"] == 0.0 and ref["accepted"]
    fp32 = next(r for r in result["rows"] if r["model"] == "student" and r["name"] == "onnx fp32")
    assert fp32["max_logit_diff"] < 1e-4  # the same function, so the same answers
    no_spin = next(r for r in result["rows"] if r["model"] == "student" and r["name"] == "onnx fp32 no-spin")
    assert no_spin["file"] == fp32["file"] and no_spin["spinning"] is False and fp32["spinning"] is True
    assert result["examples_timed"] == 8 and result["examples_dev"] == 24


def test_yardsticks_and_flop_ratio(result, pair):
    assert result["teacher_choice"] in FAST
    y = result["yardsticks"]["1"]["32"]
    assert y["flop_ratio"] == result["flop_ratio"] == pytest.approx(1.0)  # same shape: the same encoder FLOPs
    assert y["share_of_flop_ratio"] == pytest.approx(y["vs_teacher_best"] / y["flop_ratio"])
    teacher_fp32 = next(r for r in result["rows"] if r["model"] == "teacher" and r["name"] == REFERENCE)
    chosen = next(r for r in result["rows"] if r["model"] == "student" and r["name"] == result["choice"]["name"])
    assert y["vs_teacher_fp32"] == pytest.approx(teacher_fp32["latency"]["1"]["32"]["seconds"]
                                                 / chosen["latency"]["1"]["32"]["seconds"])


def _row(name: str, agreement: float, drop: float, seconds: float) -> dict:
    lat = {"1": {"32": {"seconds": seconds}, "1": {"seconds": seconds}}}
    return {"model": "student", "name": name, "agreement": agreement, "metric_drop": drop, "latency": lat}


def test_guard_rejects_disagreement_and_metric_drop_however_fast():
    rows = [_row(REFERENCE, 1.0, 0.0, 1.0), _row("broken", 0.5, 30.0, 1e-6), _row("drops", 0.995, 1.5, 1e-5),
            _row("good", 0.995, 0.5, 0.5)]
    serve.guard(rows)
    assert [r["accepted"] for r in rows] == [True, False, False, True]
    assert "agrees with pytorch fp32 on 50.00% < 99%" in rows[1]["rejected"]
    assert rows[2]["rejected"] == "dev metric 1.50 points lower (> 1)"
    assert serve.choose(rows, "student")["name"] == "good"
    rows[3]["latency"]["1"]["1"]["seconds"] = 4.0  # twice as fast at batch 32, twice as slow at batch 1: a tie
    assert serve.choose(rows, "student")["relative_time"] == pytest.approx(1.0)


def test_a_broken_candidate_measured_for_real_is_rejected(pair, sst2_dir, tmp_path, monkeypatch):
    """A candidate that swaps the labels (a quantiser gone wrong, say) runs as fast as PyTorch fp32 but answers
    otherwise on every row: the guard rejects it, and the choice never names it even when it is timed fastest."""

    class Swapped(TorchClassifier):
        def logits(self, batch):
            return super().logits(batch)[:, ::-1].copy()

    class Broken(Candidate):
        def load(self, model, folder, threads):
            return Swapped(model.model, model.path, model.tokenizer)

    real = backends.build_candidates

    def with_broken(clf, folder, calibration, wanted=CANDIDATES):
        return [*real(clf, folder, calibration, wanted), Broken("pytorch fp32 broken", "pytorch", "fp32")]

    monkeypatch.setattr(serve, "build_candidates", with_broken)
    out = serve.bench(pair["student"], "sst2", pair["teacher"], threads=[1], examples=4, repeats=1, calibration=8,
                      wanted=(REFERENCE,), data_dir=str(sst2_dir), cache_dir=tmp_path / "cache", work=tmp_path)
    broken = next(r for r in out["rows"] if r["model"] == "student" and r["name"] == "pytorch fp32 broken")
    assert broken["agreement"] == 0.0 and not broken["accepted"] and "agrees with pytorch fp32 on 0.00%" in \
        broken["rejected"]
    for r in out["rows"]:
        r["latency"] = {"1": {"32": {"seconds": 1e-6 if r is broken else 1.0}, "1": {"seconds": 1.0}}}
    assert serve.choose(out["rows"], "student")["name"] == REFERENCE


def test_export_json_records_the_choice_and_keeps_the_export_fields(result, pair):
    info = json.loads((pair["student"] / "onnx" / EXPORT_JSON).read_text())
    assert info["serve"]["choice"] == result["choice"] and "size_mb" in info and "exporter" in info
    choice = recorded_choice(pair["student"])
    assert choice["name"] == result["choice"]["name"]
    if choice["file"]:
        assert (pair["student"] / "onnx" / choice["file"]).is_file()


def test_predict_serves_the_recorded_choice_unless_told_otherwise(result, pair, monkeypatch, capsys):
    onnx = pair["student"] / "onnx"
    kept = (onnx / EXPORT_JSON).read_text()
    try:
        _predict_checks(pair, onnx, json.loads(kept), monkeypatch, capsys)
    finally:
        (onnx / EXPORT_JSON).write_text(kept)


def _predict_checks(pair, onnx, info, monkeypatch, capsys):
    info["serve"]["choice"] = {"name": "onnx int8 dynamic", "runtime": "onnx", "precision": "int8",
                               "file": "model_int8_dynamic.onnx", "source": str(pair["student"])}
    (onnx / EXPORT_JSON).write_text(json.dumps(info))
    (onnx / "model_int8_dynamic.onnx").write_bytes(
        (onnx.parent / "onnx" / "model.onnx").read_bytes())  # any graph: predict must open the recorded file
    clf = predict.load_model(str(pair["student"]), None, "recorded")
    assert isinstance(clf, OnnxClassifier) and clf.path.name == "model_int8_dynamic.onnx"
    assert isinstance(predict.load_model(str(pair["student"]), None, "as-given"), TorchClassifier)
    monkeypatch.setattr(sys, "stdin", type("S", (), {"buffer": __import__("io").BytesIO(b"a good film .\n")})())
    predict.main([str(onnx)])
    assert capsys.readouterr().out.split("\t")[0] in LABELS.values()
    with pytest.raises(ConfigError, match="--backend onnx int8 static per-channel: not in the table"):
        predict.load_model(str(pair["student"]), None, "onnx int8 static per-channel")


def test_missing_runtimes_and_bf16_are_skipped_with_one_line_each(pair, tmp_path, monkeypatch, caplog):
    clf = load_torch_classifier(pair["student"])
    monkeypatch.setattr(backends, "native_cpu_bf16", lambda: False)
    monkeypatch.setitem(sys.modules, "onnxruntime", None)  # import fails: as when it is not installed
    monkeypatch.setitem(sys.modules, "openvino", None)
    with caplog.at_level(logging.INFO, logger="tinydistill.serve"):
        cands = build_candidates(clf, tmp_path, [], CANDIDATES)
    assert [c.name for c in cands] == [REFERENCE]
    lines = [r.getMessage() for r in caplog.records]
    assert len(lines) == 4
    assert "serve: pytorch bf16 skipped: this CPU has no bfloat16 instructions (avx512_bf16 or AMX)" in lines
    assert "serve: openvino bf16 skipped: this CPU has no bfloat16 instructions (avx512_bf16 or AMX)" in lines
    onnx = [n for n in CANDIDATES if n.startswith("onnx")]
    assert f"serve: {', '.join(onnx)} skipped: onnxruntime is not installed (pip install -e '.[export]')" in lines
    assert "serve: openvino fp32 skipped: openvino is not installed (pip install -e '.[serve]')" in lines


def test_bf16_candidate_is_offered_only_with_native_bf16(pair, tmp_path, monkeypatch):
    clf = load_torch_classifier(pair["student"])
    monkeypatch.setattr(backends, "native_cpu_bf16", lambda: True)
    cands = build_candidates(clf, tmp_path, [], (REFERENCE, "pytorch bf16"))
    assert [c.name for c in cands] == [REFERENCE, "pytorch bf16"]
    bf16 = cands[1].load(clf, tmp_path, 1)
    batch = clf.tokenizer(["a good film ."], return_tensors="pt")
    assert bf16.precision == "bf16" and np.abs(bf16.logits(batch) - clf.logits(batch)).max() < 0.1


def test_threads_option():
    assert serve.thread_counts("2,1,2") == [1, 2]
    with pytest.raises(ConfigError, match="--threads 0,x: expected comma-separated positive counts"):
        serve.thread_counts("0,x")


def test_report_and_frontier_show_both_yardsticks(result, pair, tmp_path):
    from tinydistill.report import write_report

    write_report([pair["student"]], tmp_path / "report")
    text = (tmp_path / "report" / "report.md").read_text()
    section = text.split("## Serving backends")[1]
    assert "speed-up over the PyTorch fp32 teacher" in section and "speed-up over that teacher" in section
    assert f"| {result['choice']['name']} |" in section and "encoder FLOP ratio" in section
    saved = json.loads((tmp_path / "report" / "report.json").read_text())
    assert [(r["threads"], r["batch"]) for r in saved["serve"]] == [(1, 32), (1, 1)]
    served = [p for p in saved["frontier"] if p["variant"].startswith("served: ")]
    assert len(served) == 1 and served[0]["variant"] == f"served: {result['choice']['name']}"
    y = result["yardsticks"]["1"]
    assert served[0]["speedup"] == pytest.approx(y["32"]["vs_teacher_fp32"])
    assert served[0]["vs_teacher_best_batch1"] == pytest.approx(y["1"]["vs_teacher_best"])
    assert (tmp_path / "report" / "frontier.png").stat().st_size > 10_000


def test_candidates_take_turns_pass_by_pass_each_after_an_untimed_batch():
    calls = []
    runs = {name: (lambda b, name=name: calls.append((name, b))) for name in ("a", "b", "c")}
    best = serve.time_alternated(runs, [0, 1, 2, 3], repeats=4)
    assert set(best) == {"a", "b", "c"} and all(s >= 0 for s in best.values())
    assert len(calls) == 4 * 3 * (1 + 4)  # every repeat: every run, one untimed batch then every batch
    passes = [calls[i:i + 5] for i in range(0, len(calls), 5)]
    assert all(p == [(p[0][0], 0), (p[0][0], 0), (p[0][0], 1), (p[0][0], 2), (p[0][0], 3)] for p in passes)
    assert [p[0][0] for p in passes] == list("abc" "bca" "cab" "abc")  # who goes first rotates with the repeat


def _bench_serve_ops():
    spec = importlib.util.spec_from_file_location("bench_serve_ops", ROOT / "bench" / "bench_serve_ops.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_operator_profile_splits_each_models_time_by_operator_group(pair, sst2_dir, tmp_path):
    ops = _bench_serve_ops()
    out = ops.run(str(pair["student"]), "sst2", None, "onnx int8 dynamic", [1], 8, 1, str(sst2_dir),
                  str(tmp_path / "cache"), tmp_path)
    assert out["teacher"] == str(pair["teacher"]) and out["flop_ratio"] == pytest.approx(1.0)  # the same shape
    assert set(out["threads"]["1"]) == {"32", "1"}
    for bs, cell in out["threads"]["1"].items():
        for role in ("student", "teacher"):
            m = cell[role]
            assert m["wall_ms"] > 0 and m["operators_per_run"] >= 10  # a 2-layer int8 BERT: dozens of operators
            assert 0 < m["kernel_ms"] <= m["session_ms"]  # one thread: the kernels run inside the session, in turn
            assert sum(m["by_group"].values()) == pytest.approx(m["kernel_ms"])
            assert {"DynamicQuantizeMatMul", "QAttention"} <= set(m["by_op"])  # the int8 graph's own operators
            assert set(m["by_group"]) == {"matrix products", "attention (projections and scores)",
                                          "element-wise and other"}
        r = cell["teacher_over_student"]
        assert r["kernel"] == pytest.approx(cell["teacher"]["kernel_ms"] / cell["student"]["kernel_ms"])
        assert set(r) == {"wall", "kernel", *cell["student"]["by_group"]}
    assert "FLOP ratio 1.0" in ops.summary(out)


def test_operator_profile_names_a_candidate_this_machine_cannot_build(pair, sst2_dir, tmp_path, monkeypatch):
    ops = _bench_serve_ops()
    monkeypatch.setitem(sys.modules, "onnxruntime", None)  # as when it is not installed
    with pytest.raises(ConfigError, match="--candidate 'onnx fp32': not available on this machine"):
        ops.run(str(pair["student"]), "sst2", None, "onnx fp32", [1], 8, 1, str(sst2_dir), str(tmp_path), tmp_path)


def test_operator_profile_cli_stops_with_one_line_for_a_missing_model(tmp_path, capsys):
    with pytest.raises(SystemExit) as exit_info:
        _bench_serve_ops().main([str(tmp_path / "nope"), "--task", "sst2", "--json", str(tmp_path / "ops.json")])
    assert exit_info.value.code == 2 and not (tmp_path / "ops.json").exists()
    assert capsys.readouterr().err == f"error: model folder {tmp_path / 'nope'} does not exist\n"


def test_operator_profile_runs_a_no_spin_candidate_with_spinning_off(pair, sst2_dir, tmp_path, monkeypatch):
    ops = _bench_serve_ops()
    seen = []

    def recording(file, threads=None, spinning=True, profile=None):
        seen.append(spinning)
        return backends.load_onnx_classifier(file, threads, spinning, profile)

    monkeypatch.setattr(ops, "load_onnx_classifier", recording)
    out = ops.run(str(pair["student"]), "sst2", None, "onnx int8 dynamic no-spin", [1], 4, 1, str(sst2_dir),
                  str(tmp_path / "cache"), tmp_path)
    assert out["candidate"] == "onnx int8 dynamic no-spin" and set(out["threads"]["1"]) == {"32", "1"}
    assert len(seen) == 2 + 2 * 2 and not any(seen)  # two timed sessions, then one profiled per model and batch size
