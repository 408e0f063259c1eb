"""Softmax + cross-entropy, fused: the loss of a language model and its gradient.

Shapes: logits (N, V) with N = B*T rows of V vocabulary scores; targets (N,) integer
ids, where ``ignore_index`` marks rows that do not count. M = number of counted rows.

Forward, per counted row n with target t:

    lse_n  = log sum_j exp(logits[n, j])               (computed as m + log sum exp(l - m), m = row max)
    loss_n = lse_n - logits[n, t]
    loss   = (1/M) sum_n loss_n

Backward (the famous simplification: softmax and log cancel):

    dlogits[n, j] = (softmax(logits[n])_j - [j == t]) / M      for counted rows, 0 otherwise

Because the gradient needs nothing but the softmax, forward computes it at once
(when asked) and the op keeps it: the only (N, V) array besides the logits is the
logits gradient itself. Backward just scales it by dL/dloss.
"""

from __future__ import annotations

from .dispatch import use_numba  # noqa: F401  (used once the Numba versions land)


# ---- version 0: the NumPy reference ------------------------------------------------
def cross_entropy_forward_reference(logits, targets, ignore_index=-1, compute_grad=True):
    """logits (N, V), targets (N,) -> loss (0-d), dlogits (N, V) or None."""
    from scratchlm.backend import get_array_module

    xp = get_array_module(logits)
    n = logits.shape[0]
    rows = xp.arange(n)
    counted = targets != ignore_index                                   # (N,)
    safe_targets = xp.where(counted, targets, 0)                        # (N,)
    count = max(int(counted.sum()), 1)
    shifted = logits - logits.max(axis=-1, keepdims=True)               # (N, V)
    lse = xp.log(xp.exp(shifted).sum(axis=-1))                          # (N,)
    losses = (lse - shifted[rows, safe_targets]) * counted              # (N,)
    loss = (losses.sum() / count).astype(logits.dtype)
    if not compute_grad:
        return loss, None
    dlogits = xp.exp(shifted - lse[:, None])                            # (N, V) softmax
    dlogits[rows, safe_targets] -= 1.0
    dlogits *= (counted / count).astype(logits.dtype)[:, None]
    return loss, dlogits


# ---- dispatch ----------------------------------------------------------------------
def cross_entropy_forward(logits, targets, ignore_index=-1, compute_grad=True):
    return cross_entropy_forward_reference(logits, targets, ignore_index, compute_grad)
