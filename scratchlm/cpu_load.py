"""How many CPUs other processes keep busy: the engine's idle threads must not spin against them.

Linux keeps the machine's busy and idle time since boot in the first line of ``/proc/stat``
(in clock ticks); this process's own CPU time is ``time.process_time()``. Between two
readings, the busy time that is not ours, over the wall time between them, is how many CPUs
the rest of the machine used. ``kernels/numba_tools.py`` reads it once, before OpenMP starts,
to choose how the kernels' threads wait between parallel loops. Elsewhere (no ``/proc/stat``)
``others_busy`` answers None and the engine assumes a quiet machine.
"""

from __future__ import annotations

import os
import time

IDLE_FIELDS = (3, 4)            # idle and iowait, of user nice system idle iowait irq softirq steal ...
SHORTEST_S = 0.05               # readings closer than this are too coarse (ticks are 10 ms)


def _machine_busy_s() -> float | None:
    """CPU seconds every CPU of the machine has spent busy since boot (steal included), or None."""
    try:
        with open("/proc/stat") as stat:
            ticks = [int(v) for v in stat.readline().split()[1:9]]
    except (OSError, ValueError):
        return None
    busy = sum(t for i, t in enumerate(ticks) if i not in IDLE_FIELDS)
    return busy / os.sysconf("SC_CLK_TCK")


class CpuReading:
    """A reading of the machine's busy time, this process's CPU time and the clock; ``others_busy``
    compares a later one with it."""

    def __init__(self):
        self.machine_s = _machine_busy_s()
        self.own_s = time.process_time()
        self.wall_s = time.monotonic()

    def others_busy(self) -> float | None:
        """CPUs other processes kept busy since this reading (0 to the CPU count), waiting until
        SHORTEST_S has passed; None where the machine's busy time cannot be read."""
        wait = SHORTEST_S - (time.monotonic() - self.wall_s)
        if wait > 0:
            time.sleep(wait)
        now = CpuReading()
        if self.machine_s is None or now.machine_s is None:
            return None
        others = (now.machine_s - self.machine_s) - (now.own_s - self.own_s)
        return max(0.0, others / (now.wall_s - self.wall_s))
