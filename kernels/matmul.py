"""Matrix multiplication, for teaching only: why the engine calls BLAS (``a @ b``).

Every Linear layer is one: x (B*T, C_in) @ w (C_in, C_out), and its backward is two
more (dx = dy w^T, dw = x^T dy). For a (M, K) @ (K, N) product,

    c[i, j] = sum_k a[i, k] b[k, j]          2 M N K flops (a multiply and an add each)

and at config c the fused qkv projection alone is (4096, 256) @ (256, 768): 1.6 GFLOP.
The flops are fixed; what differs between the versions below is how often each number
is fetched from memory. A core can do 2 x 16 float32 multiply-adds per cycle (two 512-bit
FMA units) but load only about 2 x 16 floats from its L1 cache per cycle, and far fewer
from RAM; a fast matmul therefore reuses every loaded number many times from registers.

    version 1  i-j-k loops, a dot product per c[i, j]: walks down a column of b
               (a cache miss per step once b is large) and cannot use SIMD
    version 2  i-k-j loops: the inner loop runs along a row of b and of c, contiguous,
               so LLVM vectorises it; rows of c are spread over the cores
    version 3  version 2 with k unrolled by 4: each load and store of c[i, j] now
               carries four multiply-adds instead of one
    BLAS       OpenBLAS (NumPy's ``@``): packed panels, hand-written assembly kernels
               holding a 2-D tile of c in registers

``python -m scratchlm.kernels.matmul`` measures them. Version 3 is still 5x slower
than BLAS, and a Numba loop cannot hold a 2-D tile of c in vector registers (LLVM
must assume c and b might overlap), which is the step that BLAS's kernels take. So the
engine uses ``@`` for every dense product, and the kernels in this folder fuse only what
sits around the products (softmax, norms, GELU, the optimizer). Attention's small
per-head products are the exception, because there the win is running heads on both
cores and skipping the masked half (see attention.py).
"""

from __future__ import annotations

import numpy as np

from ._lesson import Kernel, run_lesson
from .numba_tools import REORDER_SUMS_AND_FUSE, lazy_njit, prange


# ---- version 0: the reference, NumPy's matmul (BLAS) ---------------------------------
def matmul_reference(a, b):
    """a (M, K) @ b (K, N) -> c (M, N)."""
    return a @ b


# ---- version 1: the textbook triple loop -----------------------------------------------
@lazy_njit(fastmath=REORDER_SUMS_AND_FUSE)
def _matmul_kernel_v1(a, b, c):
    M, K = a.shape
    N = b.shape[1]
    for i in range(M):
        for j in range(N):
            total = c.dtype.type(0.0)
            for k in range(K):
                total += a[i, k] * b[k, j]              # b[k, j]: N floats apart each step
            c[i, j] = total


# ---- version 2: i-k-j order, so the inner loop is contiguous; rows over the cores -------
@lazy_njit(parallel=True, fastmath=REORDER_SUMS_AND_FUSE)
def _matmul_kernel_v2(a, b, c):
    M, K = a.shape
    N = b.shape[1]
    for i in prange(M):
        c[i, :] = c.dtype.type(0.0)
        for k in range(K):
            a_ik = a[i, k]
            for j in range(N):
                c[i, j] += a_ik * b[k, j]               # 1 load + 1 store of c per FMA


# ---- version 3: k unrolled by 4, so each load and store of c carries four FMAs -----------
# (Not also cut into cache-sized blocks of j: LLVM then stops vectorising, and rows of 768
# floats fit in L1 anyway.)
@lazy_njit(parallel=True, fastmath=REORDER_SUMS_AND_FUSE)
def _matmul_kernel_v3(a, b, c):
    M, K = a.shape
    N = b.shape[1]
    k4 = K - K % 4
    for i in prange(M):
        c[i, :] = c.dtype.type(0.0)
        for k in range(0, k4, 4):
            a0, a1, a2, a3 = a[i, k], a[i, k + 1], a[i, k + 2], a[i, k + 3]
            for j in range(N):
                c[i, j] += a0 * b[k, j] + a1 * b[k + 1, j] + a2 * b[k + 2, j] + a3 * b[k + 3, j]
        for k in range(k4, K):                          # the K % 4 leftover rows of b
            for j in range(N):
                c[i, j] += a[i, k] * b[k, j]


def _with(kernel, a, b):
    a, b = np.ascontiguousarray(a), np.ascontiguousarray(b, dtype=a.dtype)
    c = np.empty((a.shape[0], b.shape[1]), dtype=a.dtype)   # (M, N)
    kernel(a, b, c)
    return c


def matmul_v1(a, b):
    return _with(_matmul_kernel_v1, a, b)


def matmul_v2(a, b):
    return _with(_matmul_kernel_v2, a, b)


def matmul_v3(a, b):
    return _with(_matmul_kernel_v3, a, b)


# ---- dispatch: always BLAS --------------------------------------------------------------
def matmul(a, b):
    return matmul_reference(a, b)


# ---- the declaration: what __main__, the tests and the benchmarks read ------------------
def example(dtype, rng, shape):
    """The fused qkv projection x (N, C) @ w (C, 3C) at a configuration's shape; its flops."""
    a = rng.standard_normal((shape.rows, shape.d_model)).astype(dtype)
    b = rng.standard_normal((shape.d_model, 3 * shape.d_model)).astype(dtype)
    return (a, b), 2 * shape.rows * shape.d_model * 3 * shape.d_model


KERNELS = (Kernel("matmul", matmul, {"reference": matmul_reference, "numba v1 (i-j-k)": matmul_v1,
                                     "numba v2 (i-k-j)": matmul_v2, "numba v3 (k unrolled by 4)": matmul_v3},
                  example, unit="GFLOP/s"),)


if __name__ == "__main__":
    run_lesson(KERNELS)
