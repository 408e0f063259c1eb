"""How busy is the machine? Load checks for timing on a small machine shared with other work.

On a 2-core machine one other busy process is enough to ruin a 2-thread measurement
(OpenMP and BLAS pools wait for a thread that is not running and every parallel call
stretches to a scheduler tick), so ``compare_torch.py`` waits for quiet before each
process and, inside each process, measures how much CPU *other* processes used while
it was being timed. Linux only (``/proc/stat``); elsewhere the checks report 0.
"""

from __future__ import annotations

import os
import platform
import subprocess
import time
from pathlib import Path

TICKS_PER_S = os.sysconf("SC_CLK_TCK") if hasattr(os, "sysconf") else 100


def busy_cpu_seconds() -> tuple[float, float]:
    """(busy, total) CPU seconds of the whole machine since boot, all cores summed."""
    try:
        fields = [int(v) for v in Path("/proc/stat").read_text().split("\n", 1)[0].split()[1:]]
    except (OSError, ValueError):
        return 0.0, 0.0
    total = sum(fields[:8])                      # user nice system idle iowait irq softirq steal
    idle = fields[3] + fields[4]
    return (total - idle) / TICKS_PER_S, total / TICKS_PER_S


def cpu_busy(interval: float = 0.5) -> float:
    """Fraction of all CPUs busy over the next ``interval`` seconds."""
    busy0, total0 = busy_cpu_seconds()
    time.sleep(interval)
    busy1, total1 = busy_cpu_seconds()
    return (busy1 - busy0) / (total1 - total0) if total1 > total0 else 0.0


def wait_until_quiet(max_busy: float, patience_s: float) -> float:
    """Wait (at most ``patience_s``) until the CPUs are at most ``max_busy`` busy; return the last reading."""
    deadline = time.monotonic() + patience_s
    busy = cpu_busy()
    while busy > max_busy and time.monotonic() < deadline:
        time.sleep(2.0)
        busy = cpu_busy()
    return busy


class OthersMeter:
    """Share of the machine's CPU time used by other processes between ``start()`` and ``stop()``."""

    def start(self) -> None:
        self.busy0, self.total0 = busy_cpu_seconds()
        self.own0 = time.process_time()

    def stop(self) -> float:
        busy1, total1 = busy_cpu_seconds()
        own = time.process_time() - self.own0
        if total1 <= self.total0:
            return 0.0
        return max(0.0, (busy1 - self.busy0 - own) / (total1 - self.total0))


def machine_info(repo: Path) -> dict:
    cpuinfo = Path("/proc/cpuinfo")
    lines = cpuinfo.read_text().splitlines() if cpuinfo.exists() else []
    model = next((line.split(":", 1)[1].strip() for line in lines if line.startswith("model name")),
                 platform.processor())

    def git(*args) -> str:
        return subprocess.run(["git", "-C", str(repo), *args], capture_output=True, text=True).stdout.strip()

    commit = git("rev-parse", "--short", "HEAD")
    return {"cpu": model, "cpus": os.cpu_count(), "python": platform.python_version(),
            "commit": commit + ("+uncommitted" if git("status", "--porcelain") else ""),
            "date": time.strftime("%Y-%m-%d %H:%M"), "load": os.getloadavg()}
