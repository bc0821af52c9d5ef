"""A stage's wall time and whether the machine was otherwise idle (tinydistill.timing), from hand-made kernel
counters: the other processes' share is (machine busy - own CPU) / (wall x cores)."""

from __future__ import annotations

import os

import pytest

from tinydistill import timing
from tinydistill.hardware import cpu_model
from tinydistill.timing import RunClock, describe, machine_busy_seconds

TICK = os.sysconf("SC_CLK_TCK")


def write_stat(path, user, system, idle, irq=0, steal=0) -> None:
    # cpu user nice system idle iowait irq softirq steal guest guest_nice, then one line per core (ignored)
    path.write_text(f"cpu  {user} 0 {system} {idle} 7 {irq} 0 {steal} 0 0\ncpu0 1 2 3 4 5 6 7 8 0 0\nintr 1 2\n")


def test_machine_busy_counts_user_system_and_interrupts_not_idle_or_steal(tmp_path):
    stat = tmp_path / "stat"
    write_stat(stat, user=300 * TICK, system=50 * TICK, idle=999 * TICK, irq=10 * TICK, steal=77 * TICK)
    assert machine_busy_seconds(stat) == pytest.approx(360.0)
    assert machine_busy_seconds(tmp_path / "missing") is None
    (tmp_path / "garbage").write_text("not the kernel's format\n")
    assert machine_busy_seconds(tmp_path / "garbage") is None


@pytest.mark.parametrize(("others_busy", "alone"), [(0.0, True), (30.0, False)])
def test_others_share_is_the_rest_of_the_machines_busy_time(tmp_path, monkeypatch, others_busy, alone):
    """100 s of wall on 2 cores; this process used 80 CPU seconds; the machine's counters grew by 80 + others."""
    stat = tmp_path / "stat"
    clock_now = {"wall": 1000.0, "own": 5.0}
    monkeypatch.setattr(timing.time, "monotonic", lambda: clock_now["wall"])
    monkeypatch.setattr(timing, "own_cpu_seconds", lambda: clock_now["own"])
    monkeypatch.setattr(timing.os, "cpu_count", lambda: 2)
    write_stat(stat, user=1000 * TICK, system=0, idle=0)
    clock = RunClock(stat)
    clock_now.update(wall=1100.0, own=85.0)
    write_stat(stat, user=int((1000 + 80 + others_busy) * TICK), system=0, idle=0)
    got = clock.stop(resumed=True)
    assert got["wall_seconds"] == 100.0 and got["cpu_seconds"] == 80.0 and got["cores"] == 2
    assert got["others_cpu_share"] == pytest.approx(others_busy / 200, abs=1e-3)
    assert got["alone"] is alone and got["resumed"] is True
    assert got["cpu"] == cpu_model()  # which machine the time is from
    assert ("not alone (other processes used 15% of the machine)" in describe(got)) is not alone
    assert describe(got).startswith("1.7 min") and describe(got).endswith("resumed from a checkpoint")


def test_unknown_machine_load_is_not_called_alone(tmp_path):
    got = RunClock(tmp_path / "no-proc-stat").stop()
    assert got["others_cpu_share"] is None and got["alone"] is None
    assert "machine load unknown" in describe(got)
