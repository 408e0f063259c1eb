"""Matrix products four rows at a time, the sums held in registers: the attention kernels' inner loops.

The attention versions that work a tile of ROWS query rows at once need two products:

    tile_times_bt:     out[r, j]  = sum_c a[r, c] b[j, c]            (ROWS, n) = a (ROWS, depth) b^T
    add_tile_t_times:  out[j, :] += scale sum_r a[r, j] b[r, :]      (n, W)   += scale a^T b, a rank-ROWS update

In the first, each row of b (a key, or a value column) is loaded once and feeds ROWS dot
products kept in four registers, instead of being loaded once per query row. In the second
(dv = p^T dout and dk = ds^T q, sums over the query rows), each row of out is read and
written once per tile instead of once per row. With ``REORDER_SUMS_AND_FUSE`` the sums run
in SIMD lanes with fused multiply-adds.

Versions: 0 the NumPy reference (``@``); 1 the two Numba loops. Run
``python -m scratchlm.kernels.row_tiles`` to check and time them.
"""

from __future__ import annotations

import numpy as np

from ._lesson import Kernel, run_lesson
from .numba_tools import REORDER_SUMS_AND_FUSE, lazy_njit

ROWS = 4                 # query rows per tile: four sums in registers


# ---- version 0: the NumPy reference ------------------------------------------------
def tile_times_bt_reference(a, b, ncols, depth):
    """a (ROWS, >= depth), b (>= ncols, >= depth) -> (ROWS, ncols) = a[:, :depth] b[:ncols, :depth]^T."""
    return a[:, :depth] @ b[:ncols, :depth].T


def add_tile_t_times_reference(a, b, out, nrows, scale):
    """out[:nrows] + scale a[:, :nrows]^T b: a (ROWS, >= nrows), b (ROWS, W), out (>= nrows, W)."""
    result = out.copy()
    result[:nrows] += scale * (a[:, :nrows].T @ b)                             # (nrows, W)
    return result


# ---- version 1: Numba, four sums in registers ------------------------------------------
@lazy_njit(fastmath=REORDER_SUMS_AND_FUSE, inline="always")
def tile_times_bt(a, b, out, ncols, depth):
    """out[r, j] = sum_{c < depth} a[r, c] b[j, c] for the ROWS rows r of a and j < ncols."""
    zero = out.dtype.type(0.0)
    for j in range(ncols):
        s0, s1, s2, s3 = zero, zero, zero, zero          # four sums live in registers
        for c in range(depth):
            b_jc = b[j, c]                               # loaded once, used four times
            s0 += a[0, c] * b_jc
            s1 += a[1, c] * b_jc
            s2 += a[2, c] * b_jc
            s3 += a[3, c] * b_jc
        out[0, j], out[1, j], out[2, j], out[3, j] = s0, s1, s2, s3


@lazy_njit(fastmath=REORDER_SUMS_AND_FUSE)
def add_tile_t_times(a, b, out, nrows, scale):
    """out[j, :] += scale sum_r a[r, j] b[r, :] for j < nrows (out += scale a^T b, ROWS rows)."""
    for j in range(nrows):
        a0, a1, a2, a3 = a[0, j] * scale, a[1, j] * scale, a[2, j] * scale, a[3, j] * scale
        for d in range(out.shape[1]):
            out[j, d] += a0 * b[0, d] + a1 * b[1, d] + a2 * b[2, d] + a3 * b[3, d]


@lazy_njit(fastmath=REORDER_SUMS_AND_FUSE)
def _tile_times_bt_kernel(a, b, out, ncols, depth):
    tile_times_bt(a, b, out, ncols, depth)


def tile_times_bt_v1(a, b, ncols, depth):
    out = np.empty((ROWS, ncols), dtype=a.dtype)
    _tile_times_bt_kernel(a, b, out, ncols, depth)
    return out


def add_tile_t_times_v1(a, b, out, nrows, scale):
    result = out.copy()
    add_tile_t_times(a, b, result, nrows, a.dtype.type(scale))
    return result


# ---- the declaration: what __main__, the tests and the benchmarks read ------------------
def example_times_bt(dtype, rng, shape):
    """A tile of ROWS query rows against 3/4 of a window's keys; the flops of the product."""
    D, n = shape.head_dim, 3 * shape.seq_len // 4
    q_tile, keys = rng.standard_normal((ROWS, D)).astype(dtype), rng.standard_normal((shape.seq_len, D)).astype(dtype)
    return (q_tile, keys, n, D), 2 * ROWS * n * D


def example_add_t_times(dtype, rng, shape):
    """dv (T, D) += p_tile^T dout_tile over 3/4 of the window's keys; the flops."""
    D, n = shape.head_dim, 3 * shape.seq_len // 4
    p_tile = rng.random((ROWS, shape.seq_len)).astype(dtype)
    g_tile, dv = rng.standard_normal((ROWS, D)).astype(dtype), rng.standard_normal((shape.seq_len, D)).astype(dtype)
    return (p_tile, g_tile, dv, n, 0.5), 2 * ROWS * n * D


KERNELS = (
    Kernel("tile_times_bt", tile_times_bt_v1, {"reference": tile_times_bt_reference, "numba v1": tile_times_bt_v1},
           example_times_bt, unit="GFLOP/s"),
    Kernel("add_tile_t_times", add_tile_t_times_v1,
           {"reference": add_tile_t_times_reference, "numba v1": add_tile_t_times_v1}, example_add_t_times,
           unit="GFLOP/s"),
)


if __name__ == "__main__":
    run_lesson(KERNELS)
