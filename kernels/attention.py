"""Causal scaled-dot-product attention: the core of a transformer block.

Shapes: q (B, H, Tq, D); k, v (B, H, Tk, D) with Tk >= Tq. Query i sits at absolute
position (Tk - Tq + i), so it may look at keys 0 .. Tk - Tq + i (during training
Tq == Tk; during cached generation Tq is the few new tokens and Tk the whole window).

Forward:

    s = q k^T / sqrt(D)                      (B, H, Tq, Tk)   scores
    s[i, j] = -inf where j > Tk - Tq + i     causal mask
    p = softmax(s) over the last axis        (B, H, Tq, Tk)   attention weights
    out = p v                                (B, H, Tq, D)

Backward, given dout (B, H, Tq, D):

    dv = p^T dout                            (B, H, Tk, D)
    dp = dout v^T                            (B, H, Tq, Tk)
    ds = p * (dp - sum_j(dp * p))            softmax backward, row by row
    dq = ds k / sqrt(D);  dk = ds^T q / sqrt(D)

Cached from forward: p (the masked entries are exact zeros, so no mask is needed
in backward).

FLUSH: weights below tiny / eps (``flush_threshold``: the smallest normal float over the
machine epsilon, 1e-31 in float32) are set to exactly 0, and so is any ds below the smallest
normal float. The reference forward, version 2 and attention_packed.py's versions
do this; version 1 (a stop on the way, kept to read) does not, nor does the CUDA version
(NVIDIA GPUs compute on subnormal floats at full speed).
As a model trains its attention sharpens, exp(s - max) underflows into subnormal numbers,
and x86 arithmetic on subnormals is many times slower: measured here, a step of a trained
6-layer model (2-4% of its weights subnormal) took 1.9x as long as a fresh model's, the
attention backward 5.6x. The threshold keeps the products p * dout of backward normal too;
the change to any result is far below float32's own rounding (1e-7 relative).

Work: every product above costs 2 D flops per visible (query, key) pair, and there are
about Tq Tk / 2 visible pairs, so forward is 2 products and backward 4. The reference
computes all Tq Tk pairs (then masks half away); the compiled versions skip the future.
The B*H heads are independent, which is where the two cores come from: NumPy's batched
matmul on 4-D arrays runs its per-head products one after another on one core.

Versions: 0 the NumPy reference; 1 and 2 Numba (below); CUDA (CuPy arrays): the products
in cuBLAS, the scale, mask and softmax fused in one row kernel.
"""

from __future__ import annotations

import math

import numpy as np

from ._cuda import cupy_module, launch, row_threads
from ._lesson import Kernel, run_lesson
from .attention_route import split_heads_version
from .numba_tools import NUMPY_ERRORS, REORDER_SUMS_AND_FUSE, lazy_njit, prange
from .row_tiles import ROWS, add_tile_t_times, tile_times_bt
from .softmax_rows import causal_mask, exp_minus_max, flush_threshold, weight_floor


# ---- version 0: the NumPy reference ------------------------------------------------
def attention_forward_reference(q, k, v):
    """q (B,H,Tq,D), k/v (B,H,Tk,D) -> out (B,H,Tq,D), p (B,H,Tq,Tk)."""
    from scratchlm.backend import get_array_module

    xp = get_array_module(q)
    tq, d = q.shape[-2:]
    tk = k.shape[-2]
    scale = q.dtype.type(1.0 / math.sqrt(d))
    s = (q @ k.swapaxes(-1, -2)) * scale                     # (B, H, Tq, Tk)
    s = xp.where(causal_mask(xp, tq, tk), q.dtype.type(-xp.inf), s)
    s -= s.max(axis=-1, keepdims=True)
    p = xp.exp(s)
    p /= p.sum(axis=-1, keepdims=True)                       # (B, H, Tq, Tk)
    p[p < flush_threshold(p.dtype)] = 0                      # see FLUSH above
    return p @ v, p                                          # (B, H, Tq, D)


def attention_backward_reference(dout, q, k, v, p):
    """dout (B,H,Tq,D) -> dq (B,H,Tq,D), dk (B,H,Tk,D), dv (B,H,Tk,D)."""
    scale = q.dtype.type(1.0 / math.sqrt(q.shape[-1]))
    dv = p.swapaxes(-1, -2) @ dout                           # (B, H, Tk, D)
    dp = dout @ v.swapaxes(-1, -2)                           # (B, H, Tq, Tk)
    ds = p * (dp - (dp * p).sum(axis=-1, keepdims=True))     # (B, H, Tq, Tk)
    dq = (ds @ k) * scale                                    # (B, H, Tq, D)
    dk = (ds.swapaxes(-1, -2) @ q) * scale                   # (B, H, Tk, D)
    return dq, dk, dv


# The compiled versions below let LLVM reorder sums and fuse multiply-adds, and keep NumPy's
# 1 / 0 = inf (see numba_tools.py).


# ---- version 1: Numba, one head per prange step, one query row at a time -------------
# Better than the reference: the scale, mask and softmax are fused into the row loop (no
# (B,H,Tq,Tk) temporaries but p itself), future keys are never computed, and the heads
# are spread over both cores. Still slow-ish: each row of k and v is loaded once per
# query, and math.exp is a scalar libm call (no SVML here), so the exp loop cannot use SIMD.
@lazy_njit(parallel=True, fastmath=REORDER_SUMS_AND_FUSE, error_model=NUMPY_ERRORS)
def _forward_kernel_v1(q, k, v, out, p):
    heads, Tq, D = q.shape
    Tk = k.shape[1]
    real = q.dtype.type
    scale = real(1.0 / math.sqrt(D))
    for h in prange(heads):
        for i in range(Tq):
            visible = Tk - Tq + i + 1                        # keys 0 .. visible-1
            row = p[h, i]                                    # (Tk,)
            row_max = real(-np.inf)
            for j in range(visible):
                score = real(0.0)
                for d in range(D):
                    score += q[h, i, d] * k[h, j, d]
                row[j] = score * scale
                row_max = max(row_max, row[j])
            total = real(0.0)
            for j in range(visible):
                row[j] = math.exp(row[j] - row_max)
                total += row[j]
            inv_total = real(1.0) / total
            for j in range(visible):
                row[j] *= inv_total
            row[visible:] = real(0.0)
            out[h, i, :] = real(0.0)
            for j in range(visible):
                for d in range(D):
                    out[h, i, d] += row[j] * v[h, j, d]


@lazy_njit(parallel=True, fastmath=REORDER_SUMS_AND_FUSE)
def _backward_kernel_v1(dout, q, k, v, p, dq, dk, dv):
    heads, Tq, D = q.shape
    Tk = k.shape[1]
    real = q.dtype.type
    scale = real(1.0 / math.sqrt(D))
    for h in prange(heads):
        dp = np.empty(Tk, dtype=q.dtype)                     # (Tk,) one row of dout v^T
        dk[h] = real(0.0)
        dv[h] = real(0.0)
        for i in range(Tq):
            visible = Tk - Tq + i + 1
            dp_dot_p = real(0.0)
            for j in range(visible):
                acc = real(0.0)
                for d in range(D):
                    acc += dout[h, i, d] * v[h, j, d]
                dp[j] = acc
                dp_dot_p += acc * p[h, i, j]
            dq[h, i, :] = real(0.0)
            for j in range(visible):
                ds = p[h, i, j] * (dp[j] - dp_dot_p) * scale
                for d in range(D):
                    dq[h, i, d] += ds * k[h, j, d]
                    dk[h, j, d] += ds * q[h, i, d]
                    dv[h, j, d] += p[h, i, j] * dout[h, i, d]


def _heads(x, dtype):
    """(..., T, D) array -> a C-contiguous (heads, T, D) array of ``dtype`` (a copy if needed)."""
    return np.ascontiguousarray(x, dtype=dtype).reshape(-1, *x.shape[-2:])


def _forward_with(kernel, q, k, v):
    q3, k3, v3 = (_heads(a, q.dtype) for a in (q, k, v))    # (BH, Tq, D), (BH, Tk, D) x2
    out = np.empty_like(q3)                                  # (BH, Tq, D)
    p = np.empty((q3.shape[0], q3.shape[1], k3.shape[1]), dtype=q.dtype)   # (BH, Tq, Tk)
    kernel(q3, k3, v3, out, p)
    return out.reshape(q.shape), p.reshape(*q.shape[:-1], k.shape[-2])


def _backward_with(kernel, dout, q, k, v, p):
    dout3, q3, k3, v3, p3 = (_heads(a, q.dtype) for a in (dout, q, k, v, p))
    dq, dk, dv = np.empty_like(q3), np.empty_like(k3), np.empty_like(v3)
    kernel(dout3, q3, k3, v3, p3, dq, dk, dv)
    return dq.reshape(q.shape), dk.reshape(k.shape), dv.reshape(v.shape)


def attention_forward_v1(q, k, v):
    return _forward_with(_forward_kernel_v1, q, k, v)


def attention_backward_v1(dout, q, k, v, p):
    return _backward_with(_backward_kernel_v1, dout, q, k, v, p)


# ---- version 2: four query rows at a time, and an exp that vectorises ----------------
# Better than version 1 in two ways. (a) A tile of ROWS query rows is computed together:
# every row of k (or v) loaded from cache feeds ROWS dot products held in registers, not
# one, and each product's sum over D (or over keys) runs in SIMD lanes. (b) The softmax
# calls ``exp_for`` (see vector_exp.py), so its loop runs 16 lanes at a time in float32, 8 in float64.
# The two products that sum over query rows (dv = p^T dout, dk = ds^T q) are rank-ROWS
# updates: each row of dv or dk is read and written once per tile instead of once per row.
@lazy_njit(fastmath=REORDER_SUMS_AND_FUSE, error_model=NUMPY_ERRORS)
def _head_forward_v2(q, k, v, out, p):
    """One head: q (Tq, D), k and v (Tk, D) -> out (Tq, D) and p (Tq, Tk), ROWS rows at a time."""
    Tq, D = q.shape
    Tk = k.shape[0]
    real = q.dtype.type
    scale = real(1.0 / math.sqrt(D))
    tiny = weight_floor(q)                               # the FLUSH threshold
    v_t = np.ascontiguousarray(v.T)                      # (D, Tk)
    q_tile = np.zeros((ROWS, D), dtype=q.dtype)          # (4, D) queries, pre-scaled
    s_tile = np.zeros((ROWS, Tk), dtype=q.dtype)         # (4, Tk) scores, then exp(s - max)
    out_tile = np.empty((ROWS, D), dtype=q.dtype)        # (4, D)
    inv_total = np.ones(ROWS, dtype=q.dtype)             # (4,) 1 / softmax denominators
    for i0 in range(0, Tq, ROWS):
        rows = min(ROWS, Tq - i0)                        # the last tile may be partial
        keys = Tk - Tq + i0 + rows                       # keys the tile's last row sees
        for r in range(rows):
            for d in range(D):
                q_tile[r, d] = q[i0 + r, d] * scale
        tile_times_bt(q_tile, k, s_tile, keys, D)       # (4, keys) scaled scores
        for r in range(rows):
            visible = keys - rows + r + 1                # keys row i0 + r sees
            _, total = exp_minus_max(s_tile[r], visible, keys)   # 0 past the causal mask
            inv_total[r] = real(1.0) / total
            for j in range(keys):                        # weights below tiny / eps
                pj = s_tile[r, j] * inv_total[r]         # float become exact zeros (see FLUSH)
                keep = pj >= tiny
                p[i0 + r, j] = pj if keep else real(0.0)
                s_tile[r, j] = s_tile[r, j] if keep else real(0.0)
            p[i0 + r, keys:] = real(0.0)
        tile_times_bt(s_tile, v_t, out_tile, D, keys)   # (4, D) = exp(s - max) v
        for r in range(rows):
            for d in range(D):
                out[i0 + r, d] = out_tile[r, d] * inv_total[r]


@lazy_njit(fastmath=REORDER_SUMS_AND_FUSE)
def _head_backward_v2(dout, q, k, v, p, dq, dk, dv):
    """One head: dout (Tq, D) -> dq (Tq, D), dk and dv (Tk, D), ROWS query rows at a time."""
    Tq, D = q.shape
    Tk = k.shape[0]
    real = q.dtype.type
    scale = real(1.0 / math.sqrt(D))
    tiny = real(np.finfo(q.dtype).tiny)                  # the smallest normal float
    k_t = np.ascontiguousarray(k.T)                      # (D, Tk)
    g_tile = np.zeros((ROWS, D), dtype=q.dtype)          # (4, D) rows of dout
    q_tile = np.zeros((ROWS, D), dtype=q.dtype)          # (4, D) rows of q
    p_tile = np.zeros((ROWS, Tk), dtype=q.dtype)         # (4, Tk) rows of p
    ds_tile = np.zeros((ROWS, Tk), dtype=q.dtype)        # (4, Tk) dp, then ds
    dq_tile = np.empty((ROWS, D), dtype=q.dtype)         # (4, D)
    dk[:, :] = real(0.0)
    dv[:, :] = real(0.0)
    for i0 in range(0, Tq, ROWS):
        rows = min(ROWS, Tq - i0)
        keys = Tk - Tq + i0 + rows
        for r in range(ROWS):                            # rows past the end are zeros
            live = r < rows
            for d in range(D):
                g_tile[r, d] = dout[i0 + r, d] if live else real(0.0)
                q_tile[r, d] = q[i0 + r, d] if live else real(0.0)
            for j in range(keys):
                p_tile[r, j] = p[i0 + r, j] if live else real(0.0)
        tile_times_bt(g_tile, v, ds_tile, keys, D)      # (4, keys) dp = dout v^T
        for r in range(ROWS):
            dp_dot_p = real(0.0)
            for j in range(keys):
                dp_dot_p += ds_tile[r, j] * p_tile[r, j]
            for j in range(keys):                        # FLUSH subnormal ds to zero
                ds = p_tile[r, j] * (ds_tile[r, j] - dp_dot_p)
                ds_tile[r, j] = ds if abs(ds) >= tiny else real(0.0)
        tile_times_bt(ds_tile, k_t, dq_tile, D, keys)   # (4, D) ds k
        for r in range(rows):
            for d in range(D):
                dq[i0 + r, d] = dq_tile[r, d] * scale
        add_tile_t_times(p_tile, g_tile, dv, keys, real(1.0))    # dv += p^T dout
        add_tile_t_times(ds_tile, q_tile, dk, keys, scale)       # dk += ds^T q / sqrt(D)


@lazy_njit(parallel=True)
def _forward_kernel_v2(q, k, v, out, p):
    for h in prange(q.shape[0]):
        _head_forward_v2(q[h], k[h], v[h], out[h], p[h])


@lazy_njit(parallel=True)
def _backward_kernel_v2(dout, q, k, v, p, dq, dk, dv):
    for h in prange(q.shape[0]):
        _head_backward_v2(dout[h], q[h], k[h], v[h], p[h], dq[h], dk[h], dv[h])


def attention_forward_v2(q, k, v):
    return _forward_with(_forward_kernel_v2, q, k, v)


def attention_backward_v2(dout, q, k, v, p):
    return _backward_with(_backward_kernel_v2, dout, q, k, v, p)


# ---- CUDA version (CuPy arrays): cuBLAS products, a fused softmax row kernel ------------
# On a GPU the four products are what cuBLAS (CuPy's ``@``) does best, so they stay there;
# what a NumPy-style reference does badly is the rest: scale, mask, max, exp, sum and divide,
# each a pass over the (B, H, Tq, Tk) scores. One kernel does them all in place, a thread
# block per row of scores; its backward twin turns dp into ds in place, folding in the
# 1/sqrt(D) so that dq and dk come straight out of cuBLAS. Like the reference (and unlike
# versions 1 and 2), the products still compute the future keys that the mask then zeroes.
ATTENTION_CUDA_SOURCE = r"""
// s: (rows, Tk) scores q k^T, rows = B*H*Tq; row r is query i = r % Tq, which sees keys
// 0 .. Tk - Tq + i. Becomes p = softmax(scale * s) over the visible keys, exact zeros after.
extern "C" __global__ void causal_softmax_forward(real* s, int Tq, int Tk, real scale) {
    real* row = s + (long long)blockIdx.x * Tk;
    const int visible = Tk - Tq + (int)(blockIdx.x % Tq) + 1;
    real local_max = row[0] * scale;
    for (int j = threadIdx.x; j < visible; j += blockDim.x) local_max = row[j] * scale > local_max ? row[j] * scale : local_max;
    const real row_max = block_max(local_max);
    real local_total = 0;
    for (int j = threadIdx.x; j < visible; j += blockDim.x) {
        row[j] = exp(row[j] * scale - row_max);                // each thread rewrites only its own j
        local_total += row[j];
    }
    const real inv_total = real(1) / block_sum(local_total);
    for (int j = threadIdx.x; j < Tk; j += blockDim.x) row[j] = j < visible ? row[j] * inv_total : real(0);
}

// dp: (rows, Tk) = dout v^T, becomes ds = p * (dp - sum_j dp_j p_j) * scale, row by row.
extern "C" __global__ void causal_softmax_backward(const real* p, real* dp, int Tk, real scale) {
    const long long row = (long long)blockIdx.x * Tk;
    real local = 0;
    for (int j = threadIdx.x; j < Tk; j += blockDim.x) local += dp[row + j] * p[row + j];
    const real dp_dot_p = block_sum(local);
    for (int j = threadIdx.x; j < Tk; j += blockDim.x) dp[row + j] = p[row + j] * (dp[row + j] - dp_dot_p) * scale;
}
"""


def attention_forward_cuda(q, k, v):
    cp = cupy_module()
    tq, d = q.shape[-2:]
    tk = k.shape[-2]
    scale = q.dtype.type(1.0 / math.sqrt(d))
    p = cp.ascontiguousarray(q @ k.swapaxes(-1, -2))        # (B, H, Tq, Tk) scores, then p
    launch(ATTENTION_CUDA_SOURCE, "causal_softmax_forward", q.dtype, p.size // tk, row_threads(tk),
           (p, np.int32(tq), np.int32(tk), scale))
    return p @ v, p                                          # (B, H, Tq, D)


def attention_backward_cuda(dout, q, k, v, p):
    cp = cupy_module()
    tk = k.shape[-2]
    scale = q.dtype.type(1.0 / math.sqrt(q.shape[-1]))
    p = cp.ascontiguousarray(p)                              # (B, H, Tq, Tk)
    dv = p.swapaxes(-1, -2) @ dout                           # (B, H, Tk, D)
    ds = cp.ascontiguousarray(dout @ v.swapaxes(-1, -2))     # (B, H, Tq, Tk) dp, then ds
    launch(ATTENTION_CUDA_SOURCE, "causal_softmax_backward", q.dtype, ds.size // tk, row_threads(tk),
           (p, ds, np.int32(tk), scale))
    return ds @ k, ds.swapaxes(-1, -2) @ q, dv               # dq (B,H,Tq,D), dk (B,H,Tk,D), dv


# ---- dispatch ----------------------------------------------------------------------
def _compiled_ok(q, k, v, *grad_inputs):
    """The compiled versions take float32/float64 arrays of one dtype, shapes that agree
    exactly (no broadcasting) and Tk >= Tq >= 1; anything else goes to the reference."""
    arrays = (q, k, v, *grad_inputs)
    shapes_agree = (q.ndim >= 2 and k.shape == v.shape and q.shape[:-2] == k.shape[:-2]
                    and q.shape[-1] == k.shape[-1] and k.shape[-2] >= q.shape[-2] >= 1)
    if grad_inputs:                                         # dout and p of the backward
        dout, p = grad_inputs
        p_shape = (*q.shape[:-1], k.shape[-2])
        shapes_agree = shapes_agree and dout.shape == q.shape and p.shape == p_shape
    return (q.dtype in (np.float32, np.float64) and shapes_agree and q.size > 0
            and all(a.dtype == q.dtype for a in arrays))


def attention_forward(q, k, v):
    version = split_heads_version(q, k, v) if _compiled_ok(q, k, v) else "reference"
    if version == "cuda":
        return attention_forward_cuda(q, k, v)
    if version == "numba v2":
        return attention_forward_v2(q, k, v)
    return attention_forward_reference(q, k, v)


def attention_backward(dout, q, k, v, p):
    version = split_heads_version(dout, q, k, v, p) if _compiled_ok(q, k, v, dout, p) else "reference"
    if version == "cuda":
        return attention_backward_cuda(dout, q, k, v, p)
    if version == "numba v2":
        return attention_backward_v2(dout, q, k, v, p)
    return attention_backward_reference(dout, q, k, v, p)


# ---- the declaration: what __main__, the tests and the benchmarks read ------------------
def _visible_pairs(q, k):
    """(query, key) pairs the causal mask lets through: what the compiled versions compute."""
    tq, tk = q.shape[-2], k.shape[-2]
    return q.size // (tq * q.shape[-1]) * (tq * (tq + 1) // 2 + tq * (tk - tq))


def example_forward(dtype, rng, shape):
    """q, k, v (B, H, T, D) at a configuration's shape; the flops of the two products
    (2 D per visible pair each)."""
    q, k, v = (rng.standard_normal((shape.batch, shape.heads, shape.seq_len, shape.head_dim)).astype(dtype)
               for _ in range(3))
    return (q, k, v), 2 * 2 * shape.head_dim * _visible_pairs(q, k)


def example_backward(dtype, rng, shape):
    (q, k, v), _ = example_forward(dtype, rng, shape)
    _, p = attention_forward_reference(q, k, v)
    dout = rng.standard_normal(q.shape).astype(dtype)
    return (dout, q, k, v, p), 4 * 2 * shape.head_dim * _visible_pairs(q, k)


KERNELS = (
    Kernel("attention_forward", attention_forward,
           {"reference": attention_forward_reference, "numba v1": attention_forward_v1,
            "numba v2": attention_forward_v2, "cuda": attention_forward_cuda}, example_forward, unit="GFLOP/s"),
    Kernel("attention_backward", attention_backward,
           {"reference": attention_backward_reference, "numba v1": attention_backward_v1,
            "numba v2": attention_backward_v2, "cuda": attention_backward_cuda}, example_backward, unit="GFLOP/s"),
)


if __name__ == "__main__":
    run_lesson(KERNELS)
