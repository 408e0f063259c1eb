"""Embedding lookup: forward is a gather, backward a scatter-add.

Shapes: weight (V, C); ids (B, T) integers in [0, V).

Forward:   out[b, t, :] = weight[ids[b, t], :]               (B, T, C)
Backward:  dweight[v, :] = sum over (b, t) with ids[b, t] == v of dout[b, t, :]

The backward is the one subtle part: the same id appears many times in a batch
(every "e"), and each occurrence must add its gradient. ``dweight[ids] += dout``
would keep only one of them; ``np.add.at`` accumulates them all.

Versions: 0 the NumPy reference; 1 Numba (forward: rows over the cores; backward:
blocks of columns over the cores, so repeated ids never race); CUDA (CuPy arrays),
forward one thread block per token, backward one per table row, walking the ids in
order so every run adds in the same order. Run ``python -m scratchlm.kernels.embedding``
to check and time them.
"""

from __future__ import annotations

import numpy as np

from ._cuda import cupy_module, launch, row_threads
from ._lesson import Kernel, run_lesson
from .dispatch import use_cuda, use_numba
from .numba_tools import lazy_njit, prange


# ---- version 0: the NumPy reference ------------------------------------------------
def embedding_forward_reference(weight, ids):
    """weight (V, C), ids (...) -> (..., C)."""
    return weight[ids]


def embedding_backward_reference(dout, ids, vocab_size):
    """dout (..., C), ids (...) -> dweight (V, C); repeated ids accumulate."""
    from scratchlm.backend import get_array_module

    xp = get_array_module(dout)
    c = dout.shape[-1]
    dweight = xp.zeros((vocab_size, c), dtype=dout.dtype)
    xp.add.at(dweight, ids.reshape(-1), dout.reshape(-1, c))
    return dweight


# ---- version 1: Numba, rows (forward) and column blocks (backward) over the cores -------
# Forward: each loop step copies one row of the table; rows go to different cores.
@lazy_njit(parallel=True)
def _embedding_forward_kernel(weight, ids, out):
    # weight: (V, C); ids: (N,); out: (N, C)
    N, C = out.shape
    for n in prange(N):
        row = ids[n]
        for i in range(C):
            out[n, i] = weight[row, i]


# Backward: parallel over rows of dout would race (two threads adding into the same
# dweight row when their tokens repeat). Instead each loop step owns a block of columns
# (16 floats, one cache line of float32) and walks every row of dout for it: every
# dweight element is written by exactly one thread, and in the same order as np.add.at.
COLUMN_BLOCK = 16


@lazy_njit(parallel=True)
def _embedding_backward_kernel(dout, ids, dweight):
    # dout: (N, C); ids: (N,); dweight: (V, C) zeros, accumulated into
    N, C = dout.shape
    n_blocks = (C + COLUMN_BLOCK - 1) // COLUMN_BLOCK
    for block in prange(n_blocks):
        start = block * COLUMN_BLOCK
        stop = min(C, start + COLUMN_BLOCK)
        for n in range(N):
            row = ids[n]
            for i in range(start, stop):
                dweight[row, i] += dout[n, i]


def embedding_forward_v1(weight, ids):
    weight = np.ascontiguousarray(weight)
    flat_ids = np.ascontiguousarray(ids).reshape(-1)                        # (N,)
    out = np.empty((flat_ids.size, weight.shape[1]), dtype=weight.dtype)   # (N, C)
    _embedding_forward_kernel(weight, flat_ids, out)
    return out.reshape(*np.shape(ids), weight.shape[1])                    # (..., C)


def embedding_backward_v1(dout, ids, vocab_size):
    c = dout.shape[-1]
    flat_dout = np.ascontiguousarray(dout).reshape(-1, c)                   # (N, C)
    dweight = np.zeros((vocab_size, c), dtype=dout.dtype)                   # (V, C)
    _embedding_backward_kernel(flat_dout, np.ascontiguousarray(ids).reshape(-1), dweight)
    return dweight


def _ids_in_range(ids, vocab_size):
    """The compiled versions do not check bounds; ids outside [0, V) go to the reference,
    which raises IndexError (or wraps negative ids, as NumPy indexing does)."""
    return ids.size == 0 or (int(ids.min()) >= 0 and int(ids.max()) < vocab_size)


# ---- CUDA version (CuPy arrays) ------------------------------------------------------
# Forward: block n copies row ids[n] of the table, its threads sharing the C columns.
# Backward: row v of dweight belongs to ceil(C / 128) blocks, 128 columns each (so a small
# vocabulary still fills the GPU); each thread walks all N ids in order, adding the
# elements of dout whose id is v. Nothing races and the additions run
# in one fixed order, so a GPU run gives the same bits every time (a resumed run matches an
# unbroken one). The first version let every token's thread ``atomicAdd`` into its row:
# just as correct, but the additions landed in whatever order the hardware chose, and
# float32 results changed in the last bits from run to run. The price is V * N id reads,
# each a broadcast from the cache, fine for a character vocabulary (tens to hundreds of
# rows). A word-level vocabulary would sort the ids first.
# Ids are not checked against the vocabulary (that would need a copy to the host): an id
# outside [0, V) wraps around, as CuPy's own indexing does, and never reads past the table.
EMBEDDING_CUDA_SOURCE = r"""
__device__ long long table_row(long long id, long long V) {
    id %= V;
    return id < 0 ? id + V : id;
}

extern "C" __global__ void embedding_forward(const real* weight, const long long* ids, long long V,
                                             int C, real* out) {
    const real* row = weight + table_row(ids[blockIdx.x], V) * C;     // the table's row
    real* out_row = out + (long long)blockIdx.x * C;                  // this token's output
    for (int i = threadIdx.x; i < C; i += blockDim.x) out_row[i] = row[i];
}

extern "C" __global__ void embedding_backward(const real* dout, const long long* ids, long long N,
                                              long long V, int C, int column_blocks, real* dweight) {
    const long long v = blockIdx.x / column_blocks;                    // this block's table row
    const int first = (blockIdx.x % column_blocks) * blockDim.x;       // and its first column
    for (int i = first + threadIdx.x; i < C; i += column_blocks * blockDim.x) {
        real sum = 0;
        for (long long n = 0; n < N; ++n) {                            // every token, in order
            long long id = ids[n];                                     // (the same for the whole block)
            if (id < 0 || id >= V) id = table_row(id, V);
            if (id == v) sum += dout[n * C + i];
        }
        dweight[v * C + i] = sum;
    }
}
"""


def _flat_ids_cuda(ids):
    """ids (any integer dtype, on the host or the GPU) -> contiguous int64 (N,) on the GPU."""
    cp = cupy_module()
    return cp.ascontiguousarray(cp.asarray(ids).reshape(-1), dtype=cp.int64)


def embedding_forward_cuda(weight, ids):
    cp = cupy_module()
    weight = cp.ascontiguousarray(weight)                                   # (V, C)
    flat_ids = _flat_ids_cuda(ids)                                          # (N,)
    V, C = weight.shape
    out = cp.empty((flat_ids.size, C), dtype=weight.dtype)                  # (N, C)
    if flat_ids.size:
        launch(EMBEDDING_CUDA_SOURCE, "embedding_forward", weight.dtype, flat_ids.size, row_threads(C),
               (weight, flat_ids, np.int64(V), np.int32(C), out))
    return out.reshape(*np.shape(ids), C)                                   # (..., C)


BACKWARD_THREADS = 128       # columns per block in the backward


def embedding_backward_cuda(dout, ids, vocab_size):
    cp = cupy_module()
    C = dout.shape[-1]
    flat_dout = cp.ascontiguousarray(dout).reshape(-1, C)                   # (N, C)
    flat_ids = _flat_ids_cuda(ids)                                          # (N,)
    dweight = cp.empty((vocab_size, C), dtype=dout.dtype)                   # (V, C)
    if dweight.size:
        threads = min(BACKWARD_THREADS, row_threads(C))
        column_blocks = -(-C // threads)                                    # blocks per table row
        launch(EMBEDDING_CUDA_SOURCE, "embedding_backward", dout.dtype, vocab_size * column_blocks, threads,
               (flat_dout, flat_ids, np.int64(flat_ids.size), np.int64(vocab_size), np.int32(C),
                np.int32(column_blocks), dweight))
    return dweight


# ---- dispatch ----------------------------------------------------------------------
def embedding_forward(weight, ids):
    if use_cuda(weight) and weight.dtype in (np.float32, np.float64) and weight.shape[0] > 0:
        return embedding_forward_cuda(weight, ids)
    if (use_numba(weight, ids) and weight.dtype in (np.float32, np.float64)
            and _ids_in_range(ids, weight.shape[0])):
        return embedding_forward_v1(weight, ids)
    return embedding_forward_reference(weight, ids)


def embedding_backward(dout, ids, vocab_size):
    if use_cuda(dout) and dout.dtype in (np.float32, np.float64) and vocab_size > 0:
        return embedding_backward_cuda(dout, ids, vocab_size)
    if (use_numba(dout, ids) and dout.dtype in (np.float32, np.float64)
            and _ids_in_range(ids, vocab_size)):
        return embedding_backward_v1(dout, ids, vocab_size)
    return embedding_backward_reference(dout, ids, vocab_size)


# ---- the declaration: what __main__, the tests and the benchmarks read ------------------
def example_forward(dtype, rng, shape):
    """The token table (V, C) and a batch of ids (B, T), every id repeated many times."""
    weight = rng.standard_normal((shape.vocab, shape.d_model)).astype(dtype)
    ids = rng.integers(0, shape.vocab, size=(shape.batch, shape.seq_len))
    return (weight, ids), 2 * shape.rows * shape.d_model * weight.itemsize + ids.nbytes


def example_backward(dtype, rng, shape):
    (weight, ids), _ = example_forward(dtype, rng, shape)
    dout = rng.standard_normal((*ids.shape, shape.d_model)).astype(dtype)
    return (dout, ids, shape.vocab), (shape.rows + shape.vocab) * shape.d_model * weight.itemsize + ids.nbytes


KERNELS = (
    Kernel("embedding_forward", embedding_forward,
           {"reference": embedding_forward_reference, "numba v1": embedding_forward_v1,
            "cuda": embedding_forward_cuda}, example_forward),
    Kernel("embedding_backward", embedding_backward,
           {"reference": embedding_backward_reference, "numba v1": embedding_backward_v1,
            "cuda": embedding_backward_cuda}, example_backward),
)


if __name__ == "__main__":
    run_lesson(KERNELS)
