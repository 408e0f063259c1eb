"""RMS normalisation (LayerNorm without centring or bias), forward and backward.

Math, per row x of C features (x: (N, C)):

    rstd = 1 / sqrt((1/C) sum_i x_i^2 + eps)
    xhat = x * rstd
    y    = xhat * w                          w: (C,)

Backward, given dy (N, C):

    dw = sum over rows of dy * xhat
    g  = dy * w
    dx = rstd * (g - xhat * mean(g * xhat))  (mean over the row)

Cached from forward: rstd, (N,).

Versions: 0 the NumPy reference; 1 Numba, rows over the cores; CUDA (CuPy arrays), one
thread block per row. Both are built like layernorm.py's (read that one first).
Run ``python -m scratchlm.kernels.rmsnorm`` to check and time them.
"""

from __future__ import annotations

import numpy as np

from ._cuda import PART_BLOCKS, cuda_rows_ok, cupy_module, launch, row_threads
from ._lesson import Kernel, run_lesson
from .dispatch import use_cuda, use_numba
from .numba_tools import REORDER_SUMS, chunk_bounds, lazy_njit, prange, row_chunks


# ---- version 0: the NumPy reference ------------------------------------------------
def rmsnorm_forward_reference(x, w, eps=1e-5):
    """x: (N, C) -> y (N, C), rstd (N,)."""
    rstd = 1.0 / ((x * x).mean(axis=-1) + eps) ** 0.5       # (N,)
    y = x * rstd[:, None] * w                                # (N, C)
    return y, rstd.astype(x.dtype)


def rmsnorm_backward_reference(dy, x, w, rstd):
    """dy: (N, C) -> dx (N, C), dw (C,)."""
    xhat = x * rstd[:, None]                                 # (N, C)
    dw = (dy * xhat).sum(axis=0)                             # (C,)
    g = dy * w                                               # (N, C)
    dx = rstd[:, None] * (g - xhat * (g * xhat).mean(axis=-1, keepdims=True))
    return dx, dw


# ---- version 1: Numba, one row per loop step, rows spread over the cores ----------------
# Faster than the reference for the reasons layernorm.py's version 1 gives: rows stay in
# cache, no (N, C) temporaries, and REORDER_SUMS lets the row sums use SIMD lanes.
@lazy_njit(parallel=True, fastmath=REORDER_SUMS)
def _rmsnorm_forward_kernel(x, w, eps, y, rstd):
    # x, y: (N, C); w: (C,); rstd: (N,) written here
    N, C = x.shape
    for n in prange(N):
        squares = 0.0
        for i in range(C):
            squares += x[n, i] * x[n, i]
        rstd[n] = 1.0 / np.sqrt(squares / C + eps)
        r = rstd[n]                             # read back in x's dtype: the loop stays float32
        for i in range(C):
            y[n, i] = x[n, i] * r * w[i]


@lazy_njit(parallel=True, fastmath=REORDER_SUMS)
def _rmsnorm_backward_kernel(dy, x, w, rstd, dx, dw_parts):
    # dy, x, dx: (N, C); w: (C,); rstd: (N,); dw_parts: (chunks, C) zeros.
    # Chunk k of the rows sums its dw into dw_parts[k] (race-free, as in layernorm.py).
    N, C = x.shape
    n_chunks = dw_parts.shape[0]
    for k in prange(n_chunks):
        first, end = chunk_bounds(k, N, n_chunks)
        for n in range(first, end):
            r = rstd[n]
            g_xhat_total = 0.0
            for i in range(C):
                xhat = x[n, i] * r
                g_xhat_total += dy[n, i] * w[i] * xhat
                dw_parts[k, i] += dy[n, i] * xhat
            g_xhat_mean = x.dtype.type(g_xhat_total / C)
            for i in range(C):
                dx[n, i] = r * (dy[n, i] * w[i] - x[n, i] * r * g_xhat_mean)


def rmsnorm_forward_v1(x, w, eps=1e-5):
    x, w = (np.ascontiguousarray(a, dtype=x.dtype) for a in (x, w))
    y = np.empty_like(x)                                    # (N, C)
    rstd = np.empty(x.shape[0], dtype=x.dtype)              # (N,)
    _rmsnorm_forward_kernel(x, w, x.dtype.type(eps), y, rstd)
    return y, rstd


def rmsnorm_backward_v1(dy, x, w, rstd):
    dy, x, w, rstd = (np.ascontiguousarray(a, dtype=x.dtype) for a in (dy, x, w, rstd))
    dx = np.empty_like(x)                                   # (N, C)
    dw_parts = np.zeros((row_chunks(x.shape[0]), x.shape[1]))   # (chunks, C) float64
    _rmsnorm_backward_kernel(dy, x, w, rstd, dx, dw_parts)
    return dx, dw_parts.sum(axis=0).astype(x.dtype)


# ---- CUDA version (CuPy arrays): one thread block per row ----------------------------
# layernorm.py's CUDA version without the mean: one block_sum per row forward, one backward.
RMSNORM_CUDA_SOURCE = r"""
extern "C" __global__ void rmsnorm_forward(const real* x, const real* w, real eps, int C,
                                           real* y, real* rstd) {
    const long long row = (long long)blockIdx.x * C;            // x[row + i]: this block's row
    real squares = 0;
    for (int i = threadIdx.x; i < C; i += blockDim.x) squares += x[row + i] * x[row + i];
    const real r = real(1) / sqrt(block_sum(squares) / C + eps);
    if (threadIdx.x == 0) rstd[blockIdx.x] = r;
    for (int i = threadIdx.x; i < C; i += blockDim.x) y[row + i] = x[row + i] * r * w[i];
}

extern "C" __global__ void rmsnorm_backward(const real* dy, const real* x, const real* w,
                                            const real* rstd, int N, int C, real* dx, real* dw_parts) {
    real* dw_mine = dw_parts + (long long)blockIdx.x * C;      // this block's row of the parts
    for (int i = threadIdx.x; i < C; i += blockDim.x) dw_mine[i] = 0;
    for (int n = blockIdx.x; n < N; n += gridDim.x) {
        const long long row = (long long)n * C;
        const real r = rstd[n];
        real g_xhat_total = 0;
        for (int i = threadIdx.x; i < C; i += blockDim.x) g_xhat_total += dy[row + i] * w[i] * (x[row + i] * r);
        const real g_xhat_mean = block_sum(g_xhat_total) / C;
        for (int i = threadIdx.x; i < C; i += blockDim.x) {
            const real xhat = x[row + i] * r;
            dx[row + i] = r * (dy[row + i] * w[i] - xhat * g_xhat_mean);
            dw_mine[i] += dy[row + i] * xhat;                   // thread i alone owns column i
        }
    }
}
"""


def rmsnorm_forward_cuda(x, w, eps=1e-5):
    cp = cupy_module()
    x, w = (cp.ascontiguousarray(a, dtype=x.dtype) for a in (x, w))
    N, C = x.shape
    y = cp.empty_like(x)                                    # (N, C)
    rstd = cp.empty(N, dtype=x.dtype)                       # (N,)
    launch(RMSNORM_CUDA_SOURCE, "rmsnorm_forward", x.dtype, N, row_threads(C),
           (x, w, x.dtype.type(eps), np.int32(C), y, rstd))
    return y, rstd


def rmsnorm_backward_cuda(dy, x, w, rstd):
    cp = cupy_module()
    dy, x, w, rstd = (cp.ascontiguousarray(a, dtype=x.dtype) for a in (dy, x, w, rstd))
    N, C = x.shape
    blocks = min(N, PART_BLOCKS)
    dx = cp.empty_like(x)                                   # (N, C)
    dw_parts = cp.empty((blocks, C), dtype=x.dtype)         # (blocks, C), zeroed by the kernel
    launch(RMSNORM_CUDA_SOURCE, "rmsnorm_backward", x.dtype, blocks, row_threads(C),
           (dy, x, w, rstd, np.int32(N), np.int32(C), dx, dw_parts))
    return dx, dw_parts.sum(axis=0)


# ---- dispatch ----------------------------------------------------------------------
def rmsnorm_forward(x, w, eps=1e-5):
    if use_cuda(x, w) and cuda_rows_ok(x):
        return rmsnorm_forward_cuda(x, w, eps)
    if use_numba(x, w) and x.dtype in (np.float32, np.float64):
        return rmsnorm_forward_v1(x, w, eps)
    return rmsnorm_forward_reference(x, w, eps)


def rmsnorm_backward(dy, x, w, rstd):
    if use_cuda(dy, x, w, rstd) and cuda_rows_ok(x):
        return rmsnorm_backward_cuda(dy, x, w, rstd)
    if use_numba(dy, x, w, rstd) and x.dtype in (np.float32, np.float64):
        return rmsnorm_backward_v1(dy, x, w, rstd)
    return rmsnorm_backward_reference(dy, x, w, rstd)


# ---- the declaration: what __main__, the tests and the benchmarks read ------------------
def example_forward(dtype, rng, shape):
    """x (N, C), w (C,) at a configuration's shape; the bytes one forward moves."""
    N, C = shape.rows, shape.d_model
    x, w = rng.standard_normal((N, C)).astype(dtype), rng.standard_normal(C).astype(dtype)
    return (x, w), (2 * N * C + N + C) * x.itemsize


def example_backward(dtype, rng, shape):
    (x, w), _ = example_forward(dtype, rng, shape)
    _, rstd = rmsnorm_forward_reference(x, w)
    dy = rng.standard_normal(x.shape).astype(dtype)
    N, C = x.shape
    return (dy, x, w, rstd), (3 * N * C + N + 2 * C) * x.itemsize


KERNELS = (
    Kernel("rmsnorm_forward", rmsnorm_forward,
           {"reference": rmsnorm_forward_reference, "numba v1": rmsnorm_forward_v1, "cuda": rmsnorm_forward_cuda},
           example_forward),
    Kernel("rmsnorm_backward", rmsnorm_backward,
           {"reference": rmsnorm_backward_reference, "numba v1": rmsnorm_backward_v1, "cuda": rmsnorm_backward_cuda},
           example_backward),
)


if __name__ == "__main__":
    run_lesson(KERNELS)
