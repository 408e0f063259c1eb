"""Layer normalisation, forward and backward.

Math, per row x of C features (x has shape (N, C), N = B*T rows):

    mean = (1/C) sum_i x_i
    var  = (1/C) sum_i (x_i - mean)^2
    rstd = 1 / sqrt(var + eps)
    xhat = (x - mean) * rstd
    y    = xhat * w + b                      w, b: (C,)

Backward, given dy = dL/dy of shape (N, C):

    db   = sum over rows of dy
    dw   = sum over rows of dy * xhat
    g    = dy * w                            (the gradient reaching xhat)
    dx   = rstd * (g - mean(g) - xhat * mean(g * xhat))     (means over the row)

Cached from forward: mean and rstd, (N,) each; xhat is recomputed from x (it is
cheap, and caching it would cost a whole (N, C) array per layer).
"""

from __future__ import annotations

from .dispatch import use_numba  # noqa: F401  (used once the Numba versions land)


# ---- version 0: the NumPy reference (runs on NumPy and CuPy arrays) ------------------
def layernorm_forward_reference(x, w, b, eps=1e-5):
    """x: (N, C) -> y (N, C), mean (N,), rstd (N,)."""
    mean = x.mean(axis=-1)                                  # (N,)
    xc = x - mean[:, None]                                  # (N, C)
    rstd = 1.0 / ((xc * xc).mean(axis=-1) + eps) ** 0.5     # (N,)
    y = xc * rstd[:, None] * w + b                          # (N, C)
    return y, mean, rstd.astype(x.dtype)


def layernorm_backward_reference(dy, x, w, mean, rstd):
    """dy: (N, C) -> dx (N, C), dw (C,), db (C,)."""
    xhat = (x - mean[:, None]) * rstd[:, None]              # (N, C)
    db = dy.sum(axis=0)                                     # (C,)
    dw = (dy * xhat).sum(axis=0)                            # (C,)
    g = dy * w                                              # (N, C)
    dx = rstd[:, None] * (g - g.mean(axis=-1, keepdims=True)
                          - xhat * (g * xhat).mean(axis=-1, keepdims=True))
    return dx, dw, db


# ---- dispatch ----------------------------------------------------------------------
def layernorm_forward(x, w, b, eps=1e-5):
    return layernorm_forward_reference(x, w, b, eps)


def layernorm_backward(dy, x, w, mean, rstd):
    return layernorm_backward_reference(dy, x, w, mean, rstd)
