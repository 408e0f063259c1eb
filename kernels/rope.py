"""Rotary position embedding (RoPE): rotate each query and key by its position's angles.

Split the last axis of x (..., D) into halves x1 = x[..., :D/2], x2 = x[..., D/2:]. For a
position with angles theta (D/2,) (``model.rope_tables``: pos * 10000^(-2i/D)):

    out = [x1 cos(theta) - x2 sin(theta),  x2 cos(theta) + x1 sin(theta)]

Each pair (i, i + D/2) is turned by its own angle, so the map is a rotation and its
backward is the rotation by -theta: ``rotate(grad, cos, -sin)``. Nothing is cached.

Versions: 0 the NumPy reference, any leading axes (runs on NumPy and CuPy; training calls
it on (B, H, T, D) with cos, sin (T, D/2)); 1 Numba, one position's (H, D) rotated in
place, the form the token step (token_step.py) needs: at generation time the reference's
four temporaries and one concatenate cost more than the arithmetic. Run
``python -m scratchlm.kernels.rope`` to check and time them.
"""

from __future__ import annotations

import numpy as np

from ._lesson import Kernel, run_lesson
from .dispatch import use_numba
from .numba_tools import lazy_njit


# ---- version 0: the NumPy reference ------------------------------------------------
def rotate_reference(x, cos, sin):
    """x (..., T, D), cos/sin (T, D/2) (or (D/2,) for one position) -> x rotated pairwise."""
    from scratchlm.backend import get_array_module

    xp = get_array_module(x)
    half = x.shape[-1] // 2
    x1, x2 = x[..., :half], x[..., half:]                                       # (..., D/2) each
    return xp.concatenate([x1 * cos - x2 * sin, x2 * cos + x1 * sin], axis=-1)  # (..., D)


# ---- version 1: Numba, one position, in place -----------------------------------------
@lazy_njit()
def rotate_in_place(x, cos, sin):
    """x (H, D) rotated pairwise (i, i + D/2) by cos, sin (D/2,), in place."""
    half = x.shape[1] // 2
    for h in range(x.shape[0]):
        for i in range(half):
            first, second = x[h, i], x[h, i + half]
            x[h, i] = first * cos[i] - second * sin[i]
            x[h, i + half] = second * cos[i] + first * sin[i]


def rotate_v1(x, cos, sin):
    out = np.array(x, copy=True, order="C")
    rotate_in_place(out, cos, sin)
    return out


# ---- dispatch ----------------------------------------------------------------------
def rotate(x, cos, sin):
    """The rotation of one position's heads (H, D) by cos, sin (D/2,), or any shape the reference takes."""
    if use_numba(x, cos, sin) and x.ndim == 2 and cos.ndim == 1 and x.dtype == cos.dtype == sin.dtype:
        return rotate_v1(x, cos, sin)
    return rotate_reference(x, cos, sin)


# ---- the declaration: what __main__, the tests and the benchmarks read ------------------
def example(dtype, rng, shape):
    """One position's heads (H, D) and the angles of position 77; the bytes moved."""
    half = shape.head_dim // 2
    angles = 77 * 10000.0 ** (-np.arange(half) / half)
    x = rng.standard_normal((shape.heads, 2 * half)).astype(dtype)
    cos, sin = np.cos(angles).astype(dtype), np.sin(angles).astype(dtype)
    return (x, cos, sin), 2 * x.nbytes + cos.nbytes + sin.nbytes


KERNELS = (Kernel("rotate", rotate, {"reference": rotate_reference, "numba v1": rotate_v1}, example),)


if __name__ == "__main__":
    run_lesson(KERNELS)
