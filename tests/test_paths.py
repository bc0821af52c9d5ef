"""Paths recorded in results (`tinydistill.paths.recorded_path`): relative under the working directory, else absolute."""

from pathlib import Path

from tinydistill.paths import recorded_path


def test_path_under_the_working_directory_is_recorded_relative(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    ckpt = tmp_path / "artifacts" / "logs" / "task" / "best.ckpt"
    assert recorded_path(ckpt) == str(Path("artifacts/logs/task/best.ckpt"))
    assert recorded_path(str(ckpt)) == str(Path("artifacts/logs/task/best.ckpt"))


def test_path_outside_the_working_directory_stays_absolute(tmp_path, monkeypatch):
    (tmp_path / "project").mkdir()
    monkeypatch.chdir(tmp_path / "project")
    outside = tmp_path / "elsewhere" / "best.ckpt"
    assert recorded_path(outside) == str(outside.resolve())


def test_no_path_is_none():
    assert recorded_path(None) is None
    assert recorded_path("") is None
