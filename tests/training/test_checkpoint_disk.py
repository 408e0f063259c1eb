"""Disk a run's checkpoints take: every epoch checkpoint keeps its weights, only the newest keeps
AdamW's moments (issue 15, item 20), and a finished resume takes its ``interrupted.pt`` away.

The tutorial's step 7 (20 epochs of a 4.79M-parameter model) wrote 20 full checkpoints, 1.2 GB,
where the tutorial promises ~500 MB of disk; two thirds of each file were the moments.
"""

from __future__ import annotations

import shutil

import numpy as np
from train_helpers import TINY, assert_same_arrays, checkpoint_arrays, small_text, train_in_process

from scratchlm.checkpoint import WEIGHTS_ONLY, drop_optimizer_state, load_checkpoint, saved_step
from scratchlm.training import outputs
from scratchlm.training.progress import Reporter


class RecordingReporter(Reporter):
    """Keeps the facts of the configuration panel."""

    def start(self, facts, resumed_from, step):
        self.facts = facts


def _train(data, out, *more):
    return train_in_process(["train", data, "--output-dir", out, *TINY, "--seed", "3", *more])


def test_only_the_newest_epoch_checkpoint_keeps_the_optimizer_state(tmp_path):
    data, out = small_text(tmp_path), tmp_path / "run"
    _train(data, out, "--epochs", "3")
    epochs = [load_checkpoint(out / f"checkpoint_epoch_{n}.pt") for n in (1, 2, 3)]
    assert [c.optimizer_state is None for c in epochs] == [True, True, False]
    assert [bool(c.train_state.get(WEIGHTS_ONLY)) for c in epochs] == [True, True, False]
    assert load_checkpoint(out / "final_model.pt").optimizer_state is not None
    sizes = [(out / f"checkpoint_epoch_{n}.pt").stat().st_size for n in (1, 2, 3)]
    assert max(sizes[:2]) < 0.5 * sizes[2]                       # weights: a third of weights + m + v
    assert epochs[0].train_state["state"]["step"] < epochs[2].train_state["state"]["step"]


def test_a_slimmed_checkpoint_still_generates_and_keeps_its_weights(tmp_path):
    data, out = small_text(tmp_path), tmp_path / "run"
    _train(data, out, "--epochs", "1")
    full = checkpoint_arrays(out / "checkpoint_epoch_1.pt")
    copy = shutil.copy(out / "checkpoint_epoch_1.pt", tmp_path / "copy.pt")
    assert drop_optimizer_state(copy) and not drop_optimizer_state(copy)   # the second call has nothing to do
    slim = checkpoint_arrays(copy)
    assert_same_arrays(slim, {k: v for k, v in full.items() if not k.startswith("optimizer.")})
    model = load_checkpoint(copy).build_model()
    logits, _ = model(np.zeros((1, 4), dtype=np.int64))
    assert np.isfinite(logits.data).all()


def test_an_older_epoch_resumes_with_fresh_moments_and_says_so(tmp_path):
    data, out = small_text(tmp_path), tmp_path / "run"
    _train(data, out, "--epochs", "2")
    reporter = RecordingReporter()
    summary = train_in_process(["train", data, "--resume-from", out / "checkpoint_epoch_1.pt", "--epochs", "2",
                                "--output-dir", tmp_path / "again"], reporter)
    assert summary["epochs_done"] == 2 and np.isfinite(summary["val_loss"])
    assert "keeps the weights only" in reporter.facts["panel"]["Optimizer"]
    newest = load_checkpoint(tmp_path / "again" / "checkpoint_epoch_2.pt")
    assert newest.optimizer_state["step"] == summary["steps"] // 2       # counted from the fresh start


def test_resuming_from_the_newest_still_matches_an_unbroken_run(tmp_path):
    data, constant = small_text(tmp_path), ["--lr-schedule", "constant", "--warmup-steps", "2"]   # 2 epochs' rates
    # = 3 epochs' first 2 (a fixed warm-up: auto's is a tenth of each run's own length)
    _train(data, tmp_path / "whole", "--epochs", "3", *constant)
    _train(data, tmp_path / "part", "--epochs", "2", *constant)
    train_in_process(["train", data, "--resume-from", tmp_path / "part" / "checkpoint_epoch_2.pt", "--epochs", "3"])
    assert_same_arrays(checkpoint_arrays(tmp_path / "part" / "checkpoint_epoch_3.pt"),
                       checkpoint_arrays(tmp_path / "whole" / "checkpoint_epoch_3.pt"))
    assert load_checkpoint(tmp_path / "part" / "checkpoint_epoch_2.pt").optimizer_state is None


def test_interrupted_pt_goes_once_a_resumed_run_finishes_past_it(tmp_path):
    data, out = small_text(tmp_path), tmp_path / "run"
    _train(data, out, "--epochs", "2")
    interrupted = shutil.copy(out / "checkpoint_epoch_2.pt", out / "interrupted.pt")   # as Ctrl-C leaves one
    train_in_process(["train", data, "--resume-from", interrupted, "--epochs", "3"])
    assert not (out / "interrupted.pt").exists()
    assert load_checkpoint(out / "checkpoint_epoch_3.pt").optimizer_state is not None


def test_an_interrupted_pt_ahead_of_the_run_stays(tmp_path):
    data, out = small_text(tmp_path), tmp_path / "run"
    _train(data, out, "--epochs", "1")
    interrupted = shutil.copy(out / "checkpoint_epoch_1.pt", out / "interrupted.pt")
    step = saved_step(interrupted)
    assert not outputs.remove_passed_interruption(out, step - 1)
    assert interrupted.exists()
    assert outputs.remove_passed_interruption(out, step) and not interrupted.exists()
