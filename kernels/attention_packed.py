"""Causal self-attention read straight from the packed qkv, keeping no attention weights.

Read ``attention.py`` first: this file's versions 1 and 2 follow on from its version 2; version 2
here is what training uses on the CPU.
It computes the same thing, softmax(q k^T / sqrt(D) + causal mask) v, with Tq == Tk == T,
but takes its inputs and gives its outputs in the layouts around it:

    qkv (B, T, 3C), the output of the fused qkv Linear, read as (B, T, 3, H, D):
        qkv[b, t, 0, h] is head h's query at position t, [.., 1, h] its key, [.., 2, h] its value
    out (B, T, C) = (B, T, H, D), exactly what the output projection wants
    dqkv (B, T, 3C), exactly what the qkv Linear's backward wants

so no (B, H, T, D) copies of q, k, v, dout, dq, dk or dv are ever made (at config c that
was ~40 ms of NumPy copying per step, on one core), and each head's k and v are gathered
into small contiguous buffers inside the parallel loop instead.

And it keeps no (B, H, T, T) weights p for backward (16 MiB per layer at config c, ~100 MiB
over the six layers) but one number per query row, the log of its softmax denominator:

    lse_i = m_i + log(sum_j exp(s_ij - m_i))        m_i = max_j s_ij        (B, H, T)
    p_ij  = exp(s_ij - lse_i)                       recomputed in backward, tile by tile

Backward then needs sum_j dp_ij p_ij for each row, which it gets without p:

    sum_j dp_ij p_ij = sum_j (dout_i . v_j) p_ij = dout_i . out_i      (delta_i, (B, H, T))

    ds = p * (dp - delta);  dq = ds k / sqrt(D);  dk = ds^T q / sqrt(D);  dv = p^T dout

The price is one more product (q k^T again) and one more exp per visible pair in backward:
five products where attention.py's version 2 does six passes over a stored p. This is the trick of
FlashAttention (Dao et al., 2022), on a CPU: the weights are cheaper to recompute than to
write to memory and read back.

FLUSH (see attention.py): weights below tiny / eps and ds below tiny become exact zeros,
in forward and in the recomputed weights alike, so no subnormal floats reach the products.

Versions: 0 the NumPy reference (works on CuPy arrays too); 1 Numba, one head per prange
step, four query rows per tile (row_tiles.py); 2 the same plan with every product a BLAS
gemm call made from inside the prange loop (``blas.py``), the default wherever NumPy's
OpenBLAS is found (version 1 elsewhere). Which runs is ``attention_route``'s decision.
"""

from __future__ import annotations

import math

import numpy as np

from . import blas
from ._lesson import Kernel, run_lesson
from .attention_route import packed_version
from .blas import gemm
from .numba_tools import NUMPY_ERRORS, REORDER_SUMS_AND_FUSE, lazy_njit, prange
from .row_tiles import ROWS, add_tile_t_times, tile_times_bt
from .softmax_rows import causal_mask, exp_minus_max, flush_threshold, weight_floor
from .vector_exp import exp_for


def unpack_heads(qkv, heads):
    """qkv (B, T, 3C) -> q, k, v views (B, H, T, D): what attention.py's versions take."""
    B, T, C3 = qkv.shape
    parts = qkv.reshape(B, T, 3, heads, C3 // (3 * heads))  # (B, T, 3, H, D)
    return tuple(parts[:, :, i].transpose(0, 2, 1, 3) for i in range(3))


def pack_heads(xp, q, k, v):
    """q, k, v (B, H, T, D) -> (B, T, 3C), the layout of the fused qkv Linear's output."""
    B, H, T, D = q.shape
    return xp.stack([q, k, v], axis=2).transpose(0, 3, 2, 1, 4).reshape(B, T, 3 * H * D)


# ---- version 0: the NumPy reference ------------------------------------------------
def packed_forward_reference(qkv, heads):
    """qkv (B, T, 3C) -> out (B, T, C), lse (B, H, T)."""
    from scratchlm.backend import get_array_module

    xp = get_array_module(qkv)
    q, k, v = unpack_heads(qkv, heads)                       # (B, H, T, D) views
    B, H, T, D = q.shape
    scale = qkv.dtype.type(1.0 / math.sqrt(D))
    s = (q @ k.swapaxes(-1, -2)) * scale                     # (B, H, T, T)
    s = xp.where(causal_mask(xp, T, T), qkv.dtype.type(-xp.inf), s)
    row_max = s.max(axis=-1, keepdims=True)                  # (B, H, T, 1)
    e = xp.exp(s - row_max)
    total = e.sum(axis=-1, keepdims=True)                    # (B, H, T, 1)
    p = e / total
    p[p < flush_threshold(p.dtype)] = 0                     # see FLUSH
    out = (p @ v).transpose(0, 2, 1, 3).reshape(B, T, H * D) # (B, T, C)
    lse = (row_max + xp.log(total))[..., 0]                  # (B, H, T)
    return out, lse


def packed_backward_reference(dout, qkv, out, lse, heads):
    """dout (B, T, C) -> dqkv (B, T, 3C), recomputing the weights from q, k and lse."""
    from scratchlm.backend import get_array_module

    xp = get_array_module(qkv)
    q, k, v = unpack_heads(qkv, heads)                       # (B, H, T, D)
    B, H, T, D = q.shape
    g = dout.reshape(B, T, H, D).transpose(0, 2, 1, 3)       # (B, H, T, D)
    o = out.reshape(B, T, H, D).transpose(0, 2, 1, 3)        # (B, H, T, D)
    scale = qkv.dtype.type(1.0 / math.sqrt(D))
    s = (q @ k.swapaxes(-1, -2)) * scale                     # (B, H, T, T)
    s = xp.where(causal_mask(xp, T, T), qkv.dtype.type(-xp.inf), s)
    p = xp.exp(s - lse[..., None])                           # (B, H, T, T), 0 in the future
    p[p < flush_threshold(p.dtype)] = 0
    delta = (g * o).sum(axis=-1, keepdims=True)              # (B, H, T, 1) = sum_j dp p
    dv = p.swapaxes(-1, -2) @ g                              # (B, H, T, D)
    ds = p * (g @ v.swapaxes(-1, -2) - delta)                # (B, H, T, T)
    ds[abs(ds) < np.finfo(ds.dtype).tiny] = 0
    dq = (ds @ k) * scale                                    # (B, H, T, D)
    dk = (ds.swapaxes(-1, -2) @ q) * scale                   # (B, H, T, D)
    return pack_heads(xp, dq, dk, dv)


# ---- version 1: Numba, heads read in place, weights recomputed ------------------------
# Better than attention.py's version 2: no NumPy copies in or out (each head gathers its
# own k and v, 2 x T x D numbers, inside the parallel loop, where they stay in cache), and
# no p written or read: forward stores T numbers per head instead of T^2 / 2.
@lazy_njit(fastmath=REORDER_SUMS_AND_FUSE, error_model=NUMPY_ERRORS)
def _head_forward_v1(qkv, b, h, out, lse):
    """Head h of batch row b: qkv (B, T, 3, H, D) -> out[b, :, h] (T, D), lse[b, h] (T,)."""
    T, D = qkv.shape[1], qkv.shape[4]
    real = qkv.dtype.type
    scale = real(1.0 / math.sqrt(D))
    tiny = weight_floor(qkv)                             # the FLUSH threshold
    k = np.empty((T, D), dtype=qkv.dtype)                # (T, D) this head's keys
    v_t = np.empty((D, T), dtype=qkv.dtype)              # (D, T) its values, transposed
    for t in range(T):
        for d in range(D):
            k[t, d] = qkv[b, t, 1, h, d]
            v_t[d, t] = qkv[b, t, 2, h, d]
    q_tile = np.zeros((ROWS, D), dtype=qkv.dtype)        # (4, D) queries, pre-scaled
    s_tile = np.zeros((ROWS, T), dtype=qkv.dtype)        # (4, T) scores, then exp(s - max)
    out_tile = np.empty((ROWS, D), dtype=qkv.dtype)      # (4, D)
    inv_total = np.ones(ROWS, dtype=qkv.dtype)           # (4,)
    for i0 in range(0, T, ROWS):
        rows = min(ROWS, T - i0)                         # the last tile may be partial
        keys = i0 + rows                                 # keys the tile's last row sees
        for r in range(ROWS):                            # rows past the end stay zero
            for d in range(D):
                q_tile[r, d] = qkv[b, i0 + r, 0, h, d] * scale if r < rows else real(0.0)
        tile_times_bt(q_tile, k, s_tile, keys, D)       # (4, keys) scaled scores
        for r in range(rows):
            visible = i0 + r + 1                         # keys row i0 + r sees
            row_max, total = exp_minus_max(s_tile[r], visible, keys)   # 0 past the causal mask
            floor = tiny * total                         # p < tiny  <=>  exp(s - max) < tiny total
            for j in range(keys):
                s_tile[r, j] = s_tile[r, j] if s_tile[r, j] >= floor else real(0.0)
            inv_total[r] = real(1.0) / total
            lse[b, h, i0 + r] = row_max + math.log(total)
        tile_times_bt(s_tile, v_t, out_tile, D, keys)   # (4, D) = exp(s - max) v
        for r in range(rows):
            for d in range(D):
                out[b, i0 + r, h, d] = out_tile[r, d] * inv_total[r]


@lazy_njit(fastmath=REORDER_SUMS_AND_FUSE)
def _head_backward_v1(dout, qkv, out, lse, b, h, dqkv):
    """Head h of batch row b: dout (B, T, H, D) -> dqkv[b, :, :, h] (T, 3, D)."""
    T, D = qkv.shape[1], qkv.shape[4]
    real = qkv.dtype.type
    scale = real(1.0 / math.sqrt(D))
    p_floor = weight_floor(qkv)                          # FLUSH, as forward
    ds_floor = real(np.finfo(qkv.dtype).tiny)
    k = np.empty((T, D), dtype=qkv.dtype)                # (T, D)
    v = np.empty((T, D), dtype=qkv.dtype)                # (T, D)
    k_t = np.empty((D, T), dtype=qkv.dtype)              # (D, T)
    for t in range(T):
        for d in range(D):
            k[t, d] = qkv[b, t, 1, h, d]
            v[t, d] = qkv[b, t, 2, h, d]
            k_t[d, t] = k[t, d]
    dk = np.zeros((T, D), dtype=qkv.dtype)               # (T, D) accumulated over query tiles
    dv = np.zeros((T, D), dtype=qkv.dtype)               # (T, D)
    q_tile = np.zeros((ROWS, D), dtype=qkv.dtype)        # (4, D) rows of q
    g_tile = np.zeros((ROWS, D), dtype=qkv.dtype)        # (4, D) rows of dout
    p_tile = np.zeros((ROWS, T), dtype=qkv.dtype)        # (4, T) scores, then p
    ds_tile = np.zeros((ROWS, T), dtype=qkv.dtype)       # (4, T) dp, then ds
    dq_tile = np.empty((ROWS, D), dtype=qkv.dtype)       # (4, D)
    delta = np.zeros(ROWS, dtype=qkv.dtype)              # (4,) dout_i . out_i
    for i0 in range(0, T, ROWS):
        rows = min(ROWS, T - i0)
        keys = i0 + rows
        for r in range(ROWS):                            # rows past the end are zeros
            live = r < rows
            acc = real(0.0)
            for d in range(D):
                q_tile[r, d] = qkv[b, i0 + r, 0, h, d] if live else real(0.0)
                g_tile[r, d] = dout[b, i0 + r, h, d] if live else real(0.0)
                acc += g_tile[r, d] * (out[b, i0 + r, h, d] if live else real(0.0))
            delta[r] = acc
        tile_times_bt(q_tile, k, p_tile, keys, D)       # (4, keys) unscaled scores
        for r in range(ROWS):
            visible = i0 + r + 1 if r < rows else 0
            row_lse = lse[b, h, i0 + r] if r < rows else real(0.0)
            for j in range(visible):                     # p = exp(s - lse), recomputed
                pj = exp_for(p_tile, p_tile[r, j] * scale - row_lse)
                p_tile[r, j] = pj if pj >= p_floor else real(0.0)
            p_tile[r, visible:keys] = real(0.0)          # the causal mask
        tile_times_bt(g_tile, v, ds_tile, keys, D)      # (4, keys) dp = dout v^T
        for r in range(ROWS):
            for j in range(keys):                        # ds = p (dp - delta), FLUSH
                ds = p_tile[r, j] * (ds_tile[r, j] - delta[r])
                ds_tile[r, j] = ds if abs(ds) >= ds_floor else real(0.0)
        tile_times_bt(ds_tile, k_t, dq_tile, D, keys)   # (4, D) ds k
        for r in range(rows):
            for d in range(D):
                dqkv[b, i0 + r, 0, h, d] = dq_tile[r, d] * scale
        add_tile_t_times(p_tile, g_tile, dv, keys, real(1.0))   # dv += p^T dout
        add_tile_t_times(ds_tile, q_tile, dk, keys, scale)      # dk += ds^T q / sqrt(D)
    for t in range(T):
        for d in range(D):
            dqkv[b, t, 1, h, d] = dk[t, d]
            dqkv[b, t, 2, h, d] = dv[t, d]


@lazy_njit(parallel=True)
def _forward_kernel_v1(qkv, out, lse):
    heads = qkv.shape[3]
    for bh in prange(qkv.shape[0] * heads):
        _head_forward_v1(qkv, bh // heads, bh % heads, out, lse)


@lazy_njit(parallel=True)
def _backward_kernel_v1(dout, qkv, out, lse, dqkv):
    heads = qkv.shape[3]
    for bh in prange(qkv.shape[0] * heads):
        _head_backward_v1(dout, qkv, out, lse, bh // heads, bh % heads, dqkv)


def _as_heads(x, heads, parts):
    """(B, T, parts * C) -> a C-contiguous (B, T, parts, H, D) array (no copy if it is one)."""
    B, T, width = x.shape
    return np.ascontiguousarray(x).reshape(B, T, parts, heads, width // (parts * heads))


def _run_forward(kernel, qkv, heads):
    """qkv (B, T, 3C) -> out (B, T, C), lse (B, H, T) through a compiled version's head loop."""
    qkv5 = _as_heads(qkv, heads, 3)                         # (B, T, 3, H, D)
    B, T, _, H, D = qkv5.shape
    out = np.empty((B, T, H, D), dtype=qkv.dtype)
    lse = np.empty((B, H, T), dtype=qkv.dtype)
    kernel(qkv5, out, lse)
    return out.reshape(B, T, H * D), lse


def _run_backward(kernel, dout, qkv, out, lse, heads):
    """dout (B, T, C) -> dqkv (B, T, 3C) through a compiled version's head loop."""
    qkv5 = _as_heads(qkv, heads, 3)                         # (B, T, 3, H, D)
    dout4, out4 = (_as_heads(a, heads, 1)[:, :, 0] for a in (dout, out))   # (B, T, H, D)
    dqkv = np.empty_like(qkv5)
    kernel(dout4, qkv5, out4, np.ascontiguousarray(lse), dqkv)
    return dqkv.reshape(qkv.shape)


def packed_forward_v1(qkv, heads):
    return _run_forward(_forward_kernel_v1, qkv, heads)


def packed_backward_v1(dout, qkv, out, lse, heads):
    return _run_backward(_backward_kernel_v1, dout, qkv, out, lse, heads)


# ---- version 2: version 1's plan, every product a BLAS call ------------------------------
# Better than version 1: its hand-written tile products run at ~25-40 GFLOP/s, BLAS's gemm
# (called from inside the prange loop, one thread each, see blas.py) at ~150 on two cores.
# The products read q, k, v and dout and write dq, dk and dv in place: BLAS takes the 3C (or
# C) distance between rows as the leading dimension, so not even version 1's small gathers
# are left. Causality is kept by blocks: query rows [i0, i1) only meet keys [0, i1), so the
# masked upper triangle is computed only inside the diagonal blocks (BLOCK = 32 at T = 128:
# 10 of 16 blocks). One (T, T) scratch per head holds the scores, then the weights;
# backward has a second one for dp, then ds.
# Its element-wise passes run over whole block rows: query row i of block [i0, i1) walks
# keys 0 .. i1 - 1 and masks the future ones (j > i) with a select (``exp_minus_max``'s
# width, attention.py), instead of walking its own i + 1 keys. Up to BLOCK - 1 elements per
# row are wasted, but every row of a block has the same length, a multiple of 16 lanes
# wherever T is (all but a ragged last block), so LLVM's vector loop does not stop for a
# tail, and the separate pass that zeroed the masked keys is gone. What a future key holds
# (even inf or NaN) is computed and then dropped. Faster than a walk row by row
# (docs/performance.md, lab notes).
BLOCK = 32


@lazy_njit(fastmath=REORDER_SUMS_AND_FUSE, error_model=NUMPY_ERRORS)
def _head_forward_v2(qkv, b, h, out, lse):
    """Head h of batch row b: qkv (B, T, 3, H, D) -> out[b, :, h] (T, D), lse[b, h] (T,)."""
    T, D = qkv.shape[1], qkv.shape[4]
    real = qkv.dtype.type
    scale = 1.0 / math.sqrt(D)
    tiny = weight_floor(qkv)                             # the FLUSH threshold
    q, k, v = qkv[b, :, 0, h], qkv[b, :, 1, h], qkv[b, :, 2, h]         # (T, D) views, rows 3C apart
    o = out[b, :, h]                                                   # (T, D) view, rows C apart
    s = np.empty((T, T), dtype=qkv.dtype)                # (T, T) scores, then exp(s - max)
    inv_total = np.empty(T, dtype=qkv.dtype)             # (T,) 1 / softmax denominators
    for i0 in range(0, T, BLOCK):
        i1 = min(i0 + BLOCK, T)                          # rows [i0, i1) see keys [0, i1)
        gemm(scale, q[i0:i1], False, k[:i1], True, 0.0, s[i0:i1, :i1])   # scaled scores
        for i in range(i0, i1):
            row_max, total = exp_minus_max(s[i], i + 1, i1)   # 0 for the future keys
            floor = tiny * total                         # p < tiny  <=>  exp(s - max) < tiny total
            for j in range(i1):
                s[i, j] = s[i, j] if s[i, j] >= floor else real(0.0)
            inv_total[i] = real(1.0) / total
            lse[b, h, i] = row_max + math.log(total)
        gemm(1.0, s[i0:i1, :i1], False, v[:i1], False, 0.0, o[i0:i1])   # (rows, D) exp(s - max) v
        for i in range(i0, i1):
            for d in range(D):
                o[i, d] *= inv_total[i]


@lazy_njit(fastmath=REORDER_SUMS_AND_FUSE)
def _head_backward_v2(dout, qkv, out, lse, b, h, dqkv):
    """Head h of batch row b: dout (B, T, H, D) -> dqkv[b, :, :, h] (T, 3, D)."""
    T, D = qkv.shape[1], qkv.shape[4]
    real = qkv.dtype.type
    scale = 1.0 / math.sqrt(D)
    p_floor = weight_floor(qkv)                          # FLUSH, as forward
    ds_floor = real(np.finfo(qkv.dtype).tiny)
    q, k, v = qkv[b, :, 0, h], qkv[b, :, 1, h], qkv[b, :, 2, h]         # (T, D) views
    dq, dk, dv = dqkv[b, :, 0, h], dqkv[b, :, 1, h], dqkv[b, :, 2, h]   # (T, D) views
    g, o = dout[b, :, h], out[b, :, h]                                 # (T, D) views
    p = np.empty((T, T), dtype=qkv.dtype)                # (T, T) scores, then p
    ds = np.empty((T, T), dtype=qkv.dtype)               # (T, T) dp, then ds
    for i0 in range(0, T, BLOCK):                        # query blocks: p, ds and dq
        i1 = min(i0 + BLOCK, T)
        gemm(scale, q[i0:i1], False, k[:i1], True, 0.0, p[i0:i1, :i1])   # scaled scores
        gemm(1.0, g[i0:i1], False, v[:i1], True, 0.0, ds[i0:i1, :i1])    # dp = dout v^T
        for i in range(i0, i1):
            delta = real(0.0)                            # dout_i . out_i = sum_j dp_ij p_ij
            for d in range(D):
                delta += g[i, d] * o[i, d]
            row_lse = lse[b, h, i]
            p_row, ds_row = p[i], ds[i]                  # (T,) views
            for j in range(i1):                          # p = exp(s - lse), recomputed; FLUSH
                pj = exp_for(p_row, p_row[j] - row_lse)
                pj = pj if j <= i and pj >= p_floor else real(0.0)   # the causal mask first
                dsj = pj * (ds_row[j] - delta)           # ds = p (dp - delta); FLUSH
                p_row[j] = pj
                ds_row[j] = dsj if abs(dsj) >= ds_floor else real(0.0)
        gemm(scale, ds[i0:i1, :i1], False, k[:i1], False, 0.0, dq[i0:i1])  # dq = ds k / sqrt(D)
    for j0 in range(0, T, BLOCK):                        # key blocks: keys [j0, j1) meet rows [j0, T)
        j1 = min(j0 + BLOCK, T)
        gemm(scale, ds[j0:, j0:j1], True, q[j0:], False, 0.0, dk[j0:j1])   # dk = ds^T q / sqrt(D)
        gemm(1.0, p[j0:, j0:j1], True, g[j0:], False, 0.0, dv[j0:j1])      # dv = p^T dout


# The head loops of versions 1 and 2 look alike but stay two kernels: each compiles only its
# own version's head function (version 2's needs NumPy's OpenBLAS, version 1's nothing), and
# one loop taking the head function as an argument would not be cached (README.md, pitfalls).
@lazy_njit(parallel=True)
def _forward_kernel_v2(qkv, out, lse):
    heads = qkv.shape[3]
    for bh in prange(qkv.shape[0] * heads):
        _head_forward_v2(qkv, bh // heads, bh % heads, out, lse)


@lazy_njit(parallel=True)
def _backward_kernel_v2(dout, qkv, out, lse, dqkv):
    heads = qkv.shape[3]
    for bh in prange(qkv.shape[0] * heads):
        _head_backward_v2(dout, qkv, out, lse, bh // heads, bh % heads, dqkv)


def packed_forward_v2(qkv, heads):
    with blas.one_thread_each():
        return _run_forward(_forward_kernel_v2, qkv, heads)


def packed_backward_v2(dout, qkv, out, lse, heads):
    with blas.one_thread_each():
        return _run_backward(_backward_kernel_v2, dout, qkv, out, lse, heads)


# ---- dispatch ----------------------------------------------------------------------
def _compiled_ok(qkv, heads, *arrays):
    """float32/float64, one dtype, (B, T, 3C) with H dividing C, and no size zero."""
    return (qkv.dtype in (np.float32, np.float64) and qkv.ndim == 3 and qkv.size > 0
            and qkv.shape[-1] % (3 * heads) == 0 and all(a.dtype == qkv.dtype for a in arrays))


def packed_forward(qkv, heads):
    version = packed_version(qkv) if _compiled_ok(qkv, heads) else "reference"
    if version == "numba v2":
        return packed_forward_v2(qkv, heads)
    if version == "numba v1":
        return packed_forward_v1(qkv, heads)
    return packed_forward_reference(qkv, heads)


def packed_backward(dout, qkv, out, lse, heads):
    ok = _compiled_ok(qkv, heads, dout, out, lse)
    version = packed_version(dout, qkv, out, lse) if ok else "reference"
    if version == "numba v2":
        return packed_backward_v2(dout, qkv, out, lse, heads)
    if version == "numba v1":
        return packed_backward_v1(dout, qkv, out, lse, heads)
    return packed_backward_reference(dout, qkv, out, lse, heads)


# ---- the declaration: what __main__, the tests and the benchmarks read ------------------
def example_forward(dtype, rng, shape):
    """qkv (B, T, 3C) at a configuration's shape; the flops of the two products (2 D per
    visible query-key pair each)."""
    B, T, C = shape.batch, shape.seq_len, shape.d_model
    qkv = rng.standard_normal((B, T, 3 * C)).astype(dtype)
    return (qkv, shape.heads), 2 * 2 * shape.head_dim * B * shape.heads * T * (T + 1) // 2


def example_backward(dtype, rng, shape):
    """The five products of backward: q k^T again, dp, dq, dk and dv."""
    (qkv, heads), flops = example_forward(dtype, rng, shape)
    out, lse = packed_forward_reference(qkv, heads)
    dout = rng.standard_normal(out.shape).astype(dtype)
    return (dout, qkv, out, lse, heads), flops // 2 * 5


KERNELS = (
    Kernel("packed_forward", packed_forward,
           {"reference": packed_forward_reference, "numba v1": packed_forward_v1, "numba v2": packed_forward_v2},
           example_forward, unit="GFLOP/s", requires={"numba v2": blas.available}),
    Kernel("packed_backward", packed_backward,
           {"reference": packed_backward_reference, "numba v1": packed_backward_v1, "numba v2": packed_backward_v2},
           example_backward, unit="GFLOP/s", requires={"numba v2": blas.available}),
)


if __name__ == "__main__":
    run_lesson(KERNELS)
