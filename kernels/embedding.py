"""Embedding lookup: forward is a gather, backward a scatter-add.

Shapes: weight (V, C); ids (B, T) integers in [0, V).

Forward:   out[b, t, :] = weight[ids[b, t], :]               (B, T, C)
Backward:  dweight[v, :] = sum over (b, t) with ids[b, t] == v of dout[b, t, :]

The backward is the one subtle part: the same id appears many times in a batch
(every "e"), and each occurrence must add its gradient. ``dweight[ids] += dout``
would keep only one of them; ``np.add.at`` accumulates them all.
"""

from __future__ import annotations

from .dispatch import use_numba  # noqa: F401  (used once the Numba versions land)


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


# ---- dispatch ----------------------------------------------------------------------
def embedding_forward(weight, ids):
    return embedding_forward_reference(weight, ids)


def embedding_backward(dout, ids, vocab_size):
    return embedding_backward_reference(dout, ids, vocab_size)
