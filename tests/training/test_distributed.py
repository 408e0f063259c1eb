"""The single-process side of scale-out (no mpirun needed): detection, errors, sharding, --dtype."""

from __future__ import annotations

import os
import subprocess
import sys

import numpy as np
import pytest
from train_helpers import REPO, TINY, parse, small_text, train_in_process

from scratchlm.errors import OptionError
from scratchlm.training import distributed
from scratchlm.training.job import check_processes, prepare
from scratchlm.training.loop import validation_loss

MPI_VARIABLES = (*distributed.SIZE_VARIABLES, *distributed.RANK_VARIABLES)


@pytest.fixture
def no_launcher(monkeypatch):
    for name in MPI_VARIABLES:
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setattr(distributed, "_group", None)


class Rank(distributed.SingleProcess):
    """Rank ``rank`` of ``size``, alone in this process: its sums are its own values."""

    def __init__(self, rank: int, size: int):
        self.rank, self.size, self.summed = rank, size, None

    def sum(self, *values):
        self.summed = values
        return super().sum(*values)


@pytest.mark.parametrize("variables, expected", [
    ({}, False),
    ({"OMPI_COMM_WORLD_SIZE": "2", "OMPI_COMM_WORLD_RANK": "1"}, True),
    ({"OMPI_COMM_WORLD_SIZE": "1", "OMPI_COMM_WORLD_RANK": "0"}, False),    # mpirun -n 1: no MPI needed
    ({"PMI_SIZE": "4", "PMI_RANK": "0"}, True),                              # MPICH, Intel MPI
    ({"PMIX_RANK": "0"}, True),                                              # PMIx names no size
])
def test_an_mpi_launch_is_read_from_the_environment(no_launcher, monkeypatch, variables, expected):
    for name, value in variables.items():
        monkeypatch.setenv(name, value)
    assert distributed.launched_by_mpi() is expected


def test_without_a_launcher_training_never_imports_mpi4py(tmp_path):
    data = small_text(tmp_path, 1500)
    env = {k: v for k, v in os.environ.items() if k not in MPI_VARIABLES}
    code = ("import sys; from scratchlm.cli.main import main; "
            f"code = main(['train', {str(data)!r}, '--output-dir', {str(tmp_path / 'out')!r}, "
            f"{', '.join(map(repr, TINY))}, '--max-steps', '2', '--quiet']); "
            "print(code, 'mpi4py' in sys.modules)")
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120, env=env)
    assert result.stdout.split()[-2:] == ["0", "False"], result.stderr


def test_launched_without_mpi4py_is_a_clear_error(no_launcher, monkeypatch):
    monkeypatch.setenv("OMPI_COMM_WORLD_SIZE", "2")
    monkeypatch.setitem(sys.modules, "mpi4py", None)                          # import mpi4py -> ImportError
    with pytest.raises(distributed.MPIUnavailable, match=r"mpi4py is not installed: pip install -e '\.\[mpi\]'"):
        distributed.current()


def test_launched_without_an_mpi_library_exits_2_with_the_fix(tmp_path):
    """mpi4py's wheel raises RuntimeError (not ImportError) when it finds no MPI library."""
    fake = tmp_path / "fake" / "mpi4py"
    fake.mkdir(parents=True)
    (fake / "__init__.py").write_text("")
    (fake / "MPI.py").write_text("raise RuntimeError('cannot load MPI library')\n")
    env = dict(os.environ, OMPI_COMM_WORLD_SIZE="2", OMPI_COMM_WORLD_RANK="0", PYTHONPATH=str(fake.parent))
    result = subprocess.run([sys.executable, "-m", "scratchlm", "train", str(small_text(tmp_path, 1500)),
                             "--output-dir", str(tmp_path / "out"), *TINY], capture_output=True, text=True,
                            timeout=120, env=env, cwd=REPO)
    assert result.returncode == 2
    assert "cannot load an MPI library (cannot load MPI library): pip install -e '.[mpi]'" in result.stderr
    assert "Traceback" not in result.stderr and not (tmp_path / "out").exists()


@pytest.mark.parametrize("rows, size", [(8, 2), (5, 2), (12, 3), (1, 2)])
def test_shards_cover_the_batch_once_in_order(rows, size):
    bounds = [Rank(r, size).shard(rows) for r in range(size)]
    assert bounds[0][0] == 0 and bounds[-1][1] == rows
    assert all(a[1] == b[0] for a, b in zip(bounds, bounds[1:]))
    assert max(b - a for a, b in bounds) - min(b - a for a, b in bounds) <= 1


def test_validation_batches_dealt_over_ranks_add_up_to_one_process(tmp_path):
    data = small_text(tmp_path, 3000)
    settings, _, _ = parse(["train", data, "--output-dir", tmp_path / "out", *TINY, "--dtype", "float64"])
    job = prepare(settings)
    whole = validation_loss(job.model, job.val_ids, job.window, 4)               # 17 windows + a tail: 6 batches
    ranks = [Rank(r, 4) for r in range(4)]
    for rank in ranks:
        validation_loss(job.model, job.val_ids, job.window, 4, rank)
    total, count = np.sum([rank.summed for rank in ranks], axis=0)
    starts = (len(job.val_ids) + job.window - 1) // job.window                   # one per window, never predicted
    assert count == len(job.val_ids) - starts
    assert total / count == pytest.approx(whole, rel=1e-13)
    assert all(rank.summed[1] > 0 for rank in ranks)


def test_batch_must_split_evenly_over_the_processes(tmp_path):
    settings, _, _ = parse(["train", small_text(tmp_path), *TINY[:-2], "--batch-size", "12", "--grad-accum", "4"])
    check_processes(settings, 1)
    check_processes(settings, 3)                                                 # 4 rows each, 4 micro-batches
    with pytest.raises(OptionError, match=r"--batch-size 12 \(the global batch\) does not split evenly over 5 MPI "
                                          r"processes: use a multiple of 5 \(e.g. 15\) or start 4 processes"):
        check_processes(settings, 5)
    with pytest.raises(OptionError, match=r"--grad-accum 4 is more than the 2 sequences each of the 6 MPI processes"):
        check_processes(settings, 6)


def test_dtype_option_trains_in_float64_and_is_recorded(tmp_path):
    data = small_text(tmp_path, 1500)
    train_in_process(["train", data, "--output-dir", tmp_path / "out", *TINY, "--max-steps", "2", "--dtype", "float64"])
    from scratchlm.checkpoint import load_checkpoint

    ckpt = load_checkpoint(tmp_path / "out" / "final_model.pt")
    assert ckpt.dtype == "float64" and ckpt.train_state["settings"]["dtype"] == "float64"
    assert ckpt.weights["wte.weight"].dtype == np.float64
    with pytest.raises(OptionError, match="--dtype must be one of float32, float64, got 'float16'"):
        parse(["train", data, "--dtype", "float16"])


# ---- which GPU all-reduce a run gets (the decision alone; the GPU paths need GPUs) ------------
class FakeCupy:
    """Just enough of cupy for ``_ranks_sharing_a_gpu``: this rank's GPU is ``bus``."""

    def __init__(self, bus: str):
        runtime = type("Runtime", (), {"deviceGetPCIBusId": staticmethod(lambda device_id: bus)})
        device = type("Device", (), {"id": 0})
        self.cuda = type("Cuda", (), {"runtime": runtime, "Device": device})


class Ranks:
    """A group whose allgather hands back what every rank would have sent."""

    def __init__(self, gpus):
        self.gpus, self.rank, self.size = gpus, 0, len(gpus)
        self.comm = self

    def allgather(self, mine):
        return [(mine[0], gpu) for gpu in self.gpus]


@pytest.mark.parametrize("gpus, way, expected", [
    (["0:1", "0:2"], "auto", "NCCLAllreduce"),
    (["0:1", "0:1"], "auto", "HostStaged"),          # two ranks, one GPU: NCCL would refuse
    (["0:1", "0:1", "0:2"], "nccl", "refused"),
    (["0:1", "0:1"], "host", "HostStaged"),
])
def test_ranks_sharing_a_gpu_add_up_on_the_host(monkeypatch, gpus, way, expected):
    from scratchlm import backend
    from scratchlm.errors import UserError
    from scratchlm.training import distributed_gpu

    monkeypatch.setenv("SCRATCHLM_GPU_ALLREDUCE", way)
    monkeypatch.setattr(backend, "array_module_for", lambda device: FakeCupy(gpus[0]))
    monkeypatch.setattr(distributed_gpu, "_nccl_module", lambda: object())
    monkeypatch.setattr(distributed_gpu, "NCCLAllreduce", lambda group, nccl: "NCCLAllreduce")
    if expected == "refused":
        with pytest.raises(UserError, match="2 of 3 processes share a GPU.*SCRATCHLM_GPU_ALLREDUCE=host"):
            distributed_gpu.make_device_communicator(Ranks(gpus))
        return
    made = distributed_gpu.make_device_communicator(Ranks(gpus))
    assert (made if isinstance(made, str) else type(made).__name__) == expected
