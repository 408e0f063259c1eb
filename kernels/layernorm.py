"""Layer normalisation, forward and backward.

Math, per row x of C features (x has shape (N, C), N = B*T rows):

    mean = (1/C) sum_i x_i
    var  = (1/C) sum_i (x_i - mean)^2
    rstd = 1 / sqrt(var + eps)
    xhat = (x - mean) * rstd
    y    = xhat * w + b                      w, b: (C,)

Backward, given dy = dL/dy of shape (N, C):

    db   = sum over rows of dy
    dw   = sum over rows of dy * xhat
    g    = dy * w                            (the gradient reaching xhat)
    dx   = rstd * (g - mean(g) - xhat * mean(g * xhat))     (means over the row)

Cached from forward: mean and rstd, (N,) each; xhat is recomputed from x (it is
cheap, and caching it would cost a whole (N, C) array per layer).

Versions: 0 the NumPy reference; 1 Numba, rows over the cores (backward: each chunk
of rows sums its own dw, db, so no two threads write the same memory); CUDA (CuPy
arrays), one thread block per row. Run ``python -m scratchlm.kernels.layernorm`` to
check and time them.
"""

from __future__ import annotations

import numpy as np

from ._cuda import PART_BLOCKS, cuda_rows_ok, cupy_module, launch, row_threads
from ._lesson import Kernel, run_lesson
from .dispatch import use_cuda, use_numba
from .numba_tools import REORDER_SUMS, chunk_bounds, lazy_njit, prange, row_chunks


# ---- version 0: the NumPy reference (runs on NumPy and CuPy arrays) ------------------
def layernorm_forward_reference(x, w, b, eps=1e-5):
    """x: (N, C) -> y (N, C), mean (N,), rstd (N,)."""
    mean = x.mean(axis=-1)                                  # (N,)
    xc = x - mean[:, None]                                  # (N, C)
    rstd = 1.0 / ((xc * xc).mean(axis=-1) + eps) ** 0.5     # (N,)
    y = xc * rstd[:, None] * w + b                          # (N, C)
    return y, mean, rstd.astype(x.dtype)


def layernorm_backward_reference(dy, x, w, mean, rstd):
    """dy: (N, C) -> dx (N, C), dw (C,), db (C,)."""
    xhat = (x - mean[:, None]) * rstd[:, None]              # (N, C)
    db = dy.sum(axis=0)                                     # (C,)
    dw = (dy * xhat).sum(axis=0)                            # (C,)
    g = dy * w                                              # (N, C)
    dx = rstd[:, None] * (g - g.mean(axis=-1, keepdims=True)
                          - xhat * (g * xhat).mean(axis=-1, keepdims=True))
    return dx, dw, db


# ---- version 1: Numba, one row per loop step, rows spread over the cores ----------------
# Faster than the reference because each row is read from cache while it is hot, with no
# (N, C) temporaries. ``fastmath={"reassoc"}`` lets LLVM split the row sums into SIMD lanes;
# without it each sum is one serial chain of additions, three times slower here. It
# enables no assumption about inf or NaN (masks and overflow still behave) and no fused
# multiply-add. Row statistics accumulate in float64.


@lazy_njit(parallel=True, fastmath=REORDER_SUMS)
def _layernorm_forward_kernel(x, w, b, eps, y, mean, rstd):
    # x, y: (N, C); w, b: (C,); mean, rstd: (N,) written here
    N, C = x.shape
    for n in prange(N):
        total = 0.0
        for i in range(C):
            total += x[n, i]
        row_mean = total / C
        squares = 0.0
        for i in range(C):
            centred = x[n, i] - row_mean
            squares += centred * centred
        mean[n] = row_mean
        rstd[n] = 1.0 / np.sqrt(squares / C + eps)
        m, r = mean[n], rstd[n]                 # read back in x's dtype: the loop stays float32
        for i in range(C):
            y[n, i] = (x[n, i] - m) * r * w[i] + b[i]


@lazy_njit(parallel=True, fastmath=REORDER_SUMS)
def _layernorm_backward_kernel(dy, x, w, mean, rstd, dx, dw_parts, db_parts):
    # dy, x, dx: (N, C); w: (C,); mean, rstd: (N,); dw_parts, db_parts: (chunks, C) zeros.
    # Rows are cut into contiguous chunks; chunk k adds its rows' dw and db into its own
    # row dw_parts[k], db_parts[k], so no two threads ever write the same memory.
    N, C = x.shape
    n_chunks = dw_parts.shape[0]
    for k in prange(n_chunks):
        first, end = chunk_bounds(k, N, n_chunks)
        for n in range(first, end):
            m, r = mean[n], rstd[n]
            g_total = 0.0
            g_xhat_total = 0.0
            for i in range(C):
                xhat = (x[n, i] - m) * r
                g = dy[n, i] * w[i]
                g_total += g
                g_xhat_total += g * xhat
                db_parts[k, i] += dy[n, i]
                dw_parts[k, i] += dy[n, i] * xhat
            g_mean = x.dtype.type(g_total / C)
            g_xhat_mean = x.dtype.type(g_xhat_total / C)
            for i in range(C):
                xhat = (x[n, i] - m) * r
                dx[n, i] = r * (dy[n, i] * w[i] - g_mean - xhat * g_xhat_mean)


def layernorm_forward_v1(x, w, b, eps=1e-5):
    x, w, b = (np.ascontiguousarray(a, dtype=x.dtype) for a in (x, w, b))
    y = np.empty_like(x)                                    # (N, C)
    mean = np.empty(x.shape[0], dtype=x.dtype)              # (N,)
    rstd = np.empty(x.shape[0], dtype=x.dtype)              # (N,)
    _layernorm_forward_kernel(x, w, b, x.dtype.type(eps), y, mean, rstd)
    return y, mean, rstd


def layernorm_backward_v1(dy, x, w, mean, rstd):
    dy, x, w, mean, rstd = (np.ascontiguousarray(a, dtype=x.dtype) for a in (dy, x, w, mean, rstd))
    dx = np.empty_like(x)                                   # (N, C)
    dw_parts = np.zeros((row_chunks(x.shape[0]), x.shape[1]))   # (chunks, C) float64
    db_parts = np.zeros_like(dw_parts)                          # (chunks, C) float64
    _layernorm_backward_kernel(dy, x, w, mean, rstd, dx, dw_parts, db_parts)
    return dx, dw_parts.sum(axis=0).astype(x.dtype), db_parts.sum(axis=0).astype(x.dtype)


# ---- CUDA version (CuPy arrays): one thread block per row ----------------------------
# Version 1's plan on a GPU: a block of threads owns a row, its threads share the row's
# columns and meet in ``block_sum`` (see _cuda.py) for the row's statistics. Backward:
# block k takes rows k, k + blocks, ... and sums their dw, db into its own row of the
# (blocks, C) parts, which one CuPy sum then adds up: no two blocks write the same memory.
LAYERNORM_CUDA_SOURCE = r"""
extern "C" __global__ void layernorm_forward(const real* x, const real* w, const real* b,
                                             real eps, int C, real* y, real* mean, real* rstd) {
    const long long row = (long long)blockIdx.x * C;            // x[row + i]: this block's row
    real total = 0;
    for (int i = threadIdx.x; i < C; i += blockDim.x) total += x[row + i];
    const real m = block_sum(total) / C;
    real squares = 0;
    for (int i = threadIdx.x; i < C; i += blockDim.x) {
        const real centred = x[row + i] - m;
        squares += centred * centred;
    }
    const real r = real(1) / sqrt(block_sum(squares) / C + eps);
    if (threadIdx.x == 0) {
        mean[blockIdx.x] = m;
        rstd[blockIdx.x] = r;
    }
    for (int i = threadIdx.x; i < C; i += blockDim.x) y[row + i] = (x[row + i] - m) * r * w[i] + b[i];
}

extern "C" __global__ void layernorm_backward(const real* dy, const real* x, const real* w,
                                              const real* mean, const real* rstd, int N, int C,
                                              real* dx, real* dw_parts, real* db_parts) {
    real* dw_mine = dw_parts + (long long)blockIdx.x * C;      // this block's row of the parts
    real* db_mine = db_parts + (long long)blockIdx.x * C;
    for (int i = threadIdx.x; i < C; i += blockDim.x) dw_mine[i] = db_mine[i] = 0;
    for (int n = blockIdx.x; n < N; n += gridDim.x) {
        const long long row = (long long)n * C;
        const real m = mean[n], r = rstd[n];
        real g_total = 0, g_xhat_total = 0;
        for (int i = threadIdx.x; i < C; i += blockDim.x) {
            const real g = dy[row + i] * w[i];
            g_total += g;
            g_xhat_total += g * ((x[row + i] - m) * r);
        }
        const real g_mean = block_sum(g_total) / C;
        const real g_xhat_mean = block_sum(g_xhat_total) / C;
        for (int i = threadIdx.x; i < C; i += blockDim.x) {
            const real xhat = (x[row + i] - m) * r;
            dx[row + i] = r * (dy[row + i] * w[i] - g_mean - xhat * g_xhat_mean);
            db_mine[i] += dy[row + i];                          // thread i alone owns column i
            dw_mine[i] += dy[row + i] * xhat;
        }
    }
}
"""


def layernorm_forward_cuda(x, w, b, eps=1e-5):
    cp = cupy_module()
    x, w, b = (cp.ascontiguousarray(a, dtype=x.dtype) for a in (x, w, b))
    N, C = x.shape
    y = cp.empty_like(x)                                    # (N, C)
    mean = cp.empty(N, dtype=x.dtype)                       # (N,)
    rstd = cp.empty(N, dtype=x.dtype)                       # (N,)
    launch(LAYERNORM_CUDA_SOURCE, "layernorm_forward", x.dtype, N, row_threads(C),
           (x, w, b, x.dtype.type(eps), np.int32(C), y, mean, rstd))
    return y, mean, rstd


def layernorm_backward_cuda(dy, x, w, mean, rstd):
    cp = cupy_module()
    dy, x, w, mean, rstd = (cp.ascontiguousarray(a, dtype=x.dtype) for a in (dy, x, w, mean, rstd))
    N, C = x.shape
    blocks = min(N, PART_BLOCKS)
    dx = cp.empty_like(x)                                   # (N, C)
    dw_parts = cp.empty((blocks, C), dtype=x.dtype)         # (blocks, C), zeroed by the kernel
    db_parts = cp.empty_like(dw_parts)                      # (blocks, C)
    launch(LAYERNORM_CUDA_SOURCE, "layernorm_backward", x.dtype, blocks, row_threads(C),
           (dy, x, w, mean, rstd, np.int32(N), np.int32(C), dx, dw_parts, db_parts))
    return dx, dw_parts.sum(axis=0), db_parts.sum(axis=0)


# ---- dispatch ----------------------------------------------------------------------
def layernorm_forward(x, w, b, eps=1e-5):
    if use_cuda(x, w, b) and cuda_rows_ok(x):
        return layernorm_forward_cuda(x, w, b, eps)
    if use_numba(x, w, b) and x.dtype in (np.float32, np.float64):
        return layernorm_forward_v1(x, w, b, eps)
    return layernorm_forward_reference(x, w, b, eps)


def layernorm_backward(dy, x, w, mean, rstd):
    if use_cuda(dy, x, w, mean, rstd) and cuda_rows_ok(x):
        return layernorm_backward_cuda(dy, x, w, mean, rstd)
    if use_numba(dy, x, w, mean, rstd) and x.dtype in (np.float32, np.float64):
        return layernorm_backward_v1(dy, x, w, mean, rstd)
    return layernorm_backward_reference(dy, x, w, mean, rstd)


# ---- the declaration: what __main__, the tests and the benchmarks read ------------------
def example_forward(dtype, rng, shape):
    """x (N, C), w, b (C,) at a configuration's shape; the bytes one forward moves."""
    N, C = shape.rows, shape.d_model
    x = rng.standard_normal((N, C)).astype(dtype)
    w, b = (rng.standard_normal(C).astype(dtype) for _ in range(2))
    return (x, w, b), (2 * N * C + 2 * N + 2 * C) * x.itemsize


def example_backward(dtype, rng, shape):
    (x, w, b), _ = example_forward(dtype, rng, shape)
    _, mean, rstd = layernorm_forward_reference(x, w, b)
    dy = rng.standard_normal(x.shape).astype(dtype)
    N, C = x.shape
    return (dy, x, w, mean, rstd), (3 * N * C + 2 * N + 3 * C) * x.itemsize


KERNELS = (
    Kernel("layernorm_forward", layernorm_forward,
           {"reference": layernorm_forward_reference, "numba v1": layernorm_forward_v1, "cuda": layernorm_forward_cuda},
           example_forward),
    Kernel("layernorm_backward", layernorm_backward,
           {"reference": layernorm_backward_reference, "numba v1": layernorm_backward_v1,
            "cuda": layernorm_backward_cuda}, example_backward),
)


if __name__ == "__main__":
    run_lesson(KERNELS)
