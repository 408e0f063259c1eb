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
"""

from __future__ import annotations

import math

from .dispatch import use_numba  # noqa: F401  (used once the Numba versions land)


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


# ---- dispatch ----------------------------------------------------------------------
def attention_forward(q, k, v):
    return attention_forward_reference(q, k, v)


def attention_backward(dout, q, k, v, p):
    return attention_backward_reference(dout, q, k, v, p)
