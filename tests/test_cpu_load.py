"""scratchlm/cpu_load.py measures the CPUs other processes use, and kernels/numba_tools.py
chooses from it how idle OpenMP threads wait: spin on a quiet machine, sleep on a busy one."""

from __future__ import annotations

import subprocess
import sys
import time
from pathlib import Path

import pytest

from scratchlm import cpu_load
from scratchlm.kernels import numba_tools


def test_others_busy_is_the_machine_time_that_is_not_this_process_over_the_wall_time(monkeypatch):
    clock = {"machine": 100.0, "own": 10.0, "wall": 1000.0}
    monkeypatch.setattr(cpu_load, "_machine_busy_s", lambda: clock["machine"])
    monkeypatch.setattr(cpu_load.time, "process_time", lambda: clock["own"])
    monkeypatch.setattr(cpu_load.time, "monotonic", lambda: clock["wall"])
    reading = cpu_load.CpuReading()
    clock.update(machine=103.0, own=11.0, wall=1002.0)          # 3 CPU-s busy in 2 s, 1 of them ours
    assert reading.others_busy() == pytest.approx(1.0)
    clock.update(machine=103.5, own=14.0)                       # ticks lag our own clock: never below 0
    assert reading.others_busy() == 0.0


def test_others_busy_is_none_without_proc_stat(monkeypatch):
    monkeypatch.setattr(cpu_load, "_machine_busy_s", lambda: None)
    assert cpu_load.CpuReading().others_busy() is None


@pytest.mark.skipif(not Path("/proc/stat").exists(), reason="no /proc/stat here")
def test_a_busy_process_next_to_this_one_is_seen():
    child = subprocess.Popen([sys.executable, "-c", "import time\nt = time.time()\nwhile time.time() - t < 1.5: pass"])
    try:
        time.sleep(0.3)                                         # let it start
        reading = cpu_load.CpuReading()
        time.sleep(0.5)
        assert reading.others_busy() >= 0.5
    finally:
        child.wait()


@pytest.mark.parametrize("others, policy, variable, value", [
    (0.0, "spin", "GOMP_SPINCOUNT", numba_tools.SPIN_COUNT),
    (None, "spin", "GOMP_SPINCOUNT", numba_tools.SPIN_COUNT),   # cannot tell: as on a quiet machine
    (0.4, "spin", "GOMP_SPINCOUNT", numba_tools.SPIN_COUNT),
    (0.5, "passive", "OMP_WAIT_POLICY", "PASSIVE"),
    (1.7, "passive", "OMP_WAIT_POLICY", "PASSIVE"),
])
def test_threads_spin_on_a_quiet_machine_and_sleep_on_a_busy_one(monkeypatch, others, policy, variable, value):
    fresh_choice(monkeypatch)
    monkeypatch.setattr(numba_tools._STARTED, "others_busy", lambda: others)
    monkeypatch.setattr(cpu_load, "usable_cpus", lambda: {0, 1})
    monkeypatch.setenv("NUMBA_NUM_THREADS", "2")
    assert numba_tools.choose_wait_policy() == policy
    assert numba_tools.os.environ[variable] == value
    other = "OMP_WAIT_POLICY" if variable == "GOMP_SPINCOUNT" else "GOMP_SPINCOUNT"
    assert other not in numba_tools.os.environ
    assert numba_tools.os.environ[numba_tools.CHOSEN_BY_ENGINE] == variable
    assert numba_tools.choose_wait_policy() == policy             # once per process


@pytest.mark.parametrize("variable", ["OMP_WAIT_POLICY", "GOMP_SPINCOUNT"])
def test_a_users_own_wait_setting_wins(monkeypatch, variable):
    fresh_choice(monkeypatch)
    monkeypatch.setenv(variable, "ACTIVE" if variable == "OMP_WAIT_POLICY" else "1000")
    monkeypatch.setattr(numba_tools._STARTED, "others_busy", lambda: 2.0)
    assert numba_tools.choose_wait_policy() == "user"
    assert set(k for k in ("OMP_WAIT_POLICY", "GOMP_SPINCOUNT") if k in numba_tools.os.environ) == {variable}


def test_a_parent_engines_choice_is_not_taken_for_the_users(monkeypatch):
    """A child process inherits the variable the parent's engine set; it measures its own machine."""
    fresh_choice(monkeypatch)
    monkeypatch.setenv("OMP_WAIT_POLICY", "PASSIVE")
    monkeypatch.setenv(numba_tools.CHOSEN_BY_ENGINE, "OMP_WAIT_POLICY")
    monkeypatch.setattr(numba_tools._STARTED, "others_busy", lambda: 0.0)
    monkeypatch.setattr(cpu_load, "usable_cpus", lambda: {0, 1})
    monkeypatch.setenv("NUMBA_NUM_THREADS", "2")
    assert numba_tools.choose_wait_policy() == "spin"
    assert "OMP_WAIT_POLICY" not in numba_tools.os.environ


def test_many_cpus_with_some_busy_still_spin(monkeypatch):
    """Others' work matters only when it leaves fewer free CPUs than the kernels have threads."""
    fresh_choice(monkeypatch)
    monkeypatch.setattr(numba_tools._STARTED, "others_busy", lambda: 20.0)
    monkeypatch.setattr(cpu_load, "usable_cpus", lambda: set(range(64)))
    monkeypatch.setenv("NUMBA_NUM_THREADS", "8")
    assert numba_tools.choose_wait_policy() == "spin"


def fresh_choice(monkeypatch):
    """No wait setting in the environment (each restored after the test) and no choice made yet."""
    for name in ("OMP_WAIT_POLICY", "GOMP_SPINCOUNT", numba_tools.CHOSEN_BY_ENGINE):
        monkeypatch.setenv(name, "")                      # recorded, so that monkeypatch puts it back
        monkeypatch.delenv(name)
    monkeypatch.setattr(numba_tools, "_wait_policy", None)
