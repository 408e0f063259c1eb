"""mpirun -n 2 scratchlm train: the numbers of one process, checkpoints that resume anywhere, no hangs.

Skipped without ``mpirun`` (apt-get install openmpi-bin) or mpi4py (pip install -e '.[mpi]').
Dropout is 0 here: each rank draws its own dropout masks, so with dropout on, two ranks
and one process train on different noise and cannot match.
"""

from __future__ import annotations

import importlib.util
import json
import os
import shutil
import subprocess
import sys

import numpy as np
import pytest
from train_helpers import REPO, TINY, checkpoint_arrays, small_text, train_in_process

from scratchlm.checkpoint import load_checkpoint

MPIRUN = shutil.which("mpirun")
pytestmark = [
    pytest.mark.skipif(MPIRUN is None, reason="needs mpirun (apt-get install openmpi-bin)"),
    pytest.mark.skipif(importlib.util.find_spec("mpi4py") is None, reason="needs mpi4py (pip install -e '.[mpi]')"),
    pytest.mark.timeout(300),
]
TOLERANCE = {"float64": 1e-10, "float32": 1e-5}
# 1478 characters: 1330 train tokens = 77 windows of 17 = 10 steps of batch 8, the last one 5 rows
# (split 2 + 3 over two ranks); 148 val tokens = one batch of 8 windows plus a tail (one batch per rank).
CHARS = 1478
RUN = [*TINY, "--epochs", "2", "--warmup-steps", "3", "--eval-interval", "5"]
STEPS_PER_EPOCH = 10                        # of RUN on CHARS characters


def mpirun(n: int, *args, timeout: float = 240) -> subprocess.CompletedProcess:
    """``mpirun -n n python ARGS`` (one thread per rank); a hang fails the test instead of the CI run."""
    root = ["--allow-run-as-root"] if os.geteuid() == 0 else []
    env = dict(os.environ, OMP_NUM_THREADS="1", OPENBLAS_NUM_THREADS="1", NUMBA_NUM_THREADS="1",
               OMPI_MCA_btl_vader_single_copy_mechanism="none")      # containers may forbid the ptrace it uses
    command = [MPIRUN, "-n", str(n), "--oversubscribe", *root, sys.executable, *map(str, args)]
    return subprocess.run(command, capture_output=True, text=True, timeout=timeout, cwd=REPO, env=env)


def mpi_train(n: int, *args) -> subprocess.CompletedProcess:
    result = mpirun(n, "-m", "scratchlm", "train", *args)
    assert result.returncode == 0, result.stdout[-2000:] + result.stderr[-3000:]
    return result


def losses(out, checkpoint="checkpoint_epoch_2.pt") -> dict:
    """The train loss of every step, and the train and val loss of every evaluation."""
    metrics = [json.loads(line) for line in (out / "metrics.jsonl").read_text().splitlines()]
    return {"steps": [loss for _, loss in load_checkpoint(out / checkpoint).train_state["state"]["curve"]],
            "train": [m["train_loss"] for m in metrics], "val": [m["val_loss"] for m in metrics]}


def assert_close_runs(a, b, tolerance: float, checkpoint="checkpoint_epoch_2.pt") -> None:
    loss_a, loss_b = losses(a, checkpoint), losses(b, checkpoint)
    assert len(loss_a["steps"]) == 20 and len(loss_a["val"]) == 4                  # a point per step, 4 evals
    for key in loss_a:
        np.testing.assert_allclose(loss_b[key], loss_a[key], rtol=tolerance, atol=tolerance, err_msg=key)
    arrays_a, arrays_b = checkpoint_arrays(a / checkpoint), checkpoint_arrays(b / checkpoint)
    assert arrays_a.keys() == arrays_b.keys()
    for name in arrays_a:
        np.testing.assert_allclose(arrays_b[name], arrays_a[name], rtol=tolerance, atol=tolerance, err_msg=name)


@pytest.mark.parametrize("dtype", ["float64", "float32"])
def test_two_ranks_train_like_one_process_and_resume_in_one(tmp_path, dtype):
    data = small_text(tmp_path, CHARS)
    one, two, half, resumed = (tmp_path / name for name in ("one", "two", "half", "resumed"))
    train_in_process(["train", data, "--output-dir", one, *RUN, "--dtype", dtype])
    result = mpi_train(2, data, "--output-dir", two, *RUN, "--dtype", dtype)

    assert result.stdout.count("Training Configuration") == 1                       # rank 0 alone prints
    assert "batch 8 = 2 MPI processes x 4" in result.stdout
    assert str(load_checkpoint(two / "final_model.pt").dtype) == dtype
    assert_close_runs(one, two, TOLERANCE[dtype])
    # A 2-rank run's epoch-1 checkpoint goes on in a single process, to the same end. (It stops
    # there, so epoch 1 is its newest checkpoint: the one that keeps AdamW's moments.)
    mpi_train(2, data, "--output-dir", half, *RUN, "--dtype", dtype, "--max-steps", str(STEPS_PER_EPOCH))
    train_in_process(["train", data, "--resume-from", half / "checkpoint_epoch_1.pt", "--output-dir", resumed,
                      "--max-steps", "0"])
    assert_close_runs(one, resumed, TOLERANCE[dtype])


def test_two_ranks_resume_a_single_process_run(tmp_path):
    data = small_text(tmp_path, CHARS)
    one, half = tmp_path / "one", tmp_path / "half"
    train_in_process(["train", data, "--output-dir", one, *RUN])
    train_in_process(["train", data, "--output-dir", half, *RUN, "--max-steps", str(STEPS_PER_EPOCH)])
    mpi_train(2, data, "--resume-from", half / "checkpoint_epoch_1.pt", "--output-dir", tmp_path / "two", "--max-steps", "0")
    assert_close_runs(one, tmp_path / "two", TOLERANCE["float32"])


@pytest.mark.parametrize("argv, message", [
    (["train", "missing.txt"], "error: data file not found"),
    (["train", "d.txt", "--epochs", "3", "--epochs", "4"], "error: --epochs is given twice"),
])
def test_bad_input_is_reported_once_not_once_per_rank(tmp_path, argv, message):
    result = mpirun(2, "-m", "scratchlm", *argv)
    assert result.returncode == 2 and result.stderr.count(message) == 1, result.stderr


def test_batch_that_does_not_split_evenly_is_refused(tmp_path):
    data = small_text(tmp_path, CHARS)
    result = mpirun(2, "-m", "scratchlm", "train", data, "--output-dir", tmp_path / "out", *TINY[:-2],
                    "--batch-size", "7")
    assert result.returncode == 2
    assert "--batch-size 7 (the global batch) does not split evenly over 2 MPI processes" in result.stderr
    assert result.stderr.count("does not split evenly") == 1            # rank 0 alone says it
    assert not (tmp_path / "out").exists()


@pytest.mark.timeout(150)
@pytest.mark.parametrize("how", ["exit", "raise"])
def test_a_rank_that_dies_ends_the_job_instead_of_hanging(tmp_path, how):
    """Rank 1 fails at step 4 of a long run while rank 0 waits in the all-reduce: mpirun must end, non-zero."""
    data = small_text(tmp_path, CHARS)
    result = mpirun(2, REPO / "tests" / "mpi_rank_dies.py", how, "train", data, "--output-dir", tmp_path / "out",
                    *TINY, "--epochs", "1000", timeout=120)
    assert result.returncode == (7 if how == "exit" else 1), result.stderr[-3000:]
    if how == "raise":
        assert "rank 1 fails on purpose at step 3" in result.stderr
    assert not (tmp_path / "out" / "checkpoint_epoch_1.pt").exists()


def test_two_ranks_on_a_prepared_folder_train_like_one_process_on_the_text(tmp_path):
    from scratchlm.cli import main as cli

    data = small_text(tmp_path, CHARS)
    assert cli.main(["prepare", str(data), "--output", str(tmp_path / "ds"), "--quiet"]) == 0
    train_in_process(["train", data, "--output-dir", tmp_path / "one", *RUN])
    mpi_train(2, tmp_path / "ds", "--output-dir", tmp_path / "two", *RUN)
    assert_close_runs(tmp_path / "one", tmp_path / "two", TOLERANCE["float32"])
