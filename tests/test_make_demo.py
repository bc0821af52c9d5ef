"""`make demo` runs the teacher beside the general student and the masked LM: checked by running the real Makefile
with a stand-in for the venv's python that only records when each stage starts and ends (nothing trains)."""
import os
import shutil
import subprocess
import sys
import time
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
TEACHER = "stage=finetune experiment=demo/finetune"
GENERAL = "stage=general experiment=demo/general"
MLM = "stage=mlm experiment=demo/mlm"
TASK = "stage=task experiment=demo/task"
BASELINE = "stage=finetune experiment=demo/nodistill"

# Each stage's log line: "<time> start|end<rc> <stage> threads=<OMP_NUM_THREADS>". A stage named in FAKE_PARTNERS
# ("a=b") waits until its partner has started, so two stages run side by side are seen to overlap however slowly
# the processes start; run one after the other, the first would give up after 20 s and end first.
FAKE_PYTHON = f"""#!{sys.executable}
import os, sys, time
args = sys.argv[1:]
key = " ".join(a for a in args if a.startswith(("stage=", "experiment="))) if args[0] == "train.py" else args[1]
log = os.environ["FAKE_LOG"]
def read():
    with open(log) as f:
        return f.read()
def note(what):
    print(what, key, flush=True)
    with open(log, "a") as f:
        f.write(f"{{time.time():.6f}} {{what}} {{key}} threads={{os.environ.get('OMP_NUM_THREADS')}}\\n")
note("start")
partners = dict(p.split("=", 1)[::-1] for p in os.environ.get("FAKE_PARTNERS", "").split(";") if p)
partners.update((b, a) for a, b in list(partners.items()))
deadline = time.time() + 20
while key in partners and f"start {{partners[key]}} " not in read() and time.time() < deadline:
    time.sleep(0.05)
time.sleep(120 if key == os.environ.get("FAKE_SLOW") else 0.1)
rc = 3 if key == os.environ.get("FAKE_FAIL") else 0
note(f"end{{rc}}")
sys.exit(rc)
"""


def _run_demo(tmp_path: Path, **env: str) -> tuple[subprocess.CompletedProcess, list[tuple[str, str, str]]]:
    if shutil.which("make") is None or shutil.which("bash") is None:
        pytest.skip("make or bash is not installed")
    fake = tmp_path / "python"
    fake.write_text(FAKE_PYTHON)
    fake.chmod(0o755)
    log = tmp_path / "stages.log"
    log.touch()
    # -o install: the venv is not built; run from tmp_path so artifacts/logs is made there, not in the repo
    done = subprocess.run(["make", "--no-print-directory", "-f", str(REPO / "Makefile"), "-o", "install", "demo",
                           f"PY={fake}"], cwd=tmp_path, capture_output=True, text=True, timeout=60,
                          env={**{k: v for k, v in os.environ.items() if k != "OMP_NUM_THREADS"},
                               "FAKE_LOG": str(log), **env})
    events = [tuple(line.split(" ", 1)[1].rsplit(" threads=", 1)[0].split(" ", 1)) + (line.rsplit("=", 1)[1],)
              for line in log.read_text().splitlines()]
    return done, events  # events: (start|end<rc>, stage, threads)


def _still_running(fake: Path) -> list[str]:
    time.sleep(0.5)  # a killed process may take a moment to go
    found = []
    for cmdline in Path("/proc").glob("[0-9]*/cmdline"):
        try:
            text = cmdline.read_bytes().replace(b"\0", b" ").decode()
        except OSError:
            continue
        if str(fake) in text:
            found.append(text)
    return found


def test_make_demo_runs_each_stage_after_its_inputs_and_the_teacher_beside_the_general_student(tmp_path):
    done, events = _run_demo(tmp_path, FAKE_PARTNERS=f"{TEACHER}={GENERAL}")
    assert done.returncode == 0, done.stdout + done.stderr
    order = [(what, stage) for what, stage, _ in events]
    at = {item: i for i, item in enumerate(order)}
    stages = [TEACHER, GENERAL, MLM, TASK, BASELINE, "tinydistill.export", "tinydistill.report"]
    assert {stage for _, stage in order} == set(stages) and len(order) == 2 * len(stages), order
    assert all(what in ("start", "end0") for what, _ in order)

    def after(stage: str, *inputs: str) -> bool:
        return all(at[("end0", i)] < at[("start", stage)] for i in inputs)

    assert after(TASK, TEACHER, GENERAL, MLM)
    assert after(MLM, GENERAL)  # the masked LM follows the general student on the same core
    assert after(BASELINE, TASK)  # it matches the task run's steps and dev evaluations
    assert after("tinydistill.export", TASK) and after("tinydistill.report", BASELINE, "tinydistill.export")
    assert at[("start", TEACHER)] < at[("end0", GENERAL)] and at[("start", GENERAL)] < at[("end0", TEACHER)], order
    # one thread each while two run side by side, so they share the 2 cores; both cores for the rest
    threads = {stage: n for _, stage, n in events}
    assert threads[TEACHER] == threads[GENERAL] == threads[MLM] == "1"
    assert threads[TASK] == threads[BASELINE] == "None"
    assert "stage=general" in (tmp_path / "artifacts/logs/demo-general-mlm.log").read_text()


@pytest.mark.parametrize(("fail", "slow", "message", "never"), [
    (GENERAL, TEACHER, "stage=general or stage=mlm failed: see artifacts/logs/demo-general-mlm.log", MLM),
    (MLM, TEACHER, "stage=general or stage=mlm failed: see artifacts/logs/demo-general-mlm.log", TASK),
    (TEACHER, MLM, "stage=finetune (the teacher) failed", TASK),
])
def test_make_demo_stops_at_the_first_failure_and_the_stage_beside_it(tmp_path, fail, slow, message, never):
    """The stage beside the failed one would run for minutes: it is stopped, not waited for, and nothing after
    the failure starts."""
    done, events = _run_demo(tmp_path, FAKE_FAIL=fail, FAKE_SLOW=slow)
    assert done.returncode != 0
    assert message in done.stdout, done.stdout + done.stderr
    stages = {stage for _, stage, _ in events}
    assert ("end3", fail) in {(what, stage) for what, stage, _ in events}
    assert never not in stages
    assert not any(stage == slow and what.startswith("end") for what, stage, _ in events)  # stopped, not waited for
    assert _still_running(tmp_path / "python") == []
