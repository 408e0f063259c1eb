"""Embedding lookup: forward is a gather, backward a scatter-add.

Shapes: weight (V, C); ids (B, T) integers in [0, V).

Forward:   out[b, t, :] = weight[ids[b, t], :]               (B, T, C)
Backward:  dweight[v, :] = sum over (b, t) with ids[b, t] == v of dout[b, t, :]

The backward is the one subtle part: the same id appears many times in a batch
(every "e"), and each occurrence must add its gradient. ``dweight[ids] += dout``
would keep only one of them; ``np.add.at`` accumulates them all.

Versions: 0 the NumPy reference; 1 Numba (forward: rows over the cores; backward:
blocks of columns over the cores, so repeated ids never race).
Run ``python -m scratchlm.kernels.embedding`` to check and time them.
"""

from __future__ import annotations

import numpy as np

from .dispatch import lazy_njit, prange, use_numba


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


# ---- dispatch ----------------------------------------------------------------------
def embedding_forward(weight, ids):
    if (use_numba(weight, ids) and weight.dtype in (np.float32, np.float64)
            and _ids_in_range(ids, weight.shape[0])):
        return embedding_forward_v1(weight, ids)
    return embedding_forward_reference(weight, ids)


def embedding_backward(dout, ids, vocab_size):
    if (use_numba(dout, ids) and dout.dtype in (np.float32, np.float64)
            and _ids_in_range(ids, vocab_size)):
        return embedding_backward_v1(dout, ids, vocab_size)
    return embedding_backward_reference(dout, ids, vocab_size)


if __name__ == "__main__":
    from ._lesson import check, report

    B, T, C, V = 32, 128, 256, 65                          # config c
    rng = np.random.default_rng(0)
    ids = rng.integers(0, V, size=(B, T))                  # (B, T), every id repeats
    for dtype in (np.float32, np.float64):
        weight = rng.standard_normal((V, C)).astype(dtype)
        dout = rng.standard_normal((B, T, C)).astype(dtype)
        out = embedding_forward_reference(weight, ids)
        dweight = embedding_backward_reference(dout, ids, V)
        size = weight.itemsize
        print(f"embedding B={B} T={T} C={C} V={V} {np.dtype(dtype).name}")
        for name, forward, backward in [
            ("reference", embedding_forward_reference, embedding_backward_reference),
            ("numba v1", embedding_forward_v1, embedding_backward_v1),
        ]:
            check(f"{name} forward", forward(weight, ids), out, dtype)
            report(f"{name} forward", forward, (weight, ids), 2 * B * T * C * size + ids.nbytes)
            check(f"{name} backward", backward(dout, ids, V), dweight, dtype)
            report(f"{name} backward", backward, (dout, ids, V),
                   (B * T + V) * C * size + ids.nbytes)
