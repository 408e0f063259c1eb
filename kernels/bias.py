"""A Linear layer's bias: added to every row in forward, summed over the rows in backward.

Math, on the layer's output y (N, out) (the leading axes folded into N) and bias b (out,):

    forward:   y[n, :] += b                  in place, right after the matrix product
    backward:  db = sum_n dy[n, :]           (out,), the column sums of the gradient

Nothing is cached. Both are pure memory traffic, and NumPy runs them on one core
(``y += b``; ``dy.sum(axis=0)``): ~1.1 and ~0.6 ms per (4096, 1024) float32 array, 20-40 ms of
each config-c training step in all.

Versions: 0 the NumPy reference (CuPy arrays too); 1 Numba, rows shared out among the
cores. The sum cuts the rows into chunks; chunk k adds its rows into its own row
``parts[k]`` of a (chunks, out) buffer, so no two threads ever write the same memory, and
the chunk sums are then added in float64 (the pattern of layernorm.py's dw and db).
gelu.py's fused MLP backward sums its gradient's columns the same way, in the pass that
makes it (``column_sum_parts`` and ``finish_column_sums`` are shared).
"""

from __future__ import annotations

import numpy as np

from ._lesson import Kernel, run_lesson
from .dispatch import use_numba
from .numba_tools import REORDER_SUMS, chunk_bounds, lazy_njit, prange, row_chunks


# ---- version 0: the NumPy reference ------------------------------------------------
def add_bias_reference(y, b):
    """y (N, out) += b (out,), in place; returns y."""
    y += b
    return y


def bias_grad_reference(dy):
    """dy (N, out) -> db (out,)."""
    return dy.sum(axis=0)


# ---- version 1: Numba, rows over the cores ----------------------------------------------
@lazy_njit(parallel=True)
def _add_bias_kernel(y, b):
    for n in prange(y.shape[0]):
        for i in range(y.shape[1]):
            y[n, i] += b[i]


@lazy_njit(parallel=True, fastmath=REORDER_SUMS)
def _column_sums_kernel(dy, parts):
    # dy (N, out); parts (chunks, out) zeros: chunk k's rows are summed into parts[k]
    n_chunks = parts.shape[0]
    for k in prange(n_chunks):
        first, end = chunk_bounds(k, dy.shape[0], n_chunks)
        for n in range(first, end):
            for i in range(dy.shape[1]):
                parts[k, i] += dy[n, i]


def column_sum_parts(n_rows, width, dtype):
    """The zeroed (chunks, width) buffer a chunked column sum writes into."""
    return np.zeros((row_chunks(n_rows), width), dtype=dtype)


def finish_column_sums(parts, dtype):
    """(chunks, width) chunk sums -> (width,) column sums in ``dtype``, added in float64."""
    return parts.sum(axis=0, dtype=np.float64).astype(dtype)


def add_bias_v1(y, b):
    _add_bias_kernel(y, np.ascontiguousarray(b, dtype=y.dtype))
    return y


def bias_grad_v1(dy):
    dy = np.ascontiguousarray(dy)
    parts = column_sum_parts(dy.shape[0], dy.shape[1], dy.dtype)  # (chunks, out)
    _column_sums_kernel(dy, parts)
    return finish_column_sums(parts, dy.dtype)


# ---- dispatch ----------------------------------------------------------------------
def _compiled_ok(y, *others):
    return (y.ndim == 2 and y.dtype in (np.float32, np.float64) and y.flags.c_contiguous
            and all(a.dtype == y.dtype for a in others))


def add_bias(y, b):
    """y (N, out) += b (out,) in place; y must be an array the caller owns."""
    if use_numba(y, b) and _compiled_ok(y, b) and b.shape == y.shape[1:]:
        return add_bias_v1(y, b)
    return add_bias_reference(y, b)


def bias_grad(dy):
    """dy (N, out) -> db (out,)."""
    if use_numba(dy) and _compiled_ok(dy):
        return bias_grad_v1(dy)
    return bias_grad_reference(dy)


# ---- the declaration: what __main__, the tests and the benchmarks read ------------------
def example_add(dtype, rng, shape):
    """The MLP's fc output y (N, 4C) and its bias (4C,); adding reads and writes y."""
    y = rng.standard_normal((shape.rows, 4 * shape.d_model)).astype(dtype)
    b = rng.standard_normal(y.shape[1]).astype(dtype)
    return (y, b), 2 * y.nbytes


def example_grad(dtype, rng, shape):
    dy = rng.standard_normal((shape.rows, 4 * shape.d_model)).astype(dtype)
    return (dy,), dy.nbytes


KERNELS = (
    Kernel("add_bias", add_bias, {"reference": add_bias_reference, "numba v1": add_bias_v1}, example_add),
    Kernel("bias_grad", bias_grad, {"reference": bias_grad_reference, "numba v1": bias_grad_v1}, example_grad),
)


if __name__ == "__main__":
    run_lesson(KERNELS)
