"""One row of a causal softmax, inside a compiled loop: the max, then exp(s - max) and its sum.

Attention turns every row of scores s (the keys one query sees) into weights

    m = max_j s_j                   over the visible keys j < visible
    e_j = exp(s_j - m)              for j < visible, 0 for the masked (future) keys
    p_j = e_j / sum_j e_j

Subtracting m first keeps every exponent <= 0 (no overflow) and leaves p unchanged. The
sum is never 0: the max itself gives exp(0) = 1.

Two helpers that every attention kernel inlines (attention.py, attention_packed.py, the
token step), written so that LLVM vectorises them:

- ``row_max`` keeps eight running maxima: one is a chain of dependent compares that LLVM
  may not reorder (a max may only be reordered when NaNs are ruled out); eight independent
  ones pack into one vector compare per eight numbers.
- ``exp_minus_max`` exponentiates the masked keys too and then drops them by a select,
  not a branch, so the loop runs whole SIMD vectors whatever they hold; its exp is
  vector_exp.py's.

Both read a row over ``width`` entries with only the first ``visible`` counting, so every
row of a block of queries can run the same loop.

FLUSH (``flush_threshold``, ``weight_floor``): as a model trains its attention sharpens and
exp(s - max) underflows into subnormal numbers, which x86 computes on many times slower.
Weights below tiny / eps (the smallest normal float over the machine epsilon, 1e-31 in
float32) are set to exactly 0 by the kernels that use these helpers; the change to any
result is far below float32's own rounding (1e-7 relative).

Versions: 0 the NumPy reference of a masked row (``softmax_row_reference``); 1 the two
Numba helpers above, as a kernel that normalises a row. Run
``python -m scratchlm.kernels.softmax_rows`` to check and time them.
"""

from __future__ import annotations

import numpy as np

from ._lesson import Kernel, run_lesson
from .numba_tools import REORDER_SUMS_AND_FUSE, lazy_njit
from .vector_exp import exp_for


def flush_threshold(dtype):
    """tiny / eps: attention weights below it are set to exactly 0 (see FLUSH above)."""
    info = np.finfo(dtype)
    return info.tiny / info.eps


@lazy_njit(inline="always")
def weight_floor(a):
    """``flush_threshold`` of a's dtype, as a number of that dtype, inside compiled code."""
    info = np.finfo(a.dtype)
    return a.dtype.type(info.tiny / info.eps)


def causal_mask(xp, tq, tk):
    """(Tq, Tk) boolean, True where key j lies in query i's future (query i sits at Tk - Tq + i)."""
    query_pos = xp.arange(tq)[:, None] + (tk - tq)
    key_pos = xp.arange(tk)[None, :]
    return key_pos > query_pos


# ---- version 0: the NumPy reference ------------------------------------------------
def softmax_row_reference(row, visible):
    """row (W,) -> softmax over row[:visible], zeros from ``visible`` on."""
    e = np.exp(row[:visible] - row[:visible].max())                 # (visible,)
    return np.concatenate([e / e.sum(), np.zeros(row.shape[0] - visible, row.dtype)])


# ---- version 1: the helpers the attention kernels inline -------------------------------
@lazy_njit(inline="always")
def row_max(row, visible, width):
    """max(row[:visible]), 1 <= visible <= width, read over row[:width] with the keys from
    ``visible`` on masked out by a select; eight running maxima (see the module doc)."""
    low = row.dtype.type(-np.inf)                        # a masked key never wins
    m0 = m1 = m2 = m3 = m4 = m5 = m6 = m7 = row[0]       # visible >= 1: row[0] always counts
    w8 = width - width % 8
    for j in range(0, w8, 8):
        m0 = max(m0, row[j] if j < visible else low)
        m1 = max(m1, row[j + 1] if j + 1 < visible else low)
        m2 = max(m2, row[j + 2] if j + 2 < visible else low)
        m3 = max(m3, row[j + 3] if j + 3 < visible else low)
        m4 = max(m4, row[j + 4] if j + 4 < visible else low)
        m5 = max(m5, row[j + 5] if j + 5 < visible else low)
        m6 = max(m6, row[j + 6] if j + 6 < visible else low)
        m7 = max(m7, row[j + 7] if j + 7 < visible else low)
    for j in range(w8, width):
        m0 = max(m0, row[j] if j < visible else low)
    return max(max(max(m0, m1), max(m2, m3)), max(max(m4, m5), max(m6, m7)))


@lazy_njit(fastmath=REORDER_SUMS_AND_FUSE, inline="always")
def exp_minus_max(row, visible, width):
    """row[:width] <- exp(row - max(row[:visible])) for j < visible and 0 from there on (the
    causal mask); returns (the max, the new row's sum): a softmax row not yet divided by its sum."""
    top = row_max(row, visible, width)
    total = row.dtype.type(0.0)
    for j in range(width):
        e = exp_for(row, row[j] - top)
        e = e if j < visible else row.dtype.type(0.0)
        row[j] = e
        total += e
    return top, total


@lazy_njit(fastmath=REORDER_SUMS_AND_FUSE)
def _softmax_row_kernel(row, visible):
    _, total = exp_minus_max(row, visible, row.shape[0])
    inverse = row.dtype.type(1.0) / total
    for j in range(row.shape[0]):
        row[j] *= inverse


def softmax_row_v1(row, visible):
    out = row.copy()
    _softmax_row_kernel(out, visible)
    return out


# ---- the declaration: what __main__, the tests and the benchmarks read ------------------
def example(dtype, rng, shape):
    """A row of T scores of which the first 3/4 are visible (a late query of the window)."""
    row = (3 * rng.standard_normal(shape.seq_len)).astype(dtype)
    return (row, 3 * shape.seq_len // 4), 2 * row.nbytes


KERNELS = (Kernel("softmax_row", softmax_row_v1, {"reference": softmax_row_reference, "numba v1": softmax_row_v1},
                  example),)


if __name__ == "__main__":
    run_lesson(KERNELS)
