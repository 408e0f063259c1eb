"""How many CPUs other processes keep busy: the engine's idle threads must not spin against them.

Linux keeps each CPU's busy and idle time since boot in ``/proc/stat`` (in clock ticks);
this process's own CPU time is ``time.process_time()``. Between two readings, the busy time
of the CPUs this process may run on that is not ours, over the wall time between them, is
how many of those CPUs the rest of the machine used. ``kernels/numba_tools.py`` reads it once, before OpenMP starts,
to choose how the kernels' threads wait between parallel loops. Elsewhere (no ``/proc/stat``)
``others_busy`` answers None and the engine assumes a quiet machine.
"""

from __future__ import annotations

import os
import time

IDLE_FIELDS = (3, 4)            # idle and iowait, of user nice system idle iowait irq softirq steal ...
SHORTEST_S = 0.05               # readings closer than this are too coarse (ticks are 10 ms)
LONGEST_S = 5.0                 # a reading older than this says little about now: read afresh
FRESH_S = 0.1                   # how long a fresh reading watches


def usable_cpus() -> set[int]:
    """The CPUs this process may run on (its affinity mask; all of them where that is unknown)."""
    try:
        return set(os.sched_getaffinity(0))
    except (AttributeError, OSError):
        return set(range(os.cpu_count() or 1))


def _machine_busy_s() -> float | None:
    """CPU seconds the CPUs this process may run on have spent busy since boot (steal included),
    from their own ``cpuN`` lines (others' work on CPUs outside the mask is no competition); None
    where /proc/stat cannot be read."""
    mine = usable_cpus()
    busy = 0
    try:
        with open("/proc/stat") as stat:
            for line in stat:
                name, *ticks = line.split()[:9]
                if name.startswith("cpu") and name[3:].isdigit() and int(name[3:]) in mine:
                    busy += sum(int(t) for i, t in enumerate(ticks) if i not in IDLE_FIELDS)
    except (OSError, ValueError):
        return None
    return busy / os.sysconf("SC_CLK_TCK")


class CpuReading:
    """A reading of the machine's busy time, this process's CPU time and the clock; ``others_busy``
    compares a later one with it."""

    def __init__(self):
        self.machine_s = _machine_busy_s()
        self.own_s = time.process_time()
        self.wall_s = time.monotonic()

    def others_busy(self) -> float | None:
        """CPUs other processes kept busy since this reading (0 to the usable CPU count): over
        at least SHORTEST_S, and over the last FRESH_S instead when this reading is older than
        LONGEST_S (a notebook imported scratchlm minutes ago); None where it cannot be read."""
        age = time.monotonic() - self.wall_s
        if age > LONGEST_S:
            fresh = CpuReading()
            time.sleep(FRESH_S)
            return fresh.others_busy()
        if age < SHORTEST_S:
            time.sleep(SHORTEST_S - age)
        now = CpuReading()
        if self.machine_s is None or now.machine_s is None:
            return None
        others = (now.machine_s - self.machine_s) - (now.own_s - self.own_s)
        return max(0.0, others / (now.wall_s - self.wall_s))
