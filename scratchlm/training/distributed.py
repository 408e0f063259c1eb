"""Data-parallel training across processes and machines, launched by MPI.

``mpirun -n N scratchlm train DATA ...`` starts N copies of the same command. Each copy
(a *rank*) holds the whole model, runs forward and backward on its own rows of every
global batch, and the ranks add their gradients up with one in-place ``Allreduce`` on
the optimizer's flat gradient buffer. Each rank seeds backward with its rows' share of
the *global* batch (rows / B), so the sum is the gradient of the whole batch's mean loss
(up to rounding), even when the last batch of an epoch splits unevenly: a sum of
share-weighted gradients rather than a mean of per-rank means, which would weight the rows
of a short shard more. After that every rank clips and steps AdamW on the same numbers, so
the weights stay identical everywhere.

``current()`` returns the process group of this process, created once:

- ``SingleProcess`` when no MPI launcher started us (no ``OMPI_COMM_WORLD_SIZE``,
  ``PMI_SIZE``, ``PMIX_RANK``... in the environment, or a world of one): every call is a
  no-op, and mpi4py is never imported (importing it costs ~0.4 s);
- ``MPIGroup`` otherwise, over ``MPI.COMM_WORLD``. Buffers are passed to MPI directly
  (the uppercase, buffer-based calls: no pickling). CuPy arrays go through NCCL, a
  CUDA-aware MPI or a host copy (``distributed_gpu.py``, ``SCRATCHLM_GPU_ALLREDUCE``).

An MPI process that exits with an error while the others wait in a collective leaves
them hanging (``MPI_Finalize`` blocks), so ``abort(code)`` ends the whole job instead.
"""

from __future__ import annotations

import os
import sys
import time

import numpy as np

from scratchlm import backend
from scratchlm.errors import MPIUnavailable

# Set by the MPI launchers in each process they start: Open MPI, MPICH / Intel MPI (Hydra), PMIx, MVAPICH.
SIZE_VARIABLES = ("OMPI_COMM_WORLD_SIZE", "PMI_SIZE", "MV2_COMM_WORLD_SIZE")
RANK_VARIABLES = ("OMPI_COMM_WORLD_RANK", "PMI_RANK", "PMIX_RANK", "MV2_COMM_WORLD_RANK")
LOCAL_SIZE_VARIABLES = ("OMPI_COMM_WORLD_LOCAL_SIZE", "MPI_LOCALNRANKS", "MV2_COMM_WORLD_LOCAL_SIZE")
LOCAL_RANK_VARIABLES = ("OMPI_COMM_WORLD_LOCAL_RANK", "MPI_LOCALRANKID", "MV2_COMM_WORLD_LOCAL_RANK")
INSTALL_HINT = ("pip install -e '.[mpi]' (or pip install mpi4py) and an MPI library such as Open MPI "
                "(apt-get install openmpi-bin)")


def _env_int(names) -> int | None:
    for name in names:
        value = os.environ.get(name, "").strip()
        if value.isdigit():
            return int(value)
    return None


def launched_by_mpi() -> bool:
    """True when an MPI launcher started this process as one of several (read from the environment only)."""
    size = _env_int(SIZE_VARIABLES)
    if size is not None:
        return size > 1
    return _env_int(RANK_VARIABLES) is not None          # a launcher that names the rank but not the size


def launched_rank() -> int:
    """This process's rank as the MPI launcher numbered it (0 without one), from the environment only."""
    return (_env_int(RANK_VARIABLES) or 0) if launched_by_mpi() else 0


class SingleProcess:
    """The group of one: training as if MPI did not exist."""

    rank, size, local_rank = 0, 1, 0
    comm_s = 0.0                       # seconds spent in gradient all-reduces (for benchmarks)

    @property
    def is_main(self) -> bool:
        """Rank 0 prints, logs and writes checkpoints."""
        return self.rank == 0

    def shard(self, rows: int) -> tuple[int, int]:
        """This rank's contiguous rows [start, stop) of a global batch of ``rows`` (nearly equal parts)."""
        return round(self.rank * rows / self.size), round((self.rank + 1) * rows / self.size)

    def allreduce_sum_(self, buffer):
        """Add ``buffer`` up over all ranks, in place (every rank gets the sum)."""
        return buffer

    def broadcast_(self, buffer):
        """Overwrite ``buffer`` on every rank with rank 0's, in place."""
        return buffer

    def sum(self, *values: float) -> tuple[float, ...]:
        """Sum each host scalar over all ranks (one small all-reduce for all of them)."""
        return tuple(float(v) for v in values)

    def barrier(self) -> None: ...

    def decorrelate_(self, rng: np.random.Generator) -> None:
        """Move ``rng`` to a stream of its own on each rank (rank 0 keeps it as it is)."""

    def use_local_gpu(self, device: str) -> None:
        """On a GPU run, make this rank use GPU number local_rank (mod the GPUs on its machine)."""

    def abort(self, code: int) -> None:
        """End every rank of the job with exit code ``code`` (a no-op for a single process)."""


class MPIGroup(SingleProcess):
    """The ranks of MPI_COMM_WORLD."""

    def __init__(self, MPI):
        self.MPI, self.comm = MPI, MPI.COMM_WORLD
        self.rank, self.size = self.comm.Get_rank(), self.comm.Get_size()
        self.local_rank = _env_int(LOCAL_RANK_VARIABLES) or 0
        self.comm_s = 0.0
        self._device_comm = None

    def allreduce_sum_(self, buffer):
        start = time.perf_counter()
        if backend.is_cuda_array(buffer):
            self._device().allreduce_sum_(buffer)
        else:
            self.comm.Allreduce(self.MPI.IN_PLACE, buffer, op=self.MPI.SUM)
        self.comm_s += time.perf_counter() - start
        return buffer

    def broadcast_(self, buffer):
        if backend.is_cuda_array(buffer):                   # once per run: a host round trip is fine
            host = backend.to_numpy(buffer).copy()
            self.comm.Bcast(host, root=0)
            buffer[...] = backend.to_device(host, "cuda")
        else:
            self.comm.Bcast(buffer, root=0)
        return buffer

    def sum(self, *values: float) -> tuple[float, ...]:
        totals = np.array([float(v) for v in values], dtype=np.float64)          # (K,) GPU scalars too
        self.comm.Allreduce(self.MPI.IN_PLACE, totals, op=self.MPI.SUM)
        return tuple(float(v) for v in totals)

    def barrier(self) -> None:
        self.comm.Barrier()

    def decorrelate_(self, rng: np.random.Generator) -> None:
        if self.rank:                                         # 2^127 draws apart: the streams never meet
            rng.bit_generator.state = rng.bit_generator.jumped(self.rank).state

    def use_local_gpu(self, device: str) -> None:
        if backend.resolve_device(device) == "cuda":
            cupy = backend.array_module_for("cuda")
            cupy.cuda.Device(self.local_rank % cupy.cuda.runtime.getDeviceCount()).use()

    def abort(self, code: int) -> None:
        sys.stdout.flush()
        sys.stderr.flush()
        self.comm.Abort(code)

    def _device(self):
        if self._device_comm is None:
            from scratchlm.training.distributed_gpu import make_device_communicator

            self._device_comm = make_device_communicator(self)
        return self._device_comm


_group: SingleProcess | None = None


def current() -> SingleProcess:
    """This process's group (created on the first call; under MPI this initialises MPI)."""
    global _group
    if _group is None:
        _group = MPIGroup(_import_mpi()) if launched_by_mpi() else SingleProcess()
        if _group.size > 1:
            _share_cores(_group)
    return _group


def active() -> SingleProcess | None:
    """The group if ``current()`` has created it, else None (never starts MPI)."""
    return _group


def _import_mpi():
    try:
        from mpi4py import MPI
    except ImportError as exc:
        raise MPIUnavailable(f"this process was started by an MPI launcher (mpirun), but mpi4py is not "
                             f"installed: {INSTALL_HINT}") from exc
    except RuntimeError as exc:                 # mpi4py's binary wheel found no MPI library to load
        raise MPIUnavailable(f"this process was started by an MPI launcher (mpirun), but mpi4py cannot load "
                             f"an MPI library ({exc}): {INSTALL_HINT}") from exc
    return MPI


def _share_cores(group: SingleProcess) -> None:
    """Numba's default thread count is every core this process may use. When mpirun binds each
    rank to cores, that is right; when it does not (``--bind-to none``, ``--oversubscribe``), the
    ranks on a machine share all its cores, so each gets its part (NUMBA_NUM_THREADS, if set, wins)."""
    if "NUMBA_NUM_THREADS" in os.environ:
        return
    cores = len(os.sched_getaffinity(0))
    bound = cores < (os.cpu_count() or cores)
    threads = cores if bound else max(1, cores // (_env_int(LOCAL_SIZE_VARIABLES) or 1))
    if "numba" in sys.modules:
        import numba

        from scratchlm.kernels.numba_tools import choose_wait_policy

        choose_wait_policy()                     # before set_num_threads starts OpenMP's threads
        numba.set_num_threads(min(threads, numba.config.NUMBA_NUM_THREADS))
    else:
        os.environ["NUMBA_NUM_THREADS"] = str(threads)
