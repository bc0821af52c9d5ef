"""Shipping a classifier (issue #15): ONNX and int8 export with its self-check, predict on PyTorch and ONNX Runtime,
the benchmark's variant rows, and the report's variants table and frontier plot. Tiny random BERT classifiers with a
small vocabulary and a few rows of synthetic SST-2 dev data; one export shared by most tests."""

from __future__ import annotations

import io
import json
import sys
from pathlib import Path

import numpy as np
import pytest
from transformers import BertConfig, BertForMaskedLM, BertForSequenceClassification, BertTokenizer

pytest.importorskip("onnxruntime", reason="the export extra is not installed (pip install -e '.[export]')")
pytest.importorskip("onnxscript", reason="the export extra is not installed (pip install -e '.[export]')")

from tinydistill import export, predict  # noqa: E402
from tinydistill.bench import latency_report  # noqa: E402
from tinydistill.errors import ConfigError, DataError  # noqa: E402
from tinydistill.inference import (  # noqa: E402
    INT8_FILE,
    ONNX_FILE,
    OnnxClassifier,
    TorchClassifier,
    load_classifier,
)
from tinydistill.report import write_report  # noqa: E402

WORDS = ("a an the of to and is was it this that film movie good bad great awful fun dull plot acting one two three "
         "short sentence first second text texts with its pair rather longer so others need padding here examples")
LABELS = {0: "negative", 1: "positive"}


def make_tokenizer(path: Path) -> BertTokenizer:
    vocab = ["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]", ".", ",", *WORDS.split()]
    path.mkdir(parents=True, exist_ok=True)
    (path / "vocab.txt").write_text("\n".join(vocab) + "\n")
    return BertTokenizer(str(path / "vocab.txt"))


def make_model(path: Path, model_class=BertForSequenceClassification, seed: int = 0, **config) -> Path:
    """A 2-layer, 32-wide random BERT saved with save_pretrained (safetensors) and its tokenizer."""
    import torch

    torch.manual_seed(seed)
    tok = make_tokenizer(path)
    cfg = BertConfig(vocab_size=len(tok), hidden_size=32, num_hidden_layers=2, num_attention_heads=4,
                     intermediate_size=64, max_position_embeddings=64, **config)
    model_class(cfg).save_pretrained(path)
    tok.save_pretrained(path)
    return path


@pytest.fixture(scope="session")
def glue_dir(tmp_path_factory) -> Path:
    """<dir>/glue/SST-2/dev.tsv: 24 synthetic rows."""
    root = tmp_path_factory.mktemp("data")
    rng = np.random.default_rng(0)
    words = WORDS.split()
    rows = ["sentence\tlabel"] + [" ".join(rng.choice(words, rng.integers(2, 12))) + f"\t{i % 2}" for i in range(24)]
    (root / "glue" / "SST-2").mkdir(parents=True)
    (root / "glue" / "SST-2" / "dev.tsv").write_text("\n".join(rows) + "\n")
    return root


@pytest.fixture(scope="session")
def models(tmp_path_factory) -> dict[str, Path]:
    """A teacher and a student classifier (the student's metrics.json names the teacher, as stage=task writes)."""
    root = tmp_path_factory.mktemp("models")
    teacher = make_model(root / "teacher", seed=1, id2label=LABELS, label2id={v: k for k, v in LABELS.items()})
    student = make_model(root / "student", seed=2, id2label=LABELS, label2id={v: k for k, v in LABELS.items()})
    (teacher / "metrics.json").write_text(json.dumps({"stage": "finetune", "task": "sst2", "run": "tiny_teacher",
                                                      "seed": 42, "dev": {"accuracy": 0.5}}))
    (student / "metrics.json").write_text(json.dumps({
        "stage": "task", "task": "sst2", "run": "none", "seed": 42, "dev": {"accuracy": 0.5},
        "teacher_dir": str(teacher), "teacher": {"dev": {"accuracy": 0.5}},
        "constant": {"prediction": "1", "dev": {"accuracy": 0.5}}, "speedup": 1.2, "speedup_batch1": 1.1}))
    return {"teacher": teacher, "student": student}


@pytest.fixture(scope="session")
def exported(models, glue_dir, tmp_path_factory) -> Path:
    """The student exported with --int8 and the SST-2 dev check (timing the teacher), into <student>/onnx."""
    cache = tmp_path_factory.mktemp("cache")
    return export.export_model(models["student"], int8=True, task="sst2", data_dir=str(glue_dir), cache_dir=cache,
                               repeats=1)


def batch(tokenizer, texts, pairs=None):
    return tokenizer(texts, pairs, padding=True, return_tensors="pt")


# ------------------------------------------------------------------ export


def test_onnx_logits_equal_pytorch_for_two_shapes(models, exported):
    torch_clf = load_classifier(models["student"])
    onnx_clf = load_classifier(exported)  # the folder: its model.onnx
    assert isinstance(torch_clf, TorchClassifier) and isinstance(onnx_clf, OnnxClassifier)
    assert onnx_clf.path == exported / ONNX_FILE and onnx_clf.variant == "onnx fp32"
    # dynamic batch and sequence axes: named dimensions, not numbers
    for inp in onnx_clf.session.get_inputs():
        assert [isinstance(d, str) for d in inp.shape] == [True, True], inp.shape
    shapes = set()
    for texts, pairs in ((["good film ."], None),
                         (["the first film", "a rather longer sentence so others need padding here .", "dull"],
                          ["was good", "and its pair", "bad plot , awful acting"])):
        b = batch(torch_clf.tokenizer, texts, pairs)
        shapes.add(tuple(b["input_ids"].shape))
        ref, got = torch_clf.logits(b), onnx_clf.logits(b)
        assert got.shape == ref.shape == (len(texts), 2)
        np.testing.assert_allclose(got, ref, atol=1e-4)
        assert np.abs(ref).max() > 1e-3  # not a trivially zero output
    assert len(shapes) == 2 and {s[0] for s in shapes} == {1, 3}


def test_both_exporters_give_the_pytorch_logits(models, exported, tmp_path):
    """--exporter dynamo (torch's default) works too, and its graph computes what the default (torchscript) one does."""
    out = export.export_model(models["student"], out=tmp_path / "dynamo", int8=True, exporter="dynamo")
    info = json.loads((out / "export.json").read_text())
    assert info["exporter"]["method"] == "torch.onnx.export(dynamo=True)"
    assert json.loads((exported / "export.json").read_text())["exporter"]["method"] == "torch.onnx.export(dynamo=False)"
    torch_clf = load_classifier(models["student"])
    b = batch(torch_clf.tokenizer, ["a good film", "a rather longer sentence so that the others need padding"],
              ["yes", "its pair"])
    ref = torch_clf.logits(b)
    for folder in (exported, out):
        np.testing.assert_allclose(load_classifier(folder).logits(b), ref, atol=1e-4)
    with pytest.raises(ConfigError, match="--exporter"):
        export.export_model(models["student"], out=tmp_path / "x", exporter="tflite")


def test_int8_export_runs_and_keeps_label_names(exported):
    int8 = load_classifier(exported / INT8_FILE)
    fp32 = load_classifier(exported / ONNX_FILE)
    assert int8.precision == "int8" and fp32.precision == "fp32"
    assert int8.label_names == fp32.label_names == ["negative", "positive"]
    assert int8.size_mb() < fp32.size_mb()
    out = int8.logits(batch(int8.tokenizer, ["good", "an awful , dull film ."]))
    assert out.shape == (2, 2) and np.isfinite(out).all()
    assert json.loads((exported / "config.json").read_text())["id2label"] == {"0": "negative", "1": "positive"}


def test_export_json_records_sizes_and_the_dev_check(models, exported):
    info = json.loads((exported / "export.json").read_text())
    assert info["source"] == str(models["student"]) and info["labels"] == ["negative", "positive"]
    assert set(info["size_mb"]) == {"pytorch fp32", "onnx fp32", "onnx int8"}
    assert info["size_mb"]["onnx fp32"] == pytest.approx((exported / ONNX_FILE).stat().st_size / 1e6)
    assert info["record"] == {"task": "sst2", "stage": "task", "run": "none", "seed": 42,
                              "teacher_dir": str(models["teacher"])}
    assert len(info["smoke_check"]["shapes"]) == 2 and info["smoke_check"]["max_logit_diff"]["onnx fp32"] < 1e-4
    check = info["check"]
    assert check["task"] == "sst2" and check["examples"] == 24 and check["batch_sizes"] == [32, 1]
    assert check["reference_role"] == "teacher" and check["reference"] == str(models["teacher"])
    rows = {(r["model"], r["variant"]): r for r in check["rows"]}
    assert list(rows) == [(str(models["teacher"]), "pytorch fp32")] + [
        (str(models["student"]), v) for v in ("pytorch fp32", "onnx fp32", "onnx int8")]
    onnx32 = rows[str(models["student"]), "onnx fp32"]
    assert onnx32["vs"]["pytorch fp32"]["agreement"] == 1.0 and onnx32["vs"]["pytorch fp32"]["max_logit_diff"] < 1e-4
    assert onnx32["file"] == str(exported / ONNX_FILE)  # the final path, not the temporary folder's
    int8 = rows[str(models["student"]), "onnx int8"]
    assert 0 <= int8["dev"]["accuracy"] <= 1 and "agreement" in int8["vs"]["onnx fp32"]
    for r in check["rows"]:
        assert set(r["latency"]) == {"32", "1"} and r["latency"]["1"]["ms_per_example"] > 0
    assert rows[str(models["teacher"]), "pytorch fp32"]["speedup"] == {"32": 1.0, "1": 1.0}
    assert not list(exported.parent.glob(".onnx.tmp-*"))  # written through the atomic folder writer


def test_a_failed_self_check_writes_nothing(models, tmp_path):
    out = tmp_path / "onnx"
    with pytest.raises(export.ExportCheckError, match="differ from PyTorch's"):
        export.export_model(models["teacher"], out=out, atol=-1.0)  # no logit difference passes
    assert not out.exists() and not list(tmp_path.iterdir())


def test_export_refuses_a_non_classifier_and_a_missing_folder(tmp_path, capsys):
    mlm = make_model(tmp_path / "mlm", model_class=BertForMaskedLM)
    with pytest.raises(ConfigError, match=r"holds a BertForMaskedLM, not a sequence classifier"):
        export.export_model(mlm)
    capsys.readouterr()
    for argv in ([str(mlm)], [str(tmp_path / "nowhere")]):
        with pytest.raises(SystemExit) as e:
            export.main(argv)
        assert e.value.code == 2
        err = capsys.readouterr().err.strip().splitlines()
        assert len(err) == 1 and err[0].startswith("error: ")
    assert "does not exist" in err[0] and not (mlm / "onnx").exists()


def test_export_check_inputs_fail_before_any_work(models, glue_dir, tmp_path, monkeypatch):
    monkeypatch.setenv("HF_DATASETS_OFFLINE", "1")
    out = tmp_path / "x"
    with pytest.raises(ConfigError, match="--task sst2 reads the GLUE dev set"):
        export.export_model(models["teacher"], out=out, task="sst2", data_dir=None)
    with pytest.raises(DataError, match=r"MRPC/dev.tsv.*not found"):  # the fixture has SST-2 only
        export.export_model(models["teacher"], out=out, task="mrpc", data_dir=str(glue_dir))
    with pytest.raises(ConfigError, match=r"--teacher .*nowhere does not exist"):
        export.export_model(models["student"], out=out, task="sst2", data_dir=str(glue_dir),
                            teacher=tmp_path / "nowhere")
    with pytest.raises(ConfigError, match="unknown task 'sst3'"):
        export.export_model(models["student"], out=out, task="sst3")
    assert not out.exists()


def test_export_task_whose_outputs_the_model_lacks_is_a_one_line_error(models, glue_dir, tmp_path, capsys):
    """A 2-class model checked on STS-B (a regression), a regression model on SST-2, or a teacher that does not fit the
    task: one line and exit code 2 before any work (it was a torchmetrics traceback once the dev set had run)."""
    data = tmp_path / "data"
    (data / "glue" / "STS-B").mkdir(parents=True)
    (data / "glue" / "STS-B" / "dev.tsv").write_text("sentence1\tsentence2\tscore\n" + "".join(
        f"a good film {i}\tthe plot was dull\t{i % 5}.0\n" for i in range(8)))
    (data / "glue" / "SST-2").symlink_to(glue_dir / "glue" / "SST-2")
    reg = make_model(tmp_path / "reg", num_labels=1, problem_type="regression")
    out = tmp_path / "onnx"
    capsys.readouterr()
    cases = [
        ([str(models["student"]), "--task", "stsb"], f"--task stsb: {models['student']} does not fit stsb: it has 2 "
                                                     f"output(s), stsb needs 1"),
        ([str(reg), "--task", "sst2"], f"--task sst2: {reg} does not fit sst2: it has 1 output(s), sst2 needs 2"),
        ([str(models["student"]), "--task", "sst2", "--teacher", str(reg)],
         f"--task sst2: teacher: {reg} does not fit sst2: it has 1 output(s)"),
    ]
    for argv, message in cases:
        with pytest.raises(SystemExit) as e:
            export.main([*argv, "--data-dir", str(data), "--cache-dir", str(tmp_path / "cache"), "--out", str(out),
                         "--repeats", "1"])
        err = capsys.readouterr().err.strip().splitlines()
        assert e.value.code == 2 and len(err) == 1 and err[0].startswith("error: ") and message in err[0], err
        assert not out.exists()


# ------------------------------------------------------------------ predict


def run_predict(capsys, monkeypatch, argv, stdin: bytes | None = None) -> tuple[int, list[str], str]:
    if stdin is not None:
        monkeypatch.setattr(sys, "stdin", io.TextIOWrapper(io.BytesIO(stdin)))
    code = 0
    try:
        predict.main(argv)
    except SystemExit as e:
        code = e.code
    out = capsys.readouterr()
    return code, out.out.splitlines(), out.err


@pytest.mark.parametrize("backend", ["pytorch", "onnx", "int8"])
def test_predict_files_and_stdin_single_texts_and_pairs(backend, models, exported, tmp_path, capsys, monkeypatch):
    model = {"pytorch": models["student"], "onnx": exported, "int8": exported / INT8_FILE}[backend]
    single = ["a good film .", "awful", "the plot was dull and the acting bad"]
    pairs = [("one", "two"), ("the first sentence", "the second text , rather longer")]
    tsv = tmp_path / "single.tsv"
    tsv.write_text("\n".join(single) + "\n")
    pair_tsv = tmp_path / "pairs.tsv"
    pair_tsv.write_text("\n".join(f"{a}\t{b}" for a, b in pairs) + "\n")
    jsonl = tmp_path / "pairs.jsonl"
    jsonl.write_text("\n".join(json.dumps({"text": a, "text_pair": b}) for a, b in pairs) + "\n")

    # the reference: the PyTorch model on the same inputs, batch by batch
    ref = load_classifier(models["student"])
    want_single = ref.logits(batch(ref.tokenizer, single)).argmax(-1)
    want_pairs = ref.logits(batch(ref.tokenizer, [a for a, _ in pairs], [b for _, b in pairs])).argmax(-1)

    for argv, stdin, want in (
        (["--file", str(tsv), "--batch-size", "2"], None, want_single),
        (["--file", str(pair_tsv)], None, want_pairs),
        (["--file", str(jsonl), "--format", "jsonl"], None, want_pairs),
        ([], "\n".join(single).encode() + b"\n", want_single),  # stdin, the default
        (["--file", "-"], jsonl.read_bytes(), want_pairs),  # JSONL recognised on stdin
    ):
        code, lines, err = run_predict(capsys, monkeypatch, [str(model), *argv], stdin)
        assert code == 0, err
        assert len(lines) == len(want)
        if "jsonl" in argv:
            parsed = [json.loads(line) for line in lines]
        else:
            parsed = [dict(zip(("label", "score"), line.split("\t"))) for line in lines]
        assert [p["label"] for p in parsed] == [LABELS[int(i)] for i in want]
        assert all(0.5 <= float(p["score"]) <= 1.0 for p in parsed)


def test_a_glue_students_predictions_are_label_names(tmp_path, capsys, monkeypatch):
    """A classifier made for a GLUE preset as the stages make teacher and student (models.loading.load_as_classifier)
    carries the task's label names: predict prints SST-2's "negative"/"positive", not the ids "0"/"1"."""
    from tinydistill.data.tasks import get_task
    from tinydistill.models.loading import load_as_classifier as classifier_for

    base = make_model(tmp_path / "base")  # transformers' placeholders: LABEL_0, LABEL_1
    student = tmp_path / "student"
    classifier_for(str(base), get_task("sst2")).save_pretrained(student)
    make_tokenizer(student).save_pretrained(student)
    code, lines, err = run_predict(capsys, monkeypatch, [str(student), "--format", "jsonl"],
                                   b"a dull , lifeless film .\na good film .\n")
    assert code == 0, err
    want = load_classifier(student).logits(batch(load_classifier(student).tokenizer,
                                                 ["a dull , lifeless film .", "a good film ."])).argmax(-1)
    assert [json.loads(line)["label"] for line in lines] == [["negative", "positive"][i] for i in want]


def test_predict_regression_prints_scores(tmp_path, capsys, monkeypatch):
    reg = make_model(tmp_path / "stsb", num_labels=1, problem_type="regression")
    code, lines, err = run_predict(capsys, monkeypatch, [str(reg), "--file", "-"], b"one\ttwo\nthree\tfour\n")
    assert code == 0, err
    clf = load_classifier(reg)
    want = clf.logits(batch(clf.tokenizer, ["one", "three"], ["two", "four"])).reshape(-1)
    assert [float(line) for line in lines] == pytest.approx(want, abs=1e-4)


BAD_INPUTS = [
    ("in.tsv", b"good\nbad\tfilm\tthree\n", "in.tsv: line 2: 3 tab-separated columns"),
    ("in.tsv", b"good\nbad\tfilm\n", "in.tsv: line 2: a sentence pair, but line 1 is a single text"),
    ("in.tsv", b"good\n\nbad\n", "in.tsv: line 2: empty line"),
    ("in.tsv", b"good\n\tfilm\n", "in.tsv: line 2: text is empty"),
    ("in.tsv", b"good\nbad \xe9\n", "in.tsv: line 2: byte 0xe9 (column 5) is not UTF-8"),
    ("in.jsonl", b'{"text": "good"}\n{"text": "bad"\n', "in.jsonl: line 2: not valid JSON"),
    ("in.jsonl", b'{"text": "good"}\n["bad"]\n', "in.jsonl: line 2: expected a JSON object"),
    ("in.jsonl", b'{"text": "good", "txt_pair": "x"}\n', "in.jsonl: line 1: unknown key 'txt_pair'"),
    ("in.jsonl", b'{"text_pair": "good"}\n', 'in.jsonl: line 1: no "text"'),
    ("in.jsonl", b'{"text": 3}\n', 'in.jsonl: line 1: "text" must be a string, found int'),
    ("missing.tsv", None, "missing.tsv: file not found"),
]


@pytest.mark.parametrize("name,content,message", BAD_INPUTS)
def test_malformed_input_lines_are_one_line_errors(name, content, message, tmp_path):
    f = tmp_path / name
    if content is not None:
        f.write_bytes(content)
    with pytest.raises(DataError) as e:
        predict.read_inputs(str(f))
    assert str(e.value).startswith(str(tmp_path / message.split(":")[0])) and message.split(":", 1)[1] in str(e.value)
    assert "\n" not in str(e.value)


def test_a_null_text_pair_is_a_single_text(models, tmp_path, capsys, monkeypatch):
    """{"text": ..., "text_pair": null} is the same input as {"text": ...}; a null pair among pairs is still refused."""
    texts = ["a good film .", "the plot was dull"]
    f = tmp_path / "null_pairs.jsonl"
    f.write_text("".join(json.dumps({"text": t, "text_pair": None}) + "\n" for t in texts))
    inputs = predict.read_inputs(str(f))
    assert inputs.texts == texts and inputs.pairs is None
    code, lines, err = run_predict(capsys, monkeypatch, [str(models["student"]), "--file", "-"], f.read_bytes())
    assert code == 0, err
    plain = predict.predict(load_classifier(models["student"]), predict.Inputs(texts, None))
    assert [line.split("\t")[0] for line in lines] == [label for label, _ in plain]
    mixed = tmp_path / "mixed.jsonl"
    mixed.write_text("".join(json.dumps(r) + "\n" for r in ({"text": "one", "text_pair": "two"},
                                                           {"text": "x", "text_pair": None})))
    with pytest.raises(DataError, match=r"line 2: a single text, but line 1 is a sentence pair"):
        predict.read_inputs(str(mixed))


def test_predict_cli_errors_exit_2_with_one_line(models, exported, tmp_path, capsys, monkeypatch):
    mlm = make_model(tmp_path / "mlm", model_class=BertForMaskedLM)
    bad = tmp_path / "bad.tsv"
    bad.write_text("good\nbad\tfilm\tx\n")
    capsys.readouterr()
    cases = [
        ([str(tmp_path / "nowhere")], "does not exist"),
        ([str(mlm)], "holds a BertForMaskedLM, not a sequence classifier"),
        ([str(models["student"] / "metrics.json")], "is a file but not an .onnx model"),
        ([str(exported), "--file", str(bad)], f"{bad}: line 2: 3 tab-separated columns"),
        ([str(models["student"]), "--file", "-", "--input-format", "jsonl"], "<stdin>: line 1: expected a JSON"),
    ]
    for argv, message in cases:
        code, lines, err = run_predict(capsys, monkeypatch, argv, b'["not", "an object"]\n' if "-" in argv else None)
        assert code == 2 and lines == []
        assert err.strip().count("\n") == 0 and err.startswith("error: ") and message in err, err


# ------------------------------------------------------------------ benchmark and report


def test_bench_times_the_exported_variants_beside_the_teacher(models, exported, glue_dir, tmp_path):
    report = latency_report([str(models["teacher"]), str(models["student"])], "sst2", str(glue_dir), str(tmp_path),
                            repeats=1)
    rows = report["models"]
    assert [(Path(r["model"]).name, r["variant"]) for r in rows] == [
        ("teacher", "pytorch fp32"), ("student", "pytorch fp32"), ("student", "onnx fp32"), ("student", "onnx int8")]
    assert rows[0]["speedup_vs_first"] == 1.0 and all(r["speedup"]["1"] > 0 for r in rows)
    assert rows[2]["vs"]["pytorch fp32"]["agreement"] == 1.0 and rows[3]["size_mb"] < rows[2]["size_mb"]


def test_report_gains_the_variants_table_and_the_frontier(models, exported, tmp_path):
    out = tmp_path / "report"
    text = write_report([models["student"], models["teacher"]], out).read_text()
    assert "## Exported variants" in text and "![frontier](frontier.png)" in text
    head = next(line for line in text.splitlines() if line.startswith("| task | model | variant |"))
    for column in ("dev accuracy", "agreement with PyTorch", "size (MB)", "ms/example (batch 32)",
                   "ms/example (batch 1)", "speed-up (batch 32)", "speed-up (batch 1)"):
        assert column in head
    section = text.split("## Exported variants")[1]
    variant_lines = [line for line in section.splitlines() if line.startswith("| sst2 | none | ")]
    assert [line.split(" | ")[2] for line in variant_lines] == ["pytorch fp32", "onnx fp32", "onnx int8"]
    assert "| 100.0% |" in variant_lines[1]
    saved = json.loads((out / "report.json").read_text())
    assert {(p["label"], p["variant"]) for p in saved["frontier"]} >= {
        ("teacher", "pytorch fp32"), ("none", "pytorch fp32"), ("none", "onnx fp32"), ("none", "onnx int8")}
    assert (out / "frontier.png").stat().st_size > 10_000
