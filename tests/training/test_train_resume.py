"""--resume-from continues a run exactly; Ctrl-C saves a resumable checkpoint; NaN stops cleanly."""

from __future__ import annotations

import json
import os
import shlex
import signal
import subprocess
import time

import pytest
import yaml
from train_helpers import CONSOLE, REPO, TINY, assert_same_arrays, checkpoint_arrays, run_console, small_text, train_in_process

from scratchlm.errors import TrainingDiverged, TrainingInterrupted
from scratchlm.training.progress import Reporter


def val_losses(out) -> list[float]:
    return [json.loads(line)["val_loss"] for line in (out / "metrics.jsonl").read_text().splitlines()]


def steps_per_epoch(out) -> int:
    return yaml.safe_load((out / "config.yaml").read_text())["run"]["steps_per_epoch"]


def test_two_epochs_equal_one_epoch_then_resume(tmp_path):
    """Constant schedule, so a 1-epoch run has the same learning rates as the first half of a 2-epoch one."""
    data = small_text(tmp_path, 1500)
    common = [*TINY, "--lr-schedule", "constant", "--warmup-steps", "3", "--dropout", "0.1"]  # the dropout RNG matters
    full, half = tmp_path / "full", tmp_path / "half"
    train_in_process(["train", data, "--output-dir", full, *common, "--epochs", "2"])
    train_in_process(["train", data, "--output-dir", half, *common, "--epochs", "1"])
    summary = train_in_process(["train", data, "--resume-from", half / "checkpoint_epoch_1.pt", "--epochs", "2"])

    assert summary["output_dir"] == str(half)                 # the checkpoint's folder by default
    assert_same_arrays(checkpoint_arrays(full / "checkpoint_epoch_2.pt"), checkpoint_arrays(half / "checkpoint_epoch_2.pt"))
    assert val_losses(full) == val_losses(half)
    assert checkpoint_arrays(full / "final_model.pt").keys() == checkpoint_arrays(half / "final_model.pt").keys()


def test_resume_keeps_the_cosine_schedule_through_the_console_script(tmp_path):
    """Stop after epoch 1 with --max-steps (the decay still spans --epochs), resume, get the same weights.
    The warm-up is given: auto's counts the steps a run takes, so it would differ."""
    data = small_text(tmp_path, 1500)
    full, part = tmp_path / "full", tmp_path / "part"
    run = [*TINY, "--epochs", "2", "--warmup-steps", "3"]
    assert run_console("train", data, "--output-dir", full, *run).returncode == 0
    spe = steps_per_epoch(full)
    first = run_console("train", data, "--output-dir", part, *run, "--max-steps", spe)
    assert first.returncode == 0, first.stderr
    assert not (part / "checkpoint_epoch_2.pt").exists()
    resumed = run_console("train", data, "--resume-from", part / "checkpoint_epoch_1.pt", "--max-steps", "0")
    assert resumed.returncode == 0, resumed.stderr
    assert "Resuming from" in resumed.stdout
    assert_same_arrays(checkpoint_arrays(full / "checkpoint_epoch_2.pt"), checkpoint_arrays(part / "checkpoint_epoch_2.pt"))


class InterruptAt(Reporter):
    """Sends this process a real SIGINT (a Ctrl-C) during the given step."""

    def __init__(self, step: int):
        self.at, self.count = step, 0

    def step(self, *args) -> None:
        self.count += 1
        if self.count == self.at:
            os.kill(os.getpid(), signal.SIGINT)


def test_ctrl_c_mid_epoch_then_resume_is_exact(tmp_path):
    data = small_text(tmp_path, 1500)
    common = [*TINY, "--epochs", "3", "--eval-interval", "4"]
    full, cut = tmp_path / "full", tmp_path / "cut"
    train_in_process(["train", data, "--output-dir", full, *common])
    at = steps_per_epoch(full) + 3                            # inside epoch 2
    handler_before = signal.getsignal(signal.SIGINT)          # SIG_IGN where pytest runs in the background
    with pytest.raises(TrainingInterrupted) as stop:
        train_in_process(["train", data, "--output-dir", cut, *common], reporter=InterruptAt(at))
    assert stop.value.step == at and stop.value.checkpoint == cut / "interrupted.pt"
    assert signal.getsignal(signal.SIGINT) is handler_before                 # the handler is put back

    train_in_process(["train", data, "--resume-from", cut / "interrupted.pt"])
    for name in ("checkpoint_epoch_3.pt", "final_model.pt"):
        assert_same_arrays(checkpoint_arrays(full / name), checkpoint_arrays(cut / name))
    assert val_losses(full) == val_losses(cut)


def test_sigint_to_the_console_script_saves_and_prints_the_resume_command(tmp_path):
    data = small_text(tmp_path, 1500)
    out = tmp_path / "out"
    proc = subprocess.Popen([str(CONSOLE), "train", str(data), "--output-dir", str(out), *TINY, "--epochs", "500"],
                            cwd=REPO, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    deadline = time.monotonic() + 120
    while not (out / "checkpoint_epoch_1.pt").exists() and time.monotonic() < deadline and proc.poll() is None:
        time.sleep(0.1)
    proc.send_signal(signal.SIGINT)
    stdout, stderr = proc.communicate(timeout=120)
    assert proc.returncode == 130, stderr
    assert (out / "interrupted.pt").exists()
    assert "Traceback" not in stderr
    command = stderr.split("Resume with: ", 1)[1].strip()
    assert f"--resume-from {out / 'interrupted.pt'}" in command
    argv = shlex.split(command)
    assert argv[0] == "fundamentallm"
    step = json.loads((out / "metrics.jsonl").read_text().splitlines()[-1])["step"]
    resumed = run_console(*argv[1:], "--max-steps", step + 20)
    assert resumed.returncode == 0, resumed.stderr
    assert "Resuming from" in resumed.stdout


def test_nan_loss_stops_and_keeps_the_last_good_checkpoint(tmp_path):
    data = small_text(tmp_path, 1500)
    out = tmp_path / "out"
    train_in_process(["train", data, "--output-dir", out, *TINY, "--epochs", "1"])
    good = (out / "checkpoint_epoch_1.pt").read_bytes()
    with pytest.raises(TrainingDiverged, match=r"at step \d+: lower --learning-rate"):
        train_in_process(["train", data, "--resume-from", out / "checkpoint_epoch_1.pt", "--epochs", "2",
                          "--learning-rate", "1e38"])
    assert (out / "checkpoint_epoch_1.pt").read_bytes() == good
    assert not (out / "checkpoint_epoch_2.pt").exists() and not (out / "interrupted.pt").exists()


def test_nan_loss_exits_1_with_one_line(tmp_path):
    data = small_text(tmp_path, 1500)
    result = run_console("train", data, "--output-dir", tmp_path / "out", *TINY, "--learning-rate", "1e38",
                         "--warmup-steps", "0")
    assert result.returncode == 1
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: the loss became nan at step 2"), result.stderr
    assert "--learning-rate" in lines[0] and "--gradient-clip" in lines[0]


@pytest.mark.parametrize("change, message", [
    (["--model-dim", "32"], "differs from the resumed run's model_dim"),
    (["--seed", "7"], "differs from the resumed run's seed"),
])
def test_resume_refuses_to_change_the_model_or_the_data_order(tmp_path, change, message):
    data = small_text(tmp_path, 1500)
    out = tmp_path / "out"
    train_in_process(["train", data, "--output-dir", out, *TINY, "--epochs", "1"])
    result = run_console("train", data, "--resume-from", out / "checkpoint_epoch_1.pt", *change)
    assert result.returncode == 2
    assert message in result.stderr and len(result.stderr.strip().splitlines()) == 1


def test_resume_refuses_other_data(tmp_path):
    data = small_text(tmp_path, 1500)
    out = tmp_path / "out"
    train_in_process(["train", data, "--output-dir", out, *TINY, "--epochs", "1"])
    other = small_text(tmp_path, 1600, name="other.txt")
    result = run_console("train", other, "--resume-from", out / "checkpoint_epoch_1.pt", "--epochs", "2")
    assert result.returncode == 2
    assert "is not the text this run was trained on" in result.stderr
