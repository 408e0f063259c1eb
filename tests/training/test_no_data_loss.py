"""Nothing a user already has is lost: runs in other folders, newer checkpoints, the file a command
reads, a file's permissions, and the last good checkpoint (issue 15, "Data loss", items 13 and 14)."""

from __future__ import annotations

import fcntl
import json
import os
import signal
import stat
import subprocess
import time

import numpy as np
import pytest
from tiny_models import tiny_model
from train_helpers import CONSOLE, REPO, TINY, refused, small_text, train_in_process

from scratchlm.checkpoint import save_checkpoint, write_atomically
from scratchlm.data.tokenizer import ByteTokenizer
from scratchlm.errors import TrainingDiverged
from scratchlm.model import GPT, GPTConfig
from scratchlm.training import loop
from scratchlm.training.progress import Reporter


def snapshot(folder) -> dict:
    """Every file in ``folder`` and its bytes."""
    return {p.name: p.read_bytes() for p in sorted(folder.iterdir()) if p.is_file()}


def steps_recorded(out) -> list[int]:
    return [json.loads(line)["step"] for line in (out / "metrics.jsonl").read_text().splitlines()]


@pytest.fixture
def data(tmp_path):
    return small_text(tmp_path, 1500)


# ---- 1. resuming into a folder that holds another run --------------------------------------------
def test_resuming_into_a_folder_holding_another_run_is_refused(tmp_path, data, capsys):
    a, b = tmp_path / "a", tmp_path / "b"
    train_in_process(["train", data, "--output-dir", a, *TINY, "--epochs", "1"])
    train_in_process(["train", data, "--output-dir", b, *TINY, "--epochs", "1", "--seed", "5"])
    before = snapshot(b)
    refused(["train", data, "--resume-from", a / "checkpoint_epoch_1.pt", "--output-dir", b, "--epochs", "2"],
            capsys, str(b), "another training run", "--overwrite", "--output-dir")
    assert snapshot(b) == before


def test_resuming_into_another_run_with_overwrite_replaces_it_whole(tmp_path, data):
    a, b = tmp_path / "a", tmp_path / "b"
    train_in_process(["train", data, "--output-dir", a, *TINY, "--epochs", "1"])
    train_in_process(["train", data, "--output-dir", b, *TINY, "--epochs", "3", "--seed", "5"])
    train_in_process(["train", data, "--resume-from", a / "checkpoint_epoch_1.pt", "--output-dir", b, "--epochs", "2",
                      "--overwrite"])
    assert not (b / "checkpoint_epoch_3.pt").exists()               # nothing of the other run is left
    assert sorted(p.name for p in b.glob("checkpoint_*.pt")) == ["checkpoint_epoch_2.pt"]
    assert steps_recorded(b) == steps_recorded(a) + [2 * steps_recorded(a)[0]]


def test_resuming_into_a_new_folder_or_the_runs_own_folder_is_allowed(tmp_path, data):
    a = tmp_path / "a"
    train_in_process(["train", data, "--output-dir", a, *TINY, "--epochs", "1"])
    train_in_process(["train", data, "--resume-from", a / "checkpoint_epoch_1.pt", "--output-dir", tmp_path / "new",
                      "--epochs", "2"])
    summary = train_in_process(["train", data, "--resume-from", a / "checkpoint_epoch_1.pt", "--epochs", "2"])
    assert summary["output_dir"] == str(a) and (a / "checkpoint_epoch_2.pt").exists()


# ---- 2. one training per folder --------------------------------------------------------------------
def test_a_folder_locked_by_another_training_is_refused_and_left_alone(tmp_path, data, capsys):
    from scratchlm.training.rundir import LOCK_FILE

    out = tmp_path / "out"
    out.mkdir()
    with open(out / LOCK_FILE, "a") as held:                  # what a running training holds
        fcntl.flock(held, fcntl.LOCK_EX | fcntl.LOCK_NB)
        refused(["train", data, "--output-dir", out, *TINY, "--max-steps", "2"], capsys,
                str(out), "another training")
    assert sorted(p.name for p in out.iterdir()) == [LOCK_FILE]


def test_two_trainings_into_one_folder_and_the_lock_goes_with_the_process(tmp_path, data, capsys):
    out = tmp_path / "out"
    first = subprocess.Popen([str(CONSOLE), "train", str(data), "--output-dir", str(out), *TINY, "--epochs", "500"],
                             cwd=REPO, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
    try:
        deadline = time.monotonic() + 120
        while not (out / "checkpoint_epoch_1.pt").exists() and time.monotonic() < deadline and first.poll() is None:
            time.sleep(0.05)
        assert first.poll() is None, first.stderr.read()
        # --overwrite would delete the running training's files: the lock must stop it first
        refused(["train", data, "--output-dir", out, *TINY, "--max-steps", "2", "--overwrite"], capsys,
                str(out), "another training")
        assert (out / "checkpoint_epoch_1.pt").exists()
    finally:
        first.send_signal(signal.SIGKILL)
        first.communicate(timeout=60)
    summary = train_in_process(["train", data, "--output-dir", out, *TINY, "--max-steps", "2", "--overwrite"])
    assert summary["steps"] == 2


# ---- 3. resuming again from an older checkpoint ----------------------------------------------------
def test_resuming_from_an_older_checkpoint_is_refused(tmp_path, data, capsys):
    out = tmp_path / "out"
    train_in_process(["train", data, "--output-dir", out, *TINY, "--epochs", "3"])
    before = snapshot(out)
    line = refused(["train", data, "--resume-from", out / "checkpoint_epoch_1.pt", "--epochs", "3"], capsys,
                   "checkpoint_epoch_3.pt", "--overwrite", "--output-dir")
    assert "final_model.pt" in line or "checkpoint_epoch_2.pt" in line
    assert snapshot(out) == before


def test_resuming_from_an_older_checkpoint_with_overwrite_keeps_one_history(tmp_path, data):
    out = tmp_path / "out"
    train_in_process(["train", data, "--output-dir", out, *TINY, "--epochs", "3"])
    per_epoch = steps_recorded(out)[0]
    train_in_process(["train", data, "--resume-from", out / "checkpoint_epoch_1.pt", "--epochs", "2", "--overwrite"])
    assert sorted(p.name for p in out.glob("checkpoint_*.pt")) == ["checkpoint_epoch_1.pt", "checkpoint_epoch_2.pt"]
    assert steps_recorded(out) == [per_epoch, 2 * per_epoch]
    from scratchlm.checkpoint import load_checkpoint

    assert load_checkpoint(out / "final_model.pt").train_state["state"]["step"] <= 2 * per_epoch


def test_resuming_from_the_newest_checkpoint_after_a_kill_is_allowed(tmp_path, data):
    """Killed in epoch 2: metrics.jsonl already has epoch 2's record, but the newest checkpoint is epoch 1."""
    out = tmp_path / "out"
    train_in_process(["train", data, "--output-dir", out, *TINY, "--epochs", "2"])
    (out / "checkpoint_epoch_2.pt").unlink()
    (out / "final_model.pt").unlink()
    os.link(out / "checkpoint_epoch_1.pt", out / "final_model.pt")
    summary = train_in_process(["train", data, "--resume-from", out / "checkpoint_epoch_1.pt", "--epochs", "2"])
    assert summary["epochs_done"] == 2


# ---- 5. a command's output is never the file it reads ----------------------------------------------
@pytest.fixture
def model_file(tmp_path):
    """A fresh checkpoint per test (a session-wide one would be shared by the tests that try to overwrite it)."""
    return save_checkpoint(tmp_path / "m.pt", *tiny_model(d_model=16, n_heads=2, n_layers=1, max_seq_len=16))


@pytest.mark.parametrize("how", ["same", "symlink", "hardlink"])
def test_evaluate_output_over_its_checkpoint_is_refused(tmp_path, model_file, capsys, how):
    text = small_text(tmp_path, 200)
    target = model_file
    if how != "same":
        target = tmp_path / f"{how}.json"
        (os.symlink if how == "symlink" else os.link)(model_file, target)
    before = model_file.read_bytes()
    refused(["evaluate", model_file, text, "--output", target], capsys, "--output", str(target), "CKPT")
    assert model_file.read_bytes() == before


def test_evaluate_output_over_its_data_is_refused(tmp_path, model_file, capsys):
    text = small_text(tmp_path, 200)
    before = text.read_bytes()
    refused(["evaluate", model_file, text, "--output", text], capsys, "--output", "DATA")
    assert text.read_bytes() == before


def test_generate_output_file_over_its_checkpoint_is_refused(tmp_path, model_file, capsys):
    before = model_file.read_bytes()
    link = tmp_path / "samples.txt"
    os.symlink(model_file, link)
    for target in (model_file, link):
        refused(["generate", model_file, "--max-tokens", "5", "--output-file", target], capsys,
                "--output-file", str(target), "CKPT")
    assert model_file.read_bytes() == before


# ---- 6. rewriting a file keeps its permissions; the folder is synced -------------------------------
def test_rewriting_a_file_keeps_its_mode(tmp_path):
    path = tmp_path / "private.txt"
    path.write_text("old")
    path.chmod(0o600)
    write_atomically(path, b"new")
    assert stat.S_IMODE(path.stat().st_mode) == 0o600 and path.read_bytes() == b"new"
    model = GPT(GPTConfig(vocab_size=256, d_model=16, n_heads=2, n_layers=1, max_seq_len=8))
    ckpt = save_checkpoint(tmp_path / "m.pt", model, ByteTokenizer())
    ckpt.chmod(0o640)
    save_checkpoint(ckpt, model, ByteTokenizer())
    assert stat.S_IMODE(ckpt.stat().st_mode) == 0o640


def test_a_runs_files_keep_their_mode_when_rewritten(tmp_path, data):
    out = tmp_path / "out"
    train_in_process(["train", data, "--output-dir", out, *TINY, "--epochs", "1"])
    for name in ("config.yaml", "metrics.jsonl", "checkpoint_epoch_1.pt"):
        (out / name).chmod(0o600)
    train_in_process(["train", data, "--resume-from", out / "checkpoint_epoch_1.pt", "--epochs", "2"])
    for name in ("config.yaml", "metrics.jsonl"):
        assert stat.S_IMODE((out / name).stat().st_mode) == 0o600, name


def test_the_folder_is_synced_after_the_rename(tmp_path, monkeypatch):
    synced = []
    real_fsync = os.fsync

    def fsync(fd):
        synced.append(stat.S_ISDIR(os.fstat(fd).st_mode))
        real_fsync(fd)

    monkeypatch.setattr(os, "fsync", fsync)
    write_atomically(tmp_path / "f.txt", b"x")
    assert synced == [False, True]                   # the file's bytes, then the folder's new name


# ---- 13. never a checkpoint with weights that are not finite ---------------------------------------
class PoisonAndInterrupt(Reporter):
    """At one step, turn a weight into NaN (as a GPU run that reads its loss rarely can) and press Ctrl-C."""

    def __init__(self, jobs: list, at: int):
        self.jobs, self.at, self.count = jobs, at, 0

    def step(self, *args) -> None:
        self.count += 1
        if self.count == self.at:
            self.jobs[0].optimizer.flat_params[0] = np.nan
            os.kill(os.getpid(), signal.SIGINT)


def test_interrupt_with_weights_that_are_not_finite_keeps_the_last_good_checkpoint(tmp_path, data, monkeypatch):
    out = tmp_path / "out"
    train_in_process(["train", data, "--output-dir", out, *TINY, "--epochs", "1"])
    good = (out / "checkpoint_epoch_1.pt").read_bytes()
    jobs = []
    real_prepare = loop.prepare
    monkeypatch.setattr(loop, "prepare", lambda *a: jobs.append(real_prepare(*a)) or jobs[0])
    with pytest.raises(TrainingDiverged) as stop:
        train_in_process(["train", data, "--resume-from", out / "checkpoint_epoch_1.pt", "--epochs", "3"],
                         reporter=PoisonAndInterrupt(jobs, 3))
    message = str(stop.value)
    assert "interrupted.pt" in message and "checkpoint_epoch_1.pt" in message and "\n" not in message
    assert not (out / "interrupted.pt").exists()
    assert (out / "checkpoint_epoch_1.pt").read_bytes() == good


# ---- 14. resuming a finished run -------------------------------------------------------------------
def test_resuming_a_finished_run_into_a_new_folder_is_refused(tmp_path, data, capsys):
    out, new = tmp_path / "out", tmp_path / "new"
    train_in_process(["train", data, "--output-dir", out, *TINY, "--epochs", "2"])
    line = refused(["train", data, "--resume-from", out / "checkpoint_epoch_2.pt", "--output-dir", new], capsys,
                   "--epochs")
    assert not new.exists()
    assert "new/final_model.pt" not in line


def test_resuming_a_run_stopped_by_max_steps_names_max_steps(tmp_path, data, capsys):
    out = tmp_path / "out"
    train_in_process(["train", data, "--output-dir", out, *TINY, "--epochs", "2", "--max-steps", "3"])
    refused(["train", data, "--resume-from", out / "checkpoint_step_3.pt"], capsys, "--max-steps")


# ---- temporary files left by a kill ----------------------------------------------------------------
@pytest.mark.parametrize("overwrite", [True, False])
def test_a_start_removes_temporary_files_left_by_a_kill_ours_only(tmp_path, data, overwrite):
    """Item 15: what a killed write left goes at the next start, over a run with --overwrite or into a
    folder that holds nothing else; a file that only looks like ours stays."""
    out = tmp_path / "out"
    if overwrite:
        train_in_process(["train", data, "--output-dir", out, *TINY, "--max-steps", "1"])
    else:
        out.mkdir()
    left = [out / ".checkpoint_epoch_1.pt.k2j3h4.tmp", out / ".final_model.pt.link.tmp", out / ".config.yaml.x1.tmp",
            out / ".metrics.jsonl.abc.tmp"]
    for path in left:
        path.write_bytes(b"half")
    (out / ".notes.txt.x1.tmp").write_text("not ours")
    train_in_process(["train", data, "--output-dir", out, *TINY, "--max-steps", "1", "--quiet",
                      *(["--overwrite"] if overwrite else [])])
    assert not any(path.exists() for path in left)
    assert (out / ".notes.txt.x1.tmp").read_text() == "not ours"


def test_a_folder_with_only_temporary_files_holds_no_run(tmp_path, data):
    out = tmp_path / "out"
    out.mkdir()
    (out / ".checkpoint_epoch_1.pt.k2j3h4.tmp").write_bytes(b"half")
    summary = train_in_process(["train", data, "--output-dir", out, *TINY, "--max-steps", "1"])
    assert summary["steps"] == 1
