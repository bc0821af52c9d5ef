"""Atomic output folders and files: stale temporaries of killed writers are removed (never a live writer's), a
failed write keeps the old result, and results get the permissions of the umask, not mkdtemp's 0700 or
safetensors' 0600."""

from __future__ import annotations

import os
import signal
import stat
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import pytest

from tinydistill.atomic import LEGACY_STALE_SECONDS, atomic_directory, atomic_file, atomic_write_text, host_tag

ROOT = Path(__file__).resolve().parents[1]


def dead_pid() -> int:
    """The pid of a process that has exited (reuse within the test is very unlikely, and would only keep a folder)."""
    p = subprocess.Popen([sys.executable, "-c", "pass"])
    p.wait()
    return p.pid


def make(path: Path) -> Path:
    path.mkdir()
    (path / "weights.bin").write_bytes(b"partial")
    return path


def write_one(tmp: Path) -> None:
    (tmp / "config.json").write_text("{}")


def test_stale_temporaries_of_the_target_are_removed_live_ones_kept(tmp_path):
    host, gone = host_tag(), dead_pid()
    live = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(60)"])  # a concurrent writer
    try:
        out = tmp_path / "model"
        stale = make(tmp_path / f".model.tmp-{host}-{gone}-abc12345")
        stale_old = make(tmp_path / f".model.old-{host}-{gone}-0a1b2c3d")
        concurrent = make(tmp_path / f".model.tmp-{host}-{live.pid}-def67890")
        other_host = make(tmp_path / f".model.tmp-otherhost-{gone}-ghi11111")
        legacy_old = make(tmp_path / ".model.tmp-k3j9x0_q")
        os.utime(legacy_old, (time.time() - LEGACY_STALE_SECONDS - 60,) * 2)
        legacy_fresh = make(tmp_path / ".model.tmp-a1b2c3d4")
        legacy_old_pid = make(tmp_path / f".model.old-{gone}")
        other_target = make(tmp_path / f".model2.tmp-{host}-{gone}-abc12345")

        atomic_directory(out, write_one)

        assert (out / "config.json").is_file()
        for p in (stale, stale_old, legacy_old, legacy_old_pid):
            assert not p.exists(), p
        for p in (concurrent, other_host, legacy_fresh, other_target):
            assert p.is_dir(), p
    finally:
        live.kill()
        live.wait()


def test_kill_during_export_leaves_a_temporary_that_the_next_write_removes(tmp_path):
    out = tmp_path / "model"
    code = (
        "import sys, time\n"
        "from tinydistill.atomic import atomic_directory\n"
        "def write(tmp):\n"
        "    (tmp / 'model.safetensors').write_bytes(b'half')\n"
        "    print('writing', flush=True)\n"
        "    time.sleep(60)\n"
        f"atomic_directory({str(out)!r}, write)\n"
    )
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(ROOT / "src"), os.environ.get("PYTHONPATH", "")])}
    p = subprocess.Popen([sys.executable, "-c", code], stdout=subprocess.PIPE, text=True, env=env)
    try:
        assert p.stdout.readline().strip() == "writing"
        left = [x for x in tmp_path.iterdir() if x.name.startswith(".model.tmp-")]
        assert len(left) == 1
        atomic_directory(out, write_one)  # the writer is still alive: its folder stays
        assert left[0].is_dir()
    finally:
        p.send_signal(signal.SIGKILL)
        p.wait()
    assert left[0].is_dir() and not out.joinpath("model.safetensors").exists()  # kill -9: no cleanup ran
    atomic_directory(out, write_one)
    assert not left[0].exists()
    assert sorted(x.name for x in tmp_path.iterdir()) == ["model"]


def test_a_failed_write_removes_its_own_temporary_and_keeps_the_old_result(tmp_path):
    out = tmp_path / "model"
    atomic_directory(out, write_one)

    def fail(tmp: Path) -> None:
        (tmp / "x").write_text("half")
        raise RuntimeError("disk full")

    with pytest.raises(RuntimeError):
        atomic_directory(out, fail)
    assert sorted(x.name for x in tmp_path.iterdir()) == ["model"] and (out / "config.json").is_file()


@pytest.fixture
def umask():
    """Set the process umask for one test, then restore it."""
    before = os.umask(0o022)
    os.umask(before)

    def set_(mask: int) -> None:
        os.umask(mask)

    yield set_
    os.umask(before)


def mode(path: Path) -> int:
    return stat.S_IMODE(path.stat().st_mode)


@pytest.mark.parametrize("mask,dirs,files", [(0o022, 0o755, 0o644), (0o027, 0o750, 0o640)])
def test_results_get_umask_permissions(tmp_path, umask, mask, dirs, files):
    umask(mask)

    def write(tmp: Path) -> None:
        fd, name = tempfile.mkstemp(dir=tmp, suffix=".safetensors")  # 0600, as safetensors writes shards
        os.close(fd)
        (tmp / "sub").mkdir(mode=0o700)
        (tmp / "sub" / "tokenizer.json").write_text("{}")
        os.chmod(tmp / "sub" / "tokenizer.json", 0o600)

    out = atomic_directory(tmp_path / "model", write)
    assert mode(out) == dirs and mode(out / "sub") == dirs
    assert {mode(p) for p in out.rglob("*") if p.is_file()} == {files}


def test_exported_model_is_readable_by_others(tmp_path, umask):
    from transformers import BertConfig, BertModel

    from tinydistill.models.loading import export_pretrained

    umask(0o022)
    model = BertModel(BertConfig(vocab_size=50, hidden_size=8, num_hidden_layers=1, num_attention_heads=2,
                                 intermediate_size=16, max_position_embeddings=16))
    out = export_pretrained(tmp_path / "student", model, None, json_files={"metrics.json": {"ok": 1}})
    assert mode(out) == 0o755
    assert {p.name: mode(p) for p in out.iterdir()} == {
        "config.json": 0o644, "model.safetensors": 0o644, "metrics.json": 0o644}


def test_atomic_file_replaces_on_success_and_keeps_the_old_file_on_failure(tmp_path):
    target = tmp_path / "sub" / "result.json"
    atomic_write_text(target, "first\n")
    assert target.read_text() == "first\n"
    with pytest.raises(RuntimeError, match="crash"):
        with atomic_file(target) as tmp:
            tmp.write_text("half of the sec")
            raise RuntimeError("crash")
    assert target.read_text() == "first\n"  # the old file, untouched
    assert sorted(p.name for p in target.parent.iterdir()) == ["result.json"]  # the temporary is gone
    with atomic_file(target) as tmp:
        assert tmp.parent == target.parent and tmp.name.startswith(f"result.json.tmp-{host_tag()}-{os.getpid()}-")
        tmp.write_text("second\n")
    assert target.read_text() == "second\n"
    assert sorted(p.name for p in target.parent.iterdir()) == ["result.json"]


def test_atomic_file_removes_a_killed_writers_temporary_not_a_live_ones(tmp_path):
    target = tmp_path / "report.md"
    stale = tmp_path / f"report.md.tmp-{host_tag()}-{dead_pid()}-0a1b2c3d"
    live = tmp_path / f"report.md.tmp-{host_tag()}-{os.getpid()}-0a1b2c3d"
    other = tmp_path / f"other.md.tmp-{host_tag()}-{dead_pid()}-0a1b2c3d"
    for p in (stale, live, other):
        p.write_text("partial")
    atomic_write_text(target, "done")
    assert target.read_text() == "done"
    assert not stale.exists() and live.exists() and other.exists()

