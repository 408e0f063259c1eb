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

Work: every product above costs 2 D flops per visible (query, key) pair, and there are
about Tq Tk / 2 visible pairs, so forward is 2 products and backward 4. The reference
computes all Tq Tk pairs (then masks half away); the compiled versions skip the future.
The B*H heads are independent, which is where the two cores come from: NumPy's batched
matmul on 4-D arrays runs its per-head products one after another on one core.
"""

from __future__ import annotations

import math

import numpy as np

from .dispatch import lazy_njit, prange, use_numba


def causal_mask(xp, tq, tk):
    """(Tq, Tk) boolean, True where key j lies in query i's future."""
    query_pos = xp.arange(tq)[:, None] + (tk - tq)
    key_pos = xp.arange(tk)[None, :]
    return key_pos > query_pos


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


# The compiled versions below let LLVM reorder sums (``reassoc``: split a dot product into
# SIMD lanes) and fuse multiply-adds (``contract``); they assume nothing about inf or NaN.
FAST_SUMS = {"reassoc", "contract"}


# ---- version 1: Numba, one head per prange step, one query row at a time -------------
# Better than the reference: the scale, mask and softmax are fused into the row loop (no
# (B,H,Tq,Tk) temporaries but p itself), future keys are never computed, and the heads
# are spread over both cores. Still slow-ish: each row of k and v is loaded once per
# query, and math.exp is a scalar libm call (no SVML here), so the exp loop cannot use SIMD.
@lazy_njit(parallel=True, fastmath=FAST_SUMS)
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


@lazy_njit(parallel=True, fastmath=FAST_SUMS)
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


from ._attention_tiled import (  # noqa: E402  (version 2 lives next door; see its docstring)
    attention_backward_v2,
    attention_forward_v2,
)


# ---- dispatch ----------------------------------------------------------------------
def _compiled_ok(*arrays):
    dtype = arrays[0].dtype
    same_dtype = all(a.dtype == dtype for a in arrays)
    tq, tk = arrays[-3].shape[-2], arrays[-2].shape[-2]     # q, k (p or v is last)
    return use_numba(*arrays) and same_dtype and dtype in (np.float32, np.float64) and tk >= tq


def attention_forward(q, k, v):
    if _compiled_ok(q, k, v):
        return attention_forward_v2(q, k, v)
    return attention_forward_reference(q, k, v)


def attention_backward(dout, q, k, v, p):
    if _compiled_ok(dout, q, k, v, p) and dout.shape == q.shape:
        return attention_backward_v2(dout, q, k, v, p)
    return attention_backward_reference(dout, q, k, v, p)
