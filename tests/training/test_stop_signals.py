"""SIGTERM and SIGHUP (a scheduler, docker stop, systemd, a closed terminal) stop training like Ctrl-C:
interrupted.pt is saved, the resume command is printed, and the exit code is 128 + the signal."""

from __future__ import annotations

import re
import shlex
import signal
import subprocess
import time

import pytest
from train_helpers import CONSOLE, REPO, TINY, run_console, small_text

from scratchlm.training.loop import StopRequest


def _default_stop_signals():
    for signum in (signal.SIGTERM, signal.SIGHUP):
        signal.signal(signum, signal.SIG_DFL)


@pytest.mark.parametrize("signum, code", [(signal.SIGTERM, 143), (signal.SIGHUP, 129)])
def test_a_stop_signal_saves_and_prints_the_resume_command(tmp_path, signum, code):
    data = small_text(tmp_path, 1500)
    out = tmp_path / "out"
    proc = subprocess.Popen([str(CONSOLE), "train", str(data), "--output-dir", str(out), *TINY, "--epochs", "100000"],
                            cwd=REPO, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                            preexec_fn=_default_stop_signals)   # a suite run under nohup ignores SIGHUP
    deadline = time.monotonic() + 120
    while not (out / "checkpoint_epoch_1.pt").exists() and time.monotonic() < deadline and proc.poll() is None:
        time.sleep(0.05)
    proc.send_signal(signum)
    stdout, stderr = proc.communicate(timeout=120)
    assert proc.returncode == code, stderr
    assert (out / "interrupted.pt").exists()
    assert "Traceback" not in stderr
    step = int(re.search(r"at step (\d+)", stderr).group(1))
    command = stderr.split("Resume with: ", 1)[1].strip()
    assert f"--resume-from {out / 'interrupted.pt'}" in command
    resumed = run_console(*shlex.split(command)[1:], "--max-steps", step + 1)
    assert resumed.returncode == 0, resumed.stderr


def test_a_stop_signal_that_was_ignored_stays_ignored():
    """Under nohup SIGHUP is ignored on purpose: training must go on when the terminal closes."""
    before = signal.signal(signal.SIGHUP, signal.SIG_IGN)
    try:
        with StopRequest():
            assert signal.getsignal(signal.SIGHUP) is signal.SIG_IGN
    finally:
        signal.signal(signal.SIGHUP, before)


def test_every_stop_signal_handler_is_put_back():
    before = {s: signal.getsignal(s) for s in (signal.SIGINT, signal.SIGTERM, signal.SIGHUP)}
    with StopRequest() as stop:
        assert signal.getsignal(signal.SIGTERM) is not before[signal.SIGTERM]
        assert not stop.requested
    assert {s: signal.getsignal(s) for s in before} == before
