"""RMS normalisation (LayerNorm without centring or bias), forward and backward.

Math, per row x of C features (x: (N, C)):

    rstd = 1 / sqrt((1/C) sum_i x_i^2 + eps)
    xhat = x * rstd
    y    = xhat * w                          w: (C,)

Backward, given dy (N, C):

    dw = sum over rows of dy * xhat
    g  = dy * w
    dx = rstd * (g - xhat * mean(g * xhat))  (mean over the row)

Cached from forward: rstd, (N,).
"""

from __future__ import annotations

from .dispatch import use_numba  # noqa: F401  (used once the Numba versions land)


# ---- version 0: the NumPy reference ------------------------------------------------
def rmsnorm_forward_reference(x, w, eps=1e-5):
    """x: (N, C) -> y (N, C), rstd (N,)."""
    rstd = 1.0 / ((x * x).mean(axis=-1) + eps) ** 0.5       # (N,)
    y = x * rstd[:, None] * w                                # (N, C)
    return y, rstd.astype(x.dtype)


def rmsnorm_backward_reference(dy, x, w, rstd):
    """dy: (N, C) -> dx (N, C), dw (C,)."""
    xhat = x * rstd[:, None]                                 # (N, C)
    dw = (dy * xhat).sum(axis=0)                             # (C,)
    g = dy * w                                               # (N, C)
    dx = rstd[:, None] * (g - xhat * (g * xhat).mean(axis=-1, keepdims=True))
    return dx, dw


# ---- dispatch ----------------------------------------------------------------------
def rmsnorm_forward(x, w, eps=1e-5):
    return rmsnorm_forward_reference(x, w, eps)


def rmsnorm_backward(dy, x, w, rstd):
    return rmsnorm_backward_reference(dy, x, w, rstd)
