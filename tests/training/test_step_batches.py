"""Each training step gathers only its own rows from the token array, which stays on the host."""

from __future__ import annotations

import numpy as np
from train_helpers import TINY, parse, small_text

from scratchlm.data.batches import epoch_order
from scratchlm.training import distributed, loop
from scratchlm.training.job import prepare
from scratchlm.training.progress import Reporter


def spy_gathers(monkeypatch) -> list:
    """Record (ids, starts, window) of every gather the training loop makes."""
    calls, real = [], loop.gather_windows

    def gather(ids, starts, window):
        calls.append((ids, np.array(starts), window))
        return real(ids, starts, window)

    monkeypatch.setattr(loop, "gather_windows", gather)
    return calls


def test_an_epoch_gathers_one_batch_of_rows_per_step(tmp_path, monkeypatch):
    calls = spy_gathers(monkeypatch)
    settings, _, _ = parse(["train", small_text(tmp_path, 3000), "--output-dir", tmp_path / "out", *TINY, "--epochs", "1"])
    job = prepare(settings)
    trainer = loop.Trainer(job, Reporter())
    assert trainer.train_ids is job.train_ids                       # never moved to the device whole
    (tmp_path / "out").mkdir()                                        # train() claims it; Trainer alone does not
    trainer.run()
    steps = [c for c in calls if c[0] is job.train_ids]
    assert len(steps) == job.steps_per_epoch
    assert all(len(starts) <= settings.batch_size and window == job.window for _, starts, window in steps)
    order = epoch_order(len(job.train_ids), job.window, np.random.default_rng(settings.seed + 2))
    np.testing.assert_array_equal(np.concatenate([s for _, s, _ in steps]), order.starts(0, len(order)))
    evals = [c for c in calls if c[0] is job.val_ids]
    assert evals and all(len(starts) <= settings.batch_size for _, starts, _ in evals)


class SecondOfTwo(distributed.SingleProcess):
    """Rank 1 of 2, without MPI: its collectives are no-ops, so only its rows are trained on."""

    rank, size = 1, 2


def test_an_mpi_rank_gathers_only_its_own_rows(tmp_path, monkeypatch):
    calls = spy_gathers(monkeypatch)
    settings, _, _ = parse(["train", small_text(tmp_path, 3000), "--output-dir", tmp_path / "out", *TINY])
    trainer = loop.Trainer(prepare(settings), Reporter(), SecondOfTwo())
    order = epoch_order(len(trainer.train_ids), trainer.job.window, np.random.default_rng(0))
    trainer._step(order, 8, 16)                                     # the second global batch of 8
    (_, starts, _), = calls
    np.testing.assert_array_equal(starts, order.starts(12, 16))     # rows 4..8 of it, and nothing else
