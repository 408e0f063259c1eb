"""One position through a transformer block: the small vector steps of generating a token.

When a model writes text one token at a time (batch 1, one new position), a block does
four matrix-vector products, which BLAS streams well, and a handful of small vector steps
whose cost in NumPy is almost all call overhead (~1 us per array operation, whatever its
size). This file fuses those small steps into one call each:

    add_norm:  x += delta + bias            the residual update, in place      x, delta (C,)
               out = norm(x)                LayerNorm (w, b) or RMSNorm (w)    out (C,)
    attend:    K[:, slot] = k; V[:, slot] = v                                  k, v (H, D)
               s_j = q . K[:, j] / sqrt(D)  for the first n slots              q (H, D)
               out = softmax(s) V                                              out (H, D)
    gelu_row:  out = 0.5 f (1 + tanh(sqrt(2/pi) (f + 0.044715 f^3)))           f (4C,)

K, V are one layer's cache buffers (H, capacity, D). Attention over cached positions has
no mask: every cached position is in the past of the new one, and the slot order does not
matter to a softmax-weighted sum (which is what lets a rolling cache reuse slots).

Versions: 0 the NumPy reference (runs on NumPy and CuPy); 1 Numba on one core. One
core on purpose: a batch-1 step is microseconds of work, less than waking a thread pool.
Run ``python -m scratchlm.kernels.decode`` to check and time them.
"""

from __future__ import annotations

import math

import numpy as np

from .attention import _exp_minus_max
from .dispatch import lazy_njit, use_numba
from .gelu import gelu_forward_reference, gelu_from_tanh, tanh_argument, tanh_rational
from .layernorm import FAST_SUMS


# ---- version 0: the NumPy reference ------------------------------------------------
def add_norm_reference(x, delta, bias, w, b, eps, rms):
    """x (C,) += delta + bias (in place); return LayerNorm (or RMSNorm if ``rms``) of x."""
    x += delta
    x += bias
    centred = x if rms else x - x.sum() / x.shape[0]                           # (C,)
    rstd = 1.0 / math.sqrt(float(centred @ centred) / x.shape[0] + eps)
    return centred * (w * x.dtype.type(rstd)) + b                               # (C,)


def attend_reference(q, k, v, keys, values, slot, n, scale):
    """Store k, v (H, D) at ``slot`` of keys/values (H, cap, D); attend q over n slots -> (H, D)."""
    from scratchlm.backend import get_array_module

    xp = get_array_module(q)
    keys[:, slot] = k
    values[:, slot] = v
    scores = xp.matmul(keys[:, :n], q[:, :, None])[:, :, 0] * scale            # (H, n)
    scores -= scores.max(axis=1, keepdims=True)
    weights = xp.exp(scores)
    weights /= weights.sum(axis=1, keepdims=True)                               # (H, n)
    return xp.matmul(weights[:, None, :], values[:, :n])[:, 0]                  # (H, D)


def gelu_row_reference(f):
    return gelu_forward_reference(f)


# ---- version 1: Numba, one core, no temporaries ----------------------------------------
# Faster than the reference because each is one call instead of 5-10 NumPy calls; the
# sums use SIMD lanes (FAST_SUMS); exp and tanh are the vectorisable ones of
# vector_exp.py and gelu.py (libm's scalar calls would cost more than the rest).
@lazy_njit(fastmath=FAST_SUMS)
def _add_norm_kernel(x, delta, bias, w, b, eps, rms, out):
    C = x.shape[0]
    total = 0.0
    for i in range(C):
        x[i] += delta[i] + bias[i]
        total += x[i]
    mean = 0.0 if rms else total / C
    squares = 0.0
    for i in range(C):
        centred = x[i] - mean
        squares += centred * centred
    m, r = x.dtype.type(mean), x.dtype.type(1.0 / np.sqrt(squares / C + eps))
    for i in range(C):
        out[i] = (x[i] - m) * r * w[i] + b[i]


@lazy_njit(fastmath=FAST_SUMS, error_model="numpy")
def _attend_kernel(q, k, v, keys, values, slot, n, scale, scores, out):
    H, D = q.shape
    for h in range(H):
        for d in range(D):
            keys[h, slot, d] = k[h, d]
            values[h, slot, d] = v[h, d]
        for j in range(n):
            s = q.dtype.type(0.0)
            for d in range(D):
                s += q[h, d] * keys[h, j, d]
            scores[j] = s * scale
        _, total = _exp_minus_max(scores, n)            # scores[:n] <- exp(s - max)
        inverse = q.dtype.type(1.0) / total
        for d in range(D):
            out[h, d] = 0.0
        for j in range(n):
            p = scores[j] * inverse
            for d in range(D):
                out[h, d] += p * values[h, j, d]


@lazy_njit(error_model="numpy")
def _gelu_row_kernel(f, out):
    for i in range(f.shape[0]):
        out[i] = gelu_from_tanh(f[i], tanh_rational(tanh_argument(f[i])))


def add_norm_v1(x, delta, bias, w, b, eps, rms):
    out = np.empty_like(x)
    _add_norm_kernel(x, delta, bias, w, b, float(eps), bool(rms), out)
    return out


def attend_v1(q, k, v, keys, values, slot, n, scale):
    out = np.empty_like(q)
    scores = np.empty(n, dtype=q.dtype)
    _attend_kernel(q, k, v, keys, values, slot, n, q.dtype.type(scale), scores, out)
    return out


def gelu_row_v1(f):
    out = np.empty_like(f)
    _gelu_row_kernel(f, out)
    return out


# ---- dispatch ----------------------------------------------------------------------
# Version 1 wants C-contiguous arrays of one float dtype (the decoder's buffers are);
# anything else takes the reference.
def _compiled(*arrays) -> bool:
    dtype = arrays[0].dtype
    return (use_numba(*arrays) and dtype in (np.float32, np.float64)
            and all(a.dtype == dtype and a.flags.c_contiguous for a in arrays))


def add_norm(x, delta, bias, w, b, eps, rms):
    if _compiled(x, delta, bias, w, b):
        return add_norm_v1(x, delta, bias, w, b, eps, rms)
    return add_norm_reference(x, delta, bias, w, b, eps, rms)


def attend(q, k, v, keys, values, slot, n, scale):
    if _compiled(q, k, v, keys, values):
        return attend_v1(q, k, v, keys, values, slot, n, scale)
    return attend_reference(q, k, v, keys, values, slot, n, scale)


def gelu_row(f):
    if _compiled(f) and f.dtype == np.float32:  # the rational tanh is a float32 approximation
        return gelu_row_v1(f)
    return gelu_row_reference(f)


if __name__ == "__main__":
    from ._lesson import check, report

    H, D, cap, n = 8, 32, 256, 128                          # config c, half-way through a window
    C = H * D
    rng = np.random.default_rng(0)
    for dtype in (np.float32, np.float64):
        x, delta, bias, w, b = (rng.standard_normal(C).astype(dtype) for _ in range(5))
        q, k, v = (rng.standard_normal((H, D)).astype(dtype) for _ in range(3))
        keys, values = (rng.standard_normal((H, cap, D)).astype(dtype) for _ in range(2))
        f = rng.standard_normal(4 * C).astype(dtype)
        print(f"decode step H={H} D={D} n={n} {np.dtype(dtype).name}")
        versions = [("reference", add_norm_reference, attend_reference, gelu_row_reference),
                    ("numba v1", add_norm_v1, attend_v1, gelu_row_v1 if dtype == np.float32 else None)]
        for name, add_norm_fn, attend_fn, gelu_fn in versions:
            for rms in (False, True):
                want = add_norm_reference(x.copy(), delta, bias, w, b, 1e-5, rms)
                check(f"{name} add_norm rms={rms}", add_norm_fn(x.copy(), delta, bias, w, b, 1e-5, rms), want, dtype)
            traffic = 7 * C * x.itemsize                # read x, delta, bias, w, b; write x, out
            report(f"{name} add_norm", add_norm_fn, (x.copy(), delta, bias * 0, w, b, 1e-5, False), traffic)
            want = attend_reference(q, k, v, keys.copy(), values.copy(), n - 1, n, 1 / math.sqrt(D))
            got = attend_fn(q, k, v, keys.copy(), values.copy(), n - 1, n, 1 / math.sqrt(D))
            check(f"{name} attend", got, want, dtype)
            report(f"{name} attend", attend_fn, (q, k, v, keys, values, n - 1, n, 1 / math.sqrt(D)),
                   2 * H * n * D * q.itemsize)
            if gelu_fn is not None:
                check(f"{name} gelu_row", gelu_fn(f), gelu_row_reference(f), dtype)
                report(f"{name} gelu_row", gelu_fn, (f,), 2 * f.size * f.itemsize)
