"""How long a stage took, and whether anything else ran on the machine meanwhile.

Speeds on a shared machine are only comparable when nothing else ran, so every stage writes `timing.json` beside
its result (`tinydistill.stages.run`), and `python -m tinydistill.report` lists them:

- `wall_seconds`, `cpu_seconds` (this process and its finished children, e.g. data-loader workers);
- `others_cpu_share`: the CPU time every *other* process used during the run, as a share of what the machine
  could give (wall time x cores), from the kernel's counters in /proc/stat (Linux; None elsewhere);
- `alone`: `others_cpu_share` below `ALONE_SHARE`, i.e. the figure may be quoted as "measured alone";
  under DDP on one machine the run's other processes count as others, so such a run never reads as alone;
- `resumed`: the run continued from a checkpoint, so its wall time covers only the part after the restart;
- `cpu`: the CPU's model, since 2-core machines of different models differ up to 2x in speed.
"""

from __future__ import annotations

import datetime as dt
import os
import time
from pathlib import Path
from typing import Any

import torch

from tinydistill.hardware import cpu_model

#: Other processes may use this share of the machine (wall x cores) and the run still counts as alone: room for
#: the kernel and an idle shell, not for another job.
ALONE_SHARE = 0.05
TIMING_JSON = "timing.json"


def machine_busy_seconds(stat: str | os.PathLike = "/proc/stat") -> float | None:
    """CPU seconds all processes together have used since boot (user, nice, system, irq, softirq; steal, the
    hypervisor's, is not this machine's load), or None where /proc/stat is not readable."""
    try:
        fields = Path(stat).read_text().split("\n", 1)[0].split()
    except OSError:
        return None
    if len(fields) < 8 or fields[0] != "cpu":
        return None
    user, nice, system, _idle, _iowait, irq, softirq = map(int, fields[1:8])
    return (user + nice + system + irq + softirq) / os.sysconf("SC_CLK_TCK")


def own_cpu_seconds() -> float:
    """CPU seconds of this process (all threads) and of its children that have exited."""
    t = os.times()
    return t.user + t.system + t.children_user + t.children_system


def _now() -> str:
    return dt.datetime.now(dt.timezone.utc).isoformat(timespec="seconds")


class RunClock:
    """Started at construction; `stop()` gives the figures of the module docstring."""

    def __init__(self, stat: str | os.PathLike = "/proc/stat") -> None:
        self._stat = stat
        self.started = _now()
        self._wall = time.monotonic()
        self._own = own_cpu_seconds()
        self._machine = machine_busy_seconds(stat)

    def stop(self, resumed: bool = False) -> dict[str, Any]:
        wall = time.monotonic() - self._wall
        own = own_cpu_seconds() - self._own
        machine = machine_busy_seconds(self._stat)
        cores = os.cpu_count() or 1
        others = None
        if machine is not None and self._machine is not None and wall > 0:
            # Clock-tick rounding can make the difference slightly negative when nothing else ran.
            others = max(0.0, (machine - self._machine - own) / (wall * cores))
        return {
            "started": self.started, "finished": _now(), "wall_seconds": round(wall, 2),
            "cpu_seconds": round(own, 2), "cores": cores, "torch_threads": torch.get_num_threads(),
            "others_cpu_share": None if others is None else round(others, 4),
            "alone": None if others is None else others < ALONE_SHARE, "resumed": resumed, "cpu": cpu_model(),
        }


def describe(timing: dict[str, Any]) -> str:
    """`25.3 min, alone` / `25.3 min, not alone (other processes used 48% of the machine)`."""
    text = f"{timing['wall_seconds'] / 60:.1f} min"
    share = timing.get("others_cpu_share")
    if share is None:
        text += ", machine load unknown"
    elif timing.get("alone"):
        text += ", alone"
    else:
        text += f", not alone (other processes used {share:.0%} of the machine)"
    return text + (", resumed from a checkpoint" if timing.get("resumed") else "")
