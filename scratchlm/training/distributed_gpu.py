"""Adding CuPy gradient buffers up across MPI ranks: NCCL, CUDA-aware MPI, or via the host.

``SCRATCHLM_GPU_ALLREDUCE`` picks the way (``auto`` by default):

- ``nccl``: NCCL through CuPy (``cupy.cuda.nccl``). One communicator per run, built from a
  unique id that rank 0 draws and broadcasts over MPI; the all-reduce is queued on the
  current CUDA stream, in place, so it needs no synchronisation. Needs one GPU per rank:
  NCCL refuses two ranks on one GPU (``NCCL_ERROR_INVALID_USAGE``).
- ``mpi``: hand the device buffer to MPI itself. Only for a CUDA-aware MPI library (Open MPI
  built with CUDA or UCX); MPI reads the memory outside CUDA's stream order, so the stream
  is synchronised first. A library that is not CUDA-aware crashes on device pointers.
- ``host``: copy to host memory, ``Allreduce`` there, copy back. Works with any MPI.
- ``auto``: NCCL when CuPy has it and every rank has a GPU of its own, else ``host`` (more
  ranks on a machine than it has GPUs share them: ``mpirun -n 2`` on a one-GPU machine).

NCCL refuses ranks that share one GPU, hence the rule above. On a one-GPU machine,
tests/training/test_mpi.py runs ``host``; ``nccl`` needs two GPUs, and ``mpi`` needs a
CUDA-aware MPI.
It is imported only when a CuPy array is first all-reduced.
"""

from __future__ import annotations

import importlib
import os

import numpy as np

from scratchlm import backend
from scratchlm.errors import UserError
from scratchlm.limits import excerpt

WAYS = ("auto", "nccl", "mpi", "host")
NCCL_ID_SLOTS = 512                          # NCCL's unique id is 128 bytes; room to spare


def make_device_communicator(group):
    way = os.environ.get("SCRATCHLM_GPU_ALLREDUCE", "auto").strip().lower() or "auto"
    if way not in WAYS:
        raise UserError(f"SCRATCHLM_GPU_ALLREDUCE must be one of {', '.join(WAYS)}, got {excerpt(way)}")
    if way == "mpi":
        return MPIDirect(group)
    if way == "host":
        return HostStaged(group)
    nccl = _nccl_module()
    if nccl is None:
        if way == "nccl":
            raise UserError("SCRATCHLM_GPU_ALLREDUCE=nccl, but this CuPy has no NCCL: install NCCL "
                            "(pip install nvidia-nccl-cu12) or choose host or mpi")
        return HostStaged(group)
    shared = _ranks_sharing_a_gpu(group)                 # every rank takes part: a collective
    if shared:
        if way == "nccl":
            raise UserError(f"SCRATCHLM_GPU_ALLREDUCE=nccl needs one GPU per process, but {shared} of {group.size} "
                            "processes share a GPU with another: start at most as many processes per machine as it has GPUs, "
                            "or set SCRATCHLM_GPU_ALLREDUCE=host")
        return HostStaged(group)
    return NCCLAllreduce(group, nccl)


def _ranks_sharing_a_gpu(group) -> int:
    """How many ranks drive a GPU that another rank drives too (0: each has its own)."""
    import socket
    from collections import Counter

    cupy = backend.array_module_for("cuda")
    mine = (socket.gethostname(), cupy.cuda.runtime.deviceGetPCIBusId(cupy.cuda.Device().id))
    ranks_per_gpu = Counter(group.comm.allgather(mine))
    return sum(count for count in ranks_per_gpu.values() if count > 1)


def _nccl_module():
    try:
        nccl = importlib.import_module("cupy.cuda.nccl")
    except ImportError:
        return None
    return nccl if getattr(nccl, "available", True) else None


class HostStaged:
    """Device -> host copy, MPI all-reduce on the host, host -> device copy."""

    def __init__(self, group):
        self.group, self.host = group, None

    def allreduce_sum_(self, buffer) -> None:
        if self.host is None or self.host.shape != buffer.shape or self.host.dtype != buffer.dtype:
            self.host = np.empty(buffer.shape, dtype=buffer.dtype)                   # (P,) reused every step
        buffer.get(out=self.host)                                                # waits for the backward pass
        self.group.comm.Allreduce(self.group.MPI.IN_PLACE, self.host, op=self.group.MPI.SUM)
        buffer.set(self.host)


class MPIDirect:
    """CUDA-aware MPI: mpi4py passes the device pointer (``__cuda_array_interface__``) to MPI."""

    def __init__(self, group):
        self.group = group

    def allreduce_sum_(self, buffer) -> None:
        backend.synchronize(backend.get_array_module(buffer))                   # the gradients are written
        self.group.comm.Allreduce(self.group.MPI.IN_PLACE, buffer, op=self.group.MPI.SUM)


class NCCLAllreduce:
    """NCCL's in-place all-reduce on the current CUDA stream."""

    def __init__(self, group, nccl):
        self.nccl = nccl
        self.dtypes = {np.dtype(np.float32): nccl.NCCL_FLOAT32, np.dtype(np.float64): nccl.NCCL_FLOAT64}
        self.comm = nccl.NcclCommunicator(group.size, _shared_unique_id(group, nccl), group.rank)

    def allreduce_sum_(self, buffer) -> None:
        cupy = backend.get_array_module(buffer)
        stream = cupy.cuda.get_current_stream()
        self.comm.allReduce(buffer.data.ptr, buffer.data.ptr, buffer.size, self.dtypes[buffer.dtype],
                            self.nccl.NCCL_SUM, stream.ptr)


def _shared_unique_id(group, nccl):
    """Rank 0's NCCL unique id on every rank, sent as a buffer: [is_bytes, length, values...]."""
    packed = np.zeros(2 + NCCL_ID_SLOTS, dtype=np.int64)                          # (2 + S,)
    if group.rank == 0:
        uid = nccl.get_unique_id()                       # bytes in recent CuPy, a tuple of ints in older ones
        values = list(uid)
        packed[0], packed[1] = isinstance(uid, bytes), len(values)
        packed[2 : 2 + len(values)] = values
    group.comm.Bcast(packed, root=0)
    values = packed[2 : 2 + int(packed[1])]
    return bytes(values.astype(np.uint8)) if packed[0] else tuple(int(v) for v in values)
