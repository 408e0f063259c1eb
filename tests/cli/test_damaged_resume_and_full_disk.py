"""Damaged resume state and a full disk (issue 15, item 11): one line and exit 2, naming the file.

A checkpoint's RNG states, counters, history and optimizer moments are checked before the
resumed run writes anything (these crashed it once config.yaml was already written); a write
that fails during training names the file and the last good checkpoint, which stays usable.
"""

from __future__ import annotations

import errno
import json
import os

import numpy as np
import pytest
from tiny_models import checkpoint_contents, rewrite_checkpoint
from train_helpers import TINY, refused, small_text, train_in_process

from scratchlm.checkpoint import load_checkpoint


@pytest.fixture(scope="module")
def run(tmp_path_factory):
    """(data, a finished 2-step run's checkpoint) to damage copies of."""
    folder = tmp_path_factory.mktemp("run")
    data = small_text(folder, 1500)
    train_in_process(["train", data, "--output-dir", folder / "out", *TINY, "--epochs", "1", "--max-steps", "2",
                      "--quiet"])
    return data, folder / "out" / "checkpoint_step_2.pt"


def damaged_state(source, target, **changes):
    """A copy of ``source`` whose train_state["state"] has ``changes`` (a value of DROP removes the key)."""
    train_state = json.loads(checkpoint_contents(source)[1]["train_state"])
    train_state["state"].update(changes)
    return rewrite_checkpoint(source, target, train_state=train_state)


STATE_CASES = {
    "step not a number": ({"step": "two"}, "step is 'two'"),
    "negative step": ({"step": -1}, "step is -1"),
    "step past the optimizer's": ({"step": 7}, "its optimizer at step 2"),
    "bad data-order RNG": ({"epoch_rng_state": {"bit_generator": "PCG64", "state": "junk"}}, "epoch_rng_state"),
    "missing dropout RNG": ({"dropout_rng_state": None}, "dropout_rng_state is None"),
    "foreign RNG": ({"dropout_rng_state": {"bit_generator": "MT19937"}}, "dropout_rng_state"),
    "history not a list": ({"history": "lost"}, "history is 'lost'"),
    "history record incomplete": ({"history": [{"step": 1}]}, "history is {'step': 1}"),
    "curve damaged": ({"curve": [[1]]}, "curve is [[1]]"),
    "loss sum infinite": ({"elapsed_s": float("inf")}, "elapsed_s is inf"),
}


@pytest.mark.parametrize("case", STATE_CASES)
def test_damaged_resume_state_is_refused_before_anything_is_written(tmp_path, run, capsys, case):
    data, checkpoint = run
    changes, fragment = STATE_CASES[case]
    bad = damaged_state(checkpoint, tmp_path / "bad.pt", **changes)
    refused(["train", data, "--resume-from", bad, "--output-dir", tmp_path / "new", "--max-steps", "4"], capsys,
            str(bad), fragment)
    assert not (tmp_path / "new").exists()


@pytest.mark.parametrize("case", ["settings not an object", "moments not finite", "moments misshapen"])
def test_damaged_settings_or_moments_are_refused(tmp_path, run, capsys, case):
    data, checkpoint = run
    tensors, meta = checkpoint_contents(checkpoint)
    train_state = json.loads(meta["train_state"])
    if case == "settings not an object":
        bad = rewrite_checkpoint(checkpoint, tmp_path / "bad.pt", train_state={**train_state, "settings": [1]})
        fragment = "train_state.settings is [1]"
    elif case == "moments not finite":
        bad = rewrite_checkpoint(checkpoint, tmp_path / "bad.pt", {"optimizer.v": np.full_like(tensors["optimizer.v"],
                                                                                               np.nan)})
        fragment = "NaN or infinite value(s) in optimizer.v"
    else:
        bad = rewrite_checkpoint(checkpoint, tmp_path / "bad.pt", {"optimizer.m": tensors["optimizer.m"][:-1]})
        fragment = "optimizer.m has shape"
    refused(["train", data, "--resume-from", bad, "--output-dir", tmp_path / "new", "--max-steps", "4"], capsys,
            fragment)
    assert not (tmp_path / "new").exists()


def test_an_intact_checkpoint_still_resumes(tmp_path, run):
    data, checkpoint = run
    summary = train_in_process(["train", data, "--resume-from", checkpoint, "--output-dir", tmp_path / "new",
                                "--max-steps", "3", "--quiet"])
    assert summary["steps"] == 3


# ---- a full disk during training --------------------------------------------------------------------
def fill_the_disk_at(monkeypatch, name_part: str):
    """Make every fsync of a file whose name holds ``name_part`` fail with ENOSPC, as a full disk does."""
    real_fsync = os.fsync

    def fsync(fd):
        if name_part in os.readlink(f"/proc/self/fd/{fd}"):
            raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))
        return real_fsync(fd)

    monkeypatch.setattr(os, "fsync", fsync)


@pytest.mark.skipif(not os.path.isdir("/proc/self/fd"), reason="needs /proc to tell files apart")
def test_a_full_disk_names_the_file_and_what_was_kept(tmp_path, capsys, monkeypatch):
    data, out = small_text(tmp_path, 1500), tmp_path / "out"
    fill_the_disk_at(monkeypatch, ".checkpoint_epoch_2.pt.")
    line = refused(["train", data, "--output-dir", out, *TINY, "--epochs", "3", "--quiet"], capsys,
                   f"cannot write {out / 'checkpoint_epoch_2.pt'}: No space left on device",
                   f"the last good checkpoint is {out / 'checkpoint_epoch_1.pt'}")
    assert "--resume-from" in line
    assert load_checkpoint(out / "checkpoint_epoch_1.pt").train_state["state"]["epochs_done"] == 1
    assert not (out / "checkpoint_epoch_2.pt").exists()
    assert not [p.name for p in out.iterdir() if p.name.endswith(".tmp")]     # no temporary file left


@pytest.mark.skipif(not os.path.isdir("/proc/self/fd"), reason="needs /proc to tell files apart")
def test_a_full_disk_before_any_checkpoint(tmp_path, capsys, monkeypatch):
    data, out = small_text(tmp_path, 1500), tmp_path / "out"
    fill_the_disk_at(monkeypatch, ".config.yaml.")
    refused(["train", data, "--output-dir", out, *TINY, "--epochs", "1", "--quiet"], capsys,
            f"cannot write {out / 'config.yaml'}", "no checkpoint had been saved yet")
